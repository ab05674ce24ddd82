"""Batches: N member jobs as one active unit on the key, dispatched up to
``max_parallel`` at a time, settled when every member has ended, exported as one
dataset."""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from typing import Any

import ray

from ..logs import get_logger
from .dispatch import export_task, failure_reason, stop
from .records import ExportRun

log = get_logger("jobs")
INSERT_BATCH = (
    "INSERT INTO batches (id, key_id, status, size, max_parallel, parameters, body_sha256, idempotency_key, request_id) "
    "VALUES (%s, %s, 'RUNNING', %s, %s, %s::jsonb, %s, %s, %s) RETURNING *"
)
INSERT_MEMBER = (
    "INSERT INTO jobs (id, key_id, status, config, body_sha256, request_id, total_steps, batch_id, member, member_index, parameters, requested_accelerator) "
    "VALUES (%s, %s, 'QUEUED', %s::jsonb, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)"
)
START_EXPORT = (
    "UPDATE batches SET dataset_status = 'RUNNING', dataset_monitors = %s::jsonb, dataset_key = NULL, "
    "dataset_sha256 = NULL, dataset_bytes = NULL, dataset_error = NULL WHERE id = %s AND key_id = %s AND "
    "status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND (dataset_status IS NULL OR dataset_status = "
    "'FAILED' OR dataset_monitors IS DISTINCT FROM %s::jsonb)"
)
SETTLE_BATCHES = (
    "UPDATE batches b SET finished_at = now(), status = CASE WHEN done.any THEN 'COMPLETED' ELSE 'FAILED' "
    "END, error = CASE WHEN done.any THEN NULL ELSE 'no member completed' END FROM (SELECT batch_id, "
    "bool_or(status = 'COMPLETED') AS any, bool_or(status IN ('QUEUED', 'RUNNING')) AS active       FROM "
    "jobs WHERE batch_id IN (SELECT id FROM batches WHERE status = 'RUNNING') GROUP BY batch_id) AS done "
    "WHERE b.id = done.batch_id AND b.status = 'RUNNING' AND NOT done.active"
)
CANCEL_BATCH = (
    "UPDATE batches SET status = 'CANCELLED', finished_at = now(), error = 'cancelled by the user' WHERE "
    "id = %s AND key_id = %s AND status = 'RUNNING' RETURNING id"
)
OWN_BATCH = "SELECT * FROM batches WHERE id = %s AND key_id = %s"
COMPLETED_MEMBERS = (
    "SELECT member AS name, parameters, result_key, result_sha256 AS sha256 FROM jobs WHERE batch_id = %s "
    "AND status = 'COMPLETED' ORDER BY member_index"
)
CANCEL_MEMBERS = (
    "UPDATE jobs SET status = 'CANCELLED', finished_at = now(), error = 'the batch was cancelled' WHERE "
    "batch_id = %s AND status IN ('QUEUED', 'RUNNING') RETURNING id"
)
EXPORT_MONITORS = "SELECT dataset_monitors FROM batches WHERE id = %s"
ACTIVE_MEMBERS = (
    "SELECT j.id, j.status, b.id AS batch_id, b.max_parallel FROM jobs j JOIN batches b ON b.id = "
    "j.batch_id WHERE b.status = 'RUNNING' AND j.status IN ('QUEUED', 'RUNNING') ORDER BY b.created_at, "
    "b.id, j.member_index"
)


