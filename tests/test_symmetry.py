"""Mirror symmetry: a run on half (a quarter, an eighth) of the grid, unfolded, equals
the full run; sources, structures and mode profiles that break the stated symmetry
are refused with the field named."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

import metosim as ms
from metosim.kernels.solver import EngineInputError

F = ms.C_0 / 1e-6  # 1 c/µm: λ₀ = 1 µm
PULSE = ms.GaussianPulse(freq0=F, fwidth=0.2 * F)
PML = ms.Boundary(minus=ms.PML(num_layers=8), plus=ms.PML(num_layers=8))


def monitors(planar: bool) -> list:
    """Flux planes through and beside the mirror planes, a DFT field box and a field
    time box off-centre (so unfolding must mirror, not just copy)."""
    z = 0.0 if planar else 0.5
    return [
        ms.FluxMonitor(name="fx", center=(0.5, 0.1, 0), size=(0, 1.0, z), freqs=[F, 1.2 * F], normal_dir="+"),
        ms.FluxMonitor(name="fy", center=(-0.1, -0.45, 0), size=(0.9, 0, z), freqs=[F], normal_dir="-"),
        ms.FieldMonitor(name="field", center=(-0.1, 0.05, 0), size=(1.0, 0.8, z), freqs=[F]),
        ms.FieldTimeMonitor(name="snap", center=(-0.2, 0.1, 0), size=(0.5, 0.4, z), interval=15),
    ]


def case(name: str) -> ms.Simulation:
    glass = ms.Medium(permittivity=2.25)
    if name == "2D x":  # symmetric in x only: a bar above the dipole
        fields = dict(size=(2.0, 1.6, 0), sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=PULSE)],
                      structures=[ms.Structure(geometry=ms.Box(center=(0, 0.3, 0), size=(0.8, 0.2, ms.inf)), medium=glass)], symmetry=(1, 0, 0))
    elif name == "2D xy":  # an Ez line current in a centred glass rod: even in x and y
        fields = dict(size=(2.0, 1.6, 0), sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=PULSE)],
                      structures=[ms.Structure(geometry=ms.Cylinder(center=(0, 0, 0), radius=0.3, length=ms.inf), medium=glass)], symmetry=(1, 1, 0))
    elif name == "2D xy graded":  # the same on an auto grid graded around the rod (mirrored about the planes)
        fields = dict(size=(2.0, 1.6, 0), sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=PULSE)],
                      structures=[ms.Structure(geometry=ms.Cylinder(center=(0, 0, 0), radius=0.3, length=ms.inf), medium=ms.Medium(permittivity=6.0))], symmetry=(1, 1, 0),
                      grid_spec=ms.GridSpec.auto(wavelength=1.0, min_steps_per_wvl=14))
    elif name == "2D beam":  # a TFSF Gaussian beam along +y, Ex (normal to the x plane): PEC symmetry
        fields = dict(size=(2.0, 1.6, 0), sources=[ms.GaussianBeam(center=(0, -0.5, 0), size=(ms.inf, 0, ms.inf), direction="+y", polarization="Ex", waist_radius=0.4, source_time=PULSE)],
                      structures=[ms.Structure(geometry=ms.Cylinder(center=(0, 0.2, 0), radius=0.25, length=ms.inf), medium=glass)], symmetry=(-1, 0, 0))
    else:  # 3D: a pair of Ez dipoles mirrored through z = 0 around a glass cube: 8× fewer cells
        pair = [ms.PointDipole(center=(0, 0, z), polarization="Ez", source_time=PULSE) for z in (-0.13, 0.13)]
        fields = dict(size=(1.6, 1.6, 1.6), sources=pair, structures=[ms.Structure(geometry=ms.Box(size=(0.5, 0.5, 0.2)), medium=glass)], symmetry=(1, 1, -1))
    planar = fields["size"][2] == 0
    fields.setdefault("grid_spec", ms.GridSpec.uniform(0.05))
    return ms.Simulation(run_time=25e-15, monitors=monitors(planar), boundary_spec=ms.BoundarySpec(x=PML, y=PML, z=PML), precision="float64", **fields)


def largest_difference(full: ms.SimulationData, half: ms.SimulationData) -> float:
    """max |half − full| / max |full| over every monitor's arrays."""
    worst = 0.0
    for name in full:
        for a, b in ((full[name], half[name]),) if not hasattr(full[name], "data_vars") else ((full[name][v], half[name][v]) for v in full[name].data_vars):
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape, name
            if np.any(a):
                worst = max(worst, float(np.max(np.abs(a - b)) / np.max(np.abs(a))))
    return worst


