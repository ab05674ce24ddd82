"""Mirror symmetry: step half the domain, unfold what the monitors record.

A symmetric problem is set up on the full grid (mesh, sources and mode solves as for
a plain run), then halved along each symmetric axis: the arrays keep the nodes from
the mirror plane (integer node c = N/2) to the plus face, and the plane becomes the
minus wall — the engine's PMC wall (odd image of tangential H) for symmetry +1, a
PEC wall (tangential E held at zero) for −1. The update on the half is then the full
update restricted to it, node for node. Monitors record on the half; their
recordings are unfolded, each component with its parity, into exactly the arrays a
full run records, so all post-processing is the full run's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..base import mirror_parity
from ..grid import Grid, on_half_nodes
from .yee import Layout

#: What a halving needs to undo: (recording name, component) → (axis of the array,
#: reduced index per full node (−1: the plus-face ghost, zero), sign per full node).
Unfolds = dict[tuple[str, str], tuple[int, np.ndarray, np.ndarray]]

#: Largest antisymmetric part (relative to the source's peak) a sheet's profile may
#: have: mode profiles of the right parity measure below 1%, the wrong parity ~100%.
SHEET_TOLERANCE = 0.05


@dataclass(frozen=True)
class Halving:
    """One symmetric axis: how recordings on the half map back to the full slices."""

    axis: int
    symmetry: int
    #: The mirror plane's integer node on the full grid (half the full cell count).
    centre: int
    dft: Unfolds
    snapshots: Unfolds


def mirror_index(component: str, axis: int, centre: int, i: np.ndarray) -> np.ndarray:
    """Full-grid index of the mirror image of node ``i`` of ``component`` about the
    integer node ``centre`` (integer nodes: 2c − i; half nodes: 2c − 1 − i)."""
    return 2 * centre - i - (1 if on_half_nodes(component, axis) else 0)


def _keep(x: np.ndarray, axis: int, start: int, stop: int | None = None) -> np.ndarray:
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _unfold_map(component: str, axis: int, symmetry: int, centre: int, full: slice) -> tuple[slice, np.ndarray, np.ndarray]:
    """For the full-grid recording ``full`` along ``axis``: the reduced slice to record,
    and per full node the index into that recording (−1: zero) and the sign."""
    i = np.arange(full.start, full.stop)
    j = np.where(i >= centre, i, mirror_index(component, axis, centre, i)) - centre
    j = np.where(j < centre, j, -1)  # the half keeps N − c = c nodes
    sign = np.where(i >= centre, 1, mirror_parity(component, axis, symmetry))
    kept = j[j >= 0]
    lo, hi = (int(kept.min()), int(kept.max()) + 1) if kept.size else (0, 1)
    return slice(lo, hi), np.where(j >= 0, j - lo, -1), sign


def unfold(values: Any, array_axis: int, index: np.ndarray, sign: np.ndarray, xp: ModuleType = np) -> Any:
    """Values recorded on the half → the full recording along ``array_axis`` (NumPy,
    or ``xp`` = jax.numpy inside a differentiated function)."""
    shape = [1] * np.ndim(values)
    shape[array_axis] = -1
    taken = xp.take(xp.asarray(values), np.maximum(index, 0), axis=array_axis)
    return taken * np.where(index >= 0, sign, 0).reshape(shape)


def mirror_image(values: np.ndarray, component: str, axis: int, centre: int, full: slice, parity: int) -> np.ndarray:
    """``parity`` × the value at each node's mirror image, for ``values`` on
    ``component``'s nodes spanning ``full`` along ``axis`` (leading array axes
    allowed); 0 where the image falls outside ``full``. Node 0 of an integer-node
    component keeps its own value: it is the minus wall, decoupled from the grid,
    and its image would be the plus face's ghost."""
    array_axis = values.ndim - 3 + axis
    i = np.arange(full.start, full.stop)
    m = mirror_index(component, axis, centre, i)
    inside = (m >= full.start) & (m < full.stop)
    shape = [1] * values.ndim
    shape[array_axis] = -1
    image = np.take(values, np.clip(m - full.start, 0, i.size - 1), axis=array_axis) * np.where(inside, parity, 0).reshape(shape)
    return np.where((m == 2 * centre).reshape(shape), values, image)


def first_mismatch(values: np.ndarray, image: np.ndarray, axis: int, full: slice, rtol: float, scale: float | None = None) -> int | None:
    """The first full-grid node along ``axis`` where ``values`` and ``image`` differ by
    more than ``rtol`` × ``scale`` (default max |values|), or None."""
    array_axis = values.ndim - 3 + axis
    bad = np.abs(values - image) > rtol * (float(np.max(np.abs(values), initial=0.0)) if scale is None else scale)
    nodes = np.nonzero(np.any(np.moveaxis(bad, array_axis, 0).reshape(full.stop - full.start, -1), axis=1))[0]
    return full.start + int(nodes[0]) if nodes.size else None


