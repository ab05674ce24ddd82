"""``/v1/simulations``: submit a simulation, read, list and cancel jobs, follow one's
events."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from ...simulation import Simulation
from ..events import sse_stream
from ..problems import admitted, errors_of, invalid, problem
from ..states import TERMINAL
from ..storage import ObjectStore, get_verified, is_result_store, result_store_files
from .common import KEEPALIVE_S, Limit, Offset, Replica, body, check_accelerator, check_checkpoint_interval, check_devices, created, guard, idempotency_key, iso, job_view, link_expiry, listed, owned, page, replica, too_large

router = APIRouter(prefix="/v1/simulations")
JOB = "SELECT * FROM jobs WHERE id = %s AND key_id = %s"
#: Batch members are listed under their batch, an optimisation's final run under it.
LIST = "SELECT * FROM jobs WHERE key_id = %s AND batch_id IS NULL AND optimization_id IS NULL ORDER BY created_at DESC, id LIMIT %s OFFSET %s"
WATCHED = "SELECT * FROM jobs WHERE id = ANY(%s::uuid[])"


async def own_job(api: Replica, job_id: str, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """(key, job) for the caller's own job (else Problem 401/429/404)."""
    return await owned(api, request, JOB, job_id, "simulation")


async def watched_rows(api: Replica, job_ids: list[str]) -> list[dict[str, Any]]:
    """The rows of the jobs event streams are watching (one query)."""
    async with api.db.connection() as conn:
        cur = await conn.execute(WATCHED, (job_ids,))
        return await cur.fetchall()


@router.post("", status_code=201, summary="Submit a simulation (body: the Simulation JSON; ?accelerator=A100 asks for a GPU type; ?checkpoint_interval=300 checkpoints every 300 s of stepping; ?devices=4 splits the solve over 4 devices)")
async def submit(request: Request, accelerator: str | None = None, checkpoint_interval: str | None = None, devices: str | None = None, api: Replica = Depends(replica)) -> Response:
    key = await guard(api, request)
    check_accelerator(accelerator)
    interval = check_checkpoint_interval(checkpoint_interval, api.settings.checkpoint_floor_s)
    raw = await body(request, api.settings.max_body_bytes)
    try:
        sim = Simulation.model_validate_json(raw)
    except ValidationError as e:
        return invalid("Invalid simulation", errors_of(e))
    over = too_large(api, sim)
    if over:
        return problem(422, "Simulation too large", over["msg"], errors=[over])
    split = check_devices(devices, sim, api.settings)
    config_json = sim.model_dump_json()
    digest = hashlib.sha256(config_json.encode()).hexdigest()
    outcome = admitted(await api.jobs.submit.remote(str(key["id"]), key["quota"], config_json, digest, idempotency_key(request), request.state.request_id, accelerator, interval, split))
    job = outcome["row"]
    return created({"id": str(job["id"]), "status": job["status"], "created_at": iso(job["created_at"])}, outcome, f"/v1/simulations/{job['id']}")


@router.get("/{job_id}", summary="Status, progress and (when done) the result of a job")
async def get_job(job_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    _, job = await own_job(api, job_id, request)
    return JSONResponse(job_view(api, job))


@router.get("/{job_id}/result/files", summary="The files of a result stored as a zarr store (a run split across processes): each one's SHA-256 and pre-signed link")
async def result_files(job_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    _, job = await own_job(api, job_id, request)
    if job["status"] != "COMPLETED" or not job["result_key"]:
        return problem(409, "No result", f"the job is {job['status']}; its result is there once it is COMPLETED")
    if not is_result_store(job["result_key"]):
        return problem(409, "Not a results store", "this job's result is one HDF5 file: download it from the job's result.url")
    files = await asyncio.to_thread(stored_files, api.store, job["result_key"], job["result_sha256"])
    expiry = api.settings.url_expiry_s
    return JSONResponse({"files": {path: {"sha256": sha256, "url": api.store.presigned_url(key, expiry)} for path, (key, sha256) in files.items()}, "url_expires_at": link_expiry(api)})


def stored_files(store: ObjectStore, manifest_key: str, sha256: str) -> dict[str, tuple[str, str]]:
    """(key, SHA-256) of each file of a results store, from its manifest (verified)."""
    with tempfile.TemporaryDirectory(prefix="metosim-manifest-") as tmp:
        path = os.path.join(tmp, "manifest.json")
        get_verified(store, manifest_key, sha256, path, "the result's manifest")
        return result_store_files(path, manifest_key)


@router.get("", summary="This key's jobs, newest first")
async def list_jobs(request: Request, limit: Limit = 20, offset: Offset = 0, api: Replica = Depends(replica)) -> Response:
    rows = await listed(api, request, LIST, limit, offset)
    return page([job_view(api, r) for r in rows[:limit]], len(rows), offset, limit)


@router.delete("/{job_id}", summary="Cancel a queued or running job")
async def cancel(job_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    key, _ = await own_job(api, job_id, request)
    job = await api.jobs.cancel.remote(job_id, str(key["id"]))
    if job["status"] != "CANCELLED":
        return problem(409, "Not cancellable", f"the job is already {job['status']}")
    return JSONResponse(job_view(api, job))


@router.get("/{job_id}/events", summary="Server-Sent Events of state and progress")
async def events(job_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    _, job = await own_job(api, job_id, request)
    stream = sse_stream(api.watcher.rows_of(job_id, job, KEEPALIVE_S), lambda row: job_view(api, row), TERMINAL, KEEPALIVE_S)
    return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
