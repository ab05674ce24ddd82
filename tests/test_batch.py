"""Batches on the running service (real PostgreSQL, Ray, Serve HTTP and the S3-protocol
server): scheduling under max_parallel, failures, cancel, restart, reattach, datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metosim as ms
from metosim.session import QuotaExceeded, ValidationError

from .conftest import BUCKET, F_UNIT, CountingRangeServer, issue_key
from .test_service import auth, restart_service, slow, tiny

from metosim.serve.db import connect  # noqa: E402
from metosim.serve.storage import S3Store  # noqa: E402


def unguided() -> ms.Simulation:
    """Valid, but fails in the engine: a mode monitor on a plane with no waveguide."""
    return tiny(size=(4, 2, 0), monitors=[ms.ModeMonitor(name="m", center=(1, 0, 0), size=(0, 1.5, ms.inf), freqs=[F_UNIT])], boundary_spec=ms.BoundarySpec(x=ms.Boundary(), y=ms.Boundary()))


def slab(thickness: float) -> ms.Simulation:
    """1D: a plane wave through a glass slab; flux and field monitors."""
    return tiny(
        structures=[ms.Structure(geometry=ms.Box(size=(thickness, ms.inf, ms.inf)), medium=ms.Medium(permittivity=2.25))],
        monitors=[
            ms.FluxMonitor(name="T", center=(1, 0, 0), size=(0, ms.inf, ms.inf), freqs=[0.9 * F_UNIT, F_UNIT, 1.1 * F_UNIT]),
            ms.FieldMonitor(name="E", size=(ms.inf, 0, 0), freqs=[F_UNIT]),
        ],
    )


def make_client(service: dict, name: str, **key: Any) -> ms.Client:
    return ms.Client(url=str(service["client"].base_url), api_key=issue_key(service, name, **key))


def members(service: dict, batch_id: str) -> list[dict]:
    with connect(service["db"]) as conn:
        return conn.execute("SELECT * FROM jobs WHERE batch_id = %s ORDER BY member_index", (batch_id,)).fetchall()


def max_overlap(rows: list[dict]) -> int:
    """Most members running at one instant, from their start and finish times."""
    events = sorted([(r["started_at"], 1) for r in rows if r["started_at"]] + [(r["finished_at"], -1) for r in rows if r["started_at"] and r["finished_at"]])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def wait_until_a_member_runs(batch: ms.Batch, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(m["status"] == "RUNNING" for m in batch.status()["members"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.fixture(scope="module")
def finished(service: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A sweep of three slabs plus one member that fails on purpose, run to the end."""
    client = make_client(service, "batch-sweep", max_parallel=2)
    sweep = ms.sweep(slab, thickness=[0.2, 0.4, 0.6])
    sims = {**sweep, "broken": unguided()}
    parameters = {**sweep.parameters, "broken": {"thickness": -1.0}}
    batch = client.batch(ms.Sweep(sims, parameters))
    with pytest.raises(QuotaExceeded):  # the batch is the key's one active unit
        client.submit(tiny())
    state = batch.wait(progress=False, timeout=180)
    return {"client": client, "batch": batch, "state": state, "sweep": sweep}


def test_failed_member_does_not_fail_the_batch(service: dict, finished: dict) -> None:
    state = finished["state"]
    assert state["status"] == "COMPLETED"
    assert state["counts"] == {"QUEUED": 0, "RUNNING": 0, "COMPLETED": 3, "FAILED": 1, "CANCELLED": 0}
    assert state["progress"]["fraction"] == 1.0
    broken = next(m for m in state["members"] if m["name"] == "broken")
    assert broken["status"] == "FAILED" and "no guided mode" in broken["error"]
    rows = members(service, state["id"])
    assert max_overlap(rows) <= 2  # the key's max_parallel
    assert all(r["key_id"] == rows[0]["key_id"] for r in rows)
    # The quota is free again once the batch has ended.
    finished["client"].run(tiny(), progress=False)


