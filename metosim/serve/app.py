"""The REST API (``/v1``): a FastAPI app served by a Ray Serve deployment.

Reads come straight from PostgreSQL; every state change goes through the job-state
actor. Errors are problem-details JSON (``application/problem+json``). The routes live
in :mod:`.routes`, by resource; this module assembles the app and the replica they run
in.
"""

import time
import uuid
from functools import partial
from typing import Any

import ray
from fastapi import FastAPI, Request, Response
from ray import serve

from ..version import __version__
from . import metrics, problems, sentry
from .auth import TokenBucket
from .db import async_pool, database_url
from .events import JobWatcher
from .logs import get_logger
from .routes import ROUTERS
from .routes.optimizations import optimization_rows
from .routes.simulations import watched_rows
from .settings import Settings
from .states import JOBSTATE, NAMESPACE
from .storage import make_store

log = get_logger("api")
app = FastAPI(title="MetoSim", version=__version__, description="Submit FDTD simulations, follow their progress, download results.")
problems.install(app)
for router in ROUTERS:
    app.include_router(router)
#: Requests one API replica holds at once. Every open event stream is one, so this
#: bounds the watchers per replica (128, Serve's old figure here, left 72 of 200
#: streams waiting in benchmarks/load.py).
MAX_ONGOING = 1024
#: Browsers and clients that saw HTTPS once refuse plain HTTP to this host for a year.
HSTS = "max-age=31536000; includeSubDomains"


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


@serve.deployment(ray_actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}}, max_ongoing_requests=MAX_ONGOING, logging_config={"enable_access_log": False})
@serve.ingress(app)
class Api:
    """One API replica: its settings, database pool, object store, the job-state
    actor's handle, the per-key rate limiter and the event-stream watchers the routes
    (:mod:`.routes`) share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        sentry.init(settings, "api")
        self.db = async_pool(database_url(settings), max_size=16, timeout_s=settings.db_timeout_s)
        self.store = make_store(settings)
        self.jobs = ray.get_actor(JOBSTATE, namespace=NAMESPACE)
        self.limiter = TokenBucket(settings.rate_per_second, settings.rate_burst)
        self.watcher = JobWatcher(partial(watched_rows, self))
        self.optimization_watcher = JobWatcher(partial(optimization_rows, self))
        metrics.register_job_metrics(database_url(settings))

    async def open(self) -> None:
        """Open the asyncio pool inside the replica's event loop, once."""
        if self.db.closed:
            await self.db.open(wait=True, timeout=self.settings.db_timeout_s)
