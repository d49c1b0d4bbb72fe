"""A real ipykernel survives whatever the user's expressions do (issue 16).

Labels and image expressions are evaluated for the UI; breakpoint actions run inside the
user's program. Neither may end the kernel, ``sys.exit()`` included.
"""

import pytest

pytest.importorskip("ipykernel")
pytest.importorskip("jupyter_client.manager")

from .kernel_client import Client  # noqa: E402


@pytest.fixture(scope="module")
def client():
    c = Client()
    yield c
    c.close()


@pytest.mark.parametrize("op", ["labels", "image"])
@pytest.mark.parametrize(
    "expression, raised",
    [
        ("__import__('sys').exit(3)", "SystemExit"),
        ("(_ for _ in ()).throw(SystemExit(2))", "SystemExit"),
        ("(_ for _ in ()).throw(KeyboardInterrupt())", "interrupted"),
    ],
)
def test_an_exiting_ui_expression_gets_an_error_and_the_kernel_lives(
    client, op, expression, raised
):
    data, _ = client.request(op, expression=expression)
    assert not data["ok"]
    assert raised in data["error"]["message"], data["error"]
    client.output.clear()
    client.run("print(6 * 7)")
    assert "42" in "".join(client.output)


def test_an_exiting_action_is_recorded_and_the_cell_finishes(client):
    client.output.clear()
    client.run(
        "def step(x):\n"
        "    y = x + 1\n"
        "    return y\n"
        "bp = nopdb_lab.breakpoint(function=step, line='return y')\n"
        "bp.exec('import sys; sys.exit(1)')\n"
        "with bp:\n"
        "    total = step(1) + step(2)\n"
        "print(total, [h.errors[0].message for h in bp.hits])\n"
    )
    assert "5 ['SystemExit: 1', 'SystemExit: 1']" in "".join(client.output)
