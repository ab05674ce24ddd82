"""Engine behaviour beyond the analytic cases: backend agreement on a case that uses
every feature, input errors before time stepping, shutoff, time monitors."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

import metosim as ms
from metosim.kernels import EngineInputError

from .conftest import F_UNIT

PULSE = ms.GaussianPulse(freq0=F_UNIT, fwidth=0.3 * F_UNIT)


def kitchen_sink(precision: str = "float64") -> ms.Simulation:
    """2D case with subpixel-averaged sphere and polyslab, a lossy cylinder, a Drude and
    a Lorentz body, a PEC box, PML/periodic/PMC boundaries, all source and monitor kinds."""
    return ms.Simulation(
        size=(3.0, 2.0, 0),
        grid_spec=ms.GridSpec.uniform(0.025),
        run_time=30e-15,
        structures=[
            ms.Structure(geometry=ms.Sphere(center=(0.4, 0.2, 0), radius=0.3), medium=ms.Medium(permittivity=6.0)),
            ms.Structure(geometry=ms.Cylinder(center=(-0.5, -0.3, 0), radius=0.2, length=1, axis=2), medium=ms.Medium(permittivity=2.0, conductivity=2e4)),
            ms.Structure(geometry=ms.PolySlab(vertices=[(0.8, -0.6), (1.1, -0.6), (0.95, -0.2)], slab_bounds=(-1, 1)), medium=ms.Lorentz(eps_inf=2.0, poles=[(1.5, 1.2 * F_UNIT, 0.1 * F_UNIT)])),
            ms.Structure(geometry=ms.Box(center=(-0.9, 0.5, 0), size=(0.2, 0.2, 1)), medium=ms.Drude(poles=[(1.5 * F_UNIT, 0.05 * F_UNIT)])),
            ms.Structure(geometry=ms.Box(center=(0.0, -0.7, 0), size=(0.3, 0.1, 1)), medium=ms.PEC),
        ],
        sources=[
            ms.PlaneWave(center=(-1.0, 0, 0), size=(0, ms.inf, ms.inf), direction="+x", polarization="Ez", source_time=PULSE),
            ms.GaussianBeam(center=(0, 0.7, 0), size=(2, 0, 1), direction="-y", polarization="Ex", source_time=PULSE, waist_radius=0.4),
            ms.PointDipole(center=(0.2, -0.2, 0), polarization="Hz", source_time=PULSE),
        ],
        monitors=[
            ms.FieldMonitor(name="field", size=(ms.inf, ms.inf, 0), freqs=[0.9 * F_UNIT, F_UNIT]),
            ms.FluxMonitor(name="flux", center=(1.0, 0, 0), size=(0, ms.inf, ms.inf), freqs=[0.9 * F_UNIT, F_UNIT]),
            ms.FieldTimeMonitor(name="movie", center=(0, 0, 0), size=(1, 1, 0), interval=25, fields=("Ez", "Hz")),
        ],
        boundary_spec=ms.BoundarySpec(
            x=ms.Boundary(minus=ms.PML(), plus=ms.PML(num_layers=8)),
            y=ms.Boundary(minus=ms.PMCBoundary(), plus=ms.PML()),
        ),
        precision=precision,
        shutoff=0,
    )


def test_backends_agree_on_every_feature() -> None:
    sim = kitchen_sink()
    a, b = ms.solve(sim, backend="jax"), ms.solve(sim, backend="numpy")
    assert a.info["time_steps"] == b.info["time_steps"] > 100
    for name in ("field", "movie"):
        for comp in a[name].data_vars:
            x, y = a[name][comp].values, b[name][comp].values
            assert np.max(np.abs(x)) > 0
            # float64 on both sides: only summation order differs.
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-9 * np.max(np.abs(y)))
    np.testing.assert_allclose(a["flux"].values, b["flux"].values, rtol=1e-9)


def test_float32_tracks_float64() -> None:
    sim = kitchen_sink()
    hi = ms.solve(sim, backend="jax")
    lo = ms.solve(sim.model_copy(update={"precision": "float32"}), backend="jax")
    ez = hi["field"]["Ez"].values
    # float32 rounding accumulates over ~1000 steps: 1e-4 of the field scale.
    assert np.max(np.abs(lo["field"]["Ez"].values - ez)) < 1e-4 * np.max(np.abs(ez))


def test_time_monitor_snapshots() -> None:
    data = ms.solve(kitchen_sink(), backend="jax")
    movie = data["movie"]
    steps = np.round(movie.t.values / data.simulation.grid.dt).astype(int)
    assert steps[0] == 0 and np.all(np.diff(steps) == 25)
    assert np.all(movie["Ez"].isel(t=0).values == 0)  # the initial state
    assert np.max(np.abs(movie["Ez"].isel(t=-1).values)) > 0
    assert movie.x.min() >= -0.5 - 1e-9 and movie.x.max() <= 0.5 + 1e-9


def test_shutoff_stops_early_after_sources() -> None:
    sim = ms.Simulation(
        size=(4, 0, 0),
        grid_spec=ms.GridSpec.uniform(0.02),
        run_time=1e-12,
        sources=[ms.PlaneWave(center=(-1, 0, 0), size=(0, ms.inf, ms.inf), direction="+x", polarization="Ey", source_time=PULSE)],
        boundary_spec=ms.BoundarySpec(x=ms.Boundary()),
    )
    data = ms.solve(sim)
    steps = data.info["time_steps"]
    assert steps < sim.grid.num_time_steps
    assert steps * sim.grid.dt > PULSE.end_time


def test_progress_reports_at_chunk_boundaries() -> None:
    calls: list[tuple[int, int]] = []
    sim = kitchen_sink()
    ms.solve(sim, progress=lambda step, total: calls.append((step, total)))
    total = sim.grid.num_time_steps
    assert calls[-1] == (total, total)
    # Setup reports step 0 as a heartbeat (after meshing each E component, per mode
    # solve); then each chunk reports once, a modest rate, not every step.
    stepping = [step for step, _ in calls if step > 0]
    assert all(step == 0 for step, _ in calls[: len(calls) - len(stepping)])
    assert 5 <= len(stepping) <= 40
    assert all(b > a for a, b in zip(stepping, stepping[1:]))


def test_a_solve_takes_only_the_monitors_recordings_off_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fields are the grid's bulk: at the end of a solve only the DFT and snapshot
    recordings come to the host (a GPU run's host, or each process of a split run,
    need not hold the whole grid)."""
    import jax

    from metosim.kernels import solver

    taken: list[dict] = []
    real = solver.gather
    monkeypatch.setattr(solver, "gather", lambda tree: taken.append(tree) or real(tree))
    sim = ms.Simulation(
        size=(1.6, 1.6, 1.6), grid_spec=ms.GridSpec.uniform(0.05), run_time=20e-15,
        sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=PULSE)],
        monitors=[ms.FluxMonitor(name="flux", center=(0.5, 0, 0), size=(0, 0.4, 0.4), freqs=[F_UNIT])],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=6)),
    )
    data = ms.solve(sim, backend="jax")
    assert data["flux"].shape == (1,)
    (tree,) = taken
    assert sorted(tree) == ["dft", "snap"]
    moved = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(tree))
    field = np.prod(sim.grid.num_cells) * 4  # one float32 component: 128 KiB
    assert 0 < moved < field / 10, (moved, field)  # measured 4320 bytes


