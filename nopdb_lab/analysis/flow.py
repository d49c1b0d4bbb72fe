"""Exact gradient flow between consecutive captured layers (vnittest's Sankey, computed).

Given the captured calls of a chain of functions (``capture_calls(nn.Conv2d.forward,
grads=True)`` around a forward and backward pass), layer 0 is the first call's input and
layer ``l + 1`` is call ``l``'s output. Each layer's elements are grouped into *nodes*
(pixels, tokens, channels, heads, pooled blocks, single elements or a user's grouping),
and the flow from layer ``l`` to layer ``l + 1`` through call ``l`` is the chain rule
split per node pair::

    F_l[i, j] = Σ_{p∈i} Σ_{q∈j} (∂a_{l+1,q} / ∂a_{l,p}) · g_{l+1,q}

so that ``Σ_j F_l[i, j] + bypass_l[i] = node_grads(l)[i]``: what reaches layer ``l``
through call ``l`` plus what reaches it another way (a residual connection, another
consumer). The *contribution* variant multiplies each term by ``a_{l,p}`` (first-order
attribution: its row sums are gradient × input per node).

How a transition is computed, fastest first (all exact):

* elementwise calls (ReLU, GELU, ...): the Jacobian is diagonal, one derivative pass;
* ``Conv1d``/``Conv2d`` with channel-free nodes (pixels, pooled blocks): a sparse closed
  form, one link per (output pixel, kernel tap), every input channel, any stride,
  padding (mode too), dilation and groups;
* otherwise one vector-Jacobian product per target node, batched in chunks so memory
  stays bounded: analytic for ``Linear``/``Conv`` (``v @ W``, transposed convolution),
  and ``torch.func.vjp`` + ``vmap`` of the re-invoked call for anything else.

Nothing here holds the autograd graph: flows are computed from the captured values,
the captured gradients and the functions themselves. torch is imported lazily.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    cast,
)

NodeSpec = Union[str, Tuple[str, int], Callable[[Tuple[int, ...]], Any]]
Region = Optional[Tuple[int, ...]]  # noqa: UP045 (a runtime alias on 3.10)

KINDS = ("gradient", "contribution")
MAX_ELEMENT_NODES = 16384
ELEMENTWISE_MODULES = (
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "GELU",
    "SiLU",
    "Tanh",
    "Sigmoid",
    "ELU",
    "CELU",
    "SELU",
    "Softplus",
    "Hardtanh",
    "Hardswish",
    "Hardsigmoid",
    "Mish",
    "Identity",
)
ELEMENTWISE_FUNCTIONS = (
    "relu",
    "relu6",
    "leaky_relu",
    "gelu",
    "silu",
    "tanh",
    "sigmoid",
    "elu",
    "celu",
    "selu",
    "softplus",
    "hardtanh",
    "hardswish",
    "hardsigmoid",
    "mish",
)


class FlowError(ValueError):
    """A flow cannot be computed as asked; the message says why and what to do."""


class MissingGradientError(FlowError, LookupError):
    """A gradient the flow needs was not captured or not reached by a backward pass."""


# -- nodes ------------------------------------------------------------------------------


@dataclass
class NodeMap:
    """How one layer's per-sample elements group into nodes.

    ``ids`` has the per-sample shape (the tensor's shape without its batch dimension)
    and holds each element's node index; ``grid`` is the nodes' layout for drawing
    (``(H, W)`` for pixels, ``(T,)`` for tokens); ``pool`` the pixel block size of a
    spatial grid (1 for pixels, ``k`` for ``("pool", k)``, 0 when not spatial).
    """

    ids: Any
    count: int
    grid: Tuple[int, ...]
    label: str
    pool: int = 0

    def channel_free(self) -> bool:
        """Whether every channel maps its pixels to the same nodes (spatial nodes)."""
        return self.ids.dim() >= 2 and bool((self.ids == self.ids[:1]).all())


def node_map(spec: NodeSpec, shape: Sequence[int]) -> NodeMap:
    """The node grouping ``spec`` applied to a layer of full shape ``shape``.

    The first dimension is the batch: nodes group elements of one sample, and a
    node's value sums over the samples (or uses one, see ``gradient_flow(sample=)``).
    """
    import torch

    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise FlowError(
            f"a layer of shape {shape} has no batch dimension plus data; nodes group the "
            "elements of one sample of a (batch, ...) tensor"
        )
    per = shape[1:]
    numel = math.prod(per)

    def along(dim: int, values: Any) -> Any:
        view = [1] * len(per)
        view[dim] = per[dim]
        return values.reshape(view).expand(per).contiguous()

    if callable(spec) and not isinstance(spec, str):
        ids = torch.as_tensor(spec(per)).long()
        if tuple(ids.shape) != per:
            raise FlowError(f"the node function returned shape {tuple(ids.shape)}, not {per}")
        if ids.numel() and int(ids.min()) < 0:
            raise FlowError("the node function returned a negative node id")
        count = int(ids.max()) + 1 if ids.numel() else 0
        return NodeMap(ids, count, (count,), getattr(spec, "__name__", "custom"))
    if isinstance(spec, tuple) and len(spec) == 2 and spec[0] in ("pool", "head"):
        name, k = spec
        if not isinstance(k, int) or k < 1:
            raise FlowError(f"{name!r} nodes need a positive integer, got {k!r}")
        if name == "pool":
            if len(per) < 2:
                raise FlowError(
                    f"('pool', k) nodes need a (batch, channels, *spatial) layer, got {shape}"
                )
            sp = per[1:]
            grid = tuple(-(-s // k) for s in sp)
            coords = torch.meshgrid(*[torch.arange(s) // k for s in sp], indexing="ij")
            flat = torch.zeros(sp, dtype=torch.long)
            for c, g in zip(coords, grid, strict=True):
                flat = flat * g + c
            return NodeMap(flat.expand(per).contiguous(), math.prod(grid), grid, f"pool{k}", k)
        d = per[-1]
        if d % k:
            raise FlowError(f"('head', {k}): the last dimension {d} does not split into {k} heads")
        ids = along(len(per) - 1, torch.arange(d) // (d // k))
        return NodeMap(ids, k, (k,), "head")
    if spec == "spatial":
        if len(per) < 2:
            raise FlowError(
                f"'spatial' nodes need a (batch, channels, *spatial) layer, got shape {shape}; "
                "use 'channel', 'token' or 'element' nodes for it"
            )
        sp = per[1:]
        ids = torch.arange(math.prod(sp)).reshape(sp).expand(per).contiguous()
        return NodeMap(ids, math.prod(sp), sp, "spatial", 1)
    if spec == "token":
        if len(per) < 2:
            raise FlowError(
                f"'token' nodes need a (batch, ..., tokens, features) layer, got {shape}"
            )
        dim = len(per) - 2
        return NodeMap(along(dim, torch.arange(per[dim])), per[dim], (per[dim],), "token")
    if spec == "channel":
        return NodeMap(along(0, torch.arange(per[0])), per[0], (per[0],), "channel")
    if spec == "feature":
        dim = len(per) - 1
        return NodeMap(along(dim, torch.arange(per[dim])), per[dim], (per[dim],), "feature")
    if spec == "head":
        if len(per) < 3:
            raise FlowError(
                f"'head' nodes need a (batch, heads, tokens, dim) layer, got {shape}; "
                "use ('head', n_heads) to split the last dimension"
            )
        return NodeMap(along(0, torch.arange(per[0])), per[0], (per[0],), "head")
    if spec == "element":
        if numel > MAX_ELEMENT_NODES:
            raise FlowError(
                f"'element' nodes are for small tensors: this layer has {numel} elements "
                f"per sample (limit {MAX_ELEMENT_NODES}); use 'spatial', 'channel', "
                "('pool', k) or a node function"
            )
        return NodeMap(torch.arange(numel).reshape(per), numel, per, "element")
    raise FlowError(
        f"unknown nodes {spec!r}: use 'spatial', 'token', 'channel', 'feature', 'head', "
        "('head', n), "
        "('pool', k), 'element' or a function of the per-sample shape returning node ids"
    )


def _full_ids(nm: NodeMap, batch: int, sample: int | None) -> Any:
    """Node ids of every element of the full (batch, ...) tensor, flat; -1 = left out."""
    import torch

    ids = nm.ids.reshape(1, -1).expand(batch, -1)
    if sample is not None:
        keep = torch.zeros(batch, 1, dtype=torch.bool)
        keep[sample] = True
        ids = torch.where(keep, ids, torch.full_like(ids, -1))
    return ids.reshape(-1)


def _segment_sum(values: Any, ids: Any, count: int) -> Any:
    """Sum ``values`` (..., n) into ``count`` bins along the last dim (ids < 0 dropped)."""
    import torch

    keep = ids >= 0
    if not bool(keep.all()):
        values = values[..., keep]
        ids = ids[keep]
    out = torch.zeros(values.shape[:-1] + (count,), dtype=values.dtype)
    return out.index_add_(values.dim() - 1, ids, values)


# -- records ----------------------------------------------------------------------------


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _describe(record: Any) -> str:
    return (
        getattr(record, "qualname", None) or getattr(record, "name", None) or type(record).__name__
    )


def _module_of(record: Any) -> Any:
    args = getattr(record, "args", None) or {}
    return args.get("self")


def _input_name(record: Any, wanted: str | None) -> str:
    args = getattr(record, "args", None)
    if not args:
        raise FlowError(f"{_describe(record)}: the record has no captured arguments")
    if wanted is not None:
        if wanted not in args or not _is_tensor(args[wanted]):
            raise FlowError(f"{_describe(record)} has no tensor argument {wanted!r}")
        return wanted
    for name, value in args.items():
        if name != "self" and _is_tensor(value):
            return name
    raise FlowError(f"{_describe(record)} was called without a tensor argument")


def _output_of(record: Any) -> Tuple[Any, int | None]:
    value = getattr(record, "return_value", None)
    if _is_tensor(value):
        return value, None
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            if _is_tensor(item):
                return item, i
    raise FlowError(
        f"{_describe(record)} returned {type(value).__name__}, not a tensor (or a tuple "
        "holding one); an exception, or a capture without return values?"
    )


def _grad_lookup(record: Any, section: str, name: str | None, what: str) -> Any:
    grads = getattr(record, "grads", None)
    if grads is None:
        raise MissingGradientError(
            f"{what}: {_describe(record)} was captured without gradients (use "
            "capture_calls(..., grads=True) and run a backward pass)"
        )
    try:
        value = grads[section] if name is None else grads[section][name]
    except KeyError as exc:
        reason = exc.args[0] if exc.args else str(exc)
        raise MissingGradientError(f"{what}: {reason}") from None
    if value is None:
        raise MissingGradientError(f"{what}: no backward pass has reached it yet")
    return value


# -- the functions of the calls -----------------------------------------------------------


def _callable_of(record: Any) -> Callable[..., Any]:
    """The function a record captured, to re-invoke on its captured arguments."""
    args = getattr(record, "args", None) or {}
    name = getattr(record, "name", None)
    owner = args.get("self")
    if owner is not None and name and hasattr(owner, name):
        return getattr(type(owner), name)
    globals_ = getattr(record, "globals", None) or {}
    fn = globals_.get(name) if name else None
    if callable(fn):
        return fn
    raise FlowError(
        f"cannot find the function {_describe(record)} to re-invoke; pass it as "
        "gradient_flow(..., functions={call_index: fn})"
    )


def _reinvoker(record: Any, fn: Callable[..., Any], input_name: str) -> Callable[[Any], Any]:
    """``x ↦ fn(captured args with input_name = x)`` returning the layer's output tensor."""
    args = dict(record.args)
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    positional: List[Tuple[bool, Any]] = []  # (is a parameter name, name or value)
    keywords: Dict[str, Any] = {}
    for pname, p in params.items():
        if pname not in args:
            continue
        if p.kind == inspect.Parameter.VAR_POSITIONAL:
            positional.extend((False, v) for v in args[pname])
        elif p.kind == inspect.Parameter.VAR_KEYWORD:
            keywords.update(args[pname])
        elif p.kind == inspect.Parameter.POSITIONAL_ONLY:
            positional.append((True, pname))
        else:
            keywords[pname] = args[pname]
    if not params:
        keywords = args
    _, index = _output_of(record)

    def call(x: Any) -> Any:
        pos = [(x if v == input_name else args[v]) if named else v for named, v in positional]
        kw = {k: (x if k == input_name else v) for k, v in keywords.items()}
        out = fn(*pos, **kw)
        return out if index is None else out[index]

    return call


def _elementwise(record: Any) -> bool:
    module = _module_of(record)
    if module is not None:
        return type(module).__name__ in ELEMENTWISE_MODULES and _is_torch_module(module)
    return getattr(record, "name", None) in ELEMENTWISE_FUNCTIONS and (
        (getattr(record, "globals", None) or {}).get("__name__") == "torch.nn.functional"
    )


def _is_torch_module(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


def _conv_geometry(module: Any, in_shape: Sequence[int]) -> Dict[str, Any] | None:
    """Stride, dilation, kernel and (left, right) padding per spatial dim of a conv."""
    import torch

    if not isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)) or isinstance(
        module, (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d)
    ):
        return None
    kernel = tuple(module.kernel_size)
    dilation = tuple(module.dilation)
    stride = tuple(module.stride)
    if isinstance(module.padding, str):
        if module.padding == "valid":
            pads = [(0, 0)] * len(kernel)
        else:  # "same": torch pads total d·(k-1), the smaller half first
            pads = []
            for k, d in zip(kernel, dilation, strict=True):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
    else:
        pads = [(p, p) for p in module.padding]
    return {
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "padding": pads,
        "mode": module.padding_mode,
        "groups": module.groups,
    }


