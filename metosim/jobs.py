"""``Job``: one submitted simulation, followed and downloaded through a session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .data import SimulationData
from .session import Handle, JobFailed, download, follow
from .widgets.progress import make_display


class Job(Handle):
    """A submitted simulation."""

    collection = "/v1/simulations"

    def updates(self, poll: float = 0.25, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Status dicts until the job ends: followed live over Server-Sent Events
        (``GET /v1/simulations/{id}/events``), falling back to polling with backoff
        (0.25 s → 2 s) if the stream cannot be opened or breaks."""
        return follow(self.client, self.path, f"job {self.id}", poll, timeout)

    def wait(self, progress: bool = True, timeout: float | None = None, download: bool = False) -> Any:
        """Follow the job to its end; raise :class:`JobFailed` unless COMPLETED. Returns
        the final status, or the :class:`SimulationData` with ``download=True``."""
        display = make_display(self) if progress else None
        state: dict[str, Any] = {}
        try:
            for state in self.updates(timeout=timeout):
                if display:
                    display.update(state)
            if state["status"] != "COMPLETED":
                raise JobFailed(self.id, state["status"], state.get("error"))
            if not download:
                return state
            if display:
                display.downloading(0, state["result"]["size"])
            data = self.result(state, on_bytes=display.downloading if display else None)
            if display:
                display.done()
            return data
        except BaseException as e:
            if display:
                display.fail(str(e))
            raise

    def result(self, state: dict[str, Any] | None = None, on_bytes: Callable[[int, int], None] | None = None) -> SimulationData:
        """Download (or reuse from the cache) and verify the result, then read it."""
        state = state or self.status()
        if state["status"] != "COMPLETED":
            raise JobFailed(self.id, state["status"], state.get("error"))
        return SimulationData.from_hdf5(str(download(state["result"], on_bytes=on_bytes, verify=self.client.verify)))


__all__ = ["Job"]
