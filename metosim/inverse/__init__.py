"""Inverse design: design regions with filter and projection, objectives as data,
exact gradients through the engine's own time stepping, and an Adam optimiser.

    problem = ms.inverse.InverseProblem(simulation=sim, design=region, objective=goal)
    result = ms.inverse.optimize(problem)          # live plot in Jupyter
    ms.solve(result.simulation(binarise=True))     # re-check the binarised design

On the service: ``client.optimize(problem)`` (``POST /v1/optimizations``).

Shape gradients (a box's centre and size, a cylinder's radius, a polygon's vertices):
``ms.inverse.shape_solve(sim, ["ring"], pixel_size=0.02)``.
"""

from .design import DesignRegion, apply_filter, binarisation, filter_kernel, tanh_projection
from .length_scale import measured_length_scales
from .objective import FluxTerm, IntensityTerm, ModeTerm, Objective
from .optimize import Evaluator, OptimizationFailed, OptimizationResult, OptimizerState, adam_step, optimize
from .problem import InverseProblem, Optimizer
from .shapes import ShapeSolve, shape_solve

__all__ = [
    "DesignRegion",
    "Evaluator",
    "FluxTerm",
    "IntensityTerm",
    "InverseProblem",
    "ModeTerm",
    "Objective",
    "OptimizationFailed",
    "OptimizationResult",
    "Optimizer",
    "ShapeSolve",
    "OptimizerState",
    "adam_step",
    "apply_filter",
    "binarisation",
    "filter_kernel",
    "measured_length_scales",
    "optimize",
    "shape_solve",
    "tanh_projection",
]
