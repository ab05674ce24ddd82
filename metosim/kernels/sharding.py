"""Domain decomposition: one simulation's Yee grid split into slabs over several devices.

The time step is written once for the whole grid (:mod:`.yee`). Placing its grid-sized
arrays with a ``NamedSharding`` along one axis hands the split to XLA's SPMD
partitioner: every elementwise update runs on each device's slab, and each shifted read
across a slab face (the differences of the curl, the periodic wrap) becomes a one-plane
halo exchange (a collective permute) per field component and half step. Each cell sees
the same arithmetic as on one device, so the results are the one-device run's; only sums
over the grid (the shutoff's energy) add in another order.

XLA splits an axis only into equal slabs, so the split axis is an active one whose cell
count the number of devices divides. The CPML slabs along the split axis would be sliced
across devices (a slab of the first device's nodes, partitioned over all of them: dozens
of collectives a step), so for a split run their ψ spans the whole axis with b = c = 0
off the slabs (:func:`whole_axis_psi`; the state goes back to slabs for checkpoints and
results with :func:`slab_psi`).
"""

from __future__ import annotations

from typing import Any

import dataclasses

import numpy as np

from ..simulation import Simulation
from .yee import Layout, pml_slabs

#: The mesh axis name of the slabs.
SLABS = "slabs"


class ShardingError(ValueError):
    """A simulation cannot be split over the devices asked for."""


def stepped_shape(sim: Simulation) -> tuple[int, int, int]:
    """The cells the engine steps per axis: the plus half along each mirror-symmetric
    axis (:mod:`.symmetry`), the whole grid elsewhere."""
    return tuple(n // 2 if s else n for n, s in zip(sim.grid.num_cells, sim.symmetry))  # type: ignore[return-value]


def split_axis(shape: tuple[int, int, int], active: tuple[bool, bool, bool], devices: int) -> int:
    """The axis to cut into ``devices`` equal slabs: of the active axes whose cell count
    ``devices`` divides, the one with the most cells (each slab then has the smallest
    faces for its volume). Raises :class:`ShardingError` naming the counts otherwise."""
    fits = [a for a in range(3) if active[a] and shape[a] % devices == 0 and shape[a] >= 2 * devices]
    if not fits:
        counts = ", ".join(f"{'xyz'[a]} {shape[a]}" for a in range(3) if active[a])
        raise ShardingError(
            f"devices={devices} divides none of the stepped cell counts ({counts}) into slabs of two or "
            f"more cells; change the domain size or the grid by a few cells, or ask for a divisor"
        )
    return max(fits, key=lambda a: (shape[a], -a))


def leaf_spec(shape: tuple[int, ...], grid_shape: tuple[int, int, int], axis: int) -> tuple[str | None, ...]:
    """The partition spec of one array: split along the dimension that spans the grid's
    ``axis`` (the dimension ``axis`` of its last three, when that has the grid's whole
    count, as fields, coefficients, transverse CPML slabs and whole-grid monitors do);
    replicated otherwise (1D profiles, waveforms, small monitor regions)."""
    spec: list[str | None] = [None] * len(shape)
    if len(shape) >= 3 and shape[len(shape) - 3 + axis] == grid_shape[axis]:
        spec[len(shape) - 3 + axis] = SLABS
    return tuple(spec)


def _mesh(devices: int) -> Any:
    import jax
    from jax.sharding import Mesh

    return Mesh(np.array(jax.devices()[:devices]), (SLABS,))


def shardings(tree: Any, layout: Layout, axis: int, devices: int) -> Any:
    """A ``NamedSharding`` for every array in ``tree`` (state or params) on a mesh of the
    first ``devices`` JAX devices, split as :func:`leaf_spec` says."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = _mesh(devices)
    return jax.tree_util.tree_map(lambda x: NamedSharding(mesh, PartitionSpec(*leaf_spec(np.shape(x), layout.shape, axis))), tree)


def replicated(devices: int) -> Any:
    """A copy on each of the first ``devices`` devices (a sum over the grid, which every
    process reads)."""
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(_mesh(devices), PartitionSpec())


def multi_process() -> bool:
    """Whether JAX runs as one of several processes (``jax.distributed``), each holding
    some of the devices: arrays are then placed and gathered shard by shard."""
    import jax

    return jax.process_count() > 1


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


def halo_bytes(layout: Layout, axis: int) -> int:
    """Bytes an interior device receives per time step: one plane of each stepped
    component transverse to ``axis`` (E from the plus neighbour for the forward
    differences feeding H, H from the minus neighbour for the backward ones feeding E);
    it sends as many."""
    item = np.dtype(layout.dtype).itemsize * (2 if any(layout.bloch) else 1)
    plane = int(np.prod([n for a, n in enumerate(layout.shape) if a != axis]))
    # Components differentiated along ``axis``: the two transverse to it, of E and of H.
    crossing = sum(layout.live[k] for k in range(6) if k % 3 != axis)
    return crossing * plane * item


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


def slab_psi(layout: Layout, state: dict, axis: int) -> dict:
    """``state`` with the whole-axis ψ along ``axis`` cut back to the CPML slabs (the
    inverse of :func:`whole_axis_psi`): what checkpoints and one-device runs hold."""
    psi = dict(state["psi"])
    for key in _psi_keys(axis):
        if key not in psi:
            continue
        full = np.asarray(psi.pop(key))
        for side, lo, hi in pml_slabs(layout, axis):
            psi[f"{key}{side}"] = full[tuple(slice(lo, hi) if b == axis else slice(None) for b in range(3))]
    return {**state, "psi": psi}
