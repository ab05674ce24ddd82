"""Waveguide modes: ``ModeSpec`` (what to solve for), ``ModeSolver`` (solve on a plane
of a simulation) and ``ModeSolverData`` (n_eff, profiles, plots).

The solver works on the simulation's own Yee grid and its subpixel-averaged
permittivity in the plane (:mod:`metosim.kernels.modes`), so the modes it reports are
the ones ``ModeSource`` injects and ``ModeMonitor`` projects onto.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field, field_validator, model_validator

from .base import FIELD_COMPONENTS, Finite, Frequencies, MetoModel, PositiveFinite, _as_tuple

if TYPE_CHECKING:
    from .geometry import Box
    from .simulation import Simulation


class ModeSpec(MetoModel):
    """Which modes to solve for on a plane (Tidy3D's names).

    ``target_neff``: the effective index the search starts from (default: the largest
    index in the plane). ``filter_pol``: put "te" (``te_fraction`` ≥ ½: most of |E|² in
    the first tangential component, axes in x, y, z order) or "tm" modes first.
    ``num_pml``: PML cells on (first, second) tangential axis edges; PEC walls
    otherwise. Modes come ordered by decreasing n_eff with strongly lossy ones
    (|k_eff| > 1% of n_eff: the PML's own modes) last; for a tight, leaky bend in a
    PML plane check the profile, since a whispering mode of the outer cladding can
    rank first. ``bend_radius`` (µm, signed: positive bends towards +radial) with
    ``bend_axis`` (0 or 1: the tangential axis the guide bends about) solves a bent
    guide; its n_eff is per unit arc length at the plane centre.
    """

    type: Literal["ModeSpec"] = "ModeSpec"
    num_modes: Annotated[int, Field(ge=1, le=20)] = 1
    target_neff: PositiveFinite | None = None
    filter_pol: Literal["te", "tm"] | None = None
    num_pml: tuple[Annotated[int, Field(ge=0, le=64)], Annotated[int, Field(ge=0, le=64)]] = (0, 0)
    bend_radius: Finite | None = None
    bend_axis: Literal[0, 1] | None = None
    precision: Literal["single", "double"] = "double"

    @field_validator("num_pml", mode="before")
    @classmethod
    def _tuple(cls, value: Any) -> Any:
        return _as_tuple(value)

    @model_validator(mode="after")
    def _check_bend(self) -> "ModeSpec":
        if self.bend_radius is not None:
            if self.bend_radius == 0:
                raise ValueError("bend_radius must not be 0 (µm; None for a straight guide)")
            if self.bend_axis is None:
                raise ValueError("bend_radius needs bend_axis (0 or 1: the tangential axis the guide bends about)")
        return self


def plane_normal(size: tuple[float, float, float]) -> int:
    """The normal axis of a plane: its one zero-size axis (models check there is one)."""
    return size.index(0.0)


def check_plane(size: tuple[float, float, float]) -> None:
    """A mode plane is flat along exactly one axis."""
    flat = [a for a in range(3) if size[a] == 0]
    if len(flat) != 1:
        raise ValueError(
            "a mode plane needs size 0 along exactly one axis (its normal); "
            f"this one is flat along {len(flat)} — give the transverse axes a size > 0 (inf spans the domain)"
        )


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

        from .plot import QUANTITIES, field_image

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
        from pydantic import TypeAdapter

        check_plane(plane.size)
        if simulation.size[plane_normal(plane.size)] == 0:
            raise ValueError("the plane's normal lies along a zero-size axis of the simulation; no mode can propagate along it")
        self.simulation = simulation
        self.plane = plane
        self.mode_spec = mode_spec
        self.freqs = TypeAdapter(Frequencies).validate_python(_as_tuple(freqs))

    def solve(self) -> ModeSolverData:
        from .kernels.modes import modes_dataset, simulation_modes
        from .kernels.units import to_normalised_frequency

        freqs = np.array([to_normalised_frequency(f) for f in self.freqs])
        plane, modes = simulation_modes(self.simulation, self.plane.center, self.plane.size, self.mode_spec, freqs, where="ModeSolver")
        dataset = modes_dataset(self.simulation.grid, plane, modes, np.asarray(self.freqs))
        return ModeSolverData(dataset, self.plane, self.simulation)


__all__ = ["ModeSolver", "ModeSolverData", "ModeSpec"]
