"""``/v1/optimizations``: start an inverse-design optimisation, read, list and cancel
it, fetch its latest design, follow its events."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from ...inverse import InverseProblem, OptimizerState
from ..events import sse_stream
from ..problems import Problem, admitted, errors_of, invalid, problem
from ..states import TERMINAL
from ..storage import read_verified
from .common import KEEPALIVE_S, Limit, Offset, Replica, body, created, guard, idempotency_key, iso, job_view, listed, page, replica, resource_id, too_large

router = APIRouter(prefix="/v1/optimizations")
#: Optimisation rows with their iteration count as ``step``.
ROWS = (
    "SELECT o.*, (SELECT count(*) FROM optimization_iterations i WHERE i.optimization_id = o.id)::int AS step "
    "FROM optimizations o WHERE o.id = ANY(%s::uuid[]) AND (%s::uuid IS NULL OR o.key_id = %s::uuid)"
)
HISTORY = "SELECT iteration, objective, beta, binarisation, seconds, checkpoint_sha256 FROM optimization_iterations WHERE optimization_id = %s ORDER BY iteration"
FINAL_RUN = "SELECT * FROM jobs WHERE id = %s"
LIST = "SELECT id FROM optimizations WHERE key_id = %s ORDER BY created_at DESC, id LIMIT %s OFFSET %s"
LAST_ITERATION = "SELECT iteration, beta, checkpoint_key, checkpoint_sha256 FROM optimization_iterations WHERE optimization_id = %s ORDER BY iteration DESC LIMIT 1"


async def optimization_rows(api: Replica, ids: list[str], key_id: Any = None) -> list[dict[str, Any]]:
    """Optimisation rows with their iteration count as ``step`` (one query)."""
    async with api.db.connection() as conn:
        cur = await conn.execute(ROWS, (ids, key_id, key_id))
        return await cur.fetchall()


async def own_optimization(api: Replica, optimization_id: str, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """(key, optimisation row with ``step`` = iterations done) for the caller's own
    optimisation (else Problem 401/429/404)."""
    key = await guard(api, request)
    rows = await optimization_rows(api, [resource_id(optimization_id, "optimisation")], key["id"])
    if not rows:
        raise Problem(404, "Not Found", f"no optimisation {optimization_id} for this key")
    return key, rows[0]


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """An optimisation's state and progress (what its event stream sends)."""
    return {
        "id": str(row["id"]),
        "status": row["status"],
        "steps": row["steps"],
        "progress": {"iterations": row["step"], "fraction": row["step"] / row["steps"]},
        "created_at": iso(row["created_at"]),
        "finished_at": iso(row["finished_at"]),
        "error": row["error"],
    }


async def optimization_view(api: Replica, row: dict[str, Any]) -> dict[str, Any]:
    """The summary with the problem, the objective history and the final run."""
    async with api.db.connection() as conn:
        cur = await conn.execute(HISTORY, (row["id"],))
        history = await cur.fetchall()
        final = None
        if row["result_job_id"]:
            cur = await conn.execute(FINAL_RUN, (row["result_job_id"],))
            final = job_view(api, await cur.fetchone())
    return {**summary(row), "problem": row["problem"], "history": history, "final_run": final}


