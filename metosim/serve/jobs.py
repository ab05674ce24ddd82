"""The job-state actor: owns every job transition, persisted to PostgreSQL.

    QUEUED ──dispatch──► RUNNING ──► COMPLETED
       │                   │  └────► FAILED (reason)
       └──────── cancel ───┴───────► CANCELLED

A batch is one active unit on its key (RUNNING until every member has ended, then
COMPLETED if any member completed, else FAILED; or CANCELLED); its members are
ordinary jobs, dispatched oldest batch first up to the batch's ``max_parallel``.

An optimisation is one too: RUNNING while its iterations run one Ray task after
another (each recorded with its checkpoint before the next starts, so a restart
resumes from the last one), then while the final design's forward run (an ordinary
job) runs; it ends as that job ends, or FAILED with the failing iteration's reason.

Each transition is one SQL statement or transaction, guarded by the state it leaves
and by the dispatch token, so a stale worker (an earlier dispatch of the same job)
can never overwrite a newer one. The actor is a named, detached Ray actor that Ray
restarts if it dies; on (re)start it rebuilds its view from PostgreSQL.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import threading
import time
import uuid
from typing import Any

import ray

from ..simulation import Simulation
from . import providers, sentry
from .db import database_url, pool
from .logs import get_logger
from .settings import Settings
from .states import JOBSTATE, NAMESPACE
from .storage import read_verified
from .worker import ActorReporter, execute, export_dataset, optimization_iteration

RECONCILE_EVERY_S = 2.0

log = get_logger("jobs")


def solve_task(job_id: str, token: int, config_json: str, settings: Settings, request_id: str | None) -> str:
    """The Ray task body: run the shared worker entry point, reporting to the actor."""
    actor = ray.get_actor(JOBSTATE, namespace=NAMESPACE)
    return execute(job_id, token, config_json, settings, ActorReporter(actor), request_id)


def export_task(batch_id: str, members: list[dict[str, Any]], monitors: list[str] | None, settings: Settings) -> tuple[str, str, int]:
    """The Ray task body of a batch's dataset export: (key, sha256, bytes) uploaded."""
    return export_dataset(batch_id, members, monitors, settings)


def optimization_task(optimization_id: str, problem_json: str, checkpoint: tuple[str, str] | None, settings: Settings) -> dict[str, Any]:
    """The Ray task body of one optimisation iteration (see ``worker.optimization_iteration``)."""
    return optimization_iteration(optimization_id, problem_json, checkpoint, settings)


def failure_reason(error: BaseException) -> str:
    """A short, user-facing reason for a failed Ray task."""
    from ray.exceptions import RayTaskError, WorkerCrashedError

    if isinstance(error, WorkerCrashedError):
        return "the worker process died during the solve (retries exhausted)"
    if isinstance(error, RayTaskError) and error.cause is not None:
        error = error.cause
    return f"{type(error).__name__}: {error}"[:1000]


