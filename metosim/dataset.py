"""Batch results as one zarr v3 dataset, and lazy reading of it.

Layout (one store; a directory, or the same files in one uncompressed ``.zip``):

    /                      attrs["metosim_dataset"]: format, members, parameters, monitors
    /sample, /member, /sha256, /config, /<parameter>      (sample,) coordinates
    /<monitor>/            one group per monitor, the sample coordinates repeated,
        <dim>              the monitor's own coordinates (x, y, z, f, mode_index, …)
        <variable>         (sample, *dims), chunked one sample per chunk
    zarr.json              consolidated metadata
    manifest.json          SHA-256 of every other file in the store

``ms.open_dataset(source)`` returns an ``xarray.DataTree`` (one node per monitor,
lazily read); ``xarray.open_zarr(source, group="<monitor>")`` reads a directory store
too. Reading one sample of a variable reads one chunk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .data import SimulationData
from .kernels.zarr_results import MANIFEST, file_digests, jsonable, quiet, small_array, verify_files, write_manifest

FORMAT = 1
#: Fixed timestamp for zip entries: the same data give the same bytes (and SHA-256).
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class DatasetMember:
    """One sample: its name, sweep parameters, result SHA-256 and a loader of its data."""

    name: str
    parameters: Mapping[str, Any]
    sha256: str
    load: Callable[[], SimulationData]


def write_dataset(target: str | os.PathLike, members: Sequence[DatasetMember], monitors: Sequence[str] | None = None) -> Path:
    """Write ``members``' monitors (all of the first member's by default) as one zarr
    v3 store at ``target``: a directory, or a single zip file when it ends in ``.zip``.
    Every member must have the same monitors on the same coordinates (a ValueError
    names the member, monitor and dimension that differ). Members are read one at a
    time, so memory holds one member's data, not the batch's."""
    target = Path(target)
    if not members:
        raise ValueError("a dataset needs at least one member")
    with tempfile.TemporaryDirectory(prefix="metosim-zarr-") as tmp, quiet():
        root = Path(tmp) / "store" if target.suffix == ".zip" else target
        if root.exists():
            shutil.rmtree(root)
        _write_store(root, members, monitors)
        write_manifest(root, file_digests(root))
        if target.suffix == ".zip":
            _zip(root, target)
    return target


def _write_store(root: Path, members: Sequence[DatasetMember], monitors: Sequence[str] | None) -> None:
    import zarr

    first = members[0].load()
    names = list(monitors) if monitors is not None else list(first)
    for name in names:
        if name not in first:
            raise ValueError(f"monitors: no monitor {name!r} in member {members[0].name!r} (it has {sorted(first)})")
    parameters = list(members[0].parameters)
    taken = {"sample", "member", "sha256", "config"} | {str(d) for name in names for d in first[name].coords}
    clash = sorted(taken & set(parameters))
    if clash:
        raise ValueError(f"parameter {clash[0]!r} has the name of a dataset coordinate; rename it (taken: {sorted(taken)})")
    group = zarr.open_group(root, mode="w", zarr_format=3)
    group.attrs["metosim_dataset"] = {"format": FORMAT, "members": len(members), "parameters": parameters, "monitors": names}
    samples = _sample_coordinates(members)
    _write_coordinates(group, samples, ("sample",))
    coordinates = " ".join(k for k in samples if k != "sample")
    # Each member's full Simulation JSON, filled as members are read.
    config = group.create_array("config", shape=(len(members),), dtype=str, dimension_names=["sample"])
    arrays: dict[str, dict[str, Any]] = {}
    for name in names:
        node = group.create_group(name)
        node.attrs.update(jsonable(first[name].attrs))
        _write_coordinates(node, samples, ("sample",))
        variables = _variables(first[name])
        for dim, values in first[name].coords.items():
            small_array(node, str(dim), np.asarray(values.values), [str(d) for d in values.dims])
        arrays[name] = {}
        for var, data in variables.items():
            array = node.create_array(var, shape=(len(members), *data.shape), chunks=(1, *data.shape), dtype=data.dtype, dimension_names=["sample", *data.dims], fill_value=0)
            array.attrs.update({**jsonable(data.attrs), "coordinates": coordinates})
            arrays[name][var] = array
    for i, member in enumerate(members):
        data = first if i == 0 else member.load()
        config[i] = data.simulation.model_dump_json()
        try:
            for name in names:
                _check_like(member.name, name, data, first)
                for var, values in _variables(data[name]).items():
                    arrays[name][var][i] = np.asarray(values.values)
        finally:
            if i > 0:
                data.close()
    first.close()
    zarr.consolidate_metadata(root)


def _sample_coordinates(members: Sequence[DatasetMember]) -> dict[str, np.ndarray]:
    """sample, member, sha256 and one array per sweep parameter."""
    out: dict[str, np.ndarray] = {
        "sample": np.arange(len(members), dtype=np.int64),
        "member": np.array([m.name for m in members], dtype=str),
        "sha256": np.array([m.sha256 for m in members], dtype=str),
    }
    for key in members[0].parameters:
        values = [m.parameters[key] for m in members]
        if all(isinstance(v, bool) for v in values):
            out[key] = np.array(values, dtype=bool)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = np.array(values, dtype=np.int64 if all(isinstance(v, int) for v in values) else np.float64)
        else:
            out[key] = np.array([str(v) for v in values], dtype=str)
    return out


def _write_coordinates(group: Any, samples: Mapping[str, np.ndarray], dims: tuple[str, ...]) -> None:
    for key, values in samples.items():
        small_array(group, key, values, list(dims))


def _variables(monitor: xr.Dataset | xr.DataArray) -> dict[str, xr.DataArray]:
    if isinstance(monitor, xr.DataArray):
        return {str(monitor.name or "values"): monitor}
    return {str(k): v for k, v in monitor.data_vars.items()}


def _check_like(member: str, monitor: str, data: SimulationData, first: SimulationData) -> None:
    if monitor not in data:
        raise ValueError(f"member {member!r} has no monitor {monitor!r}")
    this, reference = data[monitor], first[monitor]
    if set(_variables(this)) != set(_variables(reference)):
        raise ValueError(f"member {member!r}, monitor {monitor!r}: components {sorted(_variables(this))} differ from the first member's {sorted(_variables(reference))}")
    for dim, values in reference.coords.items():
        other = this.coords.get(dim)
        if other is None or other.shape != values.shape or not np.array_equal(other.values, values.values):
            raise ValueError(f"member {member!r}, monitor {monitor!r}: coordinate {dim!r} differs from the first member's (same grid and frequencies are needed to stack samples)")


def _zip(root: Path, target: Path) -> None:
    """The store's files in one uncompressed zip (chunks are compressed already), in
    a fixed order with fixed timestamps, so equal data give an equal file."""
    part = target.with_name(target.name + ".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    os.replace(part, target)


# ---------------------------------------------------------------- reading
def _filesystem(source: str | os.PathLike, block_size: int) -> Any:
    """An fsspec filesystem whose root is the store: a directory, a local zip, or a
    zip behind an HTTP(S) URL read with range requests."""
    import fsspec

    text = str(source)
    if text.startswith(("http://", "https://")):
        handle = fsspec.filesystem("http").open(text, mode="rb", block_size=block_size, cache_type="bytes")
        return fsspec.filesystem("zip", fo=handle)
    if text.endswith(".zip"):
        return fsspec.filesystem("zip", fo=text)
    if not Path(text).is_dir():
        raise FileNotFoundError(f"no dataset at {text}")
    return fsspec.filesystem("dir", path=text, fs=fsspec.filesystem("file"))


def open_dataset(source: str | os.PathLike, block_size: int = 1 << 16) -> xr.DataTree:
    """Open a dataset written by :func:`write_dataset` lazily: a directory, a ``.zip``
    file, or an HTTP(S) URL of a zip (e.g. the pre-signed link of
    ``batch.export_dataset()``). Returns an ``xarray.DataTree`` with one node per
    monitor; values are read when indexed (one chunk per sample and variable;
    remote reads fetch ``block_size``-byte ranges)."""
    import zarr
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

    fs = _filesystem(source, block_size)
    with quiet():
        store = zarr.storage.FsspecStore(AsyncFileSystemWrapper(fs, asynchronous=True), read_only=True, path="")
        return xr.open_datatree(store, engine="zarr", consolidated=True, chunks=None)


def verify_dataset(source: str | os.PathLike) -> int:
    """Check every file of the store against ``manifest.json``; returns how many were
    checked, raises ValueError naming the first file that differs or is missing."""
    fs = _filesystem(source, 1 << 20)
    present = {path.lstrip("/") for path in fs.find("") if not path.endswith("/")}
    return verify_files(fs.cat_file(MANIFEST), present, lambda path: hashlib.sha256(fs.cat_file(path)).hexdigest(), "dataset")
