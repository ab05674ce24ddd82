"""Shape gradients: monitor outputs as a JAX function of structures' geometry —
a ``Box``'s centre and size, a ``Cylinder``'s or ``Sphere``'s centre and radius, a
``PolySlab``'s vertices (µm) — as Tidy3D's autograd offers, through the engine's own
exact adjoint.

    shapes = ms.inverse.shape_solve(sim, ["ring", "hole"], pixel_size=0.02)
    p = shapes.parameters                      # {"ring": {"center": ..., "radius": ...}, ...}
    loss, grad = shapes.value_and_grad(lambda out: -out["through"][0], p)

The named structures are drawn as fill fractions (:mod:`metosim.kernels.shapes`) on
a pixel grid over a box around them; the other structures there are drawn into the
same pixels in their list order (those under a shape show where it does not reach,
those listed after it cover it), and the pixels enter the differentiable solve as
one ``CustomMedium``. The pixels are the forward model: ``shapes.simulation(p)`` is
the plain simulation that ``ms.solve`` runs to the same outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry import Box
from ..grid import GridSpec
from ..medium import CustomMedium, Medium
from ..simulation import Simulation, Structure
from ..kernels.gradient import DifferentiableSolve, differentiable_solve
from ..kernels.shapes import pixel_centres, shape_fill, shape_parameters
from ..kernels.solver import EngineInputError, precision_context
from .problem import _boxes_overlap

Parameters = dict[str, dict[str, Any]]

#: Sub-samples per active axis with which a fixed structure's share of a pixel is counted.
SUBSAMPLES = 4


@dataclass(frozen=True)
class ShapeSolve:
    """A differentiable solve over the geometry of named structures: ``outputs =
    shapes(params)``; see the module doc. ``layers`` lists, in paint order, each
    structure over the region as (name or None, ε, fixed fill or None for a shape)."""

    solve: DifferentiableSolve
    simulation_without_shapes: Simulation
    region: Box
    #: The starting parameters, per structure name: NumPy arrays (µm).
    parameters: Parameters
    background: np.ndarray
    layers: tuple[tuple[str | None, float, np.ndarray | None], ...]
    geometries: dict[str, Any]
    centres: list[np.ndarray]
    steps: np.ndarray
    active: tuple[bool, bool, bool]

    def permittivity(self, params: Parameters) -> Any:
        """Pixel permittivity (nx, ny, nz) with the shapes at ``params`` (jax.numpy)."""
        import jax.numpy as jnp

        eps = jnp.asarray(self.background)
        for name, value, fixed in self.layers:
            share = fixed if name is None else shape_fill(self.geometries[name], params[name], self.centres, self.steps, self.active)
            eps = eps + share * (value - eps)
        return eps

    def __call__(self, params: Parameters) -> dict[str, Any]:
        """Monitor outputs (as :func:`metosim.kernels.gradient.differentiable_solve`) with
        the shapes at ``params``; differentiable. Call under the simulation's precision
        (:meth:`value_and_grad` does)."""
        return self.solve(self.permittivity(params))

    def value_and_grad(self, objective: Callable[[dict[str, Any]], Any], params: Parameters | None = None) -> tuple[float, Parameters]:
        """``objective(outputs)`` (a real scalar, JAX) and its gradient with respect to
        every parameter (µm⁻¹ units of the objective), at ``params`` (default: the
        starting ones), under the simulation's precision."""
        import jax

        with precision_context(self.simulation_without_shapes.precision):
            value, grad = jax.value_and_grad(lambda p: objective(self(p)))(params or self.parameters)
        return float(value), jax.tree.map(np.asarray, grad)

    def simulation(self, params: Parameters | None = None) -> Simulation:
        """The plain simulation these parameters give: the region's pixels as a
        ``CustomMedium`` structure (named "shapes"), for ``ms.solve``."""
        with precision_context(self.simulation_without_shapes.precision):
            eps = np.asarray(self.permittivity(params or self.parameters), dtype=float)
        pixels = Structure(name="shapes", geometry=self.region, medium=CustomMedium.from_array(eps))
        return self.simulation_without_shapes.updated_copy(structures=(*self.simulation_without_shapes.structures, pixels))


def _region(sim: Simulation, shaped: list[Structure], margin: float, active: tuple[bool, bool, bool]) -> Box:
    """The shapes' bounding box grown by ``margin`` (µm) along the active axes."""
    lo = np.min([s.geometry.bounds()[0] for s in shaped], axis=0)
    hi = np.max([s.geometry.bounds()[1] for s in shaped], axis=0)
    for a in range(3):
        if active[a] and not (math.isfinite(lo[a]) and math.isfinite(hi[a])):
            name = next(s.name for s in shaped if not all(map(math.isfinite, (s.geometry.bounds()[0][a], s.geometry.bounds()[1][a]))))
            raise EngineInputError(f"structure {name!r} reaches to infinity along {'xyz'[a]}: a shape must be finite along the simulation's axes (give `region` and a finite size)")
    center = [(lo[a] + hi[a]) / 2 if active[a] else sim.center[a] for a in range(3)]
    size = [hi[a] - lo[a] + 2 * margin if active[a] else math.inf for a in range(3)]
    return Box(center=center, size=size)


