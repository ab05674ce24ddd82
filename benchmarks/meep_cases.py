"""The 2D cases of ``time_to_accuracy.py``, defined once, and their Meep runs.

Silicon-like guides (ε = 12) in glass (ε = 2.085) at λ = 1.55 µm, in the xy plane,
1 µm of PML on every side, a Gaussian pulse (fwidth 0.2 f0) launched as the guide's
fundamental mode; the answer is the power carried on in the fundamental mode at the
output plane relative to that passing the input plane, |a_out|²/|a_in|², at f0:

- ``coupler``: a directional coupler — a guide 0.4 µm wide along x, and a second one
  0.15 µm below it over 4 µm; what stays in the first guide (the bar port).
- ``taper``: a linear taper from 0.4 to 1.2 µm over 2 µm; what reaches the wide guide's
  fundamental mode.

Polarisations: "te" (E in the plane: Hz, Ex, Ey; Meep's EVEN_Z) and "tm" (Ez, Hx, Hy;
ODD_Z). This file imports only the standard library at the top, so both MetoSim's
interpreter and one with Meep (``python3-meep``) can read the cases:

    /usr/bin/python3 benchmarks/meep_cases.py coupler te 40     # one Meep run: JSON line
"""

from __future__ import annotations

import json
import sys
import time

WAVELENGTH = 1.55  # µm
EPS_CORE, EPS_CLAD = 12.0, 2.085
PML = 1.0  # µm
WIDTH = 0.4  # µm, the input guide
FWIDTH = 0.2  # of f0


def coupler() -> dict:
    """Domain, polygons (µm; x, y vertices) and the two mode planes of the coupler."""
    gap, length = 0.15, 4.0
    y_bar, y_cross = (WIDTH + gap) / 2, -(WIDTH + gap) / 2
    far = 20.0  # guides run into the PML
    return {
        "size": (length + 6.0, 4.0),
        "polygons": [
            [(-far, y_bar - WIDTH / 2), (far, y_bar - WIDTH / 2), (far, y_bar + WIDTH / 2), (-far, y_bar + WIDTH / 2)],
            [(-length / 2, y_cross - WIDTH / 2), (length / 2, y_cross - WIDTH / 2), (length / 2, y_cross + WIDTH / 2), (-length / 2, y_cross + WIDTH / 2)],
        ],
        "source": (-length / 2 - 1.5, y_bar),
        "input": (-length / 2 - 0.8, y_bar),
        "output": (length / 2 + 1.5, y_bar),
        "plane": 1.6,  # µm across the guide, centred on it
        # c·t bound, µm, for MetoSim (Meep runs until its fields decay); the energy
        # shutoff ends runs earlier. The coupler rings for 170–220 µm (its second guide's
        # ends reflect): a bound of 120 cut it off, and its answer with it, by 0.003–0.006.
        "run_time_um": 600.0,
    }


def taper() -> dict:
    length, wide, far = 2.0, 1.2, 20.0
    return {
        "size": (8.0, 5.0),
        "polygons": [[(-far, -WIDTH / 2), (-length / 2, -WIDTH / 2), (length / 2, -wide / 2), (far, -wide / 2), (far, wide / 2), (length / 2, wide / 2), (-length / 2, WIDTH / 2), (-far, WIDTH / 2)]],
        "source": (-length / 2 - 1.5, 0.0),
        "input": (-length / 2 - 0.8, 0.0),
        "output": (length / 2 + 1.2, 0.0),
        "plane": 2.6,
        "run_time_um": 600.0,
    }


CASES = {"coupler": coupler, "taper": taper}


def meep_run(case: str, pol: str, resolution: float) -> float:
    """|a_out|²/|a_in|² of the fundamental mode at f0 from Meep at ``resolution`` pixels/µm."""
    import meep as mp

    mp.verbosity(0)
    spec = CASES[case]()
    parity = mp.EVEN_Z if pol == "te" else mp.ODD_Z
    f0 = 1 / WAVELENGTH
    clad, core = mp.Medium(epsilon=EPS_CLAD), mp.Medium(epsilon=EPS_CORE)
    geometry = [mp.Prism([mp.Vector3(x, y) for x, y in poly], height=mp.inf, material=core) for poly in spec["polygons"]]
    sx, sy = spec["size"]
    plane = mp.Vector3(0, spec["plane"])
    source = mp.EigenModeSource(
        mp.GaussianSource(frequency=f0, fwidth=FWIDTH * f0),
        center=mp.Vector3(*spec["source"]), size=plane, eig_band=1, eig_parity=parity, eig_match_freq=True,
    )
    sim = mp.Simulation(
        cell_size=mp.Vector3(sx, sy), resolution=resolution, geometry=geometry, default_material=clad,
        sources=[source], boundary_layers=[mp.PML(PML)],
    )
    monitors = [sim.add_mode_monitor(f0, 0, 1, mp.ModeRegion(center=mp.Vector3(*spec[k]), size=plane)) for k in ("input", "output")]
    component = mp.Hz if pol == "te" else mp.Ez
    sim.run(until_after_sources=mp.stop_when_fields_decayed(20, component, mp.Vector3(*spec["output"]), 1e-6))
    a_in, a_out = (sim.get_eigenmode_coefficients(m, [1], eig_parity=parity).alpha[0, 0, 0] for m in monitors)
    return float(abs(a_out) ** 2 / abs(a_in) ** 2)


if __name__ == "__main__":
    start = time.perf_counter()
    value = meep_run(sys.argv[1], sys.argv[2], float(sys.argv[3]))
    print(json.dumps({"value": value, "seconds": time.perf_counter() - start}))
