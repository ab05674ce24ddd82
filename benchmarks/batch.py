"""Batches through the embedded service (issue: batches, sweeps, datasets).

Starts the embedded service (local Ray, embedded PostgreSQL, local store) on a free
port and prints, for N small 2D members (a dipole beside a glass rod of swept radius
in a 3 × 3 µm box, a full-plane field monitor):
- the members solved back to back in this process (``ms.solve``), with JAX's
  persistent compilation cache off (every solve compiles its kernel: about 0.5 s of
  each here) and on (the default, as in the service's workers);
- the same members as one batch with max_parallel 1 (submit → batch COMPLETED): the
  difference over N is the per-member platform overhead;
- the batch with max_parallel = cores (the speed-up the cluster gives);
- export of the batch as one zarr dataset: client-side (download + write) and on the
  service (``POST /v1/batches/{id}/dataset``), in MB/s of dataset written.

    python benchmarks/batch.py [--members 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


import metosim as ms
from metosim.serve import keys
from metosim.serve.db import connect, database_url
from metosim.serve.settings import Settings
from embedded import embedded_service, machine

F0 = ms.C_0 / 1e-6


def member(radius: float) -> ms.Simulation:
    """A dipole beside a glass rod of ``radius`` µm in a 3 × 3 µm box: 60 × 60 cells."""
    pulse = ms.GaussianPulse(freq0=F0, fwidth=F0 / 4)
    return ms.Simulation(
        size=(3, 3, 0),
        grid_spec=ms.GridSpec.uniform(0.05),
        run_time=60e-15,
        structures=[ms.Structure(geometry=ms.Cylinder(center=(0.5, 0, 0), radius=radius, length=ms.inf, axis=2), medium=ms.Medium(permittivity=2.25))],
        sources=[ms.PointDipole(center=(-0.5, 0, 0), polarization="Ez", source_time=pulse)],
        monitors=[ms.FieldMonitor(name="field", size=(ms.inf, ms.inf, 0), freqs=[F0])],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=8)),
        shutoff=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=64)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"machine: {machine()}")
    with embedded_service(cores, rate_per_second=1e9, rate_burst=10**9) as settings:
        measure(settings, args.members, cores)


def measure(settings: Settings, n: int, cores: int) -> None:
    sweep = ms.sweep(member, radius=[round(0.05 + 0.5 * i / n, 4) for i in range(n)])
    os.environ["METOSIM_JAX_CACHE"] = "0"
    t0 = time.perf_counter()
    for sim in sweep.values():
        ms.solve(sim)
    local = time.perf_counter() - t0
    print(f"{n} members back to back in-process, compilation cache off: {local:.1f} s ({local / n * 1000:.0f} ms each)")
    del os.environ["METOSIM_JAX_CACHE"]
    with tempfile.TemporaryDirectory() as cache:
        ms.data.compilation_cache(cache)
        ms.solve(member(0.01))  # fills the cache: same kernel, other rod
        t0 = time.perf_counter()
        for sim in sweep.values():
            ms.solve(sim)
        cached = time.perf_counter() - t0
    print(f"{n} members back to back in-process, compilation cache on (the default): {cached:.1f} s ({cached / n * 1000:.0f} ms each)")

    with connect(database_url(settings)) as conn:
        key, _ = keys.create(conn, "bench", quota=1, max_parallel=cores)
    client = ms.Client(url=settings.base_url, api_key=key)
    client.batch({"warm": member(0.01)}, max_parallel=1).wait(progress=False)  # worker imports, kernel cache

    walls = {}
    for parallel in (1, cores):
        t0 = time.perf_counter()
        batch = client.batch(sweep, max_parallel=parallel)
        state = batch.wait(progress=False)
        walls[parallel] = time.perf_counter() - t0
        assert state["counts"]["COMPLETED"] == n, state["counts"]
        print(f"batch of {n}, max_parallel {parallel}: {walls[parallel]:.1f} s submit → COMPLETED (speed {local / walls[parallel]:.2f}× the uncached in-process loop, {cached / walls[parallel]:.2f}× the cached one)")
    print(f"per-member platform overhead (max_parallel 1, against the cached in-process loop): {(walls[1] - cached) / n * 1000:.0f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = tmp  # a cold cache: downloads included
        t0 = time.perf_counter()
        path = batch.to_dataset(str(Path(tmp) / "sweep.zarr.zip"))
        elapsed = time.perf_counter() - t0
        size = Path(path).stat().st_size
        print(f"dataset, client side (download {n} results + write): {size / 1e6:.1f} MB in {elapsed:.1f} s = {size / 1e6 / elapsed:.1f} MB/s")
        t0 = time.perf_counter()
        exported = batch.export_dataset()
        elapsed = time.perf_counter() - t0
        print(f"dataset, on the service (POST …/dataset → COMPLETED): {exported['size'] / 1e6:.1f} MB in {elapsed:.1f} s = {exported['size'] / 1e6 / elapsed:.1f} MB/s")
        t0 = time.perf_counter()
        tree = ms.open_dataset(exported["url"])
        tree["field"]["Ez"].isel(sample=n // 2).values
        print(f"open the exported dataset over HTTP and read one sample of one component: {(time.perf_counter() - t0) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
