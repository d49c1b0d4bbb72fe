"""Same programs, NoPdb 0.2 and nopdb-lab: the results a tutorial reads must agree."""

import pytest

nopdb_orig = pytest.importorskip("nopdb")
torch = pytest.importorskip("torch")

import nopdb_lab  # noqa: E402
from examples.vit import Attention, vit_tiny  # noqa: E402
from tests import sample_code as sc  # noqa: E402


def run_tutorial(lib):
    """The steps of NoPdb's README and PyTorch tutorial, written once for either library."""
    torch.manual_seed(0)
    model, images = vit_tiny(), torch.randn(1, 3, 32, 32)
    out = {}
    with torch.no_grad():
        with lib.capture_call(model.blocks[1].attn.forward) as call:
            model(images)
        out["one_layer"] = call.locals["attn"].clone()
        with lib.capture_calls(Attention.forward) as calls:
            model(images)
        out["all_layers"] = torch.stack([c.locals["attn"] for c in calls])
        with lib.breakpoint(
            function=Attention.forward, line="x = (attn @ v).transpose(1, 2).reshape(B, N, C)"
        ) as bp:
            bp.exec("attn[:, :, :, 0] = 0")
            out["edited"] = model(images)
        with lib.breakpoint(function=sc.add_one, line=6) as bp:
            y_before = bp.eval("y")
            bp.exec("y += 1")
            y_after = bp.eval("y")
            out["add_one"] = sc.add_one(1)
        out["evals"] = (y_before, y_after)
        with lib.capture_call(sc.add_one) as call:
            sc.caller(1)
        out["call"] = (call.name, dict(call.args), call.return_value, dict(call.locals))
        out["stack_names"] = [f.name for f in call.stack][-2:]
    return out


def test_nopdb_lab_gives_the_same_results_as_nopdb():
    ours, theirs = run_tutorial(nopdb_lab), run_tutorial(nopdb_orig)
    assert ours.keys() == theirs.keys()
    for key in ("one_layer", "all_layers", "edited"):
        torch.testing.assert_close(ours[key], theirs[key])
    for key in ("add_one", "evals", "call", "stack_names"):
        assert ours[key] == theirs[key], key


def test_public_names_and_signatures_are_a_superset():
    import inspect

    for name in [
        "capture_call",
        "capture_calls",
        "breakpoint",
        "get_nopdb",
        "NoPdb",
        "Breakpoint",
        "CallCapture",
        "CallListCapture",
        "CallInfo",
        "Scope",
        "Handle",
    ]:
        assert hasattr(nopdb_lab, name), name
    for fn in ["capture_call", "capture_calls", "breakpoint"]:
        theirs = inspect.signature(getattr(nopdb_orig.NoPdb, fn)).parameters
        ours = inspect.signature(getattr(nopdb_lab.NoPdb, fn)).parameters
        for pname, param in theirs.items():
            assert pname in ours, (fn, pname)
            assert ours[pname].default == param.default, (fn, pname)
            assert ours[pname].kind == param.kind, (fn, pname)
    for method in ["start", "stop", "add_callback", "remove_callback"]:
        assert callable(getattr(nopdb_lab.NoPdb, method))
    for method in ["eval", "exec", "debug", "enable", "disable"]:
        assert callable(getattr(nopdb_lab.Breakpoint, method))
