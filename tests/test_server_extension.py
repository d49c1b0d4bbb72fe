"""The jupyter-server extension: a real server, its authenticated info endpoint."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("jupyter_server")

from nopdb_lab.jupyter import server_extension  # noqa: E402
from nopdb_lab.jupyter.protocol import PROTOCOL_VERSION  # noqa: E402

TOKEN = "nopdb-lab-test-token"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, token=None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    root = tmp_path_factory.mktemp("root")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            f"--port={port}",
            "--ip=127.0.0.1",
            "--no-browser",
            "--allow-root",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={TOKEN}",
            "--ServerApp.jpserver_extensions={'nopdb_lab': True}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            _get(f"{base}/api/status", TOKEN)
            break
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None:
                raise AssertionError(process.stdout.read().decode()) from None
            time.sleep(0.2)
    else:
        process.kill()
        raise AssertionError("jupyter server did not start")
    yield base
    process.terminate()
    process.wait(timeout=20)


def test_info_names_version_protocol_and_install_command(server):
    status, info = _get(f"{server}/nopdb-lab/info", TOKEN)
    assert status == 200
    assert info["version"] == server_extension.__version__
    assert info["protocol"] == PROTOCOL_VERSION
    assert info["install_command"].startswith("%pip install ")


def test_info_requires_authentication(server):
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        _get(f"{server}/nopdb-lab/info")
    assert excinfo.value.code == 403


class _FakeDistribution:
    def __init__(self, direct_url, version="0.1.0"):
        self._direct_url = direct_url
        self.version = version

    def read_text(self, name):
        assert name == "direct_url.json"
        return None if self._direct_url is None else json.dumps(self._direct_url)


@pytest.mark.parametrize(
    "direct_url, expected",
    [
        (None, "%pip install nopdb-lab==0.1.0"),
        ({"url": "https://files.example/nopdb_lab-0.1.0.whl"}, "%pip install nopdb-lab==0.1.0"),
        ({"url": "file:///src/nopdb-lab", "dir_info": {}}, "%pip install /src/nopdb-lab"),
        (
            {"url": "file:///home/me/my%20code", "dir_info": {"editable": True}},
            "%pip install -e '/home/me/my code'",
        ),
    ],
)
def test_install_command_reinstalls_the_servers_own_copy(monkeypatch, direct_url, expected):
    monkeypatch.setattr(
        server_extension.metadata, "distribution", lambda name: _FakeDistribution(direct_url)
    )
    assert server_extension.install_command() == expected


def test_package_json_and_python_versions_agree():
    import pathlib

    import nopdb_lab

    package = pathlib.Path(__file__).resolve().parent.parent / "package.json"
    assert json.loads(package.read_text())["version"] == nopdb_lab.__version__
