"""What the actor holds in memory about work in flight, as named records."""

from __future__ import annotations

from typing import Any, NamedTuple


class Dispatched(NamedTuple):
    """A job's current dispatch."""

    handle: Any  # the Ray ref, or the overflow provider's handle
    token: int  # the dispatch count: a worker's reports must carry it
    provider: str  # "ray", "subprocess" or "modal"
    at: float  # when it was dispatched (time.monotonic(), s)
    checkpoint_step: int  # the newest checkpoint's step then (0: none): did the run get further?
    devices: int = 1  # devices the solve is split over
    group: str = ""  # the placement group of a solve across processes ("": none)


class ExportRun(NamedTuple):
    """A batch's running dataset export."""

    ref: Any
    monitors: Any  # the monitor names it writes (None: all)


class IterationRun(NamedTuple):
    """An optimisation's running iteration."""

    ref: Any
    iteration: int
