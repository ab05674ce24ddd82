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
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from .base import Coordinate, Finite, MetoModel, PositiveFinite, Size, _as_tuple

#: Speed of light in vacuum (m/s).
C_0 = 299_792_458.0
#: Vacuum permittivity (F/m).
EPSILON_0 = 8.8541878128e-12
#: One micrometre in metres: the engine's length unit.
MICROMETRE = 1e-6


class MeshOverride(MetoModel):
    """A box (µm) inside which an auto grid's steps are at most ``dl`` (µm) along every axis."""

    type: Literal["MeshOverride"] = "MeshOverride"
    center: Coordinate = (0.0, 0.0, 0.0)
    size: Size
    dl: PositiveFinite


class GridError(ValueError):
    """A grid that cannot be built as specified (steps that cannot grade within max_scale)."""


class GridSpec(MetoModel):
    """How to place the Yee grid's nodes. Build with :meth:`uniform`, :meth:`auto` or
    :meth:`custom`."""

    type: Literal["GridSpec"] = "GridSpec"
    kind: Literal["uniform", "auto", "custom"]
    dl: PositiveFinite | None = None
    wavelength: PositiveFinite | None = None
    min_steps_per_wvl: Annotated[PositiveFinite, Field(ge=4, le=1000)] = 20.0
    #: Largest ratio of neighbouring steps (auto and custom grids).
    max_scale: Annotated[Finite, Field(gt=1.0, le=2.0)] = 1.25
    #: Boxes with a finer step than the media ask for (auto grids).
    override_structures: tuple[MeshOverride, ...] = ()
    #: Cell boundaries (µm) per axis, both domain faces included; None: uniform ``dl`` (custom grids).
    coords: tuple[tuple[Finite, ...] | None, tuple[Finite, ...] | None, tuple[Finite, ...] | None] = (None, None, None)

    @field_validator("override_structures", "coords", mode="before")
    @classmethod
    def _tuples(cls, value: Any) -> Any:
        value = _as_tuple(value)
        return tuple(_as_tuple(v) for v in value) if isinstance(value, tuple) else value

    @classmethod
    def uniform(cls, dl: float) -> "GridSpec":
        """Cubic cells of edge ``dl`` (µm), adjusted per axis so the cells tile the domain."""
        return cls(kind="uniform", dl=dl)

    @classmethod
    def auto(cls, wavelength: float, min_steps_per_wvl: float = 20.0, max_scale: float = 1.25, override_structures: Any = ()) -> "GridSpec":
        """A graded grid: in each region at least ``min_steps_per_wvl`` steps per
        wavelength in the densest medium there (``wavelength`` in µm, free space), grid
        lines on every structure's bounding box, neighbouring steps within a ratio
        ``max_scale``; ``override_structures`` (:class:`MeshOverride`) refine boxes
        further."""
        return cls(kind="auto", wavelength=wavelength, min_steps_per_wvl=min_steps_per_wvl, max_scale=max_scale, override_structures=override_structures)

    @classmethod
    def custom(cls, x: Any = None, y: Any = None, z: Any = None, dl: float | None = None, max_scale: float = 1.25) -> "GridSpec":
        """Explicit cell boundaries (µm) per axis, from the domain's minus face to its plus
        face; an axis given None is uniform with step ``dl``."""
        coords = tuple(None if c is None else tuple(float(v) for v in np.asarray(c, dtype=float)) for c in (x, y, z))
        return cls(kind="custom", coords=coords, dl=dl, max_scale=max_scale)

    @model_validator(mode="after")
    def _check_kind(self) -> "GridSpec":
        if self.kind == "uniform" and self.dl is None:
            raise ValueError("a uniform grid needs dl (µm)")
        if self.kind == "auto" and self.wavelength is None:
            raise ValueError("an auto grid needs wavelength (µm)")
        if self.kind == "custom":
            for a, c in enumerate(self.coords):
                if c is None:
                    continue
                steps = np.diff(np.asarray(c))
                if len(c) < 2 or not np.all(steps > 0):
                    raise ValueError(f"coords[{a}] ({'xyz'[a]}) must be at least two strictly increasing boundaries (µm)")
                ratio = np.maximum(steps[1:] / steps[:-1], steps[:-1] / steps[1:])
                if ratio.size and ratio.max() > self.max_scale * (1 + 1e-9):
                    j = int(np.argmax(ratio))
                    raise ValueError(
                        f"coords[{a}] ({'xyz'[a]}): the steps {steps[j]:.4g} and {steps[j + 1]:.4g} µm either side of {'xyz'[a]} = {c[j + 1]:.6g} µm "
                        f"differ by {ratio[j]:.3g}×, above max_scale {self.max_scale:g}; grade them or raise max_scale"
                    )
        return self

    def cell_size(self, eps_max: float) -> float:
        """Smallest target cell edge (µm) given the largest relative permittivity present."""
        if self.kind == "uniform":
            return float(self.dl)  # type: ignore[arg-type]
        if self.kind == "custom":
            steps = [float(np.min(np.diff(c))) for c in self.coords if c is not None]
            return min(steps + ([float(self.dl)] if self.dl is not None else []))
        finest = float(self.wavelength) / (self.min_steps_per_wvl * math.sqrt(eps_max))  # type: ignore[arg-type]
        return min([finest] + [o.dl for o in self.override_structures])


