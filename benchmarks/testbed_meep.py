"""Score a photonics-opt-testbed mode-converter design with Meep: an independent check
of ``benchmarks/testbed.py evaluate`` (MetoSim) on another FDTD code.

The design (the testbed's CSV: n × n pixels of 0/1 over the 1.6 µm square, rows along
x) is drawn as it stands — each pixel silicon (n 3.5) or oxide (n 1.5), no filter, ε
linear between pixel centres (a ``MaterialGrid`` without projection, as MetoSim meshes
a ``CustomMedium``) — between 0.4 µm guides; the fundamental Ez mode (ODD_Z) is launched
from −x as a Gaussian pulse over 1.26–1.30 µm, and the fields run until they decay.
Reflection is the input guide's backward fundamental mode and transmission the output
guide's forward second mode, each over the forward fundamental mode at the input
plane (mode coefficients, ``get_eigenmode_coefficients``), at the testbed's six
wavelengths. Printed as one JSON line: worst-case reflection and transmission (dB) and
the spectra. Needs Meep (Debian's ``python3-meep``):

    /usr/bin/python3 benchmarks/testbed_meep.py benchmarks/designs/mode_converter_lengthscale.csv --resolution 100
"""

from __future__ import annotations

import argparse
import json
import time

import meep as mp
import numpy as np

WAVELENGTHS = (1.265, 1.270, 1.275, 1.285, 1.290, 1.295)  # µm, the testbed's
DESIGN, GUIDE, LEAD, PAD, PML = 1.6, 0.4, 1.0, 0.6, 1.0  # µm


def score(design: np.ndarray, resolution: int) -> dict:
    si, sio2 = mp.Medium(index=3.5), mp.Medium(index=1.5)
    n = design.shape[0]
    solid = np.asarray(design) > 0.5
    sx, sy = DESIGN + 2 * LEAD + 2 * PML, DESIGN + 2 * PAD + 2 * PML

    # The pixels as a MaterialGrid without projection: ε is interpolated linearly
    # between pixel centres (a one-pixel ramp centred on each pixel edge), as MetoSim
    # meshes a CustomMedium. (Blocks per pixel run would not do: Meep's subpixel
    # averaging assumes one interface per voxel and loses most of a run of blocks
    # thinner than a cell.)
    grid = mp.MaterialGrid(mp.Vector3(n, n), sio2, si, weights=solid.astype(float), do_averaging=False, beta=0)
    lead = sx / 2 - DESIGN / 2
    geometry = [mp.Block(center=mp.Vector3(s * (DESIGN / 2 + lead / 2)), size=mp.Vector3(lead, GUIDE, mp.inf), material=si) for s in (-1, 1)]
    geometry.append(mp.Block(center=mp.Vector3(), size=mp.Vector3(DESIGN, DESIGN, mp.inf), material=grid))

    f_lo, f_hi = 1 / 1.30, 1 / 1.26
    fcen, df = (f_lo + f_hi) / 2, f_hi - f_lo
    x_src, x_in, x_out = -DESIGN / 2 - 0.75 * LEAD, -DESIGN / 2 - 0.4 * LEAD, DESIGN / 2 + 0.5 * LEAD
    port = mp.Vector3(0, DESIGN + PAD)
    sim = mp.Simulation(
        cell_size=mp.Vector3(sx, sy),
        resolution=resolution,
        boundary_layers=[mp.PML(PML)],
        default_material=sio2,
        geometry=geometry,
        sources=[mp.EigenModeSource(mp.GaussianSource(fcen, fwidth=df), center=mp.Vector3(x_src), size=port, eig_band=1, eig_parity=mp.ODD_Z)],
    )
    freqs = [1 / w for w in WAVELENGTHS]
    into = sim.add_mode_monitor(freqs, mp.ModeRegion(center=mp.Vector3(x_in), size=port))
    out = sim.add_mode_monitor(freqs, mp.ModeRegion(center=mp.Vector3(x_out), size=port))
    start = time.perf_counter()
    sim.run(until_after_sources=mp.stop_when_fields_decayed(50, mp.Ez, mp.Vector3(x_out), 1e-8))
    a_in = sim.get_eigenmode_coefficients(into, [1], eig_parity=mp.ODD_Z).alpha
    a_out = sim.get_eigenmode_coefficients(out, [2], eig_parity=mp.ODD_Z).alpha
    incident = np.abs(a_in[0, :, 0]) ** 2
    reflection = np.abs(a_in[0, :, 1]) ** 2 / incident
    transmission = np.abs(a_out[0, :, 0]) ** 2 / incident
    return {
        "resolution": resolution,
        "reflection_db": float(10 * np.log10(reflection.max())),
        "transmission_db": float(10 * np.log10(transmission.min())),
        "reflection": reflection.tolist(),
        "transmission": transmission.tolist(),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("design")
    parser.add_argument("--resolution", type=int, default=100, help="cells per µm (the testbed's 100: 10 nm)")
    args = parser.parse_args()
    mp.verbosity(0)
    print(json.dumps({"design": args.design, **score(np.loadtxt(args.design, delimiter=","), args.resolution)}), flush=True)


if __name__ == "__main__":
    main()
