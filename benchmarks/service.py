"""Service latency and platform overhead (issue: Service).

Starts the embedded service (local Ray, embedded PostgreSQL, local store) on a free
port and prints:
- p50/p99 latency of GET /v1/simulations/{id} under 16 concurrent clients;
- submit → COMPLETED wall time of a tiny simulation versus ``ms.solve`` in-process
  (the platform overhead);
- where ``wrk`` is installed (Debian package ``wrk``), the same GET and ``/v1/health``
  under 16 connections from wrk, a C load generator, so the Python client's own CPU
  cost is out of the figure.

    python benchmarks/service.py [--requests 3000] [--clients 16] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import threading
import time

import httpx
import numpy as np

import metosim as ms
from metosim.serve import keys
from metosim.serve.db import connect, database_url
from metosim.serve.settings import Settings
from embedded import embedded_service, machine

F0 = ms.C_0 / 1e-6


def tiny() -> ms.Simulation:
    return ms.Simulation(
        size=(4, 0, 0),
        grid_spec=ms.GridSpec.uniform(0.02),
        run_time=40e-15,
        sources=[ms.PlaneWave(center=(-1, 0, 0), size=(0, ms.inf, ms.inf), direction="+x", polarization="Ey", source_time=ms.GaussianPulse(freq0=F0, fwidth=F0 / 4))],
        monitors=[ms.FluxMonitor(name="T", center=(1, 0, 0), size=(0, ms.inf, ms.inf), freqs=[F0])],
        boundary_spec=ms.BoundarySpec(x=ms.Boundary()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    print(f"machine: {machine()}")
    started = time.perf_counter()
    with embedded_service(os.cpu_count() or 1, rate_per_second=1e9, rate_burst=10**9) as settings:
        print(f"service up in {time.perf_counter() - started:.1f} s")
        measure(settings, args)


def measure(settings: Settings, args: argparse.Namespace) -> None:
    """Platform overhead, then GET latency from Python clients and (if installed) wrk."""
    with connect(database_url(settings)) as conn:
        key, _ = keys.create(conn, "bench")
    headers = {"Authorization": f"Bearer {key}"}
    client = httpx.Client(base_url=settings.base_url, headers=headers, timeout=30)
    body = tiny().model_dump_json()

    def run_once() -> float:
        t0 = time.perf_counter()
        job = client.post("/v1/simulations", content=body).json()
        while client.get(f"/v1/simulations/{job['id']}").json()["status"] != "COMPLETED":
            time.sleep(0.01)
        return time.perf_counter() - t0

    run_once()  # warm the worker (imports, JIT)
    service_times = [run_once() for _ in range(args.runs)]
    ms.solve(tiny())
    local_times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        ms.solve(tiny())
        local_times.append(time.perf_counter() - t0)
    service, local = statistics.median(service_times), statistics.median(local_times)
    print(f"submit → COMPLETED: median {service * 1000:.0f} ms; ms.solve in-process: {local * 1000:.0f} ms; platform overhead {(service - local) * 1000:.0f} ms")

    job_id = client.get("/v1/simulations").json()["items"][0]["id"]
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = args.requests // args.clients

    def hammer() -> None:
        mine = []
        with httpx.Client(base_url=settings.base_url, headers=headers, timeout=30) as c:
            for _ in range(per_client):
                t0 = time.perf_counter()
                assert c.get(f"/v1/simulations/{job_id}").status_code == 200
                mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    ms_lat = np.array(latencies) * 1000
    print(f"GET /v1/simulations/{{id}}, {args.clients} concurrent clients, {len(ms_lat)} requests: p50 {np.percentile(ms_lat, 50):.1f} ms, p99 {np.percentile(ms_lat, 99):.1f} ms, {len(ms_lat) / elapsed:.0f} req/s")

    if shutil.which("wrk"):
        for path in (f"/v1/simulations/{job_id}", "/v1/health"):
            print(f"wrk, {args.clients} connections, 10 s, GET {path}: {wrk(settings.base_url + path, key, args.clients)}")


def wrk(url: str, key: str, connections: int) -> str:
    """p50/p99 and req/s from one 10 s wrk run (one thread: the machine has 2 cores)."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", "-d10s", "--latency", "-H", f"Authorization: Bearer {key}", url], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(None, 1) for line in (l.strip() for l in out.splitlines()) if line.startswith(("50%", "99%", "Requests/sec:")))
    errors = " (non-2xx responses!)" if "Non-2xx" in out else ""
    return f"p50 {fields['50%'].strip()}, p99 {fields['99%'].strip()}, {fields['Requests/sec:'].strip()} req/s{errors}"


if __name__ == "__main__":
    main()