class JobState:
    """Use through :func:`start_actor`; the methods below run inside the actor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        sentry.init(settings, "jobstate")
        self.pool = pool(database_url(settings))
        #: job id → (Ray ref or provider handle, dispatch token, provider, dispatched at)
        self.refs: dict[str, tuple[Any, int, str, float]] = {}
        #: batch id → (Ray ref of its running dataset export, the monitors it writes)
        self.exports: dict[str, tuple[Any, Any]] = {}
        #: optimisation id → (Ray ref of its running iteration, that iteration's number)
        self.iterations: dict[str, tuple[Any, int]] = {}
        self.lock = threading.Lock()
        self.fill_lock = threading.Lock()  # one batch scheduler at a time: no double dispatch
        #: This Ray session's head node (where this actor lives): it names a dispatch.
        self.node = ray.get_runtime_context().get_node_id()
        self.reconcile(startup=True)
        threading.Thread(target=self._watch, name="job-watch", daemon=True).start()

    def ping(self) -> bool:
        return True

    # ------------------------------------------------------------ submissions
    def submit(self, key_id: str, quota: int, config_json: str, body_sha256: str, idempotency_key: str | None, request_id: str | None, accelerator: str | None = None) -> dict[str, Any]:
        """Record a QUEUED job and dispatch it. The key's row lock serialises its
        submissions, so the quota check cannot race. Returns ``{"refused": None, "row",
        "created"}``, or ``{"refused": "quota" | "idempotency", "detail", "retry_after"}``."""
        total_steps = Simulation.model_validate_json(config_json).grid.num_time_steps
        outcome = self._admit_and_insert(
            "jobs", key_id, quota, body_sha256, idempotency_key,
            "INSERT INTO jobs (id, key_id, status, config, body_sha256, idempotency_key, request_id, total_steps, requested_accelerator) "
            "VALUES (%s, %s, 'QUEUED', %s::jsonb, %s, %s, %s, %s, %s) RETURNING *",
            (uuid.uuid4(), key_id, config_json, body_sha256, idempotency_key, request_id, total_steps, accelerator),
        )
        if outcome["refused"] is None and outcome["created"]:
            log.info("queued", extra={"request_id": request_id, "job_id": str(outcome["row"]["id"])})
            self.dispatch(str(outcome["row"]["id"]))
        return outcome

    def _admit_and_insert(self, table: str, key_id: str, quota: int, body_sha256: str, idempotency_key: str | None, insert: str, values: tuple) -> dict[str, Any]:
        """One transaction: :func:`admit`'s answer if it refuses or finds the earlier
        submission, else the row ``insert`` (… RETURNING *) records."""
        with self.pool.connection() as conn, conn.transaction():
            outcome = admit(conn, table, key_id, quota, body_sha256, idempotency_key)
            if outcome:
                return outcome
            return {"refused": None, "row": conn.execute(insert, values).fetchone(), "created": True}

    def submit_batch(self, key_id: str, quota: int, max_parallel: int, members: list[dict[str, Any]], body_sha256: str, idempotency_key: str | None, request_id: str | None, accelerator: str | None = None) -> dict[str, Any]:
        """Record a RUNNING batch and its QUEUED members (name, config JSON, parameters,
        total_steps) in one transaction, then start the first ``max_parallel``. Returns
        as :meth:`submit` does (the row is the batch's)."""
        with self.pool.connection() as conn, conn.transaction():
            outcome = admit(conn, "batches", key_id, quota, body_sha256, idempotency_key)
            if outcome:
                return outcome
            parameters = list(members[0]["parameters"])
            batch = conn.execute(
                "INSERT INTO batches (id, key_id, status, size, max_parallel, parameters, body_sha256, idempotency_key, request_id) "
                "VALUES (%s, %s, 'RUNNING', %s, %s, %s::jsonb, %s, %s, %s) RETURNING *",
                (uuid.uuid4(), key_id, len(members), max_parallel, json.dumps(parameters), body_sha256, idempotency_key, request_id),
            ).fetchone()
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO jobs (id, key_id, status, config, body_sha256, request_id, total_steps, batch_id, member, member_index, parameters, requested_accelerator) "
                    "VALUES (%s, %s, 'QUEUED', %s::jsonb, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)",
                    [
                        (uuid.uuid4(), key_id, m["config"], hashlib.sha256(m["config"].encode()).hexdigest(), request_id, m["total_steps"], batch["id"], m["name"], i, json.dumps(m["parameters"]), accelerator)
                        for i, m in enumerate(members)
                    ],
                )
        log.info(f"batch of {len(members)} queued", extra={"request_id": request_id, "job_id": str(batch["id"])})
        self._fill()
        return {"refused": None, "row": batch, "created": True}

    def submit_optimization(self, key_id: str, quota: int, problem_json: str, steps: int, body_sha256: str, idempotency_key: str | None, request_id: str | None) -> dict[str, Any]:
        """Record a RUNNING optimisation and start its first iteration. Returns as
        :meth:`submit` does (the row is the optimisation's)."""
        outcome = self._admit_and_insert(
            "optimizations", key_id, quota, body_sha256, idempotency_key,
            "INSERT INTO optimizations (id, key_id, status, problem, steps, body_sha256, idempotency_key, request_id) "
            "VALUES (%s, %s, 'RUNNING', %s::jsonb, %s, %s, %s, %s) RETURNING *",
            (uuid.uuid4(), key_id, problem_json, steps, body_sha256, idempotency_key, request_id),
        )
        if outcome["refused"] is None and outcome["created"]:
            log.info(f"optimisation of {steps} iterations started", extra={"request_id": request_id, "job_id": str(outcome["row"]["id"])})
            self._advance(str(outcome["row"]["id"]))
        return outcome

    def dispatch(self, job_id: str, provider: str = "ray") -> None:
        """Start a QUEUED job: a Ray task (one GPU, of the requested type if any, when
        the cluster has GPUs; CPU otherwise), or the overflow provider."""
        callback = secrets.token_urlsafe(32) if provider != "ray" else None
        with self.pool.connection() as conn:
            row = conn.execute(
                "UPDATE jobs SET dispatches = dispatches + 1, provider = %s, callback_token_sha256 = %s, dispatch_node = %s WHERE id = %s AND status = 'QUEUED' "
                "RETURNING dispatches, config::text AS config, request_id, requested_accelerator",
                (provider, hashlib.sha256(callback.encode()).hexdigest() if callback else None, self.node, job_id),
            ).fetchone()
        if row is None:
            return
        if provider == "ray":
            options: dict[str, Any] = {"num_cpus": 1, "max_retries": self.settings.max_retries, "retry_exceptions": False}
            if ray.cluster_resources().get("GPU", 0) > 0:
                options["num_gpus"] = 1
                if row["requested_accelerator"]:
                    options["accelerator_type"] = row["requested_accelerator"]
            handle = ray.remote(solve_task).options(**options).remote(job_id, row["dispatches"], row["config"], self.settings, row["request_id"])
        else:
            job = providers.payload(self.settings, job_id, row["dispatches"], row["config"], callback, row["request_id"])  # type: ignore[arg-type]
            handle = providers.spawn(provider, job)
            log.info(f"overflow to {provider}", extra={"job_id": job_id})
        with self.lock:
            self.refs[job_id] = (handle, row["dispatches"], provider, time.monotonic())

    # ------------------------------------------------------------ worker reports
    def started(self, job_id: str, token: int, node: str, accelerator: str, pid: int) -> bool:
        with self.pool.connection() as conn:
            row = conn.execute(
                "UPDATE jobs SET status = 'RUNNING', started_at = coalesce(started_at, now()), heartbeat_at = now(), "
                "attempts = attempts + 1, node = %s, accelerator = %s, worker_pid = %s "
                "WHERE id = %s AND dispatches = %s AND status IN ('QUEUED', 'RUNNING') RETURNING id",
                (node, accelerator, pid, job_id, token),
            ).fetchone()
        return row is not None

    def progress(self, job_id: str, token: int, step: int, total: int, cells_per_second: float) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE jobs SET step = %s, total_steps = %s, cells_per_second = %s, heartbeat_at = now() WHERE id = %s AND dispatches = %s AND status = 'RUNNING'",
                (step, total, cells_per_second, job_id, token),
            )

    def completed(self, job_id: str, token: int, key: str, sha256: str, size: int, info: dict[str, Any]) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'COMPLETED', finished_at = now(), heartbeat_at = now(), step = %s, total_steps = %s, result_key = %s, result_sha256 = %s, result_bytes = %s "
                "WHERE id = %s AND dispatches = %s AND status = 'RUNNING' AND result_key IS NULL",
                (info.get("time_steps", 0), info.get("time_steps", 0), key, sha256, size, job_id, token),
            )
        self._next_members()

    def failed(self, job_id: str, reason: str, token: int | None = None) -> None:
        """FAILED with ``reason``; with a token, only if it is the current dispatch's."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "UPDATE jobs SET status = 'FAILED', finished_at = now(), error = %s WHERE id = %s AND status IN ('QUEUED', 'RUNNING') AND (%s::int IS NULL OR dispatches = %s::int) RETURNING request_id",
                (reason, job_id, token, token),
            ).fetchone()
        if row is not None:
            log.info("failed", extra={"job_id": job_id, "status": "FAILED"})
            sentry.job_failed(job_id, reason, row["request_id"])
        self._next_members()

    # ------------------------------------------------------------ user actions
    def cancel(self, job_id: str, key_id: str) -> dict | None:
        """Cancel a QUEUED or RUNNING job of this key; returns the job (None if not its own)."""
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'CANCELLED', finished_at = now(), error = 'cancelled by the user' WHERE id = %s AND key_id = %s AND status IN ('QUEUED', 'RUNNING')",
                (job_id, key_id),
            )
            job = conn.execute("SELECT * FROM jobs WHERE id = %s AND key_id = %s", (job_id, key_id)).fetchone()
        with self.lock:
            entry = self.refs.get(job_id)
        if job is not None and job["status"] == "CANCELLED" and entry is not None:
            stop(entry)
        self._next_members()
        return job

    def cancel_batch(self, batch_id: str, key_id: str) -> dict | None:
        """Cancel a RUNNING batch of this key and its queued and running members;
        returns the batch (None if not its own)."""
        with self.pool.connection() as conn, conn.transaction():
            cancelled = conn.execute("UPDATE batches SET status = 'CANCELLED', finished_at = now(), error = 'cancelled by the user' WHERE id = %s AND key_id = %s AND status = 'RUNNING' RETURNING id", (batch_id, key_id)).fetchone()
            members = []
            if cancelled:
                members = conn.execute(
                    "UPDATE jobs SET status = 'CANCELLED', finished_at = now(), error = 'the batch was cancelled' WHERE batch_id = %s AND status IN ('QUEUED', 'RUNNING') RETURNING id",
                    (batch_id,),
                ).fetchall()
            batch = conn.execute("SELECT * FROM batches WHERE id = %s AND key_id = %s", (batch_id, key_id)).fetchone()
        for row in members:
            with self.lock:
                entry = self.refs.get(str(row["id"]))
            if entry is not None:
                stop(entry)
        return batch

    def export(self, batch_id: str, key_id: str, monitors: list[str] | None) -> dict | None:
        """Start writing an ended batch's dataset (unless the same export is running or
        done); returns the batch row (None if not this key's)."""
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE batches SET dataset_status = 'RUNNING', dataset_monitors = %s::jsonb, dataset_key = NULL, dataset_sha256 = NULL, dataset_bytes = NULL, dataset_error = NULL "
                "WHERE id = %s AND key_id = %s AND status IN ('COMPLETED', 'FAILED', 'CANCELLED') "
                "AND (dataset_status IS NULL OR dataset_status = 'FAILED' OR dataset_monitors IS DISTINCT FROM %s::jsonb)",
                (json.dumps(monitors), batch_id, key_id, json.dumps(monitors)),
            )
            batch = conn.execute("SELECT * FROM batches WHERE id = %s AND key_id = %s", (batch_id, key_id)).fetchone()
        if batch is not None and batch["dataset_status"] == "RUNNING":
            self._start_export(batch_id)
        return batch

    def _start_export(self, batch_id: str) -> None:
        with self.lock:
            if batch_id in self.exports:
                return
        with self.pool.connection() as conn:
            monitors = conn.execute("SELECT dataset_monitors FROM batches WHERE id = %s", (batch_id,)).fetchone()["dataset_monitors"]
            members = conn.execute(
                "SELECT member AS name, parameters, result_key, result_sha256 AS sha256 FROM jobs WHERE batch_id = %s AND status = 'COMPLETED' ORDER BY member_index",
                (batch_id,),
            ).fetchall()
        ref = ray.remote(export_task).options(num_cpus=1, max_retries=self.settings.max_retries).remote(batch_id, members, monitors, self.settings)
        with self.lock:
            self.exports[batch_id] = (ref, monitors)

    def _export_finished(self, batch_id: str, entry: tuple[Any, Any]) -> None:
        """Record an export's outcome, unless a request for other monitors replaced it
        meanwhile (reconcile then starts that one)."""
        ref, monitors = entry
        same = "WHERE id = %s AND dataset_status = 'RUNNING' AND dataset_monitors IS NOT DISTINCT FROM %s::jsonb"
        try:
            key, sha256, size = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - every failure becomes the export's reason
            with self.pool.connection() as conn:
                conn.execute("UPDATE batches SET dataset_status = 'FAILED', dataset_error = %s " + same, (failure_reason(e), batch_id, json.dumps(monitors)))
        else:
            with self.pool.connection() as conn:
                conn.execute(
                    "UPDATE batches SET dataset_status = 'COMPLETED', dataset_key = %s, dataset_sha256 = %s, dataset_bytes = %s " + same,
                    (key, sha256, size, batch_id, json.dumps(monitors)),
                )
        with self.lock:
            if self.exports.get(batch_id) is entry:
                del self.exports[batch_id]

    def cancel_optimization(self, optimization_id: str, key_id: str) -> dict | None:
        """Cancel a RUNNING optimisation of this key: its running iteration stops and
        its final run, if started, is cancelled. Returns the row (None if not its own)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "UPDATE optimizations SET status = 'CANCELLED', finished_at = now(), error = 'cancelled by the user' "
                "WHERE id = %s AND key_id = %s AND status = 'RUNNING' RETURNING result_job_id",
                (optimization_id, key_id),
            ).fetchone()
            if row is not None and row["result_job_id"] is not None:
                conn.execute("UPDATE jobs SET status = 'CANCELLED', finished_at = now(), error = 'optimisation cancelled' WHERE id = %s AND status IN ('QUEUED', 'RUNNING')", (row["result_job_id"],))
        if row is not None:
            with self.lock:
                entry = self.iterations.pop(optimization_id, None)
                job = self.refs.get(str(row["result_job_id"])) if row["result_job_id"] else None
            if entry is not None:
                ray.cancel(entry[0], force=True)
            if job is not None:
                stop(job)
        with self.pool.connection() as conn:
            return conn.execute("SELECT * FROM optimizations WHERE id = %s AND key_id = %s", (optimization_id, key_id)).fetchone()

    # ------------------------------------------------------------ optimisations
    def _advance(self, optimization_id: str) -> None:
        """Start what comes next for a RUNNING optimisation without a task: the
        iteration after the last recorded one, or, after the last, the final design's
        forward run."""
        with self.lock:
            if optimization_id in self.iterations:
                return
        with self.pool.connection() as conn:
            opt = conn.execute("SELECT * FROM optimizations WHERE id = %s AND status = 'RUNNING' AND result_job_id IS NULL", (optimization_id,)).fetchone()
            if opt is None:
                return
            last = conn.execute(
                "SELECT iteration, checkpoint_key, checkpoint_sha256 FROM optimization_iterations WHERE optimization_id = %s ORDER BY iteration DESC LIMIT 1",
                (optimization_id,),
            ).fetchone()
        done = last["iteration"] + 1 if last else 0
        checkpoint = (last["checkpoint_key"], last["checkpoint_sha256"]) if last else None
        if done >= opt["steps"]:
            self._final_run(opt, checkpoint)
            return
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": self.settings.max_retries, "retry_exceptions": False}
        if ray.cluster_resources().get("GPU", 0) > 0:
            options["num_gpus"] = 1
        ref = ray.remote(optimization_task).options(**options).remote(optimization_id, json.dumps(opt["problem"]), checkpoint, self.settings)
        with self.lock:
            self.iterations[optimization_id] = (ref, done)

    def _iteration_finished(self, optimization_id: str, entry: tuple[Any, int]) -> None:
        """Record an iteration (once: a replay of the same iteration is ignored) and
        start the next; a failed iteration fails the optimisation with its reason."""
        ref, iteration = entry
        try:
            record = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            record = None
        except Exception as e:  # noqa: BLE001 - every failure becomes the optimisation's reason
            reason = f"iteration {iteration}: {failure_reason(e)}"
            with self.pool.connection() as conn:
                row = conn.execute(
                    "UPDATE optimizations SET status = 'FAILED', finished_at = now(), error = %s WHERE id = %s AND status = 'RUNNING' RETURNING request_id",
                    (reason, optimization_id),
                ).fetchone()
            if row is not None:
                sentry.job_failed(optimization_id, reason, row["request_id"])
            record = None
        if record is not None:
            with self.pool.connection() as conn:
                conn.execute(
                    "INSERT INTO optimization_iterations (optimization_id, iteration, objective, beta, binarisation, seconds, checkpoint_key, checkpoint_sha256) "
                    "SELECT %s, %s, %s, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM optimizations WHERE id = %s AND status = 'RUNNING') "
                    "ON CONFLICT (optimization_id, iteration) DO NOTHING",
                    (optimization_id, record["iteration"], record["objective"], record["beta"], record["binarisation"], record["seconds"], record["checkpoint_key"], record["checkpoint_sha256"], optimization_id),
                )
        with self.lock:
            if self.iterations.get(optimization_id) is entry:
                del self.iterations[optimization_id]
        self._advance(optimization_id)

    def _final_run(self, opt: dict[str, Any], checkpoint: tuple[str, str] | None) -> None:
        """Queue the forward run of the final design (projected with the last β) as a
        job of the optimisation's key, and dispatch it."""
        from ..inverse import InverseProblem, OptimizerState

        problem = InverseProblem.model_validate_json(json.dumps(opt["problem"]))
        iteration, rho = OptimizerState.density(read_verified(self.settings, *checkpoint)) if checkpoint else (0, problem.initial_density())
        beta = problem.optimizer.beta_at(max(iteration - 1, 0))
        config = problem.simulation_with(problem.permittivity(rho, beta)).model_dump_json()
        with self.pool.connection() as conn, conn.transaction():
            job = conn.execute(
                "INSERT INTO jobs (id, key_id, status, config, body_sha256, request_id, total_steps, optimization_id) "
                "SELECT %s, key_id, 'QUEUED', %s::jsonb, %s, request_id, %s, id FROM optimizations WHERE id = %s AND status = 'RUNNING' AND result_job_id IS NULL RETURNING id",
                (uuid.uuid4(), config, hashlib.sha256(config.encode()).hexdigest(), problem.simulation.grid.num_time_steps, opt["id"]),
            ).fetchone()
            if job is None:
                return
            conn.execute("UPDATE optimizations SET result_job_id = %s WHERE id = %s", (job["id"], opt["id"]))
        self.dispatch(str(job["id"]))

    def _settle_optimizations(self) -> None:
        """End RUNNING optimisations whose final run ended, as it ended."""
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE optimizations o SET finished_at = now(), "
                "status = CASE WHEN j.status = 'COMPLETED' THEN 'COMPLETED' ELSE 'FAILED' END, "
                "error = CASE WHEN j.status = 'COMPLETED' THEN NULL ELSE 'final forward run: ' || coalesce(j.error, lower(j.status)) END "
                "FROM jobs j WHERE j.id = o.result_job_id AND o.status = 'RUNNING' AND j.status IN ('COMPLETED', 'FAILED', 'CANCELLED')"
            )

    # ------------------------------------------------------------ batches
    def _next_members(self) -> None:
        """After any member transition: end finished batches and optimisations, start
        waiting members."""
        self._settle()
        self._settle_optimizations()
        self._fill()

    def _settle(self) -> None:
        """End RUNNING batches with no active member left: COMPLETED when any member
        completed, else FAILED."""
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE batches b SET finished_at = now(), "
                "status = CASE WHEN done.any THEN 'COMPLETED' ELSE 'FAILED' END, "
                "error = CASE WHEN done.any THEN NULL ELSE 'no member completed' END "
                "FROM (SELECT batch_id, bool_or(status = 'COMPLETED') AS any, bool_or(status IN ('QUEUED', 'RUNNING')) AS active "
                "      FROM jobs WHERE batch_id IN (SELECT id FROM batches WHERE status = 'RUNNING') GROUP BY batch_id) AS done "
                "WHERE b.id = done.batch_id AND b.status = 'RUNNING' AND NOT done.active"
            )

    def _fill(self) -> None:
        """Dispatch QUEUED members, oldest batch first, up to each batch's
        ``max_parallel`` members running or dispatched at once."""
        with self.fill_lock:
            with self.lock:
                tracked = set(self.refs)
            with self.pool.connection() as conn:
                rows = conn.execute(
                    "SELECT j.id, j.status, b.id AS batch_id, b.max_parallel FROM jobs j JOIN batches b ON b.id = j.batch_id "
                    "WHERE b.status = 'RUNNING' AND j.status IN ('QUEUED', 'RUNNING') ORDER BY b.created_at, b.id, j.member_index"
                ).fetchall()
            start = []
            for _, group in itertools.groupby(rows, key=lambda r: r["batch_id"]):
                members = list(group)
                busy = sum(1 for m in members if m["status"] == "RUNNING" or str(m["id"]) in tracked)
                waiting = [str(m["id"]) for m in members if m["status"] == "QUEUED" and str(m["id"]) not in tracked]
                start += waiting[: max(members[0]["max_parallel"] - busy, 0)]
            for job_id in start:
                self.dispatch(job_id)

    # ------------------------------------------------------------ supervision
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
                    "UPDATE jobs SET status = 'QUEUED' WHERE status = 'RUNNING' AND provider = 'ray' AND dispatch_node IS DISTINCT FROM %s RETURNING id",
                    (self.node,),
                ).fetchall()
                if orphans:
                    log.info(f"requeued {len(orphans)} job(s) of an earlier Ray session")
            # Batch members wait for a slot of their batch (_fill), not for this loop.
            queued = [str(r["id"]) for r in conn.execute("SELECT id FROM jobs WHERE status = 'QUEUED' AND batch_id IS NULL ORDER BY created_at").fetchall()]
            stale = conn.execute(
                "SELECT id, attempts, batch_id FROM jobs WHERE status = 'RUNNING' AND heartbeat_at < now() - make_interval(secs => %s)",
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
                    conn.execute("UPDATE jobs SET status = 'QUEUED' WHERE id = %s AND status = 'RUNNING'", (job_id,))
                    if row["batch_id"] is None:
                        queued.append(job_id)
                else:
                    self.failed(job_id, f"worker lost: no heartbeat for {self.settings.heartbeat_timeout_s:g} s")
        for job_id in queued:
            if job_id not in tracked:
                self.dispatch(job_id)
        self._next_members()
        with self.pool.connection() as conn:
            exporting = [str(r["id"]) for r in conn.execute("SELECT id FROM batches WHERE dataset_status = 'RUNNING'").fetchall()]
        for batch_id in exporting:  # an export whose task was lost with a restart starts again
            self._start_export(batch_id)
        with self.pool.connection() as conn:
            optimizing = [str(r["id"]) for r in conn.execute("SELECT id FROM optimizations WHERE status = 'RUNNING' AND result_job_id IS NULL").fetchall()]
        for optimization_id in optimizing:  # resumes from the last checkpoint after a restart
            self._advance(optimization_id)
        self._overflow()
        if startup and queued:
            log.info(f"recovered {len(queued)} queued job(s) from PostgreSQL")

    def _overflow(self) -> None:
        """Send Ray-queued jobs elsewhere when the cluster has had no free GPU for
        ``overflow_wait_s``."""
        provider = self.settings.overflow_provider
        if not provider or ray.cluster_resources().get("GPU", 0) == 0 or ray.available_resources().get("GPU", 0) >= 1:
            return
        now = time.monotonic()
        with self.lock:
            waiting = [(job_id, entry) for job_id, entry in self.refs.items() if entry[2] == "ray" and now - entry[3] > self.settings.overflow_wait_s]
        for job_id, entry in waiting:
            with self.pool.connection() as conn:
                status = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()["status"]
            if status != "QUEUED":
                continue
            ray.cancel(entry[0])  # not started: just leaves Ray's queue
            with self.lock:
                self.refs.pop(job_id, None)
            self.dispatch(job_id, provider)

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
        on_ray = [(job_id, entry) for job_id, entry in items if entry[2] == "ray"]
        refs = [entry[0] for _, entry in on_ray] + [entry[0] for _, entry in exports] + [entry[0] for _, entry in iterations]
        if refs:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0.5)
            done = set(ready)
            for job_id, entry in on_ray:
                if entry[0] in done:
                    self._finish(job_id, entry)
            for batch_id, entry in exports:
                if entry[0] in done:
                    self._export_finished(batch_id, entry)
            for optimization_id, entry in iterations:
                if entry[0] in done:
                    self._iteration_finished(optimization_id, entry)
        else:
            time.sleep(0.5)
        for job_id, entry in items:
            if entry[2] == "subprocess" and entry[0].poll() is not None:
                if entry[0].returncode != 0:
                    self.failed(job_id, f"remote worker exited with code {entry[0].returncode}", entry[1])
                self._forget(job_id, entry)
        if time.monotonic() - last_reconcile > RECONCILE_EVERY_S:
            last_reconcile = time.monotonic()
            self.reconcile()
        return last_reconcile

    def _finish(self, job_id: str, entry: tuple) -> None:
        """A Ray task ended: any error becomes the job's FAILED reason."""
        try:
            ray.get(entry[0])
        except ray.exceptions.TaskCancelledError:
            pass
        except Exception as e:  # noqa: BLE001 - every failure becomes a reason on the job
            self.failed(job_id, failure_reason(e), entry[1])
        self._forget(job_id, entry)
        self._fill()  # its slot is free now

    def _forget(self, job_id: str, entry: tuple) -> None:
        with self.lock:
            if self.refs.get(job_id) is entry:
                del self.refs[job_id]


