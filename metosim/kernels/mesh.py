"""Meshing: structures → permittivity, conductivity, PEC and dispersive masks on the
Yee nodes of each E component, with subpixel averaging at interfaces.

Averaging rule for Eₚ in a cell cut by an interface: sample the cell on a
lattice of ``SUBPIXEL[n]`` points per active axis (n active axes), average ε
arithmetically across the axes transverse to p,
then harmonically along p. For a planar interface this is the exact effective
permittivity (arithmetic for E parallel to the interface, harmonic for E normal to
it), which restores second-order accuracy; curved interfaces get a close
approximation without needing surface normals.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from ..grid import Grid
from ..medium import DISPERSIVE, CustomMedium, Medium, PECMedium
from ..simulation import Simulation
from .design import fill, pixel_map
from .units import to_normalised_conductivity

#: Samples per active axis of a cut cell, by the number of active axes: the midpoint
#: lattice places an interface to within dl/(2·samples), so 1D and 2D grids (few cut
#: cells) sample finely enough for waveguide indices to converge at second order.
SUBPIXEL = {1: 64, 2: 16, 3: 4}


@dataclass(frozen=True)
class MeshedMedia:
    """Material arrays per E component (index 0, 1, 2 = x, y, z), shape ``grid.num_cells``."""

    permittivity: tuple[np.ndarray, np.ndarray, np.ndarray]
    #: Normalised conductivity σ·Z₀·1 µm.
    conductivity: tuple[np.ndarray, np.ndarray, np.ndarray]
    pec: tuple[np.ndarray, np.ndarray, np.ndarray]
    #: Index into ``sim.media`` of the medium at each node (for dispersive poles).
    medium_index: tuple[np.ndarray, np.ndarray, np.ndarray]


def medium_index(sim: Simulation, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Index into ``sim.media`` at each point (0 = background; later structures win).
    ``CustomMedium`` structures are skipped: :func:`mesh_media` paints them last."""
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    index = np.zeros(shape, dtype=np.int32)
    for k, structure in enumerate(sim.structures, start=1):
        if isinstance(structure.medium, CustomMedium):
            continue
        index[np.broadcast_to(structure.geometry.inside(x, y, z), shape)] = k
    return index


