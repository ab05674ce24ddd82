"""Single-polarisation 2D: a run whose sources excite TE or TM steps three components,
with results equal to the six-component step; mixed and 3D runs step six."""

from __future__ import annotations

import numpy as np
import pytest

import metosim as ms
from metosim.grid import coupled_components
from metosim.kernels.solver import solve

F0 = ms.C_0 / 1.0e-6
PULSE = ms.GaussianPulse(freq0=F0, fwidth=F0 / 4)
TM, TE, ALL = ["Ez", "Hx", "Hy"], ["Ex", "Ey", "Hz"], ["Ex", "Ey", "Ez", "Hx", "Hy", "Hz"]


def scatterer(sources: list, size: tuple[float, float, float] = (2.0, 1.6, 0), symmetry: tuple[int, int, int] = (0, 0, 0)) -> ms.Simulation:
    """A Drude rod and a glass block in PML, recorded by a field plane, a flux line and a time monitor."""
    return ms.Simulation(
        size=size,
        grid_spec=ms.GridSpec.uniform(0.04),
        run_time=20e-15,
        structures=[
            ms.Structure(geometry=ms.Cylinder(radius=0.2, length=ms.inf, axis=2, center=(-0.4, 0, 0)), medium=ms.Drude(eps_inf=2, poles=[(1e15, 1e13)])),
            ms.Structure(geometry=ms.Box(center=(0.5, 0, 0), size=(0.4, 0.8, ms.inf)), medium=ms.Medium(permittivity=4)),
        ],
        sources=sources,
        monitors=[
            ms.FieldMonitor(name="field", size=(ms.inf, ms.inf, 0), freqs=[0.9 * F0, F0]),
            ms.FluxMonitor(name="flux", center=(0.8, 0, 0), size=(0, ms.inf, ms.inf), freqs=[F0]),
            ms.FieldTimeMonitor(name="probe", center=(0.2, 0.3, 0), size=(0, 0, 0), interval=10),
        ],
        symmetry=symmetry,
        shutoff=0,
    )


def assert_same_results(sim: ms.Simulation, stepped: list[str]) -> None:
    fast, full = solve(sim, backend="jax"), solve(sim, backend="jax", all_components=True)
    assert fast.info["stepped_components"] == stepped
    assert full.info["stepped_components"] == ALL
    for name, data in fast.monitors.items():
        for key in data.data_vars if hasattr(data, "data_vars") else [None]:
            a = data[key].values if key else data.values
            b = full.monitors[name][key].values if key else full.monitors[name].values
            np.testing.assert_array_equal(a, b, err_msg=f"{name} {key}")


@pytest.mark.parametrize(
    ("source", "stepped"),
    [
        (ms.PointDipole(center=(0.1, 0.13, 0), polarization="Ez", source_time=PULSE), TM),
        (ms.PointDipole(center=(0.1, 0.13, 0), polarization="Hz", source_time=PULSE), TE),
        (ms.GaussianBeam(center=(0, -0.5, 0), size=(ms.inf, 0, ms.inf), direction="+y", polarization="Ex", waist_radius=0.4, source_time=PULSE), TE),
    ],
)
def test_one_polarisation_steps_three_components_with_the_same_results(source: ms.PointDipole, stepped: list[str]) -> None:
    sim = scatterer([source])
    assert sim.estimate()["stepped_components"] == stepped
    assert_same_results(sim, stepped)


@pytest.mark.parametrize(("filter_pol", "stepped"), [("te", TE), ("tm", TM)])
def test_a_2d_mode_source_steps_its_own_polarisation(filter_pol: str, stepped: list[str]) -> None:
    """The mode plane's other pair of sheets is all zero in 2D and is dropped at set-up."""
    guide = ms.Structure(geometry=ms.Box(size=(ms.inf, 0.4, ms.inf)), medium=ms.Medium(permittivity=12))
    sim = ms.Simulation(
        size=(3.0, 2.0, 0), grid_spec=ms.GridSpec.uniform(0.04), run_time=20e-15, structures=[guide],
        sources=[ms.ModeSource(center=(-1.0, 0, 0), size=(0, 1.8, ms.inf), mode_spec=ms.ModeSpec(filter_pol=filter_pol), source_time=PULSE)],
        monitors=[ms.ModeMonitor(name="out", center=(1.0, 0, 0), size=(0, 1.8, ms.inf), freqs=[F0], mode_spec=ms.ModeSpec(filter_pol=filter_pol))],
        shutoff=0,
    )
    assert sim.estimate()["stepped_components"] is None  # known after the mode solve
    assert_same_results(sim, stepped)


def test_mixed_sources_step_six() -> None:
    sim = scatterer([ms.PointDipole(center=(0.1, 0.13, 0), polarization=p, source_time=PULSE) for p in ("Ez", "Hz")])
    assert sim.estimate()["stepped_components"] == ALL
    assert solve(sim, backend="jax").info["stepped_components"] == ALL


def test_symmetry_and_single_polarisation_together() -> None:
    sim = scatterer([ms.PointDipole(center=(0.1, 0, 0), polarization="Ez", source_time=PULSE)], symmetry=(0, 1, 0))
    assert_same_results(sim, TM)


def test_coupled_components_follow_the_curl() -> None:
    assert coupled_components((True, True, True), {"Ez"}) == frozenset(ALL)
    assert coupled_components((True, True, False), {"Ez"}) == frozenset(TM)
    assert coupled_components((True, True, False), {"Hz"}) == frozenset(TE)
    assert coupled_components((False, True, True), {"Ex"}) == frozenset({"Ex", "Hy", "Hz"})  # TM about x
    assert coupled_components((True, False, False), {"Ey"}) == frozenset({"Ey", "Hz"})  # 1D along x
    assert coupled_components((True, True, False), set()) == frozenset()
