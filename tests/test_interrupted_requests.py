"""A request the user interrupts still gets an answer (issue 16).

The front end waits for every request's reply; a labels expression that never ends,
stopped with the notebook's stop button (SIGINT to the kernel), must be answered with an
``Interrupted`` error, and the kernel must go on serving cells and requests.
"""

import time
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


def _subshell(client):
    """A kernel subshell (ipykernel 7), as JupyterLab >= 4.6 opens for comm messages."""
    msg = client.kc.session.msg("create_subshell_request", {})
    client.kc.control_channel.send(msg)
    reply = client.kc.control_channel.get_msg(timeout=20)
    if reply["content"].get("status") != "ok":  # ipykernel < 7: no subshells to test
        pytest.skip(f"this kernel has no subshells: {reply['content']}")
    return reply["content"]["subshell_id"]


def _send_in_subshell(client, subshell_id, op, **args):
    rid = uuid.uuid4().hex
    data = {"v": PROTOCOL_VERSION, "id": rid, "op": op, "args": args}
    msg = client.kc.session.msg("comm_msg", {"comm_id": client.comm_id, "data": data})
    msg["header"]["subshell_id"] = subshell_id
    client.kc.shell_channel.send(msg)
    return rid


def _answer(client, rid, timeout=60):
    for msg in client.events:  # collected while a cell ran
        if msg["content"]["data"].get("re") == rid:
            return msg["content"]["data"]
    for _ in range(timeout):
        try:
            while True:
                msg = client.kc.get_iopub_msg(timeout=1)
                if msg["msg_type"] == "comm_msg" and msg["content"]["data"].get("re") == rid:
                    return msg["content"]["data"]
        except Empty:
            continue
    raise AssertionError("no answer")


def _ipykernel_version():
    import ipykernel

    return tuple(int(p) for p in ipykernel.__version__.split(".")[:2] if p.isdigit())


@pytest.mark.skipif(
    _ipykernel_version() < (7, 4),
    reason="ipykernel 7.3 (the newest for Python 3.10) now and then stops answering every "
    "channel when a subshell and the main shell handle messages at once (seen in about 1 "
    "of 10 runs of a loop doing only that, with no nopdb-lab interrupt involved); not "
    "seen with 7.4 in 36 runs",
)
def test_a_request_in_a_kernel_subshell_is_interrupted_from_the_main_shell(client):
    """SIGINT never reaches a subshell's thread; the front end follows the stop button
    with a silent `nopdb_lab.jupyter.interrupt_requests()` on the main shell."""
    subshell = _subshell(client)
    endless = "any(x for x in iter(int, 1))"
    # ipykernel may serve a new subshell's first messages on the main thread: wait until
    # its own thread answers
    who = "[__import__('threading').current_thread().name]"
    for _ in range(50):
        thread = _answer(client, _send_in_subshell(client, subshell, "labels", expression=who))
        if thread["result"]["labels"][0].startswith("subshell"):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the subshell's requests run on {thread}")
    rid = _send_in_subshell(client, subshell, "labels", expression=endless)
    # the request is running in the subshell's thread (not the main one): SIGINT alone
    # does not answer it
    client.km.interrupt_kernel()
    with pytest.raises(AssertionError, match="no answer"):
        _answer(client, rid, timeout=2)
    # as the front end does: a silent execute request on the main shell
    client.kc.execute("import nopdb_lab.jupyter as _s; _s.interrupt_requests()", silent=True)
    answer = _answer(client, rid)
    assert answer["ok"] is False and answer["error"]["type"] == "Interrupted"
    assert endless in answer["error"]["message"]
    # the subshell and the kernel go on
    rid = _send_in_subshell(client, subshell, "labels", expression="['a']")
    assert _answer(client, rid)["result"]["labels"] == ["a"]
    client.output.clear()
    client.run("print('idle', _s.interrupt_requests())")  # nothing running: nothing raised
    assert "idle 0" in "".join(client.output)
    client.kc.control_channel.send(
        client.kc.session.msg("delete_subshell_request", {"subshell_id": subshell})
    )
    assert client.kc.control_channel.get_msg(timeout=20)["content"]["status"] == "ok"
