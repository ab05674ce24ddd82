"""The first call (issue 22, item 5): from a fresh process to a result, cold and warm.

For each case a fresh Python process imports metosim, builds the simulation and calls
``ms.solve`` twice; it reports the import (metosim and JAX), the first call and the
second call (the same simulation again: stepping plus per-call setup, nothing to
compile). The first call's *overhead* is first − second: tracing, compiling or loading
the compiled step, and JAX's own start. Each case runs four processes in a row, sharing
one persistent compilation cache (``XDG_CACHE_HOME`` in a temporary folder):

- ``cold``: an empty cache;
- ``warm``: the same simulation again;
- ``geometry``: another permittivity and position of the body (the same grid);
- ``shape``: the domain one cell larger (another array shape: compiled again);
- ``notebook``: as ``warm``, and ``notebook-cold`` as ``cold`` (a cache of its own),
  the way a notebook runs it: ``import metosim`` in one cell
  (in Jupyter it starts importing JAX in the background, :mod:`metosim.warmup`; here
  ``METOSIM_PRELOAD=1``), the solve a couple of seconds later (the pause is not counted).

    python benchmarks/first_call.py [--cases 2d-small,2d-modes,3d-small]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = ("2d-small", "2d-large", "2d-modes", "3d-small", "3d-standard")
VARIANTS = ("cold", "warm", "geometry", "shape", "notebook", "notebook-cold")


def simulation(case: str, variant: str):  # type: ignore[no-untyped-def]
    """The simulation of ``case`` as ``variant`` changes it (see the module doc)."""
    import metosim as ms

    sys.path.insert(0, HERE)
    from engine import dipole_problem

    eps, shift = (6.0, 0.05) if variant == "geometry" else (4.0, 0.0)
    grow = 0.02 if variant == "shape" else 0.0  # one 0.02 µm cell more along x
    if case.startswith("2d") and case != "2d-modes":
        side = 3.0 if case == "2d-small" else 12.0
        sim = dipole_problem((side + grow, side, 0), ms.Cylinder(center=(shift, 0, 0), radius=side / 8, length=ms.inf, axis=2), (side / 4, 0.1, 0), "Ez", 1000)
    elif case == "2d-modes":
        # A silicon guide in silica with a mode source and two 11-frequency mode monitors.
        core = ms.Medium(permittivity=12.0 if variant != "geometry" else 11.0)
        freqs = [ms.C_0 / (w * 1e-6) for w in (1.50 + 0.01 * k for k in range(11))]
        port = dict(size=(0, 1.5, ms.inf))
        sim = ms.Simulation(
            size=(4.0 + grow, 2.5, 0), grid_spec=ms.GridSpec.uniform(0.02), run_time=200e-15, shutoff=0,
            medium=ms.Medium(permittivity=2.085),
            structures=[ms.Structure(geometry=ms.Box(size=(ms.inf, 0.4, ms.inf)), medium=core)],
            sources=[ms.ModeSource(center=(-1.4, 0, 0), **port, source_time=ms.GaussianPulse(freq0=ms.C_0 / 1.55e-6, fwidth=2e13))],
            monitors=[ms.ModeMonitor(name="in", center=(-1.0, 0, 0), **port, freqs=freqs), ms.ModeMonitor(name="out", center=(1.4, 0, 0), **port, freqs=freqs)],
            boundary_spec=ms.BoundarySpec.all_sides(ms.PML()),
        )
    else:
        side = 1.0 if case == "3d-small" else 2.0
        sim = dipole_problem((side + grow, side, side), ms.Sphere(center=(shift, 0, 0), radius=side / 5), (0.15 * side, 0.1 * side, 0.05 * side), "Ez", 200)
    if variant == "geometry" and case != "2d-modes":
        sim = sim.updated_copy(structures=[s.updated_copy(medium=ms.Medium(permittivity=eps)) for s in sim.structures])
    return sim


def child(case: str, variant: str) -> dict:
    """Run in the fresh process: times of import, first and second call (s)."""
    start = time.perf_counter()
    import metosim as ms

    sim = simulation(case, variant)
    imported = time.perf_counter()
    if variant.startswith("notebook"):
        time.sleep(2.0)  # between the cells; not counted
    called = time.perf_counter()
    data = ms.solve(sim)
    first = time.perf_counter()
    ms.solve(sim)
    second = time.perf_counter()
    return {"case": case, "variant": variant, "cells": data.info["num_cells"], "steps": data.info["time_steps"], "import": imported - start, "first": first - called, "second": second - first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="2d-small,2d-large,2d-modes,3d-small,3d-standard")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    print(f"{'case':<12} {'variant':<13} {'cells':>9} {'steps':>6} {'import s':>9} {'first s':>8} {'second s':>9} {'overhead s':>11}")
    for case in args.cases.split(","):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as own:
            for variant in VARIANTS:
                env = {**os.environ, "XDG_CACHE_HOME": own if variant == "notebook-cold" else cache, "METOSIM_PRELOAD": "1" if variant.startswith("notebook") else "0"}
                out = subprocess.run([sys.executable, __file__, "--child", case, variant], env=env, check=True, capture_output=True, text=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{case:<12} {variant:<13} {r['cells']:>9} {r['steps']:>6} {r['import']:>9.2f} {r['first']:>8.2f} {r['second']:>9.2f} {r['first'] - r['second']:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
