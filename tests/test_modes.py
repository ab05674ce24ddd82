"""Waveguide modes against analytic and independent physics: the slab dispersion
relation, the effective-index method and Richardson extrapolation for a 3D strip,
discrete orthogonality, the energy theorem for the group index, unit transmission of
a straight guide, power conservation in a taper, coupled-mode theory in a
directional coupler, and the resonance finder on known damped sinusoids."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.optimize import brentq

import metosim as ms
from metosim.kernels import EngineInputError
from metosim.kernels.modes import ModeSolverError, reciprocal_overlap

LAMBDA = 1.55  # µm
F0 = ms.C_0 / (LAMBDA * 1e-6)
K0 = 2 * np.pi / LAMBDA
SILICON, SILICA = ms.Medium(permittivity=3.48**2), ms.Medium(permittivity=1.444**2)


def slab_neff(n_core: float, n_clad: float, width: float, k0: float, polarisation: str, order: int) -> float:
    """Symmetric slab guide, analytic: TE (E parallel to the faces) or TM (E normal to
    them), mode ``order`` (even orders: κ·tan(κa) = γ·r; odd: −κ·cot(κa) = γ·r with
    r = 1 for TE, (n_core/n_clad)² for TM)."""
    a = width / 2
    ratio = 1.0 if polarisation == "TE" else (n_core / n_clad) ** 2

    def mismatch(n: float) -> float:
        kappa, gamma = k0 * np.sqrt(n_core**2 - n**2), k0 * np.sqrt(n**2 - n_clad**2)
        lhs = kappa * np.tan(kappa * a) if order % 2 == 0 else -kappa / np.tan(kappa * a)
        return lhs - gamma * ratio

    grid = np.linspace(n_clad + 1e-9, n_core - 1e-9, 200_001)
    values = mismatch(grid)
    roots = [brentq(mismatch, grid[i], grid[i + 1]) for i in range(grid.size - 1) if np.sign(values[i]) != np.sign(values[i + 1]) and abs(values[i]) < 50 and abs(values[i + 1]) < 50]
    return sorted(roots, reverse=True)[order // 2]


def slab_simulation(steps_per_wvl: float, width: float, offset: float, graded: bool = True) -> ms.Simulation:
    """2D (xy) slab of n = 3 in n = 1.5 along x, faces normal to y; λ = 1 µm. The auto
    grid is graded (λ/(3·steps) in the core, coarser outside); ``graded=False``: uniform
    at the core's step."""
    return ms.Simulation(
        size=(1.0, 4.0, 0),
        grid_spec=ms.GridSpec.auto(wavelength=1.0, min_steps_per_wvl=steps_per_wvl) if graded else ms.GridSpec.uniform(1.0 / (3 * steps_per_wvl)),
        run_time=1e-15,
        medium=ms.Medium(permittivity=1.5**2),
        structures=[ms.Structure(geometry=ms.Box(center=(0, offset, 0), size=(ms.inf, width, ms.inf)), medium=ms.Medium(permittivity=9.0))],
    )


def slab_modes(sim: ms.Simulation) -> dict[str, float]:
    """TE0, TE1 (E along z, parallel to the faces: te_fraction 0 for a normal along x)
    and TM0 (E along y) of the slab simulation."""
    plane, f = ms.Box(size=(0, ms.inf, ms.inf)), ms.C_0 / 1e-6
    te = ms.ModeSolver(sim, plane, ms.ModeSpec(num_modes=2, filter_pol="tm"), [f]).solve()
    tm = ms.ModeSolver(sim, plane, ms.ModeSpec(num_modes=1, filter_pol="te"), [f]).solve()
    assert np.all(te.te_fraction.values < 1e-9) and np.all(tm.te_fraction.values > 1 - 1e-9)
    return {"TE0": float(te.n_eff[0, 0]), "TE1": float(te.n_eff[1, 0]), "TM0": float(tm.n_eff[0, 0])}


def test_slab_modes_match_the_dispersion_relation() -> None:
    width = 0.43
    exact = {"TE0": slab_neff(3, 1.5, width, 2 * np.pi, "TE", 0), "TE1": slab_neff(3, 1.5, width, 2 * np.pi, "TE", 1), "TM0": slab_neff(3, 1.5, width, 2 * np.pi, "TM", 0)}
    # 20 cells per wavelength in the core (n = 3) on the auto grid (which puts nodes on
    # the faces wherever the slab sits, and grades outside it).
    solved = slab_modes(slab_simulation(20, width, offset=0.0123))
    errors = {k: abs(solved[k] - exact[k]) for k in exact}
    # Measured ≤ 1.6e-3 (TE1, the least confined; the grading's ratio adds a
    # first-order term that uniform steps do not have, see the next test).
    assert max(errors.values()) < 4e-3, errors


def test_slab_converges_at_second_order_wherever_the_faces_fall() -> None:
    """Uniform steps; the slab centred on an Ez node, its width set per resolution so
    both faces fall at the same place in their cells (s cells beyond a node: 0 on it,
    0.5 halfway to the next), each width against its own exact index. The largest error
    over the placements must fall at second order, and at 20 cells per wavelength in
    the core no placement may leave any mode 1e-3 from exact (issue 23: TE1 was 2.8e-3
    with faces halfway between nodes, the error changing sign with the placement).
    A uniform grid: a graded grid's fixed ratio (1.25) does not shrink with the step,
    which leaves a first-order term."""
    steps = np.array([15, 20, 30, 60])  # cells per wavelength in the core (n = 3)
    placements = (0.0, 0.25, 0.5, 0.75)
    modes = {"TE0": ("TE", 0), "TE1": ("TE", 1), "TM0": ("TM", 0)}
    errors = {k: np.zeros((len(placements), steps.size)) for k in modes}
    for i, s in enumerate(placements):
        for j, n in enumerate(steps):
            dl = 1 / (3 * n)
            width = 2 * dl * (round(0.215 / dl) + s)
            nodes = slab_simulation(float(n), width, 0.0, graded=False).grid.component_nodes("Ez", 1)
            solved = slab_modes(slab_simulation(float(n), width, float(nodes[np.argmin(np.abs(nodes))]), graded=False))
            for k, (polarisation, order) in modes.items():
                errors[k][i, j] = solved[k] - slab_neff(3, 1.5, width, 2 * np.pi, polarisation, order)
    for k, e in errors.items():
        worst = np.abs(e).max(axis=0)
        order = -np.polyfit(np.log(steps), np.log(worst), 1)[0]
        # Measured: order 1.96 (TE0), 2.03 (TE1), 1.96 (TM0); at 20 cells/λ the worst
        # errors are 4.4e-4, 4.8e-4 and 6.8e-4, TE1 with faces halfway 4.1e-4.
        assert order >= 1.8, (k, e, order)
        assert worst[1] < 1e-3, (k, e[:, 1])
    assert abs(errors["TE1"][placements.index(0.5), 1]) < 6e-4


