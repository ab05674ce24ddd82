"""The DFT monitors sample every k-th step (:func:`metosim.kernels.yee.dft_decimation`):
k is the largest that folds nothing onto a recorded frequency, and once the fields have
decayed the sums equal those of every step to rounding."""

from __future__ import annotations

import numpy as np
import pytest

import metosim as ms
from metosim.kernels import solver
from metosim.kernels.yee import dft_decimation

from .conftest import F_UNIT


def test_the_decimation_is_the_largest_that_aliases_nothing() -> None:
    # Sampling at f_s folds f′ = f_s − f onto f: f_s must reach the signal's top plus the
    # highest recorded frequency, and one step more would fall short.
    dt, signal, recorded = 0.01, 1.3, 1.1
    k = dft_decimation(dt, signal, recorded)
    assert 1 / (k * dt) >= signal + recorded > 1 / ((k + 1) * dt)
    assert dft_decimation(0.5, 1.3, 1.1) == 1  # a step too coarse to skip any
    assert dft_decimation(1 / 24, 12.0, 12.0) == 1  # exactly at the bound


def decaying_slab() -> ms.Simulation:
    """A pulse from a dipole through a glass slab, 2D, PML all round, run until the
    fields have decayed (the DFTs then hold the whole signal)."""
    pulse = ms.GaussianPulse(freq0=F_UNIT, fwidth=0.3 * F_UNIT)
    return ms.Simulation(
        size=(3.0, 2.0, 0),
        grid_spec=ms.GridSpec.uniform(0.025),
        run_time=200e-15,
        structures=[ms.Structure(geometry=ms.Box(center=(0.3, 0, 0), size=(0.4, ms.inf, ms.inf)), medium=ms.Medium(permittivity=4.0))],
        sources=[ms.PointDipole(center=(-0.6, 0.1, 0), polarization="Ez", source_time=pulse)],
        monitors=[
            ms.FieldMonitor(name="field", size=(ms.inf, ms.inf, 0), freqs=[0.8 * F_UNIT, F_UNIT, 1.2 * F_UNIT]),
            ms.FluxMonitor(name="flux", center=(0.9, 0, 0), size=(0, ms.inf, ms.inf), freqs=[0.8 * F_UNIT, F_UNIT, 1.2 * F_UNIT]),
        ],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML()),
        precision="float64",
        shutoff=1e-12,
    )


def test_a_decayed_run_gives_the_every_step_dft(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = decaying_slab()
    decimated = ms.solve(sim)
    monkeypatch.setattr(solver, "dft_decimation", lambda *args: 1)
    every_step = ms.solve(sim)
    assert every_step.info["dft_every"] == 1 and decimated.info["dft_every"] == 13
    assert decimated.info["time_steps"] < sim.grid.num_time_steps  # the shutoff ended it: decayed
    for c in ("Ez", "Hx", "Hy"):
        a, b = decimated["field"][c].values, every_step["field"][c].values
        # Measured 2.3e-6 (Ez), 6e-7 (Hx, Hy) with k = 13: what the pulse's switch-on
        # leaves (its envelope starts at e^{-12.5} = 3.7e-6 of the peak, a step with a
        # spectrum of every frequency), not aliasing of the pulse itself.
        assert np.max(np.abs(a - b)) < 1e-5 * np.max(np.abs(b)), c
    np.testing.assert_allclose(decimated["flux"].values, every_step["flux"].values, rtol=5e-6)  # measured 6.3e-7


def test_a_pulse_switched_on_with_a_step_is_recorded_every_step() -> None:
    # offset 3: the envelope starts at e^{-4.5} = 1.1% of its peak, a step whose
    # spectrum would fold onto the recorded frequencies.
    sim = decaying_slab()
    early = sim.sources[0].updated_copy(source_time=ms.GaussianPulse(freq0=F_UNIT, fwidth=0.3 * F_UNIT, offset=3.0))
    assert solver._setup(sim.updated_copy(sources=[early])).layout.dft_every == 1
    assert solver._setup(sim).layout.dft_every == 13