def _never(step: int, total: int) -> None:
    raise AssertionError("time stepping started")


def test_nan_permittivity_refused_before_stepping() -> None:
    bad = ms.Medium.model_construct(type="Medium", permittivity=float("nan"), conductivity=0.0, name=None)
    sim = kitchen_sink().model_copy(update={"structures": (ms.Structure.model_construct(type="Structure", geometry=ms.Sphere(radius=0.2), medium=bad, name=None),)})
    with pytest.raises(ValidationError, match="permittivity"):
        ms.solve(sim, progress=_never)


def test_monitor_outside_domain_refused_before_stepping() -> None:
    outside = ms.FieldMonitor(name="far", center=(50, 0, 0), size=(1, 1, 0), freqs=[F_UNIT])
    sim = kitchen_sink().model_copy(update={"monitors": (outside,)})
    with pytest.raises(ValidationError, match=r"monitors\.0\.center"):
        ms.solve(sim, progress=_never)


def test_memory_limit_refused_before_stepping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METOSIM_MAX_MEMORY", "100000")
    with pytest.raises(EngineInputError, match="METOSIM_MAX_MEMORY"):
        ms.solve(kitchen_sink(), progress=_never)


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        ms.solve(kitchen_sink(), backend="cuda")


def test_compiled_kernels_are_reused_across_geometries(kernel_cache: str) -> None:
    """The persistent compilation cache: the kernel depends on the grid, sources,
    monitors and step count, not on materials, so a sweep over a rod's permittivity
    compiles once."""
    from pathlib import Path

    def rod(eps: float) -> ms.Simulation:
        return ms.Simulation(
            size=(1.4, 1.2, 0),
            grid_spec=ms.GridSpec.uniform(0.05),
            run_time=5e-15,
            boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=6)),
            structures=[ms.Structure(geometry=ms.Cylinder(radius=0.2, length=ms.inf, axis=2), medium=ms.Medium(permittivity=eps))],
            sources=[ms.PointDipole(center=(-0.4, 0.1, 0), polarization="Ez", source_time=PULSE)],
            monitors=[ms.FluxMonitor(name="flux", center=(0.5, 0, 0), size=(0, ms.inf, ms.inf), freqs=[F_UNIT])],
            shutoff=0,
        )

    entries = lambda: {p.name for p in Path(kernel_cache).rglob("*") if p.is_file()}  # noqa: E731
    ms.solve(rod(2.0))
    first = entries()
    ms.solve(rod(4.0))
    assert first and entries() == first  # nothing new compiled
