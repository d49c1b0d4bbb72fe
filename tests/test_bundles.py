"""Capture bundles: round trips in a fresh process, hostile files, laziness, old versions.

The round trip compares a canonical description of every record (its fields, each
tensor's dtype, shape and a hash of its raw bytes, container types and key types) made
from the live records here with the same description made from the loaded records in a
separate Python process that never saw the originals.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import json
import os
import random
import struct
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, List

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

import nopdb_lab as nopdb  # noqa: E402
from nopdb_lab.bundle import (  # noqa: E402
    VERSION,
    BundleError,
    SavedError,
    UnknownObject,
    load_captures,
    open_bundle,
    save_captures,
)
from nopdb_lab.capture_store import CaptureStore  # noqa: E402

from . import sample_code as sc  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent


def _module(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(names)


stacking = _module("nopdb_lab.analysis.stacking", "nopdb_lab.stacking")
compare_mod = _module("nopdb_lab.analysis.compare")


# -- canonical description (shared with the fresh process) ------------------------------
def canon(value: Any, depth: int = 0) -> Any:
    """A JSON-able description that is equal exactly when two values are equal (tensors
    by dtype, shape and raw bytes), and that keeps container and key types."""
    import numpy
    import torch as t

    from nopdb_lab.bundle import SavedError as Saved
    from nopdb_lab.bundle import UnknownObject as Unknown

    if value is None or isinstance(value, (bool, str)):
        return value
    if type(value) is int:
        return ["int", value]
    if type(value) is float:
        return ["float", repr(value)]
    if isinstance(value, t.Tensor):
        dense = value.detach()
        layout = str(dense.layout)
        if dense.layout != t.strided:
            dense = dense.to_dense()
        dense = dense.cpu().contiguous()
        raw = dense.reshape(-1).view(t.uint8).numpy().tobytes() if dense.numel() else b""
        return [
            "tensor",
            str(dense.dtype),
            list(dense.shape),
            hashlib.sha256(raw).hexdigest(),
            bool(value.requires_grad),
            layout,
        ]
    if isinstance(value, numpy.ndarray):
        data = numpy.ascontiguousarray(value)
        data = data.astype(data.dtype.newbyteorder("="))  # bundles store little-endian
        return [
            "ndarray",
            data.dtype.str,
            list(data.shape),
            hashlib.sha256(data.tobytes()).hexdigest(),
        ]
    if type(value) is tuple:
        return ["tuple", [canon(v, depth + 1) for v in value]]
    if type(value) is list:
        return ["list", [canon(v, depth + 1) for v in value]]
    if isinstance(value, dict):
        return [type(value).__name__, [[canon(k), canon(v, depth + 1)] for k, v in value.items()]]
    if type(value) is bytes:
        return ["bytes", value.hex()]
    if isinstance(value, Saved):
        return ["exception", value.type_name, value.message]
    if isinstance(value, BaseException):
        return ["exception", type(value).__qualname__, str(value)]
    if type(value).__name__ in ("ActionError", "BundledActionError"):
        return ["action_error", value.action, value.message]
    if isinstance(value, Unknown):
        return ["object", value.type_name, value.text]
    from nopdb_lab import bundle

    bundle._register_builtin_value_types()
    name = bundle._value_type_names.get(type(value))
    if name is not None:  # plain data holders (a lazy attention's inputs) keep their fields
        return ["state", name, {k: canon(v, depth + 1) for k, v in vars(value).items()}]
    kind = type(value)
    return ["object", f"{kind.__module__}.{kind.__qualname__}", repr(value)]


# not saved (docs/bundles.md): globals; a CallCapture's scope; the live breakpoint (described)
SKIP_FIELDS = {"id", "globals", "scope", "breakpoint", "original_id", "bundle"}


def canon_record(record: Any) -> dict:
    fields = {
        name: canon(value)
        for name, value in vars(record).items()
        if not name.startswith("_") and name not in SKIP_FIELDS
    }
    if record.kind == "call":
        fields["raw_stack"] = [list(f) for f in record.raw_stack]
    if record.kind == "attention":
        fields["weights"] = canon(record.weights)
    stack = record.stack
    return {
        "kind": record.kind,
        "fields": fields,
        "stack": [[f.filename, f.lineno, f.name, f.line] for f in (stack or [])],
    }


# -- records of every kind -------------------------------------------------------------
class Opaque:
    def __repr__(self) -> str:
        return "Opaque(42)"


def every_dtype_tensors() -> dict:
    """One small tensor of every plain torch dtype (random bytes viewed as that dtype)."""
    generator = torch.Generator().manual_seed(0)
    out = {}
    for name in dir(torch):
        dtype = getattr(torch, name)
        if not isinstance(dtype, torch.dtype) or str(dtype).startswith(
            ("torch.qint", "torch.quint")
        ):
            continue
        raw = torch.randint(0, 256, (6 * dtype.itemsize,), dtype=torch.uint8, generator=generator)
        out[str(dtype).removeprefix("torch.")] = raw.view(dtype).reshape(2, 3)
    return out


def build_records(store: CaptureStore) -> List[Any]:
    """A call (with an exception, yields, every dtype), a breakpoint hit with evals and an
    error, attention records, a stack with rollout and a compare, all in ``store``."""
    import torch.nn.functional as F

    store.enable()
    try:
        with nopdb.capture_call(sc.add_one) as call:
            sc.add_one(torch.arange(6.0).reshape(2, 3))
        with nopdb.breakpoint(function=sc.add_one, line="z = y * 2", keep_locals=True) as bp:
            bp.eval("y + 1")
            bp.eval("undefined_name")
            sc.add_one(np.arange(4, dtype=np.int16))
        torch.manual_seed(0)
        q = torch.randn(1, 2, 4, 8)

        def layer(x: Any) -> Any:
            attn = F.softmax(x @ x.transpose(-1, -2), dim=-1)
            return attn

        with nopdb.capture_calls(layer) as calls:
            for i in range(3):
                layer(q + i)
        with nopdb.capture_attention() as attention:
            F.scaled_dot_product_attention(q, q, q, is_causal=True)
    finally:
        store.disable()
    shared = torch.arange(12.0).reshape(3, 4)
    bf16 = torch.randn(4, 4).to(torch.bfloat16)
    dtypes = every_dtype_tensors()
    call.locals["everything"] = {
        "dtypes": dtypes,
        "shared_a": shared,
        "shared_b": shared,
        "view": shared[1:, ::2],
        "transposed": shared.t(),
        "bf16": bf16,
        "grad": torch.ones(3, requires_grad=True),
        "sparse": torch.eye(3).to_sparse(),
        "csr": torch.eye(3).to_sparse_csr(),
        "numpy": np.arange(6, dtype=np.float32).reshape(2, 3),
        "numpy_big_endian": np.arange(3, dtype=">i4"),
        "numpy_bool": np.array([True, False]),
        "numpy_view": np.arange(10.0)[::3],
        "nested": {"t": (1, [2.5, {"deep": (None, True)}], "s"), 7: "int key", (1, 2): "tuple key"},
        "ordered": collections.OrderedDict(b=1, a=2),
        "specials": [float("nan"), float("inf"), -float("inf"), 2**80, b"\x00\xff"],
        "unknown": Opaque(),
        "code_text": "__import__('os').system('echo pwned')",
    }
    call.yields = [torch.zeros(2), 3]
    call.exception = RuntimeError("the call failed")
    stack = stacking.stack_captures(store, calls[0].id, ["return_value"])
    store.add(stack)  # published while the store was not recording
    compared = compare_mod.compare(
        (calls[0].id, "return_value"), (calls[1].id, "return_value"), store=store
    )
    call.grads = {"x": torch.full((2, 3), 0.5)}  # later record kinds add grads like this
    hit = bp.hits[0]
    return [call, hit, *attention, stack, compared]


def describe_bundle(path: str) -> str:
    """What the fresh process prints: loaded records described canonically."""
    from nopdb_lab.capture_store import CaptureStore as Store

    target = Store()
    records = load_captures(path, target)
    return json.dumps(
        {
            "records": [canon_record(r) for r in records],
            "original_ids": [r.original_id for r in records],
            "bundle": [r.bundle for r in records],
            "ids_in_store": [r.id in target for r in records],
            "shared": records[0].locals["everything"]["shared_a"]
            is records[0].locals["everything"]["shared_b"],
            "cond": records[1].breakpoint.cond,
            "types": [type(r).__mro__[2].__name__ for r in records],
        }
    )


def run_fresh(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def store() -> CaptureStore:
    return CaptureStore()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: Any) -> tuple:
    store = CaptureStore()
    records = build_records(store)
    path = tmp_path_factory.mktemp("bundles") / "run1.nopdb"
    save_captures(path, records)
    return str(path), records


# -- round trip ------------------------------------------------------------------------
def test_round_trip_in_a_fresh_process_gives_equal_values_and_metadata(saved):
    path, records = saved
    out = json.loads(
        run_fresh(
            f"from tests.test_bundles import describe_bundle; print(describe_bundle({path!r}))"
        )
    )
    expected = [json.loads(json.dumps(canon_record(r))) for r in records]
    for want, got in zip(expected, out["records"], strict=True):
        assert got["kind"] == want["kind"]
        assert got["stack"] == want["stack"]
        assert got["fields"].keys() == want["fields"].keys(), want["kind"]
        for name in want["fields"]:
            assert got["fields"][name] == want["fields"][name], (want["kind"], name)
    assert out["original_ids"] == [r.id for r in records]
    assert out["bundle"] == ["run1.nopdb"] * len(records)
    assert all(out["ids_in_store"])
    assert out["shared"] is True
    assert out["types"] == [
        "CallInfo",
        "BreakpointHit",
        "AttentionRecord",
        "StackRecord",
        "CompareRecord",
    ]


def test_loaded_values_are_real_tensors_and_arrays_and_keep_their_types(saved, store):
    path, records = saved
    loaded = load_captures(path, store)
    call = loaded[0]
    everything = call.locals["everything"]
    assert type(everything["shared_a"]) is torch.Tensor
    assert type(everything["numpy"]) is np.ndarray
    assert everything["bf16"].dtype == torch.bfloat16
    assert torch.equal(everything["bf16"].float(), records[0].locals["everything"]["bf16"].float())
    assert everything["dtypes"]["float8_e4m3fn"].dtype == torch.float8_e4m3fn
    assert type(everything["nested"]["t"]) is tuple
    assert 7 in everything["nested"] and (1, 2) in everything["nested"]
    assert everything["unknown"] == UnknownObject("tests.test_bundles.Opaque", "Opaque(42)")
    assert everything["code_text"] == "__import__('os').system('echo pwned')"
    assert isinstance(call.exception, SavedError) and "the call failed" in str(call.exception)
    assert everything["grad"].requires_grad
    assert everything["sparse"].layout == torch.sparse_coo
    assert torch.equal(everything["view"], records[0].locals["everything"]["view"])
    assert call.globals is None  # never saved (docs/bundles.md)
    hit = loaded[1]
    assert hit.errors and hit.errors[0].message.startswith("NameError")
    assert "undefined_name" in hit.errors[0].message
    assert hit.evals["y + 1"].tolist() == [2, 3, 4, 5]
    assert hit.breakpoint.cond is None and hit.breakpoint.function == "add_one"
    # the stacked captures were not saved with it: the stack keeps their original ids
    assert loaded[3].source_ids == records[3].source_ids
    assert torch.equal(loaded[4].locals["diff"], records[4].locals["diff"])


def test_changing_a_loaded_value_never_changes_the_file(saved, store):
    path, _ = saved
    before = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    value = load_captures(path, store)[0].locals["everything"]["shared_a"]
    value.add_(1)
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == before
    fresh = load_captures(path, CaptureStore())[0].locals["everything"]["shared_a"]
    assert torch.equal(fresh, torch.arange(12.0).reshape(3, 4))


def test_shared_storage_is_written_once_and_views_as_their_own_values(tmp_path, store):
    safetensors = pytest.importorskip("safetensors")

    base = torch.arange(1000.0)
    info = nopdb.CallInfo()
    info.id = 1
    info.locals = {"a": base, "b": base, "c": base[10:20]}
    path = tmp_path / "shared.nopdb"
    save_captures(path, [info])
    with safetensors.safe_open(str(path), framework="pt") as f:
        shapes = sorted(tuple(f.get_slice(k).get_shape()) for k in f.keys())
    assert shapes == [(10,), (1000,)]  # base once, the view as its own 10 values
    loaded = load_captures(path, store)[0]
    assert loaded.locals["a"] is loaded.locals["b"]
    assert torch.equal(loaded.locals["c"], base[10:20])


def test_loaded_records_count_against_the_budget_and_oversized_bundles_add_nothing(tmp_path):
    info = nopdb.CallInfo()
    info.id = 3
    info.locals = {"x": torch.zeros(1000, dtype=torch.float64)}
    path = tmp_path / "b.nopdb"
    save_captures(path, [info])
    roomy = CaptureStore()
    load_captures(path, roomy)
    assert 8000 <= roomy.nbytes < 8000 + 4096  # values, plus the record's own overhead
    tight = CaptureStore(budget=4000)
    with pytest.raises(BundleError, match="budget"):
        load_captures(path, tight)
    assert len(tight) == 0


def test_save_captures_defaults_to_the_whole_store_and_accepts_ids(tmp_path, monkeypatch):
    import nopdb_lab.capture_store as cs

    target = CaptureStore()
    monkeypatch.setattr(cs, "store", target)
    records = build_records(target)
    save_captures(tmp_path / "all.nopdb")
    assert len(open_bundle(tmp_path / "all.nopdb").manifest["records"]) == len(target)
    save_captures(tmp_path / "two.nopdb", [records[0].id, records[1]])
    assert [r["original_id"] for r in open_bundle(tmp_path / "two.nopdb").manifest["records"]] == [
        records[0].id,
        records[1].id,
    ]
    # the whole store was saved: the stack and compare point at the loaded sources' new ids
    loaded = load_captures(tmp_path / "all.nopdb", CaptureStore())
    by_original = {r.original_id: r for r in loaded}
    for kind in ("stack", "compare"):
        original = next(r for r in records if r.kind == kind)
        copy = by_original[original.id]
        assert copy.source_ids == [by_original[i].id for i in original.source_ids]
        assert copy.source_ids != original.source_ids


# -- hostile files -----------------------------------------------------------------------
def _small_bundle(tmp_path: Path) -> Path:
    info = nopdb.CallInfo()
    info.id = 9
    info.name = "f"
    info.args = {"x": torch.arange(16.0).reshape(4, 4)}
    info.locals = {"y": np.ones(3), "t": (1, "two")}
    path = tmp_path / "small.nopdb"
    save_captures(path, [info])
    return path


def _split(data: bytes) -> tuple:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _with_manifest(data: bytes, change: Any) -> bytes:
    header, body = _split(data)
    manifest = json.loads(header["__metadata__"]["manifest"])
    change(manifest, header)
    header["__metadata__"]["manifest"] = json.dumps(manifest)
    return _join(header, body)


def _hostile_cases(data: bytes) -> dict:
    header, body = _split(data)
    blob = next(k for k in header if k != "__metadata__")

    def offsets_outside(m: dict, h: dict) -> None:
        h[blob]["data_offsets"] = [0, len(body) + 4096]

    def huge_shape(m: dict, h: dict) -> None:
        ref = next(iter(m["tensors"]))
        m["tensors"][ref]["shape"] = [2**40, 2**40]

    def huge_blob_shape(m: dict, h: dict) -> None:
        h[blob]["shape"] = [2**62, 2**62]

    def dangling(m: dict, h: dict) -> None:
        m["records"][0]["attrs"]["args"]["v"][0] = {"$": "tensor", "ref": "t999"}

    def deep(m: dict, h: dict) -> None:
        value: Any = 1
        for _ in range(500):
            value = [value]
        m["records"][0]["attrs"]["locals"] = value

    def object_dtype(m: dict, h: dict) -> None:
        for entry in m["tensors"].values():
            if entry["kind"] == "numpy":
                entry["dtype"] = "|O"

    def newer(m: dict, h: dict) -> None:
        m["version"] = VERSION + 1

    def bad_tag(m: dict, h: dict) -> None:
        m["records"][0]["attrs"]["name"] = {"$": "pickle", "v": "gASVAAAA"}

    def bad_attr(m: dict, h: dict) -> None:
        m["records"][0]["attrs"]["__class__"] = "x"

    def bad_dtype(m: dict, h: dict) -> None:
        ref = next(iter(m["tensors"]))
        m["tensors"][ref]["dtype"] = "__import__('os')"

    def wrong_field_type(m: dict, h: dict) -> None:
        m["records"][0]["attrs"]["args"] = 5

    def errors_not_errors(m: dict, h: dict) -> None:
        m["records"][0]["attrs"]["errors"] = ["boom"]

    def property_clash(m: dict, h: dict) -> None:
        m["records"][0]["attrs"]["stack"] = []

    def dtype_mismatch(m: dict, h: dict) -> None:
        for entry in m["tensors"].values():
            if entry["encoding"] == "native":
                entry["dtype"] = "int32"

    return {
        "manifest dtype not the data's": _with_manifest(data, dtype_mismatch),
        "wrong field type": _with_manifest(data, wrong_field_type),
        "errors that are not errors": _with_manifest(data, errors_not_errors),
        "attribute shadowing a property": _with_manifest(data, property_clash),
        "truncated": data[:-7],
        "truncated header": data[: len(data) // 20],
        "empty": b"",
        "header size too big": struct.pack("<Q", 2**60) + data[8:],
        "header size past the end": struct.pack("<Q", len(data)) + data[8:],
        "not json": struct.pack("<Q", 8) + b"{not js}",
        "offsets outside the data": _with_manifest(data, offsets_outside),
        "huge declared shape": _with_manifest(data, huge_shape),
        "huge safetensors shape": _with_manifest(data, huge_blob_shape),
        "dangling tensor reference": _with_manifest(data, dangling),
        "deep nesting": _with_manifest(data, deep),
        "object dtype": _with_manifest(data, object_dtype),
        "newer version": _with_manifest(data, newer),
        "unknown value tag": _with_manifest(data, bad_tag),
        "dunder attribute": _with_manifest(data, bad_attr),
        "dtype text": _with_manifest(data, bad_dtype),
        "trailing bytes": data + b"\0" * 16,
    }


def test_hostile_files_are_refused_with_a_clear_error_and_add_nothing(tmp_path, store):
    data = _small_bundle(tmp_path).read_bytes()
    before = (store.ids(), store.nbytes)
    for name, hostile in _hostile_cases(data).items():
        path = tmp_path / f"{name.replace(' ', '_')}.nopdb"
        path.write_bytes(hostile)
        with pytest.raises(BundleError) as info:
            load_captures(path, store)
        assert len(str(info.value)) > 20, name
        assert (store.ids(), store.nbytes) == before, name


def test_pickles_and_plain_safetensors_files_are_not_bundles(tmp_path, store):
    import pickle

    save_file = pytest.importorskip("safetensors.torch").save_file
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.nopdb").write_bytes(pickle.dumps(Evil()))
    torch.save({"x": torch.ones(2)}, tmp_path / "torch.nopdb")
    save_file({"x": torch.ones(2)}, str(tmp_path / "plain.nopdb"))
    for name in ("evil", "torch", "plain"):
        with pytest.raises(BundleError):
            load_captures(tmp_path / f"{name}.nopdb", store)
    assert not marker.exists()
    assert len(store) == 0


def test_strings_that_are_code_load_as_inert_strings(tmp_path, store):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w')"
    info = nopdb.CallInfo()
    info.id = 4
    info.locals = {code: code, "x": [code]}
    info.name = code
    path = tmp_path / "code.nopdb"
    save_captures(path, [info])
    loaded = load_captures(path, store)[0]
    assert loaded.locals == {code: code, "x": [code]} and loaded.name == code
    assert not marker.exists()


def test_fuzzed_files_load_completely_or_raise_bundle_error_adding_nothing(tmp_path):
    """Seeded mutations: flipped bytes, truncations, and random JSON edits of the header
    and manifest. Each load either succeeds with every value readable, or raises
    BundleError and leaves the store as it was; nothing else may escape."""
    data = _small_bundle(tmp_path).read_bytes()
    header, body = _split(data)
    rng = random.Random(1234)
    path = tmp_path / "fuzz.nopdb"
    outcomes = collections.Counter()
    junk = [None, -1, 0, 2**70, 1.5, "x", "t0", [], {}, [1, 2], {"$": "tensor", "ref": "t0"}]

    def random_edit(node: Any, depth: int = 0) -> Any:
        if isinstance(node, dict) and node and depth < 12 and rng.random() < 0.8:
            key = rng.choice(list(node))
            node[key] = random_edit(node[key], depth + 1)
            return node
        if isinstance(node, list) and node and depth < 12 and rng.random() < 0.8:
            i = rng.randrange(len(node))
            node[i] = random_edit(node[i], depth + 1)
            return node
        return rng.choice(junk)

    for i in range(400):
        mode = i % 4
        if mode == 0:
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            mutated = bytes(mutated)
        elif mode == 1:
            mutated = data[: rng.randrange(len(data))]
        elif mode == 2:
            h = json.loads(json.dumps(header))
            h = random_edit(h)
            mutated = _join(h, body) if isinstance(h, dict) else data[:9]
        else:
            manifest = json.loads(header["__metadata__"]["manifest"])
            manifest = random_edit(manifest)
            h = json.loads(json.dumps(header))
            h["__metadata__"]["manifest"] = json.dumps(manifest)
            mutated = _join(h, body)
        path.write_bytes(mutated)
        store = CaptureStore()
        try:
            records = load_captures(path, store)
        except BundleError:
            outcomes["refused"] += 1
            assert len(store) == 0 and store.nbytes == 0
            continue
        except Exception:
            pytest.fail(f"mutation {i} escaped as a non-BundleError:\n{traceback.format_exc()}")
        outcomes["loaded"] += 1
        assert len(store) == len(records)
        for record in records:
            canon_record(record)  # every value reads
    assert outcomes["refused"] > 100


# -- laziness --------------------------------------------------------------------------
def _mapped_rss(path: str) -> int:
    """Resident bytes of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total = 0
    inside = False
    real = os.path.realpath(path)
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip().endswith(real)
            elif inside and first == "Rss:":
                total += int(line.split()[1]) * 1024
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_opening_is_lazy_and_a_slice_reads_only_its_pages(tmp_path, store):
    info = nopdb.CallInfo()
    info.id = 1
    info.locals = {"big": torch.zeros(4096, 4096)}  # 64 MiB
    path = tmp_path / "big.nopdb"
    save_captures(path, [info])
    del info
    big = load_captures(path, store)[0].locals["big"]
    assert _mapped_rss(str(path)) <= 64 * 1024  # opening touched no tensor pages
    row = big[1000, :256].clone()  # 1 KiB of the 64 MiB
    assert torch.equal(row, torch.zeros(256))
    touched = _mapped_rss(str(path))
    # one page plus the kernel's fault-around window, or one 2 MiB large folio where the
    # file system caches files in them (ext4 and tmpfs on recent kernels): never the other ~62 MiB
    assert 0 < touched <= 2 * 1024 * 1024, touched
    # the budget counts the whole value (and the record's small overhead)
    assert 64 * 1024 * 1024 <= store.nbytes < 64 * 1024 * 1024 + 4096


