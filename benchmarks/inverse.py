"""Inverse design: the gradient's cost against the forward run's.

Two problems (issue: inverse design), float32, mode-source → design region → mode
monitor, objective |a₊|² of the fundamental mode:

- ``2d``: 400 × 400 cells, a 90° silicon bend with a 6.9 µm design square
  (138 × 138 pixels), ~4800 steps;
- ``3d``: 100³ cells (dl = 0.04 µm), a silicon strip through a 2 × 2 × 0.22 µm
  design box (50 × 50 × 1 pixels), ~1000 steps.

For each: time of the forward run through the differentiable path and of
value-and-gradient (best of ``--repeat`` after a compiling call), the ratio, and the
memory of both from XLA's buffer assignment of the compiled functions (arguments +
temporaries + outputs; on CPU and GPU) and, on a GPU, the allocator's measured peak
(setup arrays included); also the plain engine's ``ms.solve`` time loop of the same
design. ``bend``: iterations per minute
of the notebook's optimisation (``waveguide_bend()`` defaults). ``headline``: the
tutorial notebook's full optimisation (``TUTORIAL_OPTIMIZER``, 50 steps; the test
suite runs the notebook in its 5-step quick mode), then its binarised design solved
on its own: the worst transmission and the binarisation it prints, checked against
the notebook's claim (both ≥ 95%, the solve within 1% of the optimiser's objective);
exits 1 when the claim fails.

    python benchmarks/inverse.py [2d] [3d] [bend] [headline] [--repeat 2] [--kernels]

``--kernels``: on a GPU, also trace one gradient with ``jax.profiler`` and print the
device time of its kernels summed by name (what the transposed step costs, kernel by
kernel; on a CPU there are no device kernels to list).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import metosim as ms
from metosim.inverse.examples import SILICA, SILICON, TUTORIAL_OPTIMIZER, waveguide_bend
from timing import best_time


def problem_2d() -> ms.InverseProblem:
    return waveguide_bend(region=6.9, steps_per_wvl=20, pixel_size=0.05, filter_radius=0.1, wavelengths=(1.55,))


def problem_3d(cells: int = 100, dl: float = 0.04) -> ms.InverseProblem:
    size = cells * dl
    f0 = ms.C_0 / 1.55e-6
    te = ms.ModeSpec(filter_pol="te")
    port = (0, 1.6, 1.2)
    sim = ms.Simulation(
        size=(size, size, size),
        grid_spec=ms.GridSpec.uniform(dl),
        run_time=80e-15,
        medium=ms.Medium(permittivity=SILICA),
        structures=[ms.Structure(name="strip", geometry=ms.Box(size=(ms.inf, 0.5, 0.22)), medium=ms.Medium(permittivity=SILICON))],
        sources=[ms.ModeSource(center=(-size / 2 + 0.6, 0, 0), size=port, mode_spec=te, source_time=ms.GaussianPulse(freq0=f0, fwidth=f0 / 8))],
        monitors=[ms.ModeMonitor(name="out", center=(size / 2 - 0.6, 0, 0), size=port, freqs=[f0], mode_spec=te)],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=10)),
        shutoff=0,
    )
    design = ms.DesignRegion(geometry=ms.Box(size=(2.0, 2.0, 0.22)), eps_min=SILICA, eps_max=SILICON, pixel_size=0.04, filter_radius=0.08)
    objective = ms.inverse.Objective(terms=(ms.inverse.ModeTerm(monitor="out"),))
    return ms.InverseProblem(simulation=sim, design=design, objective=objective)


def kernel_times(run, top: int = 16) -> None:
    """Trace ``run()`` with ``jax.profiler`` and print its GPU kernels' summed device
    time by name (largest first) and the launch count."""
    import collections
    import glob
    import tempfile

    import jax
    from jax.profiler import ProfileData

    with tempfile.TemporaryDirectory() as folder:
        jax.profiler.start_trace(folder)
        jax.block_until_ready(run())
        jax.profiler.stop_trace()
        data = ProfileData.from_file(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[-1])
    total = collections.defaultdict(lambda: [0.0, 0])
    for plane in data.planes:
        if plane.name.startswith("/device:GPU"):
            for line in plane.lines:
                if line.name.startswith("Stream"):
                    for event in line.events:
                        total[event.name][0] += event.duration_ns
                        total[event.name][1] += 1
    if not total:
        print("# no device kernels traced (not a GPU)", flush=True)
        return
    print(f"# gradient kernels: {sum(t for t, _ in total.values()) / 1e6:.1f} ms device time, {sum(n for _, n in total.values())} launches", flush=True)
    for name, (ns, count) in sorted(total.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"#   {ns / 1e6:8.2f} ms {count:7d} × {ns / count / 1e3:6.2f} µs  {name[:100]}", flush=True)


def memory_bytes(compiled) -> int:
    """Peak bytes of a compiled computation from XLA's buffer assignment:
    arguments + temporaries + outputs."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes)


