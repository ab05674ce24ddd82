"""A run's results as one zarr v3 store: the form in which the processes of a split run
write their parts in parallel, each the pieces its own devices hold.

Layout (a directory; the groups and variables of the HDF5 file, :mod:`.hdf5`):

    zarr.json               attrs["metosim_results"]: format, format_version,
                            simulation (its JSON), info, versions; consolidated metadata
    grid/{x,y,z}            cell boundaries (µm)
    monitors/<name>/        attrs: the monitor's (monitor_type, …) and kind
                            ("dataset" | "dataarray")
        <dim>               coordinate values (µm, Hz or s; strings for labels)
        <var>               values on ``dimension_names``, one chunk per (x, y) plane as
                            in the HDF5 file; a field a split run holds in pieces is
                            stored in shards of one piece each (zarr's sharding codec),
                            so each process writes whole objects of its own
    manifest.json           SHA-256 of every other file

``xarray.open_zarr(root, group="monitors/<name>")`` reads a monitor; every process of a
split run writes the same metadata, the lead the rest (:func:`write_store`), and the
files each hands over (:func:`handed_over`) make the store when put side by side.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .hdf5 import FORMAT, FORMAT_VERSION, plane_chunks, versions
from .sharding import every_process, every_process_json, is_lead, multi_process

MANIFEST = "manifest.json"
#: The root attribute that marks a results store.
MARK = "metosim_results"


@dataclass(frozen=True)
class Pieces:
    """One variable of a monitor a split run holds in pieces: its whole shape, dims and
    dtype, and this process's pieces as (index into the whole, values)."""

    shape: tuple[int, ...]
    dims: tuple[str, ...]
    dtype: np.dtype
    piece_shape: tuple[int, ...]
    pieces: tuple[tuple[tuple[slice, ...], np.ndarray], ...]


@dataclass(frozen=True)
class MonitorPieces:
    """A monitor whose variables are :class:`Pieces`: its coordinates and attributes."""

    coords: dict[str, np.ndarray]
    attrs: dict[str, Any]
    variables: dict[str, Pieces]


@contextmanager
def quiet() -> Iterator[None]:
    """zarr notes that variable-length strings and consolidated metadata are not (yet)
    in the v3 spec; xarray and zarr-python read both."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def jsonable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes with NumPy values as plain lists and numbers (zarr stores JSON)."""
    return {str(k): (v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v) for k, v in attrs.items()}


def small_array(group: Any, name: str, values: np.ndarray, dims: list[str]) -> None:
    """A small array written whole; text as zarr's variable-length UTF-8 strings."""
    if values.dtype.kind in "OU":  # HDF5 string coordinates arrive as objects
        array = group.create_array(name, shape=values.shape, dtype=str, dimension_names=dims)
        array[...] = values.astype(str)
    else:
        group.create_array(name, data=values, dimension_names=dims)


