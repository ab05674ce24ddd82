"""Geometric primitives (µm). ``inside(x, y, z)`` is the one containment test used
by both the mesher and the plots; ``signed_distance(x, y, z)`` (negative inside) gives
the mesher each interface's position and normal within a cell."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import Field, field_validator, model_validator

from .base import Coordinate, Extent, Finite, MetoModel, PositiveFinite, Size, _as_tuple
from .layout import gds_polygons

Axis = Literal[0, 1, 2]


def _reflect(point: tuple[float, ...], axis: int, plane: float) -> tuple[float, ...]:
    return tuple(2 * plane - c if a == axis else c for a, c in enumerate(point))


def _extruded(in_plane: np.ndarray, along: np.ndarray) -> np.ndarray:
    """Signed distance (µm) to a cross-section extruded along an axis, from the
    signed distances to the cross-section (``in_plane``) and to the end caps (``along``)."""
    outside = np.hypot(np.maximum(in_plane, 0.0), np.maximum(along, 0.0))
    return np.minimum(np.maximum(in_plane, along), 0.0) + outside


def same_shape(first: "Geometry", second: "Geometry", tol: float = 1e-9) -> bool:
    """Whether two geometries describe the same region (a polygon's vertices in any
    cyclic order and orientation), to ``tol`` µm."""
    if type(first) is not type(second):
        return False
    if isinstance(first, PolySlab):
        if first.axis != second.axis or not np.allclose(first.slab_bounds, second.slab_bounds, atol=tol):  # type: ignore[union-attr]
            return False
        if abs(first.inset(first.slab_bounds[0]) - second.inset(second.slab_bounds[0])) > tol or abs(first.sidewall_angle - second.sidewall_angle) > tol:  # type: ignore[union-attr]
            return False  # the same cross-section at the bottom and the same slope
        a, b = np.asarray(first.vertices), np.asarray(second.vertices)  # type: ignore[union-attr]
        return a.shape == b.shape and any(np.allclose(np.roll(v, k, axis=0), a, atol=tol) for v in (b, b[::-1]) for k in range(len(b)))
    x, y = first.model_dump(), second.model_dump()
    return x.keys() == y.keys() and all(np.allclose(x[k], y[k], atol=tol) if not isinstance(x[k], str) else x[k] == y[k] for k in x)


class Box(MetoModel):
    """Axis-aligned box; a size of ``inf`` extends it through the whole domain."""

    type: Literal["Box"] = "Box"
    center: Coordinate = (0.0, 0.0, 0.0)
    size: Size

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        lo = tuple(c - s / 2 for c, s in zip(self.center, self.size))
        hi = tuple(c + s / 2 for c, s in zip(self.center, self.size))
        return lo, hi

    def mirrored(self, axis: int, plane: float) -> "Box":
        """This geometry reflected through the plane ``axis`` = ``plane`` (µm)."""
        return self.model_copy(update={"center": _reflect(self.center, axis, plane)})

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        (x0, y0, z0), (x1, y1, z1) = self.bounds()
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & (z >= z0) & (z <= z1)

    def signed_distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Distance (µm) to the surface: negative inside, Euclidean outside."""
        q = [np.abs(c - c0) - s / 2 for c, c0, s in zip((x, y, z), self.center, self.size)]
        outside = np.sqrt(sum(np.maximum(v, 0.0) ** 2 for v in q))
        return np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0) + outside


