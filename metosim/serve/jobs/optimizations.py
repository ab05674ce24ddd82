"""Optimisations: iterations as Ray tasks one after another (each recorded with its
checkpoint before the next starts, so a restart resumes from the last), then the final
design's forward run as an ordinary job."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import ray

from ...inverse import InverseProblem, OptimizerState
from ..sentry import job_failed
from ..logs import get_logger
from ..storage import read_verified
from .dispatch import cancel_running, failure_reason, optimization_task, stop
from .records import IterationRun

log = get_logger("jobs")
INSERT_OPTIMIZATION = (
    "INSERT INTO optimizations (id, key_id, status, problem, steps, body_sha256, idempotency_key, request_id) "
    "VALUES (%s, %s, 'RUNNING', %s::jsonb, %s, %s, %s, %s) RETURNING *"
)
LINK_FINAL_RUN = "UPDATE optimizations SET result_job_id = %s WHERE id = %s"
SETTLE_OPTIMIZATIONS = (
    "UPDATE optimizations o SET finished_at = now(), status = CASE WHEN j.status = 'COMPLETED' THEN "
    "'COMPLETED' ELSE 'FAILED' END, error = CASE WHEN j.status = 'COMPLETED' THEN NULL ELSE 'final "
    "forward run: ' || coalesce(j.error, lower(j.status)) END FROM jobs j WHERE j.id = o.result_job_id "
    "AND o.status = 'RUNNING' AND j.status IN ('COMPLETED', 'FAILED', 'CANCELLED')"
)
CANCEL_FINAL_RUN = (
    "UPDATE jobs SET status = 'CANCELLED', finished_at = now(), error = 'optimisation cancelled' WHERE id "
    "= %s AND status IN ('QUEUED', 'RUNNING')"
)
RECORD_ITERATION = (
    "INSERT INTO optimization_iterations (optimization_id, iteration, objective, beta, binarisation, "
    "seconds, checkpoint_key, checkpoint_sha256) SELECT %s, %s, %s, %s, %s, %s, %s, %s WHERE EXISTS "
    "(SELECT 1 FROM optimizations WHERE id = %s AND status = 'RUNNING') ON CONFLICT (optimization_id, "
    "iteration) DO NOTHING"
)
CANCEL_OPTIMIZATION = (
    "UPDATE optimizations SET status = 'CANCELLED', finished_at = now(), error = 'cancelled by the user' "
    "WHERE id = %s AND key_id = %s AND status = 'RUNNING' RETURNING result_job_id"
)
OWN_OPTIMIZATION = "SELECT * FROM optimizations WHERE id = %s AND key_id = %s"
AWAITING_NEXT_STEP = "SELECT * FROM optimizations WHERE id = %s AND status = 'RUNNING' AND result_job_id IS NULL"
LAST_CHECKPOINT = (
    "SELECT iteration, checkpoint_key, checkpoint_sha256 FROM optimization_iterations WHERE "
    "optimization_id = %s ORDER BY iteration DESC LIMIT 1"
)
INSERT_FINAL_RUN = (
    "INSERT INTO jobs (id, key_id, status, config, body_sha256, request_id, total_steps, optimization_id) "
    "SELECT %s, key_id, 'QUEUED', %s::jsonb, %s, request_id, %s, id FROM optimizations WHERE id = %s AND "
    "status = 'RUNNING' AND result_job_id IS NULL RETURNING id"
)
FAIL_OPTIMIZATION = (
    "UPDATE optimizations SET status = 'FAILED', finished_at = now(), error = %s WHERE id = %s AND status "
    "= 'RUNNING' RETURNING request_id"
)


class Optimizations:
    """The actor's optimisation transitions."""

    def submit_optimization(self, key_id: str, quota: int, problem_json: str, steps: int, body_sha256: str, idempotency_key: str | None, request_id: str | None) -> dict[str, Any]:
        """Record a RUNNING optimisation and start its first iteration. Returns as
        :meth:`submit` does (the row is the optimisation's)."""
        values = (uuid.uuid4(), key_id, problem_json, steps, body_sha256, idempotency_key, request_id)
        outcome = self._admit_and_insert("optimizations", key_id, quota, body_sha256, idempotency_key, lambda conn: conn.execute(INSERT_OPTIMIZATION, values).fetchone())
        if outcome["refused"] is None and outcome["created"]:
            log.info(f"optimisation of {steps} iterations started", extra={"request_id": request_id, "job_id": str(outcome["row"]["id"])})
            self._advance(str(outcome["row"]["id"]))
        return outcome

    def cancel_optimization(self, optimization_id: str, key_id: str) -> dict | None:
        """Cancel a RUNNING optimisation of this key: its running iteration stops and
        its final run, if started, is cancelled. Returns the row (None if not its own)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                CANCEL_OPTIMIZATION,
                (optimization_id, key_id),
            ).fetchone()
            if row is not None and row["result_job_id"] is not None:
                conn.execute(CANCEL_FINAL_RUN, (row["result_job_id"],))
        if row is not None:
            with self.lock:
                entry = self.iterations.pop(optimization_id, None)
                job = self.refs.get(str(row["result_job_id"])) if row["result_job_id"] else None
            if entry is not None:
                cancel_running(entry.ref)
            if job is not None:
                stop(job)
        with self.pool.connection() as conn:
            return conn.execute(OWN_OPTIMIZATION, (optimization_id, key_id)).fetchone()

    def _advance(self, optimization_id: str) -> None:
        """Start what comes next for a RUNNING optimisation without a task: the
        iteration after the last recorded one, or, after the last, the final design's
        forward run."""
        with self.lock:
            if optimization_id in self.iterations:
                return
        with self.pool.connection() as conn:
            opt = conn.execute(AWAITING_NEXT_STEP, (optimization_id,)).fetchone()
            if opt is None:
                return
            last = conn.execute(
                LAST_CHECKPOINT,
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
            self.iterations[optimization_id] = IterationRun(ref, done)

    def _iteration_finished(self, optimization_id: str, entry: IterationRun) -> None:
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
                    FAIL_OPTIMIZATION,
                    (reason, optimization_id),
                ).fetchone()
            if row is not None:
                job_failed(optimization_id, reason, row["request_id"])
            record = None
        if record is not None:
            with self.pool.connection() as conn:
                conn.execute(
                    RECORD_ITERATION,
                    (optimization_id, record["iteration"], record["objective"], record["beta"], record["binarisation"], record["seconds"], record["checkpoint_key"], record["checkpoint_sha256"], optimization_id),
                )
        with self.lock:
            if self.iterations.get(optimization_id) is entry:
                del self.iterations[optimization_id]
        self._advance(optimization_id)

    def _final_run(self, opt: dict[str, Any], checkpoint: tuple[str, str] | None) -> None:
        """Queue the forward run of the final design (projected with the last β) as a
        job of the optimisation's key, and dispatch it."""
        problem = InverseProblem.model_validate_json(json.dumps(opt["problem"]))
        iteration, rho = OptimizerState.density(read_verified(self.settings, *checkpoint)) if checkpoint else (0, problem.initial_density())
        beta = problem.optimizer.beta_at(max(iteration - 1, 0))
        config = problem.simulation_with(problem.permittivity(rho, beta)).model_dump_json()
        with self.pool.connection() as conn, conn.transaction():
            job = conn.execute(
                INSERT_FINAL_RUN,
                (uuid.uuid4(), config, hashlib.sha256(config.encode()).hexdigest(), problem.simulation.grid.num_time_steps, opt["id"]),
            ).fetchone()
            if job is None:
                return
            conn.execute(LINK_FINAL_RUN, (job["id"], opt["id"]))
        self.dispatch(str(job["id"]))

    def _settle_optimizations(self) -> None:
        """End RUNNING optimisations whose final run ended, as it ended."""
        with self.pool.connection() as conn:
            conn.execute(
                SETTLE_OPTIMIZATIONS
            )
