"""Time to accuracy against Meep (issue 22 item 6): the wall time each engine needs to
come within ``--tol`` (0.005) of Meep's converged mode-decomposition answer, first
call included.

The cases (``meep_cases.py``): a 2D directional coupler and a 2D linear taper, silicon
(ε 12) in glass (ε 2.085) at 1.55 µm, each in both polarisations. Meep's converged
answer is its run at ``--reference`` pixels/µm, or one recorded in ``--reference-file``
(``meep_references.json``: Meep at 160/µm). Each engine then runs a ladder of
resolutions, every run a fresh process (interpreter start, imports, MetoSim's XLA
compilation with an empty cache, Meep's and MetoSim's mode solves, time stepping), and
its time to accuracy is the wall time of its coarsest run from which every finer run of
the ladder stays within the tolerance. A second MetoSim column, "in a notebook", times
each solve alone in one process that has imported MetoSim and JAX already (a notebook's
kernel after `import metosim`, which preloads JAX there): every resolution is a new grid
shape, so each solve still compiles its kernel. MetoSim runs in float32 (its default), Meep in
float64 (its build), both with subpixel smoothing, a 1 µm PML inside the domain, the
same pulse, and stop when the fields have decayed.

    python benchmarks/time_to_accuracy.py [--meep-python /usr/bin/python3] [--cases coupler taper] [--pols te tm]
    python benchmarks/time_to_accuracy.py --one metosim coupler te 20     # one run: a JSON line
    python benchmarks/time_to_accuracy.py --warm coupler te 10 14 20      # solves in one process: JSON lines

Meep runs in Debian's Python: `apt-get install python3-meep python3-matplotlib` (Meep
imports matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from meep_cases import CASES, EPS_CLAD, EPS_CORE, FWIDTH, PML, WAVELENGTH  # noqa: E402

LADDER = (10, 14, 20, 28, 40, 56)


def metosim_simulation(case: str, pol: str, resolution: float):  # -> ms.Simulation
    """The case of ``meep_cases`` as a MetoSim simulation at ``resolution`` cells/µm."""
    import metosim as ms

    spec = CASES[case]()
    f0 = ms.C_0 / (WAVELENGTH * 1e-6)
    pulse = ms.GaussianPulse(freq0=f0, fwidth=FWIDTH * f0 / (2 * math.pi))  # Meep's fwidth is 2π × ours
    mode = ms.ModeSpec(num_modes=1, filter_pol=pol)
    plane = (0, spec["plane"], ms.inf)
    layers = math.ceil(PML * resolution)
    return ms.Simulation(
        size=(*spec["size"], 0),
        grid_spec=ms.GridSpec.uniform(1 / resolution),
        run_time=spec["run_time_um"] * 1e-6 / ms.C_0,
        medium=ms.Medium(permittivity=EPS_CLAD),
        structures=[ms.Structure(geometry=ms.PolySlab(vertices=poly, slab_bounds=(-1, 1)), medium=ms.Medium(permittivity=EPS_CORE)) for poly in spec["polygons"]],
        sources=[ms.ModeSource(center=(*spec["source"], 0), size=plane, source_time=pulse, mode_spec=mode)],
        monitors=[ms.ModeMonitor(name=k, center=(*spec[k], 0), size=plane, freqs=[f0], mode_spec=mode) for k in ("input", "output")],
        boundary_spec=ms.BoundarySpec(x=ms.Boundary(minus=ms.PML(num_layers=layers), plus=ms.PML(num_layers=layers)), y=ms.Boundary(minus=ms.PML(num_layers=layers), plus=ms.PML(num_layers=layers))),
        shutoff=1e-6,
    )


def metosim_run(case: str, pol: str, resolution: float) -> float:
    import metosim as ms

    data = ms.solve(metosim_simulation(case, pol, resolution))
    a_in, a_out = (complex(data[k].amps.sel(direction="+", mode_index=0).values[0]) for k in ("input", "output"))
    return abs(a_out) ** 2 / abs(a_in) ** 2


def run_warm(case: str, pol: str, resolutions: list[float], cache: str) -> list[dict]:
    """The ladder's MetoSim solves in one process with JAX imported first; each solve's
    own wall time (its mode solves and compilation included)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--warm", case, pol, *map(str, resolutions)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, "JAX_COMPILATION_CACHE_DIR": cache})
    runs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return [{**run, "wall": run["seconds"], "resolution": r} for run, r in zip(runs, resolutions)]


