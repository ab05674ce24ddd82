"""The Yee step run backwards on a lossless box: design-window fields without storing them.

The backward pass of the differentiable solve needs, at every step n in reverse
order, the drive (∇×H^{n+½}) on the design windows. Storing it per step costs a
window of memory per step; but where the medium is lossless, non-dispersive and
free of sources the leapfrog update inverts exactly:

    E^n = E^{n+1} − cb·∇×H^{n+½},      H^{n−½} = H^{n+½} + Δt·∇×E^n.

On a box B — the windows' bounding box (the interior I) plus one node layer on each
side of every active axis — the interior updates read, beyond I, only the
tangential H on the minus faces and the tangential E on the plus faces (Yee's
backward and forward differences). Those faces are what the replay records per
step (a surface, not a volume); the rest of the face layers is never read. Run
from the segment's last state, the reversal regenerates I's fields step by step
backwards, with the rounding of one update per step (not amplified: the inverse
leapfrog is as stable as the forward one). The PML, dispersive media, conductors
and sources make the step irreversible; :func:`reversal_box` returns None where any
of them reaches I, and the caller stores the drives instead.

Where I comes within a node of a PEC or PMC minus wall (a mirror plane of a symmetric
solve), I takes in the wall's node and B has no minus face layer there: the wall's
image (zero, or the odd PMC image) is what the update reads before it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .yee import Array, Layout, window_curl

#: A recorded face: field ("E" or "H"), component index, node slices in the grid.
Face = tuple[str, int, tuple[slice, slice, slice]]


def _overlaps(box: tuple[slice, ...], index: tuple[Any, ...]) -> bool:
    for b, i in zip(box, index):
        lo, hi = (i.start, i.stop) if isinstance(i, slice) else (i, i + 1)
        if hi <= b.start or lo >= b.stop:
            return False
    return True


def reversal_box(layout: Layout, params: dict[str, Any]) -> tuple[slice, slice, slice] | None:
    """The box B (grid node slices) over which the step of ``layout`` inverts around
    its design windows, or None: the grid must be uniform, B must lie in the grid, and
    its interior must be off the PML, without conductivity (ca = 1) or dispersive poles (c₃ = 0), and
    without point or plane sources."""
    if not layout.design or any(layout.graded):  # the reversal is written for equal steps
        return None
    spans = [
        slice(min(w[a].start for _, w in layout.design), max(w[a].stop for _, w in layout.design)) if layout.active[a] else slice(0, 1)
        for a in range(3)
    ]
    for a in range(3):
        minus, plus = layout.pml[a]
        if not layout.active[a]:
            continue
        if spans[a].start <= 1 and _minus_wall(layout, a):
            spans[a] = slice(0, spans[a].stop)
        elif spans[a].start < max(minus, 1):
            return None
        if spans[a].stop > layout.shape[a] - max(plus, 1):
            return None
    interior = tuple(spans)
    if layout.has_ca and any(np.any(np.asarray(ca)[interior] != 1) for ca in params["ca"]):
        return None
    if any(np.any(np.broadcast_to(np.asarray(c3[p]), layout.shape)[interior] != 0) for _, _, c3 in params["poles"] for p in range(3)):
        return None
    if any(_overlaps(interior, index) for _, index in layout.points):
        return None
    if any(_overlaps(interior, e) or _overlaps(interior, h) for _, _, e, h in layout.sheets):
        return None
    return tuple(slice(max(i.start - 1, 0), i.stop + 1) if layout.active[a] else i for a, i in enumerate(interior))  # type: ignore[return-value]


def _minus_wall(layout: Layout, a: int) -> bool:
    """Whether the grid's minus face along ``a`` is a PEC or PMC wall (no PML, not periodic)."""
    return layout.active[a] and not layout.periodic[a] and layout.pml[a][0] == 0


def _walled(box: tuple[slice, ...], layout: Layout, a: int) -> bool:
    """Whether B starts on the minus wall along ``a`` (the interior takes the wall's node)."""
    return box[a].start == 0 and _minus_wall(layout, a)


def _local(box: tuple[slice, ...], layout: Layout) -> tuple[slice, slice, slice]:
    """B's interior in B's own indices."""
    return tuple(slice(0 if _walled(box, layout, a) else 1, b.stop - b.start - 1) if layout.active[a] else slice(0, 1) for a, b in enumerate(box))  # type: ignore[return-value]