def test_read_slice_goes_through_safetensors(saved):
    pytest.importorskip("safetensors")
    path, records = saved
    bundle = open_bundle(path)
    ref = next(
        r for r, e in bundle.tensors.items() if e["encoding"] == "native" and len(e["shape"]) == 2
    )
    full = bundle.tensor(ref)
    assert torch.equal(bundle.read_slice(ref, slice(0, 1)), full[0:1])


# -- format versions -------------------------------------------------------------------
def v1_fixture_records() -> List[Any]:
    """The records frozen in tests/data/bundle_v1.nopdb (fixed values, ids and times)."""
    info = nopdb.CallInfo()
    info.id = 11
    info.name = "forward"
    info.qualname = "Block.forward"
    info.file = "/models/block.py"
    info.lineno = 12
    info.start_time, info.end_time = 1700000000.0, 1700000000.5
    info.thread = "MainThread"
    info.args = collections.OrderedDict(x=torch.arange(6.0).reshape(2, 3))
    info.locals = {
        "h": torch.arange(4, dtype=torch.bfloat16),
        "n": np.arange(3, dtype=np.int32),
        "t": (1, "a", None),
        5: [1.5, {"k": True}],
    }
    info.return_value = torch.tensor([1, 2], dtype=torch.int8)
    info.exception = ValueError("bad")
    info.yields = []
    info._raw_stack = [("/models/run.py", 3, "<module>"), ("/models/block.py", 14, "forward")]
    return [info]


