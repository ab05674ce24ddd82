"""What every route shares: the replica it runs in (reached through Serve's replica
context), the caller's key, request-body and header checks, job views and download
links, paging."""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Protocol

from fastapi import Query, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from ray import serve

from ...simulation import Simulation
from ..auth import TokenBucket, authenticate, bearer_token
from ..events import JobWatcher
from ..problems import Problem
from ..settings import Settings
from ..storage import ObjectStore, is_result_store

ACCELERATOR = re.compile(r"[A-Za-z0-9_\-]{1,32}")
#: Seconds between keep-alive events on a quiet event stream.
KEEPALIVE_S = 10.0
#: Paging parameters (a huge offset once reached PostgreSQL as an out-of-range bigint).
Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=10**9)]


class Replica(Protocol):
    """The API replica's state (``metosim.serve.app.Api``), as the routes use it."""

    settings: Settings
    db: AsyncConnectionPool
    store: ObjectStore
    jobs: Any  # the job-state actor's handle
    limiter: TokenBucket
    watcher: JobWatcher
    optimization_watcher: JobWatcher

    async def open(self) -> None: ...


def replica() -> Replica:
    """The replica serving this request (a FastAPI dependency)."""
    return serve.get_replica_context().servable_object  # type: ignore[return-value]


async def guard(api: Replica, request: Request) -> dict[str, Any]:
    """The caller's key, authenticated and rate-limited (else Problem 401/429)."""
    token = bearer_token(request)
    await api.open()
    key = await authenticate(api.db, token)
    wait = api.limiter.take(str(key["id"]))
    if wait > 0:
        raise Problem(429, "Too Many Requests", f"rate limit of {api.settings.rate_per_second:g} requests/s per key", headers={"Retry-After": str(max(1, round(wait)))})
    return key


def resource_id(value: str, what: str) -> str:
    """``value`` if it is a UUID (else Problem 404, as for an id this key does not own)."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise Problem(404, "Not Found", f"no {what} {value} for this key") from None
    return value


async def owned(api: Replica, request: Request, query: str, value: str, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(key, row) for the caller's own resource, which ``query`` selects by (id, key
    id) (else Problem 401/429/404)."""
    key = await guard(api, request)
    async with api.db.connection() as conn:
        cur = await conn.execute(query, (resource_id(value, what), key["id"]))
        row = await cur.fetchone()
    if row is None:
        raise Problem(404, "Not Found", f"no {what} {value} for this key")
    return key, row


async def listed(api: Replica, request: Request, query: str, limit: int, offset: int) -> list[dict[str, Any]]:
    """Up to ``limit + 1`` of the caller's rows from ``query`` (by key id, limit,
    offset), newest first: one more than a page, to learn whether another follows."""
    key = await guard(api, request)
    async with api.db.connection() as conn:
        cur = await conn.execute(query, (key["id"], limit + 1, offset))
        return await cur.fetchall()


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def page(items: list[dict[str, Any]], fetched: int, offset: int, limit: int) -> JSONResponse:
    """One page of a listing; the query fetched ``limit + 1`` rows to learn whether
    another page follows."""
    return JSONResponse({"items": items, "next_offset": offset + limit if fetched > limit else None})


def created(body: dict[str, Any], outcome: dict[str, Any], location: str) -> JSONResponse:
    """The answer to an admitted submission: 201 when it made the resource, 200 when an
    Idempotency-Key found the first one."""
    return JSONResponse(body, status_code=201 if outcome["created"] else 200, headers={"Location": location})


def link(api: Replica, key: str, sha256: str, size: int) -> dict[str, Any]:
    """A stored object's size, SHA-256 and pre-signed download link."""
    return {"size": size, "sha256": sha256, "url": api.store.presigned_url(key, api.settings.url_expiry_s), "url_expires_at": link_expiry(api)}


def link_expiry(api: Replica) -> str:
    """When the links made now expire (ISO 8601, UTC)."""
    return (datetime.now(timezone.utc) + timedelta(seconds=api.settings.url_expiry_s)).isoformat()


def job_view(api: Replica, job: dict[str, Any]) -> dict[str, Any]:
    """A job row as the API shows it: state, progress, placement, its result link."""
    total = job["total_steps"] or 0
    view = {
        "id": str(job["id"]),
        "status": job["status"],
        "created_at": iso(job["created_at"]),
        "started_at": iso(job["started_at"]),
        "finished_at": iso(job["finished_at"]),
        "progress": {
            "step": job["step"],
            "total_steps": total,
            "fraction": (job["step"] / total) if total else 0.0,
            "cells_per_second": job["cells_per_second"],
            "reported_at": iso(job["heartbeat_at"]),  # the worker's last report
        },
        "attempts": job["attempts"],
        "error": job["error"],
        "checkpoint": {
            "interval_s": job["checkpoint_interval_s"] or api.settings.checkpoint_interval_s,
            "step": job["checkpoint_step"],  # the newest stored (None: none yet)
            "at": iso(job["checkpoint_at"]),
            "error": job["checkpoint_error"],  # why the last one could not be stored
            "resumed_step": job["resumed_step"],  # the finished run went on from this step
            "continuations": job["continuations"],  # times a worker's time limit handed it on
        },
        "provider": job["provider"],
        "node": job["node"],
        "accelerator": job["accelerator"],
        "requested_accelerator": job["requested_accelerator"],
        "devices": job["devices"],
        "batch_id": str(job["batch_id"]) if job["batch_id"] else None,
        "name": job["member"],
        "parameters": job["parameters"],
        "result": None,
    }
    if job["status"] == "COMPLETED" and job["result_key"]:
        # "zarr": a results store (a run split across processes), its manifest linked
        # here and its files at ``/v1/simulations/{id}/result/files``.
        view["result"] = {**link(api, job["result_key"], job["result_sha256"], job["result_bytes"]), "format": "zarr" if is_result_store(job["result_key"]) else "hdf5"}
    return view


