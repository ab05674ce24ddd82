"""The photonics-opt-testbed's waveguide mode converter, with ``ms.inverse``.

The problem (``metosim.inverse.examples.mode_converter``): a 1.6 × 1.6 µm design square
between two 0.4 µm silicon guides in oxide, Ez, TE0 in → TE1 out, six wavelengths
1.265–1.295 µm. The testbed scores a design by its worst-case reflection into the input's
fundamental mode and worst-case transmission into the output's second mode (dB), and its
minimum length scale; its best published design: −41.95 dB / −0.04 dB at 58.6 nm
(``TESTBED_BEST``).

- ``optimize``: run the optimisation (``--steps``, ``--dl`` grid, ``--pixel`` design
  pixels, ``--filter`` radius, ``--robust`` δ, ``--length-penalty`` weight,
  ``--straight-through``, ``--reflection-weight``, ``--db``, ``--minimax``, ``--beta``, ``--beta-every``,
  ``--start`` design), threshold the final design, write it in the testbed's CSV
  format (rows along x, 0/1) and ``evaluate`` it. With ``--score-every N`` the
  thresholded design is also scored by a plain solve every N iterations, and the best
  by the objective's own worst case (the larger of R × ``--reflection-weight`` and
  1 − T, with ``--minimax``) among those whose measured length scales (alone and in
  place) reach ``--min-length`` is the one written: Adam at large β wanders,
  and the optimiser's own objective is of the projected, not the thresholded, design.
- ``evaluate CSV``: a plain solve (energy shutoff, no fixed step count) of a design in
  the testbed's format on ``--dl`` (the testbed's 10 nm, and half of it with ``--fine``),
  then its scores and measured minimum solid width and void spacing beside the best
  published ones.

    python benchmarks/testbed.py optimize --steps 100 --out converter.csv
    python benchmarks/testbed.py evaluate converter.csv --fine
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import metosim as ms
from metosim.inverse.examples import TESTBED_BEST, mode_converter, mode_converter_scores


def scores(design: np.ndarray, dl: float) -> dict[str, float]:
    """``mode_converter_scores`` with its wall time."""
    start = time.perf_counter()
    return {**mode_converter_scores(design, dl), "seconds": time.perf_counter() - start}


def report(name: str, design: np.ndarray, dls: list[float]) -> None:
    best = TESTBED_BEST
    print(f"testbed best: reflection {best['reflection_db']:.2f} dB, transmission {best['transmission_db']:.2f} dB, length scale {best['length_scale'] * 1000:.1f} nm")
    for dl in dls:
        s = scores(design, dl)
        print(
            f"{name} on {dl * 1000:.0f} nm cells: reflection {s['reflection_db']:.2f} dB, transmission {s['transmission_db']:.2f} dB, "
            f"min solid {s['solid_um'] * 1000:.0f} / void {s['void_um'] * 1000:.0f} nm alone, {s['solid_in_place_um'] * 1000:.0f} / {s['void_in_place_um'] * 1000:.0f} nm in place ({s['seconds']:.1f} s)",
            flush=True,
        )


def on_pixels(design: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A design of n × n pixels on ``shape`` (k·n × k·n: each pixel repeated k times
    along each axis), so that a coarse design can start a finer optimisation."""
    factor = shape[0] // design.shape[0]
    if factor * design.shape[0] != shape[0] or shape[0] != shape[1]:
        raise SystemExit(f"a {design.shape} design does not divide the {shape[:2]} pixels")
    return np.kron(design, np.ones((factor, factor))).reshape(shape)


def worst_case(s: dict[str, float], reflection_weight: float = 1.0) -> float:
    """A score's worst case as the minimax objective weighs it: the larger of
    ``reflection_weight`` × R and 1 − T (linear)."""
    return max(reflection_weight * 10 ** (s["reflection_db"] / 10), 1 - 10 ** (s["transmission_db"] / 10))