def strip_simulation(steps_per_wvl: float) -> ms.Simulation:
    """Silicon strip 0.5 × 0.22 µm in silica, along x."""
    return ms.Simulation(
        size=(1.0, 2.5, 2.0),
        grid_spec=ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=steps_per_wvl),
        run_time=1e-15,
        medium=SILICA,
        structures=[ms.Structure(geometry=ms.Box(size=(ms.inf, 0.5, 0.22)), medium=SILICON)],
    )


def richardson(cells: np.ndarray, n: list[float]) -> tuple[float, float]:
    """Observed order p and limit n∞ of n(h) = n∞ + C·h^p through three points."""
    def ratio_mismatch(p: float) -> float:
        return (n[0] - n[1]) / (n[1] - n[2]) - (cells[0] ** p - cells[1] ** p) / (cells[1] ** p - cells[2] ** p)

    order = brentq(ratio_mismatch, 0.5, 4.0)
    return order, n[2] - (n[1] - n[2]) / (cells[1] ** order - cells[2] ** order) * cells[2] ** order


@pytest.mark.parametrize("placement", [(0.0, 0.0), (0.3, 0.7)], ids=["faces on nodes", "faces 0.3 and 0.7 into cells"])
def test_strip_converges_to_the_effective_index_estimate(placement: tuple[float, float]) -> None:
    """A 0.48 × 0.24 µm silicon strip, its faces on the grid's nodes or shifted into
    the cells by a fixed fraction of a cell (the same at every resolution): second
    order either way, to the same limit."""
    width, height = 0.48, 0.24
    # Effective-index method: the vertical slab's TE index, then a lateral slab of that
    # index with E normal to the side walls (TM).
    n_vertical = slab_neff(3.48, 1.444, height, K0, "TE", 0)
    n_eim = slab_neff(n_vertical, 1.444, width, K0, "TM", 0)
    cells = np.array([0.024, 0.016, 0.012])  # µm: 10, 15, 20 cells across the height
    n = []
    for dl in cells:
        centre = (0.0, placement[0] * dl, placement[1] * dl)
        sim = ms.Simulation(
            size=(1.0, 2.4, 2.16), grid_spec=ms.GridSpec.uniform(float(dl)), run_time=1e-15, medium=SILICA,
            structures=[ms.Structure(geometry=ms.Box(center=centre, size=(ms.inf, width, height)), medium=SILICON)],
        )
        modes = ms.ModeSolver(sim, ms.Box(size=(0, ms.inf, ms.inf)), ms.ModeSpec(), [F0]).solve()
        assert modes.te_fraction.values[0, 0] > 0.9  # the fundamental quasi-TE mode
        n.append(float(modes.n_eff[0, 0]))
    order, limit = richardson(cells, n)
    print(f"strip n_eff {n}, observed order {order:.2f}, Richardson {limit:.5f}, EIM {n_eim:.5f}")
    # Measured: on nodes 2.48393, 2.48498, 2.48533 → order 2.10, limit 2.48576; faces
    # 0.3/0.7 into cells 2.48111, 2.48367, 2.48457 → order 1.97, limit 2.48577.
    assert 1.8 <= order < 2.5
    assert abs(limit - 2.48576) < 1e-4  # the two placements' limits agree
    assert abs(n[2] - limit) < 1.5e-3
    # Bound 2% (issue): the EIM over-estimates a high-contrast wire (measured 1.8%).
    assert abs(limit - n_eim) / n_eim < 0.02


def test_strip_modes_are_orthogonal_and_power_normalised() -> None:
    modes = ms.ModeSolver(strip_simulation(20), ms.Box(size=(0, ms.inf, ms.inf)), ms.ModeSpec(num_modes=3), [F0]).solve()
    from metosim.kernels.modes import plane_on_grid, simulation_modes

    sim = strip_simulation(20)
    plane, (raw,) = simulation_modes(sim, (0, 0, 0), (0, ms.inf, ms.inf), ms.ModeSpec(num_modes=3), np.array([1 / LAMBDA]), "test")
    overlap = np.array([[0.5 * reciprocal_overlap(raw.E[0][m], raw.E[1][m], np.conj(raw.H[0][k]), np.conj(raw.H[1][k]), plane.steps) for k in range(3)] for m in range(3)])
    # Unit power on the diagonal; bound 1e-6 (issue) off it: measured ~1e-16.
    np.testing.assert_allclose(np.real(np.diag(overlap)), 1.0, atol=1e-9)
    assert np.max(np.abs(overlap - np.diag(np.diag(overlap)))) < 1e-6
    assert np.all(np.diff(modes.n_eff.values[:, 0]) < 0)
    assert plane_on_grid(sim.grid, (0, 0, 0), (0, ms.inf, ms.inf), (False,) * 3).normal == 0


def test_group_index_is_the_frequency_derivative() -> None:
    sim, plane = strip_simulation(16), ms.Box(size=(0, ms.inf, ms.inf))
    d = 1e-4
    n = [float(ms.ModeSolver(sim, plane, ms.ModeSpec(), [F0 * (1 + s)]).solve().n_eff[0, 0]) for s in (-d, d)]
    n_group = float(ms.ModeSolver(sim, plane, ms.ModeSpec(), [F0]).solve().n_group[0, 0])
    n0 = float(ms.ModeSolver(sim, plane, ms.ModeSpec(), [F0]).solve().n_eff[0, 0])
    # n_g = n + f·dn/df (central difference, error O(d²)); the solver's n_g comes from
    # the energy theorem, exact for the transverse-discrete problem.
    assert abs(n_group - (n0 + (n[1] - n[0]) / (2 * d))) < 1e-6
    assert 3.5 < n_group < 5.0  # a silicon wire's group index


