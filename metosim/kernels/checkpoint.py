"""Checkpoints of the time-stepping state: what a solve needs to go on from a step.

A checkpoint holds every array the stepping loop carries — the E and H fields, CPML
ψ, dispersive polarisations, running DFT sums (field, flux, mode and far-field
monitors), time-monitor buffers — with the step index and the energy shutoff's peak,
so a solve resumed from it takes exactly the steps an uninterrupted one would and
returns bit-identical monitor data (on the same backend and device kind). Its
metadata names the simulation (the SHA-256 of its JSON), the engine version, the
precision and the checkpoint format; :func:`check` refuses one that does not match.

The file is an uncompressed ``.npz`` (fields are noise-like floats: compression buys
little and costs time while a GPU waits).

A run split over devices hands out its state in **pieces**: each block of an array one
device holds, named ``"<path>@<first index along each axis>"`` (``"E/0@0,16,0"``), so
that no process gathers the whole state — across processes each hands out and writes
only its own (one *part* of the checkpoint, ``meta["part"] = [index, count]``), and
:func:`combine` puts the parts back together. :func:`restore` assembles pieces into the
engine's arrays, so a checkpoint in pieces goes on over any device count, one included.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..simulation import Simulation
from ..version import __version__

#: Bumped whenever the stepping state's layout changes: older checkpoints are refused.
FORMAT = 1
_META = "meta"
_STATE = "state/"


class CheckpointMismatch(ValueError):
    """A checkpoint that is not of this simulation, engine version, precision or
    state layout (or is not a checkpoint at all): it must not be resumed from."""


class SolveSuspended(Exception):
    """The solve stopped at ``step`` after writing a checkpoint there, because its time
    budget (``CheckpointPolicy.deadline``) was about to run out."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"suspended at step {step} of {total} (checkpoint written)")
        self.step, self.total = step, total


@dataclass(frozen=True)
class Checkpoint:
    """The stepping state after ``step`` steps.

    ``state`` is the loop's pytree (dicts and lists of arrays, as the engine builds it),
    or flat by path (as :func:`read` gives it), or pieces by name (a split run's);
    ``peak`` the largest field energy sampled so far (for the energy shutoff);
    ``meta`` what :func:`check` compares."""

    step: int
    peak: float
    state: dict[str, Any]
    meta: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for _, a in leaves(self.state))


@dataclass(frozen=True)
class CheckpointPolicy:
    """When the stepping loop hands out its state, and to whom.

    ``save`` receives each :class:`Checkpoint` (its arrays are valid only during the
    call: write them out before returning); in a run split across processes it is
    called in each, at the same step, with that process's part. One is taken whenever ``interval_s``
    seconds of stepping have passed since the last; with a ``deadline``
    (``time.monotonic()`` seconds), one is taken and the solve stops with
    :class:`SolveSuspended` when the next chunk of steps might not finish before it."""

    save: Callable[[Checkpoint], None]
    interval_s: float = 600.0
    deadline: float | None = None


def config_sha256(sim: Simulation) -> str:
    """The SHA-256 of the simulation's canonical JSON: what a checkpoint belongs to."""
    return hashlib.sha256(sim.model_dump_json().encode()).hexdigest()


def metadata(sim: Simulation) -> dict[str, Any]:
    """What a checkpoint of ``sim`` records about where it comes from."""
    # Checked in this order: the most telling difference is named.
    return {"format": FORMAT, "engine": __version__, "precision": sim.precision, "config_sha256": config_sha256(sim)}


def write(checkpoint: Checkpoint, file: str | IO[bytes]) -> None:
    """Write ``checkpoint`` to a path or binary file."""
    meta = {**checkpoint.meta, "step": checkpoint.step, "peak": checkpoint.peak, "written_at": time.time()}
    arrays = {_STATE + name: np.asarray(a) for name, a in leaves(checkpoint.state)}
    np.savez(file, **{_META: np.array(json.dumps(meta))}, **arrays)


def read(file: str | IO[bytes]) -> Checkpoint:
    """Read a checkpoint written by :func:`write` (its state as a flat dict by path;
    :func:`restore` puts it back into the engine's pytree)."""
    try:
        with np.load(file, allow_pickle=False) as npz:
            meta = json.loads(str(npz[_META]))
            state = {name.removeprefix(_STATE): npz[name] for name in npz.files if name.startswith(_STATE)}
        return Checkpoint(step=int(meta.pop("step")), peak=float(meta.pop("peak")), state=state, meta=meta)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:  # not an npz, or not ours
        raise CheckpointMismatch(f"not a readable checkpoint ({type(e).__name__}: {e})") from None


