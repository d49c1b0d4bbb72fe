"""nopdb-lab's jupyter-server extension.

It serves one authenticated endpoint, ``GET <base_url>/nopdb-lab/info``: this server's
nopdb-lab version, the kernel protocol it speaks, and the ``%pip install`` line that puts
the same copy of nopdb-lab into a kernel's environment (a kernel may run another Python
than the server). Only the server can know how its own copy was installed, which is why
this lives here; everything else goes through the kernel comm.
"""

from __future__ import annotations

import json
import shlex
from importlib import metadata
from typing import Any, Dict
from urllib.parse import unquote, urlparse

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .._version import __version__

DISTRIBUTION = "nopdb-lab"


def install_command() -> str:
    """A notebook line that installs this server's copy of nopdb-lab into the kernel."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return f"%pip install {DISTRIBUTION}=={__version__}"
    direct_url = dist.read_text("direct_url.json")  # PEP 610, written by pip
    if direct_url:
        info: Dict[str, Any] = json.loads(direct_url)
        url = info.get("url", "")
        if url.startswith("file://"):
            path = unquote(urlparse(url).path)
            editable = info.get("dir_info", {}).get("editable", False)
            return f"%pip install {'-e ' if editable else ''}{shlex.quote(path)}"
    return f"%pip install {DISTRIBUTION}=={dist.version}"


def server_info() -> Dict[str, Any]:
    """What ``GET /nopdb-lab/info`` answers."""
    from .protocol import PROTOCOL_VERSION

    return {
        "version": __version__,
        "protocol": PROTOCOL_VERSION,
        "install_command": install_command(),
    }


class InfoHandler(APIHandler):
    """``GET /nopdb-lab/info`` (authenticated)."""

    @tornado.web.authenticated
    def get(self) -> None:
        self.finish(json.dumps(server_info()))


def _load_jupyter_server_extension(server_app: Any) -> None:
    web_app = server_app.web_app
    route = url_path_join(web_app.settings["base_url"], "nopdb-lab", "info")
    web_app.add_handlers(".*$", [(route, InfoHandler)])
    server_app.log.info("nopdb-lab server extension: serving %s", route)
