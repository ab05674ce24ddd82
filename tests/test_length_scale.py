"""Length scales of inverse designs: the measurement (imageruler) on designs whose
widths and gaps are known by construction, and the robust formulation's objective:
exactly the worst of the dilated, nominal and eroded designs, gradient included."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

import metosim as ms
from metosim.inverse import measured_length_scales

from .test_inverse import small_bend


def bars(widths: list[int], gaps: list[int], height: int = 40) -> np.ndarray:
    """Vertical solid bars of ``widths`` pixels separated by ``gaps`` pixels, with
    void margins of 10 pixels."""
    columns = [0] * 10
    for i, w in enumerate(widths):
        columns += [1] * w + ([0] * gaps[i] if i < len(gaps) else [])
    columns += [0] * 10
    image = np.zeros((len(columns), height + 20))
    image[:, 10 : 10 + height] = np.array(columns)[:, None]
    return image


@pytest.mark.parametrize(("widths", "gaps", "expected"), [([6, 9], [4], (6, 4)), ([12, 7, 9], [8, 5], (7, 5)), ([5, 8], [7], (5, 7))])
def test_widths_and_gaps_are_measured_in_micrometres(widths: list[int], gaps: list[int], expected: tuple[int, int]) -> None:
    pixel = 0.01
    design = bars(widths, gaps)[:, :, None]  # a 2D design region (one pixel along z)
    solid, void = measured_length_scales(design, pixel)
    assert (solid, void) == pytest.approx((expected[0] * pixel, expected[1] * pixel))
    # 3D: the narrowest over the layers (a featureless layer measures its whole extent)
    layers = np.stack([design[:, :, 0], np.zeros_like(design[:, :, 0])], axis=-1)
    assert measured_length_scales(layers, pixel) == pytest.approx((solid, void))
    # 1D: the shortest runs
    line = design[:, 30, 0]
    assert measured_length_scales(line[:, None, None], pixel) == pytest.approx((expected[0] * pixel, expected[1] * pixel))


def test_the_robust_objective_is_the_worst_of_three_designs_with_its_gradient() -> None:
    plain = small_bend()
    delta = 0.15
    robust = plain.model_copy(update={"design": plain.design.model_copy(update={"robust": delta})})
    rng = np.random.default_rng(3)
    rho = rng.uniform(0.3, 0.7, plain.shape)
    beta = 6.0
    loss, grad, _ = ms.inverse.Evaluator(robust).value_and_grad(rho, beta)
    branches = []
    for eta in (0.5 - delta, 0.5, 0.5 + delta):
        shifted = plain.model_copy(update={"design": plain.design.model_copy(update={"eta": eta})})
        branches.append(ms.inverse.Evaluator(shifted).value_and_grad(rho, beta))
    worst = int(np.argmax([b[0] for b in branches]))
    print(f"losses (dilated, nominal, eroded): {[round(b[0], 6) for b in branches]}; robust {loss:.6f}")
    assert len({round(b[0], 9) for b in branches}) == 3  # the three designs differ
    assert loss == pytest.approx(branches[worst][0], rel=1e-12)
    np.testing.assert_allclose(grad, branches[worst][1], rtol=1e-9, atol=1e-12 * np.abs(grad).max())


def test_a_robust_shift_that_leaves_zero_to_one_is_refused_naming_it() -> None:
    region = small_bend().design
    with pytest.raises(ValidationError, match="robust"):
        ms.DesignRegion(**{**region.model_dump(), "robust": 0.6})
    with pytest.raises(ValidationError, match="robust"):
        ms.DesignRegion(**{**region.model_dump(), "eta": 0.2, "robust": 0.25})


@pytest.mark.parametrize(("widths", "gaps", "thin"), [([14, 14], [14], None), ([7, 14], [7], None), ([4, 14], [14], "solid"), ([14, 14], [4], "void")])
def test_the_length_penalty_flags_only_features_below_the_filter_radius(widths: list[int], gaps: list[int], thin: str | None) -> None:
    """Bars and gaps of 7 or 14 pixels against a 6-pixel conic filter pass (violation
    at rounding level); a 4-pixel bar violates the solid constraint alone, a 4-pixel
    gap the void one alone."""
    from metosim.inverse.design import apply_filter, filter_kernel, tanh_projection
    from metosim.inverse.length_scale import length_violation

    pixel, radius = 0.01, 0.06
    design = bars(widths, gaps)[:, :, None]
    rho_tilde = apply_filter(design, filter_kernel((radius / pixel, radius / pixel, 0), "conic"))
    solid, void = length_violation(rho_tilde, tanh_projection(rho_tilde, np.inf, 0.5), radius, (pixel, pixel, 0.0))
    print(f"{widths} / {gaps}: solid {solid:.3g}, void {void:.3g}")
    assert solid >= 0 and void >= 0
    assert (solid > 1e-5) == (thin == "solid") and (void > 1e-5) == (thin == "void")
    assert min(solid, void) < 1e-7
    if thin is None:
        assert max(solid, void) < 1e-10


def test_the_length_penalty_adds_to_the_loss_with_its_exact_gradient() -> None:
    """The evaluator's loss with a penalty weight w is the plain loss plus w × the
    design's violation, and its gradient adds w × the violation's gradient — checked
    against central differences of the NumPy violation."""
    plain = small_bend()
    weight = 50.0
    penalised = plain.model_copy(update={"design": plain.design.model_copy(update={"length_penalty": weight})})
    rng = np.random.default_rng(5)
    rho = rng.uniform(0.2, 0.8, plain.shape)
    beta = 8.0
    base, base_grad, _ = ms.inverse.Evaluator(plain).value_and_grad(rho, beta)
    loss, grad, _ = ms.inverse.Evaluator(penalised).value_and_grad(rho, beta)
    design, active = penalised.design, penalised.active
    violation = float(design.length_violation(rho, beta, active))
    assert violation > 1e-4  # a random grey design is far from the length scale
    assert loss == pytest.approx(base + weight * violation, rel=1e-10)
    h = 1e-6
    for index in [tuple(rng.integers(0, n) for n in plain.shape) for _ in range(4)]:
        up, down = rho.copy(), rho.copy()
        up[index] += h
        down[index] -= h
        numeric = (float(design.length_violation(up, beta, active)) - float(design.length_violation(down, beta, active))) / (2 * h)
        assert grad[index] - base_grad[index] == pytest.approx(weight * numeric, rel=1e-5, abs=1e-9 * np.abs(grad).max())


def test_a_length_penalty_without_a_conic_filter_radius_is_refused() -> None:
    region = small_bend().design
    with pytest.raises(ValidationError, match="length_penalty"):
        ms.DesignRegion(**{**region.model_dump(), "length_penalty": 100.0, "filter_radius": 0.0})
    with pytest.raises(ValidationError, match="length_penalty"):
        ms.DesignRegion(**{**region.model_dump(), "length_penalty": 100.0, "filter": "gaussian"})


def test_straight_through_projects_to_the_threshold_with_the_slope_of_the_projection() -> None:
    """With ``straight_through`` the projected design is the thresholded one (what is
    scored), and its gradient is the β projection's, exactly."""
    import jax
    import jax.numpy as jnp

    problem = small_bend()
    plain = problem.design
    estimated = plain.model_copy(update={"straight_through": True})
    active, beta = problem.active, 16.0
    rng = np.random.default_rng(11)
    rho = rng.uniform(0.0, 1.0, problem.shape)
    weights = rng.normal(size=problem.shape)
    threshold = plain.project(rho, np.inf, active)
    np.testing.assert_array_equal(estimated.project(rho, beta, active), threshold)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda r: estimated.project(r, beta, active, jnp))(rho)), threshold)
    slope = jax.grad(lambda r: jnp.sum(weights * plain.project(r, beta, active, jnp)))(rho)
    estimate = jax.grad(lambda r: jnp.sum(weights * estimated.project(r, beta, active, jnp)))(rho)
    np.testing.assert_array_equal(np.asarray(estimate), np.asarray(slope))
    assert np.abs(np.asarray(slope)).max() > 0


