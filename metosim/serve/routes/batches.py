"""``/v1/batches``: submit a batch, read, list and cancel it, page its members, export
it as one zarr dataset."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ...batch_spec import BatchSpec
from ..problems import admitted, errors_of, invalid, member_locator, problem
from ..states import ACTIVE, TERMINAL
from .common import Limit, Offset, Replica, body, check_accelerator, created, guard, idempotency_key, iso, job_view, link, listed, owned, page, replica, too_large

router = APIRouter(prefix="/v1/batches")
BATCH = "SELECT * FROM batches WHERE id = %s AND key_id = %s"
MEMBER_STATES = "SELECT id, member, status, step, total_steps, error, parameters FROM jobs WHERE batch_id = %s ORDER BY member_index"
LIST = "SELECT * FROM batches WHERE key_id = %s ORDER BY created_at DESC, id LIMIT %s OFFSET %s"
MEMBERS = "SELECT * FROM jobs WHERE batch_id = %s AND (%s::text IS NULL OR status = %s::text) ORDER BY member_index LIMIT %s OFFSET %s"
FIRST_CONFIG = "SELECT config FROM jobs WHERE batch_id = %s ORDER BY member_index LIMIT 1"


async def own_batch(api: Replica, batch_id: str, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """(key, batch) for the caller's own batch (else Problem 401/429/404)."""
    return await owned(api, request, BATCH, batch_id, "batch")


async def batch_view(api: Replica, batch: dict[str, Any]) -> dict[str, Any]:
    """A batch as the API shows it: counts per state, progress, each member's state,
    its dataset export."""
    async with api.db.connection() as conn:
        cur = await conn.execute(MEMBER_STATES, (batch["id"],))
        rows = await cur.fetchall()
    counts = dict.fromkeys((*ACTIVE, *TERMINAL), 0)
    fractions = []
    for row in rows:
        counts[row["status"]] += 1
        fractions.append(1.0 if row["status"] in TERMINAL else (row["step"] / row["total_steps"] if row["total_steps"] else 0.0))
    dataset = {"status": batch["dataset_status"], "monitors": batch["dataset_monitors"], "error": batch["dataset_error"], "url": None, "sha256": None, "size": None}
    if batch["dataset_status"] == "COMPLETED":
        dataset.update(link(api, batch["dataset_key"], batch["dataset_sha256"], batch["dataset_bytes"]))
    return {
        "id": str(batch["id"]),
        "status": batch["status"],
        "size": batch["size"],
        "max_parallel": batch["max_parallel"],
        "parameters": batch["parameters"],
        "created_at": iso(batch["created_at"]),
        "finished_at": iso(batch["finished_at"]),
        "error": batch["error"],
        "counts": counts,
        "progress": {"fraction": sum(fractions) / len(fractions) if fractions else 0.0},
        "members": [{"name": r["member"], "id": str(r["id"]), "status": r["status"], "error": r["error"], "parameters": r["parameters"]} for r in rows],
        "dataset": dataset,
    }


@router.post("", status_code=201, summary="Submit a batch (body: BatchSpec JSON: members [{name, simulation, parameters}], max_parallel; ?accelerator= as for one simulation)")
async def submit_batch(request: Request, accelerator: str | None = None, api: Replica = Depends(replica)) -> Response:
    key = await guard(api, request)
    check_accelerator(accelerator)
    raw = await body(request, api.settings.max_batch_bytes)
    try:
        spec = BatchSpec.model_validate_json(raw)
    except ValidationError as e:
        return invalid("Invalid batch", errors_of(e, member_locator(raw)))
    if len(spec.members) > api.settings.max_batch_members:
        return problem(413, "Batch too large", f"{len(spec.members)} members exceed this service's limit of {api.settings.max_batch_members}")
    members, total = [], 0.0
    for member in spec.members:
        where = f"members[{member.name}].simulation."
        over = too_large(api, member.simulation, where)
        if over:
            return problem(422, "Simulation too large", f"member {member.name!r}: {over['msg']}", errors=[{**over, "member": member.name}])
        est = member.simulation.estimate()
        total += est["cells"] * est["time_steps"]
        if total > api.settings.max_batch_cell_steps:
            detail = f"the batch's cells × steps pass this service's limit of {api.settings.max_batch_cell_steps:.3g} at member {member.name!r}"
            return problem(413, "Batch too large", detail, errors=[{"loc": where.rstrip("."), "msg": detail, "type": "limit", "member": member.name}])
        members.append({"name": member.name, "config": member.simulation.model_dump_json(), "parameters": member.parameters, "total_steps": est["time_steps"]})
    max_parallel = min(spec.max_parallel or key["max_parallel"], key["max_parallel"])
    digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
    outcome = admitted(await api.jobs.submit_batch.remote(str(key["id"]), key["quota"], max_parallel, members, digest, idempotency_key(request), request.state.request_id, accelerator))
    batch = outcome["row"]
    view = {"id": str(batch["id"]), "status": batch["status"], "size": batch["size"], "max_parallel": batch["max_parallel"], "created_at": iso(batch["created_at"])}
    return created(view, outcome, f"/v1/batches/{batch['id']}")


