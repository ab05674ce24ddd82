"""An optimisation on the service, followed from the notebook over HTTP
(``/v1/optimizations``): the same live plot as a local run, and the same
:class:`OptimizationResult` at the end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..jobs import Job
from ..session import Handle, follow
from .optimize import OptimizationFailed, OptimizationResult
from .problem import InverseProblem


class Optimization(Handle):
    """A submitted optimisation (``client.optimize(problem, wait=False)``); ``status()``
    holds the iterations done, the objective history, the problem and the final run."""

    collection = "/v1/optimizations"

    def design(self) -> dict[str, Any]:
        """The latest design: ``rho``, ``rho_hat``, ``eps`` as arrays, ``beta``, ``iterations``."""
        body = self.client.request("GET", f"{self.path}/design").json()
        return {**body, **{k: np.asarray(body[k]) for k in ("rho", "rho_hat", "eps")}}

    def updates(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Summaries (status, iterations done) after each iteration, until the end."""
        return follow(self.client, self.path, f"optimisation {self.id}", 0.5, timeout)

    def wait(self, progress: bool = True, timeout: float | None = None) -> OptimizationResult:
        """Follow the optimisation to its end (a live plot with ``progress``) and
        return its result; raise :class:`OptimizationFailed` with the service's reason
        unless it COMPLETED."""
        from ..widgets.optimization import make_optimization_display

        state = self.status()
        problem = InverseProblem.model_validate_json(json.dumps(state["problem"]))
        display = make_optimization_display(problem, state["steps"]) if progress else None
        shown = 0
        for summary in self.updates(timeout):
            if display is not None and summary["progress"]["iterations"] > shown:
                history, rho_hat = self.status()["history"], self.design()["rho_hat"]
                for record in history[shown:]:
                    display.update(record, rho_hat)
                shown = len(history)
        result = self.result()
        if display is not None:
            display.finish(result.final_objective)
        return result

    def result(self) -> OptimizationResult:
        """The final design, its history, and its forward run downloaded and verified."""
        state = self.status()
        if state["status"] != "COMPLETED":
            raise OptimizationFailed(f"optimisation {self.id} {state['status']}: {state.get('error')}")
        problem = InverseProblem.model_validate_json(json.dumps(state["problem"]))
        design = self.design()
        final = state["final_run"]
        data = Job(self.client, final["id"]).result(final)
        objective = float(problem.objective(problem.objective.outputs(data)))
        return OptimizationResult(problem, design["rho"], design["beta"], state["history"], objective, data)