def too_large(api: Replica, sim: Simulation, loc: str = "") -> dict[str, Any] | None:
    """The problem entry for a simulation over the per-job cells × steps limit."""
    est = sim.estimate()
    if est["cells"] * est["time_steps"] <= api.settings.max_cell_steps:
        return None
    field = "grid_spec" if est["cells"] > est["time_steps"] else "run_time"
    detail = f"{est['cells']:,} cells × {est['time_steps']:,} steps exceed this service's limit of {api.settings.max_cell_steps:.3g}"
    return {"loc": loc + field, "msg": detail, "type": "limit"}


def check_accelerator(accelerator: str | None) -> None:
    if accelerator is not None and not ACCELERATOR.fullmatch(accelerator):
        raise Problem(422, "Invalid accelerator", "accelerator must be a GPU type such as A100 or B200", errors=[{"loc": "query.accelerator", "msg": "1–32 letters, digits, - or _", "type": "value_error"}])


def check_devices(value: str | None, sim: Simulation, settings: Settings) -> int:
    """The ``devices`` query value (1 without one): how many devices the solve is split
    over, in one JAX process while a node holds them, else one per node
    (:mod:`..multihost`). Problem 422 naming ``query.devices`` when it is not a positive
    integer, does not split evenly over the processes, or does not cut the grid into
    equal slabs; 413 when the cluster cannot hold the processes, or when a device's
    share of the memory exceeds ``settings.device_memory_bytes`` (naming ``devices``
    when more devices would fit it, else ``grid_spec``)."""
    from ...kernels.sharding import ShardingError, split_axes, stepped_shape
    from ...kernels.solver import max_memory_bytes
    from ..multihost import max_processes, node_capacity, processes_for

    if value is None:
        return 1
    if not value.isdigit() or int(value) < 1:
        reason = f"must be a positive integer, not {value!r}"
        raise Problem(422, "Invalid devices", f"devices {reason}", errors=[{"loc": "query.devices", "msg": reason, "type": "value_error"}])
    devices = int(value)
    if devices == 1:
        return 1
    per_node, kind = node_capacity(settings)
    processes = processes_for(devices, per_node)
    if devices % processes:
        reason = f"devices={devices} does not split evenly over {processes} processes of at most {per_node} {kind}"
        raise Problem(422, "Invalid devices", reason, errors=[{"loc": "query.devices", "msg": reason, "type": "value_error"}])
    room = max_processes(devices // processes)
    most = per_node * room
    if processes > room:
        reason = f"devices={devices} but this cluster offers at most {most}: {room} processes of {per_node} {kind}"
        raise Problem(413, "Too many devices", reason, errors=[{"loc": "query.devices", "msg": reason, "type": "limit"}])
    try:
        split_axes(stepped_shape(sim), sim.grid.active, devices)
    except ShardingError as exc:
        raise Problem(422, "Invalid devices", str(exc), errors=[{"loc": "query.devices", "msg": str(exc), "type": "value_error"}]) from None

    def share(n: int) -> int:
        return sim.estimate(n)["memory_per_device_bytes"]

    # Without a stated device memory, forced CPU devices share the host's memory.
    limit = settings.device_memory_bytes or max_memory_bytes() / devices
    if share(devices) > limit:
        more = most > devices and share(most) <= (settings.device_memory_bytes or max_memory_bytes() / most)
        reason = f"{share(devices) / 2**30:.2f} GiB per device over {devices} devices exceeds the {limit / 2**30:.2f} GiB of one device"
        reason += f"; ask for up to {most} devices" if more else "; coarsen grid_spec or shrink the domain"
        loc = "query.devices" if more else "grid_spec"
        raise Problem(413, "Simulation too large", reason, errors=[{"loc": loc, "msg": reason, "type": "limit"}])
    return devices


def check_checkpoint_interval(value: str | None, floor_s: float) -> float | None:
    """The ``checkpoint_interval`` query value in seconds (None: the service's default),
    else Problem 422 naming it: it must be a finite number of at least ``floor_s``."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < floor_s:
        reason = f"must be a finite number of seconds ≥ {floor_s:g} (checkpoints cost time), not {value!r}"
        raise Problem(422, "Invalid checkpoint interval", f"checkpoint_interval {reason}", errors=[{"loc": "query.checkpoint_interval", "msg": reason, "type": "value_error"}])
    return seconds


def idempotency_key(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is not None and not 1 <= len(value) <= 200:
        raise Problem(422, "Invalid Idempotency-Key", "Idempotency-Key must be 1–200 characters", errors=[{"loc": "header.Idempotency-Key", "msg": "length", "type": "value_error"}])
    return value


async def body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 over ``limit`` bytes."""
    if int(request.headers.get("content-length") or 0) > limit:
        raise Problem(413, "Payload Too Large", f"request body over {limit} bytes")
    data = await request.body()
    if len(data) > limit:
        raise Problem(413, "Payload Too Large", f"request body over {limit} bytes")
    return data
