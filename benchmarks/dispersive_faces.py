"""Faces of dispersive media on the grid: how far they converge, against constant media
and analytic results.

1. The n_eff of a 0.3 µm silicon slab in silica (the material library's Lorentz media)
   as the engine's own grid sees it (the mode its sources launch: engine media, Δt),
   worst over 8 placements of the faces within a cell, against the slab dispersion
   relation with ε(1.55 µm), next to the same grid with constant media of that ε.
2. A lossless Lorentz slab's Fabry–Perot transmission (1D, E along the faces) against
   Airy with n(f), at faces 0, ¼ and ½ of a cell off a node.

    python benchmarks/dispersive_faces.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

import metosim as ms
from metosim.kernels.mesh import mesh_media
from metosim.kernels.modes import simulation_modes
from metosim.kernels.units import TIME_UNIT

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_modes import slab_neff  # noqa: E402
from tests.test_physics import BAND, LORENTZ, slab_line  # noqa: E402

LAMBDA = 1.55
F0 = ms.C_0 / (LAMBDA * 1e-6)
SI, SIO2 = ms.material_library["Si"].medium, ms.material_library["SiO2"].medium


def grid_neff(dl: float, offset: float, dispersive: bool) -> dict[str, float]:
    """TE0 (E along the faces) and TM0 (E normal to them) of the grid at 1.55 µm."""
    core, cladding = (SI, SIO2) if dispersive else tuple(ms.Medium(permittivity=float(np.real(m.eps_model(F0)))) for m in (SI, SIO2))
    sim = ms.Simulation(
        size=(1.0, 3.0, 0), grid_spec=ms.GridSpec.uniform(dl), run_time=1e-15, medium=cladding,
        structures=[ms.Structure(geometry=ms.Box(center=(0, offset, 0), size=(ms.inf, 0.3, ms.inf)), medium=core)],
        sources=[ms.PointDipole(center=(0, 1.2, 0), polarization="Ez", source_time=ms.GaussianPulse(freq0=F0, fwidth=F0 / 20))],
    )
    media, dt = mesh_media(sim, sim.grid), sim.grid.dt / TIME_UNIT
    solve = lambda pol: simulation_modes(sim, (0, 0, 0), (0, ms.inf, ms.inf), ms.ModeSpec(filter_pol=pol), np.array([1 / LAMBDA]), "slab", media=media, dt=dt)[1][0]  # noqa: E731
    return {"TE0": float(np.ravel(solve("tm").n_eff)[0].real), "TM0": float(np.ravel(solve("te").n_eff)[0].real)}


def slab_table() -> None:
    n_si, n_sio2 = (float(np.sqrt(np.real(m.eps_model(F0)))) for m in (SI, SIO2))
    exact = {k: slab_neff(n_si, n_sio2, 0.3, 2 * np.pi / LAMBDA, pol, 0) for k, pol in (("TE0", "TE"), ("TM0", "TM"))}
    print("| cells/µm | media | TE0 worst error | TM0 worst error |\n| --- | --- | --- | --- |")
    for cells in (50, 100, 200):
        dl = 1 / cells
        for dispersive in (True, False):
            worst = {k: 0.0 for k in exact}
            for s in np.arange(8) / 8:
                got = grid_neff(dl, 0.0037 + s * dl, dispersive)
                worst = {k: max(worst[k], abs(got[k] - exact[k])) for k in exact}
            print(f"| {cells} | {'library (Lorentz)' if dispersive else 'constant ε(1.55 µm)'} | {worst['TE0']:.2e} | {worst['TM0']:.2e} |", flush=True)


def fabry_perot_table() -> None:
    d, f = 0.5, BAND / (ms.C_0 / 1e-6)
    n = np.sqrt(np.real(LORENTZ.eps_model(BAND)))
    r = ((n - 1) / (n + 1)) ** 2
    airy = 1.0 / (1.0 + 4 * r / (1 - r) ** 2 * np.sin(2 * np.pi * n * d * f) ** 2)
    print("\n| cells (nm) | face 0 | face ¼ | face ½ |\n| --- | --- | --- | --- |")
    for dl in (0.02, 0.01):
        errors = []
        for shift in (0.0, 0.25, 0.5):
            slab = ms.Structure(geometry=ms.Box(center=(d / 2 + shift * dl, 0, 0), size=(d, ms.inf, ms.inf)), medium=LORENTZ)
            errors.append(np.max(np.abs(ms.solve(slab_line([slab], dl=dl))["T"].values - airy)))
        print(f"| {dl * 1000:.0f} | " + " | ".join(f"{e:.2e}" for e in errors) + " |", flush=True)


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    print(f"metosim {ms.__version__} from {Path(ms.__file__).parent}")
    slab_table()
    fabry_perot_table()