def test_results_stream_and_batch_data_is_lazy(service: dict, finished: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    batch, sweep = finished["batch"], finished["sweep"]
    names = [name for name, _ in batch.results(timeout=30)]
    assert sorted(names) == sorted(sweep)
    data = batch.data()
    assert len(data) == 3 and "broken" in data.failed and "no guided mode" in data.failed["broken"]
    assert data.parameter_values() == {"thickness": [0.2, 0.4, 0.6]}
    # Indexing opens only that member's file, lazily, and its values match a local solve.
    member = data.sel(thickness=0.4)
    assert len(data._open) == 1
    local = ms.solve(sweep["thickness=0.4"])
    np.testing.assert_allclose(member["T"].values, local["T"].values, rtol=1e-6)
    assert "<table>" in data._repr_html_() and "thickness" in repr(data)
    with pytest.raises(KeyError, match="0 members match"):
        data.sel(thickness=0.5)
    data.close()


def test_reattach_from_a_fresh_process_downloads_only_what_is_missing(service: dict, finished: dict, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "METOSIM_URL": finished["client"].url, "METOSIM_API_KEY": finished["client"].http.headers["Authorization"].split()[1]}
    script = (
        "import json, sys, metosim as ms\n"
        "from metosim.session import cache_dir\n"
        "data = ms.Batch.load(sys.argv[1]).data()\n"
        "names = sys.argv[2:] or list(data)\n"
        "before = {p.name: p.stat().st_mtime_ns for p in cache_dir().glob('*.h5')}\n"
        "for name in names: data[name]\n"
        "after = {p.name: p.stat().st_mtime_ns for p in cache_dir().glob('*.h5')}\n"
        "print(json.dumps({'new': sorted(set(after) - set(before)), 'rewritten': sorted(k for k in before if after.get(k) != before[k])}))\n"
    )
    run = lambda *names: json.loads(subprocess.run([sys.executable, "-c", script, finished["batch"].id, *names], env=env, capture_output=True, text=True, check=True).stdout)  # noqa: E731
    first = run("thickness=0.2")
    assert len(first["new"]) == 1 and first["rewritten"] == []
    second = run()  # all three: the one already verified is not downloaded again
    assert len(second["new"]) == 2 and second["rewritten"] == []


def test_dataset_round_trip_equals_member_results(finished: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    batch, sweep = finished["batch"], finished["sweep"]
    path = batch.to_dataset(str(tmp_path / "sweep.zarr"))
    assert ms.verify_dataset(path) > 10
    tree = ms.open_dataset(path)
    assert list(tree["T"]["thickness"].values) == [0.2, 0.4, 0.6]
    data = batch.data()
    for i, name in enumerate(tree["T"]["member"].values):
        member = data[str(name)]
        assert tree["T"]["sha256"].values[i] == data._members[str(name)]["result"]["sha256"]
        np.testing.assert_array_equal(tree["T"]["flux"].isel(sample=i).values, member["T"].values)
        for component in member["E"].data_vars:
            np.testing.assert_array_equal(tree["E"][component].isel(sample=i).values, member["E"][component].values)
        assert ms.Simulation.model_validate_json(str(tree["config"].values[i])) == sweep[str(name)]
    import xarray as xr

    assert xr.open_zarr(path, group="T", consolidated=True, chunks=None)["flux"].sizes == {"sample": 3, "f": 3}
    data.close()


def test_service_side_dataset_export_reads_lazily(service: dict, finished: dict, tmp_path: Path) -> None:
    batch = finished["batch"]
    dataset = batch.export_dataset(monitors=["E"])
    assert dataset["status"] == "COMPLETED" and dataset["monitors"] == ["E"]
    assert batch.export_dataset(monitors=["E"])["sha256"] == dataset["sha256"]  # done once, same bytes
    import httpx

    payload = httpx.get(dataset["url"]).content
    assert len(payload) == dataset["size"]
    import hashlib

    assert hashlib.sha256(payload).hexdigest() == dataset["sha256"]
    local = tmp_path / "export.zarr.zip"
    local.write_bytes(payload)
    assert ms.verify_dataset(local) > 10
    server = CountingRangeServer(payload)
    try:
        tree = ms.open_dataset(server.url, block_size=4096)
        opened = server.sent
        value = tree["E"]["Ey"].isel(sample=1).values
        chunk_read = server.sent - opened
        assert "T" not in tree.children and value.shape == (200, 1, 1, 1)
        # One sample of one of six components of three samples: one small chunk (or no
        # more bytes, when it lay in a block the open already fetched: seen once).
        assert chunk_read < 0.1 * len(payload), (chunk_read, len(payload))
    finally:
        server.close()
    # Opening the pre-signed S3 link directly gives the same values.
    remote = ms.open_dataset(dataset["url"])
    np.testing.assert_array_equal(remote["E"]["Ey"].isel(sample=1).values, value)
    keys = [o["Key"] for o in S3Store(BUCKET, service["s3"].url).client.list_objects_v2(Bucket=BUCKET, Prefix=f"datasets/{batch.id}/")["Contents"]]
    assert keys == [f"datasets/{batch.id}/{dataset['sha256']}.zarr.zip"]


def test_bad_batches_are_refused_naming_the_member(service: dict) -> None:
    client = make_client(service, "batch-bad")
    post = lambda body: service["client"].post("/v1/batches", content=json.dumps(body), headers=auth(client.http.headers["Authorization"].split()[1]))  # noqa: E731
    assert post({"members": []}).status_code == 422
    sim = json.loads(tiny().model_dump_json())
    duplicate = post({"members": [{"name": "a", "simulation": sim}, {"name": "a", "simulation": sim}]})
    assert duplicate.status_code == 422 and "duplicate member name 'a'" in duplicate.json()["detail"]
    broken = {**sim, "run_time": -1}
    response = post({"members": [{"name": "good", "simulation": sim}, {"name": "bad one", "simulation": broken}]})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["member"] == "bad one" and error["loc"] == "members[bad one].simulation.run_time"
    with pytest.raises(ValidationError) as info:
        client.batch({"x": tiny(), "y": tiny(grid_spec=ms.GridSpec.uniform(1e-5), size=(40, 0, 0))})
    assert info.value.errors[0]["member"] == "y" and "exceed" in info.value.errors[0]["msg"]
    # The whole batch over the service's total cells × steps: 413 at the member that crosses it.
    periodic = ms.Boundary(minus=ms.Periodic(), plus=ms.Periodic())  # across the plane wave only: along x it would be refused
    big = tiny(size=(16, 16, 16), grid_spec=ms.GridSpec.uniform(0.04), run_time=1.7e-13, boundary_spec=ms.BoundarySpec(x=ms.Boundary(), y=periodic, z=periodic))
    est = big.estimate()
    count = int(service["settings"].max_batch_cell_steps // (est["cells"] * est["time_steps"])) + 1
    response = post({"members": [{"name": f"m{i}", "simulation": json.loads(big.model_dump_json())} for i in range(count)]})
    assert response.status_code == 413 and response.json()["errors"][0]["member"] == f"m{count - 1}"
    one = {"name": "m", "simulation": json.loads(tiny().model_dump_json())}
    limit = service["settings"].max_batch_members
    response = post({"members": [{**one, "name": f"m{i}"} for i in range(limit + 1)]})
    assert response.status_code == 413 and f"limit of {limit}" in response.json()["detail"]
    assert client.batches() == []  # nothing was recorded


def test_cancel_mid_batch_stops_queued_and_running_members(service: dict) -> None:
    client = make_client(service, "batch-cancel", max_parallel=1)
    batch = client.batch({f"s{i}": slow(1.5) for i in range(3)})
    wait_until_a_member_runs(batch)
    state = batch.cancel()
    assert state["status"] == "CANCELLED" and state["counts"]["CANCELLED"] == 3
    time.sleep(2.0)  # the stopped worker must not report a completion afterwards
    rows = members(service, batch.id)
    assert [r["status"] for r in rows] == ["CANCELLED"] * 3 and all(r["result_key"] is None for r in rows)
    assert batch.status()["status"] == "CANCELLED"
    client.run(tiny(), progress=False)  # the key is free again


def test_idempotent_batch_submission(service: dict) -> None:
    client = make_client(service, "batch-idem")
    first = client.batch({"a": tiny()}, idempotency_key="sweep-1")
    again = client.batch({"a": tiny()}, idempotency_key="sweep-1")
    assert again.id == first.id
    with pytest.raises(ValidationError, match="Idempotency-Key"):
        client.batch({"b": tiny()}, idempotency_key="sweep-1")
    first.wait(progress=False, timeout=60)


def test_service_restart_mid_batch_loses_nothing_and_runs_nothing_twice(service: dict) -> None:
    client = make_client(service, "batch-restart", max_parallel=2)
    batch = client.batch({f"s{i}": slow(0.5) for i in range(5)})
    wait_until_a_member_runs(batch)
    restart_service(service)
    state = batch.wait(progress=False, timeout=180)
    assert state["status"] == "COMPLETED" and state["counts"]["COMPLETED"] == 5
    s3 = S3Store(BUCKET, service["s3"].url).client
    for row in members(service, batch.id):
        stored = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"results/{row['id']}/").get("Contents", [])
        assert [o["Key"] for o in stored] == [row["result_key"]]  # completed once, one result


def test_batch_progress_displays() -> None:
    import io

    from metosim.widgets import BatchProgress, TextBatchProgress

    class Stub:
        id = "0123456789"

        def cancel(self) -> None:
            pass

    status = {
        "status": "RUNNING",
        "progress": {"fraction": 0.5},
        "counts": {"QUEUED": 1, "RUNNING": 1, "COMPLETED": 1, "FAILED": 1, "CANCELLED": 0},
        "members": [
            {"name": "a", "status": "COMPLETED", "error": None},
            {"name": "b", "status": "FAILED", "error": "EngineInputError: no guided mode"},
            {"name": "c", "status": "RUNNING", "error": None},
            {"name": "d", "status": "QUEUED", "error": None},
        ],
    }
    widget = BatchProgress(Stub())
    widget.update(status)
    assert widget.grid.value.count("<span") == 4 and "b: failed — EngineInputError" in widget.grid.value
    assert list(widget.failed.options) == ["b"]
    widget.failed.value = "b"  # selecting a failed member shows its reason
    assert "no guided mode" in widget.reason.value
    widget.update({**status, "status": "COMPLETED", "progress": {"fraction": 1.0}})
    assert widget.bar.bar_style == "warning" and widget.cancel_button.disabled
    stream = io.StringIO()
    text = TextBatchProgress(Stub(), stream)
    text.update(status)
    text.update(status)  # unchanged: no new line
    text.update({**status, "status": "COMPLETED"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "running" in lines[0] and lines[2] == "  b: EngineInputError: no guided mode"
