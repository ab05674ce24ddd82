"""Inverse design: gradients through the engine against the transfer-matrix
derivative and against central finite differences, checkpointing against storing
every step, the pixel medium against an ordinary structure, the optimiser's state
round trip, and bad input."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import ValidationError

import metosim as ms
from metosim.inverse.examples import waveguide_bend
from metosim.kernels.gradient import differentiable_solve

from .test_physics import BAND, slab_line
from .conftest import F_UNIT


def small_bend(**kwargs) -> ms.InverseProblem:
    """A coarse, short version of the tutorial bend: cheap enough to differentiate
    many times in a test."""
    options = dict(region=1.0, wavelengths=(1.55,), steps_per_wvl=8, pixel_size=0.1, filter_radius=0.15, run_time=120e-15, precision="float64")
    return waveguide_bend(**{**options, **kwargs})


def airy_reflection(eps: float, d: float, f: np.ndarray) -> jnp.ndarray:
    """Normal-incidence reflectance of a slab (ε, thickness d µm) in air at f (c/µm)."""
    n = jnp.sqrt(eps)
    r12 = (1 - n) / (1 + n)
    phase = jnp.exp(2j * 2 * jnp.pi * n * d * f)
    return jnp.abs(r12 * (1 - phase) / (1 - r12**2 * phase)) ** 2


def test_slab_reflection_derivatives_match_the_transfer_matrix() -> None:
    """dR/dε and dR/dd of a slab (n = 1.5, d ≈ 0.5 µm) from reverse mode through the
    engine against the derivative of the Airy formula, per frequency."""
    dz, pixels, eps, d = 0.005, 120, 1.5**2, 0.5025  # d mid-pixel: the fill is smooth there
    box = ms.Box(center=(pixels * dz / 2, 0, 0), size=(pixels * dz, ms.inf, ms.inf))

    def slab(eps: float, d: float) -> jnp.ndarray:
        """The slab as pixel permittivities: full pixels, and a partly filled one at d."""
        fill = jnp.clip((d - dz * jnp.arange(pixels)) / dz, 0, 1)
        return (1 + (eps - 1) * fill).reshape(pixels, 1, 1)

    design = ms.Structure(name="slab", geometry=box, medium=ms.CustomMedium.from_array(np.asarray(slab(eps, d))))
    sim = slab_line([design], dl=dz, precision="float64", shutoff=0)
    f = BAND / F_UNIT
    with jax.enable_x64(True):
        solve = differentiable_solve(sim, "slab")
        engine = jax.jacrev(lambda e, t: solve(slab(e, t))["R"], argnums=(0, 1))(eps, d)
        exact = jax.jacrev(airy_reflection, argnums=(0, 1))(eps, d, f)
    for name, got, want in zip(("dR/dε", "dR/dd"), engine, exact):
        error = np.max(np.abs(np.asarray(got) - np.asarray(want))) / np.max(np.abs(want))
        print(f"{name}: max error {error:.2e} of the largest derivative")
        # Measured 0.16% and 0.21% at 200 cells per wavelength in the slab.
        assert error < 5e-3


def test_gradient_matches_central_differences() -> None:
    """The full chain ρ → filter → projection → ε → solve → mode objective, float64:
    the gradient along 5 random directions against central differences."""
    problem = small_bend()
    evaluator = ms.inverse.Evaluator(problem)
    rng = np.random.default_rng(7)
    rho = rng.uniform(0.3, 0.7, problem.shape)
    beta = 4.0
    loss, grad, _ = evaluator.value_and_grad(rho, beta)
    assert loss < 0  # maximising: the loss is minus a transmission
    for _ in range(5):
        v = rng.normal(size=rho.shape)
        v /= np.linalg.norm(v)
        h = 1e-4
        fd = (evaluator.loss(rho + h * v, beta)[0] - evaluator.loss(rho - h * v, beta)[0]) / (2 * h)
        ad = float(np.sum(grad * v))
        print(f"directional derivative: adjoint {ad:.8e}, central difference {fd:.8e}, relative {abs(ad - fd) / abs(fd):.1e}")
        # Measured 5e-8 at worst (the difference is O(h²) and rounding).
        assert abs(ad - fd) < 2e-7 * abs(fd)


#: PMC and PEC minus walls (a mirror plane's two kinds), CPML and PMC plus faces, periodic z.
WALLS = ms.BoundarySpec(
    x=ms.Boundary(minus=ms.PMCBoundary(), plus=ms.PML(num_layers=3)),
    y=ms.Boundary(minus=ms.PECBoundary(), plus=ms.PMCBoundary()),
    z=ms.Boundary(minus=ms.Periodic(), plus=ms.Periodic()),
)

ADJOINT_CASES = {
    "3D CPML, Drude poles": ((3, 3, 3), ms.BoundarySpec.all_sides(ms.PML(num_layers=3)), ms.Drude(eps_inf=2.0, poles=[(5e14, 1e13)])),
    "2D periodic x, PMC y, lossy": (
        (3, 3, 0),
        ms.BoundarySpec(x=ms.Boundary(minus=ms.Periodic(), plus=ms.Periodic()), y=ms.Boundary(minus=ms.PMCBoundary(), plus=ms.PMCBoundary())),
        ms.Medium(permittivity=3.0, conductivity=0.1),
    ),
    "3D PMC/CPML x, PEC/PMC y, periodic z": ((3, 3, 3), WALLS, ms.Lorentz(eps_inf=1.5, poles=[(0.8, 2.5e14, 1e13)])),
    # A mirror wall's design window (the symmetric differentiable solve) starts on it.
    "3D PMC x, PEC y, periodic z, design on the minus walls": ((3, 3, 3), WALLS, ms.Medium(permittivity=3.0)),
    "3D graded x and y, CPML, Lorentz poles": ((3, 3, 3), ms.BoundarySpec.all_sides(ms.PML(num_layers=3)), ms.Lorentz(eps_inf=1.5, poles=[(0.8, 2.5e14, 1e13)])),
}


def graded_coords(size: float, cells: int, swing: float = 0.2) -> np.ndarray:
    """Cell boundaries over [−size/2, size/2] (µm) whose steps swing by ±``swing`` about
    the mean (adjacent steps within the grid's 1.25 ratio)."""
    xi = np.linspace(-size / 2, size / 2, cells + 1)
    return xi + swing * size / (2 * np.pi * 2) * np.sin(2 * np.pi * 2 * (xi + size / 2) / size)


@pytest.mark.parametrize("case", list(ADJOINT_CASES))
def test_hand_written_adjoint_step_is_the_transpose_of_the_step(case: str) -> None:
    """The adjoint step against ``jax.vjp`` of the forward step on random fields and
    cotangents: every boundary kind, CPML ψ, dispersive poles, conductivity, a point
    source, a flux monitor's DFT and a design window on each E component."""
    from metosim.kernels.adjoint import make_adjoint_step
    from metosim.kernels.solver import _setup
    from metosim.kernels.yee import design_cb, jax_ops, make_step, polarisation_change, window_drive

    size, boundaries, medium = ADJOINT_CASES[case]
    f0 = 2e14
    graded = "graded" in case
    sim = ms.Simulation(
        size=size,
        grid_spec=ms.GridSpec.custom(x=graded_coords(3, 15), y=graded_coords(3, 15), dl=0.2) if graded else ms.GridSpec.uniform(0.2),
        run_time=20e-15,
        precision="float64",
        structures=[ms.Structure(geometry=ms.Box(center=(0.3, 0, 0), size=(0.8, 0.8, 0.8)), medium=medium)],
        sources=[ms.PointDipole(center=(-0.5, 0, 0), polarization="Ez", source_time=ms.GaussianPulse(freq0=f0, fwidth=f0 / 4))],
        monitors=[ms.FluxMonitor(name="flux", center=(0.6, 0, 0), size=(0, 1.2, 1.2), freqs=[f0, 1.1 * f0])],
        boundary_spec=boundaries,
    )
    rng = np.random.default_rng(0)

    def noise(x):
        shape = np.shape(x)
        return jnp.asarray(rng.normal(size=shape) + 1j * rng.normal(size=shape) if np.iscomplexobj(x) else rng.normal(size=shape))

    fields = ("E", "H", "psi", "P", "P_prev")
    with jax.enable_x64(True):
        problem = _setup(sim)
        layout = problem.layout
        assert any(layout.graded) == graded
        start = 0 if "minus walls" in case else None
        window = tuple((slice(n // 2 - 2, n // 2 + 2) if start is None else slice(start, start + 4)) if a else slice(0, 1) for n, a in zip(layout.shape, layout.active))
        layout = dataclasses.replace(layout, design=tuple((p, window) for p in range(3)), snapshots=())
        state = {**{k: jax.tree.map(noise, problem.state[k]) for k in (*fields, "dft")}, "snap": {}}
        dcb = [noise(np.zeros((4, 4, 4 if layout.active[2] else 1))) for _ in range(3)]
        # A step whose fields the DFTs take (every dft_every-th), so their transpose counts.
        step, n = make_step(layout, jax_ops()), jnp.asarray(8 * layout.dft_every - 1)

        def forward(state: dict, dcb: list) -> dict:
            after = step(state, {**problem.params, "design_dcb": dcb}, n)
            return {k: after[k] for k in (*fields, "dft")}

        after, vjp = jax.vjp(forward, state, dcb)
        ct = jax.tree.map(noise, after)
        want_state, want_dcb = vjp(ct)
        # The adjoint transposes the same update written with Δcb folded into cb.
        drives = [window_drive(after["H"], polarisation_change(after, p), p, window, layout, jnp, problem.params.get("inv_steps")) for p in range(3)]
        params = {**problem.params, "design_dcb": dcb}
        adjoint = jax.jit(make_adjoint_step(layout))
        got_state, got_dcb = adjoint({k: ct[k] for k in fields}, ct["dft"], {**params, "cb": design_cb(params, layout)}, n, drives)
        want, got = jax.tree.leaves({k: want_state[k] for k in fields}) + list(want_dcb), jax.tree.leaves(got_state) + list(got_dcb)
        assert len(got) == len(want) >= 9  # E, H and Δcb at least
        for g, w in zip(got, want):
            # The same sums in another order: equal to rounding.
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-13 * float(jnp.max(jnp.abs(w))))


@pytest.mark.parametrize("reversal", [True, False], ids=["box run backwards", "drives stored"])
def test_checkpointed_gradient_equals_stored_steps(reversal: bool) -> None:
    """The hand-written adjoint in checkpointed segments — the design's fields from
    the box around it run backwards, or stored per step — against JAX's own reverse
    mode through every step."""
    problem = small_bend()
    rho = np.random.default_rng(3).uniform(0, 1, problem.shape)
    stored = ms.inverse.Evaluator(problem, checkpoint=False)
    segmented = ms.inverse.Evaluator(problem, segment_steps=37, reversal=reversal)  # not a divisor of the step count
    assert stored.solve.segment_steps == stored.solve.num_steps
    assert segmented.solve.num_steps % 37 != 0 and segmented.solve.reversal is reversal
    loss_a, grad_a, _ = stored.value_and_grad(rho, 8.0)
    loss_b, grad_b, _ = segmented.value_and_grad(rho, 8.0)
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    # The same arithmetic recomputed (and, run backwards, one rounding per step): equal to rounding.
    np.testing.assert_allclose(grad_b, grad_a, rtol=1e-9, atol=1e-12 * np.abs(grad_a).max())


def test_reversal_box_only_where_the_step_inverts() -> None:
    """The box run backwards: the design windows' bounding box plus a face layer, its
    faces the tangential H before and E after it; none where a source, a conductor or
    the PML reaches the windows."""
    from metosim.kernels.reversal import faces, reversal_box
    from metosim.kernels.solver import _setup

    f0 = 2e14
    sim = ms.Simulation(
        size=(3, 3, 0),
        grid_spec=ms.GridSpec.uniform(0.1),
        run_time=20e-15,
        sources=[ms.PointDipole(center=(-1.2, 0, 0), polarization="Ez", source_time=ms.GaussianPulse(freq0=f0, fwidth=f0 / 4))],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=4)),
    )
    problem = _setup(sim)
    nx, ny, _ = problem.layout.shape
    window = (slice(nx // 2 - 3, nx // 2 + 3), slice(ny // 2 - 2, ny // 2 + 2), slice(0, 1))
    layout = dataclasses.replace(problem.layout, design=((0, window), (2, window)))
    box = reversal_box(layout, problem.params)
    assert box == (slice(nx // 2 - 4, nx // 2 + 4), slice(ny // 2 - 3, ny // 2 + 3), slice(0, 1))
    recorded = {(f, q, sl[a].start, sl[a].stop - sl[a].start) for f, q, sl in faces(layout, box) for a in range(2) if sl[a].stop - sl[a].start == 1}
    assert recorded == {("H", 1, nx // 2 - 4, 1), ("H", 2, nx // 2 - 4, 1), ("E", 1, nx // 2 + 3, 1), ("E", 2, nx // 2 + 3, 1),
                        ("H", 0, ny // 2 - 3, 1), ("H", 2, ny // 2 - 3, 1), ("E", 0, ny // 2 + 2, 1), ("E", 2, ny // 2 + 2, 1)}
    inside = (nx // 2, ny // 2, 0)
    assert reversal_box(dataclasses.replace(layout, points=(("Hz", inside),)), problem.params) is None
    ca = [np.ones(layout.shape) for _ in range(3)]
    ca[1][inside] = 0.99
    assert reversal_box(dataclasses.replace(layout, has_ca=True), {**problem.params, "ca": ca}) is None
    into_pml = (slice(3, 10), *window[1:])
    assert reversal_box(dataclasses.replace(layout, design=((0, into_pml),)), problem.params) is None
    # On a wall (a mirror plane of a symmetric solve: no PML, not periodic) the box
    # starts at the wall's node and records no face before it.
    walled = dataclasses.replace(layout, pml=((0, 4), *layout.pml[1:]), design=((0, (slice(1, 6), *window[1:])),), points=())
    box = reversal_box(walled, problem.params)
    assert box is not None and box[0] == slice(0, 7)
    assert not [sl for f, q, sl in faces(walled, box) if f == "H" and sl[0].stop - sl[0].start == 1]


def test_float32_gradient_from_the_reversed_box_matches_stored_drives() -> None:
    """In float32 the box run backwards adds one rounding per step, unamplified: the
    gradient stays within 1e-4 (relative, whole vector) of the stored drives'."""
    problem = small_bend(precision="float32")
    rho = np.random.default_rng(7).uniform(0, 1, problem.shape)
    reversed_box, stored = (ms.inverse.Evaluator(problem, reversal=r) for r in (True, False))
    assert reversed_box.solve.reversal and not stored.solve.reversal
    grad_a, grad_b = (e.value_and_grad(rho, 8.0)[1] for e in (reversed_box, stored))
    assert np.linalg.norm(grad_a - grad_b) < 1e-4 * np.linalg.norm(grad_b)


def test_differentiable_outputs_equal_a_plain_solve() -> None:
    """The gradient path's forward outputs equal ``ms.solve`` of the same design."""
    problem = small_bend()
    rho = np.random.default_rng(5).uniform(0, 1, problem.shape)
    eps = problem.permittivity(rho, 8.0)
    _, outputs = ms.inverse.Evaluator(problem).loss(rho, 8.0)
    data = ms.solve(problem.simulation_with(eps))
    np.testing.assert_allclose(outputs["out"], data["out"].amps.values, rtol=1e-9, atol=1e-12)


def test_custom_medium_meshes_like_the_structure_it_draws() -> None:
    n, d = 1.5, 0.5
    slab = ms.Box(center=(d / 2, 0, 0), size=(d, ms.inf, ms.inf))
    plain = ms.solve(slab_line([ms.Structure(geometry=slab, medium=ms.Medium(permittivity=n**2))], precision="float64"))
    pixels = ms.solve(slab_line([ms.Structure(geometry=slab, medium=ms.CustomMedium.from_array(np.full((25, 1, 1), n**2)))], precision="float64"))
    np.testing.assert_allclose(pixels["T"].values, plain["T"].values, atol=1e-12)
    with pytest.raises(ValidationError, match="CustomMedium fills a Box"):
        ms.Structure(geometry=ms.Sphere(radius=1), medium=ms.CustomMedium.from_array(np.ones((2, 2, 1))))
    with pytest.raises(ValidationError, match="equal rows"):
        ms.CustomMedium(permittivity=[[[1.0], [1.0, 2.0]]])


def test_optimiser_state_resumes_exactly() -> None:
    """Two iterations in one go equal one iteration, a checkpoint round trip, and one
    more: what lets the service resume after a restart."""
    problem = small_bend(optimizer=ms.inverse.Optimizer(learning_rate=0.1, beta_every=1))
    evaluator = ms.inverse.Evaluator(problem)
    start = ms.inverse.OptimizerState.start(problem)
    one, first = ms.inverse.adam_step(evaluator, start)
    straight, second = ms.inverse.adam_step(evaluator, one)
    resumed, again = ms.inverse.adam_step(evaluator, ms.inverse.OptimizerState.from_bytes(one.to_bytes(), problem))
    assert (first["iteration"], second["iteration"], second["beta"]) == (0, 1, 2 * first["beta"])
    assert again == {**second, "seconds": again["seconds"]}
    np.testing.assert_array_equal(resumed.rho, straight.rho)
    assert second["objective"] > first["objective"]  # uphill from the uniform start


def test_optimize_improves_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    problem = small_bend(precision="float32", optimizer=ms.inverse.Optimizer(steps=4, learning_rate=0.1))
    result = ms.inverse.optimize(problem)
    assert [r["iteration"] for r in result.history] == [0, 1, 2, 3]
    assert result.objective[-1] > result.objective[0]
    assert result.final_objective > result.objective[0]
    assert "iteration 4/4" in capsys.readouterr().err
    assert "4 iterations" in result._repr_html_()
    axes = result.plot()
    assert axes[0].get_lines() and axes[1].images
    assert result.simulation().structures[-1].medium.type == "CustomMedium"


def test_a_nan_gradient_stops_the_optimisation() -> None:
    problem = small_bend(precision="float32", optimizer=ms.inverse.Optimizer(steps=3))
    with pytest.raises(ms.inverse.OptimizationFailed, match="iteration 0: the objective is not finite"):
        ms.inverse.optimize(problem, objective=lambda outputs: jnp.log(-jnp.abs(outputs["out"]).sum()), show=False)


def test_bad_problems_name_the_field() -> None:
    problem = small_bend()
    body = problem.model_dump()

    def refused(path: tuple, change: dict) -> str:
        data = {**body}
        node = data
        for key in path[:-1]:
            node[key] = {**node[key]} if isinstance(node[key], dict) else list(node[key])
            node = node[key]
        node[path[-1]] = {**node[path[-1]], **change} if isinstance(node[path[-1]], dict) else change
        with pytest.raises(ValidationError) as info:
            ms.InverseProblem.model_validate(data)
        return str(info.value)

    assert "design.geometry.center" in refused(("design", "geometry"), {"center": (5.0, 0.0, 0.0)})
    assert "overlaps sources[0]" in refused(("design", "geometry"), {"size": (3.0, 1.0, ms.inf)})
    assert "eps_min" in refused(("design",), {"eps_min": 20.0})
    assert "objective.terms.0.monitor" in refused(("objective",), {"terms": [{"type": "mode", "monitor": "nowhere"}]})
    assert "objective.terms.0.mode_index" in refused(("objective",), {"terms": [{"type": "mode", "monitor": "out", "mode_index": 3}]})
    assert "needs a FluxMonitor" in refused(("objective",), {"terms": [{"type": "flux", "monitor": "out"}]})
    # Inside the domain but into the CPML: refused here, not by the engine at iteration 0.
    assert "reaches into the PML or onto the boundary along x" in refused(("design", "geometry"), {"center": (0.45, 0.0, 0.0)})
    assert "reaches into the PML or onto the boundary along y" in refused(("design", "geometry"), {"center": (0.0, 0.5, 0.0)})
    # JSON round trip: the REST body is this model.
    assert ms.InverseProblem.model_validate_json(problem.model_dump_json()) == problem


def test_a_non_finite_density_is_refused_naming_it() -> None:
    """A NaN pixel once gave a NaN loss and gradient silently (Evaluator), or "the
    objective is not finite" without naming rho0 (optimize)."""
    problem = small_bend(precision="float32", optimizer=ms.inverse.Optimizer(steps=1))
    rho = problem.initial_density()
    rho[3, 2, 0] = np.nan
    evaluator = ms.inverse.Evaluator(problem)
    with pytest.raises(ValueError, match=r"rho has 1 non-finite pixel\(s\) \(NaN or inf\), the first at index \(3, 2, 0\)"):
        evaluator.value_and_grad(rho, 1.0)
    with pytest.raises(ValueError, match=r"^rho has 1 non-finite"):
        evaluator.loss(rho, 1.0)
    with pytest.raises(ValueError, match=r"^rho0 has 1 non-finite pixel"):
        ms.inverse.optimize(problem, rho0=rho, show=False)


def test_the_testbed_mode_converter_sees_modes_apart() -> None:
    """The photonics-opt-testbed's mode converter (benchmarks/testbed.py), coarse: with a
    straight guide through the design square nothing converts into the second mode and
    nothing reflects — the harness measures conversion, not leakage between modes."""
    from metosim.inverse.examples import mode_converter

    problem = mode_converter(dl=0.02, pixel_size=0.02)
    assert problem.shape == (80, 80, 1)
    rho = np.zeros(problem.shape)
    rho[:, 30:50] = 1.0  # the 0.4 µm guide straight through
    sim = problem.simulation_with(problem.permittivity(rho, np.inf)).updated_copy(shutoff=1e-5, run_time=2e-12)
    data = ms.solve(sim)
    out, back = data["out"].amps, data["in"].amps
    through = np.abs(out.sel(direction="+", mode_index=0).values) ** 2
    converted = np.abs(out.sel(direction="+", mode_index=1).values) ** 2
    reflected = np.abs(back.sel(direction="-", mode_index=0).values) ** 2
    print(f"TE0 through {through.min():.6f}, TE1 {converted.max():.1e}, reflected {reflected.max():.1e}")
    # Measured: TE0 0.999994–1.000007, TE1 ≤ 2e-15, reflected ≤ 2.6e-9.
    np.testing.assert_allclose(through, 1.0, atol=1e-4)
    assert converted.max() < 1e-12
    assert reflected.max() < 1e-7


def test_the_testbed_scorer_simulates_the_pixels_as_they_are() -> None:
    """A design is scored as its pixels stand: a one-pixel (20 nm) bar across the guide
    reflects — a scorer that filtered the design again (as this one once did) would
    wash the bar out and score the plain guide — and the length scales are the bar's."""
    from metosim.inverse.examples import mode_converter_scores

    guide = np.zeros((80, 80))
    guide[:, 30:50] = 1.0
    barred = guide.copy()
    barred[40, :] = 1.0  # 20 nm of silicon across the whole square
    barred[41, :] = 0.0
    barred[39, :] = 0.0
    plain, bar = mode_converter_scores(guide, dl=0.02), mode_converter_scores(barred, dl=0.02)
    print(f"reflection: plain guide {plain['reflection_db']:.1f} dB, with the bar {bar['reflection_db']:.1f} dB; bar's length scales {bar['solid_um']}, {bar['void_um']}")
    assert plain["reflection_db"] < -60  # measured −86 dB
    assert bar["reflection_db"] > -30  # a 20 nm silicon wall across a 0.4 µm guide reflects
    assert bar["solid_um"] == pytest.approx(0.02) and bar["void_um"] == pytest.approx(0.02)
    assert plain["solid_um"] == pytest.approx(0.4)


def test_gradient_on_a_graded_grid_matches_central_differences() -> None:
    """The differentiable solve on a graded grid (steps swinging ±20% along x and y, the
    design window across the swing): directional derivatives of a flux against central
    differences, float64."""
    f0 = 2e14
    pixels = (8, 8, 1)
    design = ms.Structure(name="design", geometry=ms.Box(center=(0.1, 0, 0), size=(1.2, 1.2, ms.inf)), medium=ms.CustomMedium.from_array(np.full(pixels, 2.0)))
    sim = ms.Simulation(
        size=(4.0, 4.0, 0),
        grid_spec=ms.GridSpec.custom(x=graded_coords(4.0, 50), y=graded_coords(4.0, 50)),
        run_time=40e-15,
        precision="float64",
        shutoff=0,
        structures=[design],
        sources=[ms.PointDipole(center=(-1.0, 0.2, 0), polarization="Ez", source_time=ms.GaussianPulse(freq0=f0, fwidth=f0 / 4))],
        monitors=[ms.FluxMonitor(name="T", center=(1.2, 0, 0), size=(0, 2.0, ms.inf), freqs=[0.9 * f0, f0, 1.1 * f0])],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=8)),
    )
    assert not sim.grid.is_uniform(0) and not sim.grid.is_uniform(1)
    rng = np.random.default_rng(3)
    eps = rng.uniform(1.5, 4.0, pixels)
    with jax.enable_x64(True):
        solve = differentiable_solve(sim, "design")
        assert not solve.reversal  # the box reversal is written for equal steps

        def loss(e):
            return jnp.sum(solve(e)["T"])

        grad = jax.grad(loss)(eps)
        for _ in range(3):
            v = rng.normal(size=pixels)
            v /= np.linalg.norm(v)
            h = 1e-4
            fd = (loss(eps + h * v) - loss(eps - h * v)) / (2 * h)
            ad = float(np.sum(np.asarray(grad) * v))
            print(f"graded: adjoint {ad:.8e}, central difference {float(fd):.8e}, relative {abs(ad - fd) / abs(fd):.1e}")
            assert abs(ad - fd) < 1e-6 * abs(fd)  # measured ≤ 1.4e-10
        # The differentiable outputs are the plain engine's on the same graded grid.
        plain = ms.solve(sim.updated_copy(structures=[design.updated_copy(medium=ms.CustomMedium.from_array(eps))]))["T"].values
        np.testing.assert_allclose(np.asarray(solve(eps)["T"]), plain, rtol=1e-9)


def test_a_mode_term_in_db_is_floored_and_round_trips() -> None:
    """ModeTerm(db=True): 10·log₁₀(|a|² + floor) per frequency, finite (gradient too)
    where the mode carries nothing; the objective stays JSON for the service."""
    term = ms.inverse.ModeTerm(monitor="in", direction="-", db=True, floor=1e-5)
    amps = np.zeros((2, 1, 3), dtype=complex)
    amps[1, 0] = [0.1, 1e-3, 0.0]
    np.testing.assert_allclose(term.value({"in": amps}, np), 10 * np.log10(np.array([1e-2, 1e-6, 0.0]) + 1e-5))
    gradient = jax.grad(lambda a: term.value({"in": jnp.zeros((2, 1, 1), complex).at[1, 0, 0].set(a)}, jnp)[0])(0.0)
    assert np.isfinite(gradient)
    objective = ms.inverse.Objective(terms=[term], goal="minimize")
    assert ms.inverse.Objective.model_validate_json(objective.model_dump_json()) == objective


def test_the_worst_term_aggregate_is_the_epigraph_of_reflection_and_transmission_loss() -> None:
    """aggregate="worst_term": the largest of R(λ) and 1 − T(λ) over every wavelength
    (T as weight −1, offset 1), as the testbed's Meep script minimises; its gradient
    flows to the binding term only; JSON round trip for the service."""
    from metosim.inverse.examples import mode_converter

    objective = mode_converter(dl=0.05, pixel_size=0.05, minimax=True, reflection_weight=1).objective
    assert objective.goal == "minimize" and objective.aggregate == "worst_term"
    reflected = np.array([0.01, 0.03, 0.002, 0.001, 0.02, 0.01])
    transmitted = np.array([0.99, 0.98, 0.95, 0.97, 0.99, 0.985])

    def outputs(r: Any, t: Any, xp: Any) -> dict[str, Any]:
        """Amplitudes (direction, mode, λ): R in the input's mode 0 going −, T in the
        output's mode 1 going +."""
        zero = xp.zeros(6)
        return {"in": xp.stack([xp.stack([zero, zero]), xp.stack([xp.sqrt(r), zero])]), "out": xp.stack([xp.stack([zero, xp.sqrt(t)]), xp.stack([zero, zero])])}

    assert objective(outputs(reflected, transmitted, np), np) == pytest.approx(0.05)  # 1 − T at the third λ
    assert objective(outputs(reflected, np.full(6, 0.999), np), np) == pytest.approx(0.03)  # now R binds
    grad_r, grad_t = jax.grad(lambda r, t: objective.loss(outputs(r, t, jnp), jnp), argnums=(0, 1))(jnp.asarray(reflected), jnp.asarray(transmitted))
    np.testing.assert_allclose(np.asarray(grad_t), [0, 0, -1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(np.asarray(grad_r), 0, atol=1e-12)
    assert ms.inverse.Objective.model_validate_json(objective.model_dump_json()) == objective


SYMMETRIC_SOURCES = {
    # An Ez line current on the plane y = 0: tangential E even, a PMC mirror (+1).
    "PMC y": (ms.PointDipole(center=(-1.0, 0, 0), polarization="Ez", source_time=ms.GaussianPulse(freq0=2e14, fwidth=5e13)), 1),
    # A beam along +x polarised along y (normal to the plane): tangential E odd, a PEC mirror (−1).
    "PEC y": (
        ms.GaussianBeam(center=(-1.0, 0, 0), size=(0, ms.inf, ms.inf), direction="+x", polarization="Ey", waist_radius=0.6, source_time=ms.GaussianPulse(freq0=2e14, fwidth=5e13)),
        -1,
    ),
}


@pytest.mark.parametrize("case", list(SYMMETRIC_SOURCES))
def test_gradient_with_mirror_symmetry_equals_the_full_grid(case: str) -> None:
    """The differentiable solve steps the kept half of a symmetric problem (the design
    across the mirror plane, a PMC or a PEC wall through it): outputs (a flux and a
    field plane crossing the mirror) equal the full grid's for a symmetric design, the
    gradient is the symmetric part of the full grid's, and it matches central
    differences; float64."""
    f0 = 2e14
    source, parity = SYMMETRIC_SOURCES[case]
    pixels = (8, 8, 1)
    design = ms.Structure(name="design", geometry=ms.Box(center=(0.1, 0, 0), size=(1.2, 1.2, ms.inf)), medium=ms.CustomMedium.from_array(np.full(pixels, 2.0)))
    sim = ms.Simulation(
        size=(4.0, 4.0, 0),
        grid_spec=ms.GridSpec.uniform(0.08),
        run_time=40e-15,
        precision="float64",
        shutoff=0,
        structures=[design],
        sources=[source],
        monitors=[
            ms.FluxMonitor(name="T", center=(1.2, 0, 0), size=(0, 2.0, ms.inf), freqs=[0.9 * f0, f0, 1.1 * f0]),
            ms.FieldMonitor(name="near", center=(0.9, 0.1, 0), size=(0, 0.9, ms.inf), freqs=[f0]),
        ],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=8)),
        symmetry=(0, parity, 0),
    )
    rng = np.random.default_rng(5)
    eps = rng.uniform(1.5, 4.0, pixels)
    eps = 0.5 * (eps + eps[:, ::-1])  # a design the mirror maps onto itself
    with jax.enable_x64(True):
        half = differentiable_solve(sim, "design")
        full = differentiable_solve(sim.updated_copy(symmetry=(0, 0, 0)), "design")
        assert half.state_size < 0.55 * full.state_size  # half the grid stepped
        # The design's box runs backwards from the mirror wall (its image before it).
        assert half.reversal and full.reversal

        def loss(solve):
            return lambda e: sum(jnp.sum(jnp.abs(v) ** 2) for v in jax.tree.leaves(solve(e)))

        for name, value in full(eps).items():
            for got, want in zip(jax.tree.leaves(half(eps)[name]), jax.tree.leaves(value)):
                scale = float(np.max(np.abs(want))) or 1.0  # a component the source leaves at zero
                print(f"{case}: {name} off the full grid's by {np.max(np.abs(np.asarray(got) - want)) / scale:.1e} of its largest")
                np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-12 * scale)  # measured ≤ 8e-16
        grad_half, grad_full = np.asarray(jax.grad(loss(half))(eps)), np.asarray(jax.grad(loss(full))(eps))
        # The symmetric solve is the full one of the symmetrised pixels: its gradient is
        # the full gradient's symmetric part (the field plane off-centre makes the loss
        # itself asymmetric, so that part is not the whole).
        symmetric_part = 0.5 * (grad_full + grad_full[:, ::-1])
        scale = float(np.max(np.abs(grad_full)))
        assert np.max(np.abs(grad_full - symmetric_part)) > 1e-3 * scale
        print(f"{case}: gradient off the full grid's symmetric part by {np.max(np.abs(grad_half - symmetric_part)) / scale:.1e} of its largest")
        np.testing.assert_allclose(grad_half, symmetric_part, rtol=0, atol=1e-13 * scale)  # measured 9e-16
        v = rng.normal(size=pixels)
        v /= np.linalg.norm(v)
        h = 1e-4
        fd = (loss(half)(eps + h * v) - loss(half)(eps - h * v)) / (2 * h)
        ad = float(np.sum(grad_half * v))
        print(f"{case}: adjoint {ad:.8e}, central difference {float(fd):.8e}, relative {abs(ad - fd) / abs(fd):.1e}")
        assert abs(ad - fd) < 1e-8 * abs(fd)  # measured 2e-10 and 7e-10
