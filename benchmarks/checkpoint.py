"""Checkpoints of long solves: their cost while stepping, and what a lost worker or a
restarted service costs with them (issue 28).

``overhead`` (the default): the standard 3D problem (100³ cells, ε = 4 sphere, CPML,
a DFT plane; ``benchmarks/engine.py``) stepped in this process without checkpoints
and with one every ``--interval`` seconds (and with the policy on but none due), written by the worker's own uploader
(``CheckpointUploader``: ``.npz`` file, SHA-256, the local object store, the previous
one deleted), alternately, best of ``--repeat``. Prints the bytes and seconds per
checkpoint, the measured overhead at that interval and the overhead it implies at
the default interval (600 s).

``recovery``: the embedded service (``metosim serve``, its own data directory) runs a
2D job of about ``--job-seconds`` of stepping three times: uninterrupted; with its
worker killed (SIGKILL) at ~60%; with the whole service killed at ~60% and
started again. Checkpoints every ``--interval`` s. Prints each run's time and, for
the faults, the time from the kill to the result against the uninterrupted run's
remaining 40%.

    python benchmarks/checkpoint.py [overhead] [--steps 2000] [--interval 2] [--repeat 2]
    python benchmarks/checkpoint.py recovery [--job-seconds 90] [--interval 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import metosim as ms
from metosim.kernels import checkpoint as ck
from metosim.serve.logs import get_logger
from metosim.serve.settings import Settings
from metosim.serve.storage import LocalStore
from metosim.serve.worker import CheckpointUploader

sys.path.insert(0, str(Path(__file__).parent))
from engine import machine, standard_problem  # noqa: E402

JOB_ID = "00000000-0000-4000-8000-000000000028"


class Recorded:
    """Stands in for the job-state actor's record: keeps each checkpoint's key and
    deletes the previous object, as the actor does."""

    def __init__(self, store: LocalStore) -> None:
        self.store, self.keys, self.sizes = store, [], []

    def checkpointed(self, job_id: str, token: int, key: str, sha256: str, step: int) -> bool:
        if self.keys:
            self.store.delete(self.keys[-1])
        self.keys.append(key)
        self.sizes.append(self.store.path(key).stat().st_size)
        return True

    def checkpoint_failed(self, job_id: str, token: int, reason: str) -> None:
        raise RuntimeError(reason)


def overhead(steps: int, interval: float, repeat: int) -> None:
    sim = standard_problem(steps)
    ms.solve(standard_problem(20))  # compile outside the clock
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp, "http://127.0.0.1", b"benchmark")
        plain, idle, with_checkpoints, taken, sizes, per_checkpoint = [], [], [], [], [], []
        for _ in range(repeat):
            plain.append(ms.solve(sim).info["solve_seconds"])
            # Checkpointing on, none due: what the policy itself costs (a wait per chunk).
            idle.append(ms.solve(sim, checkpoints=ck.CheckpointPolicy(save=lambda c: None, interval_s=1e9)).info["solve_seconds"])
            recorded = Recorded(store)
            saver = CheckpointUploader(JOB_ID, 1, sim, Settings(data_dir=tmp), store, recorded, {})
            timed: list[float] = []

            def save(checkpoint: ck.Checkpoint, saver: Any = saver, timed: list[float] = timed) -> None:
                began = time.perf_counter()
                saver(checkpoint)
                timed.append(time.perf_counter() - began)

            with_checkpoints.append(ms.solve(sim, checkpoints=ck.CheckpointPolicy(save=save, interval_s=interval)).info["solve_seconds"])
            taken.append(len(timed))
            sizes += recorded.sizes
            per_checkpoint += timed
    best, best_idle, best_ck = min(plain), min(idle), min(with_checkpoints)
    cost = sorted(per_checkpoint)[len(per_checkpoint) // 2]
    print(machine())
    print(f"standard problem, {steps} steps: {best:.2f} s stepping without checkpoints, {best_ck:.2f} s with one every {interval:g} s ({taken} taken per run)")
    print(f"checkpoint: {max(sizes) / 2**20:.1f} MiB, median {cost * 1e3:.0f} ms to write, hash and store (min {min(per_checkpoint) * 1e3:.0f}, max {max(per_checkpoint) * 1e3:.0f})")
    print(f"checkpointing on but none due (a wait after each chunk): {best_idle:.2f} s, {(best_idle - best) / best:+.1%}")
    print(f"overhead at {interval:g} s: {(best_ck - best) / best:+.1%} measured; {cost / interval:.1%} from the per-checkpoint cost")
    print(f"overhead at the default 600 s: {cost / 600:.3%} from the per-checkpoint cost, plus the wait per chunk above")


# ------------------------------------------------------------------ recovery
def two_d_job(seconds: float) -> ms.Simulation:
    """A 2D dipole run of roughly ``seconds`` of stepping on this machine (no shutoff)."""
    pulse = ms.GaussianPulse(freq0=ms.C_0 / 1e-6, fwidth=0.25 * ms.C_0 / 1e-6)
    return ms.Simulation(
        size=(6, 6, 0),
        grid_spec=ms.GridSpec.uniform(0.02),
        run_time=seconds * 6e-13,  # ~13,000 steps per second of a worker here
        sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=pulse)],
        monitors=[ms.FieldMonitor(name="f", size=(1, 1, 0), freqs=[ms.C_0 / 1e-6])],
        shutoff=0,
    )


class Service:
    """``metosim serve`` in the background on its own data directory."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data, self.env = data, env
        self.process: subprocess.Popen | None = None

    def start(self) -> dict[str, Any]:
        self.process = subprocess.Popen([sys.executable, "-m", "metosim.cli", "serve"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                state = json.loads((self.data / "serve.json").read_text())
                if state["pid"] == self.process.pid and httpx.get(f"{state['url']}/v1/health", timeout=2).status_code == 200:
                    return state
            except (OSError, ValueError, httpx.HTTPError):
                pass
            time.sleep(0.5)
        raise RuntimeError("metosim serve did not come up")

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "metosim.cli", *args], env=self.env, capture_output=True, text=True, timeout=120).stdout


