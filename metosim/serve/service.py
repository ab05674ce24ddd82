"""Bring the whole service up or down: PostgreSQL (embedded unless configured) with
migrations, Ray (local unless an address is given), the job-state actor and the
Serve app on ``settings.host:settings.port``."""

from __future__ import annotations

from typing import Any

import ray
from ray import serve

from .db import database_url, migrate
from .jobs import NAMESPACE, start_actor
from .settings import Settings

APP_NAME = "metosim"


def start(settings: Settings, **ray_init: Any) -> Any:
    """Start (or join) everything; returns the job-state actor handle."""
    migrate(database_url(settings))
    if not ray.is_initialized():
        # address="local" starts a fresh instance rather than joining whatever cluster
        # happens to run on this machine.
        ray.init(address=settings.ray_address or "local", namespace=NAMESPACE, include_dashboard=False, **ray_init)
    actor = start_actor(settings)
    from .app import Api  # imported late: it pulls in FastAPI and Serve

    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(Api.bind(settings), name=APP_NAME, route_prefix="/")
    return actor


def stop_api() -> None:
    """Stop the Serve app and HTTP proxy; the detached job-state actor keeps running."""
    serve.shutdown()


def shutdown() -> None:
    """Stop everything this process started: the API, the job-state actor and Ray."""
    from .jobs import JOBSTATE

    serve.shutdown()
    try:
        ray.kill(ray.get_actor(JOBSTATE, namespace=NAMESPACE), no_restart=True)
    except ValueError:  # already gone
        pass
    ray.shutdown()
