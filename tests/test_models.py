"""The Simulation model: construction, validation messages with field paths, JSON
round trips (property-based), the grid, estimates, plots and notebook reprs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.patches import Circle, Polygon, Rectangle
from pydantic import ValidationError

import metosim as ms

PULSE = ms.GaussianPulse(freq0=2e14, fwidth=5e13)


def base(**changes) -> ms.Simulation:
    fields = dict(
        size=(2.0, 2.0, 2.0),
        grid_spec=ms.GridSpec.uniform(0.05),
        run_time=1e-13,
        sources=[ms.PointDipole(center=(0.3, 0.2, 0.1), polarization="Ez", source_time=PULSE)],
    )
    fields.update(changes)
    return ms.Simulation(**fields)


def error_locations(excinfo: pytest.ExceptionInfo) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in excinfo.value.errors()]


# ------------------------------------------------------------------ construction
def test_every_public_model_builds_and_round_trips() -> None:
    sim = base(
        structures=[
            ms.Structure(geometry=ms.Box(center=(0, 0, 0), size=(0.5, 0.5, ms.inf)), medium=ms.Medium(permittivity=4, conductivity=10)),
            ms.Structure(geometry=ms.Sphere(radius=0.3), medium=ms.PEC),
            ms.Structure(geometry=ms.Cylinder(radius=0.2, length=1, axis=0), medium=ms.Drude(eps_inf=2, poles=[(1e15, 1e13)])),
            ms.Structure(geometry=ms.PolySlab(vertices=[(0, 0), (0.5, 0), (0, 0.5)], slab_bounds=(-0.1, 0.1)), medium=ms.Lorentz(poles=[(1.0, 2e14, 1e12)]), name="tri"),
        ],
        sources=[
            ms.PointDipole(center=(0, 0, 0), polarization="Hx", source_time=ms.ContinuousWave(freq0=2e14, fwidth=1e13)),
            ms.PlaneWave(center=(-0.5, 0, 0), size=(0, ms.inf, ms.inf), direction="+x", polarization="Ey", source_time=PULSE),
            ms.GaussianBeam(center=(0, 0, -0.5), size=(1, 1, 0), direction="+z", polarization="Ex", source_time=PULSE, waist_radius=0.3),
        ],
        monitors=[
            ms.FieldMonitor(name="f", size=(ms.inf, ms.inf, 0), freqs=[2e14], fields=("Ez",)),
            ms.FieldTimeMonitor(name="t", size=(0, 0, 0), interval=10, start=1e-15, stop=5e-14),
            ms.FluxMonitor(name="flux", center=(0.5, 0, 0), size=(0, 1, 1), freqs=np.linspace(1.5e14, 2.5e14, 5), normal_dir="-"),
        ],
        boundary_spec=ms.BoundarySpec(x=ms.Boundary(minus=ms.PML(num_layers=8), plus=ms.PECBoundary()), y=ms.Boundary(minus=ms.Periodic(), plus=ms.Periodic()), z=ms.Boundary(minus=ms.PMCBoundary(), plus=ms.PML())),
    )
    text = sim.model_dump_json()
    again = ms.Simulation.model_validate_json(text)
    assert again == sim
    assert again.model_dump_json() == text
    assert json.loads(text)["schema_version"] == ms.SCHEMA_VERSION


def test_models_are_immutable_and_strict() -> None:
    box = ms.Box(size=(1, 1, 1))
    with pytest.raises(ValidationError):
        box.size = (2, 2, 2)  # type: ignore[misc]
    with pytest.raises(ValidationError, match="size"):
        ms.Box(size=("1", 1, 1))
    with pytest.raises(ValidationError, match="extra"):
        ms.Box(size=(1, 1, 1), colour="red")


def test_numpy_inputs_are_accepted() -> None:
    box = ms.Box(center=np.array([0.0, 1.0, 2.0]), size=np.float32(1.0) * np.ones(3))
    assert box.center == (0.0, 1.0, 2.0) and box.size == (1.0, 1.0, 1.0)


# ------------------------------------------------------------------ validation messages
@pytest.mark.parametrize(
    ("changes", "location", "message"),
    [
        (dict(size=(-1, 1, 1)), "size.0", "≥ 0"),
        (dict(size=(float("nan"), 1, 1)), "size.0", "finite"),
        (dict(size=(0, 0, 0)), "size", "at least one axis"),
        (dict(run_time=0), "run_time", "> 0"),
        (dict(sources=[ms.PointDipole(center=(5, 0, 0), source_time=PULSE)]), "sources.0.center", "outside the simulation domain"),
        (dict(monitors=[ms.FieldMonitor(name="m", center=(0, 0, 9), size=(1, 1, 0), freqs=[1e14])]), "monitors.0.center", "outside"),
        (dict(monitors=[ms.FieldMonitor(name="m", size=(1, 1, 0), freqs=[1e14]), ms.FluxMonitor(name="m", size=(1, 1, 0), freqs=[1e14])]), "monitors.1.name", "duplicate monitor name"),
        (dict(monitors=[ms.FluxMonitor(name="m", size=(1, 1, 1), freqs=[1e14])]), "monitors.0.size", "must be a plane"),
        (dict(boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=25))), "boundary_spec.x", "PML layers (50) fill the 40 cells"),
        (dict(boundary_spec=ms.BoundarySpec(x=ms.Boundary(minus=ms.Periodic(), plus=ms.PML()))), "boundary_spec.x", "both sides"),
        (dict(size=(2, 0, 0), sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ex", source_time=PULSE)]), "sources.0.polarization", "cannot couple"),
        (dict(size=(2, 2, 0), sources=[ms.PlaneWave(center=(0, 0, 0), size=(ms.inf, ms.inf, 0), direction="+z", polarization="Ex", source_time=PULSE)]), "sources.0.direction", "cannot propagate"),
        (dict(medium=ms.PEC), "medium", "cannot be PEC"),
        (dict(courant=1.5), "courant", "less than or equal to 1"),
        (dict(precision="float16"), "precision", "float32"),
        # found by hypothesis: a denormal cell size once overflowed to Δt = 0
        (dict(grid_spec=ms.GridSpec.uniform(2.2250738585072014e-308)), "grid_spec", "exceed the limit"),
    ],
)
def test_validation_names_field_and_reason(changes: dict, location: str, message: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        base(**changes)
    assert location in error_locations(excinfo)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    ("build", "location", "message"),
    [
        (lambda: ms.FieldMonitor(name="m", size=(1, 1, 0), freqs=[0.0]), "freqs.0", "> 0"),
        (lambda: ms.FieldMonitor(name="m", size=(1, 1, 0), freqs=[]), "freqs", "at least one"),
        (lambda: ms.FieldMonitor(name="a b", size=(1, 1, 0), freqs=[1e14]), "name", "pattern"),
        (lambda: ms.FieldMonitor(name="m", size=(1, 1, 0), freqs=[1e14], fields=("Ex", "Ex")), "fields", "repeat"),
        (lambda: ms.FieldTimeMonitor(name="m", size=(1, 1, 0), start=2e-14, stop=1e-14), "", "stop must not be before start"),
        (lambda: ms.Medium(permittivity=0.5), "permittivity", "greater than or equal to 1"),
        (lambda: ms.Medium(conductivity=-1), "conductivity", "≥ 0"),
        (lambda: ms.Sphere(radius=-1), "radius", "> 0"),
        (lambda: ms.PolySlab(vertices=[(0, 0), (1, 1), (2, 2)], slab_bounds=(0, 1)), "", "no area"),
        (lambda: ms.PolySlab(vertices=[(0, 0), (1, 0), (0, 1)], slab_bounds=(1, 0)), "", "increasing"),
        (lambda: ms.PlaneWave(center=(0, 0, 0), size=(1, 1, 1), direction="+x", polarization="Ey", source_time=PULSE), "", "must be 0"),
        (lambda: ms.PlaneWave(center=(0, 0, 0), size=(0, 1, 1), direction="+x", polarization="Ex", source_time=PULSE), "", "transverse"),
        (lambda: ms.GaussianPulse(freq0=-1, fwidth=1), "freq0", "> 0"),
        (lambda: ms.GridSpec(kind="uniform"), "", "needs dl"),
        (lambda: ms.Drude(poles=[]), "poles", "at least 1"),
    ],
)
def test_component_validation(build, location: str, message: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        build()
    if location:
        assert location in error_locations(excinfo)
    assert message in str(excinfo.value)


def test_cell_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METOSIM_MAX_CELLS", "1000")
    with pytest.raises(ValidationError, match="exceed the limit of 1,000") as excinfo:
        base()
    assert "grid_spec" in error_locations(excinfo)


# ------------------------------------------------------------------ grid and estimates
def test_grid_of_standard_problem() -> None:
    sim = base(grid_spec=ms.GridSpec.uniform(0.02))
    g = sim.grid
    assert g.num_cells == (100, 100, 100)
    np.testing.assert_allclose(g.boundaries[0][[0, -1]], [-1.0, 1.0])
    np.testing.assert_allclose(np.diff(g.centers[1]), 0.02)
    # Courant: dt = S / (c √(3/dl²)).
    assert g.dt == pytest.approx(0.99 * 0.02e-6 / (ms.C_0 * math.sqrt(3)))
    assert g.num_time_steps == math.ceil(1e-13 / g.dt)


def test_zero_size_axis_makes_2d_and_auto_grid_grades_by_medium() -> None:
    sim = base(
        size=(2, 2, 0),
        grid_spec=ms.GridSpec.auto(wavelength=1.0, min_steps_per_wvl=20),
        structures=[ms.Structure(geometry=ms.Sphere(radius=0.5), medium=ms.Medium(permittivity=4))],
        sources=[ms.PointDipole(center=(0.3, 0.2, 0), polarization="Ez", source_time=PULSE)],
    )
    g = sim.grid
    assert g.active == (True, True, False) and g.num_cells[2] == 1
    for a in range(2):
        nodes, steps = g.boundaries[a], g.primal_steps(a)
        inside = (nodes[:-1] >= -0.5 - 1e-12) & (nodes[1:] <= 0.5 + 1e-12)
        assert np.any(np.abs(nodes - 0.5) < 1e-12) and np.any(np.abs(nodes + 0.5) < 1e-12)  # lines on the sphere's box
        assert steps[inside].max() <= 0.025 + 1e-12  # λ/(20·n) in the glass
        assert 0.04 < steps.max() <= 0.05 + 1e-12  # λ/20 in air, away from it
        assert np.max(np.maximum(steps[1:] / steps[:-1], steps[:-1] / steps[1:])) <= 1.25 + 1e-9
        assert g.num_cells[a] < 80  # the uniform grid at the glass's step needs 80
    assert g.dt == pytest.approx(0.99 / (ms.C_0 / 1e-6 * math.sqrt(2 / g.dl[0] ** 2)))
    assert g.centers[2].tolist() == [0.0]


def test_custom_grid_and_grading_errors() -> None:
    coords = np.concatenate([np.linspace(-1, -0.2, 17), np.linspace(-0.2, 0.2, 21)[1:], np.linspace(0.2, 1, 17)[1:]])
    with pytest.raises(ValidationError, match="differ by 2.5×, above max_scale 1.25"):
        ms.GridSpec.custom(x=coords, dl=0.05)
    smooth = ms.GridSpec.custom(x=np.cumsum(np.r_[-1.0, 0.05 / 1.2 ** np.arange(5), np.full(44, 0.05 / 1.2**5)])[:-1], dl=0.05, max_scale=1.25)
    with pytest.raises(ValidationError) as excinfo:
        base(size=(2, 2, 0), grid_spec=smooth, sources=[])
    assert "must run from the domain's x = -1 to 1 µm" in str(excinfo.value)
    left = np.concatenate([np.linspace(-1, -0.2, 17), -0.2 + np.cumsum([0.04, 0.032, 0.0256, *[0.02048] * 5])])  # ends at 0
    graded = np.concatenate([left, -left[::-1][1:]])
    sim = base(size=(2, 2, 0), grid_spec=ms.GridSpec.custom(x=graded, dl=0.05), sources=[])
    np.testing.assert_allclose(sim.grid.boundaries[0], graded, atol=1e-12)
    assert sim.grid.num_cells == (graded.size - 1, 40, 1) and not sim.grid.is_uniform(0)
    # Edges too close for the ratio: the auto grid grades down to them rather than failing.
    close = [ms.Structure(geometry=ms.Box(center=(0.1, 0, 0), size=(0.2, 0.2, ms.inf)), medium=ms.Medium(permittivity=4)),
             ms.Structure(geometry=ms.Box(center=(0.2001 + 0.1, 0, 0), size=(0.2, 0.2, ms.inf)), medium=ms.Medium(permittivity=4))]
    g = base(size=(2, 2, 0), grid_spec=ms.GridSpec.auto(wavelength=1.0), structures=close, sources=[]).grid
    steps = g.primal_steps(0)
    assert steps.min() == pytest.approx(1e-4) and np.max(np.maximum(steps[1:] / steps[:-1], steps[:-1] / steps[1:])) <= 1.25 + 1e-9


def test_estimate_counts_cells_steps_and_memory() -> None:
    sim = base()
    est = sim.estimate()
    assert est["cells"] == 40**3
    assert est["time_steps"] == sim.grid.num_time_steps
    assert est["memory_bytes"] >= 9 * 40**3 * 4  # six fields and three update coefficients
    assert base(precision="float64").estimate()["memory_bytes"] > est["memory_bytes"]


def test_repr_html_summarises() -> None:
    text = base()._repr_html_()
    for expected in ("40×40×40", "64,000", "MiB", "time steps"):
        assert expected in text


# ------------------------------------------------------------------ plots
def test_plot_draws_structures_sources_monitors_and_pml() -> None:
    sim = base(
        structures=[
            ms.Structure(geometry=ms.Box(size=(0.4, 0.4, 0.4)), medium=ms.Medium(permittivity=2)),
            ms.Structure(geometry=ms.Sphere(center=(0.5, 0.5, 0), radius=0.2), medium=ms.Medium(permittivity=9)),
            ms.Structure(geometry=ms.PolySlab(vertices=[(-0.8, -0.8), (-0.4, -0.8), (-0.6, -0.4)], slab_bounds=(-0.2, 0.2)), medium=ms.PEC),
            ms.Structure(geometry=ms.Sphere(center=(0, 0, 0.9), radius=0.05), medium=ms.Medium(permittivity=3)),  # not cut by z = 0
        ],
        monitors=[ms.FluxMonitor(name="flux", center=(0.7, 0, 0), size=(0, 1, 1), freqs=[2e14])],
    )
    ax = sim.plot(z=0)
    labels = [p.get_label() for p in ax.patches]
    structures = [p for p in ax.patches if p.get_label().startswith("structure:")]
    assert [type(p) for p in structures] == [Rectangle, Circle, Polygon]
    assert sum(label.startswith("pml:") for label in labels) == 4  # x± and y± slabs
    assert "monitor:flux" in labels
    assert any(line.get_label().startswith("source:") for line in ax.lines)
    assert ax.get_xlim() == (-1.0, 1.0) and ax.get_ylim() == (-1.0, 1.0)
    assert structures[0].get_width() == pytest.approx(0.4)
    # Colour encodes permittivity: denser is darker.
    assert sum(structures[1].get_facecolor()[:3]) < sum(structures[0].get_facecolor()[:3])
    ax_x = sim.plot(x=0.5)
    circles = [p for p in ax_x.patches if isinstance(p, Circle)]
    assert circles and circles[0].get_radius() == pytest.approx(0.2)


def test_plot_requires_one_plane() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        base().plot(x=0, z=0)


# ------------------------------------------------------------------ property-based
finite = st.floats(min_value=-10, max_value=10, allow_nan=False)
positive = st.floats(min_value=1e-3, max_value=10, allow_nan=False)
points = st.tuples(finite, finite, finite)
geometries = st.one_of(
    st.builds(ms.Box, center=points, size=st.tuples(positive, positive, positive)),
    st.builds(ms.Sphere, center=points, radius=positive),
    st.builds(ms.Cylinder, center=points, radius=positive, length=positive, axis=st.sampled_from([0, 1, 2])),
)
media = st.one_of(
    st.builds(ms.Medium, permittivity=st.floats(1, 20), conductivity=st.floats(0, 1e6)),
    st.just(ms.PEC),
    st.builds(ms.Drude, eps_inf=st.floats(1, 5), poles=st.lists(st.tuples(st.floats(1e12, 1e16), st.floats(0, 1e14)), min_size=1, max_size=3)),
)


@given(geometry=geometries, medium=media, freqs=st.lists(st.floats(1e12, 1e16), min_size=1, max_size=5))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_json_round_trip_is_exact(geometry, medium, freqs) -> None:
    sim = base(
        structures=[ms.Structure(geometry=geometry, medium=medium)],
        monitors=[ms.FieldMonitor(name="m", size=(1, 1, 0), freqs=freqs)],
    )
    again = ms.Simulation.model_validate_json(sim.model_dump_json())
    assert again == sim
    assert ms.Simulation.model_validate(json.loads(sim.model_dump_json())) == sim


junk = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.lists(st.floats(allow_nan=True), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
FIELDS = ["size", "center", "grid_spec", "run_time", "structures", "sources", "monitors", "boundary_spec", "medium", "shutoff", "courant", "precision", "schema_version"]


def plausible(field: str, value: object) -> bool:
    """Whether junk ``value`` has a type ``field`` could accept; anything else must be refused."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if field in ("run_time", "shutoff", "courant"):
        return number
    if field in ("size", "center"):
        return isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
    if field in ("structures", "sources", "monitors"):
        return value == []
    if field in ("grid_spec", "boundary_spec", "medium"):
        return isinstance(value, dict)
    if field == "schema_version":
        return value == 1 and not isinstance(value, bool)
    return isinstance(value, str)  # precision


