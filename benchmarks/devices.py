"""Time to a converged answer on a real device: a 3D silicon strip taper.

TE0 of a 0.5 × 0.22 µm silicon strip in silica (λ = 1.55 µm) through a 2 µm linear
taper to a 1.0 µm wide strip; |S21|² into the wide strip's TE0 at 1.55 µm. The device
is mirror-symmetric in y and z, and TE0 is even in both (Ey is normal to the y plane:
symmetry −1; tangential to the z plane: +1), so ``symmetry=(0, -1, 1)`` steps a
quarter of the grid. Grids: uniform cells of ``--dl`` µm, and ``GridSpec.auto`` at
``--steps`` cells per wavelength in each medium (fine in the silicon, coarse in the
silica, graded by ≤ 1.25). For each: cells stepped, wall time of ``ms.solve`` (setup,
mode solves and compilation included) and |S21|², with and without symmetry; the
converged value is the finest uniform grid's, and each run's error is against it.

    python benchmarks/devices.py [--dl 0.05 0.04 0.03 0.025] [--steps 12 16 20] [--no-full]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import metosim as ms

LAMBDA = 1.55
F0 = ms.C_0 / (LAMBDA * 1e-6)
SILICON, SILICA = ms.Medium(permittivity=3.48**2), ms.Medium(permittivity=1.444**2)


def taper(grid_spec: ms.GridSpec, symmetry: tuple[int, int, int]) -> ms.Simulation:
    half_in, half_out, h = 0.25, 0.5, 0.11
    outline = [(-3.0, -half_in), (-1.0, -half_in), (1.0, -half_out), (3.0, -half_out), (3.0, half_out), (1.0, half_out), (-1.0, half_in), (-3.0, half_in)]
    spec = ms.ModeSpec(num_modes=1)
    return ms.Simulation(
        size=(4.4, 2.4, 1.6),
        grid_spec=grid_spec,
        run_time=200e-15,
        medium=SILICA,
        structures=[ms.Structure(geometry=ms.PolySlab(vertices=outline, slab_bounds=(-h, h)), medium=SILICON)],
        sources=[ms.ModeSource(center=(-1.5, 0, 0), size=(0, 1.8, 1.2), mode_spec=spec, source_time=ms.GaussianPulse(freq0=F0, fwidth=0.1 * F0))],
        monitors=[ms.ModeMonitor(name="out", center=(1.6, 0, 0), size=(0, 2.0, 1.2), freqs=[F0], mode_spec=spec)],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=10)),
        symmetry=symmetry,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dl", type=float, nargs="+", default=[0.05, 0.04, 0.03, 0.025])
    parser.add_argument("--steps", type=float, nargs="+", default=[12, 16, 20])
    parser.add_argument("--no-full", action="store_true", help="only the symmetric runs")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; float32, JAX backend")
    grids = [(f"uniform {dl:g} µm", ms.GridSpec.uniform(dl)) for dl in args.dl]
    grids += [(f"auto {n:g}/λ", ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=n)) for n in args.steps]
    rows = []
    for label, spec in grids:
        for symmetry in [(0, -1, 1)] + ([] if args.no_full else [(0, 0, 0)]):
            start = time.perf_counter()
            data = ms.solve(taper(spec, symmetry))
            wall = time.perf_counter() - start
            s21 = float(abs(data["out"].amps.sel(direction="+", mode_index=0, f=F0)) ** 2)
            rows.append((label, symmetry, data.info["num_cells"], wall, s21))
            print(f"{label:>16}  symmetry {symmetry}: {data.info['num_cells']:>9,} cells × {data.info['time_steps']} steps, {wall:6.1f} s, |S21|² = {s21:.5f}", flush=True)
    reference = rows[(len(args.dl) - 1) * (1 if args.no_full else 2)][4]
    print(f"\nconverged value: |S21|² = {reference:.5f} ({grids[len(args.dl) - 1][0]}, symmetric)")
    print("| grid | symmetry | cells stepped | wall (s) | |S21|² | error vs finest |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, symmetry, cells, wall, s21 in rows:
        print(f"| {label} | {symmetry} | {cells:,} | {wall:.1f} | {s21:.5f} | {abs(s21 - reference) / reference:.2%} |")


if __name__ == "__main__":
    main()