def _geometry_of(record: Any) -> Dict[str, Any] | None:
    """Spatial geometry of a call (conv, pooling, elementwise), or None."""
    import torch

    module = _module_of(record)
    if _elementwise(record):
        return {"kernel": None}
    if module is None:
        return None
    x = record.args[_input_name(record, None)]
    geo = _conv_geometry(module, x.shape)
    if geo is not None:
        return geo
    pools = (torch.nn.MaxPool1d, torch.nn.MaxPool2d, torch.nn.AvgPool1d, torch.nn.AvgPool2d)
    if isinstance(module, pools):
        nd = 1 if "1d" in type(module).__name__ else 2

        def tup(v: Any) -> Tuple[int, ...]:
            return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd

        dil = tup(getattr(module, "dilation", 1))
        return {
            "kernel": tup(module.kernel_size),
            "stride": tup(module.stride or module.kernel_size),
            "dilation": dil,
            "padding": [(p, p) for p in tup(module.padding)],
        }
    return None


# -- links ------------------------------------------------------------------------------


@dataclass
class Links:
    """One transition's flow: dense ``(N_src, N_dst)`` or sparse COO (unique pairs)."""

    n_src: int
    n_dst: int
    dense: Any = None
    src: Any = None
    dst: Any = None
    value: Any = None
    method: str = ""

    def row_sums(self) -> Any:
        import torch

        if self.dense is not None:
            return self.dense.sum(1)
        return torch.zeros(self.n_src, dtype=self.value.dtype).index_add_(0, self.src, self.value)

    def to_dense(self) -> Any:
        import torch

        if self.dense is not None:
            return self.dense
        out = torch.zeros(self.n_src * self.n_dst, dtype=self.value.dtype)
        out.index_add_(0, self.src * self.n_dst + self.dst, self.value)
        return out.reshape(self.n_src, self.n_dst)

    def coo(self) -> Tuple[Any, Any, Any]:

        if self.dense is not None:
            nz = self.dense.nonzero(as_tuple=True)
            return nz[0], nz[1], self.dense[nz]
        return self.src, self.dst, self.value