def stop(entry: tuple) -> None:
    """Stop a dispatched run, whatever runs it."""
    handle, _, provider, _ = entry
    if provider == "ray":
        ray.cancel(handle, force=True)
    elif provider == "subprocess":
        handle.kill()
    elif provider == "modal":
        handle.cancel()


def admit(conn: Any, table: str, key_id: str, quota: int, body_sha256: str, idempotency_key: str | None) -> dict[str, Any] | None:
    """Under the key's row lock (so submissions cannot race): the earlier submission
    of this Idempotency-Key in ``table`` ("jobs", "batches" or "optimizations"), or its conflict, or
    the quota's refusal; None when a new submission may be recorded."""
    from psycopg import sql

    conn.execute("SELECT id FROM api_keys WHERE id = %s FOR UPDATE", (key_id,))
    if idempotency_key:
        query = sql.SQL("SELECT * FROM {} WHERE key_id = %s AND idempotency_key = %s").format(sql.Identifier(table))
        existing = conn.execute(query, (key_id, idempotency_key)).fetchone()
        if existing:
            if existing["body_sha256"] != body_sha256:
                return {"refused": "idempotency", "detail": "Idempotency-Key reused with a different body"}
            return {"refused": None, "row": existing, "created": False}
    return quota_refusal(conn, key_id, quota)