def _property_tables(sim: Simulation, freq: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-medium (ε or ε∞, normalised σ, is-PEC); with ``freq`` (Hz) ε is each
    medium's complex ε(freq), its conductivity and poles included (for mode solves)."""
    if freq is not None:
        eps_f = np.array([1.0 if isinstance(m, (PECMedium, CustomMedium)) else complex(m.eps_model(freq)) for m in sim.media])
        pec = np.array([isinstance(m, PECMedium) for m in sim.media])
        return eps_f, np.zeros(len(sim.media)), pec
    eps, sigma, pec = [], [], []
    for m in sim.media:
        if isinstance(m, PECMedium):
            eps.append(1.0), sigma.append(0.0), pec.append(True)
        elif isinstance(m, CustomMedium):  # painted by mesh_media; never indexed
            eps.append(1.0), sigma.append(0.0), pec.append(False)
        elif isinstance(m, Medium):
            eps.append(m.permittivity), sigma.append(to_normalised_conductivity(m.conductivity)), pec.append(False)
        elif isinstance(m, DISPERSIVE):
            eps.append(m.eps_inf), sigma.append(0.0), pec.append(False)
        else:  # pragma: no cover - the model admits no other media
            raise TypeError(type(m).__name__)
    return np.array(eps), np.array(sigma), np.array(pec)


def mesh_media(sim: Simulation, grid: Grid, window: tuple[slice, slice, slice] | None = None, freq: float | None = None, paint_custom: bool = True) -> MeshedMedia:
    """Rasterise ``sim``'s structures onto the E-component nodes of ``grid`` (only the
    nodes in ``window``, index slices per axis, when given: e.g. one mode plane).
    With ``freq`` (Hz) the permittivity is each medium's complex ε at that frequency
    (what a mode solver needs of dispersive and lossy media), averaged alike.
    ``CustomMedium`` structures are painted over the rest (:mod:`.design`) unless
    ``paint_custom`` is False (a differentiable solve paints its design itself)."""
    eps_table, sigma_table, pec_table = _property_tables(sim, freq)
    active = [a for a in range(3) if grid.active[a]]
    out: dict[str, list[np.ndarray]] = {"eps": [], "sigma": [], "pec": [], "index": []}
    for p, comp in enumerate(("Ex", "Ey", "Ez")):
        pick = [window[a] if window else slice(None) for a in range(3)]
        coords = [grid.component_nodes(comp, a)[pick[a]] for a in range(3)]
        mesh = np.meshgrid(*coords, indexing="ij")
        below, above = _extents(grid, comp, pick)
        index = medium_index(sim, *mesh)
        eps = eps_table[index]
        sigma = sigma_table[index]

        # Cells cut by an interface: a corner of the cell sees another medium.
        cut = np.zeros(index.shape, dtype=bool)
        for signs in product((-1, 1), repeat=len(active)):
            shifted = list(mesh)
            for a, s in zip(active, signs):
                shifted[a] = mesh[a] + (above[a] if s > 0 else -below[a])
            cut |= medium_index(sim, *shifted) != index
        if cut.any() and len(sim.structures):
            eps[cut], sigma[cut] = _subpixel(
                sim, grid, [m[cut] for m in mesh], [np.broadcast_to(b, index.shape)[cut] for b in below], [np.broadcast_to(u, index.shape)[cut] for u in above],
                index[cut], p, eps_table, sigma_table, pec_table,
            )
        if paint_custom:
            eps = _paint_custom(sim, grid, p, eps, window)
        out["eps"].append(eps)
        out["sigma"].append(sigma)
        out["pec"].append(pec_table[index])
        out["index"].append(index)
    return MeshedMedia(
        permittivity=tuple(out["eps"]),  # type: ignore[arg-type]
        conductivity=tuple(out["sigma"]),  # type: ignore[arg-type]
        pec=tuple(out["pec"]),  # type: ignore[arg-type]
        medium_index=tuple(out["index"]),  # type: ignore[arg-type]
    )


def _paint_custom(sim: Simulation, grid: Grid, p: int, eps: np.ndarray, window: tuple[slice, slice, slice] | None) -> np.ndarray:
    """``eps`` (component p, on ``window`` or the whole grid) with every CustomMedium
    structure painted over it, in list order."""
    window = window or tuple(slice(0, n) for n in grid.num_cells)
    ranges = [window[a].indices(grid.num_cells[a])[:2] for a in range(3)]
    for structure in sim.structures:
        if not isinstance(structure.medium, CustomMedium):
            continue
        m = pixel_map(grid, structure.geometry.bounds(), structure.medium.shape, p)
        lo = [max(ranges[a][0], m.window[a].start) for a in range(3)]
        hi = [min(ranges[a][1], m.window[a].stop) for a in range(3)]
        if any(h <= l for l, h in zip(lo, hi)):
            continue
        # Only where the painted window and the requested one overlap.
        within = tuple(slice(lo[a] - m.window[a].start, hi[a] - m.window[a].start) for a in range(3))
        target = tuple(slice(lo[a] - ranges[a][0], hi[a] - ranges[a][0]) for a in range(3))
        eps = eps.copy()
        eps[target] = fill(m, structure.medium.values)[within] + m.outside[within] * eps[target]
    return eps


def _extents(grid: Grid, comp: str, pick: list[slice]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per axis, the distances (µm) from each node of ``comp`` (in the ``pick`` window)
    down to its Yee cell's lower face and up to its upper face, shaped to broadcast
    against the node mesh (0 on an inactive axis)."""
    below, above = [], []
    for a in range(3):
        shape = [-1 if b == a else 1 for b in range(3)]
        lower, upper = grid.cell_extent(comp, a) if grid.active[a] else (np.zeros(1), np.zeros(1))
        below.append(lower[pick[a]].reshape(shape)), above.append(upper[pick[a]].reshape(shape))
    return below, above


def _subpixel(
    sim: Simulation,
    grid: Grid,
    points: list[np.ndarray],
    below: list[np.ndarray],
    above: list[np.ndarray],
    own: np.ndarray,
    p: int,
    eps_table: np.ndarray,
    sigma_table: np.ndarray,
    pec_table: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Effective (ε, σ) for the cells around ``points`` (each shape (M,)), which reach
    ``below`` and ``above`` each point along each axis."""
    samples = SUBPIXEL[sum(grid.active)]
    fractions = (np.arange(samples) + 0.5) / samples
    # Samples shape (M, s_x, s_y, s_z): a midpoint lattice over each cell.
    samples = [
        (points[a] - below[a])[:, None, None, None] + ((below[a] + above[a])[:, None] * (fractions if grid.active[a] else np.zeros(1))[None]).reshape([points[a].size] + [-1 if b == a else 1 for b in range(3)])
        for a in range(3)
    ]
    index = medium_index(sim, *samples)
    # PEC samples take the node's own medium: PEC itself is staircased.
    index = np.where(pec_table[index], own.reshape(-1, 1, 1, 1), index)
    eps = eps_table[index]
    transverse = tuple(1 + a for a in range(3) if a != p)
    if grid.active[p]:
        eps_eff = 1.0 / np.mean(1.0 / np.mean(eps, axis=transverse), axis=1)
    else:
        eps_eff = np.mean(eps, axis=(1, 2, 3))
    return eps_eff, np.mean(sigma_table[index], axis=(1, 2, 3))
