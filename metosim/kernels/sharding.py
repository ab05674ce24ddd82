"""Domain decomposition: one simulation's Yee grid split into slabs over several devices.

The time step is written once for the whole grid (:mod:`.yee`). Placing its grid-sized
arrays with a ``NamedSharding`` along one axis hands the split to XLA's SPMD
partitioner: every elementwise update runs on each device's slab, and each shifted read
across a slab face (the differences of the curl, the periodic wrap) becomes a one-plane
halo exchange (a collective permute) per field component and half step. Each cell sees
the same arithmetic as on one device, so the results are the one-device run's; only sums
over the grid (the shutoff's energy) add in another order.

XLA splits an axis only into equal slabs, so a split axis is an active one whose cell
count its device count divides: one axis where the number of devices divides one (slabs),
else two (a p × q mesh of blocks, p·q = devices: :func:`split_axes`). The CPML slabs
along a split axis would be sliced across devices (a slab of the first device's nodes,
partitioned over all of them: dozens of collectives a step), so for a split run their ψ
spans the whole axis with b = c = 0 off the slabs (:func:`whole_axis_psi`); checkpoints
hold it in slabs again (:func:`local_pieces`), as does the fused kernel's state
(:func:`slab_psi`).
"""

from __future__ import annotations

from typing import Any

import dataclasses
import itertools
import json

import numpy as np

from ..simulation import Simulation
from .checkpoint import leaves, piece_name
from .yee import Layout, pml_slabs

#: A split of the grid: (grid axis, device count along it) per cut axis, one or two.
Split = tuple[tuple[int, int], ...]


class ShardingError(ValueError):
    """A simulation cannot be split over the devices asked for."""


