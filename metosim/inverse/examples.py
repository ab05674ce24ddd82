"""Ready-made inverse-design problems: the tutorial cases the notebook, the
benchmarks and the tests share."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..boundary import PML, BoundarySpec
from ..data import solve
from ..geometry import Box
from ..grid import C_0, GridSpec
from ..medium import Medium
from ..mode_spec import ModeSpec
from ..monitor import ModeMonitor
from ..simulation import Simulation, Structure
from ..source import GaussianPulse, ModeSource
from .design import DesignRegion
from .objective import ModeTerm, Objective
from .problem import InverseProblem, Optimizer

SILICON, SILICA = 3.48**2, 1.444**2
#: The tutorial's optimiser (``notebooks/inverse_design.ipynb``; its headline figure,
#: ≥ 95% worst transmission and ≥ 95% binary, is checked by ``benchmarks/inverse.py
#: headline``): 50 Adam steps, β from 4 doubling every 8 steps up to 256.
TUTORIAL_OPTIMIZER = Optimizer(steps=50, learning_rate=0.05, beta=4, beta_every=8, beta_max=256)


def waveguide_bend(
    region: float = 2.0,
    width: float = 0.5,
    wavelengths: tuple[float, ...] = (1.5, 1.55, 1.6),
    steps_per_wvl: float = 12,
    pixel_size: float = 0.05,
    filter_radius: float = 0.1,
    run_time: float = 250e-15,
    optimizer: Optimizer | None = None,
    precision: str = "float32",
) -> InverseProblem:
    """A 2D 90° bend in silicon on silica (TE, E in plane): a guide of ``width`` µm
    enters a ``region`` × ``region`` µm design square from −x and leaves it towards +y.
    The objective maximises the worst transmission into the output guide's
    fundamental mode over ``wavelengths`` (µm)."""
    margin, pml = 1.0, 10
    size = region + 2 * margin
    freqs = tuple(C_0 / (w * 1e-6) for w in wavelengths)
    f0 = sum(freqs) / len(freqs)
    spread = max(freqs) - min(freqs)
    port = 2.5 * width + 0.5
    te = ModeSpec(filter_pol="te")
    sim = Simulation(
        size=(size, size, 0),
        grid_spec=GridSpec.auto(wavelength=C_0 / f0 * 1e6, min_steps_per_wvl=steps_per_wvl),
        run_time=run_time,
        medium=Medium(permittivity=SILICA),
        structures=[
            Structure(name="input", geometry=Box(center=(-size / 2, 0, 0), size=(size, width, float("inf"))), medium=Medium(permittivity=SILICON)),
            Structure(name="output", geometry=Box(center=(0, size / 2, 0), size=(width, size, float("inf"))), medium=Medium(permittivity=SILICON)),
        ],
        sources=[ModeSource(center=(-region / 2 - 0.6 * margin, 0, 0), size=(0, port, float("inf")), mode_spec=te, source_time=GaussianPulse(freq0=f0, fwidth=max(f0 / 8, spread)), num_freqs=3)],
        monitors=[ModeMonitor(name="out", center=(0, region / 2 + 0.6 * margin, 0), size=(port, 0, float("inf")), freqs=freqs, mode_spec=te)],
        boundary_spec=BoundarySpec.all_sides(PML(num_layers=pml)),
        precision=precision,
        shutoff=0,
    )
    design = DesignRegion(geometry=Box(size=(region, region, float("inf"))), eps_min=SILICA, eps_max=SILICON, pixel_size=pixel_size, filter_radius=filter_radius)
    objective = Objective(terms=(ModeTerm(monitor="out", direction="+"),), aggregate="worst")
    return InverseProblem(simulation=sim, design=design, objective=objective, optimizer=optimizer or Optimizer())


#: The photonics-opt-testbed's mode converter (Chen et al., JOSA B 2024; Schubert et al.,
#: ACS Photonics 2022): its six wavelengths (µm) and its best published design's figures
#: (worst-case reflection and transmission, dB; minimum length scale, µm).
TESTBED_WAVELENGTHS = (1.265, 1.270, 1.275, 1.285, 1.290, 1.295)
TESTBED_BEST = {"reflection_db": -41.95, "transmission_db": -0.04, "length_scale": 0.0586}


def mode_converter(
    dl: float = 0.01,
    pixel_size: float = 0.01,
    filter_radius: float = 0.06,
    robust: float = 0.0,
    length_penalty: float = 0.0,
    reflection_weight: float = 10.0,
    db: bool = False,
    minimax: bool = False,
    run_time: float = 400e-15,
    optimizer: Optimizer | None = None,
    precision: str = "float32",
) -> InverseProblem:
    """The photonics-opt-testbed's 2D waveguide mode converter: a 1.6 × 1.6 µm design
    square between two 0.4 µm silicon guides (ε 12.25 in oxide, ε 2.25), E out of plane
    (Ez). The fundamental mode enters from −x; the objective is, worst over the six
    wavelengths (1.265–1.295 µm), the power converted into the output guide's second
    mode minus ``reflection_weight`` × the power reflected into the input's fundamental
    mode; with ``db`` both in dB (reflection floored at −50 dB), so that a design which
    converts nothing scores far below one that converts with some reflection. With
    ``minimax`` the objective is instead the testbed's Meep script's: minimise, over
    the wavelengths, the largest of ``reflection_weight`` × R and 1 − T (the epigraph
    form; weight 1 is the script's). ``dl``: the grid step (the testbed's 10 nm);
    ``pixel_size``: design pixels (the testbed's 10 nm, 160 × 160); ``robust`` and
    ``length_penalty``: the design region's length-scale controls."""
    guide, design, lead, pad, pml = 0.4, 1.6, 0.7, 0.6, 12
    sx = design + 2 * lead + 2 * pml * dl
    sy = design + 2 * pad + 2 * pml * dl
    freqs = tuple(C_0 / (w * 1e-6) for w in TESTBED_WAVELENGTHS)
    f_lo, f_hi = C_0 / 1.30e-6, C_0 / 1.26e-6
    modes = ModeSpec(num_modes=2, filter_pol="tm")
    port = (0, design + pad, float("inf"))
    x_in = -design / 2 - lead / 2
    sim = Simulation(
        size=(sx, sy, 0),
        grid_spec=GridSpec.uniform(dl),
        run_time=run_time,
        medium=Medium(permittivity=2.25),
        structures=[Structure(name="guide", geometry=Box(size=(float("inf"), guide, float("inf"))), medium=Medium(permittivity=12.25))],
        sources=[ModeSource(center=(x_in - 0.15, 0, 0), size=port, mode_spec=ModeSpec(num_modes=1, filter_pol="tm"), source_time=GaussianPulse(freq0=(f_lo + f_hi) / 2, fwidth=f_hi - f_lo), num_freqs=3)],
        monitors=[
            ModeMonitor(name="in", center=(x_in + 0.15, 0, 0), size=port, freqs=freqs, mode_spec=modes),
            ModeMonitor(name="out", center=(design / 2 + lead / 2, 0, 0), size=port, freqs=freqs, mode_spec=modes),
        ],
        boundary_spec=BoundarySpec.all_sides(PML(num_layers=pml)),
        precision=precision,
        shutoff=0,
    )
    region = DesignRegion(geometry=Box(size=(design, design, float("inf"))), eps_min=2.25, eps_max=12.25, pixel_size=pixel_size, filter_radius=filter_radius, robust=robust, length_penalty=length_penalty)
    if minimax:
        terms = (ModeTerm(monitor="in", mode_index=0, direction="-", weight=reflection_weight), ModeTerm(monitor="out", mode_index=1, direction="+", weight=-1, offset=1))
        objective = Objective(terms=terms, goal="minimize", aggregate="worst_term")
    else:
        terms = (
            ModeTerm(monitor="out", mode_index=1, direction="+", db=db),
            ModeTerm(monitor="in", mode_index=0, direction="-", weight=-reflection_weight, db=db, floor=1e-5),
        )
        objective = Objective(terms=terms, aggregate="worst")
    return InverseProblem(simulation=sim, design=region, objective=objective, optimizer=optimizer or Optimizer(steps=100, learning_rate=0.05, beta=4, beta_every=15, beta_max=256))


def mode_converter_scores(design: np.ndarray, dl: float = 0.01) -> dict[str, Any]:
    """The testbed's scores of a binary mode-converter design (n × n pixels over the
    1.6 µm square, rows along x, as in the testbed's CSV files) from a plain solve on
    a ``dl`` µm grid, run until the fields decay (energy shutoff 10⁻⁶): the worst-case
    reflection into the input's fundamental mode and transmission into the output's
    second mode (dB), both spectra (linear, per ``TESTBED_WAVELENGTHS``), and the
    measured minimum solid and void length scales (µm) of the design alone and in
    place, within a ring of its surroundings (``*_in_place_um``; a feature touching the
    region's edge ends there).

    The pixels are simulated as they are, thresholded at ½: no filter, no projection
    (those make designs; applied again they would round corners and drop thin
    features, scoring some other design)."""
    design = np.asarray(design, dtype=float)
    pixel = 1.6 / design.shape[0]
    problem = mode_converter(dl=dl, pixel_size=pixel)
    solid = design.reshape(problem.shape) > 0.5
    region = problem.design
    sim = problem.simulation_with(np.where(solid, region.eps_max, region.eps_min)).updated_copy(shutoff=1e-6, run_time=3e-12)
    data = solve(sim)
    reflection = np.abs(data["in"].amps.sel(direction="-", mode_index=0).values) ** 2
    transmission = np.abs(data["out"].amps.sel(direction="+", mode_index=1).values) ** 2
    solid_um, void_um = problem.length_scales(solid)
    solid_in_place, void_in_place = problem.length_scales(solid, in_place=True)
    return {
        "reflection_db": float(10 * math.log10(reflection.max())),
        "transmission_db": float(10 * math.log10(transmission.min())),
        "reflection": reflection,
        "transmission": transmission,
        "solid_um": solid_um,
        "void_um": void_um,
        "solid_in_place_um": solid_in_place,
        "void_in_place_um": void_in_place,
    }