@pytest.mark.parametrize("name", ["2D x", "2D xy", "2D xy graded", "2D beam", "3D xyz"])
def test_symmetric_run_equals_the_full_run(name: str) -> None:
    sim = case(name)
    reduced = ms.solve(sim)
    # The full run on the very same grid (an auto grid puts no node on the planes unless asked to).
    same_grid = ms.GridSpec.custom(*(b if a else None for b, a in zip(sim.grid.boundaries, sim.grid.active)), dl=sim.grid.dl[0], max_scale=2.0)
    full = ms.solve(sim.model_copy(update={"symmetry": (0, 0, 0), "grid_spec": same_grid}))
    fewer = 2 ** sum(s != 0 for s in sim.symmetry)
    assert reduced.info["num_cells"] * fewer == full.info["num_cells"] == sim.grid.total_cells
    difference = largest_difference(full, reduced)
    print(f"{name}: {fewer}× fewer cells, largest difference {difference:.2e}")
    assert difference < 1e-6  # the bound (float64); measured ≤ 1.5e-15 in 2D, 4e-13 in 3D
    assert float(full["fx"].values[0]) > 0.01  # something did radiate through


def test_mode_source_with_symmetry_matches_the_full_run_and_checks_the_parity() -> None:
    """A silicon wire with a wider section: TE0 (Ey even in y and z) with symmetry
    y = −1 (Ey is normal to that plane) and z = +1. The mode solver's window edges sit
    half a cell asymmetrically, so the full run's own profile is symmetric only to
    ~0.5% at the window edge: the amplitudes agree to 1e-4, not to rounding."""
    si, sio2 = ms.Medium(permittivity=3.48**2), ms.Medium(permittivity=1.44**2)
    f = ms.C_0 / 1.55e-6
    spec = ms.ModeSpec(num_modes=2)

    def sim(symmetry: tuple[int, int, int], mode_index: int = 0) -> ms.Simulation:
        return ms.Simulation(
            size=(2.0, 2.0, 1.6), grid_spec=ms.GridSpec.uniform(0.05), run_time=60e-15, medium=sio2, precision="float64", symmetry=symmetry,
            structures=[ms.Structure(geometry=ms.Box(size=(ms.inf, 0.5, 0.22)), medium=si), ms.Structure(geometry=ms.Box(center=(0.3, 0, 0), size=(0.4, 0.8, 0.22)), medium=si)],
            sources=[ms.ModeSource(center=(-0.6, 0, 0), size=(0, 1.4, 1.2), mode_spec=spec, mode_index=mode_index, source_time=ms.GaussianPulse(freq0=f, fwidth=0.15 * f))],
            monitors=[ms.ModeMonitor(name="T", center=(0.7, 0, 0), size=(0, 1.4, 1.2), freqs=[0.95 * f, f, 1.05 * f], mode_spec=spec)],
            boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=8)),
        )

    full, quarter = ms.solve(sim((0, 0, 0))), ms.solve(sim((0, -1, 1)))
    assert quarter.info["num_cells"] * 4 == full.info["num_cells"]
    amps = [np.abs(d["T"].amps.sel(direction="+", mode_index=0).values) for d in (full, quarter)]
    assert np.all(amps[0] > 0.85)  # most of TE0 passes the wider section
    np.testing.assert_allclose(amps[1], amps[0], atol=1e-4)  # measured 8e-6
    with pytest.raises(EngineInputError, match=r"sources\[0\] \(ModeSource\): its E. does not have the parity symmetry\[1\] = -1"):
        ms.solve(sim((0, -1, 1), mode_index=1))  # TE1 is odd in y


def test_symmetry_contradictions_are_named() -> None:
    def errors(**changes) -> dict[tuple, str]:
        with pytest.raises(ValidationError) as info:
            case("2D xy").model_copy(update=changes).model_validate(case("2D xy").model_copy(update=changes).model_dump())
        return {tuple(e["loc"]): e["msg"] for e in info.value.errors()}

    dipole = lambda **kw: ms.PointDipole(**{"center": (0, 0, 0), "polarization": "Ez", "source_time": PULSE, **kw})  # noqa: E731
    assert "Ez is odd about the symmetry plane x = 0 µm under symmetry -1 (PEC)" in errors(symmetry=(-1, 1, 0))[("sources", 0, "polarization")]
    assert "without a mirror image" in errors(sources=(dipole(center=(0.2, 0, 0)),))[("sources", 0, "center")]
    assert "half a cell off the symmetry plane y" in errors(sources=(dipole(polarization="Ey"),), symmetry=(0, -1, 0))[("sources", 0, "center")]
    beam = ms.GaussianBeam(center=(0, -0.5, 0), size=(ms.inf, 0, ms.inf), direction="+y", polarization="Ex", waist_radius=0.4, source_time=PULSE)
    assert "a plane source must be centred on it" in errors(sources=(beam,), symmetry=(-1, 1, 0))[("sources", 0, "center")]
    assert "propagates along y" in errors(sources=(beam.model_copy(update={"center": (0, 0, 0)}),), symmetry=(-1, 1, 0))[("sources", 0, "direction")]
    assert "no extent along z" in errors(symmetry=(1, 1, 1))[("symmetry", 2)]
    periodic = ms.BoundarySpec(x=ms.Boundary(minus=ms.Periodic(), plus=ms.Periodic()), y=PML)
    assert "same PML or PECBoundary" in errors(boundary_spec=periodic)[("symmetry", 0)]
    # A mirrored pair is accepted, and the grid gets an even cell count on a symmetric axis.
    pair = case("2D xy").model_copy(update={"sources": (dipole(center=(0.2, 0, 0)), dipole(center=(-0.2, 0, 0))), "size": (2.02, 1.6, 0)})
    sim = ms.Simulation.model_validate(pair.model_dump())
    assert sim.grid.num_cells[0] % 2 == 0 and sim.grid.num_cells[1] % 2 == 0


