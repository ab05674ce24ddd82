"""Time to a converged answer on a real device: a 3D silicon strip bend or taper.

``--device bend``: TE0 of a 0.5 × 0.22 µm silicon strip in silica (λ = 1.55 µm) through
a 90° bend of 0.7 µm centre radius; |S21|² into the output strip's TE0 at 1.55 µm
(radiation makes it depend on the grid). The bend is mirror-symmetric about its
mid-plane z = 0 and TE0 is even there (Ey tangential: symmetry +1), so
``symmetry=(0, 0, 1)`` steps half the grid.

``--device taper``: a cladding-heavy device — TE0 of the same strip through a short
linear taper (0.5 → 2.0 µm wide over 2 µm, so not adiabatic) into the wide strip's TE0,
in 1.2 µm of silica above and below and 1 µm beside the wide strip: silicon fills 2%
of the domain. Symmetric in y (TE0's Ex and Ez odd: PEC, −1) and z (+1):
``symmetry=(0, -1, 1)`` steps a quarter of the grid.

Grids: uniform cells of ``--dl`` µm, and ``GridSpec.auto`` at ``--steps`` cells per
wavelength in each medium (fine in the silicon, coarse in the silica, graded by
≤ 1.25). For each: cells stepped, wall time of ``ms.solve`` (setup, mode solves and
compilation included) and |S21|², with and without symmetry; the converged value is
the finest uniform grid's (symmetric), and each run's error is against it.

    python benchmarks/devices.py [--device bend|taper] [--dl 0.05 0.04 0.03 0.02] [--steps 12 16 20] [--no-full]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import metosim as ms

LAMBDA = 1.55
F0 = ms.C_0 / (LAMBDA * 1e-6)
SILICON, SILICA = ms.Medium(permittivity=3.48**2), ms.Medium(permittivity=1.444**2)
RADIUS, WIDTH, HEIGHT = 0.7, 0.5, 0.22


def bend(grid_spec: ms.GridSpec, symmetry: tuple[int, int, int]) -> ms.Simulation:
    """Input along +x at y = −R (x < 0), a quarter ring about the origin, output along +y at x = R (y > 0)."""
    angles = np.linspace(-np.pi / 2, 0.0, 64)
    outer, inner = RADIUS + WIDTH / 2, RADIUS - WIDTH / 2
    ring = [(outer * np.cos(t), outer * np.sin(t)) for t in angles] + [(inner * np.cos(t), inner * np.sin(t)) for t in angles[::-1]]
    slab = (-HEIGHT / 2, HEIGHT / 2)
    spec = ms.ModeSpec(num_modes=1, filter_pol="te")
    port = 1.6
    return ms.Simulation(
        center=(0.25, -0.25, 0.0),
        size=(2.9, 2.9, 1.6),
        grid_spec=grid_spec,
        run_time=300e-15,
        medium=SILICA,
        structures=[
            ms.Structure(geometry=ms.Box(center=(-2.0, -RADIUS, 0), size=(4.0, WIDTH, HEIGHT)), medium=SILICON),
            ms.Structure(geometry=ms.Box(center=(RADIUS, 2.0, 0), size=(WIDTH, 4.0, HEIGHT)), medium=SILICON),
            ms.Structure(geometry=ms.PolySlab(vertices=ring, slab_bounds=slab), medium=SILICON),
        ],
        sources=[ms.ModeSource(center=(-0.6, -RADIUS, 0), size=(0, port, 1.2), mode_spec=spec, source_time=ms.GaussianPulse(freq0=F0, fwidth=0.1 * F0))],
        monitors=[ms.ModeMonitor(name="out", center=(RADIUS, 0.6, 0), size=(port, 0, 1.2), freqs=[F0], mode_spec=spec)],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=10)),
        symmetry=symmetry,
    )


def taper(grid_spec: ms.GridSpec, symmetry: tuple[int, int, int]) -> ms.Simulation:
    """The strip enters along +x, widens linearly from x = −1 to x = 1 µm and leaves as a 2 µm strip."""
    narrow, wide = WIDTH / 2, 1.0
    outline = [(-4.0, -narrow), (-1.0, -narrow), (1.0, -wide), (4.0, -wide), (4.0, wide), (1.0, wide), (-1.0, narrow), (-4.0, narrow)]
    spec = ms.ModeSpec(num_modes=1, filter_pol="te")
    return ms.Simulation(
        size=(5.0, 4.0, 2.6),
        grid_spec=grid_spec,
        run_time=300e-15,
        medium=SILICA,
        structures=[ms.Structure(geometry=ms.PolySlab(vertices=outline, slab_bounds=(-HEIGHT / 2, HEIGHT / 2)), medium=SILICON)],
        sources=[ms.ModeSource(center=(-1.7, 0, 0), size=(0, 2.0, 1.6), mode_spec=spec, source_time=ms.GaussianPulse(freq0=F0, fwidth=0.1 * F0))],
        monitors=[ms.ModeMonitor(name="out", center=(1.7, 0, 0), size=(0, 3.6, 1.6), freqs=[F0], mode_spec=spec)],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=10)),
        symmetry=symmetry,
    )


#: Each device and the mirror symmetry its TE0 allows.
DEVICES = {"bend": (bend, (0, 0, 1)), "taper": (taper, (0, -1, 1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=list(DEVICES), default="bend")
    parser.add_argument("--dl", type=float, nargs="+", default=[0.05, 0.04, 0.03, 0.02])
    parser.add_argument("--steps", type=float, nargs="+", default=[12, 16, 20])
    parser.add_argument("--no-full", action="store_true", help="only the symmetric runs")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; float32, JAX backend")
    grids = [(f"uniform {dl:g} µm", ms.GridSpec.uniform(dl)) for dl in args.dl]
    grids += [(f"auto {n:g}/λ", ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=n)) for n in args.steps]
    device, mirror = DEVICES[args.device]
    rows = []
    for label, spec in grids:
        for symmetry in [mirror] + ([] if args.no_full else [(0, 0, 0)]):
            start = time.perf_counter()
            data = ms.solve(device(spec, symmetry))
            wall = time.perf_counter() - start
            s21 = float(abs(data["out"].amps.sel(direction="+", mode_index=0, f=F0)) ** 2)
            rows.append((label, symmetry, data.info["num_cells"], wall, s21))
            print(f"{label:>16}  symmetry {symmetry}: {data.info['num_cells']:>9,} cells × {data.info['time_steps']} steps, {wall:6.1f} s, |S21|² = {s21:.5f}", flush=True)
    finest = (len(args.dl) - 1) * (1 if args.no_full else 2)
    reference = rows[finest][4]
    print(f"\nconverged value: |S21|² = {reference:.5f} ({grids[len(args.dl) - 1][0]}, symmetric)")
    print("| grid | symmetry | cells stepped | wall (s) | |S21|² | error vs finest |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, symmetry, cells, wall, s21 in rows:
        print(f"| {label} | {symmetry} | {cells:,} | {wall:.1f} | {s21:.5f} | {abs(s21 - reference) / reference:.2%} |")
    for tolerance in (0.01, 0.005):
        within = [row for k, row in enumerate(rows) if k != finest and abs(row[4] - reference) <= tolerance * reference]
        for kind in ("uniform", "auto"):
            for symmetric in (True, False):
                mine = [row for row in within if row[0].startswith(kind) and any(row[1]) == symmetric]
                if mine:
                    label, symmetry, cells, wall, s21 = min(mine, key=lambda row: row[3])
                    print(f"fastest within {tolerance:.1%}, {kind}{', symmetric' if symmetric else ''}: {label} ({cells:,} cells, {wall:.1f} s)")


if __name__ == "__main__":
    main()
