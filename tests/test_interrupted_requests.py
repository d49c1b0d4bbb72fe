"""A request the user interrupts still gets an answer (issue 16).

The front end waits for every request's reply; a labels expression that never ends,
stopped with the notebook's stop button (SIGINT to the kernel), must be answered with an
``Interrupted`` error, and the kernel must go on serving cells and requests.
"""

import uuid
from queue import Empty

import pytest

pytest.importorskip("ipykernel")
pytest.importorskip("jupyter_client.manager")

from nopdb_lab.jupyter.protocol import PROTOCOL_VERSION  # noqa: E402

from .kernel_client import Client  # noqa: E402


@pytest.fixture(scope="module")
def client():
    c = Client()
    yield c
    c.close()


def _reply_while_interrupting(client, op, **args):
    """Send a request, interrupt the kernel until it answers, return the answer.

    SIGINT is repeated because one that arrives before the kernel enters the comm
    handler is ignored (ipykernel ignores SIGINT between messages)."""
    rid = uuid.uuid4().hex
    data = {"v": PROTOCOL_VERSION, "id": rid, "op": op, "args": args}
    msg = client.kc.session.msg("comm_msg", {"comm_id": client.comm_id, "data": data})
    client.kc.shell_channel.send(msg)
    for _ in range(60):
        client.km.interrupt_kernel()
        try:
            while True:
                reply = client.kc.get_iopub_msg(timeout=1)
                content = reply["content"]
                if reply["msg_type"] == "comm_msg" and content["data"].get("re") == rid:
                    return content["data"]
        except Empty:
            continue
    raise AssertionError(f"no answer to the interrupted {op} request")


@pytest.mark.parametrize("op", ["labels", "image"])
def test_an_interrupted_expression_gets_an_interrupted_reply(client, op):
    # a generator over an endless iterator of zeros: runs Python code forever (where
    # signals are handled; a loop wholly in C would not see the interrupt), no memory
    answer = _reply_while_interrupting(client, op, expression="any(x for x in iter(int, 1))")
    assert answer["ok"] is False
    assert answer["error"]["type"] == "Interrupted"
    assert "interrupted" in answer["error"]["message"]
    assert "any(x for x in iter(int, 1))" in answer["error"]["message"]

    # the kernel goes on: cells run and requests are answered
    client.output.clear()
    client.run("print(6 * 7)")
    assert "42" in "".join(client.output)
    data, _ = client.request("labels", expression="['a', 'b']")
    assert data["ok"] and data["result"]["labels"] == ["a", "b"]


def test_an_interrupt_inside_any_op_is_answered(client):
    # an op whose own work is interrupted (not a user expression): the service answers
    client.run(
        "import nopdb_lab.jupyter.ops as _ops\n"
        "_slow_list = _ops.OPS['list']\n"
        "def _endless(service, **args):\n"
        "    while True:\n"
        "        pass\n"
        "_ops.OPS['list'] = _endless\n"
    )
    try:
        answer = _reply_while_interrupting(client, "list")
    finally:
        client.run("_ops.OPS['list'] = _slow_list")
    assert answer["ok"] is False
    assert answer["error"] == {
        "type": "Interrupted",
        "message": "list was interrupted (the kernel's stop button) before it finished",
    }
    data, _ = client.request("list")
    assert data["ok"]
