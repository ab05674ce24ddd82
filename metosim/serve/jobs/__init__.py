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
restarts if it dies; on (re)start it rebuilds its view from PostgreSQL."""

from .actor import JobState, start_actor

__all__ = ["JobState", "start_actor"]
