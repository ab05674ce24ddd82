"""The service's own routes: signed downloads from the local store, events from
workers outside Ray, health and Prometheus metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from ...version import __version__
from ..metrics import latest
from ..problems import BEARER, Problem, problem
from ..storage import LocalStore, is_job_checkpoint_key, media_type
from .common import Replica, replica

router = APIRouter()
CALLBACK_TOKEN = "SELECT callback_token_sha256 FROM jobs WHERE id = %s"


@router.get("/v1/files/{key:path}", summary="Download a result of the local store (signed, expiring link)")
def download(key: str, expires: int, signature: str, api: Replica = Depends(replica)) -> Response:
    if not isinstance(api.store, LocalStore):
        return problem(404, "Not Found", "results are served by the object store")
    try:
        path = api.store.path(key)
    except ValueError:
        return problem(404, "Not Found", "no such result")
    if not api.store.verify(key, expires, signature):
        return problem(403, "Forbidden", "the link is invalid or has expired")
    if not path.exists():
        return problem(404, "Not Found", "no such result")
    return FileResponse(path, media_type=media_type(key), filename=path.name)


async def callback(api: Replica, job_id: str, request: Request) -> dict[str, Any]:
    """The body of a remote worker's call, authenticated by its job's callback token
    (else Problem 404/401)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise Problem(404, "Not Found", "no such job") from None
    await api.open()
    async with api.db.connection() as conn:
        cur = await conn.execute(CALLBACK_TOKEN, (job_id,))
        row = await cur.fetchone()
    expected = row and row["callback_token_sha256"]
    if scheme.lower() != "bearer" or not expected or not hmac.compare_digest(expected, hashlib.sha256(token.encode()).hexdigest()):
        raise Problem(401, "Unauthorized", "invalid job callback token", headers=BEARER)
    return await request.json()


@router.post("/v1/internal/jobs/{job_id}/{event}", include_in_schema=False)
async def worker_event(job_id: str, event: str, request: Request, api: Replica = Depends(replica)) -> Response:
    """started | progress | checkpointed | checkpoint_failed | suspended | completed |
    failed, from a worker outside Ray."""
    body = await callback(api, job_id, request)
    token = int(body["token"])
    if event == "started":
        start = await api.jobs.started.remote(job_id, token, str(body["node"])[:200], str(body["accelerator"])[:100], int(body["pid"]))
        return JSONResponse({"accepted": start is not None, "start": start})
    if event == "progress":
        await api.jobs.progress.remote(job_id, token, int(body["step"]), int(body["total"]), float(body["cells_per_second"]))
    elif event == "checkpointed":
        key = str(body["key"])
        if not is_job_checkpoint_key(job_id, key):  # the actor deletes recorded keys later: only this job's
            return problem(422, "Invalid checkpoint key", f"not a checkpoint key of job {job_id}")
        return JSONResponse({"accepted": await api.jobs.checkpointed.remote(job_id, token, key, str(body["sha256"]), int(body["step"]))})
    elif event == "checkpoint_failed":
        await api.jobs.checkpoint_failed.remote(job_id, token, str(body["reason"])[:1000])
    elif event == "suspended":
        await api.jobs.suspended.remote(job_id, token, int(body["step"]))
    elif event == "completed":
        await api.jobs.completed.remote(job_id, token, str(body["key"]), str(body["sha256"]), int(body["size"]), dict(body.get("info") or {}))
    elif event == "failed":
        await api.jobs.failed.remote(job_id, str(body["reason"])[:1000], token)
    else:
        return problem(404, "Not Found", f"unknown event {event!r}")
    return JSONResponse({"accepted": True})


@router.get("/v1/health", summary="Liveness of the API, database and job-state actor")
async def health(api: Replica = Depends(replica)) -> Response:
    await api.open()
    async with api.db.connection() as conn:
        await conn.execute("SELECT 1")
    await asyncio.wait_for(api.jobs.ping.remote(), timeout=5)
    return JSONResponse({"status": "ok", "version": __version__, "database": "ok", "jobstate": "ok"})


@router.get("/metrics", summary="Prometheus metrics")
def prometheus() -> Response:
    return Response(latest(), media_type="text/plain; version=0.0.4")
