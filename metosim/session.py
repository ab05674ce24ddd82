"""The SDK's transport to the MetoSim service: ``Session`` (authenticated HTTP with
retries and the errors it raises), following a resource's status (Server-Sent Events,
polling as the fallback), verified downloads, and the embedded local service that a
session with no URL starts. Knows no resource: jobs, batches and optimisations build
on it, and ``Client`` is its facade.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
from httpx_sse import SSEError, connect_sse

from .kernels.zarr_results import verify_store


TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


class MetoSimError(Exception):
    """Base of the SDK's errors."""


class ValidationError(MetoSimError, ValueError):
    """The service refused the simulation (422); ``errors`` lists each field and reason."""

    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.errors = errors


class AuthenticationError(MetoSimError):
    """Missing, unknown or revoked API key (401)."""


class QuotaExceeded(MetoSimError):
    """The key already has its allowed number of active jobs (409)."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(f"{detail} (retry after {retry_after:g} s)")
        self.retry_after = retry_after


class JobFailed(MetoSimError):
    """The job ended FAILED or CANCELLED; ``reason`` is the server's."""

    def __init__(self, job_id: str, status: str, reason: str | None) -> None:
        super().__init__(f"job {job_id} {status}: {reason}")
        self.job_id, self.status, self.reason = job_id, status, reason


