"""The job-state actor: one Ray actor class, its transitions by concern in the
modules beside it (admission, dispatch, batches, optimizations); supervision here."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import ray

from ...simulation import Simulation
from ..sentry import init as init_sentry
from ..db import database_url, pool
from ..logs import get_logger
from ..settings import Settings
from ..states import JOBSTATE, NAMESPACE
from .admission import Admission
from .batches import Batches
from .checkpoints import Checkpoints
from .dispatch import Dispatch, failure_reason, lost_worker, stop
from .optimizations import Optimizations
from .records import Dispatched, ExportRun, IterationRun

RECONCILE_EVERY_S = 2.0
INSERT_JOB = (
    "INSERT INTO jobs (id, key_id, status, config, body_sha256, idempotency_key, request_id, total_steps, requested_accelerator, "
    "checkpoint_interval_s, devices) VALUES (%s, %s, 'QUEUED', %s::jsonb, %s, %s, %s, %s, %s, %s, %s) RETURNING *"
)

log = get_logger("jobs")
CANCEL_JOB = (
    "UPDATE jobs SET status = 'CANCELLED', finished_at = now(), error = 'cancelled by the user' WHERE id "
    "= %s AND key_id = %s AND status IN ('QUEUED', 'RUNNING')"
)
OWN_JOB = "SELECT * FROM jobs WHERE id = %s AND key_id = %s"
SILENT_JOBS = (
    "SELECT id, attempts, batch_id FROM jobs WHERE status = 'RUNNING' AND heartbeat_at < now() - "
    "make_interval(secs => %s)"
)
REQUEUE_JOB = "UPDATE jobs SET status = 'QUEUED' WHERE id = %s AND status = 'RUNNING'"
REQUEUE_ORPHANS = (
    "UPDATE jobs SET status = 'QUEUED' WHERE status = 'RUNNING' AND provider = 'ray' AND dispatch_node IS "
    "DISTINCT FROM %s RETURNING id"
)
QUEUED_JOBS = "SELECT id FROM jobs WHERE status = 'QUEUED' AND batch_id IS NULL ORDER BY created_at"
EXPORTING_BATCHES = "SELECT id FROM batches WHERE dataset_status = 'RUNNING'"
RUNNING_WITHOUT_FINAL_RUN = "SELECT id FROM optimizations WHERE status = 'RUNNING' AND result_job_id IS NULL"


class JobState(Admission, Dispatch, Checkpoints, Batches, Optimizations):
    """Use through :func:`start_actor`; the methods run inside the actor (those of the
    concerns it inherits too, under the same remote names)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        init_sentry(settings, "jobstate")
        self.pool = pool(database_url(settings))
        self.refs: dict[str, Dispatched] = {}  # by job id
        self.exports: dict[str, ExportRun] = {}  # by batch id
        self.iterations: dict[str, IterationRun] = {}  # by optimisation id
        self.lock = threading.Lock()
        self.fill_lock = threading.Lock()  # one batch scheduler at a time: no double dispatch
        #: This Ray session's head node (where this actor lives): it names a dispatch.
        self.node = ray.get_runtime_context().get_node_id()
        self.reconcile(startup=True)
        threading.Thread(target=self._watch, name="job-watch", daemon=True).start()

    def ping(self) -> bool:
        return True

    def submit(
        self,
        key_id: str,
        quota: int,
        config_json: str,
        body_sha256: str,
        idempotency_key: str | None,
        request_id: str | None,
        accelerator: str | None = None,
        checkpoint_interval_s: float | None = None,
        devices: int = 1,
    ) -> dict[str, Any]:
        """Record a QUEUED job and dispatch it. The key's row lock serialises its
        submissions, so the quota check cannot race. Returns ``{"refused": None, "row",
        "created"}``, or ``{"refused": "quota" | "idempotency", "detail", "retry_after"}``."""
        total_steps = Simulation.model_validate_json(config_json).grid.num_time_steps
        values = (uuid.uuid4(), key_id, config_json, body_sha256, idempotency_key, request_id, total_steps, accelerator, checkpoint_interval_s, devices)
        outcome = self._admit_and_insert("jobs", key_id, quota, body_sha256, idempotency_key, lambda conn: conn.execute(INSERT_JOB, values).fetchone())
        if outcome["refused"] is None and outcome["created"]:
            log.info("queued", extra={"request_id": request_id, "job_id": str(outcome["row"]["id"])})
            self.dispatch(str(outcome["row"]["id"]))
        return outcome

    def cancel(self, job_id: str, key_id: str) -> dict | None:
        """Cancel a QUEUED or RUNNING job of this key; returns the job (None if not its own)."""
        with self.pool.connection() as conn:
            conn.execute(
                CANCEL_JOB,
                (job_id, key_id),
            )
            job = conn.execute(OWN_JOB, (job_id, key_id)).fetchone()
        with self.lock:
            entry = self.refs.get(job_id)
        if job is not None and job["status"] == "CANCELLED":
            if entry is not None:
                stop(entry)
            self._drop_checkpoint(job_id)
        self._next_members()
        return job

    def reconcile(self, startup: bool = False) -> None:
        """Dispatch QUEUED jobs that have no task (after a restart); requeue or fail
        RUNNING jobs whose worker stopped sending heartbeats."""
        with self.lock:
            tracked = set(self.refs)
        with self.pool.connection() as conn:
            if startup:
                # Ray tasks of a Ray session that no longer exists (the whole service
                # restarted) are gone: requeue their jobs now, not after the heartbeat timeout.
                orphans = conn.execute(
                    REQUEUE_ORPHANS,
                    (self.node,),
                ).fetchall()
                if orphans:
                    log.info(f"requeued {len(orphans)} job(s) of an earlier Ray session")
            # Batch members wait for a slot of their batch (_fill), not for this loop.
            queued = [str(r["id"]) for r in conn.execute(QUEUED_JOBS).fetchall()]
            stale = conn.execute(
                SILENT_JOBS,
                (self.settings.heartbeat_timeout_s,),
            ).fetchall()
            for row in stale:
                job_id = str(row["id"])
                if job_id in tracked:  # alive but silent: stop it rather than wait forever
                    with self.lock:
                        entry = self.refs.get(job_id)
                    if entry is not None:
                        stop(entry)
                    self.failed(job_id, f"worker unresponsive: no progress for {self.settings.heartbeat_timeout_s:g} s")
                    continue
                if row["attempts"] <= self.settings.max_retries:
                    conn.execute(REQUEUE_JOB, (job_id,))
                    if row["batch_id"] is None:
                        queued.append(job_id)
                else:
                    self.failed(job_id, f"worker lost: no heartbeat for {self.settings.heartbeat_timeout_s:g} s")
        for job_id in queued:
            if job_id not in tracked:
                self.dispatch(job_id)
        self._next_members()
        with self.pool.connection() as conn:
            exporting = [str(r["id"]) for r in conn.execute(EXPORTING_BATCHES).fetchall()]
        for batch_id in exporting:  # an export whose task was lost with a restart starts again
            self._start_export(batch_id)
        with self.pool.connection() as conn:
            optimizing = [str(r["id"]) for r in conn.execute(RUNNING_WITHOUT_FINAL_RUN).fetchall()]
        for optimization_id in optimizing:  # resumes from the last checkpoint after a restart
            self._advance(optimization_id)
        self._overflow()
        if startup and queued:
            log.info(f"recovered {len(queued)} queued job(s) from PostgreSQL")

    def _watch(self) -> None:
        last_reconcile = time.monotonic()
        while True:
            try:
                last_reconcile = self._watch_once(last_reconcile)
            except Exception:  # noqa: BLE001 - supervision must outlive a database outage
                log.exception("job supervision step failed; retrying")
                time.sleep(1.0)

    def _watch_once(self, last_reconcile: float) -> float:
        """One supervision step: finish ended tasks, poll subprocess workers, and
        reconcile every RECONCILE_EVERY_S; returns when it last reconciled."""
        with self.lock:
            items = list(self.refs.items())
            exports = list(self.exports.items())
            iterations = list(self.iterations.items())
        on_ray = [(job_id, entry) for job_id, entry in items if entry.provider == "ray"]
        refs = [entry.handle for _, entry in on_ray] + [entry.ref for _, entry in exports] + [entry.ref for _, entry in iterations]
        if refs:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0.5)
            done = set(ready)
            for job_id, entry in on_ray:
                if entry.handle in done:
                    self._finish(job_id, entry)
            for batch_id, entry in exports:
                if entry.ref in done:
                    self._export_finished(batch_id, entry)
            for optimization_id, entry in iterations:
                if entry.ref in done:
                    self._iteration_finished(optimization_id, entry)
        else:
            time.sleep(0.5)
        for job_id, entry in items:
            if entry.provider == "subprocess" and entry.handle.poll() is not None:
                if entry.handle.returncode != 0:
                    self.failed(job_id, f"remote worker exited with code {entry.handle.returncode}", entry.token)
                self._forget(job_id, entry)
        if time.monotonic() - last_reconcile > RECONCILE_EVERY_S:
            last_reconcile = time.monotonic()
            self.reconcile()
        return last_reconcile

    def _finish(self, job_id: str, entry: Dispatched) -> None:
        """A Ray task ended: any error becomes the job's FAILED reason, except a lost
        worker (past Ray's retries) whose solve checkpointed further than it started:
        that one goes on (a spot node preempted again and again still finishes)."""
        try:
            ray.get(entry.handle)
        except ray.exceptions.TaskCancelledError:
            pass
        except Exception as e:  # noqa: BLE001 - every failure becomes a reason on the job
            if not (lost_worker(e) and self.requeue_if_progressed(job_id, entry)):
                self.failed(job_id, failure_reason(e), entry.token)
        self._forget(job_id, entry)
        self._fill()  # its slot is free now

    def _forget(self, job_id: str, entry: Dispatched) -> None:
        with self.lock:
            if self.refs.get(job_id) is entry:
                del self.refs[job_id]


def start_actor(settings: Settings) -> Any:
    """The named, detached, restartable job-state actor (reused if already running)."""
    actor = (
        ray.remote(JobState)
        .options(
            name=JOBSTATE,
            namespace=NAMESPACE,
            lifetime="detached",
            max_restarts=-1,
            max_task_retries=-1,
            max_concurrency=32,
            num_cpus=0,
            resources={"node:__internal_head__": 0.001},  # with the API, on the head node
            get_if_exists=True,
        )
        .remote(settings)
    )
    ray.get(actor.ping.remote())
    return actor