@router.get("/{batch_id}", summary="A batch: status, counts per state, progress, each member's state, its dataset export")
async def get_batch(batch_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    _, batch = await own_batch(api, batch_id, request)
    return JSONResponse(await batch_view(api, batch))


@router.get("", summary="This key's batches, newest first (without member lists)")
async def list_batches(request: Request, limit: Limit = 20, offset: Offset = 0, api: Replica = Depends(replica)) -> Response:
    rows = await listed(api, request, LIST, limit, offset)
    items = [{"id": str(b["id"]), "status": b["status"], "size": b["size"], "created_at": iso(b["created_at"]), "finished_at": iso(b["finished_at"])} for b in rows[:limit]]
    return page(items, len(rows), offset, limit)


@router.get("/{batch_id}/simulations", summary="A batch's members as full job views (result links included), paged; ?status= filters")
async def batch_members(batch_id: str, request: Request, limit: Limit = 50, offset: Offset = 0, status: str | None = None, api: Replica = Depends(replica)) -> Response:
    _, batch = await own_batch(api, batch_id, request)
    if status is not None and status not in (*ACTIVE, *TERMINAL):
        return problem(422, "Invalid status", f"status must be one of {', '.join((*ACTIVE, *TERMINAL))}", errors=[{"loc": "query.status", "msg": "unknown state", "type": "value_error"}])
    async with api.db.connection() as conn:
        cur = await conn.execute(MEMBERS, (batch["id"], status, status, limit + 1, offset))
        rows = await cur.fetchall()
    return page([job_view(api, r) for r in rows[:limit]], len(rows), offset, limit)


@router.delete("/{batch_id}", summary="Cancel a batch: its queued and running members are cancelled")
async def cancel_batch(batch_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    key, _ = await own_batch(api, batch_id, request)
    batch = await api.jobs.cancel_batch.remote(batch_id, str(key["id"]))
    if batch["status"] != "CANCELLED":
        return problem(409, "Not cancellable", f"the batch is already {batch['status']}")
    return JSONResponse(await batch_view(api, batch))


@router.post("/{batch_id}/dataset", status_code=202, summary='Export an ended batch as one zarr dataset in the object store (body: {"monitors": [names] | null})')
async def export_dataset(batch_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    key, batch = await own_batch(api, batch_id, request)
    raw = await body(request, 65536)
    try:
        monitors = json.loads(raw or b"{}").get("monitors")
    except (ValueError, AttributeError, RecursionError):
        return problem(422, "Invalid body", 'expected {"monitors": [names] | null}', errors=[{"loc": "body", "msg": "not a JSON object", "type": "value_error"}])
    if batch["status"] not in TERMINAL:
        return problem(409, "Batch still running", "a dataset is exported once the batch has ended", headers={"Retry-After": "10"})
    if monitors is not None:
        async with api.db.connection() as conn:
            cur = await conn.execute(FIRST_CONFIG, (batch["id"],))
            config = (await cur.fetchone())["config"]
        known = [m["name"] for m in config.get("monitors", [])]
        if not isinstance(monitors, list) or not all(isinstance(m, str) for m in monitors):
            return problem(422, "Invalid monitors", "monitors must be a list of monitor names", errors=[{"loc": "body.monitors", "msg": "not a list of names", "type": "value_error"}])
        missing = [m for m in monitors if m not in known]
        if missing:
            detail = f"no monitor {missing[0]!r} in this batch's simulations (they have {known})"
            return problem(422, "Invalid monitors", detail, errors=[{"loc": "body.monitors", "msg": detail, "type": "value_error"}])
    batch = await api.jobs.export.remote(batch_id, str(key["id"]), monitors)
    return JSONResponse((await batch_view(api, batch))["dataset"], status_code=202, headers={"Location": f"/v1/batches/{batch_id}"})
