"""Meshing: structures → permittivity, conductivity, PEC and the poles' weights on the
Yee nodes of each E component, with subpixel averaging at interfaces.

Averaging rule for Eₚ in a cell cut by one interface between two media (Farjadpour
et al., Opt. Lett. 31, 2972 (2006), as Meep does): the interface is taken as the plane
through the structure's surface nearest the cell centre, normal n̂ from the gradient of
its signed distance (a box's faces: per axis, in closed form); the fill fractions of
that plane are computed exactly, and the p-th diagonal element of the effective tensor is

    1/ε̃ₚₚ = n̂ₚ² ⟨1/ε⟩ + (1 − n̂ₚ²) / ⟨ε⟩

(arithmetic for E parallel to the interface, harmonic for E normal to it), ⟨1/ε⟩ over
the Yee cell and ⟨ε⟩ under a tent reaching the neighbouring nodes (see ``_subpixel``).
With exact fractions rather than counts on a sample lattice, the interface's position is
kept to any precision, which gives second-order convergence wherever the faces fall. Cells
that hold three or more media, a sheet thinner than the cell, or PEC fall back to a
lattice of ``SUBPIXEL[n]`` samples per active axis (n active axes), averaged
arithmetically across the axes transverse to p and harmonically along p.

Dispersive media enter the same rule at one reference frequency f₀ (the sources'
centre): the rule is a weighted mean, homogeneous of degree one in the media's ε, so at
each node ε̃(ε₁ … ε_M) = Σₘ wₘ εₘ with wₘ = ∂ε̃/∂εₘ at εₘ(f₀). The node gets
ε∞ = Σₘ wₘ ε∞ₘ and each medium's poles with strength wₘ: its ε(f) = Σₘ wₘ εₘ(f) is the
averaged one exactly at f₀ and to first order in εₘ(f) − εₘ(f₀) around it (exactly at
every f for E parallel to a face, where the rule is linear). The weights are ≥ 0 and
sum to ≥ 1 (the rule nests weighted arithmetic and harmonic means), so the poles stay
passive and a time step that keeps each medium stable keeps the node stable.
Meep puts each pole on its medium's nodes alone (a staircase, ε∞ smoothed); that is
what remains at faces of a metal (Re ε(f₀) ≤ 0, where the harmonic mean of both signs
can sit near a pole) and in a simulation without sources.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from ..geometry import Box, Geometry
from ..grid import Grid
from ..medium import DISPERSIVE, CustomMedium, Medium, PECMedium
from ..simulation import Simulation, Structure
from .design import PixelMap, fill, pixel_map
from .units import to_normalised_conductivity

#: Samples per active axis of a cut cell, by the number of active axes: the midpoint
#: lattice places an interface to within dl/(2·samples), so 1D and 2D grids (few cut
#: cells) sample finely enough for waveguide indices to converge at second order.
SUBPIXEL = {1: 64, 2: 16, 3: 4}
#: The complex step that differentiates the averaging rule (exact to rounding at any size).
_STEP = 1e-30


@dataclass(frozen=True)
class MeshedMedia:
    """Material arrays per E component (index 0, 1, 2 = x, y, z), shape ``grid.num_cells``."""

    permittivity: tuple[np.ndarray, np.ndarray, np.ndarray]
    #: Normalised conductivity σ·Z₀·1 µm.
    conductivity: tuple[np.ndarray, np.ndarray, np.ndarray]
    pec: tuple[np.ndarray, np.ndarray, np.ndarray]
    #: Per dispersive medium (its index into ``sim.media``), the strength of its poles
    #: at each node of each E component: 1 inside it, the averaging rule's weight at
    #: its faces, 0 elsewhere and on PEC (see the module notes).
    pole_weight: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]


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


def smoothing_frequency(sim: Simulation) -> float | None:
    """The frequency (Hz) at which dispersive media are averaged at faces: the mean of
    the sources' central frequencies (None without sources)."""
    centres = [src.source_time.freq0 for src in sim.sources]
    return float(np.mean(centres)) if centres else None


