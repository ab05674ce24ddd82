"""``SimulationData``: the results of one run, as xarray objects, with HDF5 (or zarr store) I/O and plots."""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np
import xarray as xr

from .kernels import hdf5, zarr_results
from .kernels.checkpoint import Checkpoint, CheckpointPolicy
from .plot import field_image, plane_axes, spectral_label
from .simulation import Simulation

Quantity = str  # "real" | "imag" | "abs" | "int"


class SimulationData(Mapping[str, xr.Dataset | xr.DataArray]):
    """Monitor data of a run: ``data["name"]`` is an ``xarray.Dataset`` (field and time
    monitors: one variable per component on x, y, z in µm and f in Hz or t in s) or an
    ``xarray.DataArray`` (flux monitors, over f)."""

    def __init__(self, simulation: Simulation, monitors: Mapping[str, xr.Dataset | xr.DataArray], info: dict[str, Any] | None = None, versions: dict[str, str] | None = None) -> None:
        self.simulation = simulation
        self._monitors = dict(monitors)
        self.info = dict(info or {})
        self.versions = dict(versions or hdf5.versions())

    # ---------------------------------------------------------------- mapping
    def __getitem__(self, name: str) -> xr.Dataset | xr.DataArray:
        try:
            return self._monitors[name]
        except KeyError:
            raise KeyError(f"no monitor named {name!r}; this result has {sorted(self._monitors)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._monitors)

    def __len__(self) -> int:
        return len(self._monitors)

    # ---------------------------------------------------------------- HDF5
    def to_hdf5(self, target: str | IO[bytes]) -> None:
        """Write the results file (layout in :mod:`metosim.kernels.hdf5`)."""
        hdf5.write_results(target, self.simulation.model_dump_json(), self._monitors, self.info, self.simulation.grid.boundaries)

    @classmethod
    def from_hdf5(cls, source: str | IO[bytes]) -> "SimulationData":
        """Read a results file from a path or a binary file object, fully into memory."""
        with h5py.File(source, "r") as f:
            sim_json, info, versions = hdf5.read_header(f)
            monitors = {name: hdf5.read_monitor(group) for name, group in f["monitors"].items()}
        return cls(Simulation.model_validate_json(sim_json), monitors, info, versions)

    @classmethod
    def open(cls, source: str | os.PathLike | IO[bytes] | Mapping[str, str], block_size: int = 1 << 16) -> "SimulationData":
        """Open a results file lazily: a local path, an HTTP(S) URL (e.g. a pre-signed
        S3 link) or a binary file object. Monitor data are read when indexed, so a
        plane of a large remote field costs only the chunks of that plane (HTTP range
        reads of ``block_size`` bytes). Keep the object alive while reading; call
        :meth:`close` when done. A results store (:mod:`metosim.kernels.zarr_results`)
        opens the same way: its directory (``solve(..., output=)``), or, stored, the
        links of its files by path (what ``Job.open`` passes)."""
        if isinstance(source, Mapping) or zarr_results.is_store(source):
            store = zarr_results.remote_store(source) if isinstance(source, Mapping) else str(source)
            sim_json, info, versions, monitors = zarr_results.read_store(store, lazy=True)
            return cls(Simulation.model_validate_json(sim_json), monitors, info, versions)
        if isinstance(source, str) and source.startswith(("http://", "https://")):
            import fsspec

            source = fsspec.filesystem("http").open(source, mode="rb", block_size=block_size, cache_type="bytes")
        handle = h5py.File(source, "r")
        sim_json, info, versions = hdf5.read_header(handle)
        monitors = {name: hdf5.read_monitor(group, lazy=True) for name, group in handle["monitors"].items()}
        data = cls(Simulation.model_validate_json(sim_json), monitors, info, versions)
        data._handle = handle
        return data

    def close(self) -> None:
        """Close the file behind data opened with :meth:`open`."""
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.close()

    # ---------------------------------------------------------------- plots
    def plot_field(
        self,
        monitor: str,
        component: str,
        x: float | None = None,
        y: float | None = None,
        z: float | None = None,
        f: float | None = None,
        t: float | None = None,
        val: Quantity = "real",
        ax: Any = None,
    ) -> Any:
        """Image of one component on the plane at ``x``, ``y`` or ``z`` (µm; nearest
        node), at frequency ``f`` (Hz) or time ``t`` (s) (nearest; the first if not
        given), as ``val`` ∈ real | imag | abs | int, with structure outlines."""
        import matplotlib.pyplot as plt

        data = self[monitor]
        if not isinstance(data, xr.Dataset) or component not in data:
            raise ValueError(f"monitor {monitor!r} has no field component {component!r}")
        array = data[component]
        normal, position, u, v = plane_axes(x, y, z)
        axes = "xyz"
        array = array.sel({axes[normal]: position}, method="nearest")
        for dim, value in (("f", f), ("t", t)):
            if dim in array.dims:
                array = array.sel({dim: value}, method="nearest") if value is not None else array.isel({dim: 0})
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 4))
        field_image(ax, array, axes[u], axes[v], component, val, self.simulation.structures, normal, float(array[axes[normal]]))
        when = {k: array.coords[k].item() for k in ("f", "t") if k in array.coords}
        stamp = ", ".join(f"{k} = {spectral_label(k, val_)}" for k, val_ in when.items())
        ax.set_title(f"{monitor}: {component}, {axes[normal]} = {position:g} µm" + (f", {stamp}" if stamp else ""))
        return ax

    def plot_far_field(self, monitor: str, phi: float = 0.0, f: float | None = None, ax: Any = None) -> Any:
        """Polar plot of the radiated power of a far-field monitor at frequency ``f`` (Hz;
        the first if not given): per steradian against θ in the plane φ (rad; nearest)
        in 3D; per radian against φ in 2D (the xy plane)."""
        import matplotlib.pyplot as plt

        data = self[monitor]
        if not isinstance(data, xr.Dataset) or "power" not in data or "theta" not in data.dims:
            raise ValueError(f"monitor {monitor!r} is not a far-field projection monitor")
        power = data["power"].sel(f=f, method="nearest") if f is not None else data["power"].isel(f=0)
        planar = data.attrs.get("power_per") == "per_rad"
        if ax is None:
            _, ax = plt.subplots(subplot_kw={"projection": "polar"}, figsize=(4.5, 4.5))
        when = spectral_label("f", power.f.item())
        if planar:
            power = power.isel(theta=0)
            ax.plot(np.append(power.phi, power.phi[0]), np.append(power.values, power.values[0]))  # closed curve
            ax.set_title(f"{monitor}: power per rad in the xy plane, f = {when}")
            return ax
        power = power.sel(phi=phi, method="nearest")
        ax.plot(power.theta, power.values)
        ax.set_theta_zero_location("N")
        ax.set_theta_direction(-1)
        ax.set_title(f"{monitor}: power per sr, φ = {np.degrees(float(power.phi)):.0f}°, f = {when}")
        return ax

    # ---------------------------------------------------------------- notebook
    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {type(v).__name__}{dict(v.sizes)}" for k, v in self._monitors.items())
        return f"SimulationData({parts})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(data.attrs.get('monitor_type', '')))}</td>"
            f"<td>{html.escape(', '.join(f'{d}: {n}' for d, n in data.sizes.items()))}</td></tr>"
            for name, data in self._monitors.items()
        )
        facts = ", ".join(f"{k}: {self.info[k]}" for k in ("backend", "time_steps", "precision") if k in self.info)
        return f"<table><caption><b>metosim.SimulationData</b> ({html.escape(facts)})</caption><tr><th>monitor</th><th>type</th><th>sizes</th></tr>{rows}</table>"


