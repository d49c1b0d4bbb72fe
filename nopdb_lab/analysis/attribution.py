"""Attributions of a probe's objective: integrated gradients, saliency, Grad-CAM, rollout.

::

    att = nopdb_lab.attribute(probe, method="integrated_gradients", baseline=0.0,
                              steps=64, internal_batch_size=16)
    att.map      # the input's shape (the local's shape with at=)
    att.delta    # per row: |Σ IG − (m(x) − m(baseline))| / |m(x) − m(baseline)|

Methods (``METHODS``):

- ``"integrated_gradients"``: Sundararajan et al. 2017. Nodes and weights follow
  Captum: ``rule="gausslegendre"`` (default; ``alpha = (1 + t)/2``, ``w = w_GL/2`` from
  ``numpy.polynomial.legendre.leggauss``) or ``rule="riemann_trapezoid"`` (``alpha =
  linspace(0, 1, n)``, weights ``1/(n−1)`` halved at both ends: the trapezoid rule proper,
  whose weights sum to 1; Captum's own weights are ``1/n`` and sum to ``1 − 1/n``). The
  ``steps × rows`` evaluations run in forward passes of at most ``internal_batch_size``
  rows (whole steps; at least one step per pass), as Captum's ``internal_batch_size``.
- ``"saliency"``: ``|∂m/∂x|`` (``abs=False`` for the signed gradient), as Captum's
  ``Saliency``.
- ``"grad_x_input"``: ``x ⊙ ∂m/∂x``, as Captum's ``InputXGradient``.
- ``"smoothgrad"``: the gradient averaged over ``samples`` noisy copies ``x + N(0, σ²)``
  (Smilkov et al. 2017); ``sigma`` is the standard deviation, by default ``noise_level``
  (0.15) times each row's value range; noise from a ``torch.Generator`` seeded ``seed``.
- ``"gradcam"``: Selvaraju et al. 2017 on the value at ``at`` (a :class:`~nopdb_lab.Line`
  local or an ``nn.Module``'s output): a conv map ``B×C×h×w``, or ViT tokens ``B×N×D``
  whose patch grid is found as the JupyterLab overlay finds it (≤ 4 prefix tokens, then a
  square grid), so no reshape function is needed. ``ReLU(Σ_c mean_hw(∂m/∂A_c) · A_c)``.
- ``"grad_rollout"``: gradient-weighted attention rollout (Chefer et al. 2021, "Generic
  attention-model explainability"): per layer ``Ā = mean_h((∂m/∂A ⊙ A)⁺)``, then
  ``R = I``, ``R ← R + Ā·R`` first layer to last; the map is row ``token`` (CLS) of ``R``.
  Attention comes from ``at`` (an attention-probabilities local, e.g. ``Line(
  Attention.forward, "attn = attn.softmax(dim=-1)")``, every call is a layer) or, without
  ``at``, from every ``scaled_dot_product_attention`` call, recomputed explicitly so that
  the probabilities have gradients (dropout is not applied: use eval mode).

With ``at=``, integrated gradients, saliency, grad × input and SmoothGrad act on that
internal local instead of an input (Captum's ``LayerIntegratedGradients`` without a
hand-written forward): the local is replaced, right after its statement ran, by the
point on the path (``baseline + α·(value − baseline)``), through the tracer that
breakpoints use, and its gradient read with ``torch.autograd.grad``.

Class-activation maps (Grad-CAM, rollout) of an image input are upsampled bilinearly to
the image's size and expanded over its channels (a view), so ``map`` has the input's
shape too; ``layer_map`` keeps them at the layer's resolution.

Progress goes to ``progress(done, total)`` after each forward pass; a KeyboardInterrupt
(the notebook's stop button) between passes leaves the probe and the store as they were:
the result is recorded only when complete. Every attribution is a record of kind
``"attribution"`` in the capture store.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple, Union

from ..call_info import RawStack, next_id, raw_stack, stack_summary
from ..probe import Line, Probe, tap_local
from ..records import EventRecord
from ..tracing import observers

METHODS = (
    "integrated_gradients",
    "saliency",
    "grad_x_input",
    "smoothgrad",
    "gradcam",
    "grad_rollout",
)
RULES = ("gausslegendre", "riemann_trapezoid")
MAX_PREFIX = 4  # as src/heatmap/patches.ts: CLS plus up to three registers

Progress = Callable[[int, int], None]


class AttributionError(ValueError):
    """An attribution that cannot be computed as asked; the message says why."""


# -- results ------------------------------------------------------------------------------
class Attribution:
    """One attribution of a probe's run.

    Attributes: ``method``, ``map`` (the attribution, the input's shape, or the local's
    with ``at=``), ``delta`` (integrated gradients: per row, the completeness gap
    relative to ``m(x) − m(baseline)``; None otherwise), ``gap`` (the same, absolute),
    ``output`` (m(x) per row), ``baseline_output`` (m(baseline)), ``baseline`` (the
    baseline tensor used), ``layer_map`` (Grad-CAM at the layer's resolution, or the
    rollout matrix), ``target`` (what was attributed: an input name or the local),
    ``probe``, ``run`` (the run's number), ``params``, ``seconds``, ``record``.
    """

    def __init__(self, method: str, probe: Probe, run: int, target: str) -> None:
        self.method = method
        self.probe = probe.name
        self.run = run
        self.target = target
        self.map: Any = None
        self.delta: Any = None
        self.gap: Any = None
        self.output: Any = None
        self.baseline_output: Any = None
        self.baseline: Any = None
        self.layer_map: Any = None
        self.params: Dict[str, Any] = {}
        self.seconds = 0.0
        self.record: AttributionRecord | None = None

    def __repr__(self) -> str:
        shape = tuple(getattr(self.map, "shape", ()))
        delta = "" if self.delta is None else f", delta={self.delta.tolist()}"
        return (
            f"Attribution({self.method} of probe {self.probe!r} run {self.run} at "
            f"{self.target}, map={shape}{delta})"
        )


class AttributionRecord(EventRecord):
    """An attribution in the capture store (kind ``"attribution"``); ``locals`` holds the
    map, the attributed value, the baseline, delta, outputs and parameters."""

    kind = "attribution"

    def __init__(self, att: Attribution, stack: RawStack, file: str, line: int) -> None:
        self.id = next_id()
        self.time = time.time()
        # grouped per probe and method, and attributions of several runs stack: the same
        # kind, qualname and file (the objective's, as the probe's runs)
        self.name = f"{att.method} run {att.run}"
        self.qualname = f"probe {att.probe!r} {att.method}"
        self.file, self.line = file, line
        self.thread = threading.current_thread().name
        self.errors: List[Any] = []
        self.raw_stack = stack
        self.attribution = att
        self.locals: Dict[str, Any] = {
            "map": att.map,
            "layer_map": att.layer_map,
            "delta": att.delta,
            "gap": att.gap,
            "output": att.output,
            "baseline_output": att.baseline_output,
            "baseline": att.baseline,
            "target": att.target,
            "probe": att.probe,
            "run": att.run,
            "method": att.method,
            "params": dict(att.params),
        }

    @property
    def stack(self) -> traceback.StackSummary:
        return stack_summary(self.raw_stack)

    def __repr__(self) -> str:
        return f"AttributionRecord(id={self.id}, {self.qualname})"


# -- quadrature ---------------------------------------------------------------------------
def quadrature(rule: str, steps: int) -> Tuple[List[float], List[float]]:
    """``(alphas, weights)`` of ``rule`` with ``steps`` nodes on [0, 1] (see module doc)."""
    if rule == "gausslegendre":
        if steps < 1:
            raise AttributionError("Gauss–Legendre needs at least 1 step")
        import numpy as np

        nodes, gauss = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (1 + nodes)).tolist(), (0.5 * gauss).tolist()
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise AttributionError("the trapezoid rule needs at least 2 steps")
        h = 1.0 / (steps - 1)
        weights = [h] * steps
        weights[0] = weights[-1] = h / 2
        return [i * h for i in range(steps)], weights
    raise AttributionError(f"rule must be one of {RULES}, not {rule!r}")


# -- geometry -----------------------------------------------------------------------------
def patch_layout(tokens: int) -> Tuple[int, int] | None:
    """``(prefix, side)``: ``prefix`` tokens (CLS, registers; at most 4) then a ``side`` ×
    ``side`` patch grid, the first prefix that fits; None if none does. The same rule as
    the JupyterLab ViT overlay (src/heatmap/patches.ts)."""
    for prefix in range(0, min(MAX_PREFIX, tokens - 1) + 1):
        side = round(math.sqrt(tokens - prefix))
        if side > 1 and side * side == tokens - prefix:
            return prefix, side
    return None


def gaussian_blur(x: Any, sigma: float) -> Any:
    """``x`` blurred over its last two dimensions by a Gaussian of ``sigma`` pixels
    (kernel ``2⌈3σ⌉ + 1`` wide, edges replicated), each channel on its own."""
    import torch
    from torch.nn import functional

    if x.dim() < 2:
        raise AttributionError(f"a blur needs two spatial dimensions; shape {tuple(x.shape)}")
    if sigma <= 0:
        return x.clone()
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(dtype=x.dtype, device=x.device)
    h, w = x.shape[-2:]
    planes = x.reshape(-1, 1, h, w)
    planes = functional.pad(planes, (radius, radius, 0, 0), mode="replicate")
    planes = functional.conv2d(planes, kernel.view(1, 1, 1, -1))
    planes = functional.pad(planes, (0, 0, radius, radius), mode="replicate")
    planes = functional.conv2d(planes, kernel.view(1, 1, -1, 1))
    return planes.reshape(x.shape)


def default_blur_sigma(x: Any) -> float:
    """The blur baseline's default σ: 10 % of the shorter spatial side (22.4 pixels for
    224 × 224), enough to wipe out object detail while keeping the colour layout."""
    return 0.1 * min(x.shape[-2:])


def gradient_rollout(maps: Sequence[Any], grads: Sequence[Any]) -> Any:
    """Gradient-weighted attention rollout (Chefer et al. 2021), first layer first.

    ``maps`` and ``grads``: per layer, attention probabilities and the objective's
    gradient with respect to them (B×H×N×N, H×N×N or N×N). Per layer ``Ā = mean over
    heads of (grad ⊙ A).clamp(min=0)``; ``R = I`` then ``R ← R + Ā @ R``. Returns R
    (B×N×N, or N×N for unbatched input): row ``i`` is how much each token is relevant
    to token ``i`` at the top.
    """
    import torch

    if len(maps) != len(grads) or not maps:
        raise AttributionError(
            f"gradient rollout needs one gradient per attention map ({len(maps)} maps, "
            f"{len(grads)} gradients)"
        )
    squeeze = torch.as_tensor(maps[0]).dim() <= 3
    result: Any = None  # a tensor once the first layer is in
    for depth, (a, g) in enumerate(zip(maps, grads, strict=True)):
        a = torch.as_tensor(a).detach().float()
        g = torch.as_tensor(g).detach().float()
        while a.dim() < 4:
            a, g = a.unsqueeze(0), g.unsqueeze(0)
        if a.shape != g.shape or a.shape[-1] != a.shape[-2]:
            raise AttributionError(
                f"layer {depth}: attention {tuple(a.shape)} and gradient {tuple(g.shape)} "
                "must be the same (B, H, N, N)"
            )
        cam = (g * a).clamp(min=0).mean(dim=1)
        if result is None:
            result = torch.eye(cam.shape[-1], device=cam.device).expand_as(cam).clone()
        elif result.shape[-1] != cam.shape[-1]:
            raise AttributionError(
                f"layer {depth} has {cam.shape[-1]} tokens, the layers before {result.shape[-1]}"
            )
        result = result + cam @ result
    return result[0] if squeeze else result


# -- evaluating the objective with a value replaced or watched ----------------------------
Target = Union[str, Line, Any]  # an input name, a Line, or an nn.Module (its output)


class _Pass:
    """One forward pass: outputs (rows), the watched values and their gradients."""

    def __init__(self, out: Any, values: List[Any], grads: List[Any]) -> None:
        self.out = out
        self.values = values
        self.grads = grads


class _Evaluator:
    """Runs ``probe``'s objective on one run's inputs, repeated ``k`` times along the
    batch, with the target value replaced by ``transform(value)`` (a leaf whose gradient
    is read) or, with no transform, every occurrence of it watched in place."""

    def __init__(self, probe: Probe, inputs: Dict[str, Any], target: Target, index: int):
        from ..probe import batch_size

        self.probe = probe
        self.inputs = inputs
        self.target = target
        self.index = index
        self.rows = batch_size(inputs)

    def describe(self) -> str:
        if isinstance(self.target, str):
            return self.target
        if isinstance(self.target, Line):
            return self.target.describe()
        return f"output of {type(self.target).__name__}"

    def _repeat(self, k: int) -> Dict[str, Any]:
        import torch

        out = {}
        for name, value in self.inputs.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == self.rows:
                value = value.detach()
                out[name] = value.repeat(k, *([1] * (value.dim() - 1))) if k > 1 else value
            else:
                out[name] = value
        return out

    def run(
        self, k: int, transform: Callable[[Any], Any] | None = None, grads: bool = True
    ) -> _Pass:
        """One pass; ``grads=False`` only evaluates (the outputs at the baseline)."""
        import torch

        inputs = self._repeat(k)
        watched: List[Any] = []

        def on_value(value: Any, occurrence: int) -> Any:
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise AttributionError(
                    f"{self.describe()} is a {type(value).__name__}"
                    f"{'' if not isinstance(value, torch.Tensor) else ' of ' + str(value.dtype)}"
                    "; attribution needs a floating-point tensor"
                    + (
                        " (for token ids, attribute at their embedding: "
                        'at=nopdb_lab.Line(Model.forward, "x = self.embed(...)"))'
                        if isinstance(self.target, str)
                        else ""
                    )
                )
            if value.dim() == 0 or value.shape[0] != k * self.rows:
                raise AttributionError(
                    f"{self.describe()} has shape {tuple(value.shape)}; its first dimension "
                    f"must be the batch ({k * self.rows} rows in this pass)"
                )
            if transform is None:
                if not value.requires_grad:
                    value = value.detach().requires_grad_(True)
                    watched.append(value)
                    return value
                watched.append(value)
                return None
            if occurrence != self.index:
                return None
            new = transform(value.detach()).detach().requires_grad_(True)
            watched.append(new)
            return new

        with torch.enable_grad(), self._watch(inputs, on_value) as seen:
            out = self.probe.call(inputs)  # a ProbeError names the probe if it raises
        count = len(seen)
        if count == 0:
            raise AttributionError(
                f"{self.describe()} was never reached while the probe ran; is the line or "
                "module on the probe's path?"
            )
        if transform is not None and not watched:
            raise AttributionError(
                f"{self.describe()} ran {count} time(s); occurrence {self.index} does not exist"
            )
        if not grads:
            return _Pass(out.detach(), [w.detach() for w in watched], [])
        if not out.requires_grad:
            raise AttributionError(
                f"the output of probe {self.probe.name!r} does not require grad (the objective "
                "ran under torch.no_grad(), or detached its result)"
            )
        raw = torch.autograd.grad(out.sum(), watched, allow_unused=True)
        found = [torch.zeros_like(w) if g is None else g for w, g in zip(watched, raw, strict=True)]
        return _Pass(out.detach(), [w.detach() for w in watched], found)

    @contextmanager
    def _watch(self, inputs: Dict[str, Any], on_value: Callable[[Any, int], Any]) -> Iterator[list]:
        target = self.target
        if isinstance(target, str):
            new = on_value(inputs[target], 0)
            if new is not None:
                inputs[target] = new
            yield [inputs[target]]
        elif isinstance(target, Line):
            with tap_local(target, on_value) as tapped:
                yield tapped
        else:
            seen: List[Any] = []

            def hook(module: Any, args: Any, output: Any) -> Any:
                new = on_value(output, len(seen))
                seen.append(output if new is None else new)
                return new

            handle = target.register_forward_hook(hook)
            try:
                yield seen
            finally:
                handle.remove()


@contextmanager
def _explicit_sdpa(maps: List[Any]) -> Iterator[None]:
    """Every ``scaled_dot_product_attention`` call computed as ``softmax(q kᵀ s + mask) v``
    so its probabilities are in the autograd graph; each is appended to ``maps``."""
    import torch
    from torch.nn import functional
    from torch.overrides import TorchFunctionMode

    sdpa = functional.scaled_dot_product_attention
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")

    class _Explicit(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
            kwargs = kwargs or {}
            if func is not sdpa:
                return func(*args, **kwargs)
            call = dict(zip(names, args, strict=False))
            call.update(kwargs)
            q, k, v = call["query"], call["key"], call["value"]
            if q.dim() >= 3 and k.shape[-3] != q.shape[-3]:
                k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
                v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
            scale = call.get("scale") or 1.0 / math.sqrt(q.shape[-1])
            scores = (q @ k.transpose(-2, -1)) * scale
            n_q, n_k = q.shape[-2], k.shape[-2]
            if call.get("is_causal"):
                keep = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
                scores = scores.masked_fill(~keep, float("-inf"))
            mask = call.get("attn_mask")
            if mask is not None:
                if mask.dtype == torch.bool:
                    scores = scores.masked_fill(~mask, float("-inf"))
                else:
                    scores = scores + mask
            probs = torch.softmax(scores, dim=-1)
            maps.append(probs)
            return probs @ v

    with _Explicit():
        yield


# -- the entry point ----------------------------------------------------------------------
def attribute(
    probe: Probe,
    method: str = "integrated_gradients",
    *,
    input: str | None = None,
    at: Any = None,
    baseline: Any = 0.0,
    steps: int = 64,
    rule: str = "gausslegendre",
    internal_batch_size: int | None = None,
    sigma: float | None = None,
    noise_level: float = 0.15,
    samples: int = 25,
    seed: int = 0,
    abs: bool = True,
    blur_sigma: float | None = None,
    occurrence: int = -1,
    token: int = 0,
    run: int | None = None,
    progress: Progress | None = None,
) -> Attribution:
    """Attribute ``probe``'s objective to an input or an internal value (module doc).

    Args:
        probe: the :class:`~nopdb_lab.Probe`; its run ``run`` (the newest by default)
            gives the inputs.
        method: one of ``METHODS``.
        input: the input to attribute to (default: the first floating-point tensor input).
        at: a :class:`~nopdb_lab.Line` (its local) or an ``nn.Module`` (its output):
            where Grad-CAM and rollout read, or the internal value the other methods
            attribute to instead of an input.
        baseline: integrated gradients' starting point: a number, a tensor (broadcast to
            the value's shape) or ``"blur"`` (Gaussian blur of the value, σ =
            ``blur_sigma`` pixels, by default 10 % of the shorter side).
        steps, rule, internal_batch_size: integrated gradients' quadrature and batching
            (``internal_batch_size`` also batches SmoothGrad's samples).
        sigma, noise_level, samples, seed: SmoothGrad's noise.
        abs: saliency as ``|gradient|`` (True) or the signed gradient.
        occurrence: which call, when the ``at`` line or module runs several times per
            pass (default the last); rollout uses them all.
        token: the rollout row shown (0: CLS).
        progress: ``progress(done, total)`` after each forward pass.
    """
    if not isinstance(probe, Probe):
        raise TypeError(f"attribute needs a probe (nopdb_lab.probe(...)), got {probe!r}")
    if method not in METHODS:
        raise AttributionError(f"method must be one of {METHODS}, not {method!r}")
    import torch

    caller = raw_stack(_caller_frame())
    the_run = probe.run_number(run)
    inputs = dict(the_run.inputs)
    name = _input_name(inputs, input)
    x = inputs[name]
    if at is not None and not isinstance(at, Line) and not isinstance(at, torch.nn.Module):
        raise TypeError(f"at must be a nopdb_lab.Line or an nn.Module, got {at!r}")
    if method == "gradcam" and at is None:
        raise AttributionError(
            "Grad-CAM needs at=: a Line naming a conv map or token local, or the nn.Module "
            "whose output to use"
        )
    started = time.perf_counter()
    target: Target = name if at is None else at
    att = Attribution(method, probe, the_run.number, target if isinstance(target, str) else "")
    evaluator = _Evaluator(probe, inputs, target, 0)
    att.target = evaluator.describe()
    with torch.enable_grad():
        if method == "grad_rollout":
            _grad_rollout(att, evaluator, x, token, progress)
        else:
            first = evaluator.run(1)  # every occurrence watched: m(x), values, gradients
            count = len(first.values)
            index = occurrence if occurrence >= 0 else count + occurrence
            if not 0 <= index < count:
                raise AttributionError(
                    f"{att.target} ran {count} time(s) per pass; occurrence {occurrence} "
                    "does not exist"
                )
            evaluator.index = index
            value, grad = first.values[index], first.grads[index]
            att.output = first.out
            att.params = {"occurrence": index} if at is not None else {}
            if method in ("saliency", "grad_x_input", "gradcam"):
                _report(progress, 1, 1)
            if method == "saliency":
                att.map = grad.abs() if abs else grad
                att.params["abs"] = abs
            elif method == "grad_x_input":
                att.map = value * grad
            elif method == "gradcam":
                _gradcam(att, value, grad, x)
            elif method == "smoothgrad":
                _smoothgrad(
                    att,
                    evaluator,
                    value,
                    sigma,
                    noise_level,
                    samples,
                    seed,
                    internal_batch_size,
                    progress,
                )
            else:
                _integrated_gradients(
                    att,
                    evaluator,
                    value,
                    baseline,
                    steps,
                    rule,
                    internal_batch_size,
                    blur_sigma,
                    progress,
                )
    att.seconds = time.perf_counter() - started
    run_record = the_run.record
    att.record = AttributionRecord(
        att,
        caller,
        run_record.file if run_record is not None else "<probe>",
        run_record.line if run_record is not None else 0,
    )
    observers.publish(att.record)
    return att


def _caller_frame() -> Any:
    import sys

    frame = sys._getframe(2)
    return frame


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _input_name(inputs: Dict[str, Any], wanted: str | None) -> str:
    import torch

    if wanted is not None:
        if wanted not in inputs:
            raise AttributionError(f"the probe has no input {wanted!r} (inputs: {list(inputs)})")
        return wanted
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return key
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            return key
    raise AttributionError("the probe has no tensor input to attribute to")


def _baseline_tensor(value: Any, baseline: Any, blur_sigma: float | None) -> Tuple[Any, Any]:
    """The baseline as a tensor of ``value``'s shape, and how to describe it."""
    import torch

    if isinstance(baseline, str):
        if baseline != "blur":
            raise AttributionError(
                f'baseline must be a number, a tensor or "blur", not {baseline!r}'
            )
        if value.dim() < 3:
            raise AttributionError(
                f'the "blur" baseline needs an image-like value (…×H×W); shape {tuple(value.shape)}'
            )
        sigma = default_blur_sigma(value) if blur_sigma is None else float(blur_sigma)
        return gaussian_blur(value, sigma), {"baseline": "blur", "blur_sigma": sigma}
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(value, float(baseline)), {"baseline": float(baseline)}
    if isinstance(baseline, torch.Tensor):
        try:
            b = baseline.to(device=value.device, dtype=value.dtype).expand_as(value).clone()
        except RuntimeError:
            raise AttributionError(
                f"baseline of shape {tuple(baseline.shape)} does not broadcast to "
                f"{tuple(value.shape)}"
            ) from None
        return b, {"baseline": "tensor"}
    raise AttributionError(f'baseline must be a number, a tensor or "blur", not {baseline!r}')


def _accumulator(value: Any) -> Any:
    """The dtype steps are summed in: float64, except where the device has none (MPS)."""
    import torch

    return torch.float32 if value.device.type == "mps" else torch.float64


def _chunks(total_steps: int, rows: int, internal_batch_size: int | None) -> List[Tuple[int, int]]:
    """``[start, stop)`` step ranges of at most ``internal_batch_size`` rows each."""
    if internal_batch_size is None:
        per = total_steps
    else:
        if internal_batch_size < 1:
            raise AttributionError("internal_batch_size must be at least 1")
        per = max(1, internal_batch_size // rows)
    return [(s, min(s + per, total_steps)) for s in range(0, total_steps, per)]


def _integrated_gradients(
    att: Attribution,
    evaluator: _Evaluator,
    value: Any,
    baseline: Any,
    steps: int,
    rule: str,
    internal_batch_size: int | None,
    blur_sigma: float | None,
    progress: Progress | None,
) -> None:
    import torch

    alphas, weights = quadrature(rule, steps)
    rows = evaluator.rows
    base, described = _baseline_tensor(value, baseline, blur_sigma)
    diff = value - base
    shape = (1,) * (value.dim() - 1)
    chunks = _chunks(steps, rows, internal_batch_size)
    total = len(chunks) + 1
    # m(baseline): the baseline in the value's place
    at_base = evaluator.run(1, lambda v: base, grads=False)
    _report(progress, 1, total)
    acc = _accumulator(value)
    summed = torch.zeros_like(value, dtype=acc)
    for done, (start, stop) in enumerate(chunks, start=2):
        a = torch.tensor(alphas[start:stop], dtype=value.dtype, device=value.device)
        alpha_rows = a.repeat_interleave(rows).view(-1, *shape)
        k = stop - start

        def scaled(v: Any, alpha_rows: Any = alpha_rows, k: int = k) -> Any:
            b = base.repeat(k, *shape)
            return b + alpha_rows * (v - b)

        step = evaluator.run(k, scaled)
        w = torch.tensor(weights[start:stop], dtype=acc, device=value.device)
        grads = step.grads[0].to(acc).view(k, rows, *value.shape[1:])
        summed += (grads * w.view(-1, 1, *shape)).sum(dim=0)
        _report(progress, done, total)
    att.map = (summed * diff.to(acc)).to(value.dtype)
    att.baseline = base
    att.baseline_output = at_base.out
    expected = att.output - at_base.out
    total_attr = att.map.flatten(1).sum(dim=1)
    att.gap = (total_attr - expected).abs()
    att.delta = att.gap / expected.abs()
    att.params.update(described, steps=steps, rule=rule, internal_batch_size=internal_batch_size)


def _smoothgrad(
    att: Attribution,
    evaluator: _Evaluator,
    value: Any,
    sigma: float | None,
    noise_level: float,
    samples: int,
    seed: int,
    internal_batch_size: int | None,
    progress: Progress | None,
) -> None:
    import torch

    if samples < 1:
        raise AttributionError("SmoothGrad needs at least 1 sample")
    rows = evaluator.rows
    shape = (1,) * (value.dim() - 1)
    if sigma is None:
        flat = value.flatten(1)
        spread = (flat.max(dim=1).values - flat.min(dim=1).values).view(-1, *shape)
        std = noise_level * spread
    else:
        std = torch.full((rows, *shape), float(sigma), dtype=value.dtype, device=value.device)
    generator = torch.Generator(device=value.device).manual_seed(seed)
    noise = torch.randn(
        (samples, *value.shape), generator=generator, dtype=value.dtype, device=value.device
    ) * std.unsqueeze(0)
    chunks = _chunks(samples, rows, internal_batch_size)
    acc = _accumulator(value)
    summed = torch.zeros_like(value, dtype=acc)
    for done, (start, stop) in enumerate(chunks, start=1):
        k = stop - start

        def noisy(v: Any, start: int = start, stop: int = stop) -> Any:
            return v + noise[start:stop].reshape(v.shape)

        step = evaluator.run(k, noisy)
        summed += step.grads[0].to(acc).view(k, *value.shape).sum(dim=0)
        _report(progress, done, len(chunks))
    att.map = (summed / samples).to(value.dtype)
    att.params.update(
        samples=samples,
        seed=seed,
        sigma=sigma,
        noise_level=None if sigma is not None else noise_level,
    )


def _upsample_to_input(cam: Any, x: Any) -> Any:
    """A B×h×w map as the input's shape: bilinear to H×W, expanded over channels."""
    from torch.nn import functional

    if x.dim() == 4 and cam.dim() == 3:
        up = functional.interpolate(
            cam.unsqueeze(1).float(), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return up.to(x.dtype if x.is_floating_point() else up.dtype).expand(
            x.shape[0], x.shape[1], *x.shape[-2:]
        )
    return cam


def _gradcam(att: Attribution, value: Any, grad: Any, x: Any) -> None:
    import torch

    if value.dim() == 4:  # B×C×h×w conv map
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * value).sum(dim=1))
        att.params["layout"] = "conv"
    elif value.dim() == 3:  # B×N×D tokens
        tokens = value.shape[1]
        layout = patch_layout(tokens)
        if x.dim() == 4:
            if layout is None:
                raise AttributionError(
                    f"{att.target}: {tokens} tokens are not ≤{MAX_PREFIX} prefix tokens then a "
                    "square patch grid; cannot place them on the image"
                )
            prefix, side = layout
            patches, g = value[:, prefix:], grad[:, prefix:]
            weights = g.mean(dim=1, keepdim=True)
            cam = torch.relu((weights * patches).sum(dim=2)).view(-1, side, side)
            att.params.update(layout="patches", prefix=prefix, side=side)
        else:
            weights = grad.mean(dim=1, keepdim=True)
            cam = torch.relu((weights * value).sum(dim=2))
            att.params["layout"] = "tokens"
    else:
        raise AttributionError(
            f"Grad-CAM needs a B×C×h×w conv map or B×N×D tokens at {att.target}; got shape "
            f"{tuple(value.shape)}"
        )
    att.layer_map = cam.detach()
    att.map = _upsample_to_input(att.layer_map, x)


def _grad_rollout(
    att: Attribution, evaluator: _Evaluator, x: Any, token: int, progress: Progress | None
) -> None:
    import torch

    maps: List[Any] = []
    with ExitStack() as stack:
        if isinstance(evaluator.target, str):  # no at=: every SDPA call
            stack.enter_context(_explicit_sdpa(maps))
            inputs = evaluator._repeat(1)
            out = evaluator.probe.call(inputs)
            if not maps:
                raise AttributionError(
                    "no scaled_dot_product_attention call ran in the probe; for a model that "
                    "computes attention itself pass at=Line(Attention.forward, "
                    '"attn = attn.softmax(dim=-1)")'
                )
            if not out.requires_grad:
                raise AttributionError(
                    f"the output of probe {evaluator.probe.name!r} does not require grad"
                )
            grads = list(torch.autograd.grad(out.sum(), maps, allow_unused=True))
            grads = [
                torch.zeros_like(m) if g is None else g for m, g in zip(maps, grads, strict=True)
            ]
            values = [m.detach() for m in maps]
            att.output = out.detach()
        else:
            first = evaluator.run(1)
            values, grads, att.output = first.values, first.grads, first.out
    _report(progress, 1, 1)
    rollout = gradient_rollout(values, grads)
    if rollout.dim() == 2:
        rollout = rollout.unsqueeze(0)
    n = rollout.shape[-1]
    scores = rollout[:, token, :]
    att.layer_map = rollout
    att.params.update(layers=len(values), token=token)
    if x.dim() == 4:
        layout = patch_layout(n)
        if layout is None:
            raise AttributionError(
                f"{n} tokens are not ≤{MAX_PREFIX} prefix tokens then a square patch grid"
            )
        prefix, side = layout
        grid = scores[:, prefix:].reshape(-1, side, side)
        att.params.update(prefix=prefix, side=side)
        att.map = _upsample_to_input(grid, x)
    else:
        att.map = scores
