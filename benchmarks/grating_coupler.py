"""A 2D grating coupler, MetoSim against Meep on the same structure (issue 25 item 2).

A 220 nm silicon slab (ε 12.1) in oxide (ε 2.085), 20 periods of 0.63 µm etched 70 nm
deep with a fill factor of 0.5, in the xy plane (y up). The slab's TE mode (E along z,
out of the plane) is launched at the left, towards +x; the fields and the flux on a line
1 µm above the slab give the coupling efficiency into a fibre mode (a Gaussian beam of
waist 5.2 µm, SMF-28's 10.4 µm mode field diameter, in the oxide), by reciprocity also
the efficiency from the fibre into the slab:

    CE(λ) = ms.fibre_fraction(line fields, beam at angle θ and centre x0) × flux up / mode power

The fibre's angle and centre are the ones that maximise Meep's CE at 1.55 µm at the
finest resolution; both engines' fields are then overlapped with that same beam. Meep
normalises its flux by a reference run (the unetched slab), MetoSim by its mode
source's power. The numbers Meep gives here are in RESULTS and the notebook
``notebooks/grating_coupler.ipynb``.

    python benchmarks/grating_coupler.py [--resolutions 40 60] [--meep-python /usr/bin/python3]
    /usr/bin/python3 benchmarks/grating_coupler.py --meep 40 out.npz    # one Meep run pair

Meep runs in Debian's Python: `apt-get install python3-meep python3-matplotlib` (Meep
imports matplotlib).

Only the standard library and NumPy are imported at the top: Meep's interpreter reads it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import numpy as np

EPS_SI, EPS_OXIDE = 12.1, 2.085
THICKNESS, ETCH, PERIOD, FILL, PERIODS = 0.22, 0.07, 0.63, 0.5, 20
X_RANGE, Y_RANGE = (-4.0, 16.0), (-3.0, 3.0)  # µm, PML (1 µm) included
PML = 1.0
SOURCE_X, LINE_Y, LINE_X = -2.0, 1.0, (-2.0, 15.0)
WAIST, INDEX = 5.2, EPS_OXIDE**0.5
WAVELENGTHS = np.linspace(1.50, 1.60, 11)
FWIDTH = 0.25  # of f0 (Meep's convention)
RUN_TIME_UM = 300.0  # c·t bound, µm; both stop on the fields' decay first


def trenches() -> list[tuple[float, float]]:
    """(x start, x end) of each etched trench, µm."""
    return [(i * PERIOD + FILL * PERIOD, (i + 1) * PERIOD) for i in range(PERIODS)]


def meep_run(resolution: float, out: str) -> None:
    """The reference (unetched slab) and grating runs in Meep; saves the line's Ez, Hx,
    the flux up through it over the reference run's slab flux, and the frequencies."""
    import meep as mp

    mp.verbosity(0)
    cx, cy = sum(X_RANGE) / 2, sum(Y_RANGE) / 2
    at = lambda x, y: mp.Vector3(x - cx, y - cy)  # noqa: E731 (Meep's cell is centred on 0)
    size = mp.Vector3(X_RANGE[1] - X_RANGE[0], Y_RANGE[1] - Y_RANGE[0])
    f = 1 / WAVELENGTHS[::-1]  # ascending
    f0, df = (f[0] + f[-1]) / 2, f[-1] - f[0]
    si, oxide = mp.Medium(epsilon=EPS_SI), mp.Medium(epsilon=EPS_OXIDE)
    slab = mp.Block(mp.Vector3(mp.inf, THICKNESS, mp.inf), center=at(0, THICKNESS / 2), material=si)
    etched = [mp.Block(mp.Vector3(b - a, ETCH, mp.inf), center=at((a + b) / 2, THICKNESS - ETCH / 2), material=oxide) for a, b in trenches()]
    source = mp.EigenModeSource(mp.GaussianSource(f0, fwidth=FWIDTH * f0), center=at(SOURCE_X, THICKNESS / 2), size=mp.Vector3(0, 3.0), eig_band=1, eig_parity=mp.ODD_Z, eig_match_freq=True)
    results = {}
    for name, geometry in (("reference", [slab]), ("grating", [slab, *etched])):
        sim = mp.Simulation(cell_size=size, resolution=resolution, geometry=geometry, default_material=oxide, sources=[source], boundary_layers=[mp.PML(PML)])
        line = mp.Volume(center=at(sum(LINE_X) / 2, LINE_Y), size=mp.Vector3(LINE_X[1] - LINE_X[0], 0))
        if name == "reference":
            flux = sim.add_flux(f0, df, len(f), mp.FluxRegion(center=at(SOURCE_X + 1.0, 0.1), size=mp.Vector3(0, 3.0)))
        else:
            flux = sim.add_flux(f0, df, len(f), mp.FluxRegion(center=line.center, size=line.size))
            dft = sim.add_dft_fields([mp.Ez, mp.Hx], f0, df, len(f), center=line.center, size=line.size)
        sim.run(until_after_sources=mp.stop_when_fields_decayed(50, mp.Ez, at(LINE_X[1] - 1, LINE_Y), 1e-6))
        results[name] = np.array(mp.get_fluxes(flux))
        if name == "grating":
            x = np.array(sim.get_array_metadata(dft_cell=dft)[0]) + cx
            results["ez"] = np.array([sim.get_dft_array(dft, mp.Ez, i) for i in range(len(f))])
            results["hx"] = np.array([sim.get_dft_array(dft, mp.Hx, i) for i in range(len(f))])
            results["x"] = x
    # The same sweep over wavelength as MetoSim's: f was ascending, wavelength ascending.
    np.savez(out, x=results["x"], ez=results["ez"][::-1], hx=results["hx"][::-1], flux=(results["grating"] / results["reference"])[::-1], wavelength=WAVELENGTHS)


