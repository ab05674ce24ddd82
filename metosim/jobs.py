"""``Job``: one submitted simulation, followed and downloaded through a session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .data import SimulationData
from .session import Handle, JobFailed, download, download_store, follow
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
        """Download (or reuse from the cache) and verify the result, then read it (a
        results store, the form a run split across processes leaves, lazily from the
        cache)."""
        state = state or self.status()
        if state["status"] != "COMPLETED":
            raise JobFailed(self.id, state["status"], state.get("error"))
        result = state["result"]
        if result.get("format") == "zarr":  # a run split across processes: a results store
            return SimulationData.open(download_store(result, self._store_files(), on_bytes=on_bytes, verify=self.client.verify))
        return SimulationData.from_hdf5(str(download(result, on_bytes=on_bytes, verify=self.client.verify)))

    def open(self) -> SimulationData:
        """The result read where it is stored, lazily: only what you index is fetched
        (HTTP range reads over its 15-minute links; not checked against the SHA-256s
        as :meth:`result` does). Works for an HDF5 result and for a results store."""
        state = self.status()
        if state["status"] != "COMPLETED":
            raise JobFailed(self.id, state["status"], state.get("error"))
        if state["result"].get("format") == "zarr":
            return SimulationData.open({path: f["url"] for path, f in self._store_files().items()})
        return SimulationData.open(state["result"]["url"])

    def _store_files(self) -> dict[str, dict[str, str]]:
        """Each file of a results store: its SHA-256 and link."""
        return self.client.request("GET", f"{self.path}/result/files").json()["files"]


__all__ = ["Job"]