def optimize(args: argparse.Namespace) -> None:
    problem = mode_converter(dl=args.dl, pixel_size=args.pixel, filter_radius=args.filter, robust=args.robust, length_penalty=args.length_penalty, reflection_weight=args.reflection_weight, db=args.db, minimax=args.minimax)
    problem = problem.model_copy(
        update={
            "optimizer": problem.optimizer.model_copy(update={"steps": args.steps, "beta_every": args.beta_every, "beta": args.beta}),
            "design": problem.design.model_copy(update={"straight_through": args.straight_through, "surround": "structures" if args.surround else "edge"}),
        }
    )
    rho0 = on_pixels(np.loadtxt(args.start, delimiter=","), problem.shape) if args.start else None
    print(f"design pixels {problem.shape[:2]}, {problem.simulation.estimate()['cells']} cells, {problem.simulation.grid.num_time_steps} steps, {args.steps} iterations")
    best: dict[str, object] = {}

    def score(record: dict[str, float], rho: np.ndarray) -> None:
        if not args.score_every or (record["iteration"] + 1) % args.score_every:
            return
        design = (problem.project(rho, math.inf)[:, :, 0] > 0.5).astype(float)
        s = scores(design, args.dl)
        fits = min(s["solid_um"], s["void_um"], s["solid_in_place_um"], s["void_in_place_um"]) >= args.min_length - 1e-9
        if args.scored:
            Path(args.scored).mkdir(parents=True, exist_ok=True)
            np.savetxt(Path(args.scored) / f"iteration_{record['iteration'] + 1:04d}.csv", design, delimiter=",", fmt="%.0f")
        print(f"  iteration {record['iteration'] + 1} thresholded: R {s['reflection_db']:.2f} dB, T {s['transmission_db']:.3f} dB, {s['solid_um'] * 1000:.0f} / {s['void_um'] * 1000:.0f} nm alone, {s['solid_in_place_um'] * 1000:.0f} / {s['void_in_place_um'] * 1000:.0f} nm in place", flush=True)
        worst = worst_case(s, args.reflection_weight if args.minimax else 1.0)
        if fits and worst < best.get("worst", math.inf):
            best.update(worst=worst, design=design, iteration=record["iteration"] + 1)

    start = time.perf_counter()
    result = ms.inverse.optimize(problem, rho0=rho0, callback=score)
    print(f"optimised in {time.perf_counter() - start:.0f} s; objective {result.objective[-1]:.4f}, binarisation {result.binarisation:.3f}")
    design = (result.rho_hat(math.inf)[:, :, 0] > 0.5).astype(float)
    if best:
        print(f"the best thresholded design scored on the way: iteration {best['iteration']}")
        design = best["design"]
    np.savetxt(args.out, design, delimiter=",", fmt="%.2f")
    report(args.out, design, [args.dl, args.dl / 2] if args.fine else [args.dl])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("optimize")
    run.add_argument("--steps", type=int, default=100)
    run.add_argument("--dl", type=float, default=0.01)
    run.add_argument("--pixel", type=float, default=0.01)
    run.add_argument("--filter", type=float, default=0.06)
    run.add_argument("--robust", type=float, default=0.0)
    run.add_argument("--length-penalty", type=float, default=0.0, help="weight of the geometric length-scale penalty (features below about --filter)")
    run.add_argument("--straight-through", action="store_true", help="the objective of the thresholded design, with the projection's gradient")
    run.add_argument("--surround", action="store_true", help="the filter sees the structures around the design region, not its edge pixels repeated")
    run.add_argument("--score-every", type=int, default=0, help="score the thresholded design by a plain solve every N iterations and keep the best")
    run.add_argument("--scored", help="with --score-every: a folder to write each scored design into (testbed CSV)")
    run.add_argument("--min-length", type=float, default=0.0, help="with --score-every: keep only designs whose measured solid and void length scales reach this (µm)")
    run.add_argument("--reflection-weight", type=float, default=10.0, help="objective: TE1 out − this × TE0 reflected, worst over λ")
    run.add_argument("--db", action="store_true", help="both objective terms in dB (reflection floored at −50 dB)")
    run.add_argument("--minimax", action="store_true", help="minimise the largest of reflection-weight × R and 1 − T over λ (the testbed's Meep script; its weight is 1)")
    run.add_argument("--beta-every", type=int, default=15, help="iterations per doubling of the projection's β (up to 256)")
    run.add_argument("--beta", type=float, default=4.0, help="the projection's first β")
    run.add_argument("--start", help="a design in the testbed's CSV format to start from (else ρ = 0.5)")
    run.add_argument("--out", default="converter.csv")
    run.add_argument("--fine", action="store_true", help="also evaluate on cells of half the step")
    check = sub.add_parser("evaluate")
    check.add_argument("designs", nargs="+")
    check.add_argument("--dl", type=float, default=0.01)
    check.add_argument("--fine", action="store_true")
    args = parser.parse_args()
    if args.command == "optimize":
        optimize(args)
    else:
        for path in args.designs:
            report(path, np.loadtxt(path, delimiter=","), [args.dl, args.dl / 2] if args.fine else [args.dl])


if __name__ == "__main__":
    main()