def step_field(x: np.ndarray, constraints: np.ndarray, max_scale: float) -> np.ndarray:
    """Largest allowed step (µm) at positions ``x``: min over constraints (start, end,
    step) of step + ln(max_scale)·distance to [start, end]. Cells that each hold one
    unit of ∫ dx / s grow geometrically by exp(ln(max_scale)) = max_scale along a
    linear ramp of that slope, so steps following the field differ from their
    neighbours by at most max_scale."""
    start, end, step = (constraints[:, k, None] for k in range(3))
    distance = np.maximum(0.0, np.maximum(start - x[None], x[None] - end))
    return np.min(step + math.log(max_scale) * distance, axis=0)


def graded_boundaries(lo: float, hi: float, breakpoints: list[float], constraints: list[tuple[float, float, float]], max_scale: float, axis: str = "x") -> np.ndarray:
    """Cell boundaries (µm) from ``lo`` to ``hi`` through every breakpoint, each step at
    most :func:`step_field` there. Within the intervals between breakpoints the nodes
    equidistribute ∫ dx / s(x); where rounding the cell count up leaves a step jump
    at a breakpoint above ``max_scale``, a finer constraint is added there and the
    axis meshed again. The field grades at exactly ``max_scale``, so interpolation
    noise along a long ramp can tip a ratio over it; after 10 such passes the field
    grades at max_scale^0.95 instead (grids that mesh before are unchanged)."""
    tol = 1e-9 * (hi - lo)
    points = np.unique(np.clip(np.asarray([lo, hi, *breakpoints], dtype=float), lo, hi))
    points = points[np.concatenate([[True], np.diff(points) > tol])]
    points[-1] = hi
    # An interval holds at least one cell: its length is a constraint the field grades from.
    table = np.array([*constraints, *((x0, x1, x1 - x0) for x0, x1 in zip(points[:-1], points[1:]))], dtype=float)
    for attempt in range(40):
        grade = max_scale if attempt < 10 else max_scale**0.95
        nodes = [np.array([lo])]
        for x0, x1 in zip(points[:-1], points[1:]):
            # Samples clustered geometrically at both ends, where steps may be tiny.
            ramp = (x1 - x0) * np.geomspace(1e-7, 1.0, 400)
            xs = np.unique(np.concatenate([np.linspace(x0, x1, 513), x0 + ramp, x1 - ramp]))
            density = 1.0 / step_field(xs, table, grade)
            cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(xs))])
            n = max(1, math.ceil(cumulative[-1] - 1e-6))
            nodes.append(np.interp(np.arange(1, n) * cumulative[-1] / n, cumulative, xs))
            nodes.append(np.array([x1]))
        nodes = np.concatenate(nodes)
        steps = np.diff(nodes)
        ratio = np.maximum(steps[1:] / steps[:-1], steps[:-1] / steps[1:])
        jumps = np.nonzero(ratio > max_scale * (1 + 1e-6))[0]
        if not jumps.size:
            return nodes
        # A cell that starts where the field is s0 and grows at ln(r) spans s0·(r − 1)/ln(r):
        # pin the field at the jump so that the larger side's first cell is ≤ r × the smaller.
        pinned = max_scale * math.log(max_scale) / (max_scale - 1)
        extra = [(nodes[j + 1], nodes[j + 1], 0.999 * pinned * min(steps[j], steps[j + 1])) for j in jumps]
        table = np.concatenate([table, np.array(extra)])
    j = int(jumps[0])
    raise GridError(f"the {axis} steps cannot grade within max_scale {max_scale:g} near {axis} = {nodes[j + 1]:.6g} µm (steps {steps[j]:.4g} and {steps[j + 1]:.4g} µm); move close structure edges apart, or raise max_scale")


def on_half_nodes(component: str, axis: int) -> bool:
    """Whether a field ``component`` ("Ex" … "Hz") sits on half nodes along ``axis``
    on the Yee grid: E along its own axis, H along the other two."""
    return ("xyz".index(component[1]) == axis) == (component[0] == "E")


