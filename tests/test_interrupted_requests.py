"""A request the user interrupts still gets an answer (issue 16).

The front end waits for every request's reply; a labels expression that never ends,
stopped with the notebook's stop button (SIGINT to the kernel), must be answered with an
``Interrupted`` error, and the kernel must go on serving cells and requests.
"""

import time
from queue import Empty

import pytest

pytest.importorskip("ipykernel")
pytest.importorskip("jupyter_client.manager")


from .kernel_client import Client, reliable_subshells  # noqa: E402


@pytest.fixture(scope="module")
def client():
    c = Client()
    yield c
    c.close()


def _wait_for_output(client, text, timeout=60):
    """Read iopub until ``text`` is printed (by the request being served)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = client.kc.get_iopub_msg(timeout=1)
        except Empty:
            continue
        if msg["msg_type"] == "comm_msg":
            client.events.append(msg)
        elif msg["msg_type"] == "stream" and text in msg["content"]["text"]:
            return
    raise AssertionError(f"{text!r} was never printed")


def _reply_while_interrupting(client, op, started, **args):
    """Send a request, wait until it prints ``started`` (it runs), then interrupt the
    kernel until it answers; return the answer."""
    rid = client.send(op, **args)
    _wait_for_output(client, started)
    for _ in range(60):
        client.km.interrupt_kernel()
        try:
            return client.answer(rid, timeout=1)
        except AssertionError:
            continue
    raise AssertionError(f"no answer to the interrupted {op} request")


@pytest.mark.parametrize("op", ["labels", "image"])
def test_an_interrupted_expression_gets_an_interrupted_reply(client, op):
    # a generator over an endless iterator of zeros: runs Python code forever (where
    # signals are handled; a loop wholly in C would not see the interrupt), no memory
    expression = "print('started') or any(x for x in iter(int, 1))"
    answer = _reply_while_interrupting(client, op, "started", expression=expression)
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
        "    print('endless op')\n"
        "    while True:\n"
        "        pass\n"
        "_ops.OPS['list'] = _endless\n"
    )
    try:
        answer = _reply_while_interrupting(client, "list", "endless op")
    finally:
        client.run("_ops.OPS['list'] = _slow_list")
    assert answer["ok"] is False
    assert answer["error"] == {
        "type": "Interrupted",
        "message": "list was interrupted (the kernel's stop button) before it finished",
    }
    data, _ = client.request("list")
    assert data["ok"]


@reliable_subshells
def test_a_request_in_a_kernel_subshell_is_interrupted_from_the_main_shell(client):
    """SIGINT never reaches a subshell's thread; the front end follows the stop button
    with a silent `nopdb_lab.jupyter.interrupt_requests()` on the main shell."""
    subshell = client.subshell()
    endless = "print('subshell started') or any(x for x in iter(int, 1))"
    rid = client.send("labels", subshell, expression=endless)
    _wait_for_output(client, "subshell started")
    # the request is running in the subshell's thread (not the main one): SIGINT alone
    # does not answer it
    client.km.interrupt_kernel()
    with pytest.raises(AssertionError, match="no answer"):
        client.answer(rid, timeout=2)
    # as the front end does: a silent execute request on the main shell
    client.kc.execute("import nopdb_lab.jupyter as _s; _s.interrupt_requests()", silent=True)
    answer = client.answer(rid)
    assert answer["ok"] is False and answer["error"]["type"] == "Interrupted"
    assert endless in answer["error"]["message"]
    # the subshell and the kernel go on
    rid = client.send("labels", subshell, expression="['a']")
    assert client.answer(rid)["result"]["labels"] == ["a"]
    # once the subshell's thread has finished its request, there is nothing to interrupt,
    # and an interrupt asked for then does not reach the next request
    for _ in range(50):
        client.output.clear()
        client.run("print('idle', _s.interrupt_requests())")
        if "idle 0" in "".join(client.output):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the subshell's thread still counts as serving: {client.output}")
    rid = client.send("labels", subshell, expression="['b']")
    assert client.answer(rid)["result"]["labels"] == ["b"]
    client.delete_subshell(subshell)


_SLOW_HOOKS = (  # around comm messages only (not the test's own cells)
    "import time\n"
    "_hooks_done = []\n"
    "def _for_comm():\n"
    "    return get_ipython().kernel.get_parent()['header']['msg_type'] == 'comm_msg'\n"
    "def _slow_pre():\n"
    "    if _for_comm():\n"
    "        print('in the pre_execute hook', flush=True)\n"
    "        time.sleep(1.5)\n"
    "        _hooks_done.append('pre')\n"
    "def _post():\n"
    "    if _for_comm():\n"
    "        _hooks_done.append('post')\n"
)


@pytest.fixture
def slow_hook(client):
    """An IPython pre_execute hook that takes 1.5 s (as a user's or another extension's
    may), and a post_execute hook; both run around comm messages too."""
    client.run(
        _SLOW_HOOKS
        + "get_ipython().events.register('pre_execute', _slow_pre)\n"
        + "get_ipython().events.register('post_execute', _post)"
    )
    yield
    client.run(
        "get_ipython().events.unregister('pre_execute', _slow_pre)\n"
        "get_ipython().events.unregister('post_execute', _post)"
    )


def _hooks_done(client):
    client.output.clear()
    client.run("print(_hooks_done); _hooks_done.clear()")
    return "".join(client.output).strip().splitlines()[-1]


def test_an_interrupt_while_hooks_run_is_held_for_the_request(client, slow_hook):
    """The stop button pressed while IPython's hooks run around a request (before its op
    starts) stops neither the hook half-way nor drops the request: the request is
    answered Interrupted, and both hooks ran to their end."""
    client.run("_hooks_done.clear()")
    rid = client.send("labels", expression="['never evaluated']")
    _wait_for_output(client, "in the pre_execute hook")
    client.km.interrupt_kernel()
    answer = client.answer(rid, timeout=30)
    assert answer["ok"] is False and answer["error"]["type"] == "Interrupted"
    assert _hooks_done(client) == "['pre', 'post']"
    # nothing is left held: the next request runs
    data, _ = client.request("labels", expression="['a']")
    assert data["ok"] and data["result"]["labels"] == ["a"]


@reliable_subshells
def test_a_subshell_request_interrupted_while_hooks_run_is_answered(client, slow_hook):
    subshell = client.subshell()
    try:
        client.run("_hooks_done.clear()")
        rid = client.send("labels", subshell, expression="['never evaluated']")
        _wait_for_output(client, "in the pre_execute hook")
        client.output.clear()
        client.run("import nopdb_lab.jupyter as _s; print('asked', _s.interrupt_requests())")
        assert "asked 1" in "".join(client.output)
        answer = client.answer(rid, timeout=30)
        assert answer["ok"] is False and answer["error"]["type"] == "Interrupted"
        assert _hooks_done(client) == "['pre', 'post']"
        rid = client.send("labels", subshell, expression="['b']")
        assert client.answer(rid)["result"]["labels"] == ["b"]
    finally:
        client.delete_subshell(subshell)
