"""One simulation split over several devices (``ms.solve(sim, devices=N)``): equal to
the one-device run on 3D cases where every monitor kind, the sources, the CPML,
dispersive media, the Bloch wrap and the mirror walls cross slab faces (four forced host
CPU devices, in a process of their own), and the refusals that name ``devices``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import pytest

import metosim as ms
from metosim.kernels.sharding import ShardingError, describe, halo_bytes, leaf_spec, split_axes
from metosim.kernels.solver import EngineInputError
from metosim.kernels.zarr_results import verify_store

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def sharded() -> dict[str, dict]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, str(HERE / "sharded_runs.py")], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return {case["case"]: case for case in map(json.loads, out.stdout.splitlines())}


@pytest.mark.parametrize(("case", "axis", "split", "halo"), [
    # Halo: the four components transverse to a cut, one plane of the piece's face each,
    # float64 (complex for Bloch).
    ("guide", "y", "slabs along y", 4 * 32 * 32 * 8),
    ("bloch", "x", "slabs along x", 4 * 24 * 8 * 16),
    ("symmetric", "z", "slabs along z", 4 * 24 * 24 * 8),
    # 17 × 23 × 30 cells a device: faces of 23 × 30 across x and 17 × 30 across y.
    ("blocks", "xy", "2 × 2 blocks along x and y", 4 * (23 * 30 + 17 * 30) * 8),
])
def test_split_run_equals_one_device_run(sharded: dict[str, dict], case: str, axis: str, split: str, halo: int) -> None:
    run = sharded[case]
    print(case, run["device"], max(run["differences"].values()))
    assert run["split_axis"] == axis and run["device"] == f"4 × cpu ({split})"
    assert run["halo_bytes_per_step"] == halo
    assert run["steps_equal"]  # the shutoff stopped both at the same step
    # Measured ≤ 4.8e-14 (a near-zero component); 0 for the Bloch case. Resumed: ≤ 8.5e-14.
    assert len(run["differences"]) >= 8
    assert max(run["differences"].values()) < 1e-12, run["differences"]


@pytest.mark.parametrize(("case", "in_pieces"), [
    ("guide", {"plane": 4, "line": 4}),
    # The line is one node along x: replicated across the x cut, in 2 pieces along y.
    ("blocks", {"plane": 4, "line": 2}),
    ("bloch", {"plane": 4}),
    ("symmetric", {"plane": 4}),  # unfolded across the mirror planes in pieces
])
def test_a_split_run_writes_its_field_monitors_in_pieces(sharded: dict[str, dict], case: str, in_pieces: dict[str, int]) -> None:
    """``ms.solve(sim, devices=4, output=)``: the monitors spanning a cut are written one
    shard file per piece (never gathered), the rest whole; read back, the one-device
    results; every file as the manifest says."""
    run = sharded[case]["stored"]
    print(case, max(run["differences"].values()), run["in_pieces"])
    assert set(run["in_pieces"]) == set(in_pieces)
    # A shard file per piece; none where a component is zero throughout (a mirror's).
    for name, files in run["in_pieces"].items():
        assert set(files.values()) <= {0, in_pieces[name]} and in_pieces[name] in files.values(), run["in_pieces"]
    assert run["verified"] > 20
    assert len(run["differences"]) >= 8 and max(run["differences"].values()) < 1e-12, run["differences"]


@pytest.mark.parametrize("case", ["guide", "blocks"])
@pytest.mark.parametrize("direction", ["resumed_on_one", "resumed_split"])
def test_checkpoints_resume_across_device_counts(sharded: dict[str, dict], direction: str, case: str) -> None:
    """A split run's checkpoint goes on on one device and a one-device run's over four:
    checkpoints hold the one-device state (each split axis's CPML ψ back in slabs)."""
    again = sharded[case][direction]
    print("resumed from step", again["from_step"], max(again["differences"].values()))
    assert 0 < again["from_step"] < sharded[case]["time_steps"] and again["steps_equal"]
    assert max(again["differences"].values()) < 1e-12, again["differences"]


def test_split_axes_take_the_longest_axis_the_count_divides_else_two() -> None:
    xyz = (True, True, True)
    assert split_axes((32, 48, 32), xyz, 4) == ((1, 4),)
    assert split_axes((30, 48, 32), xyz, 3) == ((1, 3),)
    assert split_axes((30, 50, 32), xyz, 4) == ((2, 4),)
    assert split_axes((64, 64, 1), (True, True, False), 4) == ((0, 4),)  # ties: the first axis
    # No axis takes 4: blocks on the pair and factors with the least face per device.
    assert split_axes((30, 50, 1), (True, True, False), 4) == ((0, 2), (1, 2))
    assert split_axes((34, 46, 30), xyz, 4) == ((0, 2), (1, 2))  # faces 23·30 + 17·30 beat 46·15 + 17·46
    assert split_axes((20, 45, 10), xyz, 6) == ((0, 2), (1, 3))  # faces 15·10 + 10·10 beat 20·5 + 20·15 on y, z
    assert describe(((0, 2), (1, 3))) == "2 × 3 blocks along x and y" and describe(((2, 4),)) == "slabs along z"
    with pytest.raises(ShardingError, match=r"devices=8 divides none of the stepped cell counts \(x 30, y 50\) into slabs, nor two of them into blocks"):
        split_axes((30, 50, 1), (True, True, False), 8)


def test_halo_counts_each_cut_over_the_pieces_face() -> None:
    layout = types.SimpleNamespace(shape=(34, 46, 30), dtype=np.float32, bloch=(0.0, 0.0, 0.0), live=(True,) * 6)
    assert halo_bytes(layout, ((1, 4),)) == 4 * 34 * 30 * 4  # type: ignore[arg-type]
    assert halo_bytes(layout, ((0, 2), (1, 2))) == 4 * (23 * 30 + 17 * 30) * 4  # type: ignore[arg-type]


def test_arrays_split_along_the_grid_axis_only_where_they_span_it() -> None:
    grid = (32, 48, 32)
    y = ((1, 4),)
    assert leaf_spec((32, 48, 32), grid, y) == (None, "y", None)  # a field
    assert leaf_spec((3, 1, 48, 32), grid, y) == (None, None, "y", None)  # a whole-grid DFT plane
    assert leaf_spec((6, 32, 32), grid, y) == (None, None, None)  # a CPML slab along y
    assert leaf_spec((1, 48, 1), grid, y) == (None, "y", None)  # 1/κ along y
    assert leaf_spec((420, 2), grid, y) == (None, None)  # a waveform
    xy = ((0, 2), (1, 2))
    assert leaf_spec((32, 48, 32), grid, xy) == ("x", "y", None)
    assert leaf_spec((6, 48, 32), grid, xy) == (None, "y", None)  # a CPML slab along x: cut along y only


def test_devices_are_refused_with_the_reason() -> None:
    sim = ms.Simulation(size=(2, 2, 0), grid_spec=ms.GridSpec.uniform(0.05), run_time=1e-15,
                        sources=[ms.PointDipole(center=(0, 0, 0), source_time=ms.GaussianPulse(freq0=3e14, fwidth=1e14))])
    with pytest.raises(EngineInputError, match=r"devices=2 but this process sees 1 JAX device\(s\) \(cpu\)"):
        ms.solve(sim, devices=2)
    with pytest.raises(EngineInputError, match="devices must be a positive integer, not 0"):
        ms.solve(sim, devices=0)
    with pytest.raises(EngineInputError, match="devices=2 needs the JAX backend, not 'numpy'"):
        ms.solve(sim, backend="numpy", devices=2)


# ------------------------------------------------------------------ over the service
def test_service_runs_a_split_solve_and_refuses_impossible_ones(service: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``?devices=2`` on the real Ray Serve API: the Ray task starts a worker process with
    two forced host CPU devices; its result equals a one-device solve here."""
    from .conftest import F_UNIT, issue_key
    from .test_service import auth, submit, tiny, wait_for

    key = issue_key(service, "split")
    sim = tiny(precision="float64")

    def post(devices: str) -> Any:
        return service["client"].post("/v1/simulations", params={"devices": devices}, content=sim.model_dump_json(), headers={**auth(key), "Content-Type": "application/json"})

    for value, status, words in (("two", 422, "devices must be a positive integer"), ("0", 422, "positive integer"),
                                 ("64", 413, "devices=64 but this cluster offers at most 4: 2 processes of 2 CPU devices per process"),
                                 ("3", 422, "devices=3 does not split evenly over 2 processes of at most 2")):
        response = post(value)
        assert response.status_code == status, response.text
        assert response.json()["errors"][0]["loc"] == "query.devices" and words in response.json()["detail"]
    odd = tiny(size=(4.02, 0, 0))  # 201 cells
    response = service["client"].post("/v1/simulations", params={"devices": "2"}, content=odd.model_dump_json(), headers={**auth(key), "Content-Type": "application/json"})
    assert response.status_code == 422 and "devices=2 divides none of the stepped cell counts (x 201)" in response.json()["detail"]
    response = post("2")
    assert response.status_code == 201, response.text
    first = response.json()["id"]
    job = wait_for(service, key, first, ("COMPLETED",), timeout=180)
    assert job["devices"] == 2 and job["result"]["format"] == "hdf5"  # one process: one file
    data = ms.SimulationData.from_hdf5(io.BytesIO(httpx.get(job["result"]["url"]).content))
    assert data.info["devices"] == 2 and data.info["device"].startswith("2 × cpu")
    here = ms.solve(sim)
    assert abs(float(data["T"].values[0]) - float(here["T"].values[0])) < 1e-12 * abs(float(here["T"].values[0]))
    # Over the two processes a node of 2 devices each allows: the job's lead process
    # reports, the other steps its half; each uploads its own part of a results store
    # (the field along the whole line: its pieces), the lead the manifest of both.
    lined = sim.updated_copy(monitors=[*sim.monitors, ms.FieldMonitor(name="line", size=(ms.inf, 0, 0), freqs=[F_UNIT])])
    response = service["client"].post("/v1/simulations", params={"devices": "4"}, content=lined.model_dump_json(), headers={**auth(key), "Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    job = wait_for(service, key, response.json()["id"], ("COMPLETED",), timeout=240)
    assert job["devices"] == 4 and job["result"]["format"] == "zarr"
    listed = service["client"].get(f"/v1/simulations/{job['id']}/result/files", headers=auth(key))
    assert listed.status_code == 200, listed.text
    manifest = httpx.get(job["result"]["url"]).content
    assert hashlib.sha256(manifest).hexdigest() == job["result"]["sha256"]
    lead, other = json.loads(manifest)["parts"]
    assert other and all(path.startswith("monitors/line/") and "/c/" in path for path in other), other
    assert set(listed.json()["files"]) == set(lead) | set(other)
    # The SDK downloads it (every file checked against the manifest) and reads it.
    handle = ms.Client(url=str(service["client"].base_url), api_key=key).job(job["id"])
    data = handle.result()
    assert data.info["device"] == "4 × cpu in 2 processes (slabs along x)"
    assert abs(float(data["T"].values[0]) - float(here["T"].values[0])) < 1e-12 * abs(float(here["T"].values[0]))
    line = ms.solve(lined)["line"]
    assert np.max(np.abs(data["line"].Ey.values - line.Ey.values)) < 1e-12 * np.max(np.abs(line.Ey.values))
    # Or read where it is stored, each file over its own link, only what is indexed.
    remote = handle.open()
    assert np.array_equal(remote["line"].Ey.isel(x=slice(10, 90)).values, data["line"].Ey.isel(x=slice(10, 90)).values)
    # A piece rotted in the bucket behind the service's back is never served.
    from metosim.serve.storage import S3Store

    from .conftest import BUCKET

    s3 = S3Store(BUCKET, service["s3"].url).client
    piece = next(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"results/{job['id']}/")["Contents"] if o["Key"].endswith("/" + other[0]))
    stored = s3.get_object(Bucket=BUCKET, Key=piece)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=piece, Body=stored[:-8] + bytes(8))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(ms.ChecksumMismatch, match="SHA-256"):
        handle.result()
    assert list((tmp_path / "metosim" / "results").iterdir()) == []  # nothing corrupt was kept
    # An HDF5 result has no file list.
    assert service["client"].get(f"/v1/simulations/{first}/result/files", headers=auth(key)).status_code == 409
    # Cancelled while running across processes: the placement group goes with it.
    import ray

    from .test_service import slow

    response = service["client"].post("/v1/simulations", params={"devices": "4"}, content=slow(20.0).model_dump_json(), headers={**auth(key), "Content-Type": "application/json"})
    job_id = response.json()["id"]
    wait_for(service, key, job_id, ("RUNNING",), timeout=240, predicate=lambda j: j["progress"]["step"] > 0)
    assert service["client"].delete(f"/v1/simulations/{job_id}", headers=auth(key)).json()["status"] == "CANCELLED"
    live = lambda: [g for g in ray.util.placement_group_table().values() if g["name"].startswith(f"metosim-{job_id}") and g["state"] != "REMOVED"]  # noqa: E731
    deadline = time.monotonic() + 30
    while live() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not live()
    assert submit(service, key, sim).status_code == 201  # and one device stays the default


def test_a_job_across_processes_checkpoints_and_goes_on_after_its_lead_is_lost(service: dict) -> None:
    """``?devices=4`` runs as two JAX processes of two devices each; they checkpoint at
    the steps the lead's clock decides, each storing its own part and the lead a manifest
    of the parts (no process gathers the whole state). The lead's worker killed after
    a checkpoint (a preempted node): the job is dispatched again across processes, every
    process goes on from that checkpoint, and it ends with the one-device run's numbers."""
    import signal

    from .conftest import issue_key
    from .test_resume import no_checkpoints_left, result_of, stored_checkpoints, submit
    from .test_service import db_row, slow, wait_for

    key = issue_key(service, "split-resume")
    # Few steps: across processes each half step exchanges its halos over TCP (gloo).
    sim = slow().model_copy(update={"grid_spec": ms.GridSpec.uniform(0.05), "run_time": 2e-13, "precision": "float64"})
    total = sim.grid.num_time_steps
    began = time.monotonic()
    job_id = submit(service, key, sim, "1", devices="4")
    running = wait_for(service, key, job_id, ("RUNNING",), timeout=240, predicate=lambda j: (j["checkpoint"]["step"] or 0) >= 0.3 * total)
    row = db_row(service, job_id)
    assert running["devices"] == 4 and row["checkpoint_key"].endswith(".json")
    assert sum(stored.endswith(".npz") for stored in stored_checkpoints(service, job_id)) >= 2  # one part per process
    killed_at = running["checkpoint"]["step"]
    os.kill(row["worker_pid"], signal.SIGKILL)
    done = wait_for(service, key, job_id, ("COMPLETED",), timeout=240)
    print(f"lead killed after the checkpoint at step {killed_at} of {total}; resumed from step {done['checkpoint']['resumed_step']}, attempts {done['attempts']}, {time.monotonic() - began:.0f} s")
    assert done["attempts"] == 2 and done["checkpoint"]["resumed_step"] >= killed_at
    assert no_checkpoints_left(service, job_id)  # the manifest and its parts, deleted with the job's end
    data, here = result_of(done, service, key), ms.solve(sim)
    assert data.info["device"] == "4 × cpu in 2 processes (slabs along x)" and data.info["resumed_step"] == done["checkpoint"]["resumed_step"]
    found = np.max(np.abs(data["f"].Ez.values - here["f"].Ez.values)) / np.max(np.abs(here["f"].Ez.values))
    assert found < 1e-12, found


def test_a_device_share_over_its_memory_is_413_naming_what_helps(service: dict) -> None:
    from metosim.serve.problems import Problem
    from metosim.serve.routes.common import check_devices
    from metosim.serve.settings import Settings

    sim = ms.Simulation(size=(4, 4, 4), grid_spec=ms.GridSpec.uniform(0.05), run_time=1e-15, boundary_spec=ms.BoundarySpec.all_sides(ms.Periodic()))
    need = sim.estimate(2)["memory_per_device_bytes"]
    assert need == pytest.approx(sim.estimate()["memory_bytes"] / 2, rel=1e-6)  # no monitors: the grid's arrays halve
    with pytest.raises(Problem) as refused:
        check_devices("2", sim, Settings(device_memory_bytes=need / 2))
    assert refused.value.response.status_code == 413
    # Default settings: 8 forced CPU devices per process, one process per CPU (2 here).
    assert b'"loc":"query.devices"' in refused.value.response.body and b"ask for up to 16 devices" in refused.value.response.body
    with pytest.raises(Problem) as refused:
        check_devices("2", sim, Settings(device_memory_bytes=need / 10))
    assert b'"loc":"grid_spec"' in refused.value.response.body
    assert check_devices("2", sim, Settings(device_memory_bytes=need)) == 2


def test_two_jax_processes_started_by_ray_equal_one_device(service: dict, tmp_path: Path) -> None:
    """The multi-host path on one machine: a placement group of two bundles, one JAX
    process each (one CPU device, gloo collectives), joined through Ray."""
    import ray

    from metosim.serve.multihost import solve_across_processes

    from .sharded_runs import differences, guide

    assert ray.is_initialized()
    sim = guide()
    split = solve_across_processes(sim, processes=2, devices_per_process=1, timeout=300)
    assert split.info["device"] == "2 × cpu in 2 processes (slabs along y)"
    one = ms.solve(sim)
    found = differences(one, split)
    print("two processes:", max(found.values()))
    assert len(found) >= 15 and max(found.values()) < 1e-12, found  # measured 9.1e-14
    # Each process writes its own part of a results store: the lead all but the other's
    # pieces of the monitors spanning the cut, the other only those.
    stored = solve_across_processes(sim, processes=2, devices_per_process=1, timeout=300, output=str(tmp_path / "store"))
    found = differences(one, stored)
    print("two processes, results store:", max(found.values()))
    assert len(found) >= 15 and max(found.values()) < 1e-12, found
    assert verify_store(tmp_path / "store") > 20
    lead, other = json.loads((tmp_path / "store" / "manifest.json").read_text())["parts"]
    pieces = {p for p in lead + other if p.startswith(("monitors/plane/", "monitors/line/")) and "/c/" in p}
    assert other and set(other) <= pieces and pieces & set(lead), other
    assert {p.split("/")[1] for p in other} == {"plane", "line"}
    # A refusal in the processes ends the run with its reason (not a hang in a collective).
    odd = ms.Simulation(size=(1.05, 1.05, 1.05), grid_spec=ms.GridSpec.uniform(0.05), run_time=1e-15, boundary_spec=ms.BoundarySpec.all_sides(ms.Periodic()))
    with pytest.raises(Exception, match=r"devices=2 divides none of the stepped cell counts \(x 21, y 21, z 21\)"):
        solve_across_processes(odd, processes=2, devices_per_process=1, timeout=300)
