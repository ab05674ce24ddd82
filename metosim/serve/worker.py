"""The solve worker: config → ``metosim.solve`` → HDF5 → upload → report.

``execute`` is the one entry point every provider runs (a Ray task here; a Modal
function reports over HTTPS instead). It talks to the job state only through a
``Reporter``, so it does not care where it runs.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from typing import Any, Protocol

from ..data import solve
from ..simulation import Simulation
from .logs import get_logger
from .settings import Settings
from .storage import file_sha256, make_store, result_key, upload_with_retry

PROGRESS_INTERVAL_S = 0.5

log = get_logger("worker")


class Reporter(Protocol):
    def started(self, job_id: str, token: int, node: str, pid: int) -> bool: ...
    def progress(self, job_id: str, token: int, step: int, total: int, cells_per_second: float) -> None: ...
    def completed(self, job_id: str, token: int, key: str, sha256: str, size: int, info: dict[str, Any]) -> None: ...


def execute(job_id: str, token: int, config_json: str, settings: Settings, reporter: Reporter, request_id: str | None = None) -> str:
    """Run one job to an uploaded, checksummed result; returns the result key.

    Exceptions propagate: the dispatcher turns them into FAILED with the reason."""
    extra = {"request_id": request_id, "job_id": job_id}
    if not reporter.started(job_id, token, socket.gethostname(), os.getpid()):
        log.info("stale dispatch; not running", extra=extra)
        return ""
    sim = Simulation.model_validate_json(config_json)
    cells = sim.grid.total_cells
    last, begun = [0.0], time.perf_counter()

    def progress(step: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= PROGRESS_INTERVAL_S or step == total:
            last[0] = now
            reporter.progress(job_id, token, step, total, cells * step / max(now - begun, 1e-9))

    log.info("solving", extra=extra)
    data = solve(sim, progress=progress)
    with tempfile.TemporaryDirectory(prefix="metosim-") as tmp:
        path = os.path.join(tmp, "result.h5")
        data.to_hdf5(path)
        sha256, size = file_sha256(path)
        key = result_key(job_id, sha256)
        upload_with_retry(make_store(settings), key, path, settings.upload_attempts, settings.upload_backoff_s, log=lambda m: log.warning(m, extra=extra))
    reporter.completed(job_id, token, key, sha256, size, {k: v for k, v in data.info.items() if isinstance(v, (int, float, str))})
    log.info("completed", extra=extra)
    return key


class ActorReporter:
    """Reports to the job-state actor (the Ray path)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def started(self, job_id: str, token: int, node: str, pid: int) -> bool:
        import ray

        return ray.get(self.actor.started.remote(job_id, token, node, pid))

    def progress(self, job_id: str, token: int, step: int, total: int, cells_per_second: float) -> None:
        self.actor.progress.remote(job_id, token, step, total, cells_per_second)  # fire and forget

    def completed(self, job_id: str, token: int, key: str, sha256: str, size: int, info: dict[str, Any]) -> None:
        import ray

        ray.get(self.actor.completed.remote(job_id, token, key, sha256, size, info))
