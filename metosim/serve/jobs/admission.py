"""Admission: whether a key may start another job, batch or optimisation (its quota,
under the key's row lock), and Idempotency-Key replays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...simulation import Simulation
LOCK_KEY = "SELECT id FROM api_keys WHERE id = %s FOR UPDATE"
ACTIVE_OWN_JOBS = (
    "SELECT * FROM jobs WHERE key_id = %s AND status IN ('QUEUED', 'RUNNING') AND batch_id IS NULL AND "
    "optimization_id IS NULL ORDER BY created_at"
)
RUNNING_BATCHES = "SELECT count(*) AS n FROM batches WHERE key_id = %s AND status = 'RUNNING'"
RUNNING_OPTIMIZATIONS = "SELECT count(*) AS n FROM optimizations WHERE key_id = %s AND status = 'RUNNING'"


def admit(conn: Any, table: str, key_id: str, quota: int, body_sha256: str, idempotency_key: str | None) -> dict[str, Any] | None:
    """Under the key's row lock (so submissions cannot race): the earlier submission
    of this Idempotency-Key in ``table`` ("jobs", "batches" or "optimizations"), or its conflict, or
    the quota's refusal; None when a new submission may be recorded."""
    from psycopg import sql

    conn.execute(LOCK_KEY, (key_id,))
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
        ACTIVE_OWN_JOBS, (key_id,)
    ).fetchall()
    batches = conn.execute(RUNNING_BATCHES, (key_id,)).fetchone()["n"]
    optimizations = conn.execute(RUNNING_OPTIMIZATIONS, (key_id,)).fetchone()["n"]
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


class Admission:
    """The actor's admit-and-record step, shared by every kind of submission."""

    def _admit_and_insert(self, table: str, key_id: str, quota: int, body_sha256: str, idempotency_key: str | None, insert: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """One transaction: :func:`admit`'s answer if it refuses or finds the earlier
        submission, else the row ``insert(conn)`` records (with whatever else it
        records in the same transaction)."""
        with self.pool.connection() as conn, conn.transaction():
            outcome = admit(conn, table, key_id, quota, body_sha256, idempotency_key)
            if outcome:
                return outcome
            return {"refused": None, "row": insert(conn), "created": True}