def stepped_shape(sim: Simulation) -> tuple[int, int, int]:
    """The cells the engine steps per axis: the plus half along each mirror-symmetric
    axis (:mod:`.symmetry`), the whole grid elsewhere."""
    return tuple(n // 2 if s else n for n, s in zip(sim.grid.num_cells, sim.symmetry))  # type: ignore[return-value]


def mesh_axis(axis: int) -> str:
    """The device mesh's name for the cut along grid ``axis``."""
    return "xyz"[axis]


def split_axes(shape: tuple[int, int, int], active: tuple[bool, bool, bool], devices: int) -> Split:
    """How to cut the grid over ``devices``: into equal slabs along the active axis with
    the most cells that ``devices`` divides (each slab then has the smallest faces for
    its volume); where none does, into p × q blocks along two axes, the pair and
    factors with the smallest faces per device. Each piece keeps two cells or more along
    a cut. Raises :class:`ShardingError` naming the counts otherwise."""

    def fits(a: int, count: int) -> bool:
        return active[a] and shape[a] % count == 0 and shape[a] >= 2 * count

    slabs = [a for a in range(3) if fits(a, devices)]
    if slabs:
        return ((max(slabs, key=lambda a: (shape[a], -a)), devices),)
    blocks = [
        ((a, p), (b, devices // p))
        for a, b in itertools.combinations(range(3), 2)
        for p in range(2, devices // 2 + 1)
        if devices % p == 0 and fits(a, p) and fits(b, devices // p)
    ]
    if not blocks:
        counts = ", ".join(f"{'xyz'[a]} {shape[a]}" for a in range(3) if active[a])
        raise ShardingError(
            f"devices={devices} divides none of the stepped cell counts ({counts}) into slabs, nor two of them into "
            f"blocks, of two or more cells; change the domain size or the grid by a few cells, or ask for a divisor"
        )
    return min(blocks, key=lambda split: (face_cells(shape, split), split))


def describe(split: Split) -> str:
    """``split`` in words: "slabs along y", "2 × 2 blocks along x and y"."""
    if len(split) == 1:
        return f"slabs along {'xyz'[split[0][0]]}"
    return f"{' × '.join(str(n) for _, n in split)} blocks along {' and '.join('xyz'[a] for a, _ in split)}"


def piece_shape(shape: tuple[int, int, int], split: Split) -> tuple[int, int, int]:
    """Cells of one device's piece per axis."""
    counts = dict(split)
    return tuple(n // counts.get(a, 1) for a, n in enumerate(shape))  # type: ignore[return-value]


def face_cells(shape: tuple[int, int, int], split: Split) -> int:
    """Cells of one piece's face across each cut, summed: what its halo scales with."""
    piece = piece_shape(shape, split)
    return sum(int(np.prod([n for b, n in enumerate(piece) if b != a])) for a, _ in split)


def leaf_spec(shape: tuple[int, ...], grid_shape: tuple[int, int, int], split: Split) -> tuple[str | None, ...]:
    """The partition spec of one array: cut along each dimension that spans a split
    grid axis (dimension ``axis`` of its last three, when that has the grid's whole
    count, as fields, coefficients, transverse CPML slabs and whole-grid monitors do);
    replicated otherwise (1D profiles, waveforms, small monitor regions)."""
    spec: list[str | None] = [None] * len(shape)
    for axis, _ in split:
        if len(shape) >= 3 and shape[len(shape) - 3 + axis] == grid_shape[axis]:
            spec[len(shape) - 3 + axis] = mesh_axis(axis)
    return tuple(spec)


def mesh_of(split: Split) -> Any:
    """The mesh of the first JAX devices the grid is cut over, one mesh axis per cut."""
    import jax
    from jax.sharding import Mesh

    counts = [n for _, n in split]
    return Mesh(np.array(jax.devices()[: int(np.prod(counts))]).reshape(counts), tuple(mesh_axis(a) for a, _ in split))


def shardings(tree: Any, layout: Layout, split: Split) -> Any:
    """A ``NamedSharding`` for every array in ``tree`` (state or params) on a mesh of the
    first JAX devices, cut as :func:`leaf_spec` says."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = mesh_of(split)
    return jax.tree_util.tree_map(lambda x: NamedSharding(mesh, PartitionSpec(*leaf_spec(np.shape(x), layout.shape, split))), tree)


def replicated(split: Split) -> Any:
    """A copy on each device of the mesh (a sum over the grid, which every process reads)."""
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(mesh_of(split), PartitionSpec())


def multi_process() -> bool:
    """Whether JAX runs as one of several processes (``jax.distributed``), each holding
    some of the devices: arrays are then placed and gathered shard by shard."""
    import jax

    return jax.process_count() > 1


def is_lead() -> bool:
    """Whether this is the first JAX process (or the only one): the one that writes
    what all processes share."""
    import jax

    return jax.process_index() == 0


def place(tree: Any, placements: Any) -> Any:
    """``tree``'s NumPy arrays as JAX arrays laid out by ``placements``
    (:func:`shardings`). Every process holds the whole problem and hands each of its
    own devices its slab, so this works in one process and across several."""
    import jax

    def one(x: Any, placement: Any) -> Any:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, placement, lambda index: x[index], dtype=x.dtype)

    return jax.tree_util.tree_map(one, tree, placements)


def gather(tree: Any) -> Any:
    """``tree``'s split JAX arrays as whole NumPy arrays, in every process (a collective
    across processes: all of them must call it)."""
    import jax

    if multi_process():
        from jax.experimental import multihost_utils

        return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree_util.tree_map(np.asarray, tree)


def from_lead(*flags: bool) -> tuple[bool, ...]:
    """``flags`` as the first process holds them, in every process: a decision taken
    on the lead's clock (when to checkpoint, when to stop), which all processes must
    act on at the same step. A collective across processes (all must call it); in
    one process, ``flags`` themselves."""
    if not multi_process():
        return flags
    from jax.experimental import multihost_utils

    return tuple(bool(x) for x in np.asarray(multihost_utils.broadcast_one_to_all(np.array(flags, dtype=np.int32))))


def every_process(value: int) -> list[int]:
    """Each process's ``value``, in every process (a collective across processes; in
    one process, ``[value]``)."""
    if not multi_process():
        return [value]
    from jax.experimental import multihost_utils

    return [int(v) for v in np.ravel(multihost_utils.process_allgather(np.array([value], dtype=np.int64)))]


def every_process_text(text: str, size: int = 64) -> list[str]:
    """Each process's ASCII ``text`` (at most ``size`` characters), in every process (a
    collective across processes; in one process, ``[text]``)."""
    if not multi_process():
        return [text]
    from jax.experimental import multihost_utils

    if len(text) > size:
        raise ValueError(f"{len(text)} characters to share, over the {size} allowed")
    padded = np.frombuffer(text.encode("ascii").ljust(size, b"\0"), np.uint8)
    every = np.asarray(multihost_utils.process_allgather(padded)).reshape(-1, size)
    return [row.tobytes().rstrip(b"\0").decode("ascii") for row in every]


def every_process_json(value: Any) -> list[Any]:
    """Each process's JSON-able ``value``, in every process (two collectives across
    processes: the lengths, then the texts; in one process, ``[value]``)."""
    if not multi_process():
        return [value]
    text = json.dumps(value)
    return [json.loads(t) for t in every_process_text(text, max(every_process(len(text))))]


def halo_bytes(layout: Layout, split: Split) -> int:
    """Bytes an interior device receives per time step: across each cut, one plane of
    its piece's face of each stepped component transverse to the cut (E from the plus
    neighbour for the forward differences feeding H, H from the minus neighbour for the
    backward ones feeding E); it sends as many."""
    item = np.dtype(layout.dtype).itemsize * (2 if any(layout.bloch) else 1)
    piece = piece_shape(layout.shape, split)
    total = 0
    for axis, _ in split:
        plane = int(np.prod([n for a, n in enumerate(piece) if a != axis]))
        # Components differentiated along ``axis``: the two transverse to it, of E and of H.
        total += sum(layout.live[k] for k in range(6) if k % 3 != axis) * plane
    return total * item


def _psi_keys(axis: int) -> list[str]:
    """The state keys of the CPML ψ along ``axis`` (one per component derivative along
    it, feeding H, "h", or E, "e"): the whole-axis array's key, and the prefix of its
    slabs' keys (``+ "minus"`` / ``+ "plus"``)."""
    return [f"{kind}{p}{axis}" for kind in ("h", "e") for p in range(3) if p != axis]


def whole_axis_psi(layout: Layout, state: dict, params: dict, axis: int) -> tuple[Layout, dict, dict]:
    """The problem with the CPML ψ along ``axis`` spanning the whole axis: each slab's
    ψ placed at its nodes in zeros, and b, c as whole-axis profiles that are 0 off the
    slabs (so ψ stays 0 there). The same update, node for node."""
    slabs = pml_slabs(layout, axis)
    if not slabs:
        return layout, state, params
    N = layout.shape[axis]
    shape = [-1 if b == axis else 1 for b in range(3)]
    whole = {}
    for kind in ("h", "e"):
        b, c = np.zeros(N, layout.dtype), np.zeros(N, layout.dtype)
        for side, lo, hi in slabs:
            b_slab, c_slab = params["pml"][f"{kind}{axis}{side}"]
            b[lo:hi], c[lo:hi] = np.ravel(b_slab), np.ravel(c_slab)
        whole[f"{kind}{axis}"] = (b.reshape(shape), c.reshape(shape))
    psi = dict(state["psi"])
    for key in _psi_keys(axis):
        parts = [(lo, hi, psi.pop(f"{key}{side}")) for side, lo, hi in slabs if f"{key}{side}" in psi]
        if not parts:
            continue  # a component the step does not update
        full_shape = list(np.shape(parts[0][2]))
        full_shape[axis] = N
        full = np.zeros(full_shape, np.asarray(parts[0][2]).dtype)
        for lo, hi, part in parts:
            full[tuple(slice(lo, hi) if b == axis else slice(None) for b in range(3))] = np.asarray(part)
        psi[key] = full
    flags = tuple(a == axis or f for a, f in enumerate(layout.whole_axis_psi))
    return dataclasses.replace(layout, whole_axis_psi=flags), {**state, "psi": psi}, {**params, "pml_whole": {**params.get("pml_whole", {}), **whole}}  # type: ignore[arg-type]


def local_pieces(state: dict, layout: Layout, split: Split) -> dict[str, np.ndarray]:
    """This process's share of a split ``state`` as checkpoint pieces (NumPy blocks
    named by :func:`~.checkpoint.piece_name`): each block its devices hold, once (the
    first replica of an array held whole by several devices), and the whole-axis ψ
    cut back to the CPML slabs, so the pieces make up the one-device state. Nothing
    crosses between processes: each writes its own."""
    whole_axis = {f"psi/{key}": axis for axis, _ in split if layout.whole_axis_psi[axis] for key in _psi_keys(axis)}
    pieces = {}
    for path, array in leaves(state):
        for shard in array.addressable_shards:
            if shard.replica_id != 0:
                continue
            start = tuple(s.indices(n)[0] for s, n in zip(shard.index, array.shape, strict=True))
            data = np.asarray(shard.data)
            if path not in whole_axis:
                pieces[piece_name(path, start)] = data
                continue
            axis = whole_axis[path]
            first, end = start[axis], start[axis] + data.shape[axis]
            for side, lo, hi in pml_slabs(layout, axis):
                if max(first, lo) < min(end, hi):
                    cut = tuple(slice(max(first, lo) - first, min(end, hi) - first) if b == axis else slice(None) for b in range(data.ndim))
                    at = tuple(max(first, lo) - lo if b == axis else i for b, i in enumerate(start))
                    pieces[piece_name(f"{path}{side}", at)] = data[cut]
    return pieces


def slab_psi(layout: Layout, state: dict, axis: int) -> dict:
    """``state`` with the whole-axis ψ along ``axis`` cut back to the CPML slabs (the
    inverse of :func:`whole_axis_psi`): what one-device runs (and the fused kernel) hold."""
    psi = dict(state["psi"])
    for key in _psi_keys(axis):
        if key not in psi:
            continue
        full = np.asarray(psi.pop(key))
        for side, lo, hi in pml_slabs(layout, axis):
            psi[f"{key}{side}"] = full[tuple(slice(lo, hi) if b == axis else slice(None) for b in range(3))]
    return {**state, "psi": psi}