def test_bend_mode_moves_outwards_and_straightens_for_large_radii() -> None:
    sim = ms.Simulation(
        size=(1.0, 3.0, 0), grid_spec=ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=20), run_time=1e-15, medium=SILICA,
        structures=[ms.Structure(geometry=ms.Box(size=(ms.inf, 0.4, ms.inf)), medium=ms.Medium(permittivity=12.0))],
    )
    plane = ms.Box(size=(0, 2.4, ms.inf))
    straight = ms.ModeSolver(sim, plane, ms.ModeSpec(filter_pol="te"), [F0]).solve()
    huge = ms.ModeSolver(sim, plane, ms.ModeSpec(filter_pol="te", bend_radius=1e5, bend_axis=1), [F0]).solve()
    tight = ms.ModeSolver(sim, plane, ms.ModeSpec(filter_pol="te", bend_radius=1.5, bend_axis=1), [F0]).solve()
    assert abs(float(huge.n_eff[0, 0]) - float(straight.n_eff[0, 0])) < 1e-6
    # Bent about z with the radial axis y: the mode leans towards +y (outside the bend).
    y = tight.dataset.y.values
    profile = np.abs(tight.dataset["Ey"].isel(mode_index=0, f=0).values[:, 0]) ** 2
    assert np.sum(y * profile) / np.sum(profile) > 0.01
    assert float(tight.n_eff[0, 0]) > float(straight.n_eff[0, 0])  # per arc length at the guide centre
    # A mirror-symmetric guide bent the other way has the same index (no first-order 1/R term).
    mirrored = ms.ModeSolver(sim, plane, ms.ModeSpec(filter_pol="te", bend_radius=-1.5, bend_axis=1), [F0]).solve()
    assert abs(float(mirrored.n_eff[0, 0]) - float(tight.n_eff[0, 0])) < 1e-5
    with pytest.raises(ModeSolverError, match="bend's centre"):
        ms.ModeSolver(sim, plane, ms.ModeSpec(bend_radius=1.0, bend_axis=1), [F0]).solve()


# ------------------------------------------------------------------ sources and monitors in the engine
def straight_guide(three_d: bool, direction: str = "+") -> ms.Simulation:
    """A straight silicon guide with a mode source and monitors either side of it."""
    freqs = F0 * np.linspace(0.9, 1.1, 5)
    port = (0, 1.6, 1.2) if three_d else (0, 2.0, ms.inf)
    x_source = -1.0 if direction == "+" else 1.0
    return ms.Simulation(
        size=(3.0, 2.4 if three_d else 3.0, 2.0 if three_d else 0),
        grid_spec=ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=14 if three_d else 16),
        run_time=300e-15,
        medium=SILICA,
        structures=[ms.Structure(geometry=ms.Box(size=(ms.inf, 0.5, 0.22 if three_d else ms.inf)), medium=SILICON)],
        sources=[ms.ModeSource(center=(x_source, 0, 0), size=port, direction=direction, source_time=ms.GaussianPulse(freq0=F0, fwidth=F0 / 10), num_freqs=5)],
        monitors=[
            ms.ModeMonitor(name="after", center=(-x_source * 0.9, 0, 0), size=port, freqs=freqs),
            ms.ModeMonitor(name="before", center=(x_source * 1.2, 0, 0), size=port, freqs=freqs),
        ],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=10)),
    )


@pytest.mark.parametrize("three_d", [False, True], ids=["2D", "3D"])
def test_straight_guide_transmits_the_mode(three_d: bool) -> None:
    sim = straight_guide(three_d)
    data = ms.solve(sim)
    s21 = data["after"].amps.sel(direction="+", mode_index=0).values
    s11 = data["before"].amps.sel(direction="-", mode_index=0).values
    print(f"straight guide: max ||S21|² − 1| {np.max(np.abs(np.abs(s21) ** 2 - 1)):.1e}, max |S11|² {np.max(np.abs(s11) ** 2):.1e}")
    # Over the pulse band f0 ± fwidth: |S21|² = 1 (measured within 5.3e-6 in 2D, 7.9e-4
    # in 3D), backward |S11|² (measured 9.1e-9 and 4.1e-9).
    np.testing.assert_allclose(np.abs(s21) ** 2, 1.0, atol=2.5e-3)
    assert np.all(np.abs(s11) ** 2 < 3e-8)
    # The phase reference is the source plane: S21 = exp(iβL) with the grid's β.
    x = sim.grid.nodes(0, half=False)
    length = x[np.argmin(np.abs(x - 0.9))] - x[np.argmin(np.abs(x + 1.0))]
    beta = 2 * np.pi * data["after"].f.values / ms.C_0 * 1e-6 * data["after"].n_eff.sel(mode_index=0).values
    assert np.max(np.abs(np.angle(s21 * np.exp(-1j * beta * length)))) < 5e-3


def test_mode_source_launches_backwards_too() -> None:
    data = ms.solve(straight_guide(False, direction="-"))
    np.testing.assert_allclose(np.abs(data["after"].amps.sel(direction="-", mode_index=0).values) ** 2, 1.0, atol=5e-3)
    assert np.all(np.abs(data["before"].amps.sel(direction="+", mode_index=0).values) ** 2 < 1e-3)


def silicon_taper(width_in: float, width_out: float, length: float, reach: float) -> list[ms.Structure]:
    """A silicon guide of ``width_in`` µm along x up to −length/2, a linear taper to
    ``width_out`` over ``length`` (centred on x = 0) and a guide of ``width_out`` beyond;
    each guide ``reach`` µm long."""
    half = length / 2
    return [
        ms.Structure(geometry=ms.Box(center=(-half - reach / 2, 0, 0), size=(reach, width_in, ms.inf)), medium=SILICON),
        ms.Structure(geometry=ms.PolySlab(vertices=[(-half, -width_in / 2), (half, -width_out / 2), (half, width_out / 2), (-half, width_in / 2)], slab_bounds=(-1, 1)), medium=SILICON),
        ms.Structure(geometry=ms.Box(center=(half + reach / 2, 0, 0), size=(reach, width_out, ms.inf)), medium=SILICON),
    ]


