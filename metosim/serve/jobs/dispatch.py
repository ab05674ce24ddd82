"""Dispatch: starting a job as a Ray task or on the overflow provider, stopping one,
and recording what its worker reports."""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
from typing import Any

import ray

from ..multihost import Join, across_processes, node_capacity, processes_for, release
from ..providers import payload, spawn
from ..sentry import job_failed
from ..logs import get_logger
from ..settings import Settings
from ..worker import ActorReporter, execute, export_dataset, follow, optimization_iteration
from .records import Dispatched

log = get_logger("jobs")
PROGRESS = (
    "UPDATE jobs SET step = %s, total_steps = %s, cells_per_second = %s, heartbeat_at = now() WHERE id = "
    "%s AND dispatches = %s AND status = 'RUNNING'"
)
COMPLETED = (
    "UPDATE jobs SET status = 'COMPLETED', finished_at = now(), heartbeat_at = now(), step = %s, "
    "total_steps = %s, result_key = %s, result_sha256 = %s, result_bytes = %s, resumed_step = %s WHERE id = %s AND "
    "dispatches = %s AND status = 'RUNNING' AND result_key IS NULL"
)
DISPATCH = (
    "UPDATE jobs SET dispatches = dispatches + 1, provider = %s, callback_token_sha256 = %s, "
    "dispatch_node = %s WHERE id = %s AND status = 'QUEUED' RETURNING dispatches, config::text AS config, "
    "request_id, requested_accelerator, checkpoint_step, devices"
)
STARTED = (
    "UPDATE jobs SET status = 'RUNNING', started_at = coalesce(started_at, now()), heartbeat_at = now(), "
    "attempts = attempts + 1, node = %s, accelerator = %s, worker_pid = %s WHERE id = %s AND dispatches = "
    "%s AND status IN ('QUEUED', 'RUNNING') RETURNING id"
)
FAILED = (
    "UPDATE jobs SET status = 'FAILED', finished_at = now(), error = %s WHERE id = %s AND status IN "
    "('QUEUED', 'RUNNING') AND (%s::int IS NULL OR dispatches = %s::int) RETURNING request_id"
)
JOB_STATUS = "SELECT status FROM jobs WHERE id = %s"


def solve_task(job_id: str, token: int, config_json: str, settings: Settings, request_id: str | None, devices: int = 1) -> str:
    """The Ray task body: run the shared worker entry point, reporting to the actor."""
    return execute(job_id, token, config_json, settings, ActorReporter(), request_id, devices)


