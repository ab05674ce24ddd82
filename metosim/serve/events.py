"""Server-Sent Events for job progress: one database poll per replica for every open
stream, however many there are (a lab's notebooks watching their jobs), instead of
one poll per stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

#: Seconds between polls of the watched jobs' rows.
POLL_S = 0.25


class JobWatcher:
    """Polls the rows of every job some stream is watching with one query each
    :data:`POLL_S`, and wakes only the streams whose job changed (state or step)."""

    def __init__(self, fetch: Callable[[list[str]], Awaitable[list[dict[str, Any]]]]) -> None:
        #: ``fetch(job_ids)`` → the jobs' rows (one query).
        self.fetch = fetch
        self.rows: dict[str, dict[str, Any]] = {}
        self.watchers: dict[str, int] = {}
        #: job id → the event its streams wait on; set (and replaced) when the job changes
        self.signals: dict[str, asyncio.Event] = {}
        self.task: asyncio.Task | None = None

    async def _poll(self) -> None:
        while self.watchers:
            try:
                rows = await self.fetch(list(self.watchers))
            except Exception:  # noqa: BLE001 - a database blip: streams keep their last state
                rows = []
            for row in rows:
                job_id = str(row["id"])
                old = self.rows.get(job_id)
                self.rows[job_id] = row
                if old is None or (old["status"], old["step"]) != (row["status"], row["step"]):
                    signal = self.signals.pop(job_id, None)
                    if signal is not None:
                        signal.set()
            await asyncio.sleep(POLL_S)
        self.task = None

    async def rows_of(self, job_id: str, first: dict[str, Any], idle_s: float) -> AsyncGenerator[dict[str, Any], None]:
        """The job's row each time it changes, or after ``idle_s`` without a change;
        starts with ``first``, the row the request already read."""
        self.watchers[job_id] = self.watchers.get(job_id, 0) + 1
        self.rows.setdefault(job_id, first)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._poll())
        try:
            yield first
            while True:
                signal = self.signals.setdefault(job_id, asyncio.Event())
                try:
                    await asyncio.wait_for(signal.wait(), timeout=idle_s)
                except asyncio.TimeoutError:
                    pass
                yield self.rows[job_id]
        finally:
            self.watchers[job_id] -= 1
            if not self.watchers[job_id]:
                del self.watchers[job_id]
                self.rows.pop(job_id, None)
                self.signals.pop(job_id, None)


async def sse_stream(rows: AsyncGenerator[dict[str, Any], None], view: Callable[[dict[str, Any]], dict[str, Any]], terminal: tuple[str, ...], keepalive_s: float, max_s: float = 3600.0) -> AsyncIterator[str]:
    """``event: status`` on each change of state or step, ``event: keepalive`` after
    ``keepalive_s`` of silence, until the job ends (or ``max_s``)."""
    last, sent, deadline = None, time.monotonic(), time.monotonic() + max_s
    try:
        async for row in rows:
            snapshot = (row["status"], row["step"])
            if snapshot != last:
                last, sent = snapshot, time.monotonic()
                yield f"event: status\ndata: {json.dumps(view(row))}\n\n"
            elif time.monotonic() - sent >= keepalive_s:  # lets clients and proxies see a live stream
                sent = time.monotonic()
                yield "event: keepalive\ndata: {}\n\n"
            if row["status"] in terminal or time.monotonic() > deadline:
                return
    finally:
        await rows.aclose()  # the client left: stop watching its job now, not at GC