def test_taper_conserves_power() -> None:
    """A linear taper 0.4 → 1.4 µm over 1 µm: what leaves in the guided modes, what
    reflects, and what radiates through the sides of a flux box adds up to what went in."""
    freqs = F0 * np.linspace(0.95, 1.05, 3)
    spec = ms.ModeSpec(num_modes=8, filter_pol="te")  # 20 modes give the same guided sum
    sim = ms.Simulation(
        size=(5.0, 4.0, 0),
        grid_spec=ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=18),
        run_time=400e-15,
        medium=SILICA,
        structures=silicon_taper(0.4, 1.4, 1.0, 2.5),
        sources=[ms.ModeSource(center=(-1.6, 0, 0), size=(0, 2.0, ms.inf), mode_spec=ms.ModeSpec(filter_pol="te"), source_time=ms.GaussianPulse(freq0=F0, fwidth=F0 / 10), num_freqs=3)],
        monitors=[
            ms.ModeMonitor(name="in", center=(-1.3, 0, 0), size=(0, 3.0, ms.inf), freqs=freqs, mode_spec=ms.ModeSpec(filter_pol="te")),
            ms.ModeMonitor(name="out", center=(1.6, 0, 0), size=(0, 3.0, ms.inf), freqs=freqs, mode_spec=spec),
            ms.FluxMonitor(name="top", center=(0.15, 1.5, 0), size=(2.9, 0, ms.inf), freqs=freqs),
            ms.FluxMonitor(name="bottom", center=(0.15, -1.5, 0), size=(2.9, 0, ms.inf), freqs=freqs, normal_dir="-"),
        ],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=12)),
    )
    data = ms.solve(sim)
    out = data["out"]
    guided = out.n_eff > 1.444  # modes above the cladding index
    transmitted = (np.abs(out.amps.sel(direction="+")) ** 2).where(guided, 0).sum("mode_index").values
    reflected = np.abs(data["in"].amps.sel(direction="-", mode_index=0).values) ** 2
    radiated = data["top"].values + data["bottom"].values
    total = transmitted + reflected + radiated
    print(f"taper: transmitted {transmitted}, reflected {reflected}, radiated {radiated}, total − 1 {total - 1}")
    assert np.all(transmitted > 0.9)
    # Measured within 1.3e-3 (before each plane's mode was normalised to the power the
    # grid carries, the narrow guide's modes read 0.35% high, which hid the wide guide's
    # higher guided modes: only 4 were counted).
    np.testing.assert_allclose(total, 1.0, atol=4e-3)


def taper_transmission(direction: str) -> float:
    """|S21|² of the fundamental TE mode through a 2D silicon taper 0.5 → 1.5 µm over
    2 µm at 15 cells per wavelength in the silicon, launched from the narrow end (+)
    or from the wide end (−)."""
    te = ms.ModeSpec(filter_pol="te")
    source_x, monitor_x = (-2.0, 2.2) if direction == "+" else (2.0, -2.2)
    sim = ms.Simulation(
        size=(7.0, 4.0, 0),
        grid_spec=ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=15),
        run_time=300e-15,
        medium=SILICA,
        structures=silicon_taper(0.5, 1.5, 2.0, 3.0),
        sources=[ms.ModeSource(center=(source_x, 0, 0), size=(0, 3.0, ms.inf), direction=direction, mode_spec=te, source_time=ms.GaussianPulse(freq0=F0, fwidth=F0 / 10), num_freqs=3)],
        monitors=[ms.ModeMonitor(name="out", center=(monitor_x, 0, 0), size=(0, 3.0, ms.inf), freqs=[F0], mode_spec=te)],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=12)),
    )
    return float(np.abs(ms.solve(sim)["out"].amps.sel(direction=direction, mode_index=0).values[0]) ** 2)


def test_taper_is_reciprocal_on_a_coarse_grid() -> None:
    """Reciprocity: |S21|² = |S12|² between modes of planes of different width. Each
    plane's modes carry unit power as the grid carries it (the Yee H half a cell either
    side of the plane), so |amp|² is power on every grid: before, forward/backward read
    1.0070 here (the continuum-normalised modes carried cos(βΔn/2) of their power)."""
    forward, backward = taper_transmission("+"), taper_transmission("-")
    print(f"taper: forward {forward:.5f}, backward {backward:.5f}, ratio {forward / backward:.5f}")
    # Measured 2e-5 apart (relative); the bound 1e-3.
    assert abs(forward / backward - 1) < 1e-4
    assert forward <= 1 and backward <= 1


def test_directional_coupler_follows_coupled_mode_theory() -> None:
    """Two parallel silicon guides: light launched in one crosses to the other as
    sin²(π·Δn·L/λ), Δn from the solver's even and odd supermodes. At L = L_c/2 half
    the power has crossed."""
    width, gap = 0.4, 0.15
    centre = (width + gap) / 2
    base = dict(
        grid_spec=ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=16),
        medium=SILICA,
        structures=[
            ms.Structure(geometry=ms.Box(center=(0, -centre, 0), size=(ms.inf, width, ms.inf)), medium=SILICON),
            ms.Structure(geometry=ms.Box(center=(0, centre, 0), size=(ms.inf, width, ms.inf)), medium=SILICON),
        ],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=12)),
    )
    probe = ms.Simulation(size=(1.0, 4.0, 0), run_time=1e-15, **base)
    supermodes = ms.ModeSolver(probe, ms.Box(size=(0, ms.inf, ms.inf)), ms.ModeSpec(num_modes=2, filter_pol="te"), [F0]).solve()
    delta_n = float(supermodes.n_eff[0, 0] - supermodes.n_eff[1, 0])
    half_coupling = LAMBDA / (4 * delta_n)  # L_c/2 = λ/(4Δn)
    x_source = -half_coupling / 2
    sim = ms.Simulation(
        size=(half_coupling + 2.4, 4.0, 0),
        run_time=600e-15,
        sources=[ms.ModeSource(center=(x_source, -centre - 0.3, 0), size=(0, 1.2, ms.inf), mode_spec=ms.ModeSpec(filter_pol="te"), source_time=ms.GaussianPulse(freq0=F0, fwidth=F0 / 20), num_freqs=3)],
        monitors=[
            ms.ModeMonitor(name="cross", center=(x_source + half_coupling, centre + 0.3, 0), size=(0, 1.2, ms.inf), freqs=[F0], mode_spec=ms.ModeSpec(filter_pol="te")),
            ms.ModeMonitor(name="bar", center=(x_source + half_coupling, -centre - 0.3, 0), size=(0, 1.2, ms.inf), freqs=[F0], mode_spec=ms.ModeSpec(filter_pol="te")),
        ],
        **base,
    )
    data = ms.solve(sim)
    cross = float(np.abs(data["cross"].amps.sel(direction="+", mode_index=0, f=F0)) ** 2)
    bar = float(np.abs(data["bar"].amps.sel(direction="+", mode_index=0, f=F0)) ** 2)
    print(f"coupler: Δn {delta_n:.4f}, L_c/2 {half_coupling:.3f} µm, cross {cross:.4f}, bar {bar:.4f}")
    # Bound 3% (issue) at L = L_c/2.
    assert abs(cross - 0.5) < 0.03 * 0.5
    assert abs(cross + bar - 1.0) < 0.03


