"""Bring the whole service up or down: PostgreSQL (embedded unless configured) with
migrations, Ray (local unless an address is given), the job-state actor and the
Serve app on ``settings.host:settings.port``."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
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


def pid_file(settings: Settings) -> Path:
    """Where a running ``metosim serve`` records its process id."""
    return Path(settings.data_dir) / "serve.pid"


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child (a zombie)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _is_metosim_serve(pid: int) -> bool:
    """Guard against a stale pid file naming an unrelated process (pid reuse)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():  # no procfs: trust the file
        return _alive(pid)
    args = cmdline.read_bytes().split(b"\0")
    return b"serve" in args and any(b"metosim" in a for a in args)


def terminate(settings: Settings, timeout_s: float = 60.0) -> bool | None:
    """SIGTERM the ``metosim serve`` recorded in :func:`pid_file` and wait until it has
    exited (it stops Serve and its local Ray first). Returns True when one was stopped,
    False when none was running, None when it did not exit within ``timeout_s``."""
    path = pid_file(settings)
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return False
    if not (_alive(pid) and _is_metosim_serve(pid)):
        path.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)
    path.unlink(missing_ok=True)
    return True