class Batches:
    """The actor's batch transitions."""

    def submit_batch(self, key_id: str, quota: int, max_parallel: int, members: list[dict[str, Any]], body_sha256: str, idempotency_key: str | None, request_id: str | None, accelerator: str | None = None) -> dict[str, Any]:
        """Record a RUNNING batch and its QUEUED members (name, config JSON, parameters,
        total_steps) in one transaction, then start the first ``max_parallel``. Returns
        as :meth:`submit` does (the row is the batch's)."""

        def insert(conn: Any) -> dict[str, Any]:
            parameters = list(members[0]["parameters"])
            batch = conn.execute(INSERT_BATCH, (uuid.uuid4(), key_id, len(members), max_parallel, json.dumps(parameters), body_sha256, idempotency_key, request_id)).fetchone()
            with conn.cursor() as cur:
                cur.executemany(
                    INSERT_MEMBER,
                    [
                        (uuid.uuid4(), key_id, m["config"], hashlib.sha256(m["config"].encode()).hexdigest(), request_id, m["total_steps"], batch["id"], m["name"], i, json.dumps(m["parameters"]), accelerator)
                        for i, m in enumerate(members)
                    ],
                )
            return batch

        outcome = self._admit_and_insert("batches", key_id, quota, body_sha256, idempotency_key, insert)
        if outcome["refused"] is None and outcome["created"]:
            log.info(f"batch of {len(members)} queued", extra={"request_id": request_id, "job_id": str(outcome["row"]["id"])})
            self._fill()
        return outcome

    def cancel_batch(self, batch_id: str, key_id: str) -> dict | None:
        """Cancel a RUNNING batch of this key and its queued and running members;
        returns the batch (None if not its own)."""
        with self.pool.connection() as conn, conn.transaction():
            cancelled = conn.execute(CANCEL_BATCH, (batch_id, key_id)).fetchone()
            members = []
            if cancelled:
                members = conn.execute(
                    CANCEL_MEMBERS,
                    (batch_id,),
                ).fetchall()
            batch = conn.execute(OWN_BATCH, (batch_id, key_id)).fetchone()
        for row in members:
            with self.lock:
                entry = self.refs.get(str(row["id"]))
            if entry is not None:
                stop(entry)
            self._drop_checkpoint(str(row["id"]))
        return batch

    def export(self, batch_id: str, key_id: str, monitors: list[str] | None) -> dict | None:
        """Start writing an ended batch's dataset (unless the same export is running or
        done); returns the batch row (None if not this key's)."""
        with self.pool.connection() as conn:
            conn.execute(
                START_EXPORT,
                (json.dumps(monitors), batch_id, key_id, json.dumps(monitors)),
            )
            batch = conn.execute(OWN_BATCH, (batch_id, key_id)).fetchone()
        if batch is not None and batch["dataset_status"] == "RUNNING":
            self._start_export(batch_id)
        return batch

    def _start_export(self, batch_id: str) -> None:
        with self.lock:
            if batch_id in self.exports:
                return
        with self.pool.connection() as conn:
            monitors = conn.execute(EXPORT_MONITORS, (batch_id,)).fetchone()["dataset_monitors"]
            members = conn.execute(
                COMPLETED_MEMBERS,
                (batch_id,),
            ).fetchall()
        ref = ray.remote(export_task).options(num_cpus=1, max_retries=self.settings.max_retries).remote(batch_id, members, monitors, self.settings)
        with self.lock:
            self.exports[batch_id] = ExportRun(ref, monitors)

    def _export_finished(self, batch_id: str, entry: ExportRun) -> None:
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
                SETTLE_BATCHES
            )

    def _fill(self) -> None:
        """Dispatch QUEUED members, oldest batch first, up to each batch's
        ``max_parallel`` members running or dispatched at once."""
        with self.fill_lock:
            with self.lock:
                tracked = set(self.refs)
            with self.pool.connection() as conn:
                rows = conn.execute(
                    ACTIVE_MEMBERS
                ).fetchall()
            start = []
            for _, group in itertools.groupby(rows, key=lambda r: r["batch_id"]):
                members = list(group)
                busy = sum(1 for m in members if m["status"] == "RUNNING" or str(m["id"]) in tracked)
                waiting = [str(m["id"]) for m in members if m["status"] == "QUEUED" and str(m["id"]) not in tracked]
                start += waiting[: max(members[0]["max_parallel"] - busy, 0)]
            for job_id in start:
                self.dispatch(job_id)