def split_job_task(job_id: str, token: int, config_json: str, settings: Settings, request_id: str | None, devices: int, processes: int, group: str) -> str:
    """The Ray task body of a job split across nodes: one JAX process per node
    (:mod:`..multihost`); the lead runs the worker entry point (reports, checkpoints,
    upload), the others the same solve (:func:`..worker.follow`)."""
    lead = functools.partial(_lead_job, job_id, token, config_json, settings, request_id, devices)
    # Queued until the processes' resources are free, as a one-device job's task is.
    return across_processes(processes, devices // processes, lead, functools.partial(follow, job_id, token, config_json, settings, devices), name=group, placement_timeout=None)


def _lead_job(job_id: str, token: int, config_json: str, settings: Settings, request_id: str | None, devices: int, join: Join) -> str:
    return execute(job_id, token, config_json, settings, ActorReporter(), request_id, devices, join=join)


def solve_options(devices: int, accelerator: str | None, max_retries: int) -> dict[str, Any]:
    """Ray task options of a solve over ``devices``: that many GPUs (of the type
    asked for) on a cluster with GPUs; else one CPU, with ``devices`` > 1 forced host
    CPU devices in a worker process of its own (XLA reads its device count at start)."""
    options: dict[str, Any] = {"num_cpus": 1, "max_retries": max_retries, "retry_exceptions": False}
    if ray.cluster_resources().get("GPU", 0) > 0:
        options["num_gpus"] = devices
        if accelerator:
            options["accelerator_type"] = accelerator
    elif devices > 1:
        options["runtime_env"] = {"env_vars": {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}}
    return options


def export_task(batch_id: str, members: list[dict[str, Any]], monitors: list[str] | None, settings: Settings) -> tuple[str, str, int]:
    """The Ray task body of a batch's dataset export: (key, sha256, bytes) uploaded."""
    return export_dataset(batch_id, members, monitors, settings)


def optimization_task(optimization_id: str, problem_json: str, checkpoint: tuple[str, str] | None, settings: Settings) -> dict[str, Any]:
    """The Ray task body of one optimisation iteration (see ``worker.optimization_iteration``)."""
    return optimization_iteration(optimization_id, problem_json, checkpoint, settings)


def lost_worker(error: BaseException) -> bool:
    """Whether a Ray task failed because its worker process or node went away (a kill,
    an out-of-memory kill, a preempted spot node), not because of its own error."""
    from ray.exceptions import LocalRayletDiedError, NodeDiedError, WorkerCrashedError

    return isinstance(error, (WorkerCrashedError, NodeDiedError, LocalRayletDiedError))


def failure_reason(error: BaseException) -> str:
    """A short, user-facing reason for a failed Ray task."""
    from ray.exceptions import RayTaskError, WorkerCrashedError

    if isinstance(error, WorkerCrashedError):
        return "the worker process died during the solve (retries exhausted)"
    if isinstance(error, RayTaskError) and error.cause is not None:
        error = error.cause
    return f"{type(error).__name__}: {error}"[:1000]


def cancel_running(ref: Any) -> None:
    """Force-cancel a Ray task unless it has ended: cancelling one as it completes can
    abort the caller (Ray's "Tried to complete task that was not pending" check,
    ray-project/ray#54527)."""
    if not ray.wait([ref], timeout=0)[0]:
        ray.cancel(ref, force=True)


def stop(entry: Dispatched) -> None:
    """Stop a dispatched run, whatever runs it."""
    handle, provider = entry.handle, entry.provider
    if provider == "ray":
        cancel_running(handle)
        if entry.group:
            release(entry.group)
    elif provider == "subprocess":
        handle.kill()
    elif provider == "modal":
        handle.cancel()


class Dispatch:
    """Starting jobs and recording their workers' reports (guarded by the dispatch token)."""

    def dispatch(self, job_id: str, provider: str = "ray") -> None:
        """Start a QUEUED job: a Ray task (:func:`solve_options`), or the overflow
        provider."""
        callback = secrets.token_urlsafe(32) if provider != "ray" else None
        with self.pool.connection() as conn:
            row = conn.execute(
                DISPATCH,
                (provider, hashlib.sha256(callback.encode()).hexdigest() if callback else None, self.node, job_id),
            ).fetchone()
        if row is None:
            return
        processes = processes_for(row["devices"], node_capacity(self.settings)[0]) if provider == "ray" else 1
        group = f"metosim-{job_id}-{row['dispatches']}" if processes > 1 else ""
        if processes > 1:
            # A driver holding no resources; the placement group holds the processes'.
            # Not retried by Ray: a lost process fails the job with its reason.
            handle = ray.remote(split_job_task).options(num_cpus=0, max_retries=0).remote(job_id, row["dispatches"], row["config"], self.settings, row["request_id"], row["devices"], processes, group)
        elif provider == "ray":
            options = solve_options(row["devices"], row["requested_accelerator"], self.settings.max_retries)
            handle = ray.remote(solve_task).options(**options).remote(job_id, row["dispatches"], row["config"], self.settings, row["request_id"], row["devices"])
        else:
            job = payload(self.settings, job_id, row["dispatches"], row["config"], callback, row["request_id"], provider)  # type: ignore[arg-type]
            handle = spawn(provider, job)
            log.info(f"overflow to {provider}", extra={"job_id": job_id})
        with self.lock:
            self.refs[job_id] = Dispatched(handle, row["dispatches"], provider, time.monotonic(), row["checkpoint_step"] or 0, row["devices"], group)

    def _overflow(self) -> None:
        """Send Ray-queued jobs elsewhere when the cluster has had no free GPU for
        ``overflow_wait_s``. A split solve waits for its devices: the overflow
        provider runs one GPU per job."""
        provider = self.settings.overflow_provider
        if not provider or ray.cluster_resources().get("GPU", 0) == 0 or ray.available_resources().get("GPU", 0) >= 1:
            return
        now = time.monotonic()
        with self.lock:
            waiting = [(job_id, entry) for job_id, entry in self.refs.items() if entry.provider == "ray" and entry.devices == 1 and now - entry.at > self.settings.overflow_wait_s]
        for job_id, entry in waiting:
            with self.pool.connection() as conn:
                status = conn.execute(JOB_STATUS, (job_id,)).fetchone()["status"]
            if status != "QUEUED":
                continue
            ray.cancel(entry.handle)  # not started: just leaves Ray's queue
            with self.lock:
                self.refs.pop(job_id, None)
            self.dispatch(job_id, provider)

    def started(self, job_id: str, token: int, node: str, accelerator: str, pid: int) -> dict[str, Any] | None:
        """RUNNING under this dispatch; returns what the worker resumes from and how
        often it checkpoints (``start_of``), or None for a stale dispatch."""
        with self.pool.connection() as conn:
            row = conn.execute(
                STARTED,
                (node, accelerator, pid, job_id, token),
            ).fetchone()
        return None if row is None else self.start_of(job_id)

    def progress(self, job_id: str, token: int, step: int, total: int, cells_per_second: float) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                PROGRESS,
                (step, total, cells_per_second, job_id, token),
            )

    def completed(self, job_id: str, token: int, key: str, sha256: str, size: int, info: dict[str, Any]) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                COMPLETED,
                (info.get("time_steps", 0), info.get("time_steps", 0), key, sha256, size, info.get("resumed_step", 0), job_id, token),
            )
        self._drop_checkpoint(job_id)
        self._next_members()

    def failed(self, job_id: str, reason: str, token: int | None = None) -> None:
        """FAILED with ``reason``; with a token, only if it is the current dispatch's."""
        with self.pool.connection() as conn:
            row = conn.execute(
                FAILED,
                (reason, job_id, token, token),
            ).fetchone()
        if row is not None:
            log.info("failed", extra={"job_id": job_id, "status": "FAILED"})
            job_failed(job_id, reason, row["request_id"])
            self._drop_checkpoint(job_id)
        self._next_members()
