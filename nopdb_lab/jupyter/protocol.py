"""The comm protocol's contract: its version, its error types, and request validation.

``protocol.schema.json`` (next to this module, shipped in the wheel) is the one source of
truth: the version is read from it, every incoming request is validated against it, the
tests validate every outgoing message against it, and the front end's TypeScript types
are generated from it. The prose is in ``docs/protocol.md``.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, Tuple

from ..records import ProtocolError

SCHEMA_PATH = pathlib.Path(__file__).with_name("protocol.schema.json")
SCHEMA: Dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
#: A semantic version; a client whose major version differs is refused.
PROTOCOL_VERSION: str = SCHEMA["x-protocol-version"]
PIP_HINT = "%pip install -U nopdb-lab"


class VersionMismatchError(ProtocolError):
    """The front end speaks another major version of the protocol than this kernel."""

    field = "v"


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
            f"speaks {client!r}: run `{PIP_HINT}` in the notebook and restart the kernel, "
            "or update the JupyterLab extension (the same nopdb-lab version on both sides)"
        )


def _resolve(schema: Dict[str, Any]) -> Dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


_TYPES: Dict[str, Tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _type_ok(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False  # JSON's true is not a number
    return isinstance(value, _TYPES[name])


def schema_error(instance: Any, schema: Dict[str, Any], path: str = "") -> Tuple[str, str] | None:
    """The first (field, message) by which ``instance`` fails ``schema``, else None.

    A small validator for the keywords ``protocol.schema.json`` uses (type, properties,
    required, additionalProperties, items, enum, const, minimum, anyOf/oneOf, $ref), so
    that a kernel without the ``jsonschema`` package still validates every request; the
    tests check the kernel's messages with ``jsonschema`` itself.
    """
    schema = _resolve(schema)
    where = path or "request"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            problems = [schema_error(instance, option, path) for option in schema[key]]
            found = [p for p in problems if p]
            if len(found) == len(problems):
                return max(found, key=lambda p: len(p[0]))
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(instance, n) for n in names):
            return path, f"{where} must be {' or '.join(names)}, not {json.dumps(instance)}"
    if "const" in schema and instance != schema["const"]:
        return path, f"{where} must be {json.dumps(schema['const'])}"
    if "enum" in schema and instance not in schema["enum"]:
        options = ", ".join(json.dumps(o) for o in schema["enum"])
        return path, f"{where} must be one of {options}, not {json.dumps(instance)}"
    minimum = schema.get("minimum")
    if minimum is not None and _type_ok(instance, "number") and instance < minimum:
        return path, f"{where} must be at least {minimum}"
    if isinstance(instance, dict):
        return _object_error(instance, schema, path)
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            problem = schema_error(item, schema["items"], f"{path}.{i}" if path else str(i))
            if problem:
                return problem
    return None


def _object_error(
    instance: Dict[str, Any], schema: Dict[str, Any], path: str
) -> Tuple[str, str] | None:
    def sub(key: str) -> str:
        return f"{path}.{key}" if path else key

    properties = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in instance:
            return sub(key), f"{sub(key)} is missing"
    extra = schema.get("additionalProperties", True)
    for key, value in instance.items():
        problem: Tuple[str, str] | None = None
        if key in properties:
            problem = schema_error(value, properties[key], sub(key))
        elif extra is False:
            allowed = ", ".join(properties) or "nothing"
            return sub(key), f"{sub(key)} is not expected here (allowed: {allowed})"
        elif isinstance(extra, dict):
            problem = schema_error(value, extra, sub(key))
        if problem:
            return problem
    return None


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
    if definition is None or not isinstance(op, str):
        raise RequestError(f"unknown request {op!r}", "op")
    problem = schema_error(data, {"$ref": f"#/$defs/{definition}"})
    if problem is not None:
        field, message = problem
        raise RequestError(message, field)
    return op, dict(data.get("args") or {})


def _request_definition(op: Any) -> str | None:
    if not isinstance(op, str) or op not in SCHEMA["x-ops"]:
        return None
    return "".join(part.capitalize() for part in op.split("_")) + "Request"
