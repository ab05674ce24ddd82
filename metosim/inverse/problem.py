"""An inverse-design problem as one JSON-serialisable model: the simulation, the
design region, the objective and the optimiser settings — the REST body of
``POST /v1/optimizations`` and the input of a local ``ms.inverse.optimize``."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from ..base import Finite, MetoModel, PositiveFinite
from ..grid import GridSpec
from ..kernels.design import axis_into_pml, design_windows
from ..monitor import ModeMonitor
from ..simulation import Simulation, _raise

#: Pixels of surroundings around a design measured in place: beyond any length scale
#: a design here is measured against.
IN_PLACE_RING = 40
from .design import MAX_DESIGN_PIXELS, DesignRegion
from .length_scale import measured_length_scales
from .objective import Objective


class Optimizer(MetoModel):
    """Adam on the density ρ (clipped to [0, 1] after each step) with β-continuation:
    the projection steepness starts at ``beta`` and doubles every ``beta_every``
    iterations up to ``beta_max``."""

    type: Literal["Adam"] = "Adam"
    steps: Annotated[int, Field(ge=1, le=10_000)] = 40
    learning_rate: PositiveFinite = 0.05
    beta: PositiveFinite = 4.0
    beta_max: PositiveFinite = 64.0
    beta_every: Annotated[int, Field(ge=1)] = 10
    #: Initial density everywhere in the region.
    rho0: Annotated[Finite, Field(ge=0.0, le=1.0)] = 0.5

    def beta_at(self, iteration: int) -> float:
        return float(min(self.beta * 2.0 ** (iteration // self.beta_every), max(self.beta, self.beta_max)))


def _boxes_overlap(a: tuple[tuple[float, ...], tuple[float, ...]], b: tuple[tuple[float, ...], tuple[float, ...]], active: tuple[bool, ...]) -> bool:
    return all(a[0][k] < b[1][k] and b[0][k] < a[1][k] for k in range(3) if active[k])


def _box(center: tuple[float, ...], size: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(c - s / 2 for c, s in zip(center, size)), tuple(c + s / 2 for c, s in zip(center, size))


class InverseProblem(MetoModel):
    """Find the permittivity of ``design`` inside ``simulation`` that optimises
    ``objective``. The simulation must not already hold a structure of the design's
    name; its ``run_time`` is stepped in full (no shutoff) at every evaluation."""

    type: Literal["InverseProblem"] = "InverseProblem"
    simulation: Simulation
    design: DesignRegion
    objective: Objective
    optimizer: Optimizer = Optimizer()

    @model_validator(mode="after")
    def _check(self) -> "InverseProblem":
        sim, design = self.simulation, self.design
        active = self.active
        errors: list[tuple[tuple[str | int, ...], str]] = []
        box = design.geometry.bounds()
        lo, hi = sim.bounds
        tol = 1e-9 * max(max(sim.size), 1.0)
        unsized = [k for k in range(3) if active[k] and not (math.isfinite(design.geometry.size[k]) and design.geometry.size[k] > 0)]
        if unsized:
            errors.append((("design", "geometry", "size"), f"the design region needs a finite size > 0 along {', '.join('xyz'[k] for k in unsized)}"))
        elif any(active[k] and (box[0][k] < lo[k] - tol or box[1][k] > hi[k] + tol) for k in range(3)):
            errors.append((("design", "geometry", "center"), f"the design region {box[0]}–{box[1]} reaches outside the simulation domain {lo}–{hi}"))
        if not errors and math.prod(self.shape) > MAX_DESIGN_PIXELS:
            errors.append((("design", "pixel_size"), f"{math.prod(self.shape):,} design pixels exceed {MAX_DESIGN_PIXELS:,}: use larger pixels"))
        if not errors:
            for i, src in enumerate(sim.sources):
                if _boxes_overlap(box, _box(src.center, src.size), active):
                    errors.append((("design", "geometry"), f"the design region overlaps sources[{i}]: a source must sit outside it"))
            for i, mon in enumerate(sim.monitors):
                if isinstance(mon, ModeMonitor) and _boxes_overlap(box, _box(mon.center, mon.size), active):
                    errors.append((("design", "geometry"), f"the design region overlaps mode monitor monitors[{i}] ({mon.name})"))
        if not errors:
            errors += self._design_off_the_pml()
        if any(s.name == design.name for s in sim.structures):
            errors.append((("design", "name"), f"the simulation already has a structure named {design.name!r}"))
        if any(s.medium.type == "CustomMedium" for s in sim.structures):
            errors.append((("simulation", "structures"), "the simulation may hold no CustomMedium structure besides the design"))
        errors += [(("objective", *loc), msg) for loc, msg in self.objective.errors(sim)]
        _raise(errors, self)
        return self

    def _design_off_the_pml(self) -> list[tuple[tuple[str | int, ...], str]]:
        """The differentiable solve holds no design in the CPML or on the boundary: refuse
        it here (a 422 naming design.geometry) rather than at iteration 0."""
        sim = self.simulation_with(np.full(self.shape, self.design.eps_max))  # the grid every design gets
        grid = sim.grid
        for window in (m.window for m in design_windows(grid, self.design.geometry.bounds(), self.shape).values()):
            a = axis_into_pml(window, grid.num_cells, sim.pml_layers, grid.active)
            if a is not None:
                return [(("design", "geometry"), f"the design region reaches into the PML or onto the boundary along {'xyz'[a]}: keep it inside the PML's inner edge")]
        return []

    @property
    def active(self) -> tuple[bool, bool, bool]:
        """Axes along which the simulation has extent."""
        return tuple(s > 0 for s in self.simulation.size)  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Design pixels along x, y, z."""
        return self.design.shape(self.active)

    def initial_density(self) -> np.ndarray:
        return np.full(self.shape, self.optimizer.rho0)

    @property
    def surround(self) -> np.ndarray | None:
        """What the design's filter sees beyond the region (``DesignRegion.surround``)."""
        return self.design.surroundings(self.simulation.structures, self.simulation.medium, self.active)

    def length_scales(self, design: Any, in_place: bool = False) -> tuple[float, float]:
        """(minimum solid width, minimum void spacing) in µm of the binary ``design``
        (pixels, solid above ½): alone, or ``in_place`` — inside a ring of the
        structures around the region, as in the device, so that a feature touching the
        region's edge ends there (the photonics-opt-testbed's scorer measures a design
        so)."""
        solid = np.asarray(design) > 0.5
        if in_place:
            ring = self.design.surroundings(self.simulation.structures, self.simulation.medium, self.active, width=IN_PLACE_RING)
            ring[tuple(slice(IN_PLACE_RING, IN_PLACE_RING + n) if on else slice(None) for n, on in zip(solid.shape, self.active))] = solid
            solid = ring
        return measured_length_scales(solid, min(d for d in self.design.steps(self.active) if d))

    def project(self, rho: Any, beta: float) -> np.ndarray:
        """ρ → ρ̂ per pixel (NumPy); ``beta = inf`` thresholds at η."""
        return np.asarray(self.design.project(np.asarray(rho, dtype=float), beta, self.active, surround=self.surround))

    def permittivity(self, rho: Any, beta: float) -> np.ndarray:
        """ρ → ε per pixel (NumPy); ``beta = inf`` thresholds at η."""
        return np.asarray(self.design.permittivity(np.asarray(rho, dtype=float), beta, self.active, surround=self.surround))

    def simulation_with(self, eps: Any) -> Simulation:
        """The simulation with the design region filled with pixel permittivity
        ``eps``, on the grid every design gets: an auto grid is pinned to the cell size
        it gives with ``eps_max`` in the region, whatever ``eps`` holds."""
        sim = self.simulation
        grid_spec = sim.grid_spec
        if grid_spec.kind == "auto":
            grid_spec = GridSpec.uniform(grid_spec.cell_size(max(sim.eps_max, self.design.eps_max)))
        return sim.updated_copy(structures=(*sim.structures, self.design.structure(eps)), grid_spec=grid_spec)
