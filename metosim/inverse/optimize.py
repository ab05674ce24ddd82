"""Gradients and the optimisation loop.

``Evaluator(problem)`` sets the differentiable solve up once and gives the objective
and its exact gradient with respect to the density ρ; ``adam_step`` is one iteration
(the service runs the very same function as one Ray task per iteration);
``optimize`` loops it locally with a live plot.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .design import binarisation
from .problem import InverseProblem


class OptimizationFailed(RuntimeError):
    """The optimisation stopped: the reason says at which iteration and why."""


class Evaluator:
    """The objective of ``problem`` and its gradient with respect to ρ.

    ``objective``: any JAX function of the monitor outputs returning a scalar *loss*
    to minimise (local runs only); by default ``problem.objective.loss``.
    ``segment_steps`` / ``checkpoint`` / ``reversal``: see :func:`metosim.kernels.gradient.differentiable_solve`."""

    def __init__(self, problem: InverseProblem, objective: Callable[[dict[str, Any]], Any] | None = None, segment_steps: int | None = None, checkpoint: bool = True, reversal: bool = True) -> None:
        import jax
        import jax.numpy as jnp

        from ..kernels.gradient import differentiable_solve

        self.problem = problem
        sim = problem.simulation_with(np.full(problem.shape, problem.design.eps_min))
        loss_of = objective or (lambda outputs: problem.objective.loss(outputs, jnp))
        design, active, surround = problem.design, problem.active, problem.surround
        with self._context():
            self.solve = differentiable_solve(sim, design.name, segment_steps, checkpoint, reversal)

        def loss(rho: Any, beta: Any, arrays: Any) -> tuple[Any, dict[str, Any]]:
            # One design, or the robust triple (dilated, nominal, eroded): the worst counts.
            runs = [self.solve.fn(design.permittivity(rho, beta, active, jnp, eta, surround), arrays) for eta in design.etas]
            losses = [loss_of(outputs) for outputs in runs]
            total = losses[0] if len(losses) == 1 else jnp.max(jnp.stack(losses))
            if design.length_penalty:
                total = total + design.length_penalty * design.length_violation(rho, beta, active, jnp, surround)
            return total, runs[len(runs) // 2]

        self._value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
        self._loss = jax.jit(loss)

    def _context(self) -> Any:
        from ..kernels.solver import precision_context

        return precision_context(self.problem.simulation.precision)

    def value_and_grad(self, rho: np.ndarray, beta: float) -> tuple[float, np.ndarray, dict[str, Any]]:
        """(loss, ∂loss/∂ρ, monitor outputs) at density ``rho`` and projection ``beta``."""
        rho = finite_density(rho, "rho")
        with self._context():
            (loss, outputs), grad = self._value_and_grad(rho, beta, self.solve.arrays)
            return float(loss), np.asarray(grad), _to_numpy(outputs)

    def loss(self, rho: np.ndarray, beta: float) -> tuple[float, dict[str, Any]]:
        """The loss and outputs alone (a forward run through the same function)."""
        rho = finite_density(rho, "rho")
        with self._context():
            loss, outputs = self._loss(rho, beta, self.solve.arrays)
            return float(loss), _to_numpy(outputs)


def finite_density(rho: Any, name: str) -> np.ndarray:
    """``rho`` as an array, or a ValueError naming ``name`` and the first non-finite
    pixel: a NaN density would otherwise give a NaN loss and gradient, silently."""
    rho = np.asarray(rho)
    bad = np.argwhere(~np.isfinite(rho))
    if bad.size:
        raise ValueError(f"{name} has {len(bad)} non-finite pixel(s) (NaN or inf), the first at index {tuple(int(i) for i in bad[0])}")
    return rho


def _to_numpy(tree: Any) -> Any:
    import jax

    return jax.tree_util.tree_map(np.asarray, tree)


# ---------------------------------------------------------------- optimiser state


@dataclass
class OptimizerState:
    """What an iteration needs to continue: the density, Adam's moments and the
    iteration number. Serialises to a checkpoint (``to_bytes``/``from_bytes``)."""

    iteration: int
    rho: np.ndarray
    adam: Any

    @classmethod
    def start(cls, problem: InverseProblem, rho0: np.ndarray | None = None) -> "OptimizerState":
        rho = problem.initial_density() if rho0 is None else np.clip(finite_density(np.asarray(rho0, dtype=float), "rho0").reshape(problem.shape), 0.0, 1.0)
        return cls(0, rho, _adam(problem).init(rho))

    def to_bytes(self) -> bytes:
        import jax

        leaves = jax.tree_util.tree_leaves(self.adam)
        buffer = io.BytesIO()
        np.savez(buffer, iteration=self.iteration, rho=self.rho, **{f"adam_{k}": np.asarray(x) for k, x in enumerate(leaves)})
        return buffer.getvalue()

    @staticmethod
    def density(data: bytes) -> tuple[int, np.ndarray]:
        """(iteration, ρ) of a checkpoint, without the optimiser's moments (and without JAX)."""
        with np.load(io.BytesIO(data)) as npz:
            return int(npz["iteration"]), npz["rho"]

    @classmethod
    def from_bytes(cls, data: bytes, problem: InverseProblem) -> "OptimizerState":
        import jax

        with np.load(io.BytesIO(data)) as npz:
            rho = npz["rho"]
            treedef = jax.tree_util.tree_structure(_adam(problem).init(rho))
            leaves = [npz[f"adam_{k}"] for k in range(treedef.num_leaves)]
            return cls(int(npz["iteration"]), rho, jax.tree_util.tree_unflatten(treedef, leaves))