def quota_refusal(conn: Any, key_id: str, quota: int) -> dict[str, Any] | None:
    """None when the key may start another job, batch or optimisation, else the 409's
    refusal. Active units: the key's QUEUED/RUNNING jobs of its own plus its RUNNING
    batches and optimisations."""
    jobs = conn.execute(
        "SELECT * FROM jobs WHERE key_id = %s AND status IN ('QUEUED', 'RUNNING') AND batch_id IS NULL AND optimization_id IS NULL ORDER BY created_at", (key_id,)
    ).fetchall()
    batches = conn.execute("SELECT count(*) AS n FROM batches WHERE key_id = %s AND status = 'RUNNING'", (key_id,)).fetchone()["n"]
    optimizations = conn.execute("SELECT count(*) AS n FROM optimizations WHERE key_id = %s AND status = 'RUNNING'", (key_id,)).fetchone()["n"]
    if len(jobs) + batches + optimizations < quota:
        return None
    detail = f"this key already has {len(jobs)} active job(s), {batches} active batch(es) and {optimizations} active optimisation(s) (quota {quota})"
    return {"refused": "quota", "detail": detail, "retry_after": retry_after(jobs[0]) if jobs else 10}


def retry_after(job: dict) -> int:
    """Seconds until the key's oldest active job is likely done (1…3600)."""
    cps = job.get("cells_per_second") or 0
    if job["status"] == "RUNNING" and cps > 0 and job["total_steps"]:
        cells = Simulation.model_validate(job["config"]).grid.total_cells
        return int(min(max((job["total_steps"] - job["step"]) * cells / cps, 1), 3600))
    return 5


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