class Sphere(MetoModel):
    type: Literal["Sphere"] = "Sphere"
    center: Coordinate = (0.0, 0.0, 0.0)
    radius: PositiveFinite

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(c - self.radius for c in self.center), tuple(c + self.radius for c in self.center)

    def mirrored(self, axis: int, plane: float) -> "Sphere":
        """This geometry reflected through the plane ``axis`` = ``plane`` (µm)."""
        return self.model_copy(update={"center": _reflect(self.center, axis, plane)})

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        cx, cy, cz = self.center
        return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= self.radius**2

    def signed_distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Distance (µm) to the surface: negative inside."""
        cx, cy, cz = self.center
        return np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) - self.radius


class Cylinder(MetoModel):
    """Circular cylinder of ``radius`` along ``axis`` (0, 1, 2 = x, y, z)."""

    type: Literal["Cylinder"] = "Cylinder"
    center: Coordinate = (0.0, 0.0, 0.0)
    radius: PositiveFinite
    length: Annotated[Extent, Field(gt=0)]
    axis: Axis = 2

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        half = [self.radius] * 3
        half[self.axis] = self.length / 2
        return tuple(c - h for c, h in zip(self.center, half)), tuple(c + h for c, h in zip(self.center, half))

    def mirrored(self, axis: int, plane: float) -> "Cylinder":
        """This geometry reflected through the plane ``axis`` = ``plane`` (µm)."""
        return self.model_copy(update={"center": _reflect(self.center, axis, plane)})

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        r = [c - c0 for c, c0 in zip((x, y, z), self.center)]
        a, b = (i for i in range(3) if i != self.axis)
        return (r[a] ** 2 + r[b] ** 2 <= self.radius**2) & (np.abs(r[self.axis]) <= self.length / 2)

    def signed_distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Distance (µm) to the surface: negative inside."""
        r = [c - c0 for c, c0 in zip((x, y, z), self.center)]
        a, b = (i for i in range(3) if i != self.axis)
        return _extruded(np.hypot(r[a], r[b]) - self.radius, np.abs(r[self.axis]) - self.length / 2)


