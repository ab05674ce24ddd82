"""Slanted sidewalls (``PolySlab(sidewall_angle=...)``): the frustum's volume, mirror
images, the distance to a slanted face, a trapezoidal ridge's mode index between those
of its top and bottom widths, and the angle read from a gdsfactory layer stack."""

from __future__ import annotations

import numpy as np
import pytest

import metosim as ms

SQUARE = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]


def sampled_volume(slab: ms.PolySlab, n: int = 240) -> float:
    """Volume (µm³) by counting cell-centre samples of a 1.4 × 1.4 × 0.7 µm box."""
    x = (np.arange(n) + 0.5) / n * 1.4 - 0.7
    z = (np.arange(n) + 0.5) / n * 0.7 - 0.1
    X, Y, Z = np.meshgrid(x, x, z, indexing="ij")
    return float(slab.inside(X, Y, Z).mean() * 1.4 * 1.4 * 0.7)


@pytest.mark.parametrize("degrees", [10.0, -10.0])
def test_a_slanted_square_is_a_frustum(degrees: float) -> None:
    angle, h = np.radians(degrees), 0.5
    slab = ms.PolySlab(vertices=SQUARE, slab_bounds=(0, h), sidewall_angle=angle)
    top = 1.0 - 2 * h * np.tan(angle)
    frustum = h / 3 * (1.0 + top**2 + top)
    # Sampling error ~1% here (the vertical slab reads 0.505 for 0.5); the angle changes
    # the volume by ±17%. Growing, the corners come out rounded: 0.1% under the frustum.
    assert sampled_volume(slab) == pytest.approx(frustum, rel=0.01)
    assert sampled_volume(ms.PolySlab(vertices=SQUARE, slab_bounds=(0, h))) == pytest.approx(0.5, rel=0.015)
    lo, hi = slab.bounds()
    assert hi[0] == pytest.approx(0.5 + max(0.0, -h * np.tan(angle)))


@pytest.mark.parametrize("plane", ["bottom", "middle", "top"])
def test_mirror_images_and_reference_planes(plane: str) -> None:
    slab = ms.PolySlab(vertices=SQUARE, slab_bounds=(0.1, 0.6), sidewall_angle=0.3, reference_plane=plane)
    rng = np.random.default_rng(1)
    x, y, z = rng.uniform(-0.8, 0.8, (3, 20000))
    z = z * 0.5 + 0.35
    mirrored = slab.mirrored(2, 0.0)
    np.testing.assert_array_equal(mirrored.inside(x, y, -z), slab.inside(x, y, z))
    # On the reference plane the cross-section is the polygon itself.
    ref = slab.reference
    assert slab.inside(np.array(0.499), np.array(0.0), np.array(ref)) and not slab.inside(np.array(0.501), np.array(0.0), np.array(ref))


def test_distance_to_a_slanted_face() -> None:
    angle = np.radians(20)
    slab = ms.PolySlab(vertices=SQUARE, slab_bounds=(0, 0.5), sidewall_angle=angle)
    edge = 0.5 - 0.25 * np.tan(angle)  # the +x face at z = 0.25
    assert abs(float(slab.signed_distance(np.array(edge), np.array(0.0), np.array(0.25)))) < 1e-12
    # 0.05 µm outside along x is 0.05·cos(angle) from the slanted face.
    assert float(slab.signed_distance(np.array(edge + 0.05), np.array(0.0), np.array(0.25))) == pytest.approx(0.05 * np.cos(angle), rel=1e-9)


def test_a_trapezoidal_ridge_guides_between_its_top_and_bottom_widths() -> None:
    """A silicon ridge 0.22 µm tall on oxide, bottom 0.5 µm wide, sidewalls 15°: its
    fundamental mode's index lies between those of vertical ridges at the top width
    (0.382 µm) and the bottom width, close to the mean width's."""
    f = ms.C_0 / 1.55e-6

    def n_eff(width: float | None = None, angle: float = 0.0) -> float:
        w = 0.5 if width is None else width
        core = ms.PolySlab(vertices=[(-1, -w / 2), (1, -w / 2), (1, w / 2), (-1, w / 2)], slab_bounds=(0, 0.22), sidewall_angle=angle)
        sim = ms.Simulation(
            size=(0.4, 2.0, 1.6), grid_spec=ms.GridSpec.uniform(0.02), run_time=1e-14, medium=ms.Medium(permittivity=1.444**2),
            boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=4)),
            structures=[ms.Structure(geometry=core, medium=ms.Medium(permittivity=3.48**2))],
        )
        modes = ms.ModeSolver(sim, ms.Box(center=(0, 0, 0.11), size=(0, 1.8, 1.4)), ms.ModeSpec(filter_pol="te"), [f]).solve()
        return float(modes.n_eff[0, 0])

    angle = np.radians(15)
    top = 0.5 - 2 * 0.22 * np.tan(angle)
    slanted, narrow, wide, mean = n_eff(angle=angle), n_eff(top), n_eff(0.5), n_eff((0.5 + top) / 2)
    print(f"n_eff: top width {narrow:.4f}, slanted {slanted:.4f}, mean width {mean:.4f}, bottom width {wide:.4f}")
    assert narrow < slanted < wide
    assert abs(slanted - mean) < 0.03 * (wide - narrow)  # measured 0.0055 of the span (2.3369 against 2.3384)


def test_the_gdsfactory_stack_s_angle_becomes_the_slab_s() -> None:
    import gdsfactory as gf
    from gdsfactory.technology import LayerLevel, LayerStack

    gf.gpdk.PDK.activate()
    stack = LayerStack(layers={"core": LayerLevel(layer=(1, 0), thickness=0.22, zmin=0.0, material="si", sidewall_angle=10.0)})
    device = ms.from_gdsfactory(gf.components.straight(length=1.0), layer_stack=stack)
    core = [s.geometry for s in device.structures if s.name == "core"]
    assert core and all(g.sidewall_angle == pytest.approx(np.radians(10.0)) and g.reference_plane == "bottom" for g in core)
    flat = ms.from_gdsfactory(gf.components.straight(length=1.0), layer_stack=stack, two_d=True)
    assert all(s.geometry.sidewall_angle == 0.0 for s in flat.structures)
    with pytest.raises(TypeError, match="no shape gradient for a PolySlab with a sidewall angle"):
        from metosim.kernels.shapes import shape_parameters

        shape_parameters(core[0])