# ------------------------------------------------------------------ resonance finder
def test_resonance_finder_on_noisy_damped_sinusoids() -> None:
    rng = np.random.default_rng(7)
    dt = 5e-17
    t = np.arange(60_000) * dt
    truth = [(190e12, 2000.0, 1.0, 0.3), (195e12, 500.0, 0.5, -1.0)]
    x = sum(a * np.exp(-np.pi * f / q * t) * np.cos(2 * np.pi * f * t + p) for f, q, a, p in truth)
    x = x + 1e-4 * rng.standard_normal(t.size)
    found = ms.ResonanceFinder(freq_window=(185e12, 200e12)).run_raw_signal(x, dt)
    assert found.sizes["resonance"] == 2
    for (f, q, a, p), k in zip(truth, range(2)):
        # Bounds from the issue: f within 1e-6 relative, Q within 1%.
        assert abs(found.freq.values[k] - f) / f < 1e-6
        assert abs(found.Q.values[k] - q) / q < 0.01
        assert abs(found.amplitude.values[k] - a) / a < 0.01
        assert found.error.values[k] < 1e-4


def test_resonance_finder_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="freq_window"):
        ms.ResonanceFinder(freq_window=(2e14, 1e14))
    with pytest.raises(ValueError, match="too short"):
        ms.ResonanceFinder(freq_window=(1.9e14, 1.91e14)).run_raw_signal(np.ones(6), 1e-17)


# ------------------------------------------------------------------ bad input
# ------------------------------------------------------------------ a guide crossing the plane at an angle
def tilted(structure_width: float, angle: float, medium: ms.Medium) -> ms.Structure:
    """A straight guide through the origin along (cos, sin)(``angle``) in the xy plane."""
    d, p = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    ends = [-8 * d - structure_width / 2 * p, 8 * d - structure_width / 2 * p, 8 * d + structure_width / 2 * p, -8 * d + structure_width / 2 * p]
    return ms.Structure(geometry=ms.PolySlab(vertices=[tuple(v) for v in ends], slab_bounds=(-1, 1)), medium=medium)


def test_angled_modes_match_the_slab_dispersion_relation() -> None:
    """The x-normal plane's cut of a slab tilted by θ in the xy plane, solved at
    angle_theta = θ, has the slab's own n_eff. E along z (parallel to the faces, not
    rotated) converges at second order; E in the plane (rotated) at first: the grid
    smooths a slanted face for its x and y components, not for the tilted frame."""
    exact = {"z": slab_neff(3, 1.5, 0.4, 2 * np.pi, "TE", 0), "plane": slab_neff(3, 1.5, 0.4, 2 * np.pi, "TM", 0)}
    errors = {}
    for steps in (80, 160):
        for degrees in (20, 40):
            theta = np.radians(degrees)
            sim = ms.Simulation(size=(1.0, 4.0, 0), grid_spec=ms.GridSpec.uniform(1 / steps), run_time=1e-15, medium=ms.Medium(permittivity=2.25), structures=[tilted(0.4, theta, ms.Medium(permittivity=9.0))])
            for name, pol in (("z", "tm"), ("plane", "te")):
                data = ms.ModeSolver(sim, ms.Box(size=(0, ms.inf, ms.inf)), ms.ModeSpec(filter_pol=pol, angle_theta=theta), [ms.C_0 / 1e-6]).solve()
                errors[name, degrees, steps] = abs(float(data.n_eff[0, 0]) - exact[name])
    print({k: f"{v:.2e}" for k, v in errors.items()})
    for degrees in (20, 40):
        # Measured at 160/µm: 8.0e-5 and 9.2e-5 (E along z), 3.0e-4 and 8.7e-4 (in the plane);
        # halving the step divides them by 3.95–3.99 and 2.1–2.0.
        assert errors["z", degrees, 160] < 1.2e-4 and errors["z", degrees, 80] / errors["z", degrees, 160] > 3.5
        assert errors["plane", degrees, 160] < 1.2e-3 and errors["plane", degrees, 80] / errors["plane", degrees, 160] > 1.8


def tilted_guide(angle: float, pol: str, angled: bool = True, direction: str = "+") -> ms.Simulation:
    """A silicon guide (0.5 µm, 2D) at ``angle`` to x, a mode source and monitors on x-normal
    planes on its axis, at the guide's angle (``angled``) or square to x."""
    spec = ms.ModeSpec(filter_pol=pol, angle_theta=abs(angle) if angled else 0.0, angle_phi=0.0 if angle >= 0 else np.pi)
    x_source = -1.2 if direction == "+" else 1.2
    on_axis = lambda x: (x, x * np.tan(angle), 0)  # noqa: E731
    port = (0, 1.6, ms.inf)
    freqs = F0 * np.linspace(0.95, 1.05, 3)
    return ms.Simulation(
        size=(4.0, 4.0, 0),
        grid_spec=ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=16),
        run_time=300e-15,
        medium=SILICA,
        structures=[tilted(0.5, angle, SILICON)],
        sources=[ms.ModeSource(center=on_axis(x_source), size=port, direction=direction, mode_spec=spec, source_time=ms.GaussianPulse(freq0=F0, fwidth=F0 / 10), num_freqs=5)],
        monitors=[
            ms.ModeMonitor(name="after", center=on_axis(-0.9 * x_source), size=port, freqs=freqs, mode_spec=spec),
            ms.ModeMonitor(name="before", center=on_axis(1.3 * x_source), size=port, freqs=freqs, mode_spec=spec),
        ],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=12)),
    )


