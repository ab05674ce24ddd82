"""Score mode-converter designs with the photonics-opt-testbed's own scorer: the
``ceviche_challenges`` mode-converter model (a frequency-domain solver, ceviche's FDFD,
on 10 nm cells), with the testbed's parameters — the one that gave its published
figures (e.g. −41.95 dB / −0.04 dB for its best design). An independent check of
``benchmarks/testbed.py evaluate`` (MetoSim, FDTD).

Prints, per design (the testbed's CSV: 160 × 160 pixels of 10 nm, rows along x), the
worst-case reflection and transmission in dB (20·log₁₀|S|, as the testbed reports
them) over the six wavelengths, and imageruler's minimum solid and void length scales.
Needs ``pip install ceviche-challenges`` (a folder of its own on ``PYTHONPATH`` is
enough):

    pip install --target /tmp/cev ceviche-challenges
    PYTHONPATH=/tmp/cev python benchmarks/testbed_ceviche.py benchmarks/designs/mode_converter_lengthscale.csv
"""

from __future__ import annotations

import argparse
import time

import imageruler
import numpy as np

WAVELENGTHS_NM = (1265.0, 1270.0, 1275.0, 1285.0, 1290.0, 1295.0)
PIXEL_NM = 10.0


def testbed_model():
    """The testbed's mode converter as ``ceviche_challenges`` builds it: a 1.6 µm
    square design region, 400 nm guides, ε 12.25 in 2.25, 10 nm cells."""
    import ceviche_challenges.units as u
    from ceviche_challenges.mode_converter import model, prefabs

    params = prefabs.mode_converter_sim_params(wavelengths=u.Array(WAVELENGTHS_NM, u.nm), resolution=PIXEL_NM * u.nm)
    spec = prefabs.mode_converter_spec_12(
        variable_region_size=(1600 * u.nm, 1600 * u.nm),
        cladding_permittivity=2.25,
        slab_permittivity=12.25,
        left_wg_width=400 * u.nm,
        right_wg_width=400 * u.nm,
    )
    return model.ModeConverterModel(params, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("designs", nargs="+")
    args = parser.parse_args()
    converter = testbed_model()
    print("design, solid / void length scale (nm), worst reflection (dB), worst transmission (dB)")
    for path in args.designs:
        design = np.loadtxt(path, delimiter=",")
        start = time.perf_counter()
        s_params, _ = converter.simulate(design)
        s_db = 20 * np.log10(np.abs(s_params[:, 0, :]))  # wavelength × port, from the input port
        solid, void = imageruler.minimum_length_scale(converter.density(design) > 0.5)
        print(f"{path}, {solid * PIXEL_NM:.0f} / {void * PIXEL_NM:.0f}, {s_db[:, 0].max():.2f}, {s_db[:, 1].min():.2f} ({time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