@router.post("", status_code=201, summary="Start an inverse-design optimisation (body: the InverseProblem JSON: simulation, design, objective, optimizer)")
async def submit_optimization(request: Request, api: Replica = Depends(replica)) -> Response:
    key = await guard(api, request)
    raw = await body(request, api.settings.max_body_bytes)
    try:
        inverse = InverseProblem.model_validate_json(raw)
    except ValidationError as e:
        return invalid("Invalid optimisation", errors_of(e))
    over = too_large(api, inverse.simulation, "simulation.")
    if over:
        return problem(422, "Simulation too large", over["msg"], errors=[over])
    est = inverse.simulation.estimate()
    # An iteration costs about four forward runs (forward, adjoint, recomputation).
    work = 4 * inverse.optimizer.steps * est["cells"] * est["time_steps"]
    if work > api.settings.max_batch_cell_steps:
        detail = f"{inverse.optimizer.steps} iterations of about {4 * est['cells'] * est['time_steps']:.3g} cell-steps each exceed this service's limit of {api.settings.max_batch_cell_steps:.3g}"
        return problem(413, "Optimisation too large", detail, errors=[{"loc": "optimizer.steps", "msg": detail, "type": "limit"}])
    problem_json = inverse.model_dump_json()
    digest = hashlib.sha256(problem_json.encode()).hexdigest()
    outcome = admitted(await api.jobs.submit_optimization.remote(str(key["id"]), key["quota"], problem_json, inverse.optimizer.steps, digest, idempotency_key(request), request.state.request_id))
    row = outcome["row"]
    return created({"id": str(row["id"]), "status": row["status"], "steps": row["steps"], "created_at": iso(row["created_at"])}, outcome, f"/v1/optimizations/{row['id']}")


@router.get("/{optimization_id}", summary="An optimisation: status, iterations done, the objective history, the final run (a job view with its result)")
async def get_optimization(optimization_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    _, row = await own_optimization(api, optimization_id, request)
    return JSONResponse(await optimization_view(api, row))


@router.get("", summary="This key's optimisations, newest first (without histories)")
async def list_optimizations(request: Request, limit: Limit = 20, offset: Offset = 0, api: Replica = Depends(replica)) -> Response:
    ids = [str(r["id"]) for r in await listed(api, request, LIST, limit, offset)]
    rows = {str(r["id"]): r for r in await optimization_rows(api, ids[:limit])}
    return page([summary(rows[i]) for i in ids[:limit]], len(ids), offset, limit)


@router.get("/{optimization_id}/design", summary="The latest design: density ρ, projected ρ̂ and pixel permittivity ε, and the checkpoint's SHA-256")
async def optimization_design(optimization_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    _, row = await own_optimization(api, optimization_id, request)
    async with api.db.connection() as conn:
        cur = await conn.execute(LAST_ITERATION, (row["id"],))
        last = await cur.fetchone()
    inverse = InverseProblem.model_validate_json(json.dumps(row["problem"]))
    if last is None:
        rho, beta, sha256 = inverse.initial_density(), inverse.optimizer.beta_at(0), None
    else:
        data = await asyncio.to_thread(read_verified, api.settings, last["checkpoint_key"], last["checkpoint_sha256"])
        rho, beta, sha256 = OptimizerState.density(data)[1], last["beta"], last["checkpoint_sha256"]
    rho_hat = inverse.project(rho, beta)
    design = {"iterations": row["step"], "beta": beta, "shape": list(inverse.shape), "rho": rho.tolist(), "rho_hat": rho_hat.tolist(), "eps": inverse.permittivity(rho, beta).tolist(), "checkpoint_sha256": sha256}
    return JSONResponse(design)


@router.delete("/{optimization_id}", summary="Cancel a running optimisation (its recorded iterations stay)")
async def cancel_optimization(optimization_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    key, _ = await own_optimization(api, optimization_id, request)
    await api.jobs.cancel_optimization.remote(optimization_id, str(key["id"]))
    _, row = await own_optimization(api, optimization_id, request)
    if row["status"] != "CANCELLED":
        return problem(409, "Not cancellable", f"the optimisation is already {row['status']}")
    return JSONResponse(await optimization_view(api, row))


@router.get("/{optimization_id}/events", summary="Server-Sent Events: the optimisation's summary after each iteration and at its end")
async def optimization_events(optimization_id: str, request: Request, api: Replica = Depends(replica)) -> Response:
    _, row = await own_optimization(api, optimization_id, request)
    stream = sse_stream(api.optimization_watcher.rows_of(optimization_id, row, KEEPALIVE_S), summary, TERMINAL, KEEPALIVE_S)
    return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
