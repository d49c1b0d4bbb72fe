"""The comm protocol's contract: its version, its error types, and request validation.

``protocol.schema.json`` (next to this module, shipped in the wheel) is the one source of
truth: the version is read from it, every incoming request is validated against it, the
tests validate every outgoing message against it, and the front end's TypeScript types
are generated from it. The prose is in ``docs/protocol.md``.
"""

from __future__ import annotations

import json
import pathlib
from functools import cache
from typing import Any, Dict, Tuple

from ..records import ProtocolError

SCHEMA_PATH = pathlib.Path(__file__).with_name("protocol.schema.json")
SCHEMA: Dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
#: A semantic version; a client whose major version differs is refused.
PROTOCOL_VERSION: str = SCHEMA["x-protocol-version"]
PIP_HINT = "%pip install -U nopdb-lab"


class VersionMismatchError(ProtocolError):
    """The front end speaks another major version of the protocol than this kernel."""


def major(version: Any) -> int | None:
    """The major part of ``"2.0.0"``; None for anything that is not a semantic version."""
    if not isinstance(version, str):
        return None
    head, _, _ = version.partition(".")
    return int(head) if head.isdigit() else None


def check_version(client: Any) -> None:
    """Refuse a client whose protocol major version is not this kernel's."""
    if major(client) != major(PROTOCOL_VERSION):
        raise VersionMismatchError(
            f"the kernel's nopdb_lab speaks protocol {PROTOCOL_VERSION}, this front end "
            f"{client!r}: run `{PIP_HINT}` in the notebook and restart the kernel, or update "
            "the JupyterLab extension (the same nopdb-lab version on both sides)"
        )


@cache
def _validator(definition: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{definition}"})


def field_of(error: Any) -> str:
    """The request field a validation error is about, as a dotted path (``args.enabled``)."""
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        path.append(missing)
    elif error.validator == "additionalProperties" and "'" in error.message:
        path.append(error.message.split("'")[1])
    return ".".join(str(p) for p in path if p != "")


def schema_error(instance: Any, definition: str) -> Tuple[str, str] | None:
    """The first (field, message) by which ``instance`` fails ``$defs/definition``."""
    import jsonschema

    errors = sorted(
        _validator(definition).iter_errors(instance),
        key=lambda e: (-len(list(e.absolute_path)), str(e.message)),
    )
    if not errors:
        return None
    best = jsonschema.exceptions.best_match(errors)
    assert best is not None
    return field_of(best), best.message


class RequestError(ProtocolError):
    """A request that fails the schema; ``field`` names the offending field."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def validate_request(data: Any) -> Tuple[str, Dict[str, Any]]:
    """Check a request's envelope, version, op and arguments; returns (op, args).

    Raises :class:`VersionMismatchError` or :class:`RequestError` (naming the field).
    """
    if not isinstance(data, dict):
        raise RequestError(f"a request is a JSON object, not {type(data).__name__}")
    check_version(data.get("v"))
    op = data.get("op")
    definition = _request_definition(op)
    if definition is None:
        raise RequestError(f"unknown request {op!r}", "op")
    problem = schema_error(data, definition)
    if problem is not None:
        field, message = problem
        raise RequestError(f"{field or 'request'}: {message}", field)
    return op, dict(data.get("args") or {})


def _request_definition(op: Any) -> str | None:
    if not isinstance(op, str) or op not in SCHEMA["x-ops"]:
        return None
    return "".join(part.capitalize() for part in op.split("_")) + "Request"
