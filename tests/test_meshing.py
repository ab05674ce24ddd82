"""Subpixel smoothing against exact geometry: signed distances agree with the
containment test, fill fractions with a fine lattice, and the effective permittivity of
a tilted planar interface with the anisotropic formula of Farjadpour et al. (2006)."""

from __future__ import annotations

import numpy as np
import pytest

import metosim as ms
from metosim.kernels.mesh import mesh_media, planar_fill_fraction

GEOMETRIES = [
    ms.Box(center=(0.1, 0, 0), size=(1, 0.5, ms.inf)),
    ms.Sphere(center=(0, 0.1, -0.2), radius=0.4),
    ms.Cylinder(radius=0.3, length=1, axis=1),
    ms.PolySlab(vertices=[(0, 0), (1, 0), (0.6, 0.3), (0.3, 0.8)], slab_bounds=(-0.2, 0.3)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: type(g).__name__)
def test_signed_distance_is_a_distance_with_the_containment_sign(geometry) -> None:
    points = np.random.default_rng(0).uniform(-1.2, 1.2, (3, 20_000))
    distance = geometry.signed_distance(*points)
    assert np.array_equal(distance <= 0, geometry.inside(*points))
    # A distance function has a gradient of unit length almost everywhere (a point
    # within 1e-6 µm of a fold may see a shorter one).
    h = 1e-7
    gradient = [(geometry.signed_distance(*(points + h * e[:, None])) - geometry.signed_distance(*(points - h * e[:, None]))) / (2 * h) for e in np.eye(3)]
    length = np.linalg.norm(gradient, axis=0)
    assert np.mean(np.abs(length - 1) < 1e-6) > 0.999
    # No point of the surface is nearer than the distance says: the segment to a
    # point at that distance along the gradient stays on one side.
    step = 0.99 * np.abs(distance)[None] * np.array(gradient) * -np.sign(distance)[None]
    assert np.array_equal(geometry.inside(*(points + step)), geometry.inside(*points))


def test_planar_fill_fraction_is_exact() -> None:
    """Against an independent 2D count on a 2000² lattice (box) and by Monte Carlo
    with 2·10⁶ samples (tent: each axis the sum of two uniform draws)."""
    rng = np.random.default_rng(1)
    for _ in range(12):
        normal = np.append(rng.normal(size=2), 0.0)
        normal /= np.linalg.norm(normal)
        half = np.append(rng.uniform(0.2, 1.0, 2), 0.0)
        offset = rng.uniform(-0.8, 0.8)
        u = (np.arange(2000) + 0.5) / 2000 * 2 - 1
        x, y = np.meshgrid(u * half[0], u * half[1], indexing="ij")
        box = np.mean(offset + normal[0] * x + normal[1] * y <= 0)
        exact = planar_fill_fraction(np.array([offset]), normal[:, None], [np.array([h]) for h in half])[0]
        assert abs(exact - box) < 2e-3, (exact, box)
        draws = [rng.uniform(-h, h, (2, 2_000_000)).sum(axis=0) for h in half[:2]]
        tent = np.mean(offset + normal[0] * draws[0] + normal[1] * draws[1] <= 0)
        exact_tent = planar_fill_fraction(np.array([offset]), normal[:, None], [np.array([h]) for h in half], tent=True)[0]
        assert abs(exact_tent - tent) < 2e-3, (exact_tent, tent)
    # 3D, normals along one, two and three axes; a plane through the centre halves the box.
    for normal in ([0, 0, 1.0], [0.6, 0.8, 0], [1 / np.sqrt(3)] * 3):
        for tent in (False, True):
            half = [np.array([h]) for h in (0.3, 0.5, 0.7)]
            assert planar_fill_fraction(np.zeros(1), np.array(normal)[:, None], half, tent=tent)[0] == pytest.approx(0.5, abs=1e-12)


def test_a_tilted_interface_gets_the_anisotropic_average() -> None:
    """A half-plane of ε = 12 at 30° to the x axis in a 2D (xy) grid: away from its
    corners each cut cell holds 1/ε̃ₚₚ = n̂ₚ²⟨1/ε⟩ + (1 − n̂ₚ²)/⟨ε⟩ with the normal n̂ of
    the face, ⟨1/ε⟩ from the Yee cell's exact fill fraction (counted here on a fine
    lattice) and ⟨ε⟩ from the tent's, and Ez (parallel to the face) ⟨ε⟩ alone."""
    angle = np.deg2rad(30)
    tangent, normal = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    # The polygon below the line through the origin along `tangent` (outward normal +n̂).
    far = 50 * tangent
    polygon = [tuple(-far), tuple(far), tuple(far - 50 * normal), tuple(-far - 50 * normal)]
    sim = ms.Simulation(
        size=(3.0, 3.0, 0), grid_spec=ms.GridSpec.uniform(0.05), run_time=1e-15,
        structures=[ms.Structure(geometry=ms.PolySlab(vertices=polygon, slab_bounds=(-1, 1)), medium=ms.Medium(permittivity=12.0))],
    )
    grid = sim.grid
    media = mesh_media(sim, grid)
    # Weighted midpoint lattices (in cell widths): the Yee cell, and the tent twice as wide.
    u = (np.arange(400) + 0.5) / 400 * 2 - 1
    weights = {"volume": np.where(np.abs(u) <= 0.5, 1.0, 0.0), "tent": 1 - np.abs(u)}
    dl = grid.dl[0]
    checked = 0
    for p, comp in enumerate(("Ex", "Ey", "Ez")):
        x, y = grid.component_nodes(comp, 0), grid.component_nodes(comp, 1)
        for i in range(2, x.size - 2):
            for j in range(2, y.size - 2):
                side = normal @ np.array([x[i], y[j]])
                if abs(side) > 0.1 or abs(tangent @ np.array([x[i], y[j]])) > 0.3:
                    continue  # keep to cells within two widths of the face, far from its ends
                below = (normal[0] * (x[i] + u * dl))[:, None] + (normal[1] * (y[j] + u * dl))[None, :] <= 0
                volume, tent = (float(w @ below @ w / w.sum() ** 2) for w in (weights["volume"], weights["tent"]))
                mean, mean_inverse = 1 + 11 * tent, 1 - volume + volume / 12
                n_p = normal[p] if p < 2 else 0.0
                expected = 1 / (n_p**2 * mean_inverse + (1 - n_p**2) / mean)
                # Measured within 9.5e-5: the 400-point lattice's own counting error.
                assert media.permittivity[p][i, j, 0] == pytest.approx(expected, rel=3e-4), (comp, i, j)
                checked += 1
    assert checked > 60
