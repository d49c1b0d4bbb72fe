"""Probe work the front end runs as silent execute requests, not inside a comm handler.

A re-run or an attribution can take minutes; run as an execute request on the notebook's
kernel, the notebook's stop button interrupts it (KeyboardInterrupt in the main thread)
and its errors come back in the execute reply. :func:`attribute` reports progress as
``probe_progress`` events, which the services' batching timer sends while it runs (a
silent request fires no post_execute, so nothing else would flush them).
"""

from __future__ import annotations

from typing import Any

from ..probe import get_probe
from .service import _services, flush_all


def push_progress(token: str, done: int, total: int) -> None:
    """Send a ``probe_progress`` event to every connected front end (batched, timely)."""
    for service in list(_services):
        service.events.push(
            {"event": "probe_progress", "token": token, "done": int(done), "total": int(total)}
        )


def attribute(token: str, name: str, **options: Any) -> int:
    """Attribute probe ``name`` (the front end's Attribute…) reporting progress under
    ``token``; returns the attribution's record id. A KeyboardInterrupt (the stop button)
    propagates: nothing is recorded, the probe and the store are untouched."""
    from ..analysis.attribution import attribute as run_attribution

    att = run_attribution(
        get_probe(name),
        progress=lambda done, total: push_progress(token, done, total),
        **options,
    )
    flush_all()  # the last progress before the reply
    assert att.record is not None
    return att.record.id


def overlay_image(record_id: int) -> Any:
    """The image an attribution is drawn over on the patch overlay: the attributed run's
    input image (its first batch row, C×H×W). That is the attributed input when it is an
    image (B×C×H×W, 1 or 3 channels); for an attribution at an internal value (a ViT's
    tokens) the run's first image input. Errors say why there is none."""
    from ..capture_store import store

    att = getattr(store[record_id], "attribution", None)
    if att is None:
        raise ValueError(f"capture #{record_id} is not an attribution")
    run = get_probe(att.probe).run_number(att.run)
    images = {
        name: value
        for name, value in run.inputs.items()
        if getattr(value, "ndim", 0) == 4 and value.shape[1] in (1, 3)
    }
    if not images:
        raise ValueError(
            f"probe {att.probe!r} has no image input (B×C×H×W, 1 or 3 channels) to draw "
            "the attribution over"
        )
    image = images.get(att.target) if isinstance(att.target, str) else None
    return (image if image is not None else next(iter(images.values())))[0]