def halve(
    layout: Layout, params: dict, state: dict, eps: list[np.ndarray], grid: Grid, axis: int, symmetry: int, point_sources: list[str], sheet_sources: list[str]
) -> tuple[Layout, dict, dict, list[np.ndarray], Halving]:
    """Cut the problem to the plus half along ``axis`` with a mirror wall at its centre.

    The structures were checked as geometry (``Simulation``); where their staircase
    differs across the plane by a subpixel sample, the plus half's is used. Raises
    ValueError where a source breaks the symmetry. ``point_sources``,
    ``sheet_sources``: a label per point and per sheet of ``layout`` (for messages).
    """
    a, s = axis, symmetry
    N = layout.shape[a]
    c = N // 2
    name = "xyz"[a]
    plane_at = f"{name} = {grid.nodes(a, half=False)[c]:g} µm"
    plane = f"the symmetry plane {plane_at}"
    kind = "PMC" if s > 0 else "PEC"

    # ---- sources: sheets carry profiles of the plane's parity; points sit on the plane
    # A mode profile is symmetric only up to the edges of the mode solver's window
    # (which differ by half a cell on the Yee grid): the sheet keeps its symmetric
    # part, and a profile further than SHEET_TOLERANCE from it has the wrong parity.
    # A source's minor components (a mode's Ez beside its Ey) are judged against its
    # largest profile, not their own small peak.
    peaks: dict[tuple[str, str], float] = {}
    for sheet, label in zip(params["sheets"], sheet_sources):
        for prefix in "eh":
            peaks[(label, prefix)] = max(peaks.get((label, prefix), 0.0), float(np.max(np.abs(sheet[f"{prefix}_profile"]), initial=0.0)))
    sheets, sheet_params = [], []
    for (e_field, h_field, e_slices, h_slices), sheet, label in zip(layout.sheets, params["sheets"], sheet_sources):
        cut = {}
        for prefix, field, slices in (("e", e_field, e_slices), ("h", h_field, h_slices)):
            profile = sheet[f"{prefix}_profile"]
            symmetric = 0.5 * (profile + mirror_image(profile, field, a, c, slices[a], mirror_parity(field, a, s)))
            if first_mismatch(profile, symmetric, a, slices[a], SHEET_TOLERANCE, peaks[(label, prefix)]) is not None:
                raise ValueError(
                    f"{label}: its {field} does not have the parity symmetry[{a}] = {s:+d} ({kind} plane at {plane_at}) gives it; "
                    f"choose a mode of the matching parity or symmetry[{a}] = {-s:+d}"
                )
            start = max(slices[a].start, c)
            reduced = tuple(slice(start - c, slices[a].stop - c) if b == a else w for b, w in enumerate(slices))
            cut[prefix] = (reduced, _keep(symmetric, 1 + a, start - slices[a].start).astype(profile.dtype))
        sheets.append((e_field, h_field, cut["e"][0], cut["h"][0]))
        sheet_params.append({**sheet, "e_profile": cut["e"][1], "h_profile": cut["h"][1]})
    placed = set(layout.points)
    for (field, index), label in zip(layout.points, point_sources):
        image = tuple(int(mirror_index(field, a, c, np.array(i))) if b == a else i for b, i in enumerate(index))
        if (field, image) not in placed:
            raise ValueError(f"{label}: no source sits on the mirror image of its {field} node about {plane} (a dipole halfway between two {field} nodes lands on one of them); move it off the midpoint")
    kept_points = [k for k, (_, index) in enumerate(layout.points) if index[a] >= c]
    points = tuple((field, tuple(i - c if b == a else i for b, i in enumerate(index))) for field, index in (layout.points[k] for k in kept_points))

    # ---- monitors: record on the half, remember how to unfold
    def reduce(name: str, components: tuple, unfolds: Unfolds) -> tuple:
        out = []
        for comp, slices in components:
            reduced, index, sign = _unfold_map(comp, a, s, c, slices[a])
            unfolds[(name, comp)] = (1 + a, index, sign)  # recordings lead with f or the slot
            out.append((comp, tuple(reduced if b == a else w for b, w in enumerate(slices))))
        return tuple(out)

    dft_unfolds: Unfolds = {}
    snap_unfolds: Unfolds = {}
    dft = tuple((name, reduce(name, comps, dft_unfolds)) for name, comps in layout.dft)
    snapshots = tuple((name, reduce(name, comps, snap_unfolds), start, interval, slots) for name, comps, start, interval, slots in layout.snapshots)

    pml = list(layout.pml)
    pml[a] = (0, layout.pml[a][1])
    pmc_minus = list(layout.pmc_minus)
    pmc_minus[a] = s > 0
    shape = list(layout.shape)
    shape[a] = N - c
    new_layout = dataclasses.replace(
        layout, shape=tuple(shape), pml=tuple(pml), pmc_minus=tuple(pmc_minus), points=points, sheets=tuple(sheets), dft=dft, snapshots=snapshots
    )

    def half(x: np.ndarray) -> np.ndarray:
        return _keep(x, a, c).copy()

    ca, cb = [half(x) for x in params["ca"]], [half(x) for x in params["cb"]]
    if s < 0:  # PEC plane: tangential E stays zero on it
        for p in range(3):
            if p != a:
                for coef in (cb, ca) if ca else (cb,):
                    coef[p][tuple(slice(0, 1) if b == a else slice(None) for b in range(3))] = 0
    new_params = {
        **params,
        "ca": ca,
        "cb": cb,
        "pml": {k: v for k, v in params["pml"].items() if k not in (f"e{a}minus", f"h{a}minus")},
        "pml_inv_kappa": {k: half(v) if int(k[1]) == a else v for k, v in params["pml_inv_kappa"].items()},
        "inv_steps": {k: half(v) if int(k[1]) == a else v for k, v in params["inv_steps"].items()},
        "points": [params["points"][k] for k in kept_points],
        "sheets": sheet_params,
        "poles": [(c1, c2, [half(x) for x in c3]) for c1, c2, c3 in params["poles"]],
    }

    def psi(key: str, value: np.ndarray) -> np.ndarray | None:
        slab_axis, side = int(key[2]), key[3:]  # "<e|h><p><axis><side>"
        if slab_axis == a:
            return None if side == "minus" else value
        return half(value)

    def zeros_like_recording(recorded: dict, components: tuple) -> dict:
        return {comp: np.zeros((recorded[comp].shape[0], *(w.stop - w.start for w in slices)), recorded[comp].dtype) for comp, slices in components}

    new_state = {
        **state,
        "E": [half(x) for x in state["E"]],
        "H": [half(x) for x in state["H"]],
        "psi": {k: v for k, v in ((k, psi(k, v)) for k, v in state["psi"].items()) if v is not None},
        "P": [half(x) for x in state["P"]],
        "P_prev": [half(x) for x in state["P_prev"]],
        "dft": {name: zeros_like_recording(state["dft"][name], comps) for name, comps in dft},
        "snap": {name: zeros_like_recording(state["snap"][name], comps) for name, comps, *_ in snapshots},
    }
    return new_layout, new_params, new_state, [half(x) for x in eps], Halving(a, s, c, dft_unfolds, snap_unfolds)


