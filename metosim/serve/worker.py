"""The solve worker: config → the engine's solve → HDF5 (or, split across processes, a
results store each process writes its part of) → upload → report.

``execute`` is the one entry point every provider runs (a Ray task here; a Modal
function reports over HTTPS instead). It talks to the job state only through a
``Reporter``, so it does not care where it runs.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..data import SimulationData, compilation_cache
from ..kernels import SolveResult
from ..kernels import checkpoint as ck
from ..kernels import solve as engine_solve
from ..kernels.sharding import every_process_text
from ..kernels.zarr_results import MANIFEST, hand_over
from ..simulation import Simulation
from . import sentry
from .logs import get_logger
from .settings import Settings
from .states import JOBSTATE, NAMESPACE
from .storage import ObjectStore, checkpoint_key, dataset_key, file_sha256, get_verified, job_checkpoint_key, make_store, manifest_parts, read_verified, result_key, result_store_key, upload_with_retry, write_manifest

PROGRESS_INTERVAL_S = 0.5
#: Upload attempts of one checkpoint: a failed one is not fatal, the next one is due soon.
CHECKPOINT_ATTEMPTS = 2

log = get_logger("worker")


class Reporter(Protocol):
    def started(self, job_id: str, token: int, node: str, accelerator: str, pid: int) -> dict[str, Any] | None:
        """None for a stale dispatch; else ``{"checkpoint": {"key", "sha256", "step"} |
        None, "checkpoint_interval_s": float}``: where to resume from, how often to save."""

    def progress(self, job_id: str, token: int, step: int, total: int, cells_per_second: float) -> None: ...
    def checkpointed(self, job_id: str, token: int, key: str, sha256: str, step: int) -> bool:
        """Record the newest checkpoint (the job's previous one is deleted); False if
        this dispatch is no longer the job's (the caller deletes its upload)."""

    def checkpoint_failed(self, job_id: str, token: int, reason: str) -> None: ...
    def suspended(self, job_id: str, token: int, step: int) -> None:
        """The worker's time ran out at ``step`` (its checkpoint): run the job on."""

    def completed(self, job_id: str, token: int, key: str, sha256: str, size: int, info: dict[str, Any]) -> None: ...


def execute(job_id: str, token: int, config_json: str, settings: Settings, reporter: Reporter, request_id: str | None = None, devices: int = 1, join: Callable[[bool], None] | None = None) -> str:
    """Run one job to an uploaded, checksummed result; returns the result key.

    Exceptions propagate: the dispatcher turns them into FAILED with the reason."""
    extra = {"request_id": request_id, "job_id": job_id}
    if sentry.init(settings, "worker"):
        sentry.tag(job_id=job_id, request_id=request_id)
    try:
        return _execute(job_id, token, config_json, settings, reporter, extra, devices, join)
    except Exception:
        import sentry_sdk

        sentry_sdk.capture_exception()  # a no-op without a DSN
        sentry.flush()
        raise


def _execute(job_id: str, token: int, config_json: str, settings: Settings, reporter: Reporter, extra: dict[str, Any], devices: int = 1, join: Callable[[bool], None] | None = None) -> str:
    begun = time.monotonic()
    node, accelerator = where_am_i(probe_jax=join is None)
    start = reporter.started(job_id, token, node, accelerator, os.getpid())
    if join is not None:  # the lead of a solve across processes: the others go ahead
        join(start is not None, start["checkpoint"] if start is not None else None)  # from the same checkpoint
    if start is None:
        log.info("stale dispatch; not running", extra=extra)
        return ""
    # Kernels compiled by one worker process serve the others (a batch starts several).
    compilation_cache(os.path.join(settings.data_dir, "jax-cache"))
    sim = Simulation.model_validate_json(config_json)
    store = make_store(settings)
    resume = fetch_checkpoint(store, start["checkpoint"], sim, extra)
    speed = SteppingSpeed(sim.grid.total_cells, resume.step if resume else 0, time.perf_counter())
    last = [0.0]

    def progress(step: int, total: int) -> None:
        now = time.perf_counter()
        cells_per_second = speed(step, now)
        if now - last[0] >= PROGRESS_INTERVAL_S or step == total:
            last[0] = now
            reporter.progress(job_id, token, step, total, cells_per_second)

    policy = ck.CheckpointPolicy(
        save=CheckpointUploader(job_id, token, sim, settings, store, reporter, extra),
        interval_s=start["checkpoint_interval_s"],
        deadline=begun + settings.solve_time_limit_s if settings.solve_time_limit_s > 0 else None,
    )
    log.info(f"solving from step {resume.step}" if resume else "solving", extra=extra)
    with tempfile.TemporaryDirectory(prefix="metosim-") as tmp:
        try:
            if join is not None:  # across processes: each writes and uploads its part
                stored = _solve_into_store(job_id, token, sim, policy, resume, devices, settings, store, extra, tmp, progress)
                assert stored is not None  # the lead's
                key, sha256, size, info = stored
            else:
                result = _solve(sim, policy, resume, devices, extra, progress)
                path = os.path.join(tmp, "result.h5")
                SimulationData(sim, result.monitors, result.info).to_hdf5(path)
                sha256, size = file_sha256(path)
                key, info = result_key(job_id, sha256), result.info
                upload_with_retry(store, key, path, settings.upload_attempts, settings.upload_backoff_s, log=lambda m: log.warning(m, extra=extra))
        except ck.SolveSuspended as e:
            log.info(f"time limit: handing the job back at step {e.step}", extra=extra)
            reporter.suspended(job_id, token, e.step)
            return ""
    reporter.completed(job_id, token, key, sha256, size, {k: v for k, v in info.items() if isinstance(v, (int, float, str))})
    log.info("completed", extra=extra)
    return key


class SteppingSpeed:
    """Cells per second of this worker's own time stepping. Setup (mode solves,
    compilation) reports the start step ``first`` until stepping begins, so the speed
    counts from the last of those reports: a slow compilation does not read as slow
    stepping (nor stretch a 409's Retry-After, which divides the steps left by it)."""

    def __init__(self, cells: int, first: int, now: float) -> None:
        self.cells, self.first, self.since = cells, first, now

    def __call__(self, step: int, now: float) -> float:
        if step <= self.first:
            self.since = now
        return self.cells * (step - self.first) / max(now - self.since, 1e-9)


def _solve(sim: Simulation, policy: ck.CheckpointPolicy, resume: ck.Checkpoint | None, devices: int, extra: dict[str, Any], progress: Callable[[int, int], None] | None = None, store: Path | None = None) -> SolveResult:
    """The solve, from ``resume`` if its state fits (else from step 0); ``store``: the
    results store to write as well (see :func:`metosim.kernels.solve`)."""
    try:
        return engine_solve(sim, progress=progress, checkpoints=policy, resume=resume, devices=devices, store=store)
    except ck.CheckpointMismatch as e:  # it passed check() but not the state's layout
        log.warning(f"checkpoint not used: {e}", extra=extra)
        return engine_solve(sim, progress=progress, checkpoints=policy, devices=devices, store=store)


def _solve_into_store(job_id: str, token: int, sim: Simulation, policy: ck.CheckpointPolicy, resume: ck.Checkpoint | None, devices: int, settings: Settings, store: ObjectStore, extra: dict[str, Any], tmp: str, progress: Callable[[int, int], None] | None = None) -> tuple[str, str, int, dict[str, Any]] | None:
    """A solve across processes writing its result as a results store: each process
    uploads its own part (the lead all but the others' pieces of the field monitors
    that span a cut) under ``results/<job>/store-<token>/``, then the lead the manifest
    of every part. Returns, in the lead, (manifest key, its SHA-256, the store's bytes,
    run info); None in the others."""
    root = Path(tmp) / "store"
    result = _solve(sim, policy, resume, devices, extra, progress, store=root)

    def put(path: str, file: Path) -> None:
        upload_with_retry(store, result_store_key(job_id, token, path), str(file), settings.upload_attempts, settings.upload_backoff_s, log=lambda m: log.warning(m, extra=extra))

    handed = hand_over(root, result.files, put)
    if handed is None:
        return None
    return result_store_key(job_id, token, MANIFEST), *handed, result.info


def follow(job_id: str, token: int, config_json: str, settings: Settings, devices: int, stored: dict[str, Any] | None) -> None:
    """The part of a job split across JAX processes that a process other than the lead
    runs (:mod:`.multihost`): the same solve from the checkpoint the lead goes on from
    (``stored``, fetched and verified here), checkpointing and stopping at the steps
    the lead decides (each process stores its part of a checkpoint; the lead records
    them), and uploading its own part of the results store."""
    extra = {"job_id": job_id}
    compilation_cache(os.path.join(settings.data_dir, "jax-cache"))
    sim = Simulation.model_validate_json(config_json)
    store = make_store(settings)
    resume = fetch_checkpoint(store, stored, sim, extra)
    policy = ck.CheckpointPolicy(save=CheckpointUploader(job_id, token, sim, settings, store, None, extra))
    with tempfile.TemporaryDirectory(prefix="metosim-") as tmp:
        try:
            _solve_into_store(job_id, token, sim, policy, resume, devices, settings, store, extra, tmp)
        except ck.SolveSuspended:
            pass  # the lead reports it


def fetch_checkpoint(store: ObjectStore, stored: dict[str, Any] | None, sim: Simulation, extra: dict[str, Any]) -> ck.Checkpoint | None:
    """The job's newest checkpoint (its parts put together, if stored in parts), each
    object verified against its SHA-256 and the whole checked against ``sim`` and this
    engine; None (with a log line saying why) if there is none or it cannot be used."""
    if not stored:
        return None
    with tempfile.TemporaryDirectory(prefix="metosim-resume-") as tmp:
        try:
            checkpoint = _read_stored(store, stored["key"], stored["sha256"], tmp, extra["job_id"])
            ck.check(checkpoint, sim)
        except Exception as e:  # noqa: BLE001 - any unusable checkpoint means: start at step 0
            log.warning(f"checkpoint at step {stored['step']} skipped: {type(e).__name__}: {e}", extra=extra)
            return None
    return checkpoint


def _read_stored(store: ObjectStore, key: str, sha256: str, tmp: str, job_id: str) -> ck.Checkpoint:
    """The checkpoint stored under ``key`` (a manifest: its parts, combined), verified."""
    path = os.path.join(tmp, os.path.basename(key))
    get_verified(store, key, sha256, path, "the stored checkpoint")
    if not key.endswith(".json"):
        return ck.read(path)
    return ck.combine([_read_stored(store, part, part_sha256, tmp, job_id) for part, part_sha256 in manifest_parts(path, job_id)])


class CheckpointUploader:
    """The worker's ``CheckpointPolicy.save``: each checkpoint to a temporary file, its
    SHA-256, the object store, then the job's record (which deletes the previous one).
    A store that refuses it is reported and the solve goes on.

    Split across processes, every process stores its own part (``reporter`` None but
    in the lead); the lead then stores a manifest of the parts and records that."""

    def __init__(self, job_id: str, token: int, sim: Simulation, settings: Settings, store: ObjectStore, reporter: Reporter | None, extra: dict[str, Any]) -> None:
        self.job_id, self.token, self.settings, self.store, self.reporter, self.extra = job_id, token, settings, store, reporter, extra
        self.config_sha256 = ck.config_sha256(sim)

    def __call__(self, checkpoint: ck.Checkpoint) -> None:
        step = checkpoint.step
        stored = self._put(step, ".npz", lambda path: ck.write(checkpoint, path))
        parts: list[str] = []
        if "part" in checkpoint.meta:
            digests = every_process_text(stored[1] if stored else "")
            if self.reporter is None:
                return
            parts = [job_checkpoint_key(self.job_id, self.config_sha256, step, d) for d in digests if d]
            if lost := [p for p, d in enumerate(digests) if not d]:
                self._drop(parts)
                if stored is not None:  # else the lead's own reason is on record
                    self._failed(f"checkpoint at step {step} not stored: process {', '.join(map(str, lost))} could not store its part")
                return
            stored = self._put(step, ".json", lambda path: write_manifest(path, list(zip(parts, digests, strict=True))))
            if stored is None:
                self._drop(parts)
                return
        if stored is None or self.reporter is None:
            return
        key, sha256, size = stored
        if not self.reporter.checkpointed(self.job_id, self.token, key, sha256, step):
            self._drop([key, *parts])  # this dispatch is no longer the job's
            return
        log.info(f"checkpoint at step {step}: {size} bytes" + (f" and {len(parts)} parts" if parts else ""), extra=self.extra)

    def _put(self, step: int, suffix: str, write: Callable[[str], None]) -> tuple[str, str, int] | None:
        """(key, SHA-256, bytes) of the object ``write`` makes, stored; None if the
        store refused it (reported: the solve goes on)."""
        try:
            with tempfile.TemporaryDirectory(prefix="metosim-checkpoint-") as tmp:
                path = os.path.join(tmp, "checkpoint" + suffix)
                write(path)
                sha256, size = file_sha256(path)
                key = job_checkpoint_key(self.job_id, self.config_sha256, step, sha256, suffix)
                upload_with_retry(self.store, key, path, CHECKPOINT_ATTEMPTS, self.settings.upload_backoff_s)
        except Exception as e:  # noqa: BLE001 - a lost checkpoint (a full disk, a refusing store) must not stop the solve
            self._failed(f"checkpoint at step {step} not stored: {type(e).__name__}: {e}")
            return None
        return key, sha256, size

    def _failed(self, reason: str) -> None:
        log.warning(reason, extra=self.extra)
        if self.reporter is not None:
            self.reporter.checkpoint_failed(self.job_id, self.token, reason[:1000])

    def _drop(self, keys: list[str]) -> None:
        for key in keys:
            self.store.delete(key)


def export_dataset(batch_id: str, members: list[dict[str, Any]], monitors: list[str] | None, settings: Settings) -> tuple[str, str, int]:
    """Write a batch's completed members (``name``, ``parameters``, ``result_key``,
    ``sha256``) as one zipped zarr store and upload it; returns (key, sha256, bytes).
    Each member's HDF5 is fetched from the store and verified before it is read."""
    from ..dataset import DatasetMember, write_dataset

    if not members:
        raise ValueError("the batch has no completed member to export")
    store = make_store(settings)
    extra = {"job_id": batch_id}
    with tempfile.TemporaryDirectory(prefix="metosim-dataset-") as tmp:

        def fetch(member: dict[str, Any]) -> SimulationData:
            path = os.path.join(tmp, f"{member['sha256']}.h5")
            if not os.path.exists(path):
                get_verified(store, member["result_key"], member["sha256"], path, f"member {member['name']!r}: stored result")
            return SimulationData.open(path)

        target = os.path.join(tmp, "dataset.zarr.zip")
        write_dataset(target, [DatasetMember(m["name"], m["parameters"] or {}, m["sha256"], lambda m=m: fetch(m)) for m in members], monitors)
        sha256, size = file_sha256(target)
        key = dataset_key(batch_id, sha256)
        upload_with_retry(store, key, target, settings.upload_attempts, settings.upload_backoff_s, log=lambda m: log.warning(m, extra=extra))
    log.info(f"dataset of {len(members)} members exported", extra=extra)
    return key, sha256, size


def optimization_iteration(optimization_id: str, problem_json: str, checkpoint: tuple[str, str] | None, settings: Settings) -> dict[str, Any]:
    """One iteration of an optimisation (forward + gradient + Adam step) from the
    checkpoint ``(key, sha256)`` (None: the start); uploads the next checkpoint and
    returns this iteration's record with ``checkpoint_key``/``checkpoint_sha256``.
    A non-finite objective or gradient raises ``OptimizationFailed``."""
    from ..inverse import Evaluator, InverseProblem, OptimizerState, adam_step

    extra = {"job_id": optimization_id}
    compilation_cache(os.path.join(settings.data_dir, "jax-cache"))
    problem = InverseProblem.model_validate_json(problem_json)
    state = OptimizerState.start(problem) if checkpoint is None else OptimizerState.from_bytes(read_verified(settings, *checkpoint), problem)
    state, record = adam_step(Evaluator(problem), state)
    with tempfile.TemporaryDirectory(prefix="metosim-checkpoint-") as tmp:
        path = os.path.join(tmp, "checkpoint.npz")
        with open(path, "wb") as f:
            f.write(state.to_bytes())
        sha256, _ = file_sha256(path)
        key = checkpoint_key(optimization_id, record["iteration"], sha256)
        upload_with_retry(make_store(settings), key, path, settings.upload_attempts, settings.upload_backoff_s, log=lambda m: log.warning(m, extra=extra))
    log.info(f"iteration {record['iteration']}: objective {record['objective']:.6g}", extra=extra)
    return {**record, "checkpoint_key": key, "checkpoint_sha256": sha256}


def where_am_i(probe_jax: bool = True) -> tuple[str, str]:
    """(node, accelerator) of this process: the Ray node id and its
    ``accelerator_type:*`` resource inside Ray, else the host name; otherwise the
    device JAX computes on (e.g. "NVIDIA B200", or "cpu"). Without ``probe_jax`` (a
    process that must not start JAX's backend yet: the lead of a solve across
    processes) the node's Ray resources say "GPU" or "cpu"."""
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
            for info in ray.nodes():
                if info["NodeID"] == node:
                    kinds = [k.split(":", 1)[1] for k in info["Resources"] if k.startswith("accelerator_type:")]
                    if kinds:
                        return node, kinds[0]
                    if not probe_jax:
                        return node, "GPU" if info["Resources"].get("GPU") else "cpu"
            return node, _jax_device()
    except ImportError:
        pass
    return socket.gethostname(), _jax_device()


def _jax_device() -> str:
    import jax

    device = jax.devices()[0]
    return device.device_kind if device.platform == "gpu" else "cpu"


class ActorReporter:
    """Reports to the job-state actor (the Ray path), found by its name. ``started``,
    ``completed`` and the checkpoint reports are retried with backoff for up to ~60 s
    (each is idempotent under the dispatch token): a database restart during a report,
    or a restarted service whose new actor replaced the one that dispatched the job,
    does not lose a finished solve. Progress goes to whichever actor holds the name, so
    a restarted service keeps hearing the heartbeats of the jobs it inherited."""

    def __init__(self, attempts: int = 8, backoff_s: float = 0.5) -> None:
        self.attempts, self.backoff_s = attempts, backoff_s
        self._actor: Any = None
        self._last_progress: Any = None

    def _resolve(self) -> Any:
        """The actor by name (a ValueError while no actor holds it)."""
        import ray

        if self._actor is None:
            self._actor = ray.get_actor(JOBSTATE, namespace=NAMESPACE)
        return self._actor

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        for attempt in range(self.attempts):
            try:
                return ray.get(getattr(self._resolve(), method).remote(*args))
            except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError, ValueError) as e:
                if attempt == self.attempts - 1:
                    raise
                if not isinstance(e, ray.exceptions.RayTaskError):
                    self._actor = None  # gone, or replaced by a restarted service: look it up again
                log.warning(f"{method} report failed ({type(getattr(e, 'cause', None) or e).__name__}); retrying", extra={"job_id": args[0]})
                time.sleep(self.backoff_s * 2**attempt)

    def started(self, job_id: str, token: int, node: str, accelerator: str, pid: int) -> dict[str, Any] | None:
        return self._call("started", job_id, token, node, accelerator, pid)

    def progress(self, job_id: str, token: int, step: int, total: int, cells_per_second: float) -> None:
        """Fire and forget; when the previous report found the actor dead, the next
        one looks the name up again."""
        import ray

        if self._last_progress is not None and ray.wait([self._last_progress], timeout=0)[0]:
            try:
                ray.get(self._last_progress)
            except ray.exceptions.RayActorError:
                self._actor = None
            except ray.exceptions.RayError:
                pass  # a failed heartbeat is not the worker's concern
        try:
            self._last_progress = self._resolve().progress.remote(job_id, token, step, total, cells_per_second)
        except ValueError:
            self._last_progress = None  # no actor holds the name this moment

    def checkpointed(self, job_id: str, token: int, key: str, sha256: str, step: int) -> bool:
        return self._call("checkpointed", job_id, token, key, sha256, step)

    def checkpoint_failed(self, job_id: str, token: int, reason: str) -> None:
        self._call("checkpoint_failed", job_id, token, reason)

    def suspended(self, job_id: str, token: int, step: int) -> None:
        self._call("suspended", job_id, token, step)

    def completed(self, job_id: str, token: int, key: str, sha256: str, size: int, info: dict[str, Any]) -> None:
        self._call("completed", job_id, token, key, sha256, size, info)


