"""Live progress of a job: one ipywidgets box in Jupyter, a one-line text bar
elsewhere. Both render the same :class:`ProgressView`."""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STATES = ("queued", "running", "downloading", "done", "failed", "cancelled")


@dataclass
class ProgressView:
    """What a progress display shows, derived from the service's job status."""

    state: str = "queued"
    fraction: float = 0.0
    step: int = 0
    total_steps: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    mcells_per_s: float | None = None
    bytes_done: int = 0
    bytes_total: int = 0
    reason: str | None = None

    @classmethod
    def from_status(cls, status: dict[str, Any], elapsed_s: float, steps_per_s: float | None = None) -> "ProgressView":
        """The view of a job status. ``steps_per_s``: the time-stepping rate seen so far
        (None until measured); the ETA is the remaining steps at that rate — not the
        elapsed time scaled by the fraction, which counts queueing, mode solves and
        compilation as if every step cost them."""
        p = status.get("progress") or {}
        state = {"QUEUED": "queued", "RUNNING": "running", "COMPLETED": "running", "FAILED": "failed", "CANCELLED": "cancelled"}[status["status"]]
        fraction = float(p.get("fraction") or 0.0)
        step, total = p.get("step", 0), p.get("total_steps", 0)
        cps = p.get("cells_per_second")
        eta = (total - step) / steps_per_s if state == "running" and steps_per_s and step < total else None
        return cls(state=state, fraction=fraction, step=step, total_steps=total, elapsed_s=elapsed_s, eta_s=eta, mcells_per_s=cps / 1e6 if cps else None, reason=status.get("error"))

    def text(self) -> str:
        """One line: state, percentage, steps, elapsed, ETA, throughput or bytes."""
        parts = [f"{self.state:<11}"]
        if self.state == "downloading":
            total = max(self.bytes_total, 1)
            parts.append(f"{100 * self.bytes_done / total:5.1f}%  {self.bytes_done / 1e6:.1f}/{self.bytes_total / 1e6:.1f} MB")
        elif self.state in ("running", "done"):
            parts.append(f"{100 * self.fraction:5.1f}%  step {self.step}/{self.total_steps}")
        parts.append(f"elapsed {_clock(self.elapsed_s)}")
        if self.eta_s is not None:
            parts.append(f"ETA {_clock(self.eta_s)}")
        if self.mcells_per_s and self.state in ("running", "done"):
            parts.append(f"{self.mcells_per_s:.1f} Mcells/s")
        if self.reason and self.state in ("failed", "cancelled"):
            parts.append(f"— {self.reason}")
        return "  ".join(parts)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m:d}:{s:02d}"


class _Display:
    """Shared bookkeeping: subclasses only render."""

    def __init__(self, job: Any) -> None:
        self.job = job
        self.start = time.monotonic()
        self.view = ProgressView()
        #: (time, step) of this run's first report past its start step: the stepping
        #: rate is measured from there, after setup and compilation.
        self.stepping: tuple[float, int] | None = None

    def update(self, status: dict[str, Any]) -> None:
        now = time.monotonic()
        step = (status.get("progress") or {}).get("step") or 0
        if status["status"] != "RUNNING" or (self.stepping is not None and step < self.stepping[1]):
            self.stepping = None  # not running, or requeued from an earlier step: measure afresh
        elif self.stepping is None and step > 0:
            self.stepping = (now, step)
        rate = None
        if self.stepping is not None and step > self.stepping[1] and now > self.stepping[0]:
            rate = (step - self.stepping[1]) / (now - self.stepping[0])
        self.view = ProgressView.from_status(status, now - self.start, rate)
        self.render()

    def downloading(self, done: int, total: int) -> None:
        self.view.state, self.view.bytes_done, self.view.bytes_total = "downloading", done, total
        self.view.elapsed_s, self.view.eta_s = time.monotonic() - self.start, None
        self.render()

    def done(self) -> None:
        self.view.state, self.view.fraction, self.view.eta_s = "done", 1.0, None
        self.view.elapsed_s = time.monotonic() - self.start
        self.render(final=True)

    def fail(self, reason: str) -> None:
        if self.view.state not in ("failed", "cancelled"):
            self.view.state = "failed"
        self.view.reason = self.view.reason or reason
        self.render(final=True)

    def render(self, final: bool = False) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class TextProgress(_Display):
    """A single line rewritten in place (``\\r``) on a terminal or log."""

    def __init__(self, job: Any, stream: Any = None) -> None:
        super().__init__(job)
        self.stream = stream or sys.stderr
        self.width = 0

    def render(self, final: bool = False) -> None:
        bar_width = 24
        filled = int(bar_width * (self.view.bytes_done / max(self.view.bytes_total, 1) if self.view.state == "downloading" else self.view.fraction))
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}] {self.view.text()}"
        self.stream.write("\r" + line.ljust(self.width) + ("\n" if final else ""))
        self.stream.flush()
        self.width = len(line)


class JobProgress(_Display):
    """The Jupyter widget: state, a progress bar over time steps (then bytes), elapsed,
    ETA, throughput, a cancel button and, on failure, the reason. Updated in place."""

    def __init__(self, job: Any) -> None:
        import ipywidgets as w

        super().__init__(job)
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info", layout=w.Layout(width="320px"))
        self.label = w.HTML()
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="warning", layout=w.Layout(width="90px"))
        self.cancel_button.on_click(lambda _: self.job.cancel())
        self.widget = w.VBox([w.HBox([self.bar, self.cancel_button]), self.label])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def render(self, final: bool = False) -> None:
        v = self.view
        self.bar.value = v.bytes_done / max(v.bytes_total, 1) if v.state == "downloading" else v.fraction
        self.bar.bar_style = {"failed": "danger", "cancelled": "warning", "done": "success"}.get(v.state, "info")
        self.label.value = f"<code style='white-space: pre'>{html.escape(v.text())}</code>"
        self.cancel_button.disabled = v.state in ("done", "failed", "cancelled", "downloading")
        if final:  # nothing left to cancel
            self.cancel_button.layout.display = "none"


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def widget_or_text(widget: Callable[[], Any], text: Callable[[], Any]) -> Any:
    """``widget()`` in a Jupyter kernel (its ``.widget`` shown once, then updated in
    place), else ``text()``."""
    if in_notebook():
        try:
            from IPython.display import display

            progress = widget()
            display(progress.widget)
            return progress
        except ImportError:
            pass
    return text()


def make_display(job: Any) -> _Display:
    """The job's progress: the widget in a Jupyter kernel, else a text line."""
    return widget_or_text(lambda: JobProgress(job), lambda: TextProgress(job))
