"""Batches and sweeps: N simulations as N cluster tasks, one active unit on the key.

    batch = client.batch({"a": sim_a, "b": sim_b})          # or client.batch(ms.sweep(make, width=[...]))
    for name, data in batch.results():                      # each member the moment it completes
        ...
    data = batch.data()                                     # BatchData: lazy, one file per member
    batch.to_dataset("sweep.zarr")                          # one zarr store, a `sample` dimension

``Batch`` follows a submitted batch; ``BatchData`` opens a member's results only when
it is indexed. The REST body (``BatchSpec``) and sweeps are models, in
:mod:`metosim.batch_spec`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .data import SimulationData
from .jobs import Job
from .session import Handle, MetoSimError, Session, download, poll_status


# ---------------------------------------------------------------- following a batch
class Batch(Handle):
    """A submitted batch. Reattach after a kernel restart with ``ms.Batch.load(id)``
    (or ``client.batch(id)``); ``status()`` holds the counts per state, the progress
    and each member's state."""

    collection = "/v1/batches"

    @classmethod
    def load(cls, batch_id: str, client: Session | None = None) -> "Batch":
        batch = cls(client or Session(), batch_id)
        batch.status()  # fails now if the id is unknown to this key
        return batch

    def members(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every member's job view (name, parameters, status, error, result link), paged."""
        items, offset = [], 0
        while offset is not None:
            params: dict[str, Any] = {"limit": 100, "offset": offset}
            if status:
                params["status"] = status
            page = self.client.request("GET", f"{self.path}/simulations", params=params).json()
            items += page["items"]
            offset = page["next_offset"]
        return items

    def updates(self, poll: float = 0.5, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Status dicts until the batch ends (polling with backoff, 0.5 s → 2 s)."""
        yield from poll_status(self.status, f"batch {self.id}", poll, None if timeout is None else time.monotonic() + timeout, timeout)

    def wait(self, progress: bool = True, timeout: float | None = None) -> dict[str, Any]:
        """Follow the batch to its end (with a live progress display); returns the final
        status. Failed members do not raise: their reasons are in ``status()``."""
        from .widgets.batch import make_batch_display

        display = make_batch_display(self) if progress else None
        state: dict[str, Any] = {}
        for state in self.updates(timeout=timeout):
            if display:
                display.update(state)
        return state

    def results(self, poll: float = 0.5, timeout: float | None = None) -> Iterator[tuple[str, SimulationData]]:
        """(name, data) of each member as soon as it completes, downloaded into the
        local cache and verified (members already verified there are not downloaded
        again). Failed and cancelled members are skipped."""
        done: set[str] = set()
        # Each status is read before the listing: members completed by then are in it,
        # so the last (terminal) status leaves none behind.
        for _ in self.updates(poll, timeout):
            for member in self.members(status="COMPLETED"):
                if member["name"] not in done:
                    done.add(member["name"])
                    yield member["name"], SimulationData.open(str(download(member["result"], verify=self.client.verify)))

    def data(self) -> "BatchData":
        """The members' results as a lazy :class:`BatchData` (completed members only)."""
        return BatchData(self.client, self.members())

    def to_dataset(self, path: str, monitors: Sequence[str] | None = None) -> str:
        """Write the completed members' monitors as one zarr store at ``path`` (a
        directory, or a single ``.zip`` file); see :func:`metosim.dataset.write_dataset`."""
        return self.data().to_dataset(path, monitors)

    def export_dataset(self, monitors: Sequence[str] | None = None, timeout: float = 600.0) -> dict[str, Any]:
        """Have the service write the dataset into its object store (one zipped zarr
        store, checksummed); returns ``{"url", "sha256", "size", ...}``. Open it lazily
        with ``ms.open_dataset(result["url"])``."""
        body = {"monitors": list(monitors) if monitors is not None else None}
        self.client.request("POST", f"{self.path}/dataset", json=body)
        deadline = time.monotonic() + timeout
        while True:
            dataset = self.status()["dataset"]
            if dataset["status"] == "COMPLETED":
                return dataset
            if dataset["status"] == "FAILED":
                raise MetoSimError(f"dataset export failed: {dataset['error']}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"dataset export of batch {self.id} still running after {timeout} s")
            time.sleep(0.5)


class BatchData(Mapping[str, SimulationData]):
    """Results of a batch's completed members, opened lazily: ``batch_data["name"]``
    downloads (or finds in the cache) and opens only that member's file; arrays are
    read when indexed. ``parameters`` holds each member's sweep values and
    ``failed`` each failed member's reason."""

    def __init__(self, client: Session, members: Sequence[Mapping[str, Any]]) -> None:
        self.client = client
        self._members = {m["name"]: m for m in members if m["status"] == "COMPLETED"}
        self.parameters = {m["name"]: dict(m.get("parameters") or {}) for m in members if m["status"] == "COMPLETED"}
        self.failed = {m["name"]: m["error"] for m in members if m["status"] in ("FAILED", "CANCELLED")}
        self._open: dict[str, SimulationData] = {}

    def __getitem__(self, name: str) -> SimulationData:
        if name not in self._open:
            self._open[name] = SimulationData.open(str(self.path(name)))
        return self._open[name]

    def path(self, name: str) -> Any:
        """The member's verified results file in the local cache (downloaded if needed)."""
        try:
            member = self._members[name]
        except KeyError:
            raise KeyError(f"no completed member {name!r}; completed: {sorted(self._members)}") from None
        result = member["result"]
        try:
            return download(result, only_cached=True)
        except FileNotFoundError:  # not in the cache: a fresh link (the listed one may have expired)
            return download(Job(self.client, member["id"]).status()["result"], verify=self.client.verify)

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def sel(self, **values: Any) -> SimulationData:
        """The member whose sweep parameters equal ``values`` (e.g. ``sel(width=0.5)``);
        with several parameters, name them all or the match must still be unique."""
        matches = [name for name, params in self.parameters.items() if all(k in params and params[k] == v for k, v in values.items())]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} members match {values}" + (f": {matches[:5]}" if matches else f"; parameters are {self.parameter_values()}"))
        return self[matches[0]]

    def parameter_values(self) -> dict[str, list[Any]]:
        """Each sweep parameter's distinct values, in order."""
        out: dict[str, list[Any]] = {}
        for params in self.parameters.values():
            for k, v in params.items():
                if v not in out.setdefault(k, []):
                    out[k].append(v)
        return out

    def close(self) -> None:
        for data in self._open.values():
            data.close()
        self._open.clear()

    def to_dataset(self, path: str, monitors: Sequence[str] | None = None) -> str:
        """Write these members' monitors as one zarr store (see
        :func:`metosim.dataset.write_dataset`); returns ``path``."""
        from .dataset import DatasetMember, write_dataset

        members = [DatasetMember(name, self.parameters[name], m["result"]["sha256"], lambda name=name: self[name]) for name, m in self._members.items()]
        write_dataset(path, members, monitors)
        return path

    def __repr__(self) -> str:
        return f"BatchData({len(self)} completed members, {len(self.failed)} failed; parameters {self.parameter_values()})"

    def _repr_html_(self) -> str:
        names = list(self.parameter_values())
        head = "".join(f"<th>{html.escape(n)}</th>" for n in ["member", *names])
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in [name, *(self.parameters[name][n] for n in names)]) + "</tr>" for name in self._members)
        failed = "".join(f"<tr><td>{html.escape(n)}</td><td colspan='{max(len(names), 1)}'>FAILED: {html.escape(str(r))}</td></tr>" for n, r in self.failed.items())
        return f"<table><caption><b>metosim.BatchData</b> ({len(self)} completed, {len(self.failed)} failed)</caption><tr>{head}</tr>{rows}{failed}</table>"