def _pole_tables(sim: Simulation) -> dict[int, float]:
    """Per dispersive medium (index into ``sim.media``), Re(ε(f₀) − ε∞) at the
    smoothing frequency: what its poles add there (empty without sources)."""
    f0 = smoothing_frequency(sim)
    if f0 is None:
        return {}
    return {k: float(np.real(m.eps_model(f0))) - m.eps_inf for k, m in enumerate(sim.media) if isinstance(m, DISPERSIVE)}


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


def mesh_media(
    sim: Simulation,
    grid: Grid,
    window: tuple[slice, slice, slice] | None = None,
    freq: float | None = None,
    paint_custom: bool = True,
    on_component: Callable[[], None] | None = None,
) -> MeshedMedia:
    """Rasterise ``sim``'s structures onto the E-component nodes of ``grid`` (only the
    nodes in ``window``, index slices per axis, when given: e.g. one mode plane).
    With ``freq`` (Hz) the permittivity is each medium's complex ε at that frequency
    (what a mode solver needs of dispersive and lossy media), averaged alike.
    ``CustomMedium`` structures are painted over the rest (:mod:`.design`) unless
    ``paint_custom`` is False (a differentiable solve paints its design itself).
    ``on_component`` is called after each E component (the engine's heartbeat: a large
    grid meshes for a while)."""
    eps_table, sigma_table, pec_table = _property_tables(sim, freq)
    # The engine's grid (no ``freq``): dispersive media averaged at the smoothing
    # frequency, each pole weighted per node (module notes); ε̃ at f₀ from ``at_f0``.
    chi = {} if freq is not None else _pole_tables(sim)
    at_f0 = eps_table.copy()
    for k, value in chi.items():
        at_f0[k] += value
    active = [a for a in range(3) if grid.active[a]]
    out: dict[str, list[np.ndarray]] = {"eps": [], "sigma": [], "pec": []}
    weights: dict[int, list[np.ndarray]] = {k: [] for k, m in enumerate(sim.media) if isinstance(m, DISPERSIVE)}
    for p, comp in enumerate(("Ex", "Ey", "Ez")):
        pick = [window[a] if window else slice(None) for a in range(3)]
        coords = [grid.component_nodes(comp, a)[pick[a]] for a in range(3)]
        mesh = np.meshgrid(*coords, indexing="ij")
        below, above = _extents(grid, comp, pick)
        index = medium_index(sim, *mesh)
        eps = eps_table[index]
        sigma = sigma_table[index]
        pole = {k: (index == k).astype(float) for k in weights}

        # Cells near an interface: a corner of the Yee cell, or of the tent's support
        # (to the neighbouring nodes, see _subpixel), sees another medium. The support
        # is taken a millionth short: a face through a neighbouring node weighs nothing,
        # and is then not found on one side of a mirror plane and missed on the other.
        corners = []
        for reach, signs in product((1, 2 - 1e-6), product((-1, 1), repeat=len(active))):
            shifted = list(mesh)
            for a, s in zip(active, signs):
                shifted[a] = mesh[a] + reach * (above[a] if s > 0 else -below[a])
            corners.append(medium_index(sim, *shifted))
        cut = np.zeros(index.shape, dtype=bool)
        for corner in corners:
            cut |= corner != index
        if cut.any() and len(sim.structures):
            seen = np.stack([np.broadcast_to(corner, index.shape)[cut] for corner in corners], axis=-1)
            average, sigma[cut] = _subpixel(
                sim, grid, [m[cut] for m in mesh], [np.broadcast_to(b, index.shape)[cut] for b in below], [np.broadcast_to(u, index.shape)[cut] for u in above],
                index[cut], seen, p, sigma_table, pec_table,
            )
            eps[cut] = average(eps_table)
            if chi:
                weight = {k: average(at_f0 + 1j * _STEP * (np.arange(at_f0.size) == k)).imag / _STEP for k in chi}  # ∂ε̃/∂ε_k, exact
                # Faces of a metal (Re ε(f₀) ≤ 0) stay as they were: the harmonic mean of
                # ε of both signs can be near a pole, and Tidy3D and Meep leave them too.
                smooth = ~np.any([weight[k] != 0 for k in chi if at_f0[k] <= 0], axis=0)
                eps[cut] = np.where(smooth, average(at_f0) - sum(weight[k] * value for k, value in chi.items()), eps[cut])
                for k in chi:
                    pole[k][cut] = np.where(smooth, weight[k], pole[k][cut])
        for structure, target, m, within in _custom_windows(sim, grid, p, window):
            # A design region replaces what lies under it, poles included.
            if paint_custom:
                eps[target] = fill(m, structure.medium.values)[within] + m.outside[within] * eps[target]
            for k in pole:
                pole[k][target] *= m.outside[within]
        out["eps"].append(eps)
        out["sigma"].append(sigma)
        out["pec"].append(pec_table[index])
        for k in weights:
            weights[k].append(np.where(pec_table[index], 0.0, pole[k]))
        if on_component is not None:
            on_component()
    return MeshedMedia(
        permittivity=tuple(out["eps"]),  # type: ignore[arg-type]
        conductivity=tuple(out["sigma"]),  # type: ignore[arg-type]
        pec=tuple(out["pec"]),  # type: ignore[arg-type]
        pole_weight={k: tuple(w) for k, w in weights.items()},  # type: ignore[misc]
    )