class PolySlab(MetoModel):
    """Extruded polygon: ``vertices`` (µm) in the plane normal to ``axis``, listed in the
    order of the two remaining axes (x, y for axis 2), extruded over ``slab_bounds``.

    ``sidewall_angle`` (rad, from the axis; Tidy3D's and Meep's name): positive, the
    cross-section shrinks towards +axis (an etched ridge, narrower at the top);
    negative, it grows. ``vertices`` are the cross-section on ``reference_plane``
    ("bottom", "middle" or "top" of the slab); at a distance h above it every edge has
    moved inwards by h·tan(angle). Where the cross-section grows, convex corners come
    out rounded (the offset of a polygon by a distance), not mitred."""

    type: Literal["PolySlab"] = "PolySlab"
    vertices: Annotated[tuple[tuple[Finite, Finite], ...], Field(min_length=3)]
    slab_bounds: tuple[Finite, Finite]
    axis: Axis = 2
    sidewall_angle: Annotated[float, Field(gt=-np.pi / 2, lt=np.pi / 2)] = 0.0
    reference_plane: Literal["bottom", "middle", "top"] = "bottom"

    @field_validator("vertices", "slab_bounds", mode="before")
    @classmethod
    def _tuples(cls, value: object) -> object:
        value = _as_tuple(value)
        return tuple(_as_tuple(v) for v in value) if isinstance(value, tuple) else value

    @model_validator(mode="after")
    def _check(self) -> "PolySlab":
        if not self.slab_bounds[0] < self.slab_bounds[1]:
            raise ValueError("slab_bounds must be increasing (lower, upper)")
        v = np.asarray(self.vertices)
        area = 0.5 * np.sum(v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1])
        if abs(area) == 0:
            raise ValueError("vertices enclose no area")
        return self

    @classmethod
    def from_gds(cls, gds: object, cell: str | None, layer: int, slab_bounds: tuple[float, float], datatype: int = 0, axis: Axis = 2) -> list["PolySlab"]:
        """The polygons of a GDS ``cell`` on ``layer``/``datatype`` (references flattened,
        units converted to µm) extruded over ``slab_bounds``; see
        :func:`metosim.layout.gds_polygons`."""
        return [cls(vertices=[(float(u), float(w)) for u, w in polygon], slab_bounds=slab_bounds, axis=axis) for polygon in gds_polygons(gds, cell, layer, datatype)]  # type: ignore[arg-type]

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        v = np.asarray(self.vertices)
        a, b = (i for i in range(3) if i != self.axis)
        lo, hi = [0.0] * 3, [0.0] * 3
        lo[a], hi[a] = float(v[:, 0].min()), float(v[:, 0].max())
        lo[b], hi[b] = float(v[:, 1].min()), float(v[:, 1].max())
        lo[self.axis], hi[self.axis] = self.slab_bounds
        grow = -min(self.inset(z) for z in self.slab_bounds)  # the widest cross-section's offset
        for i in (a, b):
            lo[i], hi[i] = lo[i] - max(grow, 0.0), hi[i] + max(grow, 0.0)
        return tuple(lo), tuple(hi)

    @property
    def reference(self) -> float:
        """Position (µm) along the axis of the plane ``vertices`` describe."""
        z0, z1 = self.slab_bounds
        return {"bottom": z0, "middle": 0.5 * (z0 + z1), "top": z1}[self.reference_plane]

    def inset(self, z: Any) -> Any:
        """How far (µm) the edges have moved inwards at ``z`` along the axis."""
        return (z - self.reference) * np.tan(self.sidewall_angle)

    def mirrored(self, axis: int, plane: float) -> "PolySlab":
        """This geometry reflected through the plane ``axis`` = ``plane`` (µm)."""
        if axis == self.axis:
            z0, z1 = self.slab_bounds
            # The reference plane lands on the other side, and the slope turns over.
            flipped = {"bottom": "top", "middle": "middle", "top": "bottom"}[self.reference_plane]
            return self.model_copy(update={"slab_bounds": (2 * plane - z1, 2 * plane - z0), "reference_plane": flipped, "sidewall_angle": -self.sidewall_angle})
        k = [i for i in range(3) if i != self.axis].index(axis)
        return self.model_copy(update={"vertices": tuple(tuple(2 * plane - v if j == k else v for j, v in enumerate(p)) for p in reversed(self.vertices))})

    def _in_polygon(self, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Whether the in-plane points (u, w) lie inside the polygon (even-odd ray casting).

        An edge from w0 to w1 is crossed by the rays of the points with
        min(w0, w1) ≤ w < max(w0, w1): with the points sorted by w once, each edge
        visits only that band (a many-vertex polygon such as a ring costs little more
        than a box), with the arithmetic of a test of every point against every edge."""
        shape = np.broadcast_shapes(np.shape(u), np.shape(w))
        uu, ww = np.broadcast_to(u, shape).ravel(), np.broadcast_to(w, shape).ravel()
        order = np.argsort(ww, kind="stable")
        sorted_w = ww[order]
        inside = np.zeros(ww.size, dtype=bool)
        v = np.asarray(self.vertices)
        for (u0, w0), (u1, w1) in zip(v, np.roll(v, -1, axis=0)):
            if w0 == w1:
                continue  # a ray parallel to the edge never crosses it
            band = order[np.searchsorted(sorted_w, min(w0, w1)) : np.searchsorted(sorted_w, max(w0, w1))]
            u_cross = u0 + (ww[band] - w0) * (u1 - u0) / (w1 - w0)
            inside[band] ^= uu[band] < u_cross
        return inside.reshape(shape)

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        p = np.broadcast_arrays(x, y, z)
        a, b = (i for i in range(3) if i != self.axis)
        lo, hi = self.slab_bounds
        within = (p[self.axis] >= lo) & (p[self.axis] <= hi)
        if not self.sidewall_angle:
            return self._in_polygon(p[a], p[b]) & within
        return (self._polygon_distance(p[a], p[b]) + self.inset(p[self.axis]) <= 0) & within

    def _polygon_distance(self, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Signed distance (µm) in the plane to the polygon ``vertices``: negative inside."""
        nearest = np.full(np.broadcast_shapes(u.shape, w.shape), np.inf)
        v = np.asarray(self.vertices, dtype=float)
        for (u0, w0), (u1, w1) in zip(v, np.roll(v, -1, axis=0)):
            du, dw = u1 - u0, w1 - w0
            t = np.clip(((u - u0) * du + (w - w0) * dw) / (du * du + dw * dw), 0.0, 1.0)
            nearest = np.minimum(nearest, np.hypot(u - u0 - t * du, w - w0 - t * dw))
        return np.where(self._in_polygon(u, w), -nearest, nearest)

    def signed_distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Distance (µm) to the surface: negative inside. A slanted sidewall's is
        (in-plane distance + inset)·cos(angle), exact beside a straight edge."""
        p = np.broadcast_arrays(x, y, z)
        a, b = (i for i in range(3) if i != self.axis)
        in_plane = (self._polygon_distance(p[a], p[b]) + self.inset(p[self.axis])) * np.cos(self.sidewall_angle)
        lo, hi = self.slab_bounds
        return _extruded(in_plane, np.abs(p[self.axis] - (lo + hi) / 2) - (hi - lo) / 2)


Geometry = Annotated[Union[Box, Sphere, Cylinder, PolySlab], Field(discriminator="type")]

__all__ = ["Box", "Cylinder", "Geometry", "PolySlab", "Sphere"]