class HttpReporter:
    """Reports to the API's callback endpoints with the job's own token (providers
    that cannot reach Ray actors, such as Modal)."""

    def __init__(self, api_url: str, callback_token: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=api_url.rstrip("/"), headers={"Authorization": f"Bearer {callback_token}"}, timeout=30, transport=httpx.HTTPTransport(retries=3))

    def _post(self, job_id: str, event: str, **body: Any) -> dict[str, Any]:
        response = self.http.post(f"/v1/internal/jobs/{job_id}/{event}", json=body)
        response.raise_for_status()
        return response.json()

    def started(self, job_id: str, token: int, node: str, accelerator: str, pid: int) -> dict[str, Any] | None:
        answer = self._post(job_id, "started", token=token, node=node, accelerator=accelerator, pid=pid)
        return answer["start"] if answer["accepted"] else None

    def progress(self, job_id: str, token: int, step: int, total: int, cells_per_second: float) -> None:
        try:
            self._post(job_id, "progress", token=token, step=step, total=total, cells_per_second=cells_per_second)
        except Exception:  # noqa: BLE001 - a lost progress report must not stop the solve
            log.warning("progress report failed", extra={"job_id": job_id})

    def checkpointed(self, job_id: str, token: int, key: str, sha256: str, step: int) -> bool:
        return bool(self._post(job_id, "checkpointed", token=token, key=key, sha256=sha256, step=step)["accepted"])

    def checkpoint_failed(self, job_id: str, token: int, reason: str) -> None:
        self._post(job_id, "checkpoint_failed", token=token, reason=reason)

    def suspended(self, job_id: str, token: int, step: int) -> None:
        self._post(job_id, "suspended", token=token, step=step)

    def completed(self, job_id: str, token: int, key: str, sha256: str, size: int, info: dict[str, Any]) -> None:
        self._post(job_id, "completed", token=token, key=key, sha256=sha256, size=size, info=info)

    def failed(self, job_id: str, token: int, reason: str) -> None:
        self._post(job_id, "failed", token=token, reason=reason)
