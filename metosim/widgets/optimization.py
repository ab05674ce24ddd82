"""Live view of an optimisation: the objective against iteration beside the current
design, redrawn after each iteration (ipywidgets in Jupyter), or one text line per
iteration elsewhere."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .progress import widget_or_text


def record_line(record: dict[str, Any], steps: int) -> str:
    return (
        f"iteration {record['iteration'] + 1}/{steps}  objective {record['objective']:.5g}  "
        f"β {record['beta']:g}  binarised {100 * record['binarisation']:.0f}%  {record.get('seconds', 0.0):.1f} s"
    )


class OptimizationWidget:
    """Label + figure (objective curve, design) in an ipywidgets box."""

    def __init__(self, problem: Any, steps: int) -> None:
        import ipywidgets as w

        self.problem, self.steps, self.history = problem, steps, []
        self.label = w.HTML("starting…")
        self.figure = w.Output()
        self.widget = w.VBox([self.label, self.figure])

    def update(self, record: dict[str, Any], rho_hat: np.ndarray) -> None:
        import matplotlib.pyplot as plt

        from ..plot import optimization_figure

        self.history.append(record)
        self.label.value = record_line(record, self.steps)
        with self.figure:
            self.figure.clear_output(wait=True)
            axes = optimization_figure(self.history, rho_hat, self.problem)
            plt.show(axes[0].figure)

    def finish(self, final: float | None) -> None:
        if final is not None:
            self.label.value += f" — final objective {final:.5g}"


class OptimizationText:
    """One line per iteration on stderr."""

    def __init__(self, problem: Any, steps: int) -> None:
        self.steps = steps

    def update(self, record: dict[str, Any], rho_hat: np.ndarray) -> None:
        print(record_line(record, self.steps), file=sys.stderr, flush=True)

    def finish(self, final: float | None) -> None:
        if final is not None:
            print(f"final objective {final:.5g}", file=sys.stderr, flush=True)


def make_optimization_display(problem: Any, steps: int) -> Any:
    return widget_or_text(lambda: OptimizationWidget(problem, steps), lambda: OptimizationText(problem, steps))
