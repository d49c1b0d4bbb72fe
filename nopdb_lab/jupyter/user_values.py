"""Values the user names by a Python expression in the kernel: axis labels, images.

The heatmap viewer lets a user type ``tokens`` or ``tokenizer.convert_ids_to_tokens(ids)``
(labels) or ``image`` (the input of a ViT, for the patch overlay); these helpers evaluate
such expressions in the namespace cells run in and turn the result into plain data, with
errors that say what went wrong.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Dict, List, Tuple, TypeVar

from ..analysis.summary import is_array, is_tensor
from .interrupts import Interrupted

F = TypeVar("F", bound=Callable[..., Any])


class ExpressionError(ValueError):
    """An expression that does not compile, raises, or gives the wrong kind of value."""


def evaluate(expression: str, namespace: Dict[str, Any]) -> Any:
    """``eval`` in ``namespace``; a syntax error or any exception becomes an ExpressionError.

    ``SystemExit``, ``GeneratorExit`` and ``KeyboardInterrupt`` too: no expression
    evaluated for the UI may end the kernel.
    """
    try:
        code = compile(expression, "<expression>", "eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error in {expression!r}: {exc.msg}") from None
    try:
        return eval(code, namespace)
    except Exception as exc:
        raise ExpressionError(f"{expression} raised {type(exc).__name__}: {exc}") from None
    except (SystemExit, GeneratorExit) as exc:
        # in a cell IPython survives sys.exit(); an expression the UI evaluates must
        # not end the kernel either
        raise ExpressionError(
            f"{expression} raised {type(exc).__name__} ({exc}); it is not allowed to end the kernel"
        ) from None
    except KeyboardInterrupt:
        # the stop button while a slow expression runs: answer, rather than let the
        # interrupt escape into the kernel's message loop
        raise Interrupted(
            f"{expression} was interrupted (the kernel's stop button) before it finished"
        ) from None


def _guarded(convert: F) -> F:
    """Whatever a user object does while being turned into labels or pixels (a
    ``__len__`` or ``__str__`` that raises, even ``SystemExit``) becomes an
    ExpressionError naming the expression: it never reaches the kernel."""

    @functools.wraps(convert)
    def run(expression: str, namespace: Dict[str, Any]) -> Any:
        try:
            return convert(expression, namespace)
        except (ExpressionError, Interrupted):
            raise
        except Exception as exc:
            raise ExpressionError(f"{expression}: {type(exc).__name__}: {exc}") from None
        except KeyboardInterrupt:
            raise Interrupted(
                f"{expression} was interrupted (the kernel's stop button) while its value "
                "was converted"
            ) from None
        except (SystemExit, GeneratorExit) as exc:
            raise ExpressionError(
                f"{expression}: {type(exc).__name__} while converting its value"
            ) from None

    return run  # type: ignore[return-value]


MAX_LABELS = 4096


@_guarded
def evaluate_labels(expression: str, namespace: Dict[str, Any]) -> List[str]:
    """Axis labels from a Python expression in the user's namespace (e.g. ``tokens`` or
    ``tokenizer.convert_ids_to_tokens(ids[0])``): a sequence, each item shown with str()."""
    value = evaluate(expression, namespace)
    if is_tensor(value) or is_array(value):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        kind = type(value).__name__
        article = "an" if kind[0] in "aeiou" else "a"
        raise ExpressionError(
            f"{expression} gives {article} {kind}; labels must be a list of tokens"
        )
    if len(value) > MAX_LABELS:
        raise ExpressionError(f"{expression} has {len(value)} items; at most {MAX_LABELS}")
    return [str(item) for item in value]


MAX_IMAGE_SIDE = 1024


@_guarded
def evaluate_image(expression: str, namespace: Dict[str, Any]) -> Tuple[Dict[str, Any], bytes]:
    """An RGB image from a Python expression (a PIL image, or a tensor/array shaped
    C×H×W, 1×C×H×W or H×W×C, H×W for grey; floats in [0, 1] or 0–255 integers) as
    ``({"height", "width"}, H×W×3 uint8 bytes)``, strided down to at most 1024 px a side."""
    import numpy as np

    value = evaluate(expression, namespace)
    if hasattr(value, "convert") and hasattr(value, "size"):  # a PIL image
        array = np.asarray(value.convert("RGB"))
    elif is_tensor(value):
        array = value.detach().to("cpu").float().numpy()
    elif is_array(value):
        array = np.asarray(value)
    else:
        raise ExpressionError(f"{expression} gives a {type(value).__name__}, not an image")
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    elif array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ExpressionError(
            f"{expression} has shape {list(array.shape)}; an image is C×H×W, H×W×C or H×W"
        )
    array = np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
    if array.dtype.kind == "f":
        high = float(np.nanmax(array)) if array.size else 1.0
        array = np.clip(array * (255.0 if high <= 1.0 else 1.0), 0, 255)
    step = max(1, -(-max(array.shape[:2]) // MAX_IMAGE_SIDE))
    array = np.ascontiguousarray(array[::step, ::step].astype(np.uint8))
    return {"height": int(array.shape[0]), "width": int(array.shape[1])}, array.tobytes()


def user_namespace() -> Dict[str, Any]:
    """The namespace cells run in (IPython's), else ``__main__``'s."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            return shell.user_ns
    except ImportError:
        pass
    return vars(sys.modules["__main__"])