def _adam(problem: InverseProblem) -> Any:
    import optax

    return optax.adam(problem.optimizer.learning_rate)


def adam_step(evaluator: Evaluator, state: OptimizerState) -> tuple[OptimizerState, dict[str, Any]]:
    """One iteration: objective and gradient at ``state.rho``, then an Adam update of
    ρ clipped to [0, 1]. Returns the next state and this iteration's record
    (iteration, objective as stated, β, binarisation, seconds). A gradient or value
    that is not finite raises :class:`OptimizationFailed`, never a silent design."""
    import optax

    problem = evaluator.problem
    beta = problem.optimizer.beta_at(state.iteration)
    start = time.perf_counter()
    loss, grad, _ = evaluator.value_and_grad(state.rho, beta)
    if not np.isfinite(loss) or not np.all(np.isfinite(grad)):
        raise OptimizationFailed(f"iteration {state.iteration}: the {'objective' if not np.isfinite(loss) else 'gradient'} is not finite (NaN or inf)")
    updates, adam = _adam(problem).update(grad, state.adam, state.rho)
    rho = np.clip(np.asarray(optax.apply_updates(state.rho, updates)), 0.0, 1.0)
    record = {
        "iteration": state.iteration,
        "objective": -loss if problem.objective.goal == "maximize" else loss,
        "beta": beta,
        "binarisation": binarisation(problem.project(state.rho, beta)),
        "seconds": time.perf_counter() - start,
    }
    return OptimizerState(state.iteration + 1, rho, adam), record


# ---------------------------------------------------------------- results


@dataclass
class OptimizationResult:
    """An optimisation's history and final design.

    ``rho``: the final density; ``beta``: the projection it was last evaluated with;
    ``history``: one record per iteration; ``final_objective``: the objective of the
    final design (projected with ``beta``); ``data``: the final design's forward run
    as ``SimulationData`` when the service ran it."""

    problem: InverseProblem
    rho: np.ndarray
    beta: float
    history: list[dict[str, Any]] = field(default_factory=list)
    final_objective: float | None = None
    data: Any = None

    @property
    def objective(self) -> np.ndarray:
        return np.array([r["objective"] for r in self.history])

    def rho_hat(self, beta: float | None = None) -> np.ndarray:
        """The projected density (``beta=inf``: thresholded)."""
        return self.problem.project(self.rho, self.beta if beta is None else beta)

    def permittivity(self, binarise: bool = False) -> np.ndarray:
        """Pixel permittivity of the final design (thresholded at η with ``binarise``)."""
        return self.problem.permittivity(self.rho, np.inf if binarise else self.beta)

    @property
    def binarisation(self) -> float:
        return binarisation(self.rho_hat())

    @property
    def length_scales(self) -> tuple[float, float]:
        """(minimum solid width, minimum void spacing) in µm of the thresholded final
        design (see :func:`~metosim.inverse.length_scale.measured_length_scales`); in
        place, among the structures around it, when its filter sees them
        (``DesignRegion.surround="structures"``)."""
        return self.problem.length_scales(self.rho_hat(np.inf), in_place=self.problem.design.surround == "structures")

    def simulation(self, binarise: bool = True) -> Any:
        """The simulation with the final design in place, for a plain ``ms.solve``."""
        return self.problem.simulation_with(self.permittivity(binarise))

    def plot(self, axes: Any = None) -> Any:
        """Objective against iteration and the final design, side by side."""
        from ..plot import optimization_figure

        return optimization_figure(self.history, self.rho_hat(), self.problem, axes)

    def _repr_html_(self) -> str:
        last = f"{self.final_objective:.4g}" if self.final_objective is not None else "–"
        solid, void = self.length_scales
        return (
            f"<b>OptimizationResult</b>: {len(self.history)} iterations, final objective {last} "
            f"({self.problem.objective.goal}), binarisation {100 * self.binarisation:.1f}%, "
            f"minimum solid {1e3 * solid:.0f} nm / void {1e3 * void:.0f} nm, "
            f"design {'×'.join(map(str, self.problem.shape))} pixels, β = {self.beta:g}"
        )


def optimize(
    problem: InverseProblem,
    steps: int | None = None,
    objective: Callable[[dict[str, Any]], Any] | None = None,
    rho0: np.ndarray | None = None,
    show: bool = True,
    callback: Callable[[dict[str, Any], np.ndarray], None] | None = None,
) -> OptimizationResult:
    """Optimise ``problem`` locally: ``steps`` Adam iterations (default
    ``problem.optimizer.steps``) with β-continuation, then one forward evaluation of
    the final design. ``objective``: a JAX loss of the outputs replacing the
    problem's (minimised). ``show``: a live plot in Jupyter (a line per iteration
    elsewhere). ``callback(record, rho)`` after each iteration."""
    from ..widgets.optimization import make_optimization_display

    steps = problem.optimizer.steps if steps is None else steps
    evaluator = Evaluator(problem, objective)
    state = OptimizerState.start(problem, rho0)
    display = make_optimization_display(problem, steps) if show else None
    history: list[dict[str, Any]] = []
    for _ in range(steps):
        state, record = adam_step(evaluator, state)
        history.append(record)
        if display is not None:
            display.update(record, problem.project(state.rho, record["beta"]))
        if callback is not None:
            callback(record, state.rho)
    beta = problem.optimizer.beta_at(max(state.iteration - 1, 0))
    loss, _ = evaluator.loss(state.rho, beta)
    final = -loss if problem.objective.goal == "maximize" else loss
    if display is not None:
        display.finish(final)
    return OptimizationResult(problem, state.rho, beta, history, final)
