"""``Simulation``: the one schema shared by the SDK, the REST API and the engine."""

from __future__ import annotations

import html
import math
import os
from functools import cached_property, partial
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from .base import AXES, FIELD_COMPONENTS, Coordinate, FiniteSize, MetoModel, PositiveFinite, Symmetry, _as_tuple, mirror_parity
from .boundary import PML, BlochBoundary, BoundarySpec, PECBoundary, Periodic
from .geometry import Box, Geometry, same_shape
from .grid import Grid, GridError, GridSpec, coupled_components, graded_boundaries, num_cells_along, on_half_nodes, time_step
from .medium import DISPERSIVE, CustomMedium, Medium, MediumType, PECMedium, ade_stability_margin, warn_outside_range
from .monitor import FieldProjectionAngleMonitor, FieldTimeMonitor, FluxMonitor, ModeMonitor, Monitor
from .source import GaussianBeam, ModeSource, PlaneWave, PointDipole, Source

SCHEMA_VERSION = 1

#: Default upper limit on grid cells; override with the environment variable ``METOSIM_MAX_CELLS``.
DEFAULT_MAX_CELLS = 400_000_000


#: Most time steps one run can take (the engine counts steps in 32-bit integers).
MAX_TIME_STEPS = 2**31 - 1

#: Smallest nonzero size along an axis (µm, 1 pm): below it a one-cell axis has a step
#: whose square underflows (a size of 0 makes the simulation invariant along the axis).
MIN_SIZE = 1e-6


def max_cells() -> int:
    """The configured cell limit (``METOSIM_MAX_CELLS``, default 4·10⁸)."""
    return int(float(os.environ.get("METOSIM_MAX_CELLS", DEFAULT_MAX_CELLS)))


class Structure(MetoModel):
    """A geometry filled with a medium; later structures win where they overlap."""

    type: Literal["Structure"] = "Structure"
    geometry: Geometry
    medium: MediumType
    name: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "Structure":
        if isinstance(self.medium, CustomMedium) and not isinstance(self.geometry, Box):
            raise ValueError("a CustomMedium fills a Box: its pixels span the box's bounds")
        return self