def _custom_windows(sim: Simulation, grid: Grid, p: int, window: tuple[slice, slice, slice] | None) -> Iterator[tuple[Structure, tuple[slice, ...], PixelMap, tuple[slice, ...]]]:
    """Each CustomMedium structure, in list order, where its pixels reach component p's
    nodes in ``window`` (the whole grid when None): (structure, the nodes as slices of
    the window's arrays, its pixel map, the same nodes as slices of the map)."""
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
        within = tuple(slice(lo[a] - m.window[a].start, hi[a] - m.window[a].start) for a in range(3))
        target = tuple(slice(lo[a] - ranges[a][0], hi[a] - ranges[a][0]) for a in range(3))
        yield structure, target, m, within


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
    seen: np.ndarray,
    p: int,
    sigma_table: np.ndarray,
    pec_table: np.ndarray,
) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """The averaging rule for the cells around ``points`` (each shape (M,)), which reach
    ``below`` and ``above`` each point along each axis; ``seen`` (M, corners) holds the
    media found at the corners of each cell and of the cell doubled. Returns the rule —
    a function from a per-medium ε table (real or complex) to each cell's effective ε,
    so the geometry is worked out once for several tables — and the cells' σ."""
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
    transverse = tuple(1 + a for a in range(3) if a != p)
    sigma_eff = np.mean(sigma_table[index], axis=(1, 2, 3))

    # Cells split between exactly two media, neither PEC: the planar rule with exact fill
    # fractions. The harmonic (normal) part takes the Yee cell's volume fraction; the
    # arithmetic (parallel) part weights the medium with a tent from one neighbouring
    # node of the component to the other (on a uniform grid the cell convolved with
    # itself), the weight the second difference of a field component along the normal
    # gives its own node: with it, a parallel component's error no longer depends on
    # where the face falls within the cell (slab TE1 at 20 cells/λ with faces halfway
    # between nodes: 2.8e-3 with the cell's volume fraction, 4e-4 with the tent).
    lower = np.minimum(index.min(axis=(1, 2, 3)), seen.min(axis=1))
    upper = np.maximum(index.max(axis=(1, 2, 3)), seen.max(axis=1))
    two = (lower != upper) & ~pec_table[lower] & ~pec_table[upper]
    two &= np.all((index == lower[:, None, None, None]) | (index == upper[:, None, None, None]), axis=(1, 2, 3))
    two &= np.all((seen == lower[:, None]) | (seen == upper[:, None]), axis=1)
    # Per group of two-media cells: (cells, inside medium, outside media, ε̃(ε_in, ε_out)).
    planar: list[tuple[np.ndarray, int, np.ndarray, Callable[[Any, np.ndarray], np.ndarray]]] = []
    for k in np.unique(upper[two]):
        cells = np.flatnonzero(two & (upper == k))
        centre = [points[a][cells] + (above[a][cells] - below[a][cells]) / 2 for a in range(3)]
        half = [(below[a][cells] + above[a][cells]) / 2 for a in range(3)]
        geometry = sim.structures[k - 1].geometry
        if isinstance(geometry, Box):
            volume, rule = _box_rule(geometry, [x[cells] for x in points], [b[cells] for b in below], [u[cells] for u in above], p)
        else:
            offset, normal = _interface_plane(geometry, centre, half, grid.active)
            kept = np.isfinite(offset)
            cells, offset, normal = cells[kept], offset[kept], normal[:, kept]
            centre, half = [c[kept] for c in centre], [h[kept] for h in half]
            volume = planar_fill_fraction(offset, normal, half)
            # The tent peaks at the node (on a graded grid, off the cell's centre) and
            # is taken symmetric there; a face normal to an axis gets the exact tent.
            shift = sum(normal[a] * (below[a][cells] - above[a][cells]) / 2 for a in range(3))
            tent = planar_fill_fraction(offset + shift, normal, half, tent=True)
            for a in range(3):
                aligned = np.abs(np.abs(normal[a]) - 1) < 1e-9
                if aligned.any():
                    face = centre[a][aligned] - offset[aligned] * normal[a][aligned]
                    up = normal[a][aligned] > 0  # inside below the face
                    node = cells[aligned]
                    tent[aligned] = _tent_overlap(points[a][node], below[a][node], above[a][node], np.where(up, -np.inf, face), np.where(up, face, np.inf))
            rule = functools.partial(_planar_rule, volume, tent, normal[p] ** 2)
        planar.append((cells, int(k), lower[cells], rule))
        sigma_eff[cells] = volume * sigma_table[k] + (1 - volume) * sigma_table[lower[cells]]

    def average(eps_table: np.ndarray) -> np.ndarray:
        eps = eps_table[index]
        # Elsewhere: the sample lattice, arithmetic across p and harmonic along it.
        eps_eff = 1.0 / np.mean(1.0 / np.mean(eps, axis=transverse), axis=1) if grid.active[p] else np.mean(eps, axis=(1, 2, 3))
        for cells, k, outer, rule in planar:
            eps_eff[cells] = rule(eps_table[k], eps_table[outer])
        return eps_eff

    return average, sigma_eff


