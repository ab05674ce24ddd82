"""The REST API (``/v1``): a FastAPI app served by a Ray Serve deployment.

Reads come straight from PostgreSQL; every state change goes through the job-state
actor. Errors are problem-details JSON (``application/problem+json``).
"""


import asyncio
import hashlib
import hmac
import re
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import ray
from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError
from ray import serve

from ..batch_spec import BatchSpec
from ..inverse import InverseProblem, OptimizerState
from ..simulation import Simulation
from ..version import __version__
from . import keys, metrics, sentry
from .events import JobWatcher, sse_stream
from .db import async_pool, database_url
from .jobs import ACTIVE, JOBSTATE, NAMESPACE, TERMINAL
from .logs import get_logger
from .settings import Settings
from .storage import LocalStore, make_store, media_type, read_verified

log = get_logger("api")
app = FastAPI(title="MetoSim", version=__version__, description="Submit FDTD simulations, follow their progress, download results.")
PROBLEM = "application/problem+json"
ACCELERATOR = re.compile(r"[A-Za-z0-9_\-]{1,32}")
#: Requests one API replica holds at once. Every open event stream is one, so this
#: bounds the watchers per replica (128, Serve's old figure here, left 72 of 200
#: streams waiting in benchmarks/load.py).
MAX_ONGOING = 1024
#: Browsers and clients that saw HTTPS once refuse plain HTTP to this host for a year.
HSTS = "max-age=31536000; includeSubDomains"
#: Seconds between keep-alive events on a quiet event stream.
KEEPALIVE_S = 10.0
#: Paging parameters (a huge offset once reached PostgreSQL as an out-of-range bigint).
Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=10**9)]

@app.middleware("http")
async def request_context(request: Request, call_next: Any) -> Response:
    """Correlation id, request metrics and one JSON log line. Serve's proxy puts the
    client's X-Request-ID (or one it generates) on the request and echoes it."""
    request_id = (request.headers.get("x-request-id") or uuid.uuid4().hex)[:128]
    request.state.request_id = request_id
    sentry.tag(request_id=request_id)  # on this request's scope, for any error event
    start = time.perf_counter()
    response = await call_next(request)
    if request.url.scheme == "https":  # HSTS only means something over HTTPS
        response.headers["Strict-Transport-Security"] = HSTS
    elapsed = time.perf_counter() - start
    path = getattr(request.scope.get("route"), "path", "unmatched")
    metrics.REQUESTS.labels(request.method, path, str(response.status_code)).inc()
    metrics.LATENCY.labels(request.method, path).observe(elapsed)
    log.info("request", extra={"request_id": request_id, "method": request.method, "path": path, "code": response.status_code, "duration_ms": round(elapsed * 1000, 2)})
    return response


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}, status_code=status, media_type=PROBLEM, headers=headers)


BEARER = {"WWW-Authenticate": "Bearer"}


class Problem(Exception):
    """A refusal raised from a helper and answered as problem+json by the handler below,
    so routes read straight through instead of checking what each helper returned."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.response = problem(status, title, detail, headers=headers, **extra)


@app.exception_handler(Problem)
async def problem_response(request: Request, exc: Problem) -> JSONResponse:
    return exc.response


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Query, path and header errors as problem+json naming each parameter (422)."""
    errors = [{"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"], "type": err["type"]} for err in exc.errors()]
    return _invalid("Invalid request", errors)


