"""A stand-in for the JupyterLab front end: a real ipykernel and the nopdb_lab comm."""

import uuid

from jupyter_client import manager

from nopdb_lab.jupyter.protocol import PROTOCOL_VERSION


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