def check(checkpoint: Checkpoint, sim: Simulation) -> None:
    """Raise :class:`CheckpointMismatch` naming what differs unless ``checkpoint`` was
    written by this engine version and format for exactly ``sim``."""
    expected = metadata(sim)
    for name, want in expected.items():
        got = checkpoint.meta.get(name)
        if got != want:
            raise CheckpointMismatch(f"checkpoint {name} is {got!r}, this solve's is {want!r}")
    if not 0 < checkpoint.step <= sim.grid.num_time_steps:
        raise CheckpointMismatch(f"checkpoint step {checkpoint.step} is outside 1…{sim.grid.num_time_steps}")


def restore(flat: dict[str, np.ndarray], template: dict[str, Any]) -> dict[str, Any]:
    """The engine's state pytree shaped like ``template`` with the arrays of ``flat``
    (a read checkpoint's state); every array must be there with the template's shape
    and dtype (else :class:`CheckpointMismatch`). Pieces are assembled first."""
    names = dict(leaves(template))
    flat = _assemble(flat, names)
    if set(names) != set(flat):
        missing, extra = sorted(set(names) - set(flat)), sorted(set(flat) - set(names))
        raise CheckpointMismatch(f"checkpoint state differs from this solve's (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, want in names.items():
        got = flat[name]
        if got.shape != np.shape(want) or got.dtype != want.dtype:
            raise CheckpointMismatch(f"checkpoint array {name} is {got.dtype}{list(got.shape)}, this solve's is {want.dtype}{list(np.shape(want))}")
    return _rebuild(template, flat, "")


def combine(parts: list[Checkpoint]) -> Checkpoint:
    """One checkpoint from the parts each process of a split run wrote at the same step
    (their pieces together; :class:`CheckpointMismatch` unless they are all the parts of
    one checkpoint)."""
    first = parts[0]
    count = first.meta.get("part", [0, 0])[1]
    indices = sorted(p.meta.get("part", [None])[0] for p in parts)
    if indices != list(range(count)):
        raise CheckpointMismatch(f"a checkpoint of {count} parts needs parts 0…{count - 1}, not {indices}")
    def shared(meta: dict[str, Any]) -> dict[str, Any]:  # what every part must agree on
        return {k: v for k, v in meta.items() if k not in ("part", "written_at")}

    common = shared(first.meta)
    for p in parts[1:]:
        if p.step != first.step or shared(p.meta) != common:
            raise CheckpointMismatch(f"checkpoint part {p.meta['part'][0]} is of step {p.step}, part {first.meta['part'][0]} of step {first.step} (or their metadata differ)")
    return Checkpoint(step=first.step, peak=first.peak, state={name: a for p in parts for name, a in p.state.items()}, meta=common)


def piece_name(path: str, start: tuple[int, ...]) -> str:
    """The name of the block of array ``path`` whose first element is at ``start``."""
    return f"{path}@{','.join(map(str, start))}"


def _assemble(flat: dict[str, np.ndarray], names: dict[str, Any]) -> dict[str, np.ndarray]:
    """Whole arrays, shaped as ``names``' (path → template array), from the pieces in
    ``flat`` (whole arrays there pass through). The pieces are disjoint blocks (one per
    device holding the array, its first replica): their sizes must add up to the array's."""
    whole = {name: a for name, a in flat.items() if "@" not in name}
    filled: dict[str, int] = {}
    for name, piece in flat.items():
        if "@" not in name:
            continue
        path, where = name.rsplit("@", 1)
        if path not in names:
            raise CheckpointMismatch(f"checkpoint piece {name} is of no array this solve steps")
        want = names[path]
        start = tuple(int(i) for i in where.split(","))
        if path not in whole:
            whole[path], filled[path] = np.zeros(np.shape(want), piece.dtype), 0
        block = tuple(slice(i, i + n) for i, n in zip(start, piece.shape, strict=True))
        if any(b.stop > n for b, n in zip(block, np.shape(want), strict=True)):
            raise CheckpointMismatch(f"checkpoint piece {name} {list(piece.shape)} lies outside {path} {list(np.shape(want))}")
        whole[path][block] = piece
        filled[path] += piece.size
    missing = [path for path, n in filled.items() if n != whole[path].size]
    if missing:
        raise CheckpointMismatch(f"checkpoint pieces of {missing[:3]} cover {[filled[p] for p in missing[:3]]} of {[whole[p].size for p in missing[:3]]} elements: a part is missing")
    return whole


def leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, array) for every array of a pytree of dicts and lists, paths like "E/0":
    the names a checkpoint gives the state's arrays."""
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in leaves(tree[k], f"{prefix}{k}/")]
    if isinstance(tree, (list, tuple)):
        return [leaf for i, v in enumerate(tree) for leaf in leaves(v, f"{prefix}{i}/")]
    return [(prefix[:-1], tree)]


def _rebuild(template: Any, flat: dict[str, np.ndarray], prefix: str) -> Any:
    if isinstance(template, dict):
        return {k: _rebuild(v, flat, f"{prefix}{k}/") for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        return type(template)(_rebuild(v, flat, f"{prefix}{i}/") for i, v in enumerate(template))
    return flat[prefix[:-1]]