def _aggregate(
    src: Any, dst: Any, value: Any, n_src: int, n_dst: int, max_dense: int, method: str
) -> Links:
    """Element- or pixel-level links summed onto unique node pairs."""
    import torch

    keep = (src >= 0) & (dst >= 0)
    src, dst, value = src[keep], dst[keep], value[keep]
    key = src * n_dst + dst
    # dense when it is small and not mostly empty; a conv's links are a few per target
    if n_src * n_dst <= min(max_dense, 16 * key.numel() + 4096):
        dense = torch.zeros(n_src * n_dst, dtype=value.dtype).index_add_(0, key, value)
        return Links(n_src, n_dst, dense=dense.reshape(n_src, n_dst), method=method)
    uniq, inverse = torch.unique(key, return_inverse=True)
    summed = torch.zeros(uniq.numel(), dtype=value.dtype).index_add_(0, inverse, value)
    return Links(n_src, n_dst, src=uniq // n_dst, dst=uniq % n_dst, value=summed, method=method)


def _topk_select(
    src: Any, dst: Any, value: Any, top_k: int, threshold: float | None
) -> Tuple[Any, Any, Any]:
    import torch

    if threshold is not None:
        keep = value.abs() >= threshold
        src, dst, value = src[keep], dst[keep], value[keep]
    keep = value != 0
    src, dst, value = src[keep], dst[keep], value[keep]
    if value.numel() > top_k:
        order = torch.topk(value.abs(), top_k, sorted=True).indices
    else:
        order = torch.argsort(value.abs(), descending=True, stable=True)
    return src[order], dst[order], value[order]


# -- the flow ---------------------------------------------------------------------------


class GradientFlow:
    """Exact per-node gradient flow between consecutive captured layers.

    Built by :func:`gradient_flow`; see the module docstring for the definitions.
    Layer ``l`` is the first call's input (``l = 0``) or call ``l - 1``'s output.
    """

    def __init__(
        self,
        records: Sequence[Any],
        nodes: Union[NodeSpec, Sequence[NodeSpec]] = "spatial",
        kind: str = "gradient",
        *,
        sample: int | None = None,
        input_name: str | None = None,
        functions: Dict[int, Callable[..., Any]] | None = None,
        max_dense: int = 4_000_000,
        chunk_elements: int = 1 << 22,
    ) -> None:
        import torch

        records = list(records)
        if not records:
            raise FlowError(
                "no captured calls: was the model run inside the capture, and does the "
                "captured function match the layers it calls?"
            )
        if kind not in KINDS:
            raise FlowError(f"kind must be one of {KINDS}, got {kind!r}")
        self.records = sorted(
            records,
            key=lambda r: (getattr(r, "start_time", None) or 0.0, getattr(r, "id", 0) or 0),
        )
        self.kind = kind
        self.sample = sample
        self.max_dense = int(max_dense)
        self.chunk_elements = int(chunk_elements)
        self._functions = dict(functions or {})
        self._input_names = [_input_name(r, input_name) for r in self.records]
        inputs = [r.args[n] for r, n in zip(self.records, self._input_names, strict=True)]
        outputs = [_output_of(r)[0] for r in self.records]
        self._tensors = [inputs[0]] + outputs
        self._inputs = inputs
        specs = cast(
            List[NodeSpec], list(nodes) if isinstance(nodes, list) else [nodes] * len(self._tensors)
        )
        if len(specs) != len(self._tensors):
            raise FlowError(f"nodes: {len(specs)} specs for {len(self._tensors)} layers")
        batch = int(self._tensors[0].shape[0]) if self._tensors[0].dim() else 0
        if sample is not None and not 0 <= sample < batch:
            raise FlowError(f"sample {sample} is out of range for a batch of {batch}")
        self._maps = [node_map(s, t.shape) for s, t in zip(specs, self._tensors, strict=True)]
        self._joined: List[bool] = []
        for k in range(1, len(self.records)):
            prev, x = outputs[k - 1], inputs[k]
            if tuple(prev.shape) != tuple(x.shape):
                raise FlowError(
                    f"call {k} ({_describe(self.records[k])}) takes a {tuple(x.shape)} input "
                    f"but call {k - 1} returned {tuple(prev.shape)}: something uncaptured "
                    "runs between them (capture it too, e.g. with a second capture_calls, "
                    "and pass both lists)"
                )
            same = prev is x or (
                prev.dtype == x.dtype and torch.equal(prev.detach().cpu(), x.detach().cpu())
            )
            self._joined.append(bool(same))
        self._cache: Dict[Tuple[int, str], Links] = {}
        self.layers: List[Dict[str, Any]] = []
        for i, (t, nm) in enumerate(zip(self._tensors, self._maps, strict=True)):
            origin = "input of call 0" if i == 0 else f"output of call {i - 1}"
            rec = self.records[0 if i == 0 else i - 1]
            self.layers.append(
                {
                    "index": i,
                    "name": "input" if i == 0 else _layer_name(rec, i - 1),
                    "origin": origin,
                    "shape": tuple(t.shape),
                    "nodes": nm.count,
                    "grid": nm.grid,
                    "node_kind": nm.label,
                    # False: the next call's input is another tensor of the same shape
                    # (an uncaptured function or a residual sum in between): the flow is
                    # computed through the next call from its own input, and whatever
                    # the in-between part changes shows in the bypass.
                    "feeds_next_call": True
                    if i == 0 or i >= len(self.records)
                    else self._joined[i - 1],
                }
            )

    # -- basic quantities ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        parts = [f"{layer['name']} {'×'.join(map(str, layer['grid']))}" for layer in self.layers]
        return (
            f"<GradientFlow {self.kind}, {self.layers[0]['node_kind']} nodes: {' → '.join(parts)}>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Dict[str, Any]:
        """``display(flow)``: the extension's interactive flow view (``docs/display.md``),
        a PNG of each layer's node gradients where it is not installed, and the text."""
        from .display import flow_bundle

        return flow_bundle(self, include, exclude)

    def _check_transition(self, layer: int) -> None:
        if not 0 <= layer < len(self.records):
            raise FlowError(
                f"layer {layer} has no next layer: transitions are 0..{len(self.records) - 1} "
                f"({len(self.layers)} layers)"
            )

    def _layer_grad(self, layer: int) -> Any:
        if not 0 <= layer < len(self.layers):
            raise FlowError(f"no layer {layer}: the flow has layers 0..{len(self.layers) - 1}")
        if layer == 0:
            rec, name = self.records[0], self._input_names[0]
            g = _grad_lookup(
                rec, "args", name, f"layer 0 (input {name!r} of call 0, {_describe(rec)})"
            )
        else:
            rec = self.records[layer - 1]
            g = _grad_lookup(
                rec,
                "return_value",
                None,
                f"layer {layer} (output of call {layer - 1}, {_describe(rec)})",
            )
            _, index = _output_of(rec)
            if index is not None:
                try:
                    g = g[index]
                except (IndexError, KeyError, TypeError):
                    g = None
                if g is None:
                    raise MissingGradientError(
                        f"layer {layer}: item {index} of {_describe(rec)}'s return value "
                        "has no gradient"
                    )
        if tuple(g.shape) != tuple(self._tensors[layer].shape):
            raise FlowError(f"layer {layer}: gradient shape {tuple(g.shape)} != value shape")
        return g

    def _kind(self, kind: str | None) -> str:
        """The flow's kind, or ``kind`` for one request (both kinds share one flow)."""
        if kind is None:
            return self.kind
        if kind not in KINDS:
            raise FlowError(f"kind must be one of {KINDS}, got {kind!r}")
        return kind

    def node_grads(self, layer: int, kind: str | None = None) -> Any:
        """``(N_l,)`` float64: layer ``l``'s gradient summed over each node's elements
        (times the activation for the contribution kind)."""
        g = self._layer_grad(layer).detach().cpu().double()
        if self._kind(kind) == "contribution":
            g = g * self._tensors[layer].detach().cpu().double()
        nm = self._maps[layer]
        ids = _full_ids(nm, g.shape[0], self.sample)
        return _segment_sum(g.reshape(-1), ids, nm.count)

    def node_values(self, layer: int) -> Any:
        """``(N_l,)`` float64: layer ``l``'s values summed over each node's elements (the
        layer's representation: for spatial nodes, vnittest's pixel with its channels
        summed), beside :meth:`node_grads` in the view's input and target heatmaps."""
        if not 0 <= layer < len(self.layers):
            raise FlowError(f"no layer {layer}: the flow has layers 0..{len(self.layers) - 1}")
        v = self._tensors[layer].detach().cpu().double()
        nm = self._maps[layer]
        ids = _full_ids(nm, v.shape[0], self.sample)
        return _segment_sum(v.reshape(-1), ids, nm.count)

    def transition(self, layer: int, kind: str | None = None) -> Links:
        """The flow of transition ``l`` (layer ``l`` → ``l + 1``), computed once.

        Raises :class:`FlowError` when it is too big to keep (see :meth:`links`)."""
        self._check_transition(layer)
        key = (layer, self._kind(kind))
        if key not in self._cache:
            links = self._compute(layer, key[1])
            if links is None:
                n_src, n_dst = self._maps[layer].count, self._maps[layer + 1].count
                raise FlowError(self._too_big(layer, n_src, n_dst, "computing it in full"))
            self._cache[key] = links
        return self._cache[key]

    def _too_big(self, layer: int, n_src: int, n_dst: int, what: str) -> str:
        n = n_src * n_dst
        return (
            f"transition {layer}: {what} needs a dense {n_src}×{n_dst} matrix ({n:,} entries, "
            f"{n * 8 / 2**20:.0f} MiB) over max_dense={self.max_dense:,}; use "
            f"flow.links({layer}, top_k=...) (streamed), coarser nodes (('pool', k), 'channel') "
            "or gradient_flow(..., max_dense=...)"
        )

    def matrix(self, layer: int, kind: str | None = None) -> Any:
        """Dense ``(N_l, N_{l+1})`` float64 flow of transition ``l``."""
        self._check_transition(layer)
        n_src, n_dst = self._maps[layer].count, self._maps[layer + 1].count
        if n_src * n_dst > self.max_dense:
            raise FlowError(self._too_big(layer, n_src, n_dst, "flow.matrix"))
        return self.transition(layer, kind).to_dense()

    def bypass(self, layer: int, kind: str | None = None) -> Any:
        """``(N_l,)``: gradient reaching layer ``l`` other than through call ``l``
        (residual connections, other consumers, functions between captured calls);
        zero up to rounding for a plain chain."""
        return self.node_grads(layer, kind) - self.transition(layer, kind).row_sums()

    def links(
        self,
        layer: int,
        top_k: int = 2000,
        threshold: float | None = None,
        src_region: Region = None,
        dst_region: Region = None,
        kind: str | None = None,
    ) -> Tuple[Any, Any, Any]:
        """The ``top_k`` strongest links ``(src, dst, value)`` by |value|, strongest first.

        ``threshold`` drops links with |value| below it; ``src_region``/``dst_region``
        keep nodes inside a box of the layer's node grid (``(y0, y1, x0, x1)``, half
        open like slices; ``(i0, i1)`` for a 1-D grid). Both apply before the top-k.
        Transitions too big to keep are streamed in chunks of target nodes.
        """
        import torch

        self._check_transition(layer)
        if not isinstance(top_k, int) or top_k < 1:
            raise FlowError(
                f"top_k must be a positive integer (links never lists all of them), got {top_k!r}"
            )
        src_keep = self._region_mask(layer, src_region)
        dst_keep = self._region_mask(layer + 1, dst_region)
        kind = self._kind(kind)
        if (layer, kind) in self._cache or self._fits(layer):
            src, dst, value = self.transition(layer, kind).coo()
            keep = torch.ones_like(src, dtype=torch.bool)
            if src_keep is not None:
                keep &= src_keep[src]
            if dst_keep is not None:
                keep &= dst_keep[dst]
            return _topk_select(src[keep], dst[keep], value[keep], top_k, threshold)
        best: Tuple[Any, Any, Any] | None = None
        for cols, block in self._stream(layer, dst_keep, kind, self._vjp(layer)[0]):
            rows = torch.arange(block.shape[0]).repeat_interleave(block.shape[1])
            colv = cols.repeat(block.shape[0])
            vals = block.reshape(-1)
            if src_keep is not None:
                k = src_keep[rows]
                rows, colv, vals = rows[k], colv[k], vals[k]
            cand = _topk_select(rows, colv, vals, top_k, threshold)
            if best is not None:
                joined = [torch.cat([a, b]) for a, b in zip(best, cand, strict=True)]
                cand = _topk_select(joined[0], joined[1], joined[2], top_k, None)
            best = cand
        if best is None:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, torch.zeros(0, dtype=torch.float64)
        return best

    def to_wire(
        self,
        layer: int,
        top_k: int = 2000,
        threshold: float | None = None,
        regions: Dict[str, Region] | None = None,
        kind: str | None = None,
    ) -> Dict[str, Any]:
        """Compact arrays for the front end: int32 ``src``/``dst``, float32 ``value``,
        both layers' float32 node gradients and grids, and the total nonzero link count."""
        import numpy as np

        regions = regions or {}
        kind = self._kind(kind)
        src, dst, value = self.links(
            layer,
            top_k,
            threshold,
            src_region=regions.get("src"),
            dst_region=regions.get("dst"),
            kind=kind,
        )
        out: Dict[str, Any] = {
            "layer": layer,
            "kind": kind,
            "src": src.numpy().astype(np.int32),
            "dst": dst.numpy().astype(np.int32),
            "value": value.numpy().astype(np.float32),
            "grid": [list(self._maps[layer].grid), list(self._maps[layer + 1].grid)],
            "total_links": self.link_count(layer, kind),
            # where the target layer's nodes sit on the source grid, and the source's on
            # the input (None when a call in between is not spatial)
            "offsets": {
                "target_on_source": self._offsets_or_none(layer + 1, layer),
                "source_on_input": self._offsets_or_none(layer, 0),
            },
        }
        for key, which in (("src_grads", layer), ("dst_grads", layer + 1)):
            try:
                out[key] = self.node_grads(which, kind).numpy().astype(np.float32)
            except MissingGradientError as exc:
                out[key] = None
                out[key + "_missing"] = str(exc)
        return out

    def link_count(self, layer: int, kind: str | None = None) -> int | None:
        """Nonzero node pairs of transition ``l`` (``None`` when it is only streamed)."""
        kind = self._kind(kind)
        if (layer, kind) in self._cache or self._fits(layer):
            links = self.transition(layer, kind)
            if links.dense is not None:
                return int((links.dense != 0).sum())
            return int((links.value != 0).sum())
        return None

    # -- offsets ------------------------------------------------------------------------
    def offsets(self, layer: int, to: int = 0) -> Dict[str, Any]:
        """Where the nodes of layer ``l`` sit on layer ``to``'s pixel grid (``to < l``).

        Node ``(y, x)`` of layer ``l`` depends on the pixels
        ``[y·stride + offset, y·stride + offset + extent)`` of layer ``to`` (per spatial
        dimension; negative offsets are padding): derived from the stride, padding,
        dilation and kernel of the convolutions (and poolings) in between, and the
        pooling of ``l``'s nodes. ``to == l`` gives the node's own pixels.
        """
        if not 0 <= to <= layer < len(self.layers):
            raise FlowError(f"offsets({layer}, to={to}): need 0 <= to <= l < {len(self.layers)}")
        nm = self._maps[layer]
        if not nm.pool:
            raise FlowError(f"layer {layer} has {nm.label} nodes, which have no pixel offsets")
        nd = len(nm.grid)
        stride = [nm.pool] * nd
        offset = [0] * nd
        extent = [nm.pool] * nd
        for k in range(layer - 1, to - 1, -1):
            geo = _geometry_of(self.records[k])
            if geo is None:
                raise FlowError(
                    f"call {k} ({_describe(self.records[k])}) is not a convolution, pooling or "
                    "elementwise function: its nodes have no spatial offsets"
                )
            if geo["kernel"] is None:
                continue
            kern = list(geo["kernel"])
            s = list(geo["stride"])
            d = list(geo["dilation"])
            p = [a for a, _ in geo["padding"]]
            if len(kern) == 1 and nd == 2:  # Conv1d on (B, C, L): grid is (L,)
                kern, s, d, p = [1] + kern, [1] + s, [1] + d, [0] + p
            if len(kern) != nd:
                raise FlowError(f"call {k}: a {len(kern)}-d kernel on a {nd}-d node grid")
            for i in range(nd):
                field = (kern[i] - 1) * d[i] + 1
                offset[i] = offset[i] * s[i] - p[i]
                extent[i] = (extent[i] - 1) * s[i] + field
                stride[i] = stride[i] * s[i]
        return {"stride": tuple(stride), "offset": tuple(offset), "extent": tuple(extent)}

    def receptive_field(self, layer: int, node: int, to: int = 0) -> Tuple[int, ...]:
        """The box ``(y0, y1, x0, x1)`` (half open, clipped) of layer ``to``'s pixels
        that node ``node`` of layer ``l`` depends on."""
        o = self.offsets(layer, to)
        coords = _unravel(node, self._maps[layer].grid)
        size = self._tensors[to].shape[2:]
        box: List[int] = []
        for c, s, off, ext, n in zip(
            coords, o["stride"], o["offset"], o["extent"], size, strict=True
        ):
            start = c * s + off
            box += [max(0, start), min(int(n), start + ext)]
        return tuple(box)

    def _offsets_or_none(self, layer: int, to: int) -> Dict[str, Any] | None:
        try:
            return self.offsets(layer, to)
        except FlowError:
            return None

    def target_field(self, layer: int, pixel: int, to: int) -> Tuple[int, ...]:
        """The box ``(y0, y1, x0, x1)`` (half open, clipped) of the nodes of a later layer
        ``to`` that depend on pixel ``pixel`` (a flat index) of layer ``layer``: where a
        node lands on the target grid, the inverse of :meth:`receptive_field`."""
        if not 0 <= layer < to < len(self.layers):
            raise FlowError(f"target_field({layer}, to={to}): need layer < to < {len(self)}")
        o = self.offsets(to, layer)
        coords = _unravel(pixel, tuple(self._tensors[layer].shape[2:]))
        box: List[int] = []
        for c, s, off, ext, n in zip(
            coords, o["stride"], o["offset"], o["extent"], self._maps[to].grid, strict=True
        ):
            first = -((off + ext - 1 - c) // s)  # ceil((c - off - ext + 1) / s)
            last = (c - off) // s
            box += [max(0, first), min(int(n), last + 1)]
        return tuple(box)

    # -- computing ----------------------------------------------------------------------
    def _region_mask(self, layer: int, region: Region) -> Any:
        import torch

        if region is None:
            return None
        grid = self._maps[layer].grid
        if len(region) != 2 * len(grid):
            raise FlowError(
                f"layer {layer}'s node grid is {grid}: a region needs {2 * len(grid)} numbers "
                "(start, stop per dimension), got {region!r}"
            )
        mask = torch.ones(grid, dtype=torch.bool)
        for dim in range(len(grid)):
            lo, hi = region[2 * dim], region[2 * dim + 1]
            idx = torch.arange(grid[dim])
            inside = (idx >= lo) & (idx < hi)
            view = [1] * len(grid)
            view[dim] = grid[dim]
            mask &= inside.reshape(view)
        return mask.reshape(-1)

    def _fits(self, layer: int) -> bool:
        n = self._maps[layer].count * self._maps[layer + 1].count
        return n <= self.max_dense or self._sparse_method(layer) is not None

    def _sparse_method(self, layer: int) -> str | None:
        rec = self.records[layer]
        if _elementwise(rec) and layer not in self._functions:
            return "elementwise"
        module = _module_of(rec)
        if (
            module is not None
            and layer not in self._functions
            and _conv_geometry(module, self._inputs[layer].shape) is not None
            and self._maps[layer].channel_free()
            and self._maps[layer + 1].channel_free()
        ):
            return "conv-spatial"
        return None

    def _grad_out(self, layer: int) -> Any:
        return self._layer_grad(layer + 1)

    def _compute(self, layer: int, kind: str) -> Links | None:
        method = self._sparse_method(layer)
        if method == "elementwise":
            return self._elementwise_links(layer, kind)
        if method == "conv-spatial":
            return self._conv_links(layer, kind)
        n_src, n_dst = self._maps[layer].count, self._maps[layer + 1].count
        if n_src * n_dst > self.max_dense:
            return None
        import torch

        dense = torch.zeros(n_src, n_dst, dtype=torch.float64)
        vjp, name = self._vjp(layer)
        for cols, block in self._stream(layer, None, kind, vjp):
            dense[:, cols] = block
        return Links(n_src, n_dst, dense=dense, method=name)

    def _elementwise_links(self, layer: int, kind: str) -> Links:
        import torch

        x = self._inputs[layer].detach()
        fn = self._function(layer)
        xd = x.clone().requires_grad_(True)
        with torch.enable_grad():
            y = fn(xd.clone())  # a non-leaf copy: in-place activations work too
            if tuple(y.shape) != tuple(x.shape):
                raise FlowError(f"call {layer}: an elementwise function changed the shape")
            (deriv,) = torch.autograd.grad(y.sum(), xd)
        value = deriv.detach().cpu().double() * self._grad_out(layer).detach().cpu().double()
        if kind == "contribution":
            value = value * x.cpu().double()
        batch = x.shape[0]
        src = _full_ids(self._maps[layer], batch, self.sample)
        dst = _full_ids(self._maps[layer + 1], batch, self.sample)
        return _aggregate(
            src,
            dst,
            value.reshape(-1),
            self._maps[layer].count,
            self._maps[layer + 1].count,
            self.max_dense,
            "elementwise",
        )

    def _conv_links(self, layer: int, kind: str) -> Links:
        """Pixel links of a Conv1d/2d: one per (output pixel, kernel tap), summed over
        every input and output channel (and the batch)."""
        import torch
        import torch.nn.functional as F  # noqa: N812

        rec = self.records[layer]
        module = _module_of(rec)
        found = _conv_geometry(module, self._inputs[layer].shape)
        assert found is not None  # only called for modules with a conv geometry
        geo: Dict[str, Any] = found
        x = self._inputs[layer].detach().cpu().double()
        g = self._grad_out(layer).detach().cpu().double()
        w = module.weight.detach().cpu().double()
        if self.sample is not None:
            x, g = x[self.sample : self.sample + 1], g[self.sample : self.sample + 1]
        if x.dim() == 3:  # Conv1d → a 2-d conv of height 1
            x, g, w = x.unsqueeze(2), g.unsqueeze(2), w.unsqueeze(2)
            kernel = (1,) + geo["kernel"]
            stride, dilation = (1,) + geo["stride"], (1,) + geo["dilation"]
            pads = [(0, 0)] + list(geo["padding"])
        else:
            kernel, stride, dilation, pads = (
                geo["kernel"],
                geo["stride"],
                geo["dilation"],
                list(geo["padding"]),
            )
        batch, c_in, h, wd = x.shape
        c_out, ho, wo = g.shape[1], g.shape[2], g.shape[3]
        groups = geo["groups"]
        taps = kernel[0] * kernel[1]
        pad = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
        mode = "constant" if geo["mode"] == "zeros" else geo["mode"]

        def unfold(t: Any, fill: float) -> Any:  # (B, C, H, W) → (B, C, taps, P)
            if any(pad):
                t = (
                    F.pad(t, pad, mode=mode, value=fill)
                    if mode == "constant"
                    else F.pad(t, pad, mode=mode)
                )
            u = F.unfold(t, kernel, dilation=dilation, stride=stride)
            return u.reshape(t.shape[0], t.shape[1], taps, -1)

        # H[b, c, tap, p] = Σ_o W[o, c, tap] · g[b, o, p]   (o in c's group)
        wg = w.reshape(groups, c_out // groups, c_in // groups, taps)
        gg = g.reshape(batch, groups, c_out // groups, ho * wo)
        hh = torch.einsum("gock,bgop->bgckp", wg, gg).reshape(batch, c_in, taps, ho * wo)
        if kind == "contribution":
            hh = hh * unfold(x, 0.0)
        value = hh.sum(dim=(0, 1))  # (taps, P)
        index = torch.arange(h * wd, dtype=torch.float64).reshape(1, 1, h, wd)
        src_pix = unfold(index, -1.0).reshape(taps, -1).round().long()
        dst_pix = torch.arange(ho * wo).expand(taps, -1)
        src_map = self._maps[layer].ids[0].reshape(-1)
        dst_map = self._maps[layer + 1].ids[0].reshape(-1)
        valid = src_pix >= 0
        src_nodes = torch.where(valid, src_map[src_pix.clamp(min=0)], torch.full_like(src_pix, -1))
        return _aggregate(
            src_nodes.reshape(-1),
            dst_map[dst_pix].reshape(-1),
            value.reshape(-1),
            self._maps[layer].count,
            self._maps[layer + 1].count,
            self.max_dense,
            "conv-spatial",
        )

    def _function(self, layer: int) -> Callable[[Any], Any]:
        rec = self.records[layer]
        fn = self._functions.get(layer)
        if fn is not None:
            return (
                _reinvoker(rec, fn, self._input_names[layer]) if _takes_record_args(fn, rec) else fn
            )
        return _reinvoker(rec, _callable_of(rec), self._input_names[layer])

    def _vjp(self, layer: int) -> Tuple[Callable[[Any], Any], str]:
        """A batched vector-Jacobian product ``V (n, *out) ↦ U (n, *in)`` of call ``l``."""
        import torch

        rec = self.records[layer]
        module = _module_of(rec)
        x = self._inputs[layer].detach()
        if layer not in self._functions and module is not None:
            if isinstance(module, torch.nn.Linear):
                weight = module.weight.detach()
                return (lambda v: v @ weight), "linear"
            geo = _conv_geometry(module, x.shape)
            if (
                geo is not None
                and all(a == b for a, b in geo["padding"])
                and geo["mode"] == "zeros"
            ):
                weight = module.weight.detach()
                from torch.nn import grad as nn_grad

                grad_input = nn_grad.conv2d_input if x.dim() == 4 else nn_grad.conv1d_input
                pads = tuple(a for a, _ in geo["padding"])

                def conv_vjp(v: Any) -> Any:
                    n = v.shape[0]
                    flat = v.reshape((n * v.shape[1],) + tuple(v.shape[2:]))
                    u = grad_input(
                        (flat.shape[0],) + tuple(x.shape[1:]),
                        weight,
                        flat,
                        stride=geo["stride"],
                        padding=pads,
                        dilation=geo["dilation"],
                        groups=geo["groups"],
                    )
                    return u.reshape((n,) + tuple(x.shape))

                return conv_vjp, "conv-vjp"
        fn = self._function(layer)
        buffers = _save_buffers(module)
        try:
            with torch.enable_grad():
                out, vjp_fn = torch.func.vjp(fn, x)[:2]
        except FlowError:
            raise
        except Exception as exc:
            raise FlowError(
                f"re-invoking call {layer} ({_describe(rec)}) on its captured arguments "
                f"failed: {type(exc).__name__}: {exc}; pass functions={{{layer}: fn}} with a "
                "function of the layer's input"
            ) from exc
        finally:
            _restore_buffers(module, buffers)
        captured, _ = _output_of(rec)
        if tuple(out.shape) != tuple(captured.shape) or not torch.allclose(
            out.detach().to(captured.device), captured.detach(), rtol=1e-4, atol=1e-5
        ):
            raise FlowError(
                f"re-invoking call {layer} ({_describe(rec)}) on its captured input did not "
                "reproduce its captured output (dropout, randomness, in-place changes or "
                "state?): its flow would not be exact; put the model in eval() mode"
            )

        def batched(v: Any) -> Any:
            try:
                with warnings.catch_warnings():  # ops without a batching rule still work
                    warnings.filterwarnings("ignore", message="There is a performance drop")
                    return torch.func.vmap(vjp_fn)(v)[0]
            except Exception:  # data-dependent control flow etc.: one at a time
                try:
                    return torch.stack([vjp_fn(row)[0] for row in v])
                except Exception as exc:
                    raise FlowError(
                        f"call {layer} ({_describe(rec)}): its vector-Jacobian product "
                        f"failed: {type(exc).__name__}: {exc}"
                    ) from exc

        return batched, "vjp"

    def _stream(
        self, layer: int, dst_keep: Any, kind: str, vjp: Callable[[Any], Any]
    ) -> Iterator[Tuple[Any, Any]]:
        """Yield ``(target node ids, (N_src, n) float64 block)`` over chunks of targets,
        each block one batched vector-Jacobian product: memory stays bounded by
        ``chunk_elements`` whatever the number of node pairs."""
        import torch

        x = self._inputs[layer].detach()
        g = self._grad_out(layer).detach()
        batch = x.shape[0]
        src_ids = _full_ids(self._maps[layer], batch, self.sample)
        dst_ids = _full_ids(self._maps[layer + 1], batch, self.sample)
        n_dst = self._maps[layer + 1].count
        targets = torch.arange(n_dst) if dst_keep is None else dst_keep.nonzero().reshape(-1)
        per = max(x.numel(), g.numel())
        chunk = max(1, self.chunk_elements // per)
        g_flat = g.reshape(-1)
        act = x.cpu().double().reshape(-1) if kind == "contribution" else None
        for start in range(0, targets.numel(), chunk):
            cols = targets[start : start + chunk]
            mask = (dst_ids.unsqueeze(0) == cols.unsqueeze(1)).to(g.device, g.dtype)
            v = (mask * g_flat.unsqueeze(0)).reshape((cols.numel(),) + tuple(g.shape))
            u = vjp(v).detach().cpu().double().reshape(cols.numel(), -1)
            if act is not None:
                u = u * act
            yield cols, _segment_sum(u, src_ids, self._maps[layer].count).T


def _takes_record_args(fn: Callable[..., Any], record: Any) -> bool:
    """Whether a user-given function takes the record's argument names (else ``fn(x)``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return len(params) > 1 and all(p in record.args for p in params)


def _save_buffers(module: Any) -> Dict[str, Any] | None:
    """Buffers (BatchNorm running stats) a re-invocation might update, to put back."""
    if module is None or not _is_torch_module(module):
        return None
    return {name: b.detach().clone() for name, b in module.named_buffers()}


def _restore_buffers(module: Any, saved: Dict[str, Any] | None) -> None:
    if not saved:
        return
    import torch

    with torch.no_grad():
        for name, b in module.named_buffers():
            if name in saved:
                b.copy_(saved[name])


def _layer_name(record: Any, index: int) -> str:
    module = _module_of(record)
    base = type(module).__name__ if module is not None else _describe(record)
    return f"{index}: {base}"


def _unravel(index: int, grid: Sequence[int]) -> List[int]:
    coords: List[int] = []
    for size in reversed(grid):
        coords.append(index % size)
        index //= size
    return list(reversed(coords))


def gradient_flow(
    records: Sequence[Any],
    nodes: Union[NodeSpec, Sequence[NodeSpec]] = "spatial",
    kind: str = "gradient",
    **options: Any,
) -> GradientFlow:
    """The exact gradient flow between the layers of captured calls.

    Args:
        records: captured calls (``capture_calls(fn, grads=True)``) of a chain, in any
            order (sorted by start time); several captures can be concatenated.
        nodes: how each layer's elements group into nodes: ``"spatial"`` (pixels,
            channels summed), ``"token"``, ``"channel"``, ``"head"`` / ``("head", n)``,
            ``("pool", k)``, ``"feature"`` (the last dimension: a transformer's hidden
            units; ``"channel"`` is dimension 1, PyTorch's channels-first layout),
            ``"element"`` (small tensors), a function of the per-sample
            shape returning node ids, or a list of these, one per layer.
        kind: ``"gradient"`` (the chain rule) or ``"contribution"`` (activation ×
            Jacobian × gradient; row sums are gradient × input per node).
        sample: use one sample of the batch (default: sum over the batch).
        input_name: the argument that carries the layer (default: the first tensor).
        functions: ``{call index: fn}`` to re-invoke a call with (``fn(x)`` or taking
            the record's argument names) when it cannot be found or should be replaced.
        max_dense: the most entries of a dense matrix ``matrix()`` returns or a
            transition keeps; larger ones are streamed by ``links()``.
    """
    return GradientFlow(records, nodes, kind, **options)