def coupled_components(active: tuple[bool, bool, bool], injected: set[str] | frozenset[str]) -> frozenset[str]:
    """The field components ("Ex" … "Hz") that the Yee update can make nonzero from the
    ``injected`` ones: their closure under the curl's couplings. Eₚ and H_b (and Hₚ and
    E_b) couple through ∂ₐ for every cyclic (p, a, b) and through ∂_b for (p, b, a), only
    along ``active`` axes. In 2D this splits the six into TM (E along the invariant axis
    with the two H across it) and TE (H along it, E across); in 3D one source couples all
    six. Isotropic media and the boundaries here (PEC, PMC, CPML, periodic, Bloch along
    active axes) keep the families apart."""
    live, todo = set(injected), list(injected)
    while todo:
        component = todo.pop()
        other = "H" if component[0] == "E" else "E"
        p = "xyz".index(component[1])
        for a, b in (((p + 1) % 3, (p + 2) % 3), ((p + 2) % 3, (p + 1) % 3)):
            partner = f"{other}{'xyz'[b]}"
            if active[a] and partner not in live:
                live.add(partner)
                todo.append(partner)
    return frozenset(live)


def num_cells_along(size: float, dl: float) -> int:
    """Cells along one axis: ``size / dl`` rounded, at least 1 (µm, µm)."""
    return max(1, round(size / dl)) if size > 0 else 1


def time_step(dl: tuple[float, float, float], active: tuple[bool, bool, bool], courant: float) -> float:
    """Courant-stable time step (s) for cells ``dl`` (µm) along the active axes."""
    inv = math.sqrt(sum(1.0 / d**2 for d, a in zip(dl, active) if a))
    return courant / inv * MICROMETRE / C_0


@dataclass(frozen=True, eq=False)
class Grid:
    """The Yee grid of a simulation (lengths µm, times s).

    ``dl`` is the step of a uniform axis, the smallest step of a graded one (whose
    steps are in ``steps``; None for a uniform axis).
    """

    lo: tuple[float, float, float]
    dl: tuple[float, float, float]
    num_cells: tuple[int, int, int]
    active: tuple[bool, bool, bool]
    dt: float
    num_time_steps: int
    steps: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None] = (None, None, None)

    def is_uniform(self, axis: int) -> bool:
        return self.steps[axis] is None

    def primal_steps(self, axis: int) -> np.ndarray:
        """Cell sizes (µm) along ``axis``: node i to node i + 1, N values."""
        steps = self.steps[axis]
        return np.full(self.num_cells[axis], self.dl[axis]) if steps is None else steps

    def dual_steps(self, axis: int, periodic: bool = False) -> np.ndarray:
        """Distances (µm) between the half nodes around each integer node, N values; the
        ghost cell before the first is the last (``periodic``) or mirrors the first."""
        return 0.5 * (self._steps_before(axis, periodic) + self.primal_steps(axis))

    def _steps_before(self, axis: int, periodic: bool = False) -> np.ndarray:
        """The cell size before each integer node (µm), N values: the ghost cell before
        the first is the last (``periodic``) or mirrors the first."""
        h = self.primal_steps(axis)
        return np.concatenate([h[-1:] if periodic else h[:1], h[:-1]])

    @property
    def boundaries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell boundaries per axis (µm), N + 1 values (one value on a zero-size axis)."""
        return tuple(  # type: ignore[return-value]
            self.lo[a] + np.concatenate([[0.0], np.cumsum(self.primal_steps(a))]) if self.active[a] else np.array([self.lo[a]])
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
        if self.steps[axis] is None:
            return self.lo[axis] + (np.arange(self.num_cells[axis]) + (0.5 if half else 0.0)) * self.dl[axis]
        b = self.boundaries[axis]
        return 0.5 * (b[:-1] + b[1:]) if half else b[:-1]

    def component_nodes(self, component: str, axis: int) -> np.ndarray:
        """Positions (µm) of a field component's Yee nodes along ``axis``."""
        return self.nodes(axis, half=on_half_nodes(component, axis))

    def cell_extent(self, component: str, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """The Yee cell around each node of ``component`` along ``axis``: distances (µm)
        from the node down to the cell's lower face and up to its upper face (half
        nodes: the integer nodes either side; integer nodes: the half nodes, the
        ghost before the first mirroring the first step)."""
        h = self.primal_steps(axis)
        if on_half_nodes(component, axis):
            return 0.5 * h, 0.5 * h
        return 0.5 * self._steps_before(axis), 0.5 * h

    def node_volume(self, component: str, index: tuple[int, int, int]) -> float:
        """Volume (µm³; area or length in 2D/1D) of the Yee cell of ``component`` at ``index``."""
        volume = 1.0
        for a in range(3):
            if self.active[a]:
                below, above = self.cell_extent(component, a)
                volume *= float(below[index[a]] + above[index[a]])
        return volume

    @property
    def total_cells(self) -> int:
        return math.prod(self.num_cells)

    def __repr__(self) -> str:
        cells = "×".join(str(n) for n in self.num_cells)
        dl = ", ".join(f"{d:.4g}" if self.is_uniform(a) else f"{d:.4g}–{float(np.max(self.steps[a])):.4g}" for a, d in enumerate(self.dl))
        return f"Grid({cells} cells, dl=({dl}) µm, dt={self.dt:.4g} s, {self.num_time_steps} steps)"