class TokenBucket:
    """Per-key request rate limit (this replica's view)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.state: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if allowed, else seconds until a token is available."""
        with self.lock:
            now = time.monotonic()
            tokens, last = self.state.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self.state[key] = (tokens - 1, now)
                return 0.0
            self.state[key] = (tokens, now)
            return (1 - tokens) / self.rate


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _errors(e: ValidationError, locate: Any = None) -> list[dict[str, Any]]:
    """Pydantic errors as problem-details entries: ``loc`` is the dotted field path
    (``locate`` may rewrite it and add keys, e.g. a batch member's name)."""
    out = []
    for err in e.errors(include_url=False, include_input=False):
        entry = {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"], "type": err["type"]}
        if locate:
            entry.update(locate(err["loc"]))
        out.append(entry)
    return out


def _invalid(title: str, errors: list[dict[str, Any]]) -> JSONResponse:
    return problem(422, title, "; ".join(f"{x['loc'] or 'body'}: {x['msg']}" for x in errors), errors=errors)


def _page(items: list[dict[str, Any]], fetched: int, offset: int, limit: int) -> JSONResponse:
    """One page of a listing; the query fetched ``limit + 1`` rows to learn whether
    another page follows."""
    return JSONResponse({"items": items, "next_offset": offset + limit if fetched > limit else None})


def _admitted(outcome: dict[str, Any]) -> dict[str, Any]:
    """The job-state actor's answer to a submission, its refusals raised as 409
    (quota, with Retry-After) or 422 (Idempotency-Key reused with another body)."""
    if outcome["refused"] == "quota":
        raise Problem(409, "Active job limit reached", outcome["detail"], headers={"Retry-After": str(outcome["retry_after"])})
    if outcome["refused"] == "idempotency":
        raise Problem(422, "Idempotency-Key conflict", outcome["detail"], errors=[{"loc": "header.Idempotency-Key", "msg": outcome["detail"], "type": "conflict"}])
    return outcome


def _member_locator(body: bytes) -> Any:
    """Rewrites ``members.3.simulation.run_time`` to ``members[<name>].simulation.run_time``
    and adds ``"member": <name>``, so a 422 names the batch member."""
    try:
        raw = json.loads(body)["members"]
    except (ValueError, KeyError, TypeError, RecursionError):  # found by tests/test_fuzz.py
        raw = []

    def locate(loc: tuple) -> dict[str, Any]:
        if len(loc) >= 2 and loc[0] == "members" and isinstance(loc[1], int) and loc[1] < len(raw) and isinstance(raw[loc[1]], dict):
            name = str(raw[loc[1]].get("name", loc[1]))
            return {"loc": ".".join([f"members[{name}]", *(str(p) for p in loc[2:])]), "member": name}
        return {}

    return locate


@serve.deployment(ray_actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}}, max_ongoing_requests=MAX_ONGOING, logging_config={"enable_access_log": False})
@serve.ingress(app)
class Api:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        sentry.init(settings, "api")
        self.db = async_pool(database_url(settings), max_size=16, timeout_s=settings.db_timeout_s)
        self.sync_db_url = database_url(settings)
        self.store = make_store(settings)
        self.jobs = ray.get_actor(JOBSTATE, namespace=NAMESPACE)
        self.limiter = TokenBucket(settings.rate_per_second, settings.rate_burst)
        self.watcher = JobWatcher(self._rows)
        self.optimization_watcher = JobWatcher(self._optimization_rows)
        metrics.register_job_metrics(self.sync_db_url)

    # ------------------------------------------------------------ helpers
    async def _open(self) -> None:
        """Open the asyncio pool inside the replica's event loop, once."""
        if self.db.closed:
            await self.db.open(wait=True, timeout=self.settings.db_timeout_s)

    async def _key(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "Unauthorized", "missing Authorization: Bearer <key>", headers=BEARER)
        await self._open()
        async with self.db.connection() as conn:
            cur = await conn.execute(keys.AUTHENTICATE, (keys.digest(token.strip()),))
            key = await cur.fetchone()
        if key is None:
            raise Problem(401, "Unauthorized", "unknown or revoked API key", headers=BEARER)
        return key

    async def _guard(self, request: Request) -> dict[str, Any]:
        """The caller's key, authenticated and rate-limited (else Problem 401/429)."""
        key = await self._key(request)
        wait = self.limiter.take(str(key["id"]))
        if wait > 0:
            raise Problem(429, "Too Many Requests", f"rate limit of {self.settings.rate_per_second:g} requests/s per key", headers={"Retry-After": str(max(1, round(wait)))})
        return key

    def _job_view(self, job: "dict[str, Any]") -> dict[str, Any]:
        total = job["total_steps"] or 0
        view = {
            "id": str(job["id"]),
            "status": job["status"],
            "created_at": _iso(job["created_at"]),
            "started_at": _iso(job["started_at"]),
            "finished_at": _iso(job["finished_at"]),
            "progress": {
                "step": job["step"],
                "total_steps": total,
                "fraction": (job["step"] / total) if total else 0.0,
                "cells_per_second": job["cells_per_second"],
                "reported_at": _iso(job["heartbeat_at"]),  # the worker's last report
            },
            "attempts": job["attempts"],
            "error": job["error"],
            "provider": job["provider"],
            "node": job["node"],
            "accelerator": job["accelerator"],
            "requested_accelerator": job["requested_accelerator"],
            "batch_id": str(job["batch_id"]) if job["batch_id"] else None,
            "name": job["member"],
            "parameters": job["parameters"],
            "result": None,
        }
        if job["status"] == "COMPLETED" and job["result_key"]:
            view["result"] = self._link(job["result_key"], job["result_sha256"], job["result_bytes"])
        return view

    def _link(self, key: str, sha256: str, size: int) -> dict[str, Any]:
        """A stored object's size, SHA-256 and pre-signed download link."""
        expiry = self.settings.url_expiry_s
        return {
            "size": size,
            "sha256": sha256,
            "url": self.store.presigned_url(key, expiry),
            "url_expires_at": (datetime.now(timezone.utc) + timedelta(seconds=expiry)).isoformat(),
        }

    async def _guarded_job(self, job_id: str, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
        """(key, job) for the caller's own job (else Problem 401/429/404)."""
        key = await self._guard(request)
        job = await self._own_job(job_id, key)
        if job is None:
            raise Problem(404, "Not Found", f"no simulation {job_id} for this key")
        return key, job

    async def _own_job(self, job_id: str, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            uuid.UUID(job_id)
        except ValueError:
            return None
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT * FROM jobs WHERE id = %s AND key_id = %s", (job_id, key["id"]))
            return await cur.fetchone()

    # ------------------------------------------------------------ routes
    @app.post("/v1/simulations", status_code=201, summary="Submit a simulation (body: the Simulation JSON; ?accelerator=A100 asks for a GPU type)")
    async def submit(self, request: Request, accelerator: str | None = None) -> Response:
        key = await self._guard(request)
        self._check_accelerator(accelerator)
        body = await self._body(request, self.settings.max_body_bytes)
        try:
            sim = Simulation.model_validate_json(body)
        except ValidationError as e:
            return _invalid("Invalid simulation", _errors(e))
        too_large = self._too_large(sim)
        if too_large:
            return problem(422, "Simulation too large", too_large["msg"], errors=[too_large])
        idempotency_key = self._idempotency_key(request)
        config_json = sim.model_dump_json()
        outcome = _admitted(await self.jobs.submit.remote(str(key["id"]), key["quota"], config_json, hashlib.sha256(config_json.encode()).hexdigest(), idempotency_key, request.state.request_id, accelerator))
        job = outcome["row"]
        body = {"id": str(job["id"]), "status": job["status"], "created_at": _iso(job["created_at"])}
        return JSONResponse(body, status_code=201 if outcome["created"] else 200, headers={"Location": f"/v1/simulations/{job['id']}"})

    def _too_large(self, sim: Simulation, loc: str = "") -> dict[str, Any] | None:
        """The problem entry for a simulation over the per-job cells × steps limit."""
        est = sim.estimate()
        if est["cells"] * est["time_steps"] <= self.settings.max_cell_steps:
            return None
        field = "grid_spec" if est["cells"] > est["time_steps"] else "run_time"
        detail = f"{est['cells']:,} cells × {est['time_steps']:,} steps exceed this service's limit of {self.settings.max_cell_steps:.3g}"
        return {"loc": loc + field, "msg": detail, "type": "limit"}

    @staticmethod
    def _check_accelerator(accelerator: str | None) -> None:
        if accelerator is not None and not ACCELERATOR.fullmatch(accelerator):
            raise Problem(422, "Invalid accelerator", "accelerator must be a GPU type such as A100 or B200", errors=[{"loc": "query.accelerator", "msg": "1–32 letters, digits, - or _", "type": "value_error"}])

    @staticmethod
    def _idempotency_key(request: Request) -> str | None:
        value = request.headers.get("idempotency-key")
        if value is not None and not 1 <= len(value) <= 200:
            raise Problem(422, "Invalid Idempotency-Key", "Idempotency-Key must be 1–200 characters", errors=[{"loc": "header.Idempotency-Key", "msg": "length", "type": "value_error"}])
        return value

    async def _body(self, request: Request, limit: int) -> bytes:
        """The request body, refused with 413 over ``limit`` bytes."""
        if int(request.headers.get("content-length") or 0) > limit:
            raise Problem(413, "Payload Too Large", f"request body over {limit} bytes")
        body = await request.body()
        if len(body) > limit:
            raise Problem(413, "Payload Too Large", f"request body over {limit} bytes")
        return body

    @app.get("/v1/simulations/{job_id}", summary="Status, progress and (when done) the result of a job")
    async def get_job(self, job_id: str, request: Request) -> Response:
        _, job = await self._guarded_job(job_id, request)
        return JSONResponse(self._job_view(job))

    @app.get("/v1/simulations", summary="This key's jobs, newest first")
    async def list_jobs(self, request: Request, limit: Limit = 20, offset: Offset = 0) -> Response:
        key = await self._guard(request)
        async with self.db.connection() as conn:
            # Batch members are listed under their batch (GET /v1/batches/{id}/simulations),
            # an optimisation's final run under the optimisation.
            cur = await conn.execute(
                "SELECT * FROM jobs WHERE key_id = %s AND batch_id IS NULL AND optimization_id IS NULL ORDER BY created_at DESC, id LIMIT %s OFFSET %s", (key["id"], limit + 1, offset)
            )
            rows = await cur.fetchall()
        items = [self._job_view(r) for r in rows[:limit]]
        return _page(items, len(rows), offset, limit)

    @app.delete("/v1/simulations/{job_id}", summary="Cancel a queued or running job")
    async def cancel(self, job_id: str, request: Request) -> Response:
        key, _ = await self._guarded_job(job_id, request)
        job = await self.jobs.cancel.remote(job_id, str(key["id"]))
        if job["status"] != "CANCELLED":
            return problem(409, "Not cancellable", f"the job is already {job['status']}")
        return JSONResponse(self._job_view(job))

    @app.get("/v1/simulations/{job_id}/events", summary="Server-Sent Events of state and progress")
    async def events(self, job_id: str, request: Request) -> Response:
        _, job = await self._guarded_job(job_id, request)
        stream = sse_stream(self.watcher.rows_of(job_id, job, KEEPALIVE_S), self._job_view, TERMINAL, KEEPALIVE_S)
        return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def _rows(self, job_ids: list[str]) -> list[dict[str, Any]]:
        """The rows of the jobs event streams are watching (one query)."""
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT * FROM jobs WHERE id = ANY(%s::uuid[])", (job_ids,))
            return await cur.fetchall()

    # ------------------------------------------------------------ batches
    @app.post("/v1/batches", status_code=201, summary="Submit a batch (body: BatchSpec JSON: members [{name, simulation, parameters}], max_parallel; ?accelerator= as for one simulation)")
    async def submit_batch(self, request: Request, accelerator: str | None = None) -> Response:
        key = await self._guard(request)
        self._check_accelerator(accelerator)
        body = await self._body(request, self.settings.max_batch_bytes)
        try:
            spec = BatchSpec.model_validate_json(body)
        except ValidationError as e:
            return _invalid("Invalid batch", _errors(e, _member_locator(body)))
        if len(spec.members) > self.settings.max_batch_members:
            return problem(413, "Batch too large", f"{len(spec.members)} members exceed this service's limit of {self.settings.max_batch_members}")
        members, total = [], 0.0
        for member in spec.members:
            where = f"members[{member.name}].simulation."
            too_large = self._too_large(member.simulation, where)
            if too_large:
                return problem(422, "Simulation too large", f"member {member.name!r}: {too_large['msg']}", errors=[{**too_large, "member": member.name}])
            est = member.simulation.estimate()
            total += est["cells"] * est["time_steps"]
            if total > self.settings.max_batch_cell_steps:
                detail = f"the batch's cells × steps pass this service's limit of {self.settings.max_batch_cell_steps:.3g} at member {member.name!r}"
                return problem(413, "Batch too large", detail, errors=[{"loc": where.rstrip("."), "msg": detail, "type": "limit", "member": member.name}])
            members.append({"name": member.name, "config": member.simulation.model_dump_json(), "parameters": member.parameters, "total_steps": est["time_steps"]})
        idempotency_key = self._idempotency_key(request)
        max_parallel = min(spec.max_parallel or key["max_parallel"], key["max_parallel"])
        digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
        outcome = _admitted(await self.jobs.submit_batch.remote(str(key["id"]), key["quota"], max_parallel, members, digest, idempotency_key, request.state.request_id, accelerator))
        batch = outcome["row"]
        body = {"id": str(batch["id"]), "status": batch["status"], "size": batch["size"], "max_parallel": batch["max_parallel"], "created_at": _iso(batch["created_at"])}
        return JSONResponse(body, status_code=201 if outcome["created"] else 200, headers={"Location": f"/v1/batches/{batch['id']}"})

    async def _guarded_batch(self, batch_id: str, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
        """(key, batch) for the caller's own batch (else Problem 401/429/404)."""
        key = await self._guard(request)
        try:
            uuid.UUID(batch_id)
        except ValueError:
            raise Problem(404, "Not Found", f"no batch {batch_id} for this key")
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT * FROM batches WHERE id = %s AND key_id = %s", (batch_id, key["id"]))
            batch = await cur.fetchone()
        if batch is None:
            raise Problem(404, "Not Found", f"no batch {batch_id} for this key")
        return key, batch

    async def _batch_view(self, batch: dict[str, Any]) -> dict[str, Any]:
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT id, member, status, step, total_steps, error, parameters FROM jobs WHERE batch_id = %s ORDER BY member_index", (batch["id"],))
            rows = await cur.fetchall()
        counts = dict.fromkeys((*ACTIVE, *TERMINAL), 0)
        fractions = []
        for row in rows:
            counts[row["status"]] += 1
            fractions.append(1.0 if row["status"] in TERMINAL else (row["step"] / row["total_steps"] if row["total_steps"] else 0.0))
        dataset = {"status": batch["dataset_status"], "monitors": batch["dataset_monitors"], "error": batch["dataset_error"], "url": None, "sha256": None, "size": None}
        if batch["dataset_status"] == "COMPLETED":
            dataset.update(self._link(batch["dataset_key"], batch["dataset_sha256"], batch["dataset_bytes"]))
        return {
            "id": str(batch["id"]),
            "status": batch["status"],
            "size": batch["size"],
            "max_parallel": batch["max_parallel"],
            "parameters": batch["parameters"],
            "created_at": _iso(batch["created_at"]),
            "finished_at": _iso(batch["finished_at"]),
            "error": batch["error"],
            "counts": counts,
            "progress": {"fraction": sum(fractions) / len(fractions) if fractions else 0.0},
            "members": [{"name": r["member"], "id": str(r["id"]), "status": r["status"], "error": r["error"], "parameters": r["parameters"]} for r in rows],
            "dataset": dataset,
        }

    @app.get("/v1/batches/{batch_id}", summary="A batch: status, counts per state, progress, each member's state, its dataset export")
    async def get_batch(self, batch_id: str, request: Request) -> Response:
        _, batch = await self._guarded_batch(batch_id, request)
        return JSONResponse(await self._batch_view(batch))

    @app.get("/v1/batches", summary="This key's batches, newest first (without member lists)")
    async def list_batches(self, request: Request, limit: Limit = 20, offset: Offset = 0) -> Response:
        key = await self._guard(request)
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT * FROM batches WHERE key_id = %s ORDER BY created_at DESC, id LIMIT %s OFFSET %s", (key["id"], limit + 1, offset))
            rows = await cur.fetchall()
        items = [{"id": str(b["id"]), "status": b["status"], "size": b["size"], "created_at": _iso(b["created_at"]), "finished_at": _iso(b["finished_at"])} for b in rows[:limit]]
        return _page(items, len(rows), offset, limit)

    @app.get("/v1/batches/{batch_id}/simulations", summary="A batch's members as full job views (result links included), paged; ?status= filters")
    async def batch_members(self, batch_id: str, request: Request, limit: Limit = 50, offset: Offset = 0, status: str | None = None) -> Response:
        _, batch = await self._guarded_batch(batch_id, request)
        if status is not None and status not in (*ACTIVE, *TERMINAL):
            return problem(422, "Invalid status", f"status must be one of {', '.join((*ACTIVE, *TERMINAL))}", errors=[{"loc": "query.status", "msg": "unknown state", "type": "value_error"}])
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM jobs WHERE batch_id = %s AND (%s::text IS NULL OR status = %s::text) ORDER BY member_index LIMIT %s OFFSET %s",
                (batch["id"], status, status, limit + 1, offset),
            )
            rows = await cur.fetchall()
        items = [self._job_view(r) for r in rows[:limit]]
        return _page(items, len(rows), offset, limit)

    @app.delete("/v1/batches/{batch_id}", summary="Cancel a batch: its queued and running members are cancelled")
    async def cancel_batch(self, batch_id: str, request: Request) -> Response:
        key, _ = await self._guarded_batch(batch_id, request)
        batch = await self.jobs.cancel_batch.remote(batch_id, str(key["id"]))
        if batch["status"] != "CANCELLED":
            return problem(409, "Not cancellable", f"the batch is already {batch['status']}")
        return JSONResponse(await self._batch_view(batch))

    @app.post("/v1/batches/{batch_id}/dataset", status_code=202, summary='Export an ended batch as one zarr dataset in the object store (body: {"monitors": [names] | null})')
    async def export_dataset(self, batch_id: str, request: Request) -> Response:
        key, batch = await self._guarded_batch(batch_id, request)
        body = await self._body(request, 65536)
        try:
            monitors = json.loads(body or b"{}").get("monitors")
        except (ValueError, AttributeError, RecursionError):
            return problem(422, "Invalid body", 'expected {"monitors": [names] | null}', errors=[{"loc": "body", "msg": "not a JSON object", "type": "value_error"}])
        if batch["status"] not in TERMINAL:
            return problem(409, "Batch still running", "a dataset is exported once the batch has ended", headers={"Retry-After": "10"})
        if monitors is not None:
            async with self.db.connection() as conn:
                cur = await conn.execute("SELECT config FROM jobs WHERE batch_id = %s ORDER BY member_index LIMIT 1", (batch["id"],))
                config = (await cur.fetchone())["config"]
            known = [m["name"] for m in config.get("monitors", [])]
            if not isinstance(monitors, list) or not all(isinstance(m, str) for m in monitors):
                return problem(422, "Invalid monitors", "monitors must be a list of monitor names", errors=[{"loc": "body.monitors", "msg": "not a list of names", "type": "value_error"}])
            missing = [m for m in monitors if m not in known]
            if missing:
                detail = f"no monitor {missing[0]!r} in this batch's simulations (they have {known})"
                return problem(422, "Invalid monitors", detail, errors=[{"loc": "body.monitors", "msg": detail, "type": "value_error"}])
        batch = await self.jobs.export.remote(batch_id, str(key["id"]), monitors)
        return JSONResponse((await self._batch_view(batch))["dataset"], status_code=202, headers={"Location": f"/v1/batches/{batch_id}"})

    # ------------------------------------------------------------ optimisations
    @app.post("/v1/optimizations", status_code=201, summary="Start an inverse-design optimisation (body: the InverseProblem JSON: simulation, design, objective, optimizer)")
    async def submit_optimization(self, request: Request) -> Response:
        key = await self._guard(request)
        body = await self._body(request, self.settings.max_body_bytes)
        try:
            inverse = InverseProblem.model_validate_json(body)
        except ValidationError as e:
            return _invalid("Invalid optimisation", _errors(e))
        too_large = self._too_large(inverse.simulation, "simulation.")
        if too_large:
            return problem(422, "Simulation too large", too_large["msg"], errors=[too_large])
        est = inverse.simulation.estimate()
        # An iteration costs about four forward runs (forward, adjoint, recomputation).
        work = 4 * inverse.optimizer.steps * est["cells"] * est["time_steps"]
        if work > self.settings.max_batch_cell_steps:
            detail = f"{inverse.optimizer.steps} iterations of about {4 * est['cells'] * est['time_steps']:.3g} cell-steps each exceed this service's limit of {self.settings.max_batch_cell_steps:.3g}"
            return problem(413, "Optimisation too large", detail, errors=[{"loc": "optimizer.steps", "msg": detail, "type": "limit"}])
        problem_json = inverse.model_dump_json()
        digest = hashlib.sha256(problem_json.encode()).hexdigest()
        outcome = _admitted(await self.jobs.submit_optimization.remote(str(key["id"]), key["quota"], problem_json, inverse.optimizer.steps, digest, self._idempotency_key(request), request.state.request_id))
        row = outcome["row"]
        body = {"id": str(row["id"]), "status": row["status"], "steps": row["steps"], "created_at": _iso(row["created_at"])}
        return JSONResponse(body, status_code=201 if outcome["created"] else 200, headers={"Location": f"/v1/optimizations/{row['id']}"})

    async def _guarded_optimization(self, optimization_id: str, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
        """(key, optimisation row with ``step`` = iterations done) for the caller's own
        optimisation (else Problem 401/429/404)."""
        key = await self._guard(request)
        try:
            uuid.UUID(optimization_id)
        except ValueError:
            raise Problem(404, "Not Found", f"no optimisation {optimization_id} for this key")
        rows = await self._optimization_rows([optimization_id], key["id"])
        if not rows:
            raise Problem(404, "Not Found", f"no optimisation {optimization_id} for this key")
        return key, rows[0]

    async def _optimization_rows(self, ids: list[str], key_id: Any = None) -> list[dict[str, Any]]:
        """Optimisation rows with their iteration count as ``step`` (one query)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT o.*, (SELECT count(*) FROM optimization_iterations i WHERE i.optimization_id = o.id)::int AS step "
                "FROM optimizations o WHERE o.id = ANY(%s::uuid[]) AND (%s::uuid IS NULL OR o.key_id = %s::uuid)",
                (ids, key_id, key_id),
            )
            return await cur.fetchall()

    def _optimization_summary(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(row["id"]),
            "status": row["status"],
            "steps": row["steps"],
            "progress": {"iterations": row["step"], "fraction": row["step"] / row["steps"]},
            "created_at": _iso(row["created_at"]),
            "finished_at": _iso(row["finished_at"]),
            "error": row["error"],
        }

    async def _optimization_view(self, row: dict[str, Any]) -> dict[str, Any]:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT iteration, objective, beta, binarisation, seconds, checkpoint_sha256 FROM optimization_iterations WHERE optimization_id = %s ORDER BY iteration", (row["id"],)
            )
            history = await cur.fetchall()
            final = None
            if row["result_job_id"]:
                cur = await conn.execute("SELECT * FROM jobs WHERE id = %s", (row["result_job_id"],))
                final = self._job_view(await cur.fetchone())
        return {**self._optimization_summary(row), "problem": row["problem"], "history": history, "final_run": final}

    @app.get("/v1/optimizations/{optimization_id}", summary="An optimisation: status, iterations done, the objective history, the final run (a job view with its result)")
    async def get_optimization(self, optimization_id: str, request: Request) -> Response:
        _, row = await self._guarded_optimization(optimization_id, request)
        return JSONResponse(await self._optimization_view(row))

    @app.get("/v1/optimizations", summary="This key's optimisations, newest first (without histories)")
    async def list_optimizations(self, request: Request, limit: Limit = 20, offset: Offset = 0) -> Response:
        key = await self._guard(request)
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT id FROM optimizations WHERE key_id = %s ORDER BY created_at DESC, id LIMIT %s OFFSET %s", (key["id"], limit + 1, offset))
            ids = [str(r["id"]) for r in await cur.fetchall()]
        rows = {str(r["id"]): r for r in await self._optimization_rows(ids[:limit])}
        items = [self._optimization_summary(rows[i]) for i in ids[:limit]]
        return _page(items, len(ids), offset, limit)

    @app.get("/v1/optimizations/{optimization_id}/design", summary="The latest design: density ρ, projected ρ̂ and pixel permittivity ε, and the checkpoint's SHA-256")
    async def optimization_design(self, optimization_id: str, request: Request) -> Response:
        _, row = await self._guarded_optimization(optimization_id, request)
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT iteration, beta, checkpoint_key, checkpoint_sha256 FROM optimization_iterations WHERE optimization_id = %s ORDER BY iteration DESC LIMIT 1", (row["id"],)
            )
            last = await cur.fetchone()
        inverse = InverseProblem.model_validate_json(json.dumps(row["problem"]))
        if last is None:
            rho, beta, sha256 = inverse.initial_density(), inverse.optimizer.beta_at(0), None
        else:
            data = await asyncio.to_thread(read_verified, self.settings, last["checkpoint_key"], last["checkpoint_sha256"])
            rho, beta, sha256 = OptimizerState.density(data)[1], last["beta"], last["checkpoint_sha256"]
        rho_hat = inverse.design.project(rho, beta, inverse.active)
        body = {"iterations": row["step"], "beta": beta, "shape": list(inverse.shape), "rho": rho.tolist(), "rho_hat": rho_hat.tolist(), "eps": inverse.permittivity(rho, beta).tolist(), "checkpoint_sha256": sha256}
        return JSONResponse(body)

    @app.delete("/v1/optimizations/{optimization_id}", summary="Cancel a running optimisation (its recorded iterations stay)")
    async def cancel_optimization(self, optimization_id: str, request: Request) -> Response:
        key, _ = await self._guarded_optimization(optimization_id, request)
        await self.jobs.cancel_optimization.remote(optimization_id, str(key["id"]))
        _, row = await self._guarded_optimization(optimization_id, request)
        if row["status"] != "CANCELLED":
            return problem(409, "Not cancellable", f"the optimisation is already {row['status']}")
        return JSONResponse(await self._optimization_view(row))

    @app.get("/v1/optimizations/{optimization_id}/events", summary="Server-Sent Events: the optimisation's summary after each iteration and at its end")
    async def optimization_events(self, optimization_id: str, request: Request) -> Response:
        _, row = await self._guarded_optimization(optimization_id, request)
        stream = sse_stream(self.optimization_watcher.rows_of(optimization_id, row, KEEPALIVE_S), self._optimization_summary, TERMINAL, KEEPALIVE_S)
        return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/v1/files/{key:path}", summary="Download a result of the local store (signed, expiring link)")
    def download(self, key: str, expires: int, signature: str) -> Response:
        if not isinstance(self.store, LocalStore):
            return problem(404, "Not Found", "results are served by the object store")
        try:
            path = self.store.path(key)
        except ValueError:
            return problem(404, "Not Found", "no such result")
        if not self.store.verify(key, expires, signature):
            return problem(403, "Forbidden", "the link is invalid or has expired")
        if not path.exists():
            return problem(404, "Not Found", "no such result")
        return FileResponse(path, media_type=media_type(key), filename=path.name)

    # ------------------------------------------------------------ overflow workers
    async def _callback(self, job_id: str, request: Request) -> dict[str, Any]:
        """The body of a remote worker's call, authenticated by its job's callback token
        (else Problem 404/401)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            uuid.UUID(job_id)
        except ValueError:
            raise Problem(404, "Not Found", "no such job")
        await self._open()
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT callback_token_sha256 FROM jobs WHERE id = %s", (job_id,))
            row = await cur.fetchone()
        expected = row and row["callback_token_sha256"]
        if scheme.lower() != "bearer" or not expected or not hmac.compare_digest(expected, hashlib.sha256(token.encode()).hexdigest()):
            raise Problem(401, "Unauthorized", "invalid job callback token", headers=BEARER)
        return await request.json()

    @app.post("/v1/internal/jobs/{job_id}/{event}", include_in_schema=False)
    async def worker_event(self, job_id: str, event: str, request: Request) -> Response:
        """started | progress | completed | failed, from a worker outside Ray."""
        body = await self._callback(job_id, request)
        token = int(body["token"])
        if event == "started":
            accepted = await self.jobs.started.remote(job_id, token, str(body["node"])[:200], str(body["accelerator"])[:100], int(body["pid"]))
            return JSONResponse({"accepted": accepted})
        if event == "progress":
            await self.jobs.progress.remote(job_id, token, int(body["step"]), int(body["total"]), float(body["cells_per_second"]))
        elif event == "completed":
            await self.jobs.completed.remote(job_id, token, str(body["key"]), str(body["sha256"]), int(body["size"]), dict(body.get("info") or {}))
        elif event == "failed":
            await self.jobs.failed.remote(job_id, str(body["reason"])[:1000], token)
        else:
            return problem(404, "Not Found", f"unknown event {event!r}")
        return JSONResponse({"accepted": True})

    @app.get("/v1/health", summary="Liveness of the API, database and job-state actor")
    async def health(self) -> Response:
        await self._open()
        async with self.db.connection() as conn:
            await conn.execute("SELECT 1")
        await asyncio.wait_for(self.jobs.ping.remote(), timeout=5)
        return JSONResponse({"status": "ok", "version": __version__, "database": "ok", "jobstate": "ok"})

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus(self) -> Response:
        return Response(metrics.latest(), media_type="text/plain; version=0.0.4")