def faces(layout: Layout, box: tuple[slice, ...]) -> list[Face]:
    """What the interior updates read outside the interior, in grid indices:
    tangential H on each active axis's minus face (none on a wall), tangential E on
    its plus face, each over the interior's extent along the other axes."""
    interior = _local(box, layout)
    out: list[Face] = []
    for a in range(3):
        if not layout.active[a]:
            continue
        for field, layer in ((("E", box[a].stop - 1),) if _walled(box, layout, a) else (("H", box[a].start), ("E", box[a].stop - 1))):
            sl = tuple(slice(layer, layer + 1) if k == a else slice(box[k].start + interior[k].start, box[k].start + interior[k].stop) for k in range(3))
            out.extend((field, q, sl) for q in range(3) if q != a)  # type: ignore[misc]
    return out


def face_sizes(recorded: list[Face]) -> list[int]:
    """Values per recorded face (its share of :func:`record`'s vector)."""
    return [int(np.prod([s.stop - s.start for s in sl])) for _, _, sl in recorded]


def record(fields: dict[str, list[Array]], recorded: list[Face]) -> Array:
    """The recorded faces of a state's E and H, flattened into one vector (one
    write per step into the replay's stacked records)."""
    import jax.numpy as jnp

    return jnp.concatenate([fields[f][q][sl].ravel() for f, q, sl in recorded])


def make_reverse_step(layout: Layout, box: tuple[slice, ...]) -> Callable[[dict[str, list[Array]], list[Array], Array], tuple[dict[str, list[Array]], list[Array]]]:
    """Return ``reverse(fields, cb, before) -> (fields, drives)`` (JAX): E and H on
    ``box`` after step n (E^{n+1}, H^{n+½}) to those before it, given ``cb`` on the
    box (the design folded in) and ``before``, the recorded faces of the state before
    step n (:func:`record`); ``drives`` are step n's ∇×H^{n+½} on each design window
    of ``layout.design``, which the reversal computes anyway.

    Each component is rebuilt as one whole-box expression (the interior's update
    padded out, plus the faces padded into place) rather than updated slice by
    slice: on a GPU the box is small and every slice update would be a kernel of
    its own. Nodes that are neither interior nor face come out zero; no update reads them."""
    import jax
    import jax.numpy as jnp

    shape = tuple(b.stop - b.start for b in box)
    interior = _local(box, layout)
    recorded = faces(layout, box)
    local = [(f, q, tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sl, box))) for f, q, sl in recorded]
    sizes = face_sizes(recorded)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    curled = layout.curled
    # Design windows in the interior's own indices.
    windows = [(p, tuple(slice(w.start - b.start - i.start, w.stop - b.start - i.start) for w, b, i in zip(window, box, interior))) for p, window in layout.design]

    def placed(part: Array, where: tuple[slice, ...]) -> Array:
        return jnp.pad(part, [(s.start, n - s.stop) for s, n in zip(where, shape)])

    mask = np.zeros(shape, dtype=layout.dtype)
    mask[interior] = 1

    def assemble(which: str, q: int, F: Array, change: Array | None, before: Array) -> Array:
        """F on the interior (read node by node, so XLA can write in place) plus
        ``change`` there, and the recorded faces of component ``which``/``q``."""
        out = F * mask if change is None else F * mask + placed(change, interior)
        for (f, k, sl), start, size in zip(local, offsets, sizes):
            if f == which and k == q:
                out = out + placed(before[start : start + size].reshape([s.stop - s.start for s in sl]), sl)
        return out

    def reverse(fields: dict[str, list[Array]], cb: list[Array], before: Array) -> tuple[dict[str, list[Array]], list[Array]]:
        E, H = fields["E"], fields["H"]
        curl_h = [window_curl(H, p, interior, layout, jnp) if curled[p] else None for p in range(3)]
        E = [assemble("E", p, E[p], -cb[p][interior] * curl_h[p] if curled[p] else None, before) for p in range(3)]
        E = jax.lax.optimization_barrier(E)  # apart from H's update, which reads it shifted
        H = [assemble("H", p, H[p], layout.dt * window_curl(E, p, interior, layout, jnp, forward=True) if curled[p] else None, before) for p in range(3)]
        return {"E": E, "H": H}, [curl_h[p][window] for p, window in windows]  # type: ignore[index]

    return reverse