class ChecksumMismatch(MetoSimError):
    """The downloaded result's SHA-256 differs from the one the service recorded."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "metosim"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "metosim" / "results"


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        return response.json()
    except ValueError:
        return {"detail": response.text}


class Session:
    """A connection to a MetoSim service: authenticated HTTP with retries, the errors
    it raises, following a resource's status and downloading results.

    ``url``/``api_key`` come from the arguments, then ``METOSIM_URL``/``METOSIM_API_KEY``,
    then the embedded local service (started on first use as a background process and
    reused by later clients and kernels; its key kept in the config dir, mode 0600).
    ``ca_bundle``: a PEM file of the CAs to trust for an HTTPS service (or
    ``METOSIM_CA_BUNDLE``); the system's CAs by default. Certificates are always verified.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 30.0, ca_bundle: str | None = None) -> None:
        url = url or os.environ.get("METOSIM_URL")
        api_key = api_key or os.environ.get("METOSIM_API_KEY")
        if url is None:
            url, api_key = local_service()
        if not api_key:
            raise AuthenticationError("no API key: pass api_key= or set METOSIM_API_KEY")
        self.url = url.rstrip("/")
        self.verify = tls_context(ca_bundle or os.environ.get("METOSIM_CA_BUNDLE"))
        # Transport retries cover refused/reset connections; requests are retried below.
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout, transport=httpx.HTTPTransport(retries=3, verify=self.verify))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # ------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, attempts: int = 4, **kwargs: Any) -> httpx.Response:
        """One API call with backoff on transient faults (network errors, 502/503/504)."""
        for attempt in range(attempts):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
            else:
                if response.status_code not in (502, 503, 504) or attempt == attempts - 1:
                    return self._raise_for(response)
            time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _raise_for(response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        body = _problem(response)
        detail = body.get("detail", response.reason_phrase)
        if response.status_code == 401:
            raise AuthenticationError(detail)
        if response.status_code == 422:
            raise ValidationError(detail, body.get("errors", []))
        if response.status_code == 409 and "Retry-After" in response.headers:
            raise QuotaExceeded(detail, float(response.headers["Retry-After"]))
        raise MetoSimError(f"{response.status_code} {response.reason_phrase}: {detail}")

    def post(self, path: str, content: str, idempotency_key: str | None = None, params: dict[str, str] | None = None) -> dict[str, Any]:
        """Create a resource from a JSON body; a retried create with the same
        ``idempotency_key`` returns the first one."""
        headers = {"Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self.request("POST", path, content=content, headers=headers, params=params).json()


class Handle:
    """A resource on the service, at ``{collection}/{id}``: its status and its
    cancellation. ``Job``, ``Batch`` and ``Optimization`` add what each resource has."""

    collection: ClassVar[str]

    def __init__(self, client: Session, resource_id: str) -> None:
        self.client, self.id = client, resource_id
        self.path = f"{self.collection}/{resource_id}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"

    def status(self) -> dict[str, Any]:
        """The service's view: status, progress, timestamps, error, results."""
        return self.client.request("GET", self.path).json()

    def cancel(self) -> dict[str, Any]:
        """Cancel it: whatever is queued or running ends CANCELLED."""
        return self.client.request("DELETE", self.path).json()


def follow(client: Session, path: str, what: str, poll: float = 0.25, timeout: float | None = None) -> Iterator[dict[str, Any]]:
    """The status at ``path`` each time it changes, until a terminal state: from its
    Server-Sent Events (``{path}/events``), falling back to polling ``GET {path}`` with
    backoff if the stream cannot be opened or breaks."""
    deadline = None if timeout is None else time.monotonic() + timeout
    state: dict[str, Any] | None = None
    try:
        with connect_sse(client.http, "GET", f"{path}/events", timeout=httpx.Timeout(30.0, read=60.0)) as source:
            source.response.raise_for_status()
            for event in source.iter_sse():
                if event.event == "status":
                    state = event.json()
                    yield state
                    if state["status"] in TERMINAL:
                        return
                _check_deadline(deadline, timeout, f"{what} still running")
    except (httpx.HTTPError, SSEError, ValueError):
        pass  # the stream broke or is unavailable: poll instead
    yield from poll_status(lambda: client.request("GET", path).json(), what, poll, deadline, timeout)


def poll_status(status: Callable[[], dict[str, Any]], what: str, poll: float, deadline: float | None, timeout: float | None) -> Iterator[dict[str, Any]]:
    """``status()`` until it reports a terminal state, with backoff (``poll`` → 2 s);
    TimeoutError past ``deadline`` (monotonic s)."""
    delay = poll
    while True:
        state = status()
        yield state
        if state["status"] in TERMINAL:
            return
        _check_deadline(deadline, timeout, f"{what} still {state['status']}")
        time.sleep(delay)
        delay = min(delay * 1.25, 2.0)


def _check_deadline(deadline: float | None, timeout: float | None, what: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"{what} after {timeout} s")


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Certificate verification against ``ca_bundle`` (PEM) or the system's CAs."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


def download(result: dict[str, Any], on_bytes: Callable[[int, int], None] | None = None, directory: Path | None = None, only_cached: bool = False, verify: ssl.SSLContext | bool = True) -> Path:
    """Stream a result to the cache (named by its SHA-256), verify it and return the
    path; a file already in the cache with the right SHA-256 is not downloaded again
    (``only_cached``: raise FileNotFoundError instead of downloading). A mismatch
    deletes the file and tries once more, then raises ChecksumMismatch."""
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{result['sha256']}.h5"
    if target.exists() and _sha256(target) == result["sha256"]:
        return target
    if only_cached:
        raise FileNotFoundError(target)
    _fetch_verified(result["url"], target, result["sha256"], verify, (lambda done: on_bytes(done, result["size"])) if on_bytes else None)
    return target


def download_store(result: dict[str, Any], files: dict[str, dict[str, str]], on_bytes: Callable[[int, int], None] | None = None, directory: Path | None = None, verify: ssl.SSLContext | bool = True) -> Path:
    """Download a result stored as a zarr store (a run split across processes: ``result``
    links its manifest, ``files`` each file's link) into the cache, as a directory
    named by the manifest's SHA-256, and return it. The manifest is checked against the
    recorded SHA-256 and each file against the manifest (ChecksumMismatch after a
    second try); a store already in the cache is reused once every file checks out."""
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{result['sha256']}.zarr"
    if (target / "manifest.json").exists() and _sha256(target / "manifest.json") == result["sha256"]:
        try:
            verify_store(target)
            return target
        except ValueError:  # changed in the cache since: fetch it again
            pass
    part = Path(tempfile.mkdtemp(dir=directory, suffix=".part"))
    try:
        done = 0

        def count(size: int) -> None:
            if on_bytes:
                on_bytes(done + size, result["size"])

        manifest = part / "manifest.json"
        _fetch_verified(result["url"], manifest, result["sha256"], verify, count)
        done += manifest.stat().st_size
        for path, sha256 in json.loads(manifest.read_text())["files"].items():
            if Path(path).is_absolute() or ".." in Path(path).parts:
                raise ChecksumMismatch(f"the result's manifest names {path!r}, outside the store")
            if path not in files:
                raise ChecksumMismatch(f"the service lists no link for the result's file {path!r}")
            (part / path).parent.mkdir(parents=True, exist_ok=True)
            _fetch_verified(files[path]["url"], part / path, sha256, verify, count)
            done += (part / path).stat().st_size
        if target.exists():  # an incomplete earlier copy
            shutil.rmtree(target)
        os.replace(part, target)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return target


def _fetch_verified(url: str, target: Path, sha256: str, verify: ssl.SSLContext | bool, on_bytes: Callable[[int], None] | None) -> None:
    """Stream ``url`` to ``target`` checking its SHA-256 on the way; a mismatch deletes
    what came and tries once more, then raises ChecksumMismatch."""
    for attempt in range(2):
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as part:
            h = hashlib.sha256()
            done = 0
            with httpx.stream("GET", url, timeout=60, follow_redirects=True, verify=verify) as response:
                response.raise_for_status()
                for block in response.iter_bytes(1 << 20):
                    part.write(block)
                    h.update(block)
                    done += len(block)
                    if on_bytes:
                        on_bytes(done)
        if h.hexdigest() == sha256:
            os.replace(part.name, target)
            return
        os.unlink(part.name)
    raise ChecksumMismatch(f"downloaded SHA-256 {h.hexdigest()} ≠ recorded {sha256} (twice)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- embedded local service
def local_service(start_timeout: float = 120.0) -> tuple[str, str]:
    """URL and key of the embedded local service, starting it (``metosim serve`` in the
    background) and creating its key (``metosim keys create``) on first use."""
    path = config_dir() / "local.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if _healthy(saved["url"]):
            return saved["url"], saved["api_key"]
    port = int(os.environ.get("METOSIM_PORT", "8000"))
    url = f"http://127.0.0.1:{port}"
    metosim = [sys.executable, "-m", "metosim.cli"]
    if not _healthy(url):
        log_dir = config_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "serve.log", "ab") as log:
            subprocess.Popen([*metosim, "serve", "--port", str(port)], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + start_timeout
        while not _healthy(url):
            if time.monotonic() > deadline:
                raise MetoSimError(f"the local service did not start within {start_timeout:g} s; see {log_dir / 'serve.log'}")
            time.sleep(0.5)
    key = subprocess.run([*metosim, "keys", "create", "--name", "local-sdk"], capture_output=True, text=True, check=True).stdout.strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "api_key": key}, f)
    os.chmod(path, 0o600)
    return url, key


def forget_local_service() -> None:
    """Drop the saved URL and key of the embedded local service (``metosim stop``
    stops the service itself)."""
    (config_dir() / "local.json").unlink(missing_ok=True)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


__all__ = ["AuthenticationError", "ChecksumMismatch", "JobFailed", "MetoSimError", "QuotaExceeded", "Session", "ValidationError", "download", "follow", "local_service", "Handle"]
