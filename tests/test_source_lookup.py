"""Finding the source of anything importable (or in the notebook's namespace) by name."""

import colorsys
import inspect
import json

import pytest

from nopdb_lab.jupyter.source_lookup import SourceLookupError, locate
from tests import sample_code as sc


def test_modules_functions_classes_and_methods_by_dotted_name():
    assert locate("json", {}) == {
        "name": "json",
        "file": inspect.getsourcefile(json),
        "line": 1,
        "kind": "module",
    }
    found = locate(" colorsys.rgb_to_hls ", {})
    assert found["file"] == inspect.getsourcefile(colorsys)
    assert found["line"] == colorsys.rgb_to_hls.__code__.co_firstlineno
    greet = locate("tests.sample_code.Greeter.greet", {})
    assert (greet["line"], greet["kind"]) == (53, "function")
    assert locate("tests.sample_code.Greeter", {})["line"] == 49


def test_names_from_the_namespace_and_instances_show_their_class():
    namespace = {"greeter": sc.Greeter("x"), "sc": sc}
    assert locate("greeter", namespace)["line"] == 49  # an instance: its class
    assert locate("greeter.greet", namespace)["line"] == 53  # a bound method
    assert locate("sc.add_one", namespace)["line"] == 4


@pytest.mark.parametrize(
    "name, message",
    [
        ("json..dumps", "is not a dotted name"),
        ("1json", "is not a dotted name"),
        ("no_such_module_xyz", "no module named 'no_such_module_xyz'"),
        ("json.no_such_thing", "json has no attribute 'no_such_thing'"),
        ("len", "has no Python source"),
        ("math.sqrt", "has no Python source"),
    ],
)
def test_errors_name_the_problem(name, message):
    with pytest.raises(SourceLookupError, match=message):
        locate(name, {})