def test_the_filter_can_see_the_structures_around_the_region() -> None:
    """With ``surround="structures"`` the filter pads the region with what lies around
    it — the testbed converter's guides where they enter, oxide elsewhere — instead of
    repeating the edge pixels: an all-solid region stays solid where a guide runs on
    and thins towards the oxide."""
    from metosim.inverse.examples import mode_converter

    edge = mode_converter(dl=0.04, pixel_size=0.04, filter_radius=0.12)
    around = edge.model_copy(update={"design": edge.design.model_copy(update={"surround": "structures"})})
    assert edge.surround is None
    ring = around.surround
    half = around.design.kernel(around.active).shape[0] // 2
    assert ring.shape == (40 + 2 * half, 40 + 2 * half, 1)
    y = -0.8 + (np.arange(-half, 40 + half) + 0.5) * 0.04
    np.testing.assert_array_equal(ring[0, :, 0], np.abs(y) < 0.2)  # left: the input guide
    np.testing.assert_array_equal(ring[-1, :, 0], np.abs(y) < 0.2)  # right: the output guide
    assert not ring[half:-half, 0, 0].any() and not ring[half:-half, -1, 0].any()  # top and bottom: oxide
    solid = np.ones(edge.shape)
    np.testing.assert_allclose(edge.project(solid, 8.0), 1.0)
    rho_hat = around.project(solid, 8.0)[:, :, 0]
    assert rho_hat[0, 20] == pytest.approx(1.0) and rho_hat[20, 20] == pytest.approx(1.0)  # in the guide's line, and inside
    assert rho_hat[20, 0] < 0.95 and rho_hat[0, 0] < rho_hat[20, 0]  # towards the oxide, most at a corner


def test_a_design_is_measured_alone_or_in_place() -> None:
    """A 120 nm strip of silicon along the region's edge: alone, imageruler takes it to
    run on past the array's edge; in place, with oxide beyond, it is 120 nm wide — the
    measure the testbed's own scorer uses. The guide through the region reads 0.4 µm
    either way."""
    from metosim.inverse.examples import mode_converter

    problem = mode_converter(dl=0.04, pixel_size=0.04)
    design = np.zeros(problem.shape)
    design[:, 15:25] = 1.0  # the 0.4 µm guide straight through
    assert problem.length_scales(design)[0] == pytest.approx(0.4)
    assert problem.length_scales(design, in_place=True)[0] == pytest.approx(0.4)
    design[10:30, 37:40] = 1.0  # 3 pixels of 40 nm along the top edge
    assert problem.length_scales(design)[0] == pytest.approx(0.4)
    assert problem.length_scales(design, in_place=True)[0] == pytest.approx(0.12)
