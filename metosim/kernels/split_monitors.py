"""The field monitors of a run split over several processes, kept in pieces.

A field or time monitor that spans a split axis is recorded in slabs, one per device.
Gathering it would put the whole recording in every process (a whole-grid field of a
run too large for one device, in every host). Instead its output — unfolded across the
mirror planes, colocated on the integer nodes, in the units of the one-device result —
is computed in JAX on the split arrays (the neighbour's plane a colocation needs crosses
the cut as a halo), laid out in the same slabs, and each process hands out the pieces
its own devices hold (:class:`.zarr_results.MonitorPieces`) for the results store.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..grid import Grid
from ..monitor import FieldMonitor, FieldTimeMonitor, Monitor
from . import monitors as mon
from .sampling import Region
from .sharding import Split, leaf_spec, mesh_axis, mesh_of
from .symmetry import Halving, unfold_dft, unfold_snapshots
from .units import TIME_UNIT
from .zarr_results import MonitorPieces, Pieces


def held_in_pieces(monitors: list[Monitor], recordings: dict[str, dict], grid_shape: tuple[int, int, int], split: Split) -> frozenset[str]:
    """The field and time monitors whose recordings (``{"dft": …, "snap": …}`` as set
    up) a run split by ``split`` holds in slabs: those spanning a split axis."""
    out = set()
    for m in monitors:
        kind = "dft" if isinstance(m, FieldMonitor) else "snap" if isinstance(m, FieldTimeMonitor) else None
        if kind and any(any(leaf_spec(np.shape(v), grid_shape, split)) for v in recordings[kind][m.name].values()):
            out.add(m.name)
    return frozenset(out)


def _values(m: Monitor, region: Region, halvings: list[Halving], dft_weight: float, count: int) -> Any:
    """The function from one monitor's split recordings to its output values, (x, y, z,
    f or t) per component: what :func:`.monitors.field_dataset` and
    :func:`.monitors.time_dataset` compute, in JAX."""
    import jax.numpy as jnp

    def field(recorded: dict[str, Any]) -> dict[str, Any]:
        recorded = unfold_dft({m.name: {c: v * dft_weight for c, v in recorded.items()}}, halvings, jnp)[m.name]
        return {c: jnp.moveaxis(v, 0, -1) * TIME_UNIT for c, v in mon.field_values(m, region, recorded, jnp).items()}

    def snapshots(recorded: dict[str, Any]) -> dict[str, Any]:
        recorded = unfold_snapshots({m.name: recorded}, halvings, jnp)[m.name]
        return {c: jnp.moveaxis(v, 0, -1) for c, v in mon.time_values(m, region, recorded, count, jnp).items()}

    return field if isinstance(m, FieldMonitor) else snapshots


def _output_sharding(shape: tuple[int, ...], split: Split) -> Any:
    """Slabs of an output (x, y, z, …) along each split axis its count divides."""
    from jax.sharding import NamedSharding, PartitionSpec

    spec: list[str | None] = [None] * len(shape)
    for axis, count in split:
        if shape[axis] % count == 0:
            spec[axis] = mesh_axis(axis)
    return NamedSharding(mesh_of(split), PartitionSpec(*spec))


def monitor_pieces(
    monitors: list[Monitor],
    recorded: dict[str, dict[str, dict[str, Any]]],
    regions: dict[str, Region],
    snapshot_steps: dict[str, np.ndarray],
    halvings: list[Halving],
    grid: Grid,
    dft_weight: float,
    steps: int,
    split: Split,
) -> dict[str, MonitorPieces]:
    """This process's pieces of each monitor in ``recorded`` (``{"dft"|"snap": {name:
    {component: split JAX array}}}``), after ``steps`` time steps; ``dft_weight``: the
    time (normalised) each DFT sample stands for (:attr:`.yee.Layout.dft_weight`)."""
    import jax

    out = {}
    for m in monitors:
        field = isinstance(m, FieldMonitor)
        arrays = recorded["dft" if field else "snap"].get(m.name)
        if arrays is None:
            continue
        taken = snapshot_steps.get(m.name, np.zeros(0))
        taken = taken[taken <= steps]
        values = _values(m, regions[m.name], halvings, dft_weight, taken.size)
        shapes = jax.eval_shape(values, arrays)
        split_values = jax.jit(values, out_shardings={c: _output_sharding(s.shape, split) for c, s in shapes.items()})(arrays)
        coords = {**regions[m.name].coords(grid), **({"f": np.asarray(m.freqs)} if field else {"t": taken * grid.dt})}
        dims = ("x", "y", "z", "f" if field else "t")
        variables = {}
        for c, array in split_values.items():
            held = tuple((shard.index, np.asarray(shard.data)) for shard in array.addressable_shards if shard.replica_id == 0)
            piece_shape = tuple(array.sharding.shard_shape(array.shape))
            variables[c] = Pieces(shape=tuple(array.shape), dims=dims, dtype=np.dtype(array.dtype), piece_shape=piece_shape, pieces=held)
        out[m.name] = MonitorPieces(coords=coords, attrs={"monitor_type": m.type}, variables=variables)
    return out