@pytest.mark.parametrize(
    ("degrees", "pol", "direction", "bound"),
    # Measured |1 − |S21|²|: 2.9e-3 (E in the plane), 1.0e-4 (E along z), 2.3e-3 (backwards, tilted to −y).
    [(30, "te", "+", 4e-3), (30, "tm", "+", 3e-4), (-30, "te", "-", 4e-3)],
    ids=["E-in-plane", "E-along-z", "backwards-to-minus-y"],
)
def test_angled_mode_source_and_monitors_on_a_tilted_guide(degrees: int, pol: str, direction: str, bound: float) -> None:
    back = "-" if direction == "+" else "+"
    data = ms.solve(tilted_guide(np.radians(degrees), pol, direction=direction))
    through = np.abs(data["after"].amps.sel(direction=direction, mode_index=0).values) ** 2
    behind = np.abs(data["before"].amps.sel(direction=back, mode_index=0).values) ** 2
    returned = np.abs(data["after"].amps.sel(direction=back, mode_index=0).values) ** 2
    print(f"tilted {degrees}° {pol} {direction}: |S21|² {through}, behind the source {behind.max():.1e}, back at the monitor {returned.max():.1e}")
    np.testing.assert_allclose(through, 1.0, atol=bound)
    # Measured ≤ 2.5e-4 behind the source (what the source sends the wrong way) and ≤ 5.5e-5 back.
    assert behind.max() < 5e-4 and returned.max() < 1e-4


def test_a_square_plane_on_a_tilted_guide_misses_power() -> None:
    """Without the angle, the same planes couple 0.70–0.84 of the power: the angle is
    what makes the tilted guide transmit."""
    data = ms.solve(tilted_guide(np.radians(15), "te", angled=False))
    assert np.all(np.abs(data["after"].amps.sel(direction="+", mode_index=0).values) ** 2 < 0.9)


def test_mode_models_name_the_field_and_reason() -> None:
    pulse = ms.GaussianPulse(freq0=F0, fwidth=F0 / 10)
    with pytest.raises(ValidationError, match="mode_index 1 needs mode_spec.num_modes"):
        ms.ModeSource(center=(0, 0, 0), size=(0, 1, 1), source_time=pulse, mode_index=1)
    with pytest.raises(ValidationError, match="size 0 along exactly one axis"):
        ms.ModeSource(center=(0, 0, 0), size=(0, 1, 0), source_time=pulse)
    with pytest.raises(ValidationError, match="size 0 along exactly one axis"):
        ms.ModeMonitor(name="m", size=(1, 1, 1), freqs=[F0])
    with pytest.raises(ValidationError, match="bend_axis"):
        ms.ModeSpec(bend_radius=5.0)
    with pytest.raises(ValidationError, match="num_freqs must be 1"):
        ms.ModeSource(center=(0, 0, 0), size=(0, 1, 1), source_time=ms.ContinuousWave(freq0=F0, fwidth=F0 / 10), num_freqs=3)
    with pytest.raises(ValidationError) as outside:
        straight_guide(False).model_copy(update={}).model_validate(
            {**straight_guide(False).model_dump(), "monitors": [ms.ModeMonitor(name="far", center=(9, 0, 0), size=(0, 1, ms.inf), freqs=[F0]).model_dump()]}
        )
    assert outside.value.errors()[0]["loc"] == ("monitors", 0, "center")
    with pytest.raises(ValidationError, match="off the tangential axes"):
        ms.ModeSpec(angle_theta=0.3, angle_phi=1.0)
    with pytest.raises(ValidationError, match="angle_theta and bend_radius"):
        ms.ModeSpec(angle_theta=0.3, bend_radius=5.0, bend_axis=0)
    towards_z = ms.ModeMonitor(name="m", size=(0, 1, ms.inf), freqs=[F0], mode_spec=ms.ModeSpec(angle_theta=0.2, angle_phi=np.pi / 2))
    with pytest.raises(ValidationError) as flat:
        ms.Simulation.model_validate({**straight_guide(False).model_dump(), "monitors": [towards_z.model_dump()]})
    (error,) = flat.value.errors()
    assert error["loc"] == ("monitors", 0, "mode_spec", "angle_phi") and "tilts the guide along z, an axis of zero simulation size" in error["msg"]


def test_a_plane_without_a_guide_is_refused_before_stepping() -> None:
    sim = straight_guide(False)
    empty = sim.model_copy(update={"structures": ()})
    with pytest.raises(EngineInputError, match=r"sources\[0\].*no guided mode.*searched near n_eff = 1\.444.*does the plane cross a waveguide"):
        ms.solve(empty)
    with pytest.raises(ModeSolverError, match="ModeSolver: no guided mode"):
        ms.ModeSolver(empty, ms.Box(size=(0, 2, ms.inf)), freqs=[F0]).solve()
    with pytest.raises(ValueError, match="zero-size axis"):
        ms.ModeSolver(sim, ms.Box(size=(1, 1, 0)), freqs=[F0])


def test_mode_solver_data_plots_and_reprs() -> None:
    modes = ms.ModeSolver(strip_simulation(12), ms.Box(size=(0, 2.0, 1.6)), ms.ModeSpec(num_modes=2), [F0, 1.05 * F0]).solve()
    assert modes.dataset["Ey"].dims == ("mode_index", "f", "y", "z")
    ax = modes.plot_field("Ey", mode_index=0)
    assert "n_eff = 2.4" in ax.get_title() and len([p for p in ax.patches if not p.get_fill()]) == 1
    assert "<table>" in modes._repr_html_() and "n_group" in repr(modes)
    np.testing.assert_array_less(np.abs(modes.k_eff.values), 1e-9)


