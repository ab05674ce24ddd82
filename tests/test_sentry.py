"""Sentry with the real SDK over real HTTP (a local endpoint standing in for Sentry's
ingest, set up in conftest): a route error and a failing worker become events with
the request id and job id; no key material reaches any event or log line."""

from __future__ import annotations

import secrets
import time
from typing import Any, Callable


from metosim.serve.keys import PREFIX
from metosim.serve.sentry import FILTERED, scrub

from .conftest import free_port, issue_key, leaked_secrets
from .test_batch import unguided
from .test_service import auth, submit, wait_for

import ray  # noqa: E402


def tags(event: dict[str, Any]) -> dict[str, str]:
    raw = event.get("tags") or {}
    return dict(raw) if isinstance(raw, (dict, list)) else {}


def wait_for_event(service: dict, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in service["sentry"].events():
            if predicate(event):
                return event
        time.sleep(0.2)
    raise AssertionError(f"no such event among {[tags(e) for e in service['sentry'].events()]}")


def test_a_route_error_becomes_an_event_with_the_request_id(service: dict) -> None:
    from ray import serve

    from metosim.serve.app import Api
    from metosim.serve.settings import Settings

    # A replica whose database is unreachable: every authenticated route fails inside.
    broken = Settings(**{**service["settings"].__dict__, "database_url": f"postgresql://nobody@127.0.0.1:{free_port()}/none", "db_timeout_s": 1.0})
    serve.run(Api.bind(broken), name="metosim-sentry", route_prefix="/sentry")
    try:
        key = issue_key(service, "sentry-route")
        response = service["client"].get("/sentry/v1/simulations", headers={**auth(key), "X-Request-ID": "req-sentry-route"})
        assert response.status_code == 500
        event = wait_for_event(service, lambda e: tags(e).get("request_id") == "req-sentry-route")
        assert tags(event)["component"] == "api" and event["environment"] == "test"
        assert "exception" in event
    finally:
        serve.delete("metosim-sentry")


def test_a_failing_job_becomes_events_with_job_and_request_ids(service: dict) -> None:
    key = issue_key(service, "sentry-job")
    job_id = submit(service, key, unguided(), **{"X-Request-ID": "req-sentry-job"}).json()["id"]
    wait_for(service, key, job_id, ("FAILED",))
    worker = wait_for_event(service, lambda e: tags(e).get("job_id") == job_id and tags(e).get("component") == "worker")
    assert tags(worker)["request_id"] == "req-sentry-job" and "no guided mode" in str(worker["exception"])
    failed = wait_for_event(service, lambda e: tags(e).get("job_id") == job_id and "job FAILED" in str(e.get("message") or e.get("logentry")))
    assert tags(failed)["request_id"] == "req-sentry-job" and failed["level"] == "error"


def test_no_key_material_in_any_event_or_log_line(service: dict) -> None:
    """Every payload Sentry received and every Ray log file so far, grepped for any key
    pattern (the service fixture runs the same scan again at the session's end, after
    test_service has sent its keys over HTTP and through Ray)."""
    with __import__("metosim.serve.db", fromlist=["connect"]).connect(service["db"]) as conn:
        count = conn.execute("SELECT count(*) AS n FROM api_keys").fetchone()["n"]
    assert count >= len(service["keys"]) + 1  # the fixtures' keys and the revoked one exist
    assert service["sentry"].raw, "no events were received at all"
    assert leaked_secrets(service) == []


def test_the_leak_scan_finds_a_key_planted_in_a_worker_log(service: dict) -> None:
    """The scan can fail: a Ray task prints a fresh key to its log, and the scan names it
    (then the fixture is told that one key was planted on purpose)."""
    planted = PREFIX + secrets.token_urlsafe(24)

    @ray.remote
    def careless() -> None:
        print(f"calling the API with {planted}", flush=True)

    ray.get(careless.remote())
    deadline = time.monotonic() + 30
    while not (found := [leak for leak in leaked_secrets(service) if leak.endswith(planted)]):
        assert time.monotonic() < deadline, "the planted key never reached a Ray log file"
        time.sleep(0.5)
    assert "worker" in found[0]  # in the worker's own log file
    service["planted"].add(planted)


def test_scrub_removes_every_kind_of_secret() -> None:
    event = {
        "request": {"headers": {"Authorization": "Bearer msk_abcdefghijklmnopqrstuvwxyz", "X-Request-ID": "r1"}, "url": "http://h/v1/files/results/x.h5?expires=1&signature=deadbeef"},
        "extra": {"link": "https://s3/b/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F&X-Amz-Signature=0123abcd", "note": "key msk_0123456789abcdef0123 leaked", "callback": "tok"},
        "breadcrumbs": [{"message": "calling with bearer sekret-token-value"}, {"message": "secret is s3cr3t-v4lue"}],
    }
    clean = scrub(event, secrets=("s3cr3t-v4lue",))
    text = repr(clean)
    for secret in ("msk_", "deadbeef", "0123abcd", "AKIA", "sekret-token-value", "s3cr3t-v4lue", "'tok'"):
        assert secret not in text, secret
    assert clean["request"]["headers"]["X-Request-ID"] == "r1" and clean["request"]["headers"]["Authorization"] == FILTERED