def ratio_case(name: str, problem: ms.InverseProblem, repeat: int, kernels: bool = False) -> dict:
    import jax

    evaluator = ms.inverse.Evaluator(problem)
    solve = evaluator.solve
    rho = np.random.default_rng(0).uniform(0.3, 0.7, problem.shape)
    beta = 8.0
    args = (rho, beta, solve.arrays)
    forward_mem = memory_bytes(evaluator._loss.lower(*args).compile())
    gradient_mem = memory_bytes(evaluator._value_and_grad.lower(*args).compile())
    device = jax.devices()[0]
    evaluator.loss(rho, beta)  # compile
    forward = best_time(lambda: evaluator.loss(rho, beta), repeat)
    # On a GPU the allocator's peak is the measured figure (it only grows: read it
    # after the forward runs, then after the gradients).
    forward_peak = (device.memory_stats() or {}).get("peak_bytes_in_use")
    evaluator.value_and_grad(rho, beta)  # compile
    gradient = best_time(lambda: evaluator.value_and_grad(rho, beta), repeat)
    gradient_peak = (device.memory_stats() or {}).get("peak_bytes_in_use")
    plain = ms.solve(problem.simulation_with(problem.permittivity(rho, beta)))
    cells = problem.simulation.grid.total_cells
    row = {
        "case": name,
        "device": str(jax.devices()[0]),
        "cells": cells,
        "steps": solve.num_steps,
        "segment_steps": solve.segment_steps,
        "forward_s": round(forward, 3),
        "gradient_s": round(gradient, 3),
        "time_ratio": round(gradient / forward, 2),
        "forward_MB": round(forward_mem / 1e6, 1),
        "gradient_MB": round(gradient_mem / 1e6, 1),
        "memory_ratio": round(gradient_mem / forward_mem, 2),
        "measured_peak_forward_MB": round(forward_peak / 1e6, 1) if forward_peak else None,
        "measured_peak_gradient_MB": round(gradient_peak / 1e6, 1) if gradient_peak else None,
        "measured_peak_ratio": round(gradient_peak / forward_peak, 2) if forward_peak else None,
        "forward_Mcells_s": round(cells * solve.num_steps / forward / 1e6, 1),
        "plain_solve_s": round(plain.info["solve_seconds"], 3),
    }
    print(json.dumps(row), flush=True)
    if kernels:
        kernel_times(lambda: evaluator.value_and_grad(rho, beta))
    return row


def bend_case(iterations: int) -> dict:
    import jax

    problem = waveguide_bend(optimizer=ms.inverse.Optimizer(steps=iterations))
    start = time.perf_counter()
    result = ms.inverse.optimize(problem, show=False)
    total = time.perf_counter() - start
    steady = [r["seconds"] for r in result.history[1:]]
    row = {
        "case": "bend",
        "device": str(jax.devices()[0]),
        "cells": problem.simulation.grid.total_cells,
        "iterations": iterations,
        "first_iteration_s": round(result.history[0]["seconds"], 2),
        "iteration_s": round(float(np.median(steady)), 3),
        "iterations_per_minute": round(60 / float(np.median(steady)), 1),
        "total_s_with_setup": round(total, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def headline_case() -> bool:
    """The tutorial bend end to end; returns whether the notebook's claim holds."""
    start = time.perf_counter()
    result = ms.inverse.optimize(waveguide_bend(optimizer=TUTORIAL_OPTIMIZER), show=False)
    optimised = time.perf_counter() - start
    data = ms.solve(result.simulation(binarise=True))
    worst = float(np.min(np.abs(data["out"].amps.sel(direction="+", mode_index=0).values) ** 2))
    holds = worst >= 0.95 and result.binarisation >= 0.95 and abs(worst - result.final_objective) <= 0.01 * result.final_objective
    row = {
        "case": "headline",
        "iterations": len(result.history),
        "final_objective": round(result.final_objective, 4),
        "binarised_worst_transmission": round(worst, 4),
        "binarisation": round(result.binarisation, 4),
        "optimisation_s": round(optimised, 1),
        "claim_holds": holds,
    }
    print(json.dumps(row), flush=True)
    return holds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", default=["2d", "3d", "bend", "headline"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--bend-iterations", type=int, default=8)
    parser.add_argument("--cells-3d", type=int, default=100)
    parser.add_argument("--kernels", action="store_true", help="on a GPU, list the gradient's kernels (jax.profiler)")
    args = parser.parse_args()
    import jax

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, {jax.devices()[0].device_kind}", flush=True)
    for case in args.cases:
        if case == "2d":
            ratio_case("2d 400x400", problem_2d(), args.repeat, args.kernels)
        elif case == "3d":
            ratio_case(f"3d {args.cells_3d}^3", problem_3d(args.cells_3d), args.repeat, args.kernels)
        elif case == "bend":
            bend_case(args.bend_iterations)
        elif case == "headline" and not headline_case():
            raise SystemExit(1)


if __name__ == "__main__":
    main()