def test_structures_are_checked_as_geometry() -> None:
    """A structure must be its own mirror image or have one of the same medium; the check
    is geometric (a 422 before any meshing), so a symmetric polygon whose staircase lands
    a subpixel sample differently on the two sides is not refused."""
    glass = ms.Medium(permittivity=2.25)
    shifted = ms.Structure(geometry=ms.Box(center=(0.1, 0.3, 0), size=(0.8, 0.2, ms.inf)), medium=glass)
    with pytest.raises(ValidationError) as info:
        case("2D x").model_copy(update={"structures": (shifted,)}).model_validate(case("2D x").model_copy(update={"structures": (shifted,)}).model_dump())
    assert "is not mirror-symmetric about the symmetry plane x = 0 µm" in {tuple(e["loc"]): e["msg"] for e in info.value.errors()}[("structures", 0)]
    pair = (shifted, ms.Structure(geometry=ms.Box(center=(-0.1, 0.3, 0), size=(0.8, 0.2, ms.inf)), medium=glass))
    ms.Simulation.model_validate(case("2D x").model_copy(update={"structures": pair}).model_dump())  # mirrored pair: accepted
    taper = ms.PolySlab(vertices=[(-4.0, -0.225), (-1.0, -0.225), (1.0, -0.5), (4.0, -0.5), (4.0, 0.5), (1.0, 0.5), (-1.0, 0.225), (-4.0, 0.225)], slab_bounds=(-0.11, 0.11))
    sim = ms.Simulation(size=(2.0, 1.6, 0), grid_spec=ms.GridSpec.uniform(0.04), run_time=20e-15, precision="float64", symmetry=(0, 1, 0),
                        structures=[ms.Structure(geometry=taper, medium=ms.Medium(permittivity=12.0))],
                        sources=[ms.PointDipole(center=(-0.6, 0, 0), polarization="Ez", source_time=PULSE)],
                        monitors=[ms.FieldMonitor(name="field", center=(0.3, 0, 0), size=(1.0, 1.2, 0), freqs=[F])],
                        boundary_spec=ms.BoundarySpec(x=PML, y=PML))
    assert ms.solve(sim).info["num_cells"] == sim.grid.total_cells // 2  # meshes and runs


def test_plot_shows_the_mirror_planes() -> None:
    import matplotlib

    matplotlib.use("Agg")
    ax = case("2D xy").plot(z=0)
    planes = [line.get_label() for line in ax.lines if line.get_label().startswith("symmetry:")]
    assert planes == ["symmetry:x=+1 (PMC)", "symmetry:y=+1 (PMC)"]
    shaded = [p for p in ax.patches if p.get_label().startswith("mirrored:")]
    assert [p.get_width() for p in shaded] == pytest.approx([1.0, 2.0])  # x < 0, then y < 0 across the whole width


def test_a_modes_minor_component_is_judged_against_the_whole_mode() -> None:
    """TE0 of a 0.45 × 0.22 µm wire at 0.04 µm cells: its small Ez is odd in y as it should
    be, but at the mode window's edge its asymmetry is > 5% of Ez's own peak; against
    the mode's largest profile it is tiny. (Refused before; accepted now.)"""
    f0 = ms.C_0 / 1.55e-6
    spec = ms.ModeSpec(num_modes=1, filter_pol="te")
    sim = ms.Simulation(
        size=(1.0, 4.0, 3.0), grid_spec=ms.GridSpec.uniform(0.04), run_time=5e-15, medium=ms.Medium(permittivity=1.444**2), symmetry=(0, -1, 1),
        structures=[ms.Structure(geometry=ms.Box(size=(ms.inf, 0.45, 0.22)), medium=ms.Medium(permittivity=3.48**2))],
        sources=[ms.ModeSource(center=(-0.2, 0, 0), size=(0, 2.4, 2.0), mode_spec=spec, source_time=ms.GaussianPulse(freq0=f0, fwidth=0.1 * f0))],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=8)),
    )
    assert ms.solve(sim).info["num_cells"] * 4 == sim.grid.total_cells
