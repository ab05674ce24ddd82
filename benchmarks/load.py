"""The service under an open-loop load (issue: production hardening).

Starts the embedded service (local Ray, embedded PostgreSQL, local store) on a free
port twice: with no CPU for solves (the API alone, as on a cluster's head node) and
with one (one job solving beside the API); each time it creates 50 keys (a lab of 50
notebooks) with one long job each, then measures:
- GET /v1/simulations/{id} at fixed arrival rates (default 25, 50 and 100 requests/s,
  spread over the 50 keys), each for ``--seconds``: p50/p99 latency measured from each
  request's *scheduled* start (so a slow service cannot slow the generator down and
  hide its own latency), errors, and the generator's CPU;
- 200 Server-Sent-Event streams held open at once on those jobs: the Serve proxy's and
  replica's memory before and with them, how fast progress events reach the watchers
  (from the worker's report, ``progress.reported_at``, to arrival), and the 50 req/s
  run again while they are open.
On 2 cores the API cannot share both with solves: with two jobs solving, 50 req/s
fell behind (39 req/s achieved, p50 2.1 s).

    python benchmarks/load.py [--seconds 20] [--rates 25 50 100] [--streams 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import datetime

import httpx
import numpy as np
import psutil

import metosim as ms
from metosim.serve import keys
from metosim.serve.db import connect, database_url
from metosim.serve.settings import Settings
from embedded import embedded_service, machine

F0 = ms.C_0 / 1e-6
KEYS = 50


def long_job() -> ms.Simulation:
    """A 2D dipole run of a few minutes on these cores: jobs stay active under test."""
    return ms.Simulation(
        size=(8, 8, 0),
        grid_spec=ms.GridSpec.uniform(0.02),
        run_time=4e-12,
        sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=ms.GaussianPulse(freq0=F0, fwidth=F0 / 4))],
        monitors=[ms.FluxMonitor(name="T", center=(1, 0, 0), size=(0, 2, 0), freqs=[F0])],
        shutoff=0,
    )


def serve_memory() -> dict[str, float]:
    """RSS (MB) of the Serve proxy and API replica processes."""
    out = {}
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        for name in ("ProxyActor", "ServeReplica:metosim"):
            if name in cmd:
                out[name] = out.get(name, 0.0) + p.memory_info().rss / 1e6
    return out


async def open_loop(base: str, jobs: list[tuple[str, str]], rate: float, seconds: float) -> dict[str, float]:
    """GETs at ``rate``/s for ``seconds``; latency from each request's scheduled time."""
    latencies, errors = [], 0
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
            key, job_id = jobs[i % len(jobs)]
            try:
                response = await client.get(f"/v1/simulations/{job_id}", headers={"Authorization": f"Bearer {key}"})
                if response.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - scheduled)

        cpu0, t0 = time.process_time(), time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ms_ = np.array(latencies) * 1000
    return {"p50": float(np.percentile(ms_, 50)), "p99": float(np.percentile(ms_, 99)), "max": float(ms_.max()), "errors": errors, "n": len(ms_), "achieved": len(ms_) / wall, "generator_cpu": cpu / wall}


async def hold_streams(base: str, jobs: list[tuple[str, str]], count: int, ready: asyncio.Event, stop: asyncio.Event, delays: list[float], opened: list[int]) -> None:
    """``count`` event streams over the jobs, held until ``stop``; records how long each
    progress event took from the worker's report to here."""
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=None), limits=limits) as client:

        async def watch(i: int) -> None:
            key, job_id = jobs[i % len(jobs)]
            async with client.stream("GET", f"/v1/simulations/{job_id}/events", headers={"Authorization": f"Bearer {key}"}) as response:
                opened.append(response.status_code)
                if len(opened) == count:
                    ready.set()
                async for line in response.aiter_lines():
                    if stop.is_set():
                        return
                    if line.startswith("data: {") and '"progress"' in line:
                        view = json.loads(line[6:])
                        reported = view["progress"]["reported_at"]
                        if view["status"] == "RUNNING" and reported:
                            delays.append(time.time() - datetime.fromisoformat(reported).timestamp())

        tasks = [asyncio.create_task(watch(i)) for i in range(count)]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def measure(base: str, jobs: list[tuple[str, str]], args: argparse.Namespace) -> None:
    for rate in args.rates:
        r = await open_loop(base, jobs, rate, args.seconds)
        print(f"open loop {rate:>4.0f} req/s (achieved {r['achieved']:.1f}): p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.0f} ms, errors {r['errors']}/{r['n']}, generator CPU {100 * r['generator_cpu']:.0f}% of one core")
    before = serve_memory()
    ready, stop, delays, opened = asyncio.Event(), asyncio.Event(), [], []
    holder = asyncio.create_task(hold_streams(base, jobs, args.streams, ready, stop, delays, opened))
    try:
        await asyncio.wait_for(ready.wait(), timeout=120)
    except asyncio.TimeoutError:
        print(f"only {len(opened)} of {args.streams} event streams opened within 120 s")
        stop.set()
        await holder
        return
    await asyncio.sleep(5)
    held = serve_memory()
    r = await open_loop(base, jobs, 50, args.seconds)
    await asyncio.sleep(args.seconds)
    after = serve_memory()
    stop.set()
    await holder
    ok = sum(1 for code in opened if code == 200)
    print(f"{args.streams} event streams opened ({ok} × 200 OK), held {2 * args.seconds + 5:.0f} s")
    print("serve memory (MB) before / with the streams / after holding them: " + ", ".join(f"{k} {before.get(k, 0):.0f} / {held.get(k, 0):.0f} / {after.get(k, 0):.0f}" for k in sorted(set(before) | set(after))))
    print(f"  with them, open loop 50 req/s: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, errors {r['errors']}/{r['n']}")
    if delays:
        d = np.array(delays) * 1000
        print(f"  progress event delivery (worker report → watcher), {len(d)} events: p50 {np.percentile(d, 50):.0f} ms, p99 {np.percentile(d, 99):.0f} ms, max {d.max():.0f} ms")


def long_jobs(settings: Settings) -> list[tuple[str, str]]:
    """50 keys with a long job each: (key, job id)."""
    with connect(database_url(settings)) as conn:
        issued = [keys.create(conn, f"notebook-{i}")[0] for i in range(KEYS)]
    body = long_job().model_dump_json()
    jobs = []
    for key in issued:
        response = httpx.post(f"{settings.base_url}/v1/simulations", content=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        jobs.append((key, response.json()["id"]))
    time.sleep(5)  # a running job has started reporting
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rates", type=float, nargs="+", default=[25, 50, 100])
    parser.add_argument("--streams", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {machine()}; the load generator shares the cores")
    for cpus, title in ((0, "API alone: no solve on these cores (a head node; solves run on GPU workers), every job QUEUED"), (1, "API beside one running solve (one core solving, the rest QUEUED)")):
        print(f"--- {title}")
        with embedded_service(cpus) as settings:
            asyncio.run(measure(settings.base_url, long_jobs(settings), args))


if __name__ == "__main__":
    main()