@given(field=st.sampled_from(FIELDS), value=junk)
@settings(max_examples=300, deadline=None)
def test_invalid_input_raises_only_validation_error(field: str, value) -> None:
    """Replacing any field of a valid config with junk raises ValidationError and nothing
    else (never TypeError, KeyError, ZeroDivisionError…), and always does where the
    junk's type cannot fit the field."""
    document = json.loads(base().model_dump_json())
    document[field] = value
    for parse in (lambda: ms.Simulation.model_validate(document), lambda: ms.Simulation.model_validate_json(json.dumps(document))):
        if plausible(field, value):
            try:
                parse()
            except ValidationError:
                pass
        else:
            with pytest.raises(ValidationError, match=field):
                parse()


def test_auto_grid_override_box_refines_and_round_trips() -> None:
    spec = ms.GridSpec.auto(wavelength=1.0, override_structures=[ms.MeshOverride(center=(0.2, 0, 0), size=(0.2, 0.2, 0), dl=0.01)])
    sim = base(size=(2, 2, 0), grid_spec=spec, sources=[])
    again = ms.Simulation.model_validate_json(sim.model_dump_json())
    assert again == sim
    for a, (lo, hi) in enumerate(((0.1, 0.3), (-0.1, 0.1))):
        nodes, steps = again.grid.boundaries[a], again.grid.primal_steps(a)
        inside = (nodes[:-1] >= lo - 1e-12) & (nodes[1:] <= hi + 1e-12)
        assert np.any(np.abs(nodes - lo) < 1e-12) and np.any(np.abs(nodes - hi) < 1e-12)
        assert steps[inside].max() <= 0.01 + 1e-12 and steps.max() > 0.045


