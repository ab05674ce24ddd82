"""The results file: one HDF5 file per run.

    /                       attrs: format = "metosim-results", format_version
    /simulation             attrs: json (the Simulation), versions, run info
    /simulation/grid/{x,y,z}  cell boundaries (µm)
    /monitors/<name>        attrs: monitor_type, kind ("dataset" | "dataarray")
    /monitors/<name>/coords/<dim>   coordinate values (µm, Hz or s; UTF-8 strings for labels
                            such as a mode monitor's direction "+"/"-")
    /monitors/<name>/<var>  data; attr ``dims`` lists dimension names in order

Field arrays are chunked so one plane (all x, y at one z and one f or t) is one
chunk: a viewer slicing at fixed z reads only the chunks it shows.

A mode solver's file (``ModeSolverData.to_hdf5``) has the same group layout:

    /                       attrs: format = "metosim-modes", format_version, plane (the
                            Box JSON), simulation (its JSON, or ""), versions
    /modes                  n_complex, te_fraction, n_group, Ex … Hz, as a monitor group
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import h5py
import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

FORMAT = "metosim-results"
FORMAT_VERSION = 1
MODES_FORMAT = "metosim-modes"


def versions() -> dict[str, str]:
    """Versions of the packages that produced a result."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("metosim", "numpy", "jax", "jaxlib", "h5py", "xarray"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def plane_chunks(shape: tuple[int, ...], dims: tuple[str, ...]) -> tuple[int, ...] | None:
    """One chunk per (x, y) plane: full along the first spatial axes, 1 along the last
    spatial axis of length > 1 and along f/t."""
    if len(shape) <= 1 or 0 in shape:
        return None
    spatial = [i for i, d in enumerate(dims) if d in ("x", "y", "z") and shape[i] > 1]
    chunks = list(shape)
    for i, d in enumerate(dims):
        if d not in ("x", "y", "z"):
            chunks[i] = 1
    if len(spatial) > 2:
        chunks[spatial[-1]] = 1
    return tuple(chunks)


def _write_variable(group: h5py.Group, name: str, array: xr.DataArray) -> None:
    data = np.asarray(array.values)
    dset = group.create_dataset(name, data=data, chunks=plane_chunks(data.shape, array.dims))
    dset.attrs["dims"] = json.dumps(list(array.dims))
    for key, value in array.attrs.items():
        dset.attrs[key] = value


def write_results(target: str | IO[bytes], simulation_json: str, monitors: dict[str, xr.Dataset | xr.DataArray], info: dict[str, Any], grid_boundaries: tuple[np.ndarray, ...]) -> None:
    """Write a results file to a path or a binary file object."""
    with h5py.File(target, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        sim = f.create_group("simulation")
        sim.attrs["json"] = simulation_json
        sim.attrs["versions"] = json.dumps(versions())
        sim.attrs["info"] = json.dumps(info)
        for axis, values in zip("xyz", grid_boundaries):
            sim.create_dataset(f"grid/{axis}", data=values)
        root = f.create_group("monitors")
        for name, data in monitors.items():
            write_group(root.create_group(name), data)


def write_group(group: h5py.Group, data: xr.Dataset | xr.DataArray) -> None:
    """One xarray object as an HDF5 group (read back by :func:`read_monitor`)."""
    group.attrs["kind"] = "dataarray" if isinstance(data, xr.DataArray) else "dataset"
    for key, value in data.attrs.items():
        group.attrs[key] = value
    for dim, coord in data.coords.items():
        values = np.asarray(coord.values)
        if values.dtype.kind == "U":  # labels such as a mode monitor's direction "+"/"-"
            group.create_dataset(f"coords/{dim}", data=values.astype(object), dtype=h5py.string_dtype())
        else:
            group.create_dataset(f"coords/{dim}", data=values)
    variables = {data.name or "data": data} if isinstance(data, xr.DataArray) else dict(data.data_vars)
    for var, array in variables.items():
        _write_variable(group, str(var), array)


def write_modes(target: str | IO[bytes], dataset: xr.Dataset, plane_json: str, simulation_json: str) -> None:
    """Write a mode solver's result (see the layout above)."""
    with h5py.File(target, "w") as f:
        f.attrs["format"] = MODES_FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["plane"] = plane_json
        f.attrs["simulation"] = simulation_json
        f.attrs["versions"] = json.dumps(versions())
        write_group(f.create_group("modes"), dataset)


def read_modes(source: str | IO[bytes]) -> tuple[xr.Dataset, str, str]:
    """(dataset, plane JSON, simulation JSON or "") of a mode solver's file."""
    with h5py.File(source, "r") as f:
        if f.attrs.get("format") != MODES_FORMAT:
            raise ValueError(f"not a MetoSim mode solver file (format {f.attrs.get('format')!r})")
        return read_monitor(f["modes"]), str(f.attrs["plane"]), str(f.attrs["simulation"])


class LazyDataset(BackendArray):
    """An h5py dataset seen through xarray's lazy indexing: slicing reads only the
    chunks it touches (over HTTP range reads for a remote file)."""

    def __init__(self, dset: h5py.Dataset) -> None:
        self.dset = dset
        self.shape = dset.shape
        self.dtype = dset.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER_1VECTOR, self._read)

    def _read(self, key: tuple) -> np.ndarray:
        return np.asarray(self.dset[key])


def read_monitor(group: h5py.Group, lazy: bool = False) -> xr.Dataset | xr.DataArray:
    """One monitor group as xarray; ``lazy`` reads values only when indexed."""
    coords = {dim: np.asarray(values.asstr()[()] if values.dtype.kind == "O" else values[()]) for dim, values in group["coords"].items()}
    variables = {}
    for var, dset in group.items():
        if var == "coords":
            continue
        dims = tuple(json.loads(dset.attrs["dims"]))
        attrs = {k: v for k, v in dset.attrs.items() if k != "dims"}
        data = indexing.LazilyIndexedArray(LazyDataset(dset)) if lazy else dset[()]
        variables[var] = xr.Variable(dims, data, attrs=attrs)
    attrs = dict(group.attrs)
    kind = attrs.pop("kind")
    if kind == "dataarray":
        (name, variable), = variables.items()
        return xr.DataArray(variable, coords={d: coords[d] for d in variable.dims}, name=name, attrs=attrs)
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def read_header(f: h5py.File) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(simulation JSON, run info, versions) of an open results file."""
    if f.attrs.get("format") != FORMAT:
        raise ValueError("not a MetoSim results file (missing format attribute)")
    sim = f["simulation"]
    return str(sim.attrs["json"]), json.loads(sim.attrs["info"]), json.loads(sim.attrs["versions"])
