"""Waveguide-mode speed: the mode solve of a 3D strip cross-section, and what a
ModeSource plus ModeMonitors add to each time step of a 3D run.

1. Mode solve: silicon strip 0.5 × 0.22 µm in silica, cross-section 2.5 × 2.0 µm at
   20 cells per wavelength in silicon (λ = 1.55 µm; 112 × 90 cells), 1 and 3 modes,
   double and single precision; best of ``--repeat`` (meshing the plane included).
2. Per-step overhead: a 3D straight guide (3 × 2.4 × 2 µm at 16 cells/λ, float32,
   ``--steps`` steps, no shutoff) driven by a point dipole with no monitors, against
   the same run with a ModeSource (num_freqs 1 and 5) and two ModeMonitors at 5
   frequencies. Mcells/s of time stepping (setup, mode solves and compilation
   excluded); overhead = 1 − (Mcells/s with modes) / (Mcells/s without).

    python benchmarks/modes.py [--steps 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np

import metosim as ms
from timing import best_time

LAMBDA = 1.55
F0 = ms.C_0 / (LAMBDA * 1e-6)
SILICON, SILICA = ms.Medium(permittivity=3.48**2), ms.Medium(permittivity=1.444**2)


def strip_cross_section() -> ms.Simulation:
    return ms.Simulation(
        size=(1.0, 2.5, 2.0),
        grid_spec=ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=20),
        run_time=1e-15,
        medium=SILICA,
        structures=[ms.Structure(geometry=ms.Box(size=(ms.inf, 0.5, 0.22)), medium=SILICON)],
    )


def guide(steps: int, with_modes: bool, num_freqs: int = 1) -> ms.Simulation:
    grid = ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=16)
    base = dict(
        size=(3.0, 2.4, 2.0), grid_spec=grid, medium=SILICA,
        structures=[ms.Structure(geometry=ms.Box(size=(ms.inf, 0.5, 0.22)), medium=SILICON)],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=10)), precision="float32", shutoff=0,
    )
    dt = ms.Simulation(run_time=1e-15, **base).grid.dt
    pulse = ms.GaussianPulse(freq0=F0, fwidth=F0 / 10)
    freqs = F0 * np.linspace(0.9, 1.1, 5)
    port = (0, 1.6, 1.2)
    if with_modes:
        sources = [ms.ModeSource(center=(-1.0, 0, 0), size=port, source_time=pulse, num_freqs=num_freqs)]
        monitors = [ms.ModeMonitor(name="out", center=(0.9, 0, 0), size=port, freqs=freqs), ms.ModeMonitor(name="back", center=(-1.2, 0, 0), size=port, freqs=freqs)]
    else:
        sources, monitors = [ms.PointDipole(center=(-1.0, 0, 0), polarization="Ey", source_time=pulse)], []
    return ms.Simulation(run_time=steps * dt * (1 - 1e-9), sources=sources, monitors=monitors, **base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")

    sim = strip_cross_section()
    print(f"mode solve, strip cross-section {sim.grid.num_cells[1]}×{sim.grid.num_cells[2]} cells at 20 cells/λ in Si:")
    for num_modes in (1, 3):
        for precision in ("double", "single"):
            spec = ms.ModeSpec(num_modes=num_modes, precision=precision)
            solver = ms.ModeSolver(sim, ms.Box(size=(0, ms.inf, ms.inf)), spec, [F0])
            seconds = best_time(solver.solve, args.repeat)
            n = solver.solve().n_eff.values[:, 0]
            print(f"  {num_modes} mode(s), {precision}: {seconds:.2f} s (best of {args.repeat}), n_eff {np.round(n, 5)}")

    print(f"per-step overhead on a 3D guide ({guide(args.steps, False).grid.num_cells} cells, {args.steps} steps):")
    plain = max(ms.solve(guide(args.steps, False), backend="jax").info["cells_per_second"] for _ in range(args.repeat)) / 1e6
    print(f"  point dipole, no monitors: {plain:.0f} Mcells/s")
    for num_freqs in (1, 5):
        with_modes = max(ms.solve(guide(args.steps, True, num_freqs), backend="jax").info["cells_per_second"] for _ in range(args.repeat)) / 1e6
        print(f"  ModeSource (num_freqs={num_freqs}) + 2 ModeMonitors × 5 f: {with_modes:.0f} Mcells/s, overhead {100 * (1 - with_modes / plain):.1f}% per step")


if __name__ == "__main__":
    main()