def solve(
    sim: Simulation,
    backend: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    checkpoints: CheckpointPolicy | None = None,
    resume: Checkpoint | None = None,
    devices: int = 1,
    kernel: str = "xla",
    output: str | os.PathLike | None = None,
) -> SimulationData:
    """Run ``sim`` in this process and return its :class:`SimulationData`.

    ``backend``: "auto" (JAX, on a GPU when JAX sees one), "jax" or "numpy".
    ``progress(step, total_steps)`` is called after each chunk of steps.
    ``checkpoints`` hands the stepping state out every ``interval_s`` seconds of
    stepping and ``resume`` goes on from one (see :mod:`metosim.kernels.checkpoint`).
    ``devices`` > 1 splits the grid into slabs over that many JAX devices (GPUs, or
    host CPU devices forced with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``)
    with the one-device results (see :mod:`metosim.kernels.sharding`).
    ``kernel``: "xla" (the default) or "fused", each half step as one Pallas kernel
    (see :mod:`metosim.kernels.fused`; off a GPU it runs in Pallas's slow interpreter).
    ``output``: a directory (new, or empty) to write the results into as a zarr store,
    with a manifest of SHA-256s; the data returned read from it lazily. Of a run split
    over several JAX processes each writes its own part there — the pieces its devices
    hold of the field monitors that span a cut — so no process gathers a whole-grid
    field; ``output`` must then be on a filesystem every process sees.
    """
    from .kernels import solve as run

    if backend != "numpy":
        compilation_cache()
    options = dict(backend=backend, progress=progress, checkpoints=checkpoints, resume=resume, devices=devices, kernel=kernel)
    if output is None:
        result = run(sim, **options)
        return SimulationData(sim, result.monitors, result.info)
    target = Path(output)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"output: {target} is not empty; the results store needs a new directory")
    with tempfile.TemporaryDirectory(prefix="metosim-results-") as tmp:
        written = Path(tmp) / "store"
        result = run(sim, store=written, **options)
        zarr_results.hand_over(written, result.files, lambda path, file: _move(file, target / path))
    return SimulationData.open(target)


def _move(file: Path, to: Path) -> None:
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(file, to)


def compilation_cache(directory: str | None = None) -> None:
    """Turn on JAX's persistent compilation cache, so a kernel compiled once is reused
    by later solves and other processes. A kernel depends on the grid, sources,
    monitors and step count, not on materials or geometry, so a sweep of small runs is
    several times faster. The default directory is ``~/.cache/metosim/jax``
    (``XDG_CACHE_HOME`` honoured); a directory already configured in JAX is kept;
    ``METOSIM_JAX_CACHE=0`` turns the cache off."""
    import os

    import jax

    if jax.config.jax_compilation_cache_dir or os.environ.get("METOSIM_JAX_CACHE", "1") == "0":
        return
    if directory is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        directory = os.path.join(base, "metosim", "jax")
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
