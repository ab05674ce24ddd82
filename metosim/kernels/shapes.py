"""Structures as differentiable fill fractions on a pixel grid: the map from shape
parameters (a box's centre and size, a cylinder's or sphere's radius, a polygon's
vertices; µm) to the share of each pixel the shape covers, in ``jax.numpy``.

- A ``Box`` fills a pixel by the exact overlap, a product of 1D overlaps.
- Any other shape fills by its signed distance d (µm) at the pixel centre:
  ``clip(1/2 − d / w, 0, 1)``, a ramp as wide as a pixel is across on average over
  the surface's directions (w = Σₐ hₐ · 2/π in 2D, · 1/2 in 3D, pixel sizes hₐ).
  Half full on the surface and symmetric about it, so the area (volume) it encloses
  is right to first order. The width depends on no normal, so the fill is continuous
  in every parameter and its gradient needs the distance's first derivative only —
  a normal-dependent width jumps where the nearest edge changes, inside a corner.

Pure functions of (parameters, pixel centres); nothing is stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..geometry import Box, Cylinder, Geometry, PolySlab, Sphere

#: Parameters per geometry type: the fields a gradient is taken with respect to.
PARAMETERS: dict[type, tuple[str, ...]] = {
    Box: ("center", "size"),
    Sphere: ("center", "radius"),
    Cylinder: ("center", "radius", "length"),
    PolySlab: ("vertices", "slab_bounds"),
}


def shape_parameters(geometry: Geometry) -> dict[str, np.ndarray]:
    """The differentiable parameters of ``geometry`` with their current values (µm)."""
    names = PARAMETERS.get(type(geometry))
    if names is None:
        raise TypeError(f"no shape gradient for a {type(geometry).__name__}: use a Box, Sphere, Cylinder or PolySlab")
    if getattr(geometry, "sidewall_angle", 0.0):
        raise TypeError("no shape gradient for a PolySlab with a sidewall angle yet: use vertical sidewalls (sidewall_angle=0)")
    return {name: np.asarray(getattr(geometry, name), dtype=float) for name in names}


def pixel_centres(bounds: tuple[tuple[float, ...], tuple[float, ...]], shape: tuple[int, int, int]) -> tuple[list[np.ndarray], np.ndarray]:
    """Centres (µm) of ``shape`` equal pixels filling the box ``bounds`` per axis, and
    the pixel size per axis (µm)."""
    lo, hi = np.asarray(bounds[0], dtype=float), np.asarray(bounds[1], dtype=float)
    steps = (hi - lo) / np.asarray(shape)
    return [lo[a] + (np.arange(shape[a]) + 0.5) * steps[a] for a in range(3)], steps


def box_fill(center: Any, size: Any, centres: list[np.ndarray], steps: np.ndarray, active: tuple[bool, bool, bool]) -> Any:
    """Share (nx, ny, nz) of each pixel inside the box ``center``/``size`` (µm): the
    exact overlap along each active axis; along an inactive one, 1 where the box
    holds the pixel's centre."""
    import jax.numpy as jnp

    shares = []
    for a in range(3):
        lo, hi = center[a] - size[a] / 2, center[a] + size[a] / 2
        x = jnp.asarray(centres[a])
        if active[a]:
            share = jnp.clip((jnp.minimum(hi, x + steps[a] / 2) - jnp.maximum(lo, x - steps[a] / 2)) / steps[a], 0.0, 1.0)
        else:
            share = jnp.where((x >= lo) & (x <= hi), 1.0, 0.0)
        shares.append(share)
    return shares[0][:, None, None] * shares[1][None, :, None] * shares[2][None, None, :]


def _extruded(in_plane: Any, along: Any) -> Any:
    """:func:`metosim.geometry._extruded` in jax.numpy, written so that it is smooth
    (to second order) through a surface: the Euclidean corner term only where both
    distances are positive."""
    import jax.numpy as jnp

    return jnp.where((in_plane > 0) & (along > 0), _norm(jnp.maximum(in_plane, 0.0), jnp.maximum(along, 0.0)), jnp.maximum(in_plane, along))


def _norm(*parts: Any) -> Any:
    """Euclidean length (µm), rounded within 10⁻⁶ µm of 0 (a pixel centre on a
    cylinder's axis or a polygon's vertex): there its derivatives stay of the order of
    the pixel's, where the exact ones diverge."""
    import jax.numpy as jnp

    return jnp.sqrt(sum(p * p for p in parts) + 1e-12)


def sphere_distance(p: dict[str, Any], point: Any) -> Any:
    """Signed distance (µm, negative inside) from ``point`` (3,) to a sphere."""
    return _norm(*(point[a] - p["center"][a] for a in range(3))) - p["radius"]


