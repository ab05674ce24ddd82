"""The service with real parts: embedded PostgreSQL, moto's S3 server over HTTP, a
local Ray instance and the Ray Serve HTTP API (the session fixture in conftest)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import signal
import threading
import time
from typing import Any

import httpx
import pytest

import metosim as ms

from .conftest import F_UNIT, issue_key

import ray  # noqa: E402
from metosim.serve.db import connect  # noqa: E402
from metosim.serve.states import JOBSTATE, NAMESPACE  # noqa: E402
from metosim.serve.storage import LocalStore, S3Store, result_key, upload_with_retry  # noqa: E402

from .conftest import BUCKET  # noqa: E402
PULSE = ms.GaussianPulse(freq0=F_UNIT, fwidth=0.25 * F_UNIT)


def tiny(run_fs: float = 40.0, **changes: Any) -> ms.Simulation:
    """A 1D plane wave through vacuum: solves in well under a second."""
    fields = dict(
        size=(4, 0, 0),
        grid_spec=ms.GridSpec.uniform(0.02),
        run_time=run_fs * 1e-15,
        sources=[ms.PlaneWave(center=(-1, 0, 0), size=(0, ms.inf, ms.inf), direction="+x", polarization="Ey", source_time=PULSE)],
        monitors=[ms.FluxMonitor(name="T", center=(1, 0, 0), size=(0, ms.inf, ms.inf), freqs=[F_UNIT])],
        boundary_spec=ms.BoundarySpec(x=ms.Boundary()),
    )
    fields.update(changes)
    return ms.Simulation(**fields)


def slow(seconds_hint: float = 1.0) -> ms.Simulation:
    """A 2D run long enough to catch while RUNNING (no shutoff)."""
    return ms.Simulation(
        size=(6, 6, 0),
        grid_spec=ms.GridSpec.uniform(0.02),
        run_time=seconds_hint * 4e-13,
        sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=PULSE)],
        monitors=[ms.FieldMonitor(name="f", size=(1, 1, 0), freqs=[F_UNIT])],
        shutoff=0,
    )


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(service: dict, key: str, sim: ms.Simulation, **headers: str) -> httpx.Response:
    return service["client"].post("/v1/simulations", content=sim.model_dump_json(), headers={**auth(key), "Content-Type": "application/json", **headers})


def wait_for(service: dict, key: str, job_id: str, states: tuple[str, ...], timeout: float = 90, predicate: Any = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = service["client"].get(f"/v1/simulations/{job_id}", headers=auth(key)).json()
        if job["status"] in states and (predicate is None or predicate(job)):
            return job
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED") and job["status"] not in states:
            raise AssertionError(f"job ended {job['status']}: {job['error']}")
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not in {states} after {timeout} s: {job}")


def db_row(service: dict, job_id: str) -> dict:
    with connect(service["db"]) as conn:
        return conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()


# ------------------------------------------------------------------ the main flow
def test_full_flow_small_simulation(service: dict) -> None:
    key = service["keys"]["alice"]
    response = submit(service, key, tiny(), **{"X-Request-ID": "trace-123"})
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == "trace-123"  # echoed (by the Serve proxy)
    created = response.json()
    assert created["status"] == "QUEUED" and set(created) == {"id", "status", "created_at"}
    job = wait_for(service, key, created["id"], ("COMPLETED",))
    assert job["progress"]["fraction"] == 1.0 and job["attempts"] == 1 and job["provider"] == "ray" and job["node"]
    result = job["result"]
    assert "X-Amz-Expires=900" in result["url"]  # pre-signed for 15 minutes
    blob = httpx.get(result["url"]).content
    assert len(blob) == result["size"]
    assert hashlib.sha256(blob).hexdigest() == result["sha256"]  # recorded sha256 = the file's
    data = ms.SimulationData.from_hdf5(io.BytesIO(blob))
    assert data.simulation == tiny()
    assert abs(float(data["T"].values[0]) - 1.0) < 1e-3  # a real solve: vacuum transmission
    row = db_row(service, created["id"])
    assert row["request_id"] == "trace-123" and row["result_key"] == result_key(created["id"], result["sha256"])


def test_events_stream_progress_until_done(service: dict) -> None:
    key = service["keys"]["bob"]
    job_id = submit(service, key, tiny(run_fs=80, shutoff=0)).json()["id"]
    statuses = []
    with service["client"].stream("GET", f"/v1/simulations/{job_id}/events", headers=auth(key), timeout=120) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                statuses.append(json.loads(line[6:])["status"])
    assert statuses[-1] == "COMPLETED"
    assert statuses[0] in ("QUEUED", "RUNNING")


def test_many_event_streams_of_one_job_all_follow_it(service: dict) -> None:
    """30 watchers at once (the replica polls the database once for all of them)."""
    from concurrent.futures import ThreadPoolExecutor

    key = issue_key(service, "many-streams", quota=1)
    job_id = submit(service, key, slow(1.0)).json()["id"]

    def watch(_: int) -> list[tuple[str, int]]:
        seen = []
        with httpx.stream("GET", f"{str(service['client'].base_url).rstrip('/')}/v1/simulations/{job_id}/events", headers=auth(key), timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and '"status"' in line:
                    view = json.loads(line[6:])
                    seen.append((view["status"], view["progress"]["step"]))
        return seen

    with ThreadPoolExecutor(30) as pool:
        streams = list(pool.map(watch, range(30)))
    for seen in streams:
        assert seen[-1][0] == "COMPLETED"
        steps = [step for status, step in seen if status == "RUNNING"]
        # Progress reached every watcher, not just the end: at least the final step's
        # report, which the worker sends however fast it runs.
        assert steps and steps == sorted(steps) and steps[-1] > 0


def test_list_is_paginated_and_own_jobs_only(service: dict) -> None:
    key = service["keys"]["alice"]
    first = service["client"].get("/v1/simulations", params={"limit": 1}, headers=auth(key)).json()
    assert len(first["items"]) == 1
    assert all(j["id"] for j in first["items"])
    others = {j["id"] for j in service["client"].get("/v1/simulations", headers=auth(service["keys"]["bob"])).json()["items"]}
    assert first["items"][0]["id"] not in others


# ------------------------------------------------------------------ quota, idempotency, cancel
def test_one_active_job_per_key_409_then_cancel(service: dict) -> None:
    key = service["keys"]["carol"]
    running = submit(service, key, slow(100.0)).json()
    second = submit(service, key, tiny())
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert int(second.headers["Retry-After"]) >= 1
    wait_for(service, key, running["id"], ("RUNNING",))
    cancelled = service["client"].delete(f"/v1/simulations/{running['id']}", headers=auth(key))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    again = service["client"].delete(f"/v1/simulations/{running['id']}", headers=auth(key))
    assert again.status_code == 200 and again.json()["status"] == "CANCELLED"  # DELETE is idempotent
    time.sleep(1.0)
    assert db_row(service, running["id"])["status"] == "CANCELLED"  # the task's end did not overwrite it
    freed = submit(service, key, tiny())
    assert freed.status_code == 201  # the slot is free again
    wait_for(service, key, freed.json()["id"], ("COMPLETED",))  # and free for the next test


def test_idempotency_key_returns_the_same_job(service: dict) -> None:
    key = service["keys"]["dave"]
    first = submit(service, key, tiny(), **{"Idempotency-Key": "run-42"})
    again = submit(service, key, tiny(), **{"Idempotency-Key": "run-42"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    conflict = submit(service, key, tiny(run_fs=41), **{"Idempotency-Key": "run-42"})
    assert conflict.status_code == 422 and "Idempotency-Key" in conflict.json()["detail"]
    wait_for(service, key, first.json()["id"], ("COMPLETED",))


# ------------------------------------------------------------------ refusals
def test_authentication_and_ownership(service: dict) -> None:
    client = service["client"]
    assert client.get("/v1/simulations").status_code == 401
    assert client.get("/v1/simulations", headers=auth("msk_not-a-key")).status_code == 401
    revoked = client.get("/v1/simulations", headers=auth(service["revoked"]))
    assert revoked.status_code == 401 and revoked.headers["content-type"] == "application/problem+json"
    alice_job = client.get("/v1/simulations", headers=auth(service["keys"]["alice"])).json()["items"][0]["id"]
    assert client.get(f"/v1/simulations/{alice_job}", headers=auth(service["keys"]["bob"])).status_code == 404
    assert client.delete(f"/v1/simulations/{alice_job}", headers=auth(service["keys"]["bob"])).status_code == 404
    assert client.get("/v1/simulations/not-a-uuid", headers=auth(service["keys"]["bob"])).status_code == 404
    finished = client.delete(f"/v1/simulations/{alice_job}", headers=auth(service["keys"]["alice"]))
    assert finished.status_code == 409 and "already COMPLETED" in finished.json()["detail"]


def test_invalid_simulation_is_422_naming_fields(service: dict) -> None:
    document = json.loads(tiny().model_dump_json())
    document["sources"][0]["center"] = [9, 0, 0]
    document["run_time"] = -1
    response = service["client"].post("/v1/simulations", content=json.dumps(document), headers=auth(service["keys"]["erin"]))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    locations = {e["loc"] for e in response.json()["errors"]}
    assert "run_time" in locations
    not_json = service["client"].post("/v1/simulations", content=b"{nope", headers=auth(service["keys"]["erin"]))
    assert not_json.status_code == 422
    # A run time whose step count overflows: 422 naming run_time, not a 500.
    document = {**json.loads(tiny().model_dump_json()), "run_time": 1e308}
    response = service["client"].post("/v1/simulations", content=json.dumps(document), headers=auth(service["keys"]["erin"]))
    assert response.status_code == 422 and [e["loc"] for e in response.json()["errors"]] == ["run_time"]
    assert "time steps" in response.json()["detail"]
    # A symmetry the source contradicts, and one along an axis of zero size.
    document = {**json.loads(tiny().model_dump_json()), "symmetry": [1, 1, 0]}
    response = service["client"].post("/v1/simulations", content=json.dumps(document), headers=auth(service["keys"]["erin"]))
    errors = {e["loc"]: e["msg"] for e in response.json()["errors"]}
    assert response.status_code == 422 and "off the symmetry plane x = 0" in errors["sources.0.center"], errors
    assert "no extent along y" in errors["symmetry.1"]
    # The plane wave between periodic walls along its own direction: 422 naming the boundary.
    document = json.loads(tiny().model_dump_json())
    document["boundary_spec"]["x"] = {"minus": {"type": "Periodic"}, "plus": {"type": "Periodic"}}
    response = service["client"].post("/v1/simulations", content=json.dumps(document), headers=auth(service["keys"]["erin"]))
    errors = {e["loc"]: e["msg"] for e in response.json()["errors"]}
    assert response.status_code == 422 and "propagates along x" in errors["boundary_spec.x"], errors


def test_invalid_mode_source_and_monitor_are_422_with_field_paths(service: dict) -> None:
    document = json.loads(tiny().model_dump_json())
    pulse = document["sources"][0]["source_time"]
    document["sources"] = [
        {"type": "ModeSource", "center": [-1, 0, 0], "size": [0, "Infinity", "Infinity"], "source_time": pulse, "mode_index": 2, "mode_spec": {"num_modes": 1}},
        {"type": "ModeSource", "center": [-1, 0, 0], "size": [0, 0, "Infinity"], "source_time": pulse},
    ]
    document["monitors"] = [{"type": "ModeMonitor", "name": "far", "center": [7, 0, 0], "size": [0, "Infinity", "Infinity"], "freqs": [F_UNIT]}]
    response = service["client"].post("/v1/simulations", content=json.dumps(document), headers=auth(service["keys"]["erin"]))
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    errors = {e["loc"]: e["msg"] for e in response.json()["errors"]}
    assert "mode_index 2 needs mode_spec.num_modes" in errors["sources.0.ModeSource"]
    assert "size 0 along exactly one axis" in errors["sources.1.ModeSource"]
    # The domain check runs once each member is valid on its own.
    document["sources"] = document["sources"][:1]
    document["sources"][0]["mode_index"] = 0
    response = service["client"].post("/v1/simulations", content=json.dumps(document), headers=auth(service["keys"]["erin"]))
    assert response.status_code == 422
    assert "outside the simulation domain" in {e["loc"]: e["msg"] for e in response.json()["errors"]}["monitors.0.center"]


def test_job_size_limit_is_422(service: dict) -> None:
    huge = tiny(size=(4, 4, 4), grid_spec=ms.GridSpec.uniform(0.01), run_time=1e-12, sources=[], monitors=[], boundary_spec=ms.BoundarySpec.all_sides(ms.Periodic()))
    response = submit(service, service["keys"]["erin"], huge)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == "grid_spec" and "limit" in response.json()["detail"]


def test_oversized_body_is_413(service: dict) -> None:
    response = service["client"].post("/v1/simulations", content=b"x" * 300_000, headers=auth(service["keys"]["erin"]))
    assert response.status_code == 413


def test_rate_limit_is_429_with_retry_after(service: dict) -> None:
    key = service["keys"]["frank"]
    codes: list[httpx.Response] = []

    def burst() -> None:  # concurrent, so refills cannot keep up whatever the machine's speed
        with httpx.Client(base_url=service["client"].base_url, timeout=30) as c:
            codes.extend(c.get("/v1/simulations", headers=auth(key)) for _ in range(20))

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    limited = [r for r in codes if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].headers["content-type"] == "application/problem+json"
    assert sum(r.status_code == 200 for r in codes) >= 40  # the burst allowance


# ------------------------------------------------------------------ faults
def test_worker_killed_mid_solve_is_retried(service: dict) -> None:
    key = service["keys"]["alice"]
    job_id = submit(service, key, slow(1.5)).json()["id"]
    job = wait_for(service, key, job_id, ("RUNNING",), predicate=lambda j: j["progress"]["step"] > 0)
    os.kill(db_row(service, job_id)["worker_pid"], signal.SIGKILL)
    done = wait_for(service, key, job_id, ("COMPLETED",), timeout=120)
    assert done["attempts"] == 2
    assert job["attempts"] == 1


def test_worker_killed_past_retries_fails_with_reason(service: dict) -> None:
    key = service["keys"]["bob"]
    job_id = submit(service, key, slow(100.0)).json()["id"]
    for attempt in (1, 2):
        wait_for(service, key, job_id, ("RUNNING",), predicate=lambda j: j["attempts"] == attempt and j["progress"]["step"] > 0)
        os.kill(db_row(service, job_id)["worker_pid"], signal.SIGKILL)
    failed = wait_for(service, key, job_id, ("FAILED",), timeout=60)
    assert "worker" in failed["error"] and "died" in failed["error"]


def test_actor_restart_recovers_jobs_from_postgres(service: dict) -> None:
    key = service["keys"]["carol"]
    job_id = submit(service, key, slow(1.0)).json()["id"]
    ray.kill(ray.get_actor(JOBSTATE, namespace=NAMESPACE), no_restart=False)  # Ray restarts it
    done = wait_for(service, key, job_id, ("COMPLETED",), timeout=120)
    assert done["result"]["sha256"]


def restart_service(service: dict) -> None:
    """Stop the API and the job-state actor for good, then start both again (Ray and
    the running workers stay): what a restarted `metosim serve` on a cluster does."""
    from ray import serve

    from metosim.serve.app import Api
    from metosim.serve.service import start, stop_api

    stop_api()
    ray.kill(ray.get_actor(JOBSTATE, namespace=NAMESPACE), no_restart=True)
    start(service["settings"])
    serve.run(Api.bind(service["local"]), name="metosim-local", route_prefix="/local")


def test_service_restart_recovers_queued_and_running_jobs(service: dict) -> None:
    from metosim.serve.worker import ActorReporter

    key = service["keys"]["dave"]
    job_id = submit(service, key, slow(1.0)).json()["id"]
    # A worker's reporter that reached the actor before the restart (a stale token:
    # the actor answers None) must reach the new actor after it, not fail on the dead one.
    reporter = ActorReporter(backoff_s=0.2)
    assert reporter.started(job_id, 0, "node", "cpu", 0) is None
    restart_service(service)
    assert reporter.started(job_id, 0, "node", "cpu", 0) is None
    done = wait_for(service, key, job_id, ("COMPLETED",), timeout=120)
    assert done["result"]["sha256"]


def test_upload_failure_is_retried_with_backoff(service: dict) -> None:
    key = service["keys"]["erin"]
    s3 = service["s3"]
    s3.stop()
    try:
        job_id = submit(service, key, tiny(run_fs=80, shutoff=0)).json()["id"]
        # The solve finishes while S3 is down; the upload keeps failing and backing off.
        wait_for(service, key, job_id, ("RUNNING",), predicate=lambda j: j["progress"]["fraction"] == 1.0)
        time.sleep(1.0)
        assert db_row(service, job_id)["status"] == "RUNNING"
    finally:
        s3.restart()
    restarted = time.time()
    done = wait_for(service, key, job_id, ("COMPLETED",), timeout=60)
    assert db_row(service, job_id)["finished_at"].timestamp() > restarted
    assert hashlib.sha256(httpx.get(done["result"]["url"]).content).hexdigest() == done["result"]["sha256"]


def test_upload_gives_up_after_bounded_attempts(service: dict, tmp_path: Any) -> None:
    path = tmp_path / "x.h5"
    path.write_bytes(b"data")
    store = S3Store("no-such-bucket", service["s3"].url)
    started = time.perf_counter()
    with pytest.raises(Exception, match="NoSuchBucket"):
        upload_with_retry(store, result_key("00000000-0000-0000-0000-000000000000", "0" * 64), str(path), attempts=3, backoff_s=0.1)
    assert time.perf_counter() - started >= 0.3  # backed off 0.1 + 0.2 s


def test_results_are_immutable(service: dict, tmp_path: Any) -> None:
    from metosim.serve.storage import ObjectExists

    path = tmp_path / "x.h5"
    path.write_bytes(b"first")
    key = result_key("11111111-1111-1111-1111-111111111111", "1" * 64)
    store = S3Store(BUCKET, service["s3"].url)
    store.put(key, str(path))
    with pytest.raises(ObjectExists):
        store.put(key, str(path))


def test_local_store_links_are_signed_and_expire(service: dict, tmp_path: Any) -> None:
    local = service["local"]
    store = LocalStore(os.path.join(local.data_dir, "objects"), local.base_url, local.secret())
    path = tmp_path / "x.h5"
    path.write_bytes(b"result bytes")
    key = result_key("22222222-2222-2222-2222-222222222222", hashlib.sha256(b"result bytes").hexdigest())
    store.put(key, str(path))
    url = store.presigned_url(key, expires_in=2)
    assert httpx.get(url).content == b"result bytes"
    assert httpx.get(url.replace("signature=", "signature=0")).status_code == 403
    time.sleep(3.1)
    assert httpx.get(url).status_code == 403  # expired
    assert httpx.get(store.presigned_url(key, expires_in=900)).status_code == 200


# ------------------------------------------------------------------ operations
def test_health_metrics_and_openapi(service: dict) -> None:
    client = service["client"]
    assert client.get("/v1/health").json()["status"] == "ok"
    metrics = client.get("/metrics").text
    assert 'metosim_jobs{state="COMPLETED"}' in metrics
    assert "metosim_http_request_seconds_bucket" in metrics and "metosim_solve_seconds_count" in metrics
    spec = client.get("/openapi.json").json()
    assert "/v1/simulations" in spec["paths"] and "/v1/simulations/{job_id}/events" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_keys_are_stored_only_as_sha256(service: dict) -> None:
    key = service["keys"]["alice"]
    with connect(service["db"]) as conn:
        rows = conn.execute("SELECT * FROM api_keys").fetchall()
    dumped = json.dumps(rows, default=str)
    assert key not in dumped
    assert hashlib.sha256(key.encode()).hexdigest() in dumped


def test_concurrent_submissions_respect_the_quota(service: dict) -> None:
    """The database, not a read-then-write, enforces one active job per key."""
    key = service["keys"]["frank"]
    time.sleep(2.5)  # let frank's rate-limit bucket refill
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(submit(service, key, slow(1.0)).status_code)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 409, 409, 409, 409, 409]
    with connect(service["db"]) as conn:
        active = conn.execute("SELECT j.id FROM jobs j JOIN api_keys k ON k.id = j.key_id WHERE k.name = 'frank' AND status IN ('QUEUED', 'RUNNING')").fetchall()
    assert len(active) == 1
    service["client"].delete(f"/v1/simulations/{active[0]['id']}", headers=auth(key))


def test_worker_callbacks_need_the_jobs_token(service: dict) -> None:
    key = service["keys"]["erin"]
    job_id = service["client"].get("/v1/simulations", headers=auth(key)).json()["items"][0]["id"]
    body = {"token": 1, "node": "x", "accelerator": "cpu", "pid": 1}
    assert service["client"].post(f"/v1/internal/jobs/{job_id}/started", json=body).status_code == 401
    wrong = service["client"].post(f"/v1/internal/jobs/{job_id}/started", json=body, headers=auth("not-the-token"))
    assert wrong.status_code == 401  # Ray-dispatched jobs have no callback token at all
    assert "/v1/internal/jobs/{job_id}/{event}" not in service["client"].get("/openapi.json").json()["paths"]


def test_one_jobs_callback_token_is_refused_for_another(service: dict) -> None:
    """Two jobs with callback tokens (as an overflow dispatch stores them: SHA-256 only):
    each token opens its own job's callback route and no other."""
    key = issue_key(service, "callbacks", quota=2)
    jobs = [submit(service, key, tiny()).json()["id"] for _ in range(2)]
    tokens = [secrets.token_urlsafe(32) for _ in jobs]
    for job_id, token in zip(jobs, tokens):
        wait_for(service, key, job_id, ("COMPLETED",))
        with connect(service["db"]) as conn:
            conn.execute("UPDATE jobs SET callback_token_sha256 = %s WHERE id = %s", (hashlib.sha256(token.encode()).hexdigest(), job_id))
    body = {"token": 99, "node": "x", "accelerator": "cpu", "pid": 1}
    crossed = service["client"].post(f"/v1/internal/jobs/{jobs[1]}/started", json=body, headers=auth(tokens[0]))
    assert crossed.status_code == 401 and crossed.json()["detail"] == "invalid job callback token"
    own = service["client"].post(f"/v1/internal/jobs/{jobs[0]}/started", json=body, headers=auth(tokens[0]))
    assert own.status_code == 200 and own.json() == {"accepted": False, "start": None}  # authenticated; a finished job is not restarted
    assert db_row(service, jobs[0])["status"] == db_row(service, jobs[1])["status"] == "COMPLETED"


def test_a_workers_speed_counts_its_stepping_only() -> None:
    """Mode solves and compilation report the start step; the speed counts from the
    last such report, so 10 s of setup before 1 s of stepping reads as the stepping's
    speed, not a tenth of it. A resumed worker counts its own steps."""
    from metosim.serve.worker import SteppingSpeed

    speed = SteppingSpeed(cells=1000, first=0, now=0.0)
    assert speed(0, 2.0) == 0.0  # a setup heartbeat
    assert speed(0, 10.0) == 0.0  # compiled: stepping starts
    assert speed(500, 11.0) == pytest.approx(500_000)
    resumed = SteppingSpeed(cells=1000, first=300, now=0.0)
    for heartbeat in (0, 0, 300):
        resumed(heartbeat, 4.0)
    assert resumed(800, 5.0) == pytest.approx(500_000)