def run_fresh(engine: str, case: str, pol: str, resolution: float, meep_python: str, cache: str) -> dict:
    """One run in a fresh process: its answer, and the process's wall time."""
    if engine == "meep":
        command = [meep_python, str(HERE / "meep_cases.py"), case, pol, str(resolution)]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--one", "metosim", case, pol, str(resolution)]
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, "JAX_COMPILATION_CACHE_DIR": cache})
    wall = time.perf_counter() - start
    line = next(line for line in reversed(out.stdout.splitlines()) if line.startswith("{"))
    return {**json.loads(line), "wall": wall, "resolution": resolution}


def time_to_accuracy(runs: list[dict], reference: float, tol: float) -> dict | None:
    """The coarsest run from which every finer run stays within ``tol`` of ``reference``."""
    ok = None
    for run in sorted(runs, key=lambda r: -r["resolution"]):
        if abs(run["value"] - reference) > tol:
            break
        ok = run
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=4, metavar=("ENGINE", "CASE", "POL", "RES"), help="one MetoSim run in this process")
    parser.add_argument("--warm", nargs="+", metavar="CASE POL RES", help="MetoSim solves in one warm process")
    parser.add_argument("--meep-python", default="/usr/bin/python3", help="an interpreter with Meep (python3-meep)")
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--pols", nargs="+", default=["te", "tm"])
    parser.add_argument("--ladder", type=float, nargs="+", default=list(LADDER))
    parser.add_argument("--reference", type=float, default=80, help="Meep's resolution for the converged answer")
    parser.add_argument("--reference-file", help="Meep's answers recorded as JSON ({\"case pol\": {\"value\", \"resolution\", \"seconds\"}}, e.g. meep_references.json): no reference run")
    parser.add_argument("--tol", type=float, default=0.005)
    parser.add_argument("--out", help="write every run as JSON here")
    args = parser.parse_args()
    if args.one:
        start = time.perf_counter()
        value = metosim_run(args.one[1], args.one[2], float(args.one[3]))
        print(json.dumps({"value": value, "seconds": time.perf_counter() - start}))
        return
    if args.warm:
        import jax.numpy as jnp

        import metosim  # noqa: F401 (imported in an earlier cell)

        jnp.zeros(1).block_until_ready()  # JAX imported and its backend up, as in a notebook
        for res in args.warm[2:]:
            start = time.perf_counter()
            value = metosim_run(args.warm[0], args.warm[1], float(res))
            print(json.dumps({"value": value, "seconds": time.perf_counter() - start}), flush=True)
        return

    from engine import machine  # noqa: E402 (imports JAX: not for --one runs)

    print(f"machine: {machine()}")
    report = []
    for case in args.cases:
        for pol in args.pols:
            with tempfile.TemporaryDirectory() as cache:  # every MetoSim shape compiles cold
                if args.reference_file:
                    recorded = json.loads(Path(args.reference_file).read_text())[f"{case} {pol}"]
                    reference = {**recorded, "wall": recorded["seconds"]}
                else:
                    reference = run_fresh("meep", case, pol, args.reference, args.meep_python, cache)
                runs = {engine: [run_fresh(engine, case, pol, r, args.meep_python, cache) for r in args.ladder] for engine in ("meep", "metosim")}
            with tempfile.TemporaryDirectory() as cache:
                runs["metosim (in a notebook)"] = run_warm(case, pol, args.ladder, cache)
            row = {"case": case, "pol": pol, "reference": reference, "runs": runs}
            best = {engine: time_to_accuracy(runs[engine], reference["value"], args.tol) for engine in runs}
            row["best"] = best
            report.append(row)
            for engine in runs:
                ladder = ", ".join(f"{r['resolution']:g}: {r['value']:.4f} ({r['wall']:.1f} s)" for r in runs[engine])
                print(f"{case} {pol} {engine:23s} {ladder}")
            hit = "; ".join(f"{e} {b['wall']:.1f} s at {b['resolution']:g}/µm" if b else f"{e} not within {args.tol} on the ladder" for e, b in best.items())
            ratio = "".join(f"; Meep/{e} {best['meep']['wall'] / best[e]['wall']:.2f}" for e in best if e != "meep" and best[e] and best["meep"])
            print(f"{case} {pol}: Meep at {reference['resolution']:g}/µm {reference['value']:.4f} ({reference['wall']:.0f} s); time to ±{args.tol}: {hit}{ratio}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