def test_copies_carry_no_stale_grid_and_updated_copy_validates() -> None:
    flat = dict(size=(2.0, 2.0, 0), sources=[ms.PointDipole(center=(0.3, 0.2, 0), polarization="Ez", source_time=PULSE)])
    sim = base(**flat)
    assert sim.grid.num_cells[:2] == (40, 40)  # cached on sim
    wider = sim.model_copy(update={"size": (4.0, 2.0, 0)})
    assert wider.grid.num_cells[:2] == (80, 40) and wider.estimate()["cells"] == 80 * 40
    finer = sim.updated_copy(grid_spec=ms.GridSpec.uniform(0.025))
    assert finer.grid.num_cells[:2] == (80, 80) and finer == base(**flat, grid_spec=ms.GridSpec.uniform(0.025))
    with pytest.raises(ValidationError, match=r"size\.0"):
        sim.updated_copy(size=(-1.0, 2.0, 0))
    with pytest.raises(ValidationError, match=r"run_time"):
        sim.updated_copy(run_time=float("nan"))


@pytest.mark.parametrize("size", [1e-300, 5e-324, 1e-7])
def test_a_vanishing_size_is_a_validation_error_naming_the_axis(size: float) -> None:
    """A 1e-300 µm axis once divided by zero building the grid (a 500 over REST)."""
    with pytest.raises(ValidationError, match=r"size\.0\n.*below 1e-06 µm: give 0"):
        base(size=(size, 28.0, 0), sources=[])


