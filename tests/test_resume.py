"""Checkpointed solves on the running service (real PostgreSQL, moto S3 over HTTP,
Ray, Serve): workers killed late in a solve go on from its newest checkpoint with
a bit-identical result, also past Ray's retries while the checkpoints advance; a store that refuses checkpoints leaves the solve
running and the job saying so; checkpoints are deleted when jobs end; a bad
``checkpoint_interval`` is a 422 naming it. (A whole service killed and restarted,
and a worker's time limit handing the job on: tests/test_lifecycle.py.)"""

from __future__ import annotations

import io
import os
import signal
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import metosim as ms
from metosim.serve.storage import LocalStore
from metosim.session import download_store

from .conftest import BUCKET, issue_key
from .test_checkpoint import assert_identical
from .test_service import auth, db_row, slow, wait_for


def submit(service: dict, key: str, sim: ms.Simulation, interval: str, devices: str = "1") -> str:
    response = service["client"].post("/v1/simulations", params={"checkpoint_interval": interval, "devices": devices}, content=sim.model_dump_json(), headers={**auth(key), "Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def stored_checkpoints(service: dict, job_id: str) -> list[str]:
    from metosim.serve.storage import S3Store

    return S3Store(BUCKET, service["s3"].url).keys(f"checkpoints/{job_id}/")


def no_checkpoints_left(service: dict, job_id: str, timeout: float = 30.0) -> bool:
    """Whether the job's checkpoints are all gone within ``timeout`` seconds: the
    service deletes them just after it records the job's end, and a worker the one it
    had in flight."""
    deadline = time.monotonic() + timeout
    while stored_checkpoints(service, job_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def result_of(job: dict, service: dict | None = None, key: str | None = None) -> ms.SimulationData:
    """A completed job's result: its HDF5 file, or the results store of a run split
    across processes (``service`` and ``key`` then fetch its file list)."""
    if job["result"]["format"] == "zarr":
        assert service is not None and key is not None
        files = service["client"].get(f"/v1/simulations/{job['id']}/result/files", headers=auth(key)).json()["files"]
        return ms.SimulationData.open(download_store(job["result"], files, directory=Path(tempfile.mkdtemp())))
    return ms.SimulationData.from_hdf5(io.BytesIO(httpx.get(job["result"]["url"]).content))


def test_workers_killed_late_resume_from_their_checkpoints_bit_for_bit(service: dict) -> None:
    """Killed at ~35% (Ray retries the task) and again at ~65% (past Ray's retries: the
    actor requeues it, as its checkpoints had got further): it still finishes, each
    time going on from the newest checkpoint, with the uninterrupted run's numbers."""
    key = issue_key(service, "resume-kill")
    sim = slow(16.0)
    job_id = submit(service, key, sim, "1")
    total = sim.grid.num_time_steps
    kills = []
    for attempt, fraction in ((1, 0.35), (2, 0.65)):
        running = wait_for(service, key, job_id, ("RUNNING",), timeout=120, predicate=lambda j: j["attempts"] == attempt and (j["checkpoint"]["step"] or 0) >= fraction * total)
        assert running["checkpoint"]["interval_s"] == 1.0 and running["checkpoint"]["error"] is None
        # Each new one replaces the last: the old object goes just after the new one is
        # stored (CI once listed both in that moment), so look again briefly.
        deadline = time.monotonic() + 5
        while len(stored_checkpoints(service, job_id)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(stored_checkpoints(service, job_id)) == 1
        kills.append((running["checkpoint"]["step"], time.monotonic()))
        os.kill(db_row(service, job_id)["worker_pid"], signal.SIGKILL)
    done = wait_for(service, key, job_id, ("COMPLETED",), timeout=120)
    print(f"workers killed at steps {[k[0] for k in kills]} of {total}: completed {time.monotonic() - kills[-1][1]:.1f} s after the last kill, resumed from step {done['checkpoint']['resumed_step']}")
    assert done["attempts"] == 3
    assert done["checkpoint"]["resumed_step"] >= kills[-1][0] >= 0.65 * total
    assert no_checkpoints_left(service, job_id)  # deleted with the job's end
    assert_identical(ms.solve(sim), result_of(done))  # the same numbers as an uninterrupted run


def test_a_corrupt_checkpoint_is_skipped_with_a_log_line_never_used(service: dict) -> None:
    import glob

    import ray

    from metosim.serve.storage import S3Store

    key = issue_key(service, "resume-corrupt")
    sim = slow(8.0)
    job_id = submit(service, key, sim, "1")
    running = wait_for(service, key, job_id, ("RUNNING",), timeout=120, predicate=lambda j: j["checkpoint"]["step"] is not None)
    # Frozen, so it stores no newer one; then the recorded object's bytes are replaced
    # behind the service's back (its recorded SHA-256 stays) and the worker killed.
    pid = db_row(service, job_id)["worker_pid"]
    os.kill(pid, signal.SIGSTOP)
    recorded = db_row(service, job_id)["checkpoint_key"]
    S3Store(BUCKET, service["s3"].url).client.put_object(Bucket=BUCKET, Key=recorded, Body=b"not the checkpoint")
    os.kill(pid, signal.SIGKILL)
    done = wait_for(service, key, job_id, ("COMPLETED",), timeout=120)
    assert running["checkpoint"]["step"] > 0 and done["attempts"] == 2
    assert done["checkpoint"]["resumed_step"] == 0  # started over rather than trust it
    assert_identical(ms.solve(sim), result_of(done))
    logs = ray._private.worker.global_worker.node.get_logs_dir_path()
    lines = [line for path in glob.glob(f"{logs}/worker-*") for line in open(path, errors="replace") if job_id in line and "skipped" in line]
    assert any("does not match its recorded SHA-256" in line for line in lines), lines


def test_a_store_that_refuses_checkpoints_leaves_the_solve_running(service: dict) -> None:
    key = issue_key(service, "resume-refused")
    sim = slow(12.0)
    job_id = submit(service, key, sim, "1")
    wait_for(service, key, job_id, ("RUNNING",), timeout=120, predicate=lambda j: j["checkpoint"]["step"] is not None)
    service["s3"].stop()
    try:
        refused = wait_for(service, key, job_id, ("RUNNING",), timeout=60, predicate=lambda j: j["checkpoint"]["error"] is not None)
        assert "not stored" in refused["checkpoint"]["error"]
        # The solve goes on meanwhile.
        wait_for(service, key, job_id, ("RUNNING",), timeout=60, predicate=lambda j: j["progress"]["step"] > refused["progress"]["step"])
    finally:
        service["s3"].restart()
    done = wait_for(service, key, job_id, ("COMPLETED",), timeout=120)
    assert done["attempts"] == 1 and done["checkpoint"]["resumed_step"] == 0
    assert no_checkpoints_left(service, job_id)
    assert float(np.max(np.abs(result_of(done)["f"]["Ez"]))) > 0


class Recorder:
    """The worker's ``Reporter`` (the job-state actor's side) reduced to what a
    checkpoint upload reports: each call kept; ``current`` says whether the dispatch
    is still the job's."""

    def __init__(self, current: bool = True) -> None:
        self.calls: list[tuple] = []
        self.current = current

    def checkpointed(self, job_id: str, token: int, key: str, sha256: str, step: int) -> bool:
        self.calls.append(("checkpointed", key, sha256, step))
        return self.current

    def checkpoint_failed(self, job_id: str, token: int, reason: str) -> None:
        self.calls.append(("failed", reason))


class FullDisk(LocalStore):
    def put(self, key: str, path: str) -> None:
        raise OSError(28, "No space left on device")


def test_a_checkpoint_in_parts_is_stored_as_its_parts_and_a_manifest(tmp_path: Path) -> None:
    """A split run's process stores its part; the lead stores a manifest naming each
    part with its SHA-256 and records the manifest; the worker that goes on fetches the
    parts through it, verified, into a checkpoint that resumes the run bit for bit. A
    stale dispatch's manifest and parts are deleted; a store that refuses a part is
    reported, and nothing is recorded."""
    from metosim.kernels import checkpoint as ck
    from metosim.serve.settings import Settings
    from metosim.serve.worker import CheckpointUploader, fetch_checkpoint

    from .test_checkpoint import Keeper, every_state_kind, in_parts

    sim, keeper = every_state_kind(), Keeper()
    whole = ms.solve(sim, checkpoints=ck.CheckpointPolicy(save=keeper, interval_s=0.0))
    (part,) = in_parts(keeper.read(2), 1)  # the lead's, of a run in one process
    job_id, extra = "00000000-0000-4000-8000-000000000001", {"job_id": "00000000-0000-4000-8000-000000000001"}
    store, reporter = LocalStore(str(tmp_path / "objects"), "http://localhost", b"secret"), Recorder()
    objects = lambda: sorted(p.name for p in (tmp_path / "objects").rglob("*") if p.is_file())  # noqa: E731
    CheckpointUploader(job_id, 1, sim, Settings(), store, reporter, extra)(part)
    ((what, key, sha256, step),) = reporter.calls
    assert what == "checkpointed" and key.endswith(".json") and step == part.step
    assert sorted(name.rsplit(".", 1)[1] for name in objects()) == ["json", "npz"]
    resume = fetch_checkpoint(store, {"key": key, "sha256": sha256, "step": step}, sim, extra)
    assert resume is not None and resume.step == part.step
    assert_identical(whole, ms.solve(sim, resume=resume))

    stale = Recorder(current=False)
    CheckpointUploader(job_id, 1, sim, Settings(), store, stale, extra)(in_parts(keeper.read(3), 1)[0])
    assert stale.calls[0][0] == "checkpointed" and len(objects()) == 2  # its own two deleted

    refused = Recorder()
    CheckpointUploader(job_id, 1, sim, Settings(upload_backoff_s=0.0), FullDisk(str(tmp_path / "full"), "http://localhost", b"secret"), refused, extra)(part)
    assert refused.calls == [("failed", f"checkpoint at step {part.step} not stored: OSError: [Errno 28] No space left on device")]


def test_a_cancelled_job_leaves_no_checkpoint(service: dict, tmp_path: Path) -> None:
    """Neither its recorded checkpoint nor one a lost worker stored without recording
    it (here: a part of a split run whose manifest never came)."""
    from metosim.serve.storage import S3Store, job_checkpoint_key

    key = issue_key(service, "resume-cancel")
    job_id = submit(service, key, slow(12.0), "1")
    wait_for(service, key, job_id, ("RUNNING",), timeout=120, predicate=lambda j: j["checkpoint"]["step"] is not None)
    (tmp_path / "part.npz").write_bytes(b"a part")
    S3Store(BUCKET, service["s3"].url).put(job_checkpoint_key(job_id, "0" * 64, 7, "1" * 64), str(tmp_path / "part.npz"))
    assert service["client"].delete(f"/v1/simulations/{job_id}", headers=auth(key)).status_code == 200
    assert no_checkpoints_left(service, job_id)


@pytest.mark.parametrize("value", ["0.1", "-5", "nan", "inf", "often"])
def test_a_bad_checkpoint_interval_is_422_naming_it(service: dict, value: str) -> None:
    response = service["client"].post("/v1/simulations", params={"checkpoint_interval": value}, content=slow(1.0).model_dump_json(), headers={**auth(service["keys"]["frank"]), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["loc"] == "query.checkpoint_interval"
    assert "finite number of seconds ≥ 0.5" in problem["errors"][0]["msg"]
