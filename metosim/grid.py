"""Grid specification (model) and the uniform Yee grid it produces.

Yee convention (per axis, with N cells of size dl starting at ``lo``): integer
nodes sit at ``lo + i·dl`` and half nodes at ``lo + (i + ½)·dl``, i = 0 … N−1.
Eₚ sits on a half node along axis p and on integer nodes along the others; Hₚ is
the dual (integer along p, half along the others). An axis of zero size has one
cell and every node sits at the simulation centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from .base import MetoModel, PositiveFinite

#: Speed of light in vacuum (m/s).
C_0 = 299_792_458.0
#: Vacuum permittivity (F/m).
EPSILON_0 = 8.8541878128e-12
#: One micrometre in metres: the engine's length unit.
MICROMETRE = 1e-6


class GridSpec(MetoModel):
    """How to choose the (uniform) cell size. Build with :meth:`uniform` or :meth:`auto`."""

    type: Literal["GridSpec"] = "GridSpec"
    kind: Literal["uniform", "auto"]
    dl: PositiveFinite | None = None
    wavelength: PositiveFinite | None = None
    min_steps_per_wvl: Annotated[PositiveFinite, Field(ge=4, le=1000)] = 20.0

    @classmethod
    def uniform(cls, dl: float) -> "GridSpec":
        """Cubic cells of edge ``dl`` (µm), adjusted per axis so the cells tile the domain."""
        return cls(kind="uniform", dl=dl)

    @classmethod
    def auto(cls, wavelength: float, min_steps_per_wvl: float = 20.0) -> "GridSpec":
        """``min_steps_per_wvl`` cells per ``wavelength`` (µm, free space) in the densest medium."""
        return cls(kind="auto", wavelength=wavelength, min_steps_per_wvl=min_steps_per_wvl)

    @model_validator(mode="after")
    def _check_kind(self) -> "GridSpec":
        if self.kind == "uniform" and self.dl is None:
            raise ValueError("a uniform grid needs dl (µm)")
        if self.kind == "auto" and self.wavelength is None:
            raise ValueError("an auto grid needs wavelength (µm)")
        return self

    def cell_size(self, eps_max: float) -> float:
        """Target cell edge (µm) given the largest relative permittivity present."""
        if self.kind == "uniform":
            return float(self.dl)  # type: ignore[arg-type]
        return float(self.wavelength) / (self.min_steps_per_wvl * math.sqrt(eps_max))  # type: ignore[arg-type]


def num_cells_along(size: float, dl: float) -> int:
    """Cells along one axis: ``size / dl`` rounded, at least 1 (µm, µm)."""
    return max(1, round(size / dl)) if size > 0 else 1


def time_step(dl: tuple[float, float, float], active: tuple[bool, bool, bool], courant: float) -> float:
    """Courant-stable time step (s) for cells ``dl`` (µm) along the active axes."""
    inv = math.sqrt(sum(1.0 / d**2 for d, a in zip(dl, active) if a))
    return courant / inv * MICROMETRE / C_0


@dataclass(frozen=True)
class Grid:
    """The uniform Yee grid of a simulation (lengths µm, times s)."""

    lo: tuple[float, float, float]
    dl: tuple[float, float, float]
    num_cells: tuple[int, int, int]
    active: tuple[bool, bool, bool]
    dt: float
    num_time_steps: int

    @property
    def boundaries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell boundaries per axis (µm), N + 1 values (one value on a zero-size axis)."""
        return tuple(  # type: ignore[return-value]
            self.lo[a] + np.arange(self.num_cells[a] + 1) * self.dl[a] if self.active[a] else np.array([self.lo[a]])
            for a in range(3)
        )

    @property
    def centers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell centres per axis (µm), N values."""
        return tuple(self.nodes(a, half=True) for a in range(3))  # type: ignore[return-value]

    def nodes(self, axis: int, half: bool) -> np.ndarray:
        """Integer (``half=False``) or half-node positions along ``axis`` (µm)."""
        if not self.active[axis]:
            return np.array([self.lo[axis]])
        return self.lo[axis] + (np.arange(self.num_cells[axis]) + (0.5 if half else 0.0)) * self.dl[axis]

    def component_nodes(self, component: str, axis: int) -> np.ndarray:
        """Positions (µm) of a field component's Yee nodes along ``axis``."""
        along_own_axis = "xyz".index(component[1]) == axis
        return self.nodes(axis, half=along_own_axis == (component[0] == "E"))

    @property
    def total_cells(self) -> int:
        return math.prod(self.num_cells)

    @property
    def cell_volume(self) -> float:
        """Volume (µm³), area (µm²) or length (µm) of one cell over the active axes."""
        return math.prod(d for d, a in zip(self.dl, self.active) if a)

    def __repr__(self) -> str:
        cells = "×".join(str(n) for n in self.num_cells)
        dl = ", ".join(f"{d:.4g}" for d in self.dl)
        return f"Grid({cells} cells, dl=({dl}) µm, dt={self.dt:.4g} s, {self.num_time_steps} steps)"