def test_pml_planes_keep_guided_modes_and_show_bend_loss() -> None:
    """PML layers at the plane's edges: a straight guide's mode is unchanged and
    lossless, a bend's mode leaks (k_eff > 0) more as the radius shrinks; the
    absorber's own modes (|k_eff| ≳ 0.1) are ordered after the guided ones."""
    sim = ms.Simulation(
        size=(1.0, 6.0, 0), grid_spec=ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=20), run_time=1e-15, medium=SILICA,
        structures=[ms.Structure(geometry=ms.Box(size=(ms.inf, 0.4, ms.inf)), medium=ms.Medium(permittivity=4.0))],
    )
    plane = ms.Box(size=(0, 5.0, ms.inf))

    def mode(**spec: object) -> tuple[float, float]:
        solved = ms.ModeSolver(sim, plane, ms.ModeSpec(filter_pol="te", **spec), [F0]).solve()
        return float(solved.n_eff[0, 0]), float(solved.k_eff[0, 0])

    walls, absorbed = mode(), mode(num_pml=(15, 0))
    assert abs(walls[0] - absorbed[0]) < 1e-6 and abs(absorbed[1]) < 1e-6
    gentle, tighter = mode(num_pml=(15, 0), bend_radius=40.0, bend_axis=1), mode(num_pml=(15, 0), bend_radius=20.0, bend_axis=1)
    # Measured: k_eff ≈ −1e-7 (rounding) at R = 40 µm, 6e-6 at R = 20 µm for this
    # low-contrast (n 2.0 in 1.444) guide.
    assert tighter[1] > 1e-6 and tighter[1] > 10 * abs(gentle[1])
    assert walls[0] < gentle[0] < tighter[0] < walls[0] + 0.01


def test_mode_solver_data_round_trips_through_hdf5() -> None:
    import io
    import warnings

    sim = slab_simulation(12, 0.43, offset=0.0)
    plane = ms.Box(center=(0.1, 0, 0), size=(0, ms.inf, ms.inf))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # two modes exist: nothing to warn about
        modes = ms.ModeSolver(sim, plane, ms.ModeSpec(num_modes=2), [F0, 1.1 * F0]).solve()
    buffer = io.BytesIO()
    modes.to_hdf5(buffer)
    back = ms.ModeSolverData.from_hdf5(io.BytesIO(buffer.getvalue()))
    assert back.plane == plane and back.simulation == sim
    assert set(back.dataset.data_vars) == set(modes.dataset.data_vars)
    for name in modes.dataset.data_vars:
        np.testing.assert_array_equal(back.dataset[name].values, modes.dataset[name].values)
        assert back.dataset[name].dims == modes.dataset[name].dims
    np.testing.assert_array_equal(back.n_eff.values, modes.n_eff.values)
    with pytest.raises(ValueError, match="not a MetoSim mode solver file"):
        ms.ModeSolverData.from_hdf5(io.BytesIO(_results_file()))


def _results_file() -> bytes:
    import io

    buffer = io.BytesIO()
    ms.SimulationData(slab_simulation(12, 0.43, offset=0.0), {}, {}).to_hdf5(buffer)
    return buffer.getvalue()


def test_fewer_guided_modes_than_asked_is_a_warning_naming_the_plane() -> None:
    sim = slab_simulation(12, 0.43, offset=0.0)
    with pytest.warns(UserWarning, match=r"ModeSolver: \d guided mode\(s\) on the plane at .* fewer than the 12 asked for") as caught:
        modes = ms.ModeSolver(sim, ms.Box(size=(0, ms.inf, ms.inf)), ms.ModeSpec(num_modes=12), [F0, 1.05 * F0]).solve()
    assert len([w for w in caught if "guided mode" in str(w.message)]) == 1  # once per plane, not per frequency
    guided = int(str(caught[0].message).split("ModeSolver: ")[1].split()[0])
    assert 0 < guided < 12 and np.all(modes.n_eff.values[:guided, 0] > 1.5)


def two_guides() -> ms.Simulation:
    """Two far-apart 2D guides (z-invariant, along x) whose indices cross with frequency:
    a wide n = 2 guide (y < 0) and a thin n = 3.2 one (y > 0), steeper in dispersion:
    its n_eff falls below the wide guide's near λ = 1.5 µm."""
    return ms.Simulation(
        size=(1.0, 6.0, 0),
        grid_spec=ms.GridSpec.uniform(0.02),
        run_time=1e-15,
        medium=ms.Medium(permittivity=1.45**2),
        structures=[
            ms.Structure(geometry=ms.Box(center=(0, -1.2, 0), size=(ms.inf, 0.8, ms.inf)), medium=ms.Medium(permittivity=2.0**2)),
            ms.Structure(geometry=ms.Box(center=(0, 1.2, 0), size=(ms.inf, 0.08, ms.inf)), medium=ms.Medium(permittivity=3.2**2)),
        ],
    )


def test_tracked_modes_keep_their_index_across_a_crossing_of_n_eff() -> None:
    sim, plane = two_guides(), ms.Box(size=(0, ms.inf, ms.inf))
    freqs = ms.C_0 / (np.linspace(0.6, 2.4, 9) * 1e-6)
    spec = ms.ModeSpec(num_modes=2, filter_pol="tm")  # E along z (the TE-like slab modes of both guides)

    def in_wide_guide(modes: ms.ModeSolverData) -> np.ndarray:
        """Share of |Ez|² in the wide guide's half (y < 0), per mode and frequency."""
        power = np.abs(modes.dataset["Ez"]) ** 2
        return (power.where(power.y < 0).sum(("y", "z")) / power.sum(("y", "z"))).values

    tracked = ms.ModeSolver(sim, plane, spec, freqs).solve()
    sorted_each = ms.ModeSolver(sim, plane, spec.model_copy(update={"track_freq": None}), freqs).solve()
    where_untracked = in_wide_guide(sorted_each)[0] > 0.5
    assert where_untracked.any() and not where_untracked.all()  # untracked: mode 0 jumps between guides
    where = in_wide_guide(tracked) > 0.5
    # Tracked: each index stays in one guide at every frequency, the two in different ones.
    assert np.all(where[0] == where[0][0]) and np.all(where[1] == where[1][0]) and where[0][0] != where[1][0]
    # Ordered by n_eff at the central frequency, as without tracking there.
    centre = len(freqs) // 2
    np.testing.assert_allclose(tracked.n_eff.values[:, centre], sorted_each.n_eff.values[:, centre])