def cylinder_distance(axis: int, p: dict[str, Any], point: Any) -> Any:
    """Signed distance (µm) from ``point`` to a cylinder along ``axis``."""
    a, b = (i for i in range(3) if i != axis)
    radial = _norm(point[a] - p["center"][a], point[b] - p["center"][b]) - p["radius"]
    return _extruded(radial, abs(point[axis] - p["center"][axis]) - p["length"] / 2)


def polyslab_distance(axis: int, p: dict[str, Any], point: Any) -> Any:
    """Signed distance (µm) from ``point`` to a polygon (vertices (N, 2) in the plane
    normal to ``axis``) extruded over ``slab_bounds``. In the plane: the nearest edge's
    signed distance from its line where the nearest point is inside the edge (smooth
    through the surface), else the distance to the vertex, negative inside by even-odd
    ray casting."""
    import jax.numpy as jnp

    a, b = (i for i in range(3) if i != axis)
    u, w = point[a], point[b]
    v0 = p["vertices"]
    v1 = jnp.roll(v0, -1, axis=0)
    du, dw = v1[:, 0] - v0[:, 0], v1[:, 1] - v0[:, 1]
    length2 = du * du + dw * dw
    s = ((u - v0[:, 0]) * du + (w - v0[:, 1]) * dw) / length2
    t = jnp.clip(s, 0.0, 1.0)
    distances = _norm(u - v0[:, 0] - t * du, w - v0[:, 1] - t * dw)
    k = jnp.argmin(distances)
    crosses = (v0[:, 1] > w) != (v1[:, 1] > w)
    u_cross = v0[:, 0] + (w - v0[:, 1]) * du / jnp.where(dw == 0, 1.0, dw)
    inside = jnp.sum(crosses & (u < u_cross)) % 2 == 1
    # Positive to the right of an edge: outside when the vertices turn anticlockwise.
    orientation = jnp.sign(jnp.sum(v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]))
    across = orientation * (dw[k] * (u - v0[k, 0]) - du[k] * (w - v0[k, 1])) / jnp.sqrt(length2[k])
    in_plane = jnp.where((s[k] > 0) & (s[k] < 1), across, jnp.where(inside, -distances[k], distances[k]))
    lo, hi = p["slab_bounds"][0], p["slab_bounds"][1]
    along = jnp.maximum(lo - point[axis], point[axis] - hi)
    return _extruded(in_plane, along)


#: Mean of Σₐ |nₐ| over the directions of a unit normal n in 1, 2 and 3 active axes
#: (per unit pixel size): the width, in pixels, of the ramp a surface fills over.
RAMP = {1: 1.0, 2: 2 / math.pi, 3: 0.5}


def distance_fill(distance: Callable[[Any], Any], centres: list[np.ndarray], steps: np.ndarray, active: tuple[bool, bool, bool]) -> Any:
    """Share (nx, ny, nz) of each pixel inside the surface ``distance(point) = 0``
    (see the module doc): ``clip(1/2 − d / w, 0, 1)`` at each centre."""
    import jax
    import jax.numpy as jnp

    grids = jnp.meshgrid(*(jnp.asarray(c) for c in centres), indexing="ij")
    points = jnp.stack([g.ravel() for g in grids], axis=1)
    d = jax.vmap(distance)(points)
    width = RAMP[sum(active)] * sum(steps[a] for a in range(3) if active[a])
    return jnp.clip(0.5 - d / width, 0.0, 1.0).reshape(grids[0].shape)


def shape_fill(geometry: Geometry, params: dict[str, Any], centres: list[np.ndarray], steps: np.ndarray, active: tuple[bool, bool, bool]) -> Any:
    """Share of each pixel inside ``geometry``'s type and axis with the parameters
    ``params`` (those of :func:`shape_parameters`, possibly traced)."""
    import jax.numpy as jnp

    p = {k: jnp.asarray(v) for k, v in params.items()}
    if isinstance(geometry, Box):
        return box_fill(p["center"], p["size"], centres, steps, active)
    if isinstance(geometry, Sphere):
        return distance_fill(lambda x: sphere_distance(p, x), centres, steps, active)
    if isinstance(geometry, Cylinder):
        return distance_fill(lambda x: cylinder_distance(geometry.axis, p, x), centres, steps, active)
    if isinstance(geometry, PolySlab):
        return distance_fill(lambda x: polyslab_distance(geometry.axis, p, x), centres, steps, active)
    raise TypeError(f"no shape gradient for a {type(geometry).__name__}")