def file_digests(root: Path, paths: list[str] | None = None) -> dict[str, str]:
    """SHA-256 of each of ``paths`` (relative to ``root``; every file under it by
    default, the manifest aside)."""
    if paths is None:
        paths = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()]
    out = {}
    for path in paths:
        if path == MANIFEST:
            continue
        h = hashlib.sha256()
        with open(root / path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[path] = h.hexdigest()
    return out


def write_manifest(root: Path, digests: Mapping[str, str], parts: list[list[str]] | None = None) -> None:
    """``manifest.json``: the SHA-256 of every file of the store and, for a store
    written by several processes, the files each wrote (``parts``, by process index)."""
    manifest: dict[str, Any] = {"algorithm": "sha256", "files": dict(digests)}
    if parts is not None:
        manifest["parts"] = parts
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def write_store(root: Path, simulation_json: str, info: dict[str, Any], grid_boundaries: tuple[np.ndarray, ...], monitors: Mapping[str, xr.Dataset | xr.DataArray | MonitorPieces], lead: bool = True) -> list[str]:
    """Write a results store into the new directory ``root`` and return the files this
    process hands over (paths relative to ``root``, :func:`handed_over`): the lead
    writes everything and its own pieces; another process only the arrays it holds
    pieces of (the same metadata as the lead's) and its pieces."""
    import zarr

    with quiet():
        group = zarr.open_group(root, mode="w", zarr_format=3)
        if lead:
            group.attrs[MARK] = {"format": FORMAT, "format_version": FORMAT_VERSION, "simulation": simulation_json, "info": jsonable(info), "versions": versions()}
            grid = group.create_group("grid")
            for axis, values in zip("xyz", grid_boundaries):
                grid.create_array(axis, data=np.asarray(values), dimension_names=[f"{axis}_boundary"])
        root_group = group.create_group("monitors")
        for name, data in monitors.items():
            if isinstance(data, MonitorPieces):
                _write_pieces(root_group.create_group(name), data, lead)
            elif lead:
                _write_whole(root_group.create_group(name), data)
        if lead:
            zarr.consolidate_metadata(root)
    return handed_over(root, monitors, lead)


def handed_over(root: Path, monitors: Mapping[str, Any], lead: bool) -> list[str]:
    """The files of ``root`` this process hands over: all (the lead), else the shards of
    its pieces (the rest it wrote the lead writes the same)."""
    if lead:
        files = [p for p in root.rglob("*") if p.is_file()]
    else:
        files = [
            p
            for name, data in monitors.items()
            if isinstance(data, MonitorPieces)
            for var in data.variables
            for p in (root / "monitors" / name / var).rglob("*")
            if p.is_file() and p.name != "zarr.json"
        ]
    return sorted(p.relative_to(root).as_posix() for p in files)


def hand_over(root: Path, files: list[str], put: Callable[[str, Path], None]) -> tuple[str, int] | None:
    """Put this process's ``files`` of the store written at ``root`` where the store
    goes (``put(path in the store, local file)``); then the lead puts the manifest of
    every process's files. Returns, in the lead, the manifest's SHA-256 (which vouches
    for every file) and the store's bytes; None in the others. Across processes all
    must call it (two collectives, then a barrier: on return the store is whole)."""
    digests = file_digests(root, files)
    sizes = sum((root / path).stat().st_size for path in files)
    for path in files:
        put(path, root / path)
    every = every_process_json([digests, sizes])
    out = None
    if not multi_process() or is_lead():
        write_manifest(root, {path: digest for part, _ in every for path, digest in part.items()}, [sorted(part) for part, _ in every])
        manifest = (root / MANIFEST).read_bytes()
        put(MANIFEST, root / MANIFEST)
        out = hashlib.sha256(manifest).hexdigest(), sum(size for _, size in every) + len(manifest)
    every_process(0)  # the others wait for the manifest
    return out


def verify_files(manifest: str | bytes, present: set[str], sha256_of: Callable[[str], str], what: str) -> int:
    """Check a store's files (``present``, paths; ``sha256_of`` each one's digest)
    against its manifest's text; returns how many were checked, raises ValueError
    naming ``what`` and the first file that differs, is missing or is extra."""
    expected = json.loads(manifest)["files"]
    present = present - {MANIFEST}
    if present != set(expected):
        raise ValueError(f"{what} files differ from the manifest: missing {sorted(set(expected) - present)[:5]}, extra {sorted(present - set(expected))[:5]}")
    for path, digest in expected.items():
        if sha256_of(path) != digest:
            raise ValueError(f"{what} file {path!r} does not match its manifest SHA-256")
    return len(expected)


def verify_store(root: Path) -> int:
    """Check every file of a results store's directory against its manifest
    (:func:`verify_files`)."""
    digests = file_digests(root)
    return verify_files((root / MANIFEST).read_text(), set(digests), digests.__getitem__, "results store")


def _write_whole(group: Any, data: xr.Dataset | xr.DataArray) -> None:
    group.attrs.update({**jsonable(data.attrs), "kind": "dataarray" if isinstance(data, xr.DataArray) else "dataset"})
    for dim, coord in data.coords.items():
        small_array(group, str(dim), np.asarray(coord.values), [str(d) for d in coord.dims])
    variables = {data.name or "data": data} if isinstance(data, xr.DataArray) else dict(data.data_vars)
    for var, array in variables.items():
        values = np.asarray(array.values)
        chunks = positive(plane_chunks(values.shape, array.dims) or values.shape or (1,))
        group.create_array(str(var), data=values, chunks=chunks, compressors=None, dimension_names=[str(d) for d in array.dims], attributes=jsonable(array.attrs))


def _write_pieces(group: Any, data: MonitorPieces, lead: bool) -> None:
    group.attrs.update({**jsonable(data.attrs), "kind": "dataset"})
    if lead:
        for dim, values in data.coords.items():
            small_array(group, dim, np.asarray(values), [dim])
    for var, held in data.variables.items():
        chunks = positive(plane_chunks(held.piece_shape, held.dims) or held.piece_shape)
        array = group.create_array(var, shape=held.shape, dtype=held.dtype, chunks=chunks, shards=positive(held.piece_shape), compressors=None, fill_value=0, dimension_names=list(held.dims))
        for index, values in held.pieces:
            array[index] = values


def positive(chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Chunk sides of at least one cell: an empty axis (a time monitor that took no
    snapshot yet) still has a chunk shape."""
    return tuple(max(int(n), 1) for n in chunks)


def is_store(source: Any) -> bool:
    """Whether ``source`` is a results store's directory (not an HDF5 file)."""
    return isinstance(source, (str, Path)) and not str(source).startswith(("http://", "https://")) and (Path(source) / "zarr.json").is_file()


def remote_store(urls: Mapping[str, str]) -> Any:
    """A read-only zarr store over the links of a stored results store's files (by
    path): each file fetched, with HTTP range reads, from its own (pre-signed) URL."""
    import fsspec
    import zarr
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

    files = fsspec.filesystem("reference", fo={"version": 1, "refs": {path: [url] for path, url in urls.items()}}, remote_protocol="http")
    with quiet():
        return zarr.storage.FsspecStore(AsyncFileSystemWrapper(files, asynchronous=True), read_only=True, path="")


def read_store(store: Any, lazy: bool = False) -> tuple[str, dict[str, Any], dict[str, str], dict[str, xr.Dataset | xr.DataArray]]:
    """(simulation JSON, run info, versions, monitors) of a results store: a directory or
    a zarr store object; ``lazy`` reads values only when indexed."""
    import zarr

    with quiet():
        group = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=True)
        header = group.attrs.get(MARK)
        if not header or header.get("format") != FORMAT:
            raise ValueError("not a MetoSim results store (missing its metosim_results attribute)")
        monitors = {}
        for name in group["monitors"].group_keys():
            data = xr.open_dataset(store, engine="zarr", group=f"monitors/{name}", consolidated=True, chunks=None, cache=not lazy, mask_and_scale=False)
            if not lazy:
                data = data.load()
            # Labels (a mode monitor's "+"/"-") come back as NumPy's variable-width
            # strings: fixed-width ones, as written.
            data = data.assign_coords({k: np.array(data[k].values.tolist(), dtype=str) for k in data.coords if data[k].dtype.kind == "T"})
            kind = data.attrs.pop("kind")
            if kind == "dataarray":
                (var,) = data.data_vars
                data = data[var].assign_attrs(data.attrs)
            monitors[name] = data
    return header["simulation"], header["info"], header["versions"], monitors
