"""``ms.Client``: the SDK's HTTP client for the MetoSim service (it speaks HTTP only).

    client = ms.Client()          # METOSIM_URL / METOSIM_API_KEY, else the embedded local service
    data = client.run(sim)        # submit, follow progress, download, verify SHA-256
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import SSEError, connect_sse

from .data import SimulationData
from .simulation import Simulation

if TYPE_CHECKING:
    from .inverse import InverseProblem
    from .batch import Batch

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


class Client:
    """A connection to a MetoSim service.

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
        return f"Client({self.url!r})"

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

    # ------------------------------------------------------------ jobs
    def submit(self, sim: Simulation, idempotency_key: str | None = None) -> "Job":
        """Submit ``sim``; returns its :class:`Job` (QUEUED)."""
        headers = {"Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        body = self.request("POST", "/v1/simulations", content=sim.model_dump_json(), headers=headers).json()
        return Job(self, body["id"])

    def run(self, sim: Simulation, progress: bool = True, wait_for_slot: bool = False, timeout: float | None = None) -> SimulationData:
        """Submit, wait (with a live progress display) and download the result.

        ``wait_for_slot``: when the key already has an active job, wait for it
        instead of raising :class:`QuotaExceeded`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                job = self.submit(sim)
                break
            except QuotaExceeded as e:
                if not wait_for_slot or (deadline is not None and time.monotonic() + e.retry_after > deadline):
                    raise
                time.sleep(min(e.retry_after, 5.0))
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        return job.wait(progress=progress, timeout=remaining, download=True)

    def batch(self, members: "Mapping[str, Simulation] | str", max_parallel: int | None = None, idempotency_key: str | None = None, accelerator: str | None = None) -> "Batch":
        """Submit named simulations (a dict, or ``ms.sweep(...)``) as one batch — one
        active unit on the key, its members run as parallel tasks (at most
        ``max_parallel``, capped by the key's own limit; each on a GPU of type
        ``accelerator`` if given) — or, given a batch id, reattach to it. Returns the
        :class:`~metosim.batch.Batch`."""
        from .batch import Batch
        from .batch_spec import batch_spec

        if isinstance(members, str):
            return Batch.load(members, self)
        headers = {"Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        params = {"accelerator": accelerator} if accelerator else None
        body = self.request("POST", "/v1/batches", content=batch_spec(members, max_parallel).model_dump_json(), headers=headers, params=params).json()
        return Batch(self, body["id"])

    def batches(self, limit: int = 20) -> list[dict[str, Any]]:
        """This key's most recent batches (id, status, size, times)."""
        return self.request("GET", "/v1/batches", params={"limit": limit}).json()["items"]

    def optimize(self, problem: "InverseProblem", progress: bool = True, idempotency_key: str | None = None, wait: bool = True, timeout: float | None = None) -> Any:
        """Run an inverse-design problem on the service (``POST /v1/optimizations``):
        every iteration a task on the cluster, checkpointed, resumed after a restart.
        With ``wait`` (default) follow it with a live plot and return the
        :class:`~metosim.inverse.OptimizationResult` (its ``data`` the final design's
        forward run, downloaded and verified); else return the
        :class:`~metosim.inverse.remote.Optimization` handle at once."""
        from .inverse.remote import Optimization

        headers = {"Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        body = self.request("POST", "/v1/optimizations", content=problem.model_dump_json(), headers=headers).json()
        optimization = Optimization(self, body["id"])
        return optimization.wait(progress=progress, timeout=timeout) if wait else optimization

    def optimization(self, optimization_id: str) -> Any:
        """Reattach to an optimisation by id."""
        from .inverse.remote import Optimization

        return Optimization(self, optimization_id)

    def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        """This key's most recent jobs (status dicts)."""
        return self.request("GET", "/v1/simulations", params={"limit": limit}).json()["items"]

    def job(self, job_id: str) -> "Job":
        return Job(self, job_id)


class Job:
    """A submitted simulation."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client, self.id = client, job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> dict[str, Any]:
        """The service's view: status, progress, timestamps, error, result."""
        return self.client.request("GET", f"/v1/simulations/{self.id}").json()

    def cancel(self) -> dict[str, Any]:
        return self.client.request("DELETE", f"/v1/simulations/{self.id}").json()

    def updates(self, poll: float = 0.25, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Status dicts until the job ends: followed live over Server-Sent Events
        (``GET /v1/simulations/{id}/events``), falling back to polling with backoff
        (0.25 s → 2 s) if the stream cannot be opened or breaks."""
        return follow(self.client, f"/v1/simulations/{self.id}", f"job {self.id}", poll, timeout)

    def wait(self, progress: bool = True, timeout: float | None = None, download: bool = False) -> Any:
        """Follow the job to its end; raise :class:`JobFailed` unless COMPLETED. Returns
        the final status, or the :class:`SimulationData` with ``download=True``."""
        from .widgets.progress import make_display

        display = make_display(self) if progress else None
        state: dict[str, Any] = {}
        try:
            for state in self.updates(timeout=timeout):
                if display:
                    display.update(state)
            if state["status"] != "COMPLETED":
                raise JobFailed(self.id, state["status"], state.get("error"))
            if not download:
                return state
            if display:
                display.downloading(0, state["result"]["size"])
            data = self.result(state, on_bytes=display.downloading if display else None)
            if display:
                display.done()
            return data
        except BaseException as e:
            if display:
                display.fail(str(e))
            raise

    def result(self, state: dict[str, Any] | None = None, on_bytes: Callable[[int, int], None] | None = None) -> SimulationData:
        """Download (or reuse from the cache) and verify the result, then read it."""
        state = state or self.status()
        if state["status"] != "COMPLETED":
            raise JobFailed(self.id, state["status"], state.get("error"))
        return SimulationData.from_hdf5(str(download(state["result"], on_bytes=on_bytes, verify=self.client.verify)))


def follow(client: Client, path: str, what: str, poll: float = 0.25, timeout: float | None = None) -> Iterator[dict[str, Any]]:
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
    for attempt in range(2):
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".part", delete=False) as part:
            h = hashlib.sha256()
            done = 0
            with httpx.stream("GET", result["url"], timeout=60, follow_redirects=True, verify=verify) as response:
                response.raise_for_status()
                for block in response.iter_bytes(1 << 20):
                    part.write(block)
                    h.update(block)
                    done += len(block)
                    if on_bytes:
                        on_bytes(done, result["size"])
        if h.hexdigest() == result["sha256"]:
            os.replace(part.name, target)
            return target
        os.unlink(part.name)
    raise ChecksumMismatch(f"downloaded SHA-256 {h.hexdigest()} ≠ recorded {result['sha256']} (twice)")


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


__all__ = ["AuthenticationError", "ChecksumMismatch", "Client", "Job", "JobFailed", "MetoSimError", "QuotaExceeded", "ValidationError", "download"]