def _planar_rule(volume: np.ndarray, tent: np.ndarray, normal2: np.ndarray, inner: Any, outer: np.ndarray) -> np.ndarray:
    """1/ε̃ₚₚ = n̂ₚ² ⟨1/ε⟩ + (1 − n̂ₚ²)/⟨ε⟩: ⟨1/ε⟩ over the cell's ``volume`` fraction
    inside, ⟨ε⟩ under the ``tent``."""
    return 1.0 / (normal2 * (volume / inner + (1 - volume) / outer) + (1 - normal2) / (tent * inner + (1 - tent) * outer))


def _box_rule(box: Box, points: list[np.ndarray], below: list[np.ndarray], above: list[np.ndarray], p: int) -> tuple[np.ndarray, Callable[[Any, np.ndarray], np.ndarray]]:
    """Volume fraction of ``box`` in each cell and the effective ε of component p as a
    function of (ε inside, ε outside), in closed form: every face of a box is normal to
    an axis, so the rule is exact per axis — tent-weighted arithmetic mean across the
    axes transverse to p, then the harmonic mean along p (which also treats the box's
    edges and corners exactly in the sense of that rule)."""
    lo, hi = box.bounds()
    volume = np.ones(points[0].size)
    across = np.ones(points[0].size)
    for a in range(3):
        volume = volume * _box_overlap(points[a] - below[a], points[a] + above[a], lo[a], hi[a])
        if a != p:
            across = across * _tent_overlap(points[a], below[a], above[a], lo[a], hi[a])
    along = _box_overlap(points[p] - below[p], points[p] + above[p], lo[p], hi[p])

    def rule(inner: Any, outer: np.ndarray) -> np.ndarray:
        return 1.0 / (along / (across * inner + (1 - across) * outer) + (1 - along) / outer)

    return volume, rule


