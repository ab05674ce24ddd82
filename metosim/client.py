"""``ms.Client``: the SDK's facade over the MetoSim service (it speaks HTTP only).

    client = ms.Client()          # METOSIM_URL / METOSIM_API_KEY, else the embedded local service
    data = client.run(sim)        # submit, follow progress, download, verify SHA-256

The transport and its errors live in :mod:`metosim.session`; the handles it returns in
:mod:`metosim.jobs`, :mod:`metosim.batch` and :mod:`metosim.inverse.remote`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .batch import Batch
from .batch_spec import batch_spec
from .data import SimulationData
from .inverse import InverseProblem
from .inverse.remote import Optimization
from .jobs import Job
from .session import QuotaExceeded, Session
from .simulation import Simulation


class Client(Session):
    """A connection to a MetoSim service (see :class:`~metosim.session.Session` for
    ``url``, ``api_key``, ``timeout`` and ``ca_bundle``): simulations, batches and
    optimisations."""

    # ------------------------------------------------------------ simulations
    def submit(self, sim: Simulation, idempotency_key: str | None = None, checkpoint_interval: float | None = None, devices: int = 1) -> Job:
        """Submit ``sim``; returns its :class:`Job` (QUEUED).

        ``checkpoint_interval``: seconds of stepping between checkpoints of the solve
        (the service's default, 10 minutes, when None); a solve whose worker is lost
        goes on from its newest checkpoint. ``devices``: split the solve's grid over
        that many devices of one node (see :func:`metosim.solve`)."""
        params = {"checkpoint_interval": str(checkpoint_interval)} if checkpoint_interval is not None else {}
        if devices != 1:
            params["devices"] = str(devices)
        return Job(self, self.post(Job.collection, sim.model_dump_json(), idempotency_key, params or None)["id"])

    def run(self, sim: Simulation, progress: bool = True, wait_for_slot: bool = False, timeout: float | None = None, checkpoint_interval: float | None = None, devices: int = 1) -> SimulationData:
        """Submit, wait (with a live progress display) and download the result.

        ``wait_for_slot``: when the key already has an active job, wait for it
        instead of raising :class:`QuotaExceeded`. ``checkpoint_interval`` and
        ``devices``: as for :meth:`submit`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                job = self.submit(sim, checkpoint_interval=checkpoint_interval, devices=devices)
                break
            except QuotaExceeded as e:
                if not wait_for_slot or (deadline is not None and time.monotonic() + e.retry_after > deadline):
                    raise
                time.sleep(min(e.retry_after, 5.0))
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        return job.wait(progress=progress, timeout=remaining, download=True)

    def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        """This key's most recent jobs (status dicts)."""
        return self.request("GET", Job.collection, params={"limit": limit}).json()["items"]

    def job(self, job_id: str) -> Job:
        return Job(self, job_id)

    # ------------------------------------------------------------ batches
    def batch(self, members: Mapping[str, Simulation] | str, max_parallel: int | None = None, idempotency_key: str | None = None, accelerator: str | None = None) -> Batch:
        """Submit named simulations (a dict, or ``ms.sweep(...)``) as one batch — one
        active unit on the key, its members run as parallel tasks (at most
        ``max_parallel``, capped by the key's own limit; each on a GPU of type
        ``accelerator`` if given) — or, given a batch id, reattach to it. Returns the
        :class:`~metosim.batch.Batch`."""
        if isinstance(members, str):
            return Batch.load(members, self)
        params = {"accelerator": accelerator} if accelerator else None
        return Batch(self, self.post(Batch.collection, batch_spec(members, max_parallel).model_dump_json(), idempotency_key, params)["id"])

    def batches(self, limit: int = 20) -> list[dict[str, Any]]:
        """This key's most recent batches (id, status, size, times)."""
        return self.request("GET", Batch.collection, params={"limit": limit}).json()["items"]

    # ------------------------------------------------------------ optimisations
    def optimize(self, problem: InverseProblem, progress: bool = True, idempotency_key: str | None = None, wait: bool = True, timeout: float | None = None) -> Any:
        """Run an inverse-design problem on the service (``POST /v1/optimizations``):
        every iteration a task on the cluster, checkpointed, resumed after a restart.
        With ``wait`` (default) follow it with a live plot and return the
        :class:`~metosim.inverse.OptimizationResult` (its ``data`` the final design's
        forward run, downloaded and verified); else return the
        :class:`~metosim.inverse.remote.Optimization` handle at once."""
        optimization = Optimization(self, self.post(Optimization.collection, problem.model_dump_json(), idempotency_key)["id"])
        return optimization.wait(progress=progress, timeout=timeout) if wait else optimization

    def optimization(self, optimization_id: str) -> Optimization:
        """Reattach to an optimisation by id."""
        return Optimization(self, optimization_id)


__all__ = ["Client"]