def test_interpolated_modes_match_solving_every_frequency() -> None:
    """ModeSpec(interp_freqs=7): a silicon strip's two modes at 21 frequencies over
    1.5–1.6 µm (±3%) from 7 Chebyshev points equal the 21 direct solves."""
    sim = strip_simulation(20)
    plane = ms.Box(size=(0, ms.inf, ms.inf))
    freqs = list(ms.C_0 / (np.linspace(1.5, 1.6, 21) * 1e-6))
    direct = ms.ModeSolver(sim, plane, ms.ModeSpec(num_modes=2), freqs).solve()
    interpolated = ms.ModeSolver(sim, plane, ms.ModeSpec(num_modes=2, interp_freqs=7), freqs).solve()
    dn = np.max(np.abs(interpolated.n_eff.values - direct.n_eff.values))
    field = max(np.max(np.abs(interpolated.dataset[c].values - direct.dataset[c].values)) / np.max(np.abs(direct.dataset[c].values)) for c in ("Ex", "Ey", "Ez", "Hx", "Hy", "Hz"))
    print(f"max |Δn_eff| {dn:.1e}, max field error {field:.1e} of the peak")
    # Measured 6e-10 and 1.5e-9 (41 frequencies: the same).
    assert dn < 5e-9
    assert field < 1.5e-8


def test_a_mode_monitor_with_interpolated_modes_reads_the_same_amplitudes() -> None:
    """A 2D guide's mode monitor over 31 frequencies: amplitudes with modes interpolated
    from 5 points against modes solved at every frequency."""
    freqs = list(ms.C_0 / (np.linspace(1.5, 1.6, 31) * 1e-6))

    def guide(spec: ms.ModeSpec) -> ms.Simulation:
        port = dict(size=(0, 2.0, ms.inf))
        return ms.Simulation(
            size=(4.0, 3.0, 0), grid_spec=ms.GridSpec.uniform(0.03), run_time=300e-15, medium=SILICA,
            structures=[ms.Structure(geometry=ms.Box(center=(0.5, 0, 0), size=(ms.inf, 0.45, ms.inf)), medium=SILICON),
                        ms.Structure(geometry=ms.Box(center=(-1.5, 0, 0), size=(2.0, 0.45, ms.inf)), medium=SILICON)],
            sources=[ms.ModeSource(center=(-1.2, 0, 0), **port, source_time=ms.GaussianPulse(freq0=F0, fwidth=F0 / 8), num_freqs=3)],
            monitors=[ms.ModeMonitor(name="out", center=(1.2, 0, 0), **port, freqs=freqs, mode_spec=spec)],
            boundary_spec=ms.BoundarySpec.all_sides(ms.PML()),
        )

    direct = ms.solve(guide(ms.ModeSpec(num_modes=2)))["out"].amps.values
    interpolated = ms.solve(guide(ms.ModeSpec(num_modes=2, interp_freqs=5)))["out"].amps.values
    error = np.max(np.abs(interpolated - direct))
    print(f"max |Δ amplitude| {error:.1e}")
    assert np.max(np.abs(direct[0, 0])) > 0.9
    assert error < 2e-9  # measured 2.1e-10


def test_a_mode_monitor_keeps_its_modes_on_request(tmp_path) -> None:
    """ModeMonitor(store_fields=True): the result carries the modes it projected on —
    their profiles on the plane at unit power, like ms.ModeSolver's — and they survive
    the HDF5 round trip."""
    port = dict(size=(0, 2.0, ms.inf))
    freqs = [F0 * 0.98, F0, F0 * 1.02]
    sim = ms.Simulation(
        size=(3.0, 3.0, 0), grid_spec=ms.GridSpec.uniform(0.03), run_time=100e-15, medium=SILICA,
        structures=[ms.Structure(geometry=ms.Box(size=(ms.inf, 0.45, ms.inf)), medium=SILICON)],
        sources=[ms.ModeSource(center=(-0.8, 0, 0), **port, source_time=ms.GaussianPulse(freq0=F0, fwidth=F0 / 8))],
        monitors=[ms.ModeMonitor(name="kept", center=(0.8, 0, 0), **port, freqs=freqs, mode_spec=ms.ModeSpec(num_modes=2), store_fields=True),
                  ms.ModeMonitor(name="plain", center=(0.8, 0, 0), **port, freqs=freqs, mode_spec=ms.ModeSpec(num_modes=2))],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML()),
    )
    data = ms.solve(sim)
    kept, plain = data["kept"], data["plain"]
    assert "Ez" not in plain and kept["Ez"].dims == ("mode_index", "f", "y", "z")
    np.testing.assert_array_equal(kept.amps.values, plain.amps.values)
    np.testing.assert_allclose(np.real(kept.n_complex.values), kept.n_eff.values)
    # Unit power as the grid carries it: ½ Re ∫ (E × H*)·x̂ dy = 1/cos(βΔx/2) for the
    # profiles colocated on nodes (the Yee H sits half a cell either side of the plane).
    y = kept.y.values
    fields = kept.isel(z=0)
    power = 0.5 * np.real(np.trapezoid(fields.Ey * np.conj(fields.Hz) - fields.Ez * np.conj(fields.Hy), x=y, axis=-1))
    beta = 2 * np.pi * kept.n_eff.values * np.asarray(freqs) / (ms.C_0 * 1e6)
    carried = np.abs(power) * np.cos(beta * 0.03 / 2)
    print(f"carried power {carried.min():.4f}…{carried.max():.4f}")
    # Measured 0.9947–1.0000: the colocated nodes' trapezoid is not the grid's own sum.
    np.testing.assert_allclose(carried, 1.0, atol=1e-2)
    data.to_hdf5(tmp_path / "kept.h5")
    again = ms.SimulationData.from_hdf5(tmp_path / "kept.h5")["kept"]
    np.testing.assert_array_equal(again.Ez.values, kept.Ez.values)
