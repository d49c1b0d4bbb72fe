"""nopdb-lab: a programmatic (non-stopping) debugger for dissecting models.

A drop-in superset of NoPdb 0.2 (``import nopdb_lab as nopdb``) that traces only the
code it targets: ``sys.monitoring`` on Python 3.12+, a chaining ``sys.settrace``
fallback on 3.10/3.11.
"""

from ._version import __version__
from .analysis.attention import (
    AttentionRecord,
    attention_flow,
    attention_probabilities,
    attention_rollout,
    attention_sinks,
    capture_attention,
    start_attention_capture,
    stop_attention_capture,
)
from .analysis.attribution import Attribution, AttributionError, attribute, gradient_rollout
from .analysis.compare import compare
from .analysis.display import ShowError, show
from .analysis.flow import FlowError, GradientFlow, MissingGradientError, gradient_flow
from .analysis.gradients import (
    gradient_capture_active,
    start_gradient_capture,
    stop_gradient_capture,
)
from .breakpoint import ActionError, Breakpoint, BreakpointHit
from .bundle import BundleError, load_captures, save_captures
from .call_capture import CallCapture, CallListCapture
from .call_info import CallInfo
from .capture_store import CaptureStore, store
from .get_local import get_local
from .nopdb import Handle, NoPdb, breakpoint, capture_call, capture_calls, get_nopdb
from .probe import Line, Probe, ProbeError, get_probe, probe, probes
from .tracing.backends import backend_name
from .tracing.scope import Scope

__all__ = [
    "__version__",
    "ActionError",
    "Attribution",
    "BundleError",
    "compare",
    "load_captures",
    "save_captures",
    "FlowError",
    "GradientFlow",
    "MissingGradientError",
    "ShowError",
    "gradient_flow",
    "show",
    "AttributionError",
    "Line",
    "Probe",
    "ProbeError",
    "attribute",
    "get_probe",
    "gradient_capture_active",
    "gradient_rollout",
    "probe",
    "probes",
    "start_gradient_capture",
    "stop_gradient_capture",
    "AttentionRecord",
    "Breakpoint",
    "BreakpointHit",
    "CallCapture",
    "CallInfo",
    "CallListCapture",
    "CaptureStore",
    "Handle",
    "NoPdb",
    "Scope",
    "backend_name",
    "attention_flow",
    "attention_probabilities",
    "attention_sinks",
    "attention_rollout",
    "breakpoint",
    "capture_attention",
    "capture_call",
    "capture_calls",
    "get_local",
    "get_nopdb",
    "start_attention_capture",
    "stop_attention_capture",
    "store",
]


def _jupyter_labextension_paths() -> list:
    """Where JupyterLab finds the prebuilt front end (shipped in the wheel)."""
    return [{"src": "labextension", "dest": "nopdb-lab"}]


def _jupyter_server_extension_points() -> list:
    """The jupyter-server extension (imports jupyter_server only when a server loads it)."""
    return [{"module": "nopdb_lab.jupyter.server_extension"}]