def metosim_simulation(resolution: float):  # -> ms.Simulation
    """The same structure, source and line in MetoSim at ``resolution`` cells/µm."""
    import metosim as ms

    f = ms.C_0 / (WAVELENGTHS * 1e-6)
    f0 = float(np.mean([f[0], f[-1]]))
    layers = int(round(PML * resolution))
    pml = ms.Boundary(minus=ms.PML(num_layers=layers), plus=ms.PML(num_layers=layers))
    line = dict(center=(sum(LINE_X) / 2, LINE_Y, 0), size=(LINE_X[1] - LINE_X[0], 0, 0))
    return ms.Simulation(
        center=(sum(X_RANGE) / 2, sum(Y_RANGE) / 2, 0),
        size=(X_RANGE[1] - X_RANGE[0], Y_RANGE[1] - Y_RANGE[0], 0),
        grid_spec=ms.GridSpec.uniform(1 / resolution),
        run_time=RUN_TIME_UM * 1e-6 / ms.C_0,
        medium=ms.Medium(permittivity=EPS_OXIDE),
        structures=[ms.Structure(geometry=ms.Box(center=(0, THICKNESS / 2, 0), size=(ms.inf, THICKNESS, ms.inf)), medium=ms.Medium(permittivity=EPS_SI))]
        + [ms.Structure(geometry=ms.Box(center=((a + b) / 2, THICKNESS - ETCH / 2, 0), size=(b - a, ETCH, ms.inf)), medium=ms.Medium(permittivity=EPS_OXIDE)) for a, b in trenches()],
        sources=[ms.ModeSource(center=(SOURCE_X, THICKNESS / 2, 0), size=(0, 3.0, ms.inf), source_time=ms.GaussianPulse(freq0=f0, fwidth=FWIDTH * f0 / (2 * np.pi)), mode_spec=ms.ModeSpec(filter_pol="tm"))],
        monitors=[ms.FieldMonitor(name="line", fields=("Ez", "Hx"), freqs=list(f), **line), ms.FluxMonitor(name="up", freqs=list(f), **line)],
        boundary_spec=ms.BoundarySpec(x=pml, y=pml),
        shutoff=1e-6,
    )


def metosim_line(data) -> dict:  # data: ms.SimulationData
    """x, Ez, Hx (wavelength, x) and the flux up over the mode power, from a MetoSim run."""
    line = data["line"].isel(y=0, z=0)
    return {"x": line.x.values, "ez": line.Ez.values.T, "hx": line.Hx.values.T, "flux": data["up"].values, "wavelength": WAVELENGTHS}


def efficiency(run: dict, angle: float, center: float) -> np.ndarray:
    """CE(λ) of a run (Meep's npz or :func:`metosim_line`) into the beam at ``angle``, ``center``."""
    import metosim as ms

    return np.array([ms.fibre_fraction(run["x"], run["ez"][i], run["hx"][i], lam, WAIST, angle, center, INDEX) * run["flux"][i] for i, lam in enumerate(run["wavelength"])])


def best_fibre(run: dict) -> tuple[float, float]:
    """The fibre angle (degrees) and centre (µm) that maximise CE at the middle wavelength."""
    mid = len(WAVELENGTHS) // 2
    import metosim as ms

    grid = [(a, c) for a in np.arange(0.0, 25.01, 0.5) for c in np.arange(2.0, 12.01, 0.25)]
    scores = [ms.fibre_fraction(run["x"], run["ez"][mid], run["hx"][mid], WAVELENGTHS[mid], WAIST, a, c, INDEX) * run["flux"][mid] for a, c in grid]
    return grid[int(np.argmax(scores))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meep", nargs=2, metavar=("RESOLUTION", "OUT"), help="one Meep run pair (under Meep's interpreter)")
    parser.add_argument("--resolutions", type=float, nargs="+", default=[40, 60])
    parser.add_argument("--meep-python", default="/usr/bin/python3")
    args = parser.parse_args()
    if args.meep:
        return meep_run(float(args.meep[0]), args.meep[1])

    import tempfile

    import metosim as ms

    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for res in args.resolutions:
            start = time.perf_counter()
            subprocess.run([args.meep_python, __file__, "--meep", str(res), f"{tmp}/meep{res:g}.npz"], check=True)
            runs[f"meep {res:g}"] = {**dict(np.load(f"{tmp}/meep{res:g}.npz")), "seconds": time.perf_counter() - start}
            start = time.perf_counter()
            data = ms.solve(metosim_simulation(res))
            runs[f"metosim {res:g}"] = {**metosim_line(data), "seconds": time.perf_counter() - start}
    angle, center = best_fibre(runs[f"meep {max(args.resolutions):g}"])
    print(f"fibre: {angle:.1f}° from the normal, centred at x = {center:.2f} µm (Meep's best at 1.55 µm, finest run)")
    table = {}
    for name, run in runs.items():
        ce = efficiency(run, angle, center)
        table[name] = [round(float(v), 4) for v in ce]
        print(f"{name:12s} ({run['seconds']:5.1f} s, two runs for Meep): CE " + " ".join(f"{v:.4f}" for v in ce) + f"  peak {ce.max():.4f} at {WAVELENGTHS[int(np.argmax(ce))]:.2f} µm")
    print(json.dumps({"wavelength_um": [round(float(w), 3) for w in WAVELENGTHS], "fibre_angle_deg": angle, "fibre_center_um": center, "ce": table}))


if __name__ == "__main__":
    main()
