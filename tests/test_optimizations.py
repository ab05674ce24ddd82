"""Optimisations on the running service (real PostgreSQL, Ray, Serve HTTP and the
S3-protocol server): a run matches the same run done locally, survives a restart
with every iteration recorded once, counts against the quota, can be cancelled, and
bad problems or failing iterations end with a reason."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import metosim as ms
from metosim.session import QuotaExceeded, ValidationError

from .test_batch import make_client
from .test_inverse import small_bend
from .test_service import restart_service

from metosim.serve.db import connect  # noqa: E402
from metosim.serve.storage import S3Store  # noqa: E402


def iterations(service: dict, optimization_id: str) -> list[dict]:
    with connect(service["db"]) as conn:
        return conn.execute("SELECT * FROM optimization_iterations WHERE optimization_id = %s ORDER BY iteration", (optimization_id,)).fetchall()


def wait_until(predicate, timeout: float = 180.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def test_an_optimisation_on_the_service_equals_the_local_run(service: dict) -> None:
    problem = small_bend(precision="float32", optimizer=ms.inverse.Optimizer(steps=3, learning_rate=0.1))
    client = make_client(service, "optimiser")
    result = client.optimize(problem, progress=False)
    local = ms.inverse.optimize(problem, show=False)
    assert [r["iteration"] for r in result.history] == [0, 1, 2]
    # The same iterations, the same arithmetic, in a Ray task instead of this process.
    np.testing.assert_allclose([r["objective"] for r in result.history], local.objective, rtol=1e-5)
    np.testing.assert_allclose(result.rho, local.rho, atol=1e-6)
    # The final run is an ordinary, checksummed result of the final design; its
    # objective agrees with the differentiable forward of the same design.
    assert result.data is not None and result.data.info["num_cells"] > 0
    assert result.final_objective == pytest.approx(local.final_objective, rel=1e-4)
    state = client.optimization(client.request("GET", "/v1/optimizations").json()["items"][0]["id"]).status()
    assert state["status"] == "COMPLETED" and state["final_run"]["result"]["sha256"]
    # The final run is listed under its optimisation, not among the key's simulations.
    assert client.jobs() == []


def test_an_optimisation_survives_a_restart_without_duplicates(service: dict) -> None:
    steps = 5
    problem = small_bend(precision="float32", optimizer=ms.inverse.Optimizer(steps=steps, learning_rate=0.1))
    client = make_client(service, "restarted optimiser")
    optimization = client.optimize(problem, wait=False)
    wait_until(lambda: len(iterations(service, optimization.id)) >= 2, what="two iterations")
    restart_service(service)
    result = optimization.wait(progress=False, timeout=300)
    rows = iterations(service, optimization.id)
    assert [r["iteration"] for r in rows] == list(range(steps))
    assert len(result.history) == steps
    # One checkpoint object per iteration in the S3-protocol store.
    listed = S3Store(service["settings"].s3_bucket, service["settings"].s3_endpoint_url).client.list_objects_v2(Bucket=service["settings"].s3_bucket, Prefix=f"optimizations/{optimization.id}/")
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(r["checkpoint_key"] for r in rows)
    assert result.final_objective > result.history[0]["objective"]


def test_an_optimisation_holds_the_quota_and_can_be_cancelled(service: dict) -> None:
    client = make_client(service, "busy optimiser")
    optimization = client.optimize(small_bend(precision="float32", optimizer=ms.inverse.Optimizer(steps=50)), wait=False)
    with pytest.raises(QuotaExceeded, match="1 active optimisation"):
        client.submit(small_bend().simulation)
    wait_until(lambda: len(iterations(service, optimization.id)) >= 1, what="one iteration")
    cancelled = optimization.cancel()
    assert cancelled["status"] == "CANCELLED" and cancelled["error"] == "cancelled by the user"
    done = len(iterations(service, optimization.id))
    time.sleep(3)
    assert len(iterations(service, optimization.id)) <= done + 1  # at most the iteration that was running
    assert optimization.status()["status"] == "CANCELLED"
    with pytest.raises(ms.inverse.OptimizationFailed, match="CANCELLED"):
        optimization.result()
    client.submit(small_bend().simulation).cancel()  # the slot is free again


def test_bad_problems_get_422_and_failing_iterations_a_reason(service: dict) -> None:
    client = make_client(service, "careless optimiser")
    body = json.loads(small_bend().model_dump_json())
    body["design"]["eps_min"] = 50.0
    response = client.http.post("/v1/optimizations", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == "design"
    assert "eps_min" in response.json()["errors"][0]["msg"]
    body = json.loads(small_bend().model_dump_json())
    body["objective"]["terms"][0]["monitor"] = "nowhere"
    with pytest.raises(ValidationError) as info:
        client.request("POST", "/v1/optimizations", json=body)
    assert info.value.errors[0]["loc"] == "objective.terms.0.monitor"
    body = json.loads(small_bend().model_dump_json())
    body["design"]["geometry"]["center"] = [0.45, 0.0, 0.0]  # inside the domain, into the PML
    response = client.http.post("/v1/optimizations", json=body)
    assert response.status_code == 422  # once 201, then FAILED at iteration 0
    assert response.json()["errors"][0]["loc"] == "design.geometry" and "into the PML" in response.json()["errors"][0]["msg"]
    # Valid as a model, refused by the engine in the first iteration: a PEC block
    # inside the design region.
    problem = small_bend(precision="float32", optimizer=ms.inverse.Optimizer(steps=2))
    sim = json.loads(problem.simulation.model_dump_json())
    sim["structures"].append(json.loads(ms.Structure(geometry=ms.Box(size=(0.2, 0.2, ms.inf)), medium=ms.PEC).model_dump_json()))
    blocked = problem.model_copy(update={"simulation": ms.Simulation.model_validate_json(json.dumps(sim))})
    with pytest.raises(ms.inverse.OptimizationFailed, match="FAILED: iteration 0: EngineInputError: design 'design' touches a PEC node"):
        client.optimize(blocked, progress=False)