class Simulation(MetoModel):
    """A complete FDTD problem. Lengths in µm, times in s, frequencies in Hz.

    A ``size`` of 0 along an axis makes the simulation invariant (2D or 1D) along it.

    ``symmetry`` = (sx, sy, sz) declares mirror planes through ``center``: 0 none, +1
    where the tangential E is even across the plane (a PMC plane: e.g. an Ey or Ez
    dipole on the plane x = centre), −1 where it is odd (a PEC plane: an Ex dipole
    there). The engine then steps only the half on the plus side of each plane and
    unfolds every monitor to the full domain; the grid takes an even number of cells
    along a symmetric axis so the plane falls on a grid node.
    """

    type: Literal["Simulation"] = "Simulation"
    schema_version: Literal[1] = SCHEMA_VERSION
    size: FiniteSize
    center: Coordinate = (0.0, 0.0, 0.0)
    grid_spec: GridSpec
    run_time: PositiveFinite
    structures: tuple[Structure, ...] = ()
    sources: tuple[Source, ...] = ()
    monitors: tuple[Monitor, ...] = ()
    boundary_spec: BoundarySpec = BoundarySpec()
    medium: MediumType = Medium()
    shutoff: Annotated[float, Field(ge=0.0, lt=1.0)] = 1e-5
    courant: Annotated[float, Field(gt=0.0, le=1.0)] = 0.99
    precision: Literal["float32", "float64"] = "float32"
    symmetry: Symmetry = (0, 0, 0)

    @field_validator("structures", "sources", "monitors", mode="before")
    @classmethod
    def _tuples(cls, value: Any) -> Any:
        return _as_tuple(value)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _integer_version(cls, value: Any) -> Any:
        if isinstance(value, bool):  # Literal[1] would take True, which equals 1
            raise ValueError(f"schema_version is the integer {SCHEMA_VERSION}, not a boolean")
        return value

    # ---------------------------------------------------------------- validation
    @model_validator(mode="after")
    def _check(self) -> "Simulation":
        # Each stage needs the one before it valid (the grid needs a domain, the
        # placement checks a grid), so it raises before the next one runs.
        for stage in (check_domain, check_grid):
            _raise(stage(self), self)
        _raise([e for check in CONCERNS for e in check(self)], self)
        if self.sources:
            # Where the sources carry power (above e⁻⁴ ≈ 2% of the peak of each pulse).
            band = (min(max(s.source_time.freq0 - 2 * s.source_time.fwidth, 1.0) for s in self.sources), max(s.source_time.freq0 + 2 * s.source_time.fwidth for s in self.sources))
            for k, medium in enumerate(self.media):
                warn_outside_range(medium, band, "medium" if k == 0 else f"structures[{k - 1}]")
        return self

    @property
    def is_complex(self) -> bool:
        """Whether the engine steps complex fields (a Bloch boundary with a phase)."""
        return any(self.boundary_spec[a].bloch_phase != 0 for a in range(3) if self.size[a] > 0)

    # ---------------------------------------------------------------- derived
    @property
    def bounds(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Lower and upper corners of the domain (µm)."""
        lo = tuple(c - s / 2 for c, s in zip(self.center, self.size))
        hi = tuple(c + s / 2 for c, s in zip(self.center, self.size))
        return lo, hi  # type: ignore[return-value]

    @property
    def media(self) -> tuple[Any, ...]:
        """The background medium followed by each structure's medium."""
        return (self.medium, *(s.medium for s in self.structures))

    @property
    def eps_max(self) -> float:
        return max(m.eps_max for m in self.media)

    @cached_property
    def grid(self) -> Grid:
        """The Yee grid: cell boundaries/centres per axis, ``num_cells``, ``dt``, ``num_time_steps``."""
        spec = self.grid_spec
        active = tuple(s > 0 for s in self.size)
        lo, hi = self.bounds
        dl_target = spec.cell_size(self.eps_max)
        num, dl, steps = [], [], []
        for a in range(3):
            boundaries = None
            if active[a] and spec.kind == "auto":
                boundaries = self._auto_boundaries(a)
            elif active[a] and spec.kind == "custom" and spec.coords[a] is not None:
                boundaries = np.asarray(spec.coords[a], dtype=float)
            if boundaries is not None and np.ptp(np.diff(boundaries)) > 1e-9 * np.mean(np.diff(boundaries)):
                h = np.diff(boundaries)
                num.append(h.size), dl.append(float(h.min())), steps.append(h)
                continue
            # Uniform: the steps tile the axis; an even count along a symmetric axis puts
            # the mirror plane on a grid node.
            step = float(spec.dl) if spec.kind == "custom" and spec.dl is not None else dl_target
            n = boundaries.size - 1 if boundaries is not None else num_cells_along(self.size[a], step)
            if self.symmetry[a] and active[a] and boundaries is None:
                n = 2 * num_cells_along(self.size[a] / 2, step)
            num.append(n), dl.append(self.size[a] / n if active[a] else dl_target), steps.append(None)
        dt = self._stable_time_step(time_step(tuple(dl), active, self.courant))  # type: ignore[arg-type]
        return Grid(
            lo=lo,
            dl=tuple(dl),  # type: ignore[arg-type]
            num_cells=tuple(num),  # type: ignore[arg-type]
            active=active,  # type: ignore[arg-type]
            dt=dt,
            num_time_steps=max(1, math.ceil(min(self.run_time / dt, MAX_TIME_STEPS))),  # above the cap: refused by _check
            steps=tuple(steps),  # type: ignore[arg-type]
        )

    def _auto_boundaries(self, axis: int) -> np.ndarray:
        """A graded axis (see :meth:`GridSpec.auto`): each structure's (and override
        box's) extent along ``axis`` asks for λ/(n·steps per λ) there, the background
        everywhere; grid lines on their bounding boxes. A symmetric axis is meshed on
        its plus half and mirrored."""
        spec = self.grid_spec
        lo, hi = (b[axis] for b in self.bounds)
        wavelength, per = float(spec.wavelength), spec.min_steps_per_wvl  # type: ignore[arg-type]
        constraints = [(lo, hi, wavelength / (per * math.sqrt(self.medium.eps_max)))]
        breakpoints = []
        dlo, dhi = self.bounds

        def overlaps(box_lo: tuple[float, ...], box_hi: tuple[float, ...]) -> bool:
            return all(box_lo[b] <= dhi[b] and box_hi[b] >= dlo[b] for b in range(3) if b != axis and self.size[b] > 0) and box_lo[axis] < hi and box_hi[axis] > lo

        boxes = [(*s.geometry.bounds(), wavelength / (per * math.sqrt(max(s.medium.eps_max, 1.0)))) for s in self.structures]
        boxes += [(tuple(c - z / 2 for c, z in zip(o.center, o.size)), tuple(c + z / 2 for c, z in zip(o.center, o.size)), o.dl) for o in spec.override_structures]
        for box_lo, box_hi, step in boxes:
            if overlaps(box_lo, box_hi):
                start, end = max(box_lo[axis], lo), min(box_hi[axis], hi)
                constraints.append((start, end, step))
                breakpoints += [x for x in (start, end) if lo < x < hi]
        name = AXES[axis]
        if not self.symmetry[axis]:
            return graded_boundaries(lo, hi, breakpoints, constraints, spec.max_scale, name)
        centre = self.center[axis]
        half = graded_boundaries(centre, hi, [x for x in breakpoints if x > centre], constraints, spec.max_scale, name)
        return np.concatenate([2 * centre - half[:0:-1], half])

    def _stable_time_step(self, dt: float) -> float:
        """``dt`` (s), shortened where a dispersive medium needs it: a strong or fast pole
        lowers the effective ε at the Nyquist frequency below the courant² the leapfrog
        needs (see :func:`metosim.medium.ade_stability_margin`)."""
        dispersive = [m for m in self.media if isinstance(m, DISPERSIVE)]

        def excess(step: float) -> float:
            return min(ade_stability_margin(m, step) for m in dispersive) - (self.courant * step / dt) ** 2

        if not dispersive or excess(dt) >= 0:
            return dt
        lo, hi = 0.0, dt
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if excess(mid) >= 0 else (lo, mid)
        return 0.99 * lo  # a 1% margin below the limit

    @property
    def pml_layers(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """CPML layers (minus, plus) per axis; 0 on a collapsed axis and on other boundaries."""
        return tuple(  # type: ignore[return-value]
            tuple(k.num_layers if isinstance(k, PML) and self.grid.active[a] else 0 for k in (self.boundary_spec[a].minus, self.boundary_spec[a].plus))
            for a in range(3)
        )

    def stepped_components(self) -> list[str] | None:
        """The field components the engine steps: the sources' own and those the curl
        couples to them on this grid (TE or TM in 2D, all six in 3D); None where a mode
        source's polarisation is known only after its mode solve."""
        injected: set[str] = set()
        for source in self.sources:
            if isinstance(source, ModeSource):
                if not all(self.grid.active):
                    return None
                injected.update(("Ex", "Hx"))  # in 3D any one component reaches all six
            elif isinstance(source, PointDipole):
                injected.add(source.polarization)
            else:
                vector = source.polarization_vector if isinstance(source, PlaneWave) else np.eye(3)[AXES.index(source.polarization[1])]
                injected.update(f"E{axis}" for axis, v in zip(AXES, vector) if abs(v) > 1e-12)
        live = coupled_components(self.grid.active, injected)
        return [c for c in FIELD_COMPONENTS if c in live]

    def estimate(self, devices: int = 1) -> dict[str, Any]:
        """Cells, time steps, the engine's memory (bytes) and the field components it
        steps (:meth:`stepped_components`) for this simulation. With ``devices`` > 1
        (a run split into slabs, ``ms.solve(sim, devices=N)``) also the memory per
        device: the grid's arrays divided among them, the monitors' recordings counted
        whole on each (an upper bound: recordings that span the cut are split too)."""
        if not isinstance(devices, int) or devices < 1:
            raise ValueError(f"devices must be a positive integer, not {devices!r}")
        g = self.grid
        item = 4 if self.precision == "float32" else 8
        cells = g.total_cells
        fields = 6 * cells * item
        coefficients = 3 * cells * item * (2 if self._has_conductivity else 1)
        pml = 0
        for a in range(3):
            if g.active[a]:
                layers = sum(k.num_layers for k in (self.boundary_spec[a].minus, self.boundary_spec[a].plus) if isinstance(k, PML))
                pml += 4 * layers * (cells // g.num_cells[a]) * item
        monitors = 0
        for m in self.monitors:
            along = [_points_along(g, m.center[a], m.size[a], a) for a in range(3)]
            points = math.prod(along)
            if isinstance(m, FieldProjectionAngleMonitor):  # four components on each of six faces
                points = 2 * (along[0] * along[1] + along[1] * along[2] + along[0] * along[2])
            if isinstance(m, FieldTimeMonitor):
                stop = m.stop if m.stop is not None else self.run_time
                count = math.floor(max(0.0, min(stop, self.run_time) - m.start) / g.dt / m.interval) + 2
                monitors += points * len(m.fields) * count * item
            else:
                comps = 4 if isinstance(m, (FluxMonitor, ModeMonitor, FieldProjectionAngleMonitor)) else len(m.fields)
                monitors += points * comps * len(m.freqs) * 2 * item
        estimate = {"cells": cells, "time_steps": g.num_time_steps, "memory_bytes": fields + coefficients + pml + monitors, "stepped_components": self.stepped_components()}
        if devices > 1:
            estimate["devices"] = devices
            estimate["memory_per_device_bytes"] = math.ceil((fields + coefficients + pml) / devices) + monitors
        return estimate

    @property
    def _has_conductivity(self) -> bool:
        return any(isinstance(m, Medium) and m.conductivity > 0 for m in self.media)

    # ---------------------------------------------------------------- notebook
    def plot(self, x: float | None = None, y: float | None = None, z: float | None = None, ax: Any = None, grid: bool = False) -> Any:
        """Draw a cross-section at one of ``x``, ``y`` or ``z`` (µm): structures coloured by
        permittivity, sources, monitors and PML; ``grid=True`` adds the Yee cell
        boundaries. Returns the matplotlib axis."""
        from .plot import plot_simulation

        return plot_simulation(self, x=x, y=y, z=z, ax=ax, grid=grid)

    def _repr_html_(self) -> str:
        est = self.estimate()
        g = self.grid
        rows = [
            ("size", " × ".join(f"{s:g}" for s in self.size) + " µm"),
            ("cells", "×".join(map(str, g.num_cells)) + f" = {est['cells']:,}"),
            ("cell size", ", ".join(f"{d:.4g}" if g.is_uniform(a) else f"{d:.4g}–{float(np.max(g.steps[a])):.4g}" for a, d in enumerate(g.dl) if g.active[a]) + " µm"),
            ("time steps", f"{est['time_steps']:,} × {g.dt:.3g} s = {self.run_time:.3g} s"),
            ("memory", f"{est['memory_bytes'] / 2**20:,.1f} MiB ({self.precision})"),
            ("structures / sources / monitors", f"{len(self.structures)} / {len(self.sources)} / {len(self.monitors)}"),
        ]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table><caption><b>metosim.Simulation</b></caption>{body}</table>"


# ---------------------------------------------------------------- validators by concern
# Each takes a Simulation (``Simulation.model_construct`` builds one unchecked, to test a
# validator alone) and returns (field path, reason) pairs; ``Simulation._check`` runs
# them in order and raises one ValidationError listing them all.

def _tolerance(sim: Simulation) -> float:
    """Positions within this of each other (µm) are the same place."""
    return 1e-9 * max(max(sim.size), 1.0)


def _inside(sim: Simulation, point: tuple[float, ...]) -> bool:
    lo, hi = sim.bounds
    tol = _tolerance(sim)
    return all(l - tol <= p <= h + tol for p, l, h in zip(point, lo, hi))


def check_domain(sim: Simulation) -> list[tuple[tuple[str | int, ...], str]]:
    """A domain with extent, no axis vanishingly thin, a background medium that fills."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    if not any(s > 0 for s in sim.size):
        errors.append((("size",), "at least one axis must have a size > 0"))
        return errors
    for a, s in enumerate(sim.size):
        if 0 < s < MIN_SIZE:
            errors.append((("size", a), f"{s:.3g} µm is below {MIN_SIZE:g} µm: give 0 to make the simulation invariant along {AXES[a]}"))
    if errors:
        return errors
    if isinstance(sim.medium, (PECMedium, CustomMedium)):
        errors.append((("medium",), f"the background medium cannot be {sim.medium.type}"))
    return errors


def check_grid(sim: Simulation) -> list[tuple[tuple[str | int, ...], str]]:
    """A grid that can be built: positive finite cells, within the cell limit, custom
    coordinates from face to face, a time-step count the 32-bit loop counter holds."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    # Bound the cell count from floats before any grid exists: a vanishing cell
    # size must be refused here, not overflow later (graded grids have fewer).
    dl = sim.grid_spec.cell_size(sim.eps_max)
    if not (math.isfinite(dl) and dl > 0):  # e.g. an auto grid for a denormal wavelength
        errors.append((("grid_spec",), f"these settings give cells of {dl:.3g} µm; a cell must be a positive, finite length"))
        return errors
    cells = math.prod(max(1.0, s / dl) for s in sim.size if s > 0)
    if sim.grid_spec.kind == "auto":  # no auto grid is coarser than vacuum's target step
        coarsest = sim.grid_spec.wavelength / sim.grid_spec.min_steps_per_wvl  # type: ignore[operator]
        cells = math.prod(max(1.0, s / coarsest) for s in sim.size if s > 0)
    if sim.grid_spec.kind != "custom" and (not math.isfinite(cells) or cells > max_cells()):
        errors.append((("grid_spec",), f"{'at least ' if sim.grid_spec.kind == 'auto' else ''}{cells:,.3g} cells exceed the limit of {max_cells():,} (METOSIM_MAX_CELLS)"))
        return errors
    if not all(math.isfinite(s / dl) and s / dl < 1e8 for s in sim.size):
        errors.append((("grid_spec",), f"steps of {dl:.3g} µm put over 10⁸ cells along one axis"))
        return errors
    errors += check_grid_coords(sim)
    if errors:
        return errors
    try:
        total = sim.grid.total_cells
    except (GridError, ArithmeticError) as exc:  # a numeric corner the checks above missed is still a 422
        errors.append((("grid_spec",), str(exc) if isinstance(exc, GridError) else f"the grid cannot be built from these sizes and steps ({exc})"))
        return errors
    if total > max_cells():
        errors.append((("grid_spec",), f"{total:,.3g} cells exceed the limit of {max_cells():,} (METOSIM_MAX_CELLS)"))
        return errors
    # The step counter is a 32-bit integer in the jitted loop.
    steps = sim.run_time / sim.grid.dt
    if not steps < MAX_TIME_STEPS:
        errors.append((("run_time",), f"{sim.run_time:.3g} s is {steps:.3g} time steps of {sim.grid.dt:.3g} s; at most {MAX_TIME_STEPS:,} are possible"))
    return errors


def check_grid_coords(sim: Simulation) -> list[tuple[tuple[str | int, ...], str]]:
    """Custom coordinates must run from face to face (and mirror about a symmetry plane)."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    if sim.grid_spec.kind != "custom":
        return errors
    lo, hi = sim.bounds
    tol = _tolerance(sim)
    for a, coords in enumerate(sim.grid_spec.coords):
        if coords is None and sim.size[a] > 0 and sim.grid_spec.dl is None:
            errors.append((("grid_spec", "dl"), f"a custom grid needs dl (µm) for {AXES[a]}, which has no coords"))
        if coords is None or sim.size[a] == 0:
            continue
        c = np.asarray(coords)
        if abs(c[0] - lo[a]) > tol or abs(c[-1] - hi[a]) > tol:
            errors.append((("grid_spec", "coords", a), f"must run from the domain's {AXES[a]} = {lo[a]:g} to {hi[a]:g} µm, not {c[0]:g} to {c[-1]:g}"))
        elif sim.symmetry[a] and not np.allclose(c, (2 * sim.center[a] - c)[::-1], atol=tol):
            errors.append((("grid_spec", "coords", a), f"symmetry[{a}] needs boundaries that mirror about {AXES[a]} = {sim.center[a]:g} µm"))
        elif sim.symmetry[a] and not np.any(np.abs(c - sim.center[a]) < tol):
            errors.append((("grid_spec", "coords", a), f"symmetry[{a}] needs a boundary on the plane {AXES[a]} = {sim.center[a]:g} µm"))
    return errors


def check_boundaries(sim: Simulation) -> list[tuple[tuple[str | int, ...], str]]:
    """Periodic and Bloch boundaries in pairs; PML layers that leave cells inside."""
    errors = []
    for a, name in enumerate(AXES):
        b = sim.boundary_spec[a]
        if isinstance(b.minus, Periodic) != isinstance(b.plus, Periodic):
            errors.append((("boundary_spec", name), "Periodic must be set on both sides or neither"))
        if (isinstance(b.minus, BlochBoundary) or isinstance(b.plus, BlochBoundary)) and b.minus != b.plus:
            errors.append((("boundary_spec", name), "BlochBoundary must be set on both sides, with the same bloch_vec (it is periodic, with a phase)"))
        if sim.size[a] == 0:
            continue
        cells = sim.grid.num_cells[a]
        layers = sum(k.num_layers for k in (b.minus, b.plus) if isinstance(k, PML))
        if layers >= cells:
            errors.append(
                (
                    ("boundary_spec", name),
                    f"PML layers ({layers}) fill the {cells} cells along {name}; "
                    "enlarge the simulation or use fewer layers",
                )
            )
    return errors


def check_sources(sim: Simulation) -> list[tuple[tuple[str | int, ...], str]]:
    """Sources inside the domain, whose field can radiate in a reduced-dimension
    simulation."""
    errors = []
    lo, hi = sim.bounds
    for i, src in enumerate(sim.sources):
        if not _inside(sim, src.center):
            errors.append((("sources", i, "center"), f"{src.center} is outside the simulation domain {lo}–{hi}"))
        if isinstance(src, PointDipole):
            own = AXES.index(src.polarization[1].lower())
            if not any(sim.size[a] > 0 for a in range(3) if a != own):
                errors.append(
                    (
                        ("sources", i, "polarization"),
                        f"{src.polarization} cannot couple: the simulation has no extent across {AXES[own]}",
                    )
                )
        elif sim.size[src.axis] == 0:
            errors.append(
                (("sources", i, "direction"), f"cannot propagate along {AXES[src.axis]}: the simulation size there is 0")
            )
    return errors


def check_monitors(sim: Simulation) -> list[tuple[tuple[str | int, ...], str]]:
    """Monitors inside the domain, with unique names and the shape each kind needs."""
    errors = []
    lo, hi = sim.bounds
    tol = _tolerance(sim)
    inside = partial(_inside, sim)

    names: set[str] = set()
    for i, mon in enumerate(sim.monitors):
        if not inside(mon.center):
            errors.append((("monitors", i, "center"), f"{mon.center} is outside the simulation domain {lo}–{hi}"))
        if mon.name in names:
            errors.append((("monitors", i, "name"), f"duplicate monitor name {mon.name!r}"))
        names.add(mon.name)
        if isinstance(mon, FluxMonitor):
            flat = [a for a in range(3) if mon.size[a] == 0 and sim.size[a] > 0]
            if len(flat) != 1:
                errors.append(
                    (
                        ("monitors", i, "size"),
                        "a flux monitor must be a plane: size 0 along exactly one axis of non-zero simulation size",
                    )
                )
        if isinstance(mon, FieldProjectionAngleMonitor):
            planar = sim.size[0] > 0 and sim.size[1] > 0 and sim.size[2] == 0
            if not (all(sim.size) or planar):
                errors.append((("monitors", i, "type"), "far-field projection needs a 3D simulation or a 2D one invariant along z (size z = 0, x and y > 0)"))
            elif planar != mon.planar:
                errors.append((("monitors", i, "size"), "in a 2D simulation the projection surface is a rectangle (size 0 along z)" if planar else "in a 3D simulation the projection surface is a closed box (size > 0 along z)"))
            elif planar and not (len(mon.theta) == 1 and abs(mon.theta[0] - math.pi / 2) < 1e-12):
                errors.append((("monitors", i, "theta"), "a 2D simulation radiates in the xy plane only: theta = (π/2,)"))
            elif not all(l + tol < c - s / 2 and c + s / 2 < h - tol for c, s, l, h in list(zip(mon.center, mon.size, lo, hi))[: 2 if planar else 3]):
                errors.append((("monitors", i, "size"), f"the projection box must lie inside the simulation domain {lo}–{hi}"))
            elif not isinstance(sim.medium, Medium) or sim.medium.conductivity > 0:
                errors.append((("monitors", i, "type"), "far-field projection needs a lossless, non-dispersive background medium"))
        if isinstance(mon, ModeMonitor) and sim.size[mon.size.index(0.0)] == 0:
            errors.append(
                (("monitors", i, "size"), f"the mode plane's normal {AXES[mon.size.index(0.0)]} is an axis of zero simulation size; no mode propagates along it")
            )
    return errors


def check_symmetry(sim: Simulation) -> list[tuple[tuple[str | int, ...], str]]:
    """Each mirror plane needs a symmetric box, structures that are their own mirror
    image or have one, and sources that respect it: on the plane, or point dipoles in
    mirrored pairs. (Mode profiles are checked by the engine, on what it solves.)"""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    tol = _tolerance(sim)
    for a, s in enumerate(sim.symmetry):
        if s == 0:
            continue
        name, kind = AXES[a], "PMC" if s > 0 else "PEC"
        b = sim.boundary_spec[a]
        if sim.size[a] == 0:
            errors.append((("symmetry", a), f"the simulation has no extent along {name}: nothing to mirror"))
            continue
        if b.minus != b.plus or not isinstance(b.minus, (PML, PECBoundary)):
            errors.append((("symmetry", a), f"a mirror plane normal to {name} needs the same PML or PECBoundary on both {name} faces"))
        plane = f"the symmetry plane {name} = {sim.center[a]:g} µm"
        for i, structure in enumerate(sim.structures):
            image = structure.geometry.mirrored(a, sim.center[a])
            if isinstance(structure.medium, CustomMedium):
                values = structure.medium.values
                symmetric = same_shape(image, structure.geometry) and np.allclose(np.flip(values, axis=a), values)
            else:
                symmetric = any(same_shape(image, other.geometry) and other.medium == structure.medium for other in sim.structures)
            if not symmetric:
                errors.append((("structures", i), f"is not mirror-symmetric about {plane}, nor mirrored by another structure of the same medium"))
        for i, src in enumerate(sim.sources):
            on_plane = abs(src.center[a] - sim.center[a]) <= tol
            if isinstance(src, PointDipole):
                if mirror_parity(src.polarization, a, s) < 0:
                    errors.append((("sources", i, "polarization"), f"{src.polarization} is odd about {plane} under symmetry {s:+d} ({kind}): it cannot radiate there, nor pair with a mirror image of the same sign; use symmetry {-s:+d}"))
                elif on_plane and on_half_nodes(src.polarization, a):
                    errors.append((("sources", i, "center"), f"{src.polarization} lives half a cell off {plane} on the Yee grid: a single point source of it cannot be mirror-symmetric; place a mirrored pair or set symmetry[{a}] = 0"))
                elif not on_plane and not any(_mirrors(sim, src, other, a) for other in sim.sources):
                    errors.append((("sources", i, "center"), f"lies off {plane} without a mirror image: add the same dipole at {name} = {2 * sim.center[a] - src.center[a]:g} µm, or set symmetry[{a}] = 0"))
            elif not on_plane:
                errors.append((("sources", i, "center"), f"lies off {plane}: a plane source must be centred on it"))
            elif src.axis == a:
                errors.append((("sources", i, "direction"), f"propagates along {name}, across {plane}: the field cannot be mirror-symmetric"))
            elif not isinstance(src, ModeSource) and mirror_parity(src.polarization, a, s) < 0:
                # (A mode's parity is checked by the engine, on the solved profile.)
                errors.append((("sources", i, "polarization"), f"{src.polarization} is odd about {plane} under symmetry {s:+d} ({kind}); use symmetry {-s:+d}"))
    return errors


def check_bloch(sim: Simulation) -> list[tuple[tuple[str | int, ...], str]]:
    """Oblique plane waves need the Bloch phase their wavevector gives each tilted
    axis; complex fields rule out what the engine only does for real ones."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    eps = getattr(sim.medium, "permittivity", None)
    for i, src in enumerate(sim.sources):
        if not isinstance(src, (PlaneWave, GaussianBeam)):
            continue
        axis = AXES[src.axis]
        if sim.size[src.axis] > 0 and sim.boundary_spec[src.axis].is_periodic:
            # The wave would wrap round through its own source: R and T lose their meaning.
            errors.append((("boundary_spec", axis), f"sources[{i}] propagates along {axis}: a periodic or Bloch boundary there wraps the wave back through its source; use PML (or PEC/PMC) along {axis}"))
        if not isinstance(src, PlaneWave) or eps is None:
            continue
        k = src.wavevector(eps)
        for a, name in enumerate(AXES):
            if a == src.axis:
                continue
            tilted = abs(k[a]) >= 1e-12 * max(abs(x) for x in k)
            if tilted and sim.size[a] == 0:
                errors.append((("sources", i, "angle_phi"), f"tilts the wave along {name}, an axis of zero simulation size"))
                continue
            expected = k[a] * sim.size[a] / (2 * math.pi) if tilted else 0.0
            b = sim.boundary_spec[a]
            bloch = isinstance(b.minus, BlochBoundary)
            if tilted and (not bloch or abs(b.minus.bloch_vec - expected) > 1e-6 * max(1.0, abs(expected))):
                errors.append((("boundary_spec", name), f"the oblique plane wave sources[{i}] needs BlochBoundary(bloch_vec={expected:.8g}) along {name} (k_{name}·L/2π at freq0; BlochBoundary.from_source builds it)"))
            elif not tilted and bloch and b.minus.bloch_vec != 0:
                errors.append((("boundary_spec", name), f"the plane wave sources[{i}] has no tilt along {name}: a Bloch phase there (bloch_vec={b.minus.bloch_vec:g}) matches no wave it launches; use bloch_vec=0 (or Periodic())"))
            if tilted and src.size[a] < sim.size[a]:
                errors.append((("sources", i, "size"), f"an oblique plane wave must span the Bloch-periodic axis {name} (size inf)"))
    if sim.is_complex:
        for i, mon in enumerate(sim.monitors):
            if isinstance(mon, (FieldProjectionAngleMonitor, ModeMonitor)):
                errors.append((("monitors", i, "type"), f"{mon.type} is not available with a Bloch phase (complex fields)"))
        for i, src in enumerate(sim.sources):
            if isinstance(src, ModeSource):
                errors.append((("sources", i, "type"), "ModeSource is not available with a Bloch phase (complex fields)"))
    return errors


def _mirrors(sim: Simulation, src: PointDipole, other: Any, axis: int) -> bool:
    """Whether ``other`` is ``src`` mirrored through the plane normal to ``axis``."""
    centre = list(src.center)
    centre[axis] = 2 * sim.center[axis] - centre[axis]
    tol = _tolerance(sim)
    return (
        isinstance(other, PointDipole)
        and other.model_dump(exclude={"center", "name"}) == src.model_dump(exclude={"center", "name"})
        and all(abs(p - q) <= tol for p, q in zip(other.center, centre))
    )


#: The checks that run once the domain and grid are sound, all reported together.
def check_mode_angles(sim: Simulation) -> list[tuple[tuple[str | int, ...], str]]:
    """A mode plane at an angle tilts along a tangential axis that has cells and no
    periodic wrap (its phase across the plane would not meet itself)."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    planes = [("sources", i, p) for i, p in enumerate(sim.sources) if isinstance(p, ModeSource)]
    planes += [("monitors", i, p) for i, p in enumerate(sim.monitors) if isinstance(p, ModeMonitor)]
    for kind, i, item in planes:
        if item.mode_spec.tilt is None:
            continue
        tangential = [a for a in range(3) if item.size[a] != 0]
        axis = tangential[item.mode_spec.tilt[0]]
        if sim.size[axis] == 0:
            errors.append(((kind, i, "mode_spec", "angle_phi"), f"tilts the guide along {AXES[axis]}, an axis of zero simulation size"))
        elif sim.boundary_spec[axis].is_periodic:
            errors.append(((kind, i, "mode_spec", "angle_theta"), f"tilts the guide along {AXES[axis]}, a periodic axis: the phase across the plane would not wrap"))
    return errors


CONCERNS = (check_boundaries, check_sources, check_monitors, check_symmetry, check_bloch, check_mode_angles)


def _points_along(grid: Grid, center: float, size: float, axis: int) -> int:
    """Number of grid nodes a monitor spans along one axis (at least 1)."""
    if not grid.active[axis] or size == 0:
        return 1
    nodes = grid.nodes(axis, half=False)
    return max(1, int(np.count_nonzero((nodes >= center - size / 2) & (nodes <= center + size / 2))) + 1)


def _value_at(model: Any, loc: tuple[str | int, ...]) -> Any:
    """The value a validation error points at, for its message."""
    for key in loc:
        model = model[key] if isinstance(key, int) else getattr(model, key)
    return model


def _raise(errors: list[tuple[tuple[str | int, ...], str]], model: Any) -> None:
    """Raise one pydantic ValidationError listing every (field path, reason)."""
    if errors:
        raise ValidationError.from_exception_data(
            type(model).__name__,
            [
                dict(type="value_error", loc=loc, input=_value_at(model, loc), ctx={"error": ValueError(msg)})
                for loc, msg in errors
            ],
        )


__all__ = ["SCHEMA_VERSION", "Simulation", "Structure", "max_cells"]
