"""Engine speed on the standard problem (issue: FDTD engine v1).

3D, 100³ cells (dl = 0.02 µm, 2 µm cube including a 12-layer CPML on all sides),
vacuum with a dielectric sphere (ε = 4, r = 0.4 µm), an Ez dipole at (0.3, 0.2,
0.1) µm, GaussianPulse(2e14 Hz, 5e13 Hz), 500 steps, one DFT field monitor on z = 0
at 3 frequencies, float32. Prints Mcells/s of time stepping (setup and compilation
excluded) per backend, and the ratio to a bare jitted vacuum Yee update measured in
the same run.

With ``--graded`` it also times the same problem on a graded grid (the same 100
cells per axis, steps swinging between 0.014 and 0.026 µm along every axis), the
cost of per-axis step arrays in the update.

    python benchmarks/engine.py [--steps 500] [--repeat 3] [--skip-numpy] [--graded]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import metosim as ms


def standard_problem(steps: int) -> ms.Simulation:
    grid = ms.GridSpec.uniform(0.02)
    probe = ms.Simulation(size=(2, 2, 2), grid_spec=grid, run_time=1e-15)
    return ms.Simulation(
        size=(2, 2, 2),
        grid_spec=grid,
        run_time=steps * probe.grid.dt * (1 - 1e-9),
        structures=[ms.Structure(geometry=ms.Sphere(radius=0.4), medium=ms.Medium(permittivity=4))],
        sources=[ms.PointDipole(center=(0.3, 0.2, 0.1), polarization="Ez", source_time=ms.GaussianPulse(freq0=2e14, fwidth=5e13))],
        monitors=[ms.FieldMonitor(name="field", size=(ms.inf, ms.inf, 0), freqs=[1.5e14, 2e14, 2.5e14])],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=12)),
        shutoff=0,  # time exactly the requested steps
    )


def graded_problem(steps: int) -> ms.Simulation:
    """The standard problem on 100 graded cells per axis (x(ξ) = ξ + 0.3·L/(6π)·sin(6πξ/L))."""
    sim = standard_problem(steps)
    xi = np.linspace(-1.0, 1.0, 101)
    coords = xi + 0.3 * 2.0 / (6 * np.pi) * np.sin(6 * np.pi * (xi + 1.0) / 2.0)
    grid = ms.GridSpec.custom(x=coords, y=coords, z=coords)
    fields = {k: getattr(sim, k) for k in ms.Simulation.model_fields}
    dt_ratio = grid.cell_size(1.0) / 0.02  # the smallest step sets Δt: keep the step count
    return ms.Simulation(**{**fields, "grid_spec": grid, "run_time": sim.run_time * dt_ratio})


def bare_yee_mcells(n: int, steps: int) -> float:
    """A jitted fori_loop over a plain periodic vacuum Yee update (no PML, no
    materials, no monitors): the reference ceiling for this machine."""
    import jax
    import jax.numpy as jnp

    c = 0.99 / np.sqrt(3)

    def curl(a, b, c_, forward):
        shift = -1 if forward else 1
        d = lambda f, ax: (jnp.roll(f, shift, ax) - f) if forward else (f - jnp.roll(f, shift, ax))
        return d(c_, 1) - d(b, 2), d(a, 2) - d(c_, 0), d(b, 0) - d(a, 1)

    def step(_, s):
        ex, ey, ez, hx, hy, hz = s
        cx, cy, cz = curl(ex, ey, ez, True)
        hx, hy, hz = hx - c * cx, hy - c * cy, hz - c * cz
        cx, cy, cz = curl(hx, hy, hz, False)
        return ex + c * cx, ey + c * cy, ez + c * cz, hx, hy, hz

    run = jax.jit(lambda s: jax.lax.fori_loop(0, steps, step, s), donate_argnums=0)
    state = tuple(jnp.asarray(np.random.default_rng(i).standard_normal((n, n, n)), jnp.float32) * 1e-3 for i in range(6))
    state = run(state)
    jax.block_until_ready(state)
    start = time.perf_counter()
    state = run(state)
    jax.block_until_ready(state)
    return n**3 * steps / (time.perf_counter() - start) / 1e6


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import jax

    return f"{cpu}; {os.cpu_count()} cores; {platform.system()} {platform.release()}; Python {platform.python_version()}; jax {jax.__version__} on {jax.devices()[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="JAX runs; the best is reported")
    parser.add_argument("--skip-numpy", action="store_true")
    parser.add_argument("--graded", action="store_true", help="also time the problem on a graded grid")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    sim = standard_problem(args.steps)
    print(f"problem: {sim.grid}, {sim.estimate()['memory_bytes'] / 2**20:.0f} MiB, float32")
    bare = max(bare_yee_mcells(100, args.steps) for _ in range(args.repeat))
    print(f"bare jitted vacuum Yee update (100³, no PML/materials/monitors): {bare:8.1f} Mcells/s")
    jax_runs = [ms.solve(sim, backend="jax").info for _ in range(args.repeat)]
    best = max(r["cells_per_second"] for r in jax_runs) / 1e6
    median = float(np.median([r["cells_per_second"] for r in jax_runs])) / 1e6
    print(f"metosim jax   ({jax_runs[0]['device']}): best {best:8.1f} Mcells/s, median {median:8.1f} (ratio to bare: {best / bare:.2f}); setup+compile {jax_runs[0]['total_seconds'] - jax_runs[0]['solve_seconds']:.1f} s")
    if args.graded:
        graded = graded_problem(args.steps)
        runs = [ms.solve(graded, backend="jax").info for _ in range(args.repeat)]
        rates = [r["cells_per_second"] / 1e6 for r in runs]
        print(f"graded grid ({graded.grid}): best {max(rates):8.1f} Mcells/s, median {float(np.median(rates)):8.1f} ({max(rates) / best:.2f} × uniform)")
    if not args.skip_numpy:
        info = ms.solve(sim, backend="numpy").info
        print(f"metosim numpy (cpu):    {info['cells_per_second'] / 1e6:8.1f} Mcells/s")


if __name__ == "__main__":
    main()
