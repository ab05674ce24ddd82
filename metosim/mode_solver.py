"""The mode solver's front end: ``ModeSolver`` (solve a ``ModeSpec`` on a plane of a
simulation) and ``ModeSolverData`` (n_eff, profiles, plots).

The solver works on the simulation's own Yee grid and its subpixel-averaged
permittivity in the plane (:mod:`metosim.kernels.modes`), so the modes it reports are
the ones ``ModeSource`` injects and ``ModeMonitor`` projects onto.
"""

from __future__ import annotations

import html
from typing import IO, Any

import numpy as np
import xarray as xr
from pydantic import TypeAdapter

from .base import FIELD_COMPONENTS, Frequencies, _as_tuple
from .geometry import Box
from .kernels import hdf5
from .kernels.modes import modes_dataset, simulation_modes
from .kernels.units import to_normalised_frequency
from .mode_spec import ModeSpec, check_plane, plane_normal
from .plot import QUANTITIES, field_image
from .simulation import Simulation


class ModeSolverData:
    """Modes solved on a plane: ``n_eff``, ``k_eff``, ``te_fraction``, ``n_group``
    (dims mode_index, f) and the field profiles ``fields[c]`` for c in Ex … Hz (dims
    mode_index, f and the plane's two axes, on the plane's cell boundaries, unit power
    along +normal)."""

    def __init__(self, dataset: xr.Dataset, plane: Box, simulation: Simulation | None = None) -> None:
        self.dataset = dataset
        self.plane = plane
        self.normal = plane_normal(plane.size)
        self.simulation = simulation

    def to_hdf5(self, target: str | IO[bytes]) -> None:
        """Write the modes (indices, profiles), their plane and simulation to HDF5."""
        hdf5.write_modes(target, self.dataset, self.plane.model_dump_json(), self.simulation.model_dump_json() if self.simulation is not None else "")

    @classmethod
    def from_hdf5(cls, source: str | IO[bytes]) -> "ModeSolverData":
        """Read what :meth:`to_hdf5` wrote (a path or a binary file object)."""
        dataset, plane_json, simulation_json = hdf5.read_modes(source)
        return cls(dataset, Box.model_validate_json(plane_json), Simulation.model_validate_json(simulation_json) if simulation_json else None)

    @property
    def n_complex(self) -> xr.DataArray:
        return self.dataset["n_complex"]

    @property
    def n_eff(self) -> xr.DataArray:
        """Real effective index."""
        return np.real(self.dataset["n_complex"]).rename("n_eff")

    @property
    def k_eff(self) -> xr.DataArray:
        """Imaginary effective index (loss: power ∝ exp(−2 k_eff ω z / c))."""
        return np.imag(self.dataset["n_complex"]).rename("k_eff")

    @property
    def te_fraction(self) -> xr.DataArray:
        return self.dataset["te_fraction"]

    @property
    def n_group(self) -> xr.DataArray:
        return self.dataset["n_group"]

    @property
    def fields(self) -> xr.Dataset:
        return self.dataset[list(FIELD_COMPONENTS)]

    def plot_field(self, component: str, mode_index: int = 0, f: float | None = None, val: str = "abs", ax: Any = None) -> Any:
        """Image of one field component of one mode on the plane (``val``: real | imag |
        abs | int), with structure outlines if the solver had a simulation."""
        import matplotlib.pyplot as plt

        if component not in FIELD_COMPONENTS:
            raise ValueError(f"component must be one of {FIELD_COMPONENTS}, not {component!r}")
        array = self.dataset[component].isel(mode_index=mode_index)
        array = array.sel(f=f, method="nearest") if f is not None else array.isel(f=0)
        u, v = (a for a in range(3) if a != self.normal)
        axes = "xyz"
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 4))
        neff = float(self.n_eff.isel(mode_index=mode_index).sel(f=array.f.item()))
        if array.sizes[axes[v]] > 1:
            structures = self.simulation.structures if self.simulation is not None else ()
            field_image(ax, array, axes[u], axes[v], component, val, structures, self.normal, self.plane.center[self.normal])
        else:  # a 1D cross-section of a 2D simulation
            func, label = QUANTITIES[val]
            ax.plot(np.asarray(array[axes[u]]), func(np.asarray(array.values)).ravel())
            ax.set_ylabel(f"{label} {component}")
        ax.set_xlabel(f"{axes[u]} (µm)")
        ax.set_title(f"mode {mode_index}: {component}, n_eff = {neff:.4f}")
        return ax

    def _table(self) -> list[tuple[str, ...]]:
        rows = []
        for m in self.dataset.mode_index.values:
            for f in self.dataset.f.values:
                pick = dict(mode_index=m, f=f)
                rows.append(
                    (
                        str(int(m)),
                        f"{f / 1e12:.4g}",
                        f"{float(self.n_eff.sel(pick)):.5f}",
                        f"{float(self.k_eff.sel(pick)):.2e}",
                        f"{float(self.n_group.sel(pick)):.4f}",
                        f"{float(self.te_fraction.sel(pick)):.3f}",
                    )
                )
        return rows

    def __repr__(self) -> str:
        lines = ["ModeSolverData(mode, f THz, n_eff, k_eff, n_group, te_fraction)"]
        lines += ["  " + "  ".join(r) for r in self._table()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("mode", "f (THz)", "n_eff", "k_eff", "n_group", "TE fraction"))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self._table())
        return f"<table><caption><b>metosim.ModeSolverData</b></caption><tr>{head}</tr>{body}</table>"


class ModeSolver:
    """Solve the modes of ``simulation`` on ``plane`` (a ``Box`` of size 0 along its
    normal) at ``freqs`` (Hz)::

        modes = ms.ModeSolver(sim, plane=ms.Box(size=(0, 3, 2)), mode_spec=ms.ModeSpec(num_modes=2), freqs=[f0]).solve()
        modes.n_eff, modes.plot_field("Ey", mode_index=0)
    """

    def __init__(self, simulation: Simulation, plane: Box, mode_spec: ModeSpec = ModeSpec(), freqs: Any = ()) -> None:
        check_plane(plane.size)
        if simulation.size[plane_normal(plane.size)] == 0:
            raise ValueError("the plane's normal lies along a zero-size axis of the simulation; no mode can propagate along it")
        self.simulation = simulation
        self.plane = plane
        self.mode_spec = mode_spec
        self.freqs = TypeAdapter(Frequencies).validate_python(_as_tuple(freqs))

    def solve(self) -> ModeSolverData:
        freqs = np.array([to_normalised_frequency(f) for f in self.freqs])
        plane, modes = simulation_modes(self.simulation, self.plane.center, self.plane.size, self.mode_spec, freqs, where="ModeSolver")
        dataset = modes_dataset(self.simulation.grid, plane, modes, np.asarray(self.freqs))
        return ModeSolverData(dataset, self.plane, self.simulation)


__all__ = ["ModeSolver", "ModeSolverData"]