def _inside(outer: Box, geometry: Any, active: tuple[bool, bool, bool]) -> bool:
    (lo, hi), (glo, ghi) = outer.bounds(), geometry.bounds()
    return all(lo[a] <= glo[a] and ghi[a] <= hi[a] for a in range(3) if active[a])


def _permittivity_of(medium: Any, where: str) -> float:
    if not isinstance(medium, Medium) or medium.conductivity:
        raise EngineInputError(f"{where} has a {type(medium).__name__}{' with conductivity' if isinstance(medium, Medium) else ''}: a shape gradient takes lossless, non-dispersive media (Medium with permittivity only) over its region")
    return float(medium.permittivity)


def _subsampled_share(geometry: Any, centres: list[np.ndarray], steps: np.ndarray, active: tuple[bool, bool, bool]) -> np.ndarray:
    """Share of each pixel inside a fixed ``geometry``, counted on SUBSAMPLES points per active axis."""
    offsets = (np.arange(SUBSAMPLES) + 0.5) / SUBSAMPLES - 0.5
    axes = [(c[:, None] + offsets[None, :] * h).ravel() if on else c for c, h, on in zip(centres, steps, active)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    inside = geometry.inside(x, y, z).astype(float)
    shape = []
    for c, on in zip(centres, active):
        shape += [c.size, SUBSAMPLES] if on else [c.size, 1]
    return inside.reshape(shape).mean(axis=(1, 3, 5))


def shape_solve(sim: Simulation, structures: Sequence[str], pixel_size: float, region: Box | None = None, margin: float | None = None, segment_steps: int | None = None) -> ShapeSolve:
    """Set up a differentiable solve of ``sim`` over the geometry of the named
    ``structures`` (Box, Sphere, Cylinder or PolySlab of lossless ``Medium``).

    ``pixel_size`` (µm): the fill-fraction grid (about the simulation's cell size or
    finer). ``region``: the box the pixels fill; default the shapes' bounding box grown
    by ``margin`` (default 4.5 pixels: the bounding faces then sit mid-pixel, where a box's fill is smooth) — a shape must stay inside it for every parameter
    value you evaluate (a surface moved past the region's edge is cut off). The region
    must stay off the PML and the boundary."""
    names = list(structures)
    by_name = {s.name: s for s in sim.structures if s.name}
    missing = [n for n in names if n not in by_name]
    if missing or not names:
        raise EngineInputError(f"no structure named {missing or names!r} to take a shape gradient of (structures named: {sorted(by_name)})")
    if len(set(names)) < len(names):
        raise EngineInputError(f"structure names repeat in {names!r}")
    active: tuple[bool, bool, bool] = tuple(s > 0 for s in sim.size)  # type: ignore[assignment]
    shaped = [by_name[n] for n in names]
    for s in shaped:
        shape_parameters(s.geometry)  # refuses a geometry with no shape gradient
    region = region or _region(sim, shaped, 4.5 * pixel_size if margin is None else margin, active)
    for s in shaped:
        if not _inside(region, s.geometry, active):
            raise EngineInputError(f"structure {s.name!r} reaches outside the region {region.bounds()}: a shape must lie inside it")
    shape: tuple[int, int, int] = tuple(max(1, round(region.size[a] / pixel_size)) if active[a] else 1 for a in range(3))  # type: ignore[assignment]
    bounds = region.bounds()
    # Along an inactive axis the one pixel sits on the simulation's plane.
    bounds = (tuple(bounds[0][a] if active[a] else sim.center[a] for a in range(3)), tuple(bounds[1][a] if active[a] else sim.center[a] for a in range(3)))
    centres, steps = pixel_centres(bounds, shape)
    background = np.full(shape, _permittivity_of(sim.medium, "the simulation's medium"))
    layers = []
    for k, s in enumerate(sim.structures):
        if not _boxes_overlap(region.bounds(), s.geometry.bounds(), active):
            continue
        value = _permittivity_of(s.medium, f"structure {s.name or k!r}")
        layers.append((s.name, value, None) if s.name in names else (None, value, _subsampled_share(s.geometry, centres, steps, active)))
    grid_spec = sim.grid_spec
    if grid_spec.kind == "auto":
        grid_spec = GridSpec.uniform(grid_spec.cell_size(sim.eps_max))
    rest = sim.updated_copy(structures=tuple(s for s in sim.structures if s.name not in names), grid_spec=grid_spec)
    with precision_context(sim.precision):
        probe = Structure(name="shapes", geometry=region, medium=CustomMedium.from_array(np.ones(shape)))
        solve = differentiable_solve(rest.updated_copy(structures=(*rest.structures, probe)), "shapes", segment_steps)
    return ShapeSolve(solve, rest, region, {n: shape_parameters(by_name[n].geometry) for n in names}, background, tuple(layers), {n: by_name[n].geometry for n in names}, centres, steps, active)