def recovery(job_seconds: float, interval: float) -> None:
    from metosim.serve.db import connect, database_url

    sim = two_d_job(job_seconds)
    total = sim.grid.num_time_steps
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        env = {**os.environ, "METOSIM_DATA_DIR": str(data), "METOSIM_PORT": "8765", "METOSIM_CHECKPOINT_FLOOR_S": "1"}
        service = Service(data, env)
        state = service.start()
        api = httpx.Client(base_url=state["url"], headers={"Authorization": f"Bearer {service.cli('keys', 'create', '--name', 'bench').strip()}"}, timeout=30)
        db = database_url(Settings(data_dir=str(data)))

        def run(fault: str | None) -> tuple[float, float | None, dict[str, Any]]:
            created = api.post("/v1/simulations", params={"checkpoint_interval": str(interval)}, content=sim.model_dump_json())
            created.raise_for_status()
            job_id = created.json()["id"]
            began, killed = time.monotonic(), None
            while (job := api.get(f"/v1/simulations/{job_id}").json())["status"] not in ("COMPLETED", "FAILED"):
                if fault and killed is None and job["progress"]["step"] >= 0.6 * total:
                    killed = time.monotonic()
                    if fault == "worker":
                        with connect(db) as conn:
                            pid = conn.execute("SELECT worker_pid FROM jobs WHERE id = %s", (job_id,)).fetchone()["worker_pid"]
                        os.kill(pid, signal.SIGKILL)
                    else:
                        os.kill(json.loads((data / "serve.json").read_text())["pid"], signal.SIGKILL)
                        service.process.wait()
                        service.start()
                time.sleep(0.2)
            assert job["status"] == "COMPLETED", job
            return time.monotonic() - began, killed and time.monotonic() - killed, job

        try:
            print(machine())
            print(f"2D job: {sim.grid.total_cells:,} cells × {total:,} steps, checkpoint every {interval:g} s")
            whole, _, job = run(None)
            print(f"uninterrupted: {whole:.1f} s from submission to result ({job['progress']['cells_per_second'] / 1e6:.0f} Mcells/s)")
            for fault in ("worker", "service"):
                elapsed, after, job = run(fault)
                c = job["checkpoint"]
                print(
                    f"{fault} killed at 60%: {elapsed:.1f} s in all, {after:.1f} s from the kill to the result "
                    f"(resumed from step {c['resumed_step']:,} = {c['resumed_step'] / total:.0%}; the uninterrupted run's last 40% took ~{0.4 * whole:.1f} s; "
                    f"ratio to the whole run {after / whole:.2f}, attempts {job['attempts']})"
                )
        finally:
            service.cli("stop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="overhead", choices=["overhead", "recovery"])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=None, help="seconds between checkpoints (overhead: 2, recovery: 10)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--job-seconds", type=float, default=90.0)
    args = parser.parse_args()
    get_logger("worker").disabled = True
    if args.what == "overhead":
        overhead(args.steps, args.interval or 2.0, args.repeat)
    else:
        recovery(args.job_seconds, args.interval or 10.0)


if __name__ == "__main__":
    main()
