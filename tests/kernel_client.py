"""A stand-in for the JupyterLab front end: a real ipykernel and the nopdb_lab comm."""

import time
import uuid
from queue import Empty

import pytest
from jupyter_client import manager

from nopdb_lab.jupyter.protocol import PROTOCOL_VERSION


def _ipykernel_version():
    import ipykernel

    return tuple(int(p) for p in ipykernel.__version__.split(".")[:2] if p.isdigit())


#: for tests where a kernel subshell and the main shell handle messages at once
reliable_subshells = pytest.mark.skipif(
    _ipykernel_version() < (7, 4),
    reason="ipykernel 7.3 (the newest for Python 3.10) now and then stops answering every "
    "channel when a subshell and the main shell handle messages at once (seen in about 1 "
    "of 10 runs of a loop doing only that, with no nopdb-lab code involved); not seen "
    "with 7.4 in 36 runs",
)


class Client:
    """Plays the front end: opens the comm and sends protocol requests."""

    def __init__(self):
        self.km, self.kc = manager.start_new_kernel(kernel_name="python3")
        self.events = []
        self.output = []  # what cells printed (stdout and stderr)
        self._connect()

    def _connect(self):
        self.comm_id = uuid.uuid4().hex
        self.run("import nopdb_lab, nopdb_lab.jupyter as s; s.start()")
        self._send("comm_open", {"comm_id": self.comm_id, "target_name": "nopdb_lab", "data": {}})

    def restart(self):
        """Restart the kernel and connect again, as the front end does."""
        self.km.restart_kernel(now=True)
        self.kc.wait_for_ready(timeout=60)
        self.events.clear()
        self._connect()

    def _send(self, msg_type, content):
        self.kc.shell_channel.send(self.kc.session.msg(msg_type, content))

    def run(self, code):
        reply = self.kc.execute_interactive(code, timeout=60, output_hook=self._collect)
        assert reply["content"]["status"] == "ok", reply["content"]

    def _collect(self, msg):
        if msg["msg_type"] == "comm_msg":
            self.events.append(msg)
        elif msg["msg_type"] == "stream":
            self.output.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            raise AssertionError("\n".join(msg["content"]["traceback"]))

    def request(self, op, **args):
        rid = uuid.uuid4().hex
        data = {"v": PROTOCOL_VERSION, "id": rid, "op": op, "args": args}
        self._send("comm_msg", {"comm_id": self.comm_id, "data": data})
        for _ in range(200):
            msg = self.kc.get_iopub_msg(timeout=20)
            if msg["msg_type"] != "comm_msg":
                continue
            if msg["content"]["data"].get("re") == rid:
                return msg["content"]["data"], msg.get("buffers", [])
            self.events.append(msg)
        raise AssertionError(f"no response to {op}")

    def send(self, op, subshell_id=None, **args):
        """Send a request (to a kernel subshell if given) without waiting; its id."""
        rid = uuid.uuid4().hex
        data = {"v": PROTOCOL_VERSION, "id": rid, "op": op, "args": args}
        msg = self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        if subshell_id is not None:
            msg["header"]["subshell_id"] = subshell_id
        self.kc.shell_channel.send(msg)
        return rid

    def answer(self, rid, timeout=60):
        """The answer to request ``rid``; AssertionError("no answer") after ``timeout`` s."""
        for msg in self.events:  # collected while a cell ran
            if msg["content"]["data"].get("re") == rid:
                return msg["content"]["data"]
        for _ in range(timeout):
            try:
                while True:
                    msg = self.kc.get_iopub_msg(timeout=1)
                    if msg["msg_type"] != "comm_msg":
                        continue
                    if msg["content"]["data"].get("re") == rid:
                        return msg["content"]["data"]
                    self.events.append(msg)
            except Empty:
                continue
        raise AssertionError("no answer")

    def subshell(self):
        """A new kernel subshell (ipykernel >= 7), as JupyterLab >= 4.6 opens for comm
        messages, once its own thread serves requests (ipykernel may serve a new
        subshell's first messages on the main thread); skips the test without them."""
        msg = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(msg)
        reply = self.kc.control_channel.get_msg(timeout=20)
        if reply["content"].get("status") != "ok":  # ipykernel < 7: no subshells to test
            pytest.skip(f"this kernel has no subshells: {reply['content']}")
        subshell_id = reply["content"]["subshell_id"]
        who = "[__import__('threading').current_thread().name]"
        for _ in range(50):
            thread = self.answer(self.send("labels", subshell_id, expression=who))
            if thread["result"]["labels"][0].startswith("subshell"):
                return subshell_id
            time.sleep(0.2)
        raise AssertionError(f"the subshell's requests run on {thread}")

    def delete_subshell(self, subshell_id):
        msg = self.kc.session.msg("delete_subshell_request", {"subshell_id": subshell_id})
        self.kc.control_channel.send(msg)
        assert self.kc.control_channel.get_msg(timeout=20)["content"]["status"] == "ok"

    def added(self):
        """Briefs of every capture pushed so far (events arrive batched)."""
        return [c for event in self.pushed("captures_added") for c in event["captures"]]

    def pushed(self, event):
        return [
            m["content"]["data"] for m in self.events if m["content"]["data"].get("event") == event
        ]

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