def test_a_version_1_bundle_still_loads(store):
    path = DATA / "bundle_v1.nopdb"
    assert open_bundle(path).version == 1
    loaded = load_captures(path, store)
    want = canon_record(v1_fixture_records()[0])
    got = canon_record(loaded[0])
    assert got["fields"] == want["fields"]
    assert [f[:3] for f in got["stack"]] == [f[:3] for f in want["stack"]]
    assert loaded[0].original_id == 11


def write_v1_fixture() -> None:
    """Regenerate the frozen fixture (only when deliberately freezing a new version)."""
    DATA.mkdir(exist_ok=True)
    save_captures(DATA / "bundle_v1.nopdb", v1_fixture_records())


def test_compare_needs_same_shapes_and_names_both_sides(store):
    a = nopdb.CallInfo()
    a.id, a.qualname, a.locals = 101, "f", {"x": torch.ones(2, 3)}
    b = nopdb.CallInfo()
    b.id, b.qualname, b.locals = 102, "g", {"x": torch.zeros(3, 2)}
    with pytest.raises(ValueError, match=r"shape \[2, 3\].*shape \[3, 2\]"):
        compare_mod.compare(a, b, store=store)
    b.locals["x"] = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 4.0]])
    result = compare_mod.compare(a, (b, "x"), store=store)
    assert result.kind == "compare" and store[result.id] is result
    assert "#101 f" in result.name and "#102 g" in result.name
    torch.testing.assert_close(result.locals["diff"], a.locals["x"] - b.locals["x"])
    expected = (a.locals["x"] - b.locals["x"]) / ((a.locals["x"].abs() + b.locals["x"].abs()) / 2)
    torch.testing.assert_close(result.locals["relative"], torch.nan_to_num(expected, nan=0.0))
    assert result.source_ids == [101, 102]


