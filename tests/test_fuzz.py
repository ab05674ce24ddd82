"""Hostile input against the running service: property-based requests generated from
its own OpenAPI schema (schemathesis) and hand-made hostile bodies. Never a 5xx; the
service is healthy afterwards."""

from __future__ import annotations

import json
import re

import hypothesis
import pytest
import schemathesis
from schemathesis.pytest import from_fixture

from metosim.serve.db import connect

from . import test_numeric_fuzz as numeric_fuzz
from .conftest import issue_key
from .test_service import tiny


@pytest.fixture(scope="module")
def api_schema(service: dict) -> schemathesis.BaseSchema:
    url = str(service["client"].base_url)
    schema = schemathesis.openapi.from_dict(service["client"].get("/openapi.json").json())
    schema.config.update(base_url=url)
    return schema


schema = from_fixture("api_schema")


@pytest.fixture(scope="module")
def fuzz_key(service: dict) -> str:
    return issue_key(service, "fuzz", quota=1000)


@schema.parametrize()
@hypothesis.settings(max_examples=25, deadline=None, suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate])
def test_no_route_answers_5xx(case: schemathesis.Case, fuzz_key: str, service: dict) -> None:
    response = case.call(headers={"Authorization": f"Bearer {fuzz_key}"}, timeout=30)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"


def run_time(literal: str) -> bytes:
    """A valid simulation whose run_time is the raw JSON text ``literal``."""
    return re.sub(r'"run_time": [^,]+', f'"run_time": {literal}', json.dumps(json.loads(tiny().model_dump_json()))).encode()


def hostile_bodies() -> dict[str, bytes]:
    valid = json.loads(tiny().model_dump_json())
    text = json.dumps(valid)
    return {
        "deep nesting": text.replace('"structures": []', '"structures": ' + "[" * 5000 + "]" * 5000).encode(),
        "huge array": json.dumps({**valid, "monitors": [valid["monitors"][0]] * 20000}).encode(),
        "NaN literal": run_time("NaN"),
        "Infinity literal": run_time("Infinity"),
        "1e308 run time": json.dumps({**valid, "run_time": 1e308}).encode(),
        "1e-300 size": json.dumps({**valid, "size": [1e-300, 28, 0]}).encode(),  # once a ZeroDivisionError: 500
        "invalid UTF-8": json.dumps(valid).encode()[:40] + b"\xff\xfe\xc3\x28" + json.dumps(valid).encode()[40:],
        "SQL in a name": json.dumps({**valid, "monitors": [{**valid["monitors"][0], "name": "x'; DROP TABLE jobs; --"}]}).encode(),
        "SQL in a key": json.dumps({**valid, "'; DROP TABLE jobs; --": 1}).encode(),
        "not an object": b"[1, 2, 3]",
        "empty": b"",
        "null bytes": b"\x00" * 64,
        "huge number": run_time("9" * 5000),
    }


@pytest.mark.parametrize("name", list(hostile_bodies()))
def test_hostile_bodies_are_refused_cleanly(name: str, service: dict) -> None:
    body = hostile_bodies()[name]
    headers = {"Authorization": f"Bearer {issue_key(service, 'hostile')}", "Content-Type": "application/json"}
    count = "SELECT count(*) AS n FROM jobs"
    with connect(service["db"]) as conn:
        before = conn.execute(count).fetchone()["n"]
    for route in ("/v1/simulations", "/v1/batches"):
        payload = body if route == "/v1/simulations" else b'{"members": [{"name": "m", "simulation": ' + body + b"}]}"
        response = service["client"].post(route, content=payload, headers=headers)
        assert response.status_code in (413, 422), (name, route, response.status_code, response.text[:300])
        assert response.headers["content-type"] == "application/problem+json"
    for path in ("/v1/simulations/' OR 1=1 --", "/v1/batches/%00", "/v1/simulations/" + "9" * 3000, "/v1/simulations?offset=" + "9" * 30, "/v1/batches?limit=-1"):
        # found by the schemathesis run: a 30-digit offset reached PostgreSQL and answered 500
        assert service["client"].get(path, headers=headers).status_code in (404, 414, 422), path
    assert service["client"].get("/v1/health").status_code == 200
    with connect(service["db"]) as conn:
        assert conn.execute(count).fetchone()["n"] == before  # the table is still there, and no hostile body made a job


@hypothesis.given(numeric_fuzz.field_and_value())
@hypothesis.settings(max_examples=60, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_any_number_in_any_numeric_field_over_rest(service: dict, fuzz_key: str, case: tuple) -> None:
    """The Python fuzz's documents posted to the service: a 4xx or an accepted job
    (cancelled at once), never a 5xx."""
    name, path, value = case
    model, _ = numeric_fuzz.CASES[name]
    route = "/v1/optimizations" if name == "inverse problem" else "/v1/simulations"
    body = json.dumps(numeric_fuzz.replaced(json.loads(model.model_dump_json()), path, value))
    headers = {"Authorization": f"Bearer {fuzz_key}", "Content-Type": "application/json"}
    response = service["client"].post(route, content=body, headers=headers, timeout=120)  # a valid, huge 1D auto grid meshes for a while
    assert response.status_code < 500, (name, path, value, response.status_code, response.text[:300])
    if response.status_code in (200, 201):
        service["client"].delete(f"{route}/{response.json()['id']}", headers=headers)
