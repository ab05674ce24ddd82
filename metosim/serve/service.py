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
from .jobs import start_actor
from .states import JOBSTATE, NAMESPACE
from .settings import Settings

APP_NAME = "metosim"


def start(settings: Settings, **ray_init: Any) -> Any:
    """Start (or join) everything; returns the job-state actor handle."""
    migrate(database_url(settings))
    if not ray.is_initialized():
        if settings.tls:  # Serve's proxy (a worker of this job) serves TLS 1.3 only
            from .tls import HOOK

            ray_init["runtime_env"] = {**ray_init.get("runtime_env", {}), "worker_process_setup_hook": HOOK}
        # address="local" starts a fresh instance rather than joining whatever cluster
        # happens to run on this machine.
        ray.init(address=settings.ray_address or "local", namespace=NAMESPACE, include_dashboard=False, **ray_init)
    actor = start_actor(settings)
    from .app import Api  # imported late: it pulls in FastAPI and Serve

    http: dict[str, Any] = {"host": settings.host, "port": settings.port}
    if settings.tls:
        # Serve hands these to uvicorn; the TLS 1.3 minimum comes from the setup hook.
        http.update(ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key)
    serve.start(http_options=http)
    serve.run(Api.bind(settings), name=APP_NAME, route_prefix="/")
    return actor


def stop_api() -> None:
    """Stop the Serve app and HTTP proxy; the detached job-state actor keeps running."""
    serve.shutdown()


def shutdown() -> None:
    """Stop everything this process started: the API, the job-state actor and Ray."""
    serve.shutdown()
    try:
        ray.kill(ray.get_actor(JOBSTATE, namespace=NAMESPACE), no_restart=True)
    except ValueError:  # already gone
        pass
    ray.shutdown()


def state_file(settings: Settings) -> Path:
    """What a running ``metosim serve`` started: its pid, URL, Ray, database, store and
    the processes of its local Ray (for ``metosim status`` and ``metosim stop``)."""
    return Path(settings.data_dir) / "serve.json"


def record_state(settings: Settings) -> None:
    """Write :func:`state_file` for this process (after :func:`start`)."""
    import json

    import psutil

    local_ray = not settings.ray_address
    state = {
        "pid": os.getpid(),
        "url": settings.base_url,
        "port": settings.port,
        "started_at": time.time(),
        "ray": "local, started by this service" if local_ray else settings.ray_address,
        "ray_gcs": ray.get_runtime_context().gcs_address,
        "database": "embedded PostgreSQL under " + str(Path(settings.data_dir) / "postgres") if not settings.database_url else _redact(settings.database_url),
        "store": f"s3://{settings.s3_bucket}" + (f" at {settings.s3_endpoint_url}" if settings.s3_endpoint_url else "") if settings.s3_bucket else str(Path(settings.data_dir) / "objects"),
        # Ray's own daemons (GCS, raylet, …): stopped with the service, killed by
        # `metosim stop` if a hard kill of the service left them behind.
        "children": [p.pid for p in psutil.Process().children(recursive=True)] if local_ray else [],
    }
    path = state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    part.write_text(json.dumps(state, indent=1))
    os.replace(part, path)


def read_state(settings: Settings) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(state_file(settings).read_text())
    except (OSError, ValueError):
        pass
    try:  # a service started by an earlier MetoSim recorded only its pid
        pid = int((Path(settings.data_dir) / "serve.pid").read_text())
    except (OSError, ValueError):
        return None
    return {"pid": pid, "url": settings.base_url, "port": settings.port, "started_at": 0.0, "ray": "?", "ray_gcs": "?", "database": "?", "store": "?", "children": []}


def _redact(url: str) -> str:
    """A database URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


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
    """Guard against a stale pid naming an unrelated process (pid reuse)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():  # no procfs: trust the file
        return _alive(pid)
    args = cmdline.read_bytes().split(b"\0")
    return b"serve" in args and any(b"metosim" in a for a in args)


def _leftovers(state: dict[str, Any]) -> list[Any]:
    """Recorded Ray daemons of a service that are still alive (checked by name, so a
    reused pid is never touched)."""
    import psutil

    alive = []
    for pid in state.get("children", []):
        try:
            process = psutil.Process(pid)
            if process.create_time() >= state["started_at"] - 60 and "ray" in " ".join(process.cmdline()).lower():
                alive.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return alive


def terminate(settings: Settings, timeout_s: float = 7.0) -> bool:
    """Stop the ``metosim serve`` recorded in :func:`state_file`: SIGTERM, then SIGKILL
    after ``timeout_s``; then any Ray daemon it started that outlived it (a hard kill
    leaves them). Returns whether anything was running."""
    import psutil

    state = read_state(settings)
    if state is None:
        return False
    pid, found = int(state["pid"]), False
    if _alive(pid) and _is_metosim_serve(pid):
        found = True
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    leftovers = _leftovers(state)
    for process in leftovers:
        process.kill()
    psutil.wait_procs(leftovers, timeout=5)
    state_file(settings).unlink(missing_ok=True)
    (Path(settings.data_dir) / "serve.pid").unlink(missing_ok=True)
    return found or bool(leftovers)


def status(settings: Settings) -> dict[str, Any]:
    """What runs for this data directory: the service (if any) and the embedded
    PostgreSQL."""
    import httpx

    from .db import embedded_pid

    state = read_state(settings)
    service = None
    if state is not None:
        running = _alive(int(state["pid"])) and _is_metosim_serve(int(state["pid"]))
        try:
            healthy = running and httpx.get(f"{state['url']}/v1/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            healthy = False
        service = {**state, "running": running, "healthy": healthy, "leftover_ray_processes": [p.pid for p in _leftovers(state)] if not running else []}
    return {"service": service, "embedded_postgres_pid": embedded_pid(settings), "data_dir": settings.data_dir}
