"""Checkpoints of running solves: what a starting worker resumes from, the newest
checkpoint of each job (its predecessor deleted), a worker handing its job back at
its time limit, and the clean-up when a job ends."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from ..logs import get_logger
from ..storage import ObjectStore, make_store, manifest_parts
from .records import Dispatched

log = get_logger("jobs")
START = "SELECT checkpoint_key, checkpoint_sha256, checkpoint_step, checkpoint_interval_s FROM jobs WHERE id = %s"
# The previous key comes from the locked row before the update (RETURNING shows new values).
CHECKPOINTED = (
    "UPDATE jobs j SET checkpoint_key = %s, checkpoint_sha256 = %s, checkpoint_step = %s, checkpoint_at = now(), "
    "checkpoint_error = NULL FROM (SELECT id, checkpoint_key AS previous FROM jobs WHERE id = %s FOR UPDATE) p "
    "WHERE j.id = p.id AND j.dispatches = %s AND j.status = 'RUNNING' RETURNING p.previous"
)
CHECKPOINT_FAILED = "UPDATE jobs SET checkpoint_error = %s WHERE id = %s AND dispatches = %s AND status = 'RUNNING'"
# A continuation is not a retry: the attempt it used is given back.
SUSPENDED = (
    "UPDATE jobs SET status = 'QUEUED', continuations = continuations + 1, attempts = greatest(attempts - 1, 0) "
    "WHERE id = %s AND dispatches = %s AND status = 'RUNNING' AND checkpoint_step = %s RETURNING batch_id"
)
PROGRESSED = (
    "UPDATE jobs SET status = 'QUEUED' WHERE id = %s AND dispatches = %s AND status = 'RUNNING' AND "
    "checkpoint_step > %s RETURNING batch_id"
)
ENDED_CHECKPOINT = (
    "UPDATE jobs j SET checkpoint_key = NULL, checkpoint_sha256 = NULL FROM (SELECT id, checkpoint_key AS "
    "previous FROM jobs WHERE id = %s FOR UPDATE) p WHERE j.id = p.id AND j.status IN ('COMPLETED', 'FAILED', "
    "'CANCELLED') RETURNING p.previous"
)


class Checkpoints:
    """The job-state actor's part in checkpointing (tokens guard every report, as for
    progress)."""

    @property
    def store(self) -> ObjectStore:
        if getattr(self, "_store", None) is None:
            self._store = make_store(self.settings)
        return self._store

    def start_of(self, job_id: str) -> dict[str, Any]:
        """What a worker that starts ``job_id`` needs: its newest checkpoint (or None)
        and the seconds of stepping between checkpoints."""
        with self.pool.connection() as conn:
            row = conn.execute(START, (job_id,)).fetchone()
        stored = {"key": row["checkpoint_key"], "sha256": row["checkpoint_sha256"], "step": row["checkpoint_step"]} if row["checkpoint_key"] else None
        return {"checkpoint": stored, "checkpoint_interval_s": row["checkpoint_interval_s"] or self.settings.checkpoint_interval_s}

    def checkpointed(self, job_id: str, token: int, key: str, sha256: str, step: int) -> bool:
        with self.pool.connection() as conn:
            row = conn.execute(CHECKPOINTED, (key, sha256, step, job_id, token)).fetchone()
        if row is None:
            return False
        if row["previous"] and row["previous"] != key:
            self._delete(job_id, row["previous"])
        return True

    def checkpoint_failed(self, job_id: str, token: int, reason: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(CHECKPOINT_FAILED, (reason[:1000], job_id, token))

    def suspended(self, job_id: str, token: int, step: int) -> None:
        """A worker reached its time limit after checkpointing at ``step``: queue the job
        to go on from there. Without that checkpoint on record it could only start
        over, and reach the limit again: it fails instead."""
        with self.pool.connection() as conn:
            row = conn.execute(SUSPENDED, (job_id, token, step)).fetchone()
        if row is None:
            self.failed(job_id, f"the worker's time limit was reached and its checkpoint at step {step}, to go on from, was not stored", token)
            return
        log.info(f"continues from step {step}", extra={"job_id": job_id})
        self._go_on(job_id, row["batch_id"])

    def requeue_if_progressed(self, job_id: str, entry: Dispatched) -> bool:
        """Queue a job whose worker was lost again if its checkpoints got past where
        this dispatch started; False (nothing done) if they did not."""
        with self.pool.connection() as conn:
            row = conn.execute(PROGRESSED, (job_id, entry.token, entry.checkpoint_step)).fetchone()
        if row is None:
            return False
        log.info("worker lost after checkpointing further: requeued", extra={"job_id": job_id})
        self._go_on(job_id, row["batch_id"])
        return True

    def _go_on(self, job_id: str, batch_id: Any) -> None:
        """Dispatch a job queued again to go on from its checkpoint."""
        if batch_id is None:
            self.dispatch(job_id)
        else:
            self._fill()

    def _drop_checkpoint(self, job_id: str) -> None:
        """Delete an ended job's checkpoints: the one on record, and whatever a lost
        worker stored under the job's prefix without recording it (an upload that
        outlived its dispatch, the parts of a split run whose manifest never came)."""
        with self.pool.connection() as conn:
            row = conn.execute(ENDED_CHECKPOINT, (job_id,)).fetchone()
        if row is None:
            return
        try:
            stored = self.store.keys(f"checkpoints/{job_id}/")
        except Exception as e:  # noqa: BLE001 - leftover objects are not worth failing a job for
            log.warning(f"could not list the checkpoints to delete: {type(e).__name__}: {e}", extra={"job_id": job_id})
            stored = [row["previous"]] if row["previous"] else []
        for key in stored:
            self._delete(job_id, key)

    def _delete(self, job_id: str, key: str) -> None:
        """Delete a checkpoint: the object, or a manifest and the parts it names."""
        try:
            if key.endswith(".json"):
                with tempfile.TemporaryDirectory(prefix="metosim-manifest-") as tmp:
                    path = os.path.join(tmp, "manifest.json")
                    self.store.get(key, path)
                    for part, _ in manifest_parts(path, job_id):
                        self.store.delete(part)
            self.store.delete(key)
        except Exception as e:  # noqa: BLE001 - a leftover object is not worth failing a job for
            log.warning(f"could not delete {key}: {type(e).__name__}: {e}", extra={"job_id": job_id})
