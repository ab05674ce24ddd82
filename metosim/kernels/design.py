"""Pixelated permittivity (a design region, a ``CustomMedium``) onto the Yee grid.

A box holds ``n_x × n_y × n_z`` equal pixels. Each E node takes the volume average
of its cell: the fraction F of the cell inside the box carries the pixel permittivity
interpolated linearly between pixel centres at the node, the rest keeps what the
other structures meshed there:

    ε_node = Σ W_x W_y W_z ε_pixels + (1 − F) ε_other,    W_a = f_a ⊗ w_a

The map is separable and linear in the pixels, so the same function paints a
``CustomMedium`` for a plain solve (NumPy) and a design region under ``jax.grad``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..grid import Grid


@dataclass(frozen=True)
class PixelMap:
    """The map from a box's pixels to the E nodes of one component.

    ``window``: node index slices (per axis) whose cells overlap the box;
    ``weights[a]``: (window nodes along a, pixels along a), each row the node's cell
    fraction inside the box times its linear-interpolation weights;
    ``outside``: 1 − F on the window (the share the other structures keep)."""

    window: tuple[slice, slice, slice]
    weights: tuple[np.ndarray, np.ndarray, np.ndarray]
    outside: np.ndarray


def _axis_weights(nodes: np.ndarray, below: np.ndarray, above: np.ndarray, lo: float, hi: float, pixels: int, active: bool) -> tuple[slice, np.ndarray]:
    """Window of nodes whose cell [x − below, x + above] overlaps [lo, hi] (µm), and
    their (fraction × interpolation) weights over ``pixels`` equal pixels."""
    if not active:
        return slice(0, 1), np.full((1, pixels), 1.0 / pixels)
    # A box reaching past the grid (size inf) spans it: clip to the outermost cells.
    lo, hi = max(lo, nodes[0] - 2 * below[0]), min(hi, nodes[-1] + 2 * above[-1])
    overlap = np.clip(np.minimum(nodes + above, hi) - np.maximum(nodes - below, lo), 0.0, None) / (below + above)
    inside = np.flatnonzero(overlap > 1e-12)
    if inside.size == 0:
        return slice(0, 0), np.zeros((0, pixels))
    window = slice(int(inside[0]), int(inside[-1]) + 1)
    x, fraction = nodes[window], overlap[window]
    # Pixel coordinate of each node: 0 at the first pixel centre, clamped to the pixels.
    s = np.clip((x - lo) / (hi - lo) * pixels - 0.5, 0.0, pixels - 1)
    left = np.minimum(np.floor(s).astype(int), pixels - 1)
    right = np.minimum(left + 1, pixels - 1)
    t = s - left
    w = np.zeros((x.size, pixels))
    np.add.at(w, (np.arange(x.size), left), 1 - t)
    np.add.at(w, (np.arange(x.size), right), t)
    return window, fraction[:, None] * w


def pixel_map(grid: Grid, bounds: tuple[tuple[float, ...], tuple[float, ...]], shape: tuple[int, int, int], p: int) -> PixelMap:
    """The :class:`PixelMap` of E component ``p`` (0, 1, 2) for pixels ``shape``
    filling the box ``bounds`` ((x0, y0, z0), (x1, y1, z1)) in µm."""
    comp = ("Ex", "Ey", "Ez")[p]
    window, weights = [], []
    for a in range(3):
        win, w = _axis_weights(grid.component_nodes(comp, a), *grid.cell_extent(comp, a), bounds[0][a], bounds[1][a], shape[a], grid.active[a])
        window.append(win), weights.append(w)
    fraction = np.einsum("i,j,k->ijk", *(w.sum(axis=1) for w in weights))
    return PixelMap(tuple(window), tuple(weights), 1.0 - fraction)  # type: ignore[arg-type]


def design_windows(grid: Grid, bounds: tuple[tuple[float, ...], tuple[float, ...]], shape: tuple[int, int, int]) -> dict[int, PixelMap]:
    """The :class:`PixelMap` of each E component the curl drives on this grid (all but
    the out-of-plane-less ones of 1D/2D) that has nodes in the box: what a design
    region's pixels change."""
    curled = [grid.active[(p + 1) % 3] or grid.active[(p + 2) % 3] for p in range(3)]
    maps = {p: pixel_map(grid, bounds, shape, p) for p in range(3) if curled[p]}
    return {p: m for p, m in maps.items() if all(w.stop > w.start for w in m.window)}


def kept_half(m: PixelMap, axis: int, centre: int) -> PixelMap | None:
    """``m`` on the half a mirror plane keeps (:mod:`.symmetry`): nodes from ``centre``
    on along ``axis``, renumbered from 0; None where the window lies wholly below it."""
    w = m.window[axis]
    start = max(w.start, centre)
    if start >= w.stop:
        return None
    skip = start - w.start
    window = tuple(slice(start - centre, w.stop - centre) if a == axis else s for a, s in enumerate(m.window))
    weights = tuple(x[skip:] if a == axis else x for a, x in enumerate(m.weights))
    outside = np.take(m.outside, np.arange(skip, m.outside.shape[axis]), axis=axis)
    return PixelMap(window, weights, outside)  # type: ignore[arg-type]


def axis_into_pml(window: tuple[slice, slice, slice], shape: tuple[int, int, int], pml: tuple[tuple[int, int], ...], active: tuple[bool, bool, bool]) -> int | None:
    """The first axis along which node ``window`` reaches the CPML slabs (``pml``: layers
    (minus, plus) per axis) or the first node (the boundary), None if it stays inside: the
    differentiable solve's adjoint holds no design there."""
    for a in range(3):
        minus, plus = pml[a]
        if active[a] and (window[a].start < max(minus, 1) or window[a].stop > shape[a] - plus):
            return a
    return None


def fill(m: PixelMap, pixels: Any, xp: ModuleType = np) -> Any:
    """The pixels' share Σ W_x W_y W_z ε_pixels of the permittivity on ``m.window``."""
    wx, wy, wz = m.weights
    return xp.einsum("il,jm,kn,lmn->ijk", wx, wy, wz, pixels)


def paint(m: PixelMap, pixels: Any, other: Any, xp: ModuleType = np) -> Any:
    """Permittivity on ``m.window`` with the box's ``pixels`` (shape (n_x, n_y, n_z))
    painted over ``other`` (the permittivity the other structures give the window)."""
    return fill(m, pixels, xp) + m.outside * other