def test_each_validator_runs_alone_on_an_unchecked_simulation() -> None:
    """The Simulation's checks by concern are plain functions: on a copy built without
    validation each reports only its own (field path, reason) pairs."""
    from metosim.simulation import CONCERNS, check_bloch, check_boundaries, check_domain, check_grid, check_monitors, check_sources, check_symmetry

    pulse = ms.GaussianPulse(freq0=2e14, fwidth=5e13)
    sim = ms.Simulation(size=(2.0, 2.0, 0), grid_spec=ms.GridSpec.uniform(0.05), run_time=1e-14)
    assert all(check(sim) == [] for check in (check_domain, check_grid, *CONCERNS))
    off_plane = sim.model_copy(update={"symmetry": (1, 0, 0), "sources": (ms.PointDipole(center=(0.3, 0, 0), polarization="Ez", source_time=pulse),)})
    (path, reason), = check_symmetry(off_plane)
    assert path == ("sources", 0, "center") and "without a mirror image" in reason
    assert check_sources(off_plane) == check_monitors(off_plane) == check_bloch(off_plane) == check_boundaries(off_plane) == []
    outside = sim.model_copy(update={"sources": (ms.PointDipole(center=(3.0, 0, 0), polarization="Ez", source_time=pulse),)})
    assert [p for p, _ in check_sources(outside)] == [("sources", 0, "center")]
    twice = sim.model_copy(update={"monitors": (ms.FieldMonitor(name="f", size=(1, 1, 0), freqs=[2e14]),) * 2})
    assert check_monitors(twice) == [(("monitors", 1, "name"), "duplicate monitor name 'f'")]
    flat = sim.model_copy(update={"size": (0.0, 0.0, 0.0)})
    assert check_domain(flat) == [(("size",), "at least one axis must have a size > 0")]
