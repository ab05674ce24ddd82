"""Faults under a running job, with the real parts: PostgreSQL restarted, a stored
result corrupted after upload. Each ends COMPLETED or FAILED with a reason, never
stuck and never a wrong result. (Worker killed, upload refused, actor and service
restarted: tests/test_service.py, tests/test_lifecycle.py.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import metosim as ms

from .conftest import BUCKET, issue_key
from .test_service import db_row, slow, tiny

from metosim.serve.storage import S3Store  # noqa: E402


def wait_in_db(service: dict, job_id: str, states: tuple[str, ...], timeout: float = 120) -> dict:
    """Poll PostgreSQL itself (the API may answer 5xx while the database is down)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            row = db_row(service, job_id)
        except Exception:  # noqa: BLE001 - the database is restarting
            row = None
        if row is not None and row["status"] in states:
            return row
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not in {states} after {timeout} s: {row}")


def test_postgres_restarted_under_a_running_job(service: dict) -> None:
    client = ms.Client(url=str(service["client"].base_url), api_key=issue_key(service, "chaos-pg"))
    job = client.submit(slow(2.0))
    wait_in_db(service, job.id, ("RUNNING",))
    while db_row(service, job.id)["step"] == 0:
        time.sleep(0.05)
    postgres = service["postgres"]
    postgres.stop()
    time.sleep(2.0)  # the worker keeps solving; its reports fail meanwhile
    postgres.start()
    restarted = time.monotonic()
    row = wait_in_db(service, job.id, ("COMPLETED", "FAILED"))
    print(f"PostgreSQL restart: job {row['status']} {time.monotonic() - restarted:.1f} s after the database came back")
    assert row["status"] == "COMPLETED", row["error"]
    data = job.result()  # the API reconnected too; the result verifies
    assert data.simulation == slow(2.0)


def test_a_result_corrupted_after_upload_is_never_served(service: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    client = ms.Client(url=str(service["client"].base_url), api_key=issue_key(service, "chaos-corrupt"))
    job = client.submit(tiny())
    state = job.wait(progress=False)
    s3 = S3Store(BUCKET, service["s3"].url).client
    key = db_row(service, job.id)["result_key"]
    stored = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=stored[:-64] + bytes(64))  # bit rot behind the service's back
    with pytest.raises(ms.ChecksumMismatch):
        job.result(state)
    assert list((tmp_path / "metosim" / "results").glob("*")) == []  # nothing corrupt was kept
