"""Sampling the Yee grid: the integer nodes a box spans, where each field component
is recorded, and interpolation of staggered components onto integer nodes. Shared by
monitors, mode planes and sources; knows the grid, no model."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..grid import Grid, on_half_nodes


@dataclass(frozen=True)
class Region:
    """Integer-node targets ``[start, stop)`` per axis and the recording slices per component."""

    targets: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    slices: dict[str, tuple[slice, slice, slice]]
    #: Whether a component is staggered (half nodes) along each axis, and whether its
    #: recording starts one node before the first target (False at the minus face).
    staggered: dict[str, tuple[bool, bool, bool]]
    padded: dict[str, tuple[bool, bool, bool]]
    #: Along a graded staggered axis, the weight of the upper half node at each target
    #: (h_{i−1} / (h_{i−1} + h_i)); None where the midpoint average is exact.
    weights: dict[str, tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]]

    def coords(self, grid: Grid) -> dict[str, np.ndarray]:
        return {ax: grid.nodes(a, half=False)[slice(*self.targets[a])] for a, ax in enumerate("xyz")}


def interior_node(index: int, what: str) -> int:
    """``index``, a plane's node along its normal, refused on the domain's first node,
    where the H half node below it does not exist (``what`` names the plane)."""
    if index < 1:
        raise ValueError(f"{what} must be at least one cell inside the domain")
    return index


def node_range(grid: Grid, axis: int, center: float, size: float) -> tuple[int, int]:
    """Integer nodes [start, stop) along ``axis`` inside center ± size/2 (µm); the
    nearest node for a zero size or a box between nodes."""
    if not grid.active[axis]:
        return 0, 1
    nodes = grid.nodes(axis, half=False)
    tol = 1e-9 * grid.dl[axis]
    inside = np.nonzero((nodes >= center - size / 2 - tol) & (nodes <= center + size / 2 + tol))[0]
    if size == 0 or inside.size == 0:
        i = nearest_node(grid, axis, center)
        return i, i + 1
    return int(inside[0]), int(inside[-1]) + 1


def nearest_node(grid: Grid, axis: int, position: float) -> int:
    """The integer node nearest ``position`` (µm) along ``axis``; the lower one on a tie."""
    return int(np.argmin(np.abs(grid.nodes(axis, half=False) - position)))


def snapped_edges(grid: Grid, axis: int, center: float, size: float) -> tuple[bool, bool]:
    """Whether each edge (minus, plus) of a surface spanning center ± size/2 (µm) along
    ``axis`` lies inside the domain, where :func:`surface_range` snaps it to a node."""
    nodes = grid.nodes(axis, half=False)
    tol = 1e-9 * grid.dl[axis]
    return bool(center - size / 2 > nodes[0] - tol), bool(center + size / 2 < nodes[-1] + tol)


def surface_range(grid: Grid, axis: int, center: float, size: float) -> tuple[int, int]:
    """Integer nodes [start, stop) a flux or projection surface spans along ``axis``:
    each edge inside the domain snapped to its nearest node, as a face of a box placed
    at that edge snaps, so the faces of a closed box meet exactly whatever the box's
    size; an edge past the domain takes the last node."""
    if not grid.active[axis] or size == 0:
        return node_range(grid, axis, center, size)
    inside = snapped_edges(grid, axis, center, size)
    start = nearest_node(grid, axis, center - size / 2) if inside[0] else 0
    stop = nearest_node(grid, axis, center + size / 2) + 1 if inside[1] else grid.nodes(axis, half=False).size
    return start, max(stop, start + 1)


def monitor_region(grid: Grid, center: tuple[float, ...], size: tuple[float, ...], components: tuple[str, ...], surface: bool = False) -> Region:
    """Where a monitor records: integer-node targets per axis (``surface``: the snapped
    extent of a flux or projection face, :func:`surface_range`) and each component's slices."""
    span = surface_range if surface else node_range
    targets = tuple(span(grid, a, center[a], size[a]) for a in range(3))
    slices, staggered, padded, weights = {}, {}, {}, {}
    for comp in components:
        half = half_node_axes(comp, grid.active)
        pad = tuple(half[a] and targets[a][0] > 0 for a in range(3))
        slices[comp] = tuple(slice(targets[a][0] - pad[a], targets[a][1]) for a in range(3))
        staggered[comp], padded[comp] = half, pad
        weights[comp] = tuple(interpolation_weights(grid, a)[slice(*targets[a])] if half[a] and not grid.is_uniform(a) else None for a in range(3))
    return Region(targets=targets, slices=slices, staggered=staggered, padded=padded, weights=weights)  # type: ignore[arg-type]


def interpolation_weights(grid: Grid, axis: int) -> np.ndarray:
    """Per integer node i, the weight h_{i−1} / (h_{i−1} + h_i) of the half node above it
    when interpolating half-node values linearly onto it (½ on a uniform axis)."""
    below, above = grid.cell_extent(f"H{'xyz'[axis]}", axis)  # H_a: on integer nodes along a
    return below / (below + above)


def half_node_axes(component: str, active: tuple[bool, ...]) -> tuple[bool, bool, bool]:
    """Along which of x, y, z ``component`` sits on half nodes (E along its own axis,
    H along the other two), counting only ``active`` axes."""
    return tuple(active[a] and on_half_nodes(component, a) for a in range(3))  # type: ignore[return-value]


def colocate_axes(values: Any, staggered: tuple[bool, ...], padded: tuple[bool, ...], first_spatial_axis: int, xp: ModuleType = np, weights: tuple[Any, ...] = (None, None, None)) -> Any:
    """Interpolate values on half nodes onto the integer nodes along each ``staggered``
    axis (the midpoint average, or the upper node's ``weights`` on a graded axis);
    where not ``padded`` (no node recorded before the first) the edge value repeats.
    ``xp``: the array namespace (NumPy, or jax.numpy under a gradient)."""
    for a in range(3):
        if not staggered[a]:
            continue
        axis = first_spatial_axis + a
        if not padded[a]:
            values = xp.concatenate([xp.take(values, np.array([0]), axis=axis), values], axis=axis)
        n = values.shape[axis]
        lower, upper = xp.take(values, np.arange(0, n - 1), axis=axis), xp.take(values, np.arange(1, n), axis=axis)
        if weights[a] is None:
            values = 0.5 * (lower + upper)
        else:
            shape = [1] * values.ndim
            shape[axis] = -1
            values = lower + weights[a].reshape(shape) * (upper - lower)
    return values


def colocate(values: Any, region: Region, comp: str, first_spatial_axis: int, xp: ModuleType = np) -> Any:
    """Interpolate a staggered recording onto the region's integer nodes."""
    return colocate_axes(values, region.staggered[comp], region.padded[comp], first_spatial_axis, xp, region.weights[comp])