def _box_overlap(start: np.ndarray, stop: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fraction of [start, stop] inside [lo, hi] (1 or 0 for a point)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = (np.minimum(stop, hi) - np.maximum(start, lo)) / (stop - start)
    point = ((start >= lo) & (start <= hi)).astype(float)
    return np.where(stop > start, np.clip(fraction, 0.0, 1.0), point)


def _tent_overlap(node: np.ndarray, below: np.ndarray, above: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray) -> np.ndarray:
    """Weight inside [lo, hi] of the tent that rises from 0 at ``node − 2·below`` to
    its peak at ``node`` and falls to 0 at ``node + 2·above`` (the neighbouring nodes of
    the same component: the weight a non-uniform second difference gives its node)."""
    span = below + above

    def cumulative(x: float | np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            rising = np.clip(x - node + 2 * below, 0.0, 2 * below) ** 2 / (4 * below * span)
            falling = np.clip(node + 2 * above - x, 0.0, 2 * above) ** 2 / (4 * above * span)
        value = np.where(x <= node, np.where(below > 0, rising, 0.0), 1 - np.where(above > 0, falling, 0.0))
        return np.where(span > 0, value, np.where(x >= node, 1.0, 0.0))

    return cumulative(hi) - cumulative(lo)


def _interface_plane(geometry: Geometry, centre: list[np.ndarray], half: list[np.ndarray], active: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    """The plane that stands for ``geometry``'s surface in each cell (centres and half
    widths per axis, µm): its signed distance from the centre (µm, negative when the
    centre is inside) and its unit normal (3, M) within the active axes. Where the
    surface is not locally a plane — the distance's gradient is not of unit length, as
    on a sheet thinner than the cell or a fold, or it leaves the active plane — the
    distance is NaN."""
    scale = np.maximum(np.maximum(half[0], half[1]), half[2])
    step = 1e-4 * scale
    gradient = np.zeros((3, scale.size))
    for a in range(3):
        if active[a]:
            up = [c + step if b == a else c for b, c in enumerate(centre)]
            down = [c - step if b == a else c for b, c in enumerate(centre)]
            gradient[a] = (geometry.signed_distance(*up) - geometry.signed_distance(*down)) / (2 * step)
    # A 3D surface cut by the active plane: the in-plane normal's length is the slope
    # that turns the 3D distance into the in-plane one.
    length = np.linalg.norm(gradient, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = geometry.signed_distance(*centre) / length
        normal = gradient / length
    usable = (length > 0.5) & (length < 1.0 + 1e-3)
    return np.where(usable, offset, np.nan), np.where(usable, normal, 0.0)


def planar_fill_fraction(offset: np.ndarray, normal: np.ndarray, half: list[np.ndarray], tent: bool = False) -> np.ndarray:
    """Weight of each box (half widths ``half`` per axis, µm; 0 on an inactive axis) on
    the inside of the plane ``offset + n̂·u = 0`` (u from the box centre, µm), under a
    uniform weight, or with ``tent`` under the box convolved with itself (a tent
    reaching twice as far): the distribution function of a sum of independent uniform
    variables n̂ₐuₐ (each counted twice for the tent), exact."""
    widths = np.abs(normal) * 2 * np.array(half)  # (3, M): the range of each n̂ₐuₐ
    # Below a millionth of the widest range a term is a point mass (error ~1e-6·f').
    significant = widths > 1e-6 * widths.max(axis=0)
    copies = 2 if tent else 1
    level = -offset + copies * widths.sum(axis=0) / 2  # the threshold on Σ (n̂ₐuₐ + range/2)
    fraction = np.where(level >= 0, 1.0, 0.0)
    for pattern in product((False, True), repeat=3):
        cells = np.all(significant == np.array(pattern)[:, None], axis=0)
        axes = [a for a in range(3) if pattern[a]] * copies
        if not cells.any() or not axes:
            continue
        w, t = widths[axes][:, cells], level[cells]
        total = np.zeros(t.size)
        for corner in product((0, 1), repeat=len(axes)):
            shift = t - sum(c * w[i] for i, c in enumerate(corner))
            total += (-1) ** sum(corner) * np.maximum(shift, 0.0) ** len(axes)
        fraction[cells] = np.clip(total / (math.factorial(len(axes)) * np.prod(w, axis=0)), 0.0, 1.0)
    return fraction