def unfold_dft(dft: dict, halvings: list[Halving], xp: ModuleType = np) -> dict:
    """The DFT recordings of a halved run (``{monitor: {component: array}}``) unfolded
    to the full run's arrays."""
    return _unfold_store(dft, [h.dft for h in halvings], xp)


def unfold_snapshots(snap: dict, halvings: list[Halving], xp: ModuleType = np) -> dict:
    """The snapshots of a halved run (``{monitor: {component: array}}``) unfolded to the
    full run's arrays."""
    return _unfold_store(snap, [h.snapshots for h in halvings], xp)


def unfold_state(state: dict, halvings: list[Halving]) -> dict:
    """The monitor recordings of a halved run, unfolded to the full run's arrays."""
    return {**state, "dft": unfold_dft(state["dft"], halvings), "snap": unfold_snapshots(state["snap"], halvings)}


def _unfold_store(store: dict, unfolds_per_halving: list[Unfolds], xp: ModuleType) -> dict:
    out = dict(store)
    for unfolds in reversed(unfolds_per_halving):
        for (name, comp), (array_axis, index, sign) in unfolds.items():
            if name not in out:  # recordings handed elsewhere (a split run's pieces)
                continue
            out[name] = {**out[name], comp: unfold(out[name][comp], array_axis, index, sign, xp)}
    return out


def unfold_fields(fields: dict[str, list[np.ndarray]], halvings: list[Halving]) -> dict[str, list[np.ndarray]]:
    """Whole-grid E and H of a halved run (``{"E": [...], "H": [...]}``) on the full grid."""
    out = {kind: list(arrays) for kind, arrays in fields.items()}
    for h in reversed(halvings):
        for kind in out:
            for p in range(3):
                comp = f"{kind}{'xyz'[p]}"
                _, index, sign = _unfold_map(comp, h.axis, h.symmetry, h.centre, slice(0, 2 * h.centre))
                out[kind][p] = unfold(out[kind][p], h.axis, index, sign)
    return out