def test_capture_objects_save_directly(tmp_path, store):
    with nopdb.capture_call(sc.add_one) as call:
        sc.add_one(torch.ones(2))
    with nopdb.capture_calls(sc.add_one) as calls:
        sc.add_one(torch.zeros(2))
        sc.add_one(torch.full((2,), 3.0))
    save_captures(tmp_path / "one.nopdb", call)
    save_captures(tmp_path / "list.nopdb", calls)
    one = load_captures(tmp_path / "one.nopdb", store)
    many = load_captures(tmp_path / "list.nopdb", store)
    assert [r.original_id for r in one] == [call.id]
    assert not hasattr(one[0], "scope")  # the capture's set-up is not part of the call
    assert [r.original_id for r in many] == [c.id for c in calls]
    assert torch.equal(many[1].args["x"], torch.full((2,), 3.0))
    assert one[0].return_value.tolist() == call.return_value.tolist()


class ExperimentRecord:
    """A record kind this module does not know yet (like a later kind of record)."""

    kind = "experiment"

    def __init__(self) -> None:
        self.id = 77
        self.name = "train step"
        self.time = 1.0
        self.locals = {"loss": torch.tensor(0.25)}
        self.grads = {"w": torch.ones(2, 2)}
        self.raw_stack: list = []

    def held_values(self) -> list:
        return [*self.locals.values(), *self.grads.values()]


def test_unknown_kinds_load_generically_and_registered_kinds_as_their_class(tmp_path, store):
    from nopdb_lab import bundle

    path = tmp_path / "run.nopdb"
    save_captures(path, [ExperimentRecord()])
    loaded = load_captures(path, store)[0]
    assert isinstance(loaded, bundle.BundledRecord) and loaded.kind == "experiment"
    assert torch.equal(loaded.grads["w"], torch.ones(2, 2))
    assert loaded.value_parts() == ("locals", "grads")
    assert len(loaded.held_values()) == 2 and loaded.brief_fields() == {"errors": 0}
    bundle.register_kind("experiment", ExperimentRecord)
    try:
        again = load_captures(path, store)[0]
    finally:
        with bundle._kinds_lock:
            del bundle._kinds["experiment"]
    assert isinstance(again, ExperimentRecord) and again.original_id == 77
    assert again.locals["loss"].item() == 0.25 and again.name == "train step"


def test_layouts_without_a_sparse_counterpart_are_saved_dense(tmp_path, store):
    info = nopdb.CallInfo()
    info.id = 5
    info.locals = {"bsr": torch.eye(4).to_sparse_bsr((2, 2)), "csc": torch.eye(3).to_sparse_csc()}
    save_captures(tmp_path / "l.nopdb", [info])
    loaded = load_captures(tmp_path / "l.nopdb", store)[0].locals
    assert loaded["bsr"].layout == torch.strided and torch.equal(loaded["bsr"], torch.eye(4))
    assert loaded["csc"].layout == torch.sparse_csc
    assert torch.equal(loaded["csc"].to_dense(), torch.eye(3))
