"""Live progress of a batch: an overall bar, a compact grid of member states (one
square per member, its name and state on hover) and the failed members, each
selectable to read its reason. A text summary line outside Jupyter."""

from __future__ import annotations

import html
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .progress import _clock, widget_or_text

#: Square colour per member state.
COLOURS = {"QUEUED": "#d0d0d0", "RUNNING": "#4a90d9", "COMPLETED": "#3c9a4b", "FAILED": "#d64541", "CANCELLED": "#e0a030"}


@dataclass
class BatchView:
    """What a batch display shows, derived from ``GET /v1/batches/{id}``."""

    status: str = "RUNNING"
    fraction: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    members: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0

    @classmethod
    def from_status(cls, status: dict[str, Any], elapsed_s: float) -> "BatchView":
        return cls(status["status"], float(status["progress"]["fraction"]), dict(status["counts"]), list(status["members"]), elapsed_s)

    @property
    def failures(self) -> dict[str, str]:
        """Failed or cancelled members → the service's reason."""
        return {m["name"]: m["error"] or m["status"].lower() for m in self.members if m["status"] in ("FAILED", "CANCELLED")}

    def text(self) -> str:
        counts = "  ".join(f"{k.lower()} {n}" for k, n in self.counts.items() if n)
        return f"{self.status.lower():<10} {100 * self.fraction:5.1f}%  {counts}  elapsed {_clock(self.elapsed_s)}"

    def grid_html(self) -> str:
        """One coloured square per member, in submission order; hover names it."""
        cells = "".join(
            f"<span title='{html.escape(m['name'])}: {m['status'].lower()}{html.escape(' — ' + m['error']) if m.get('error') else ''}' "
            f"style='display:inline-block;width:11px;height:11px;margin:1px;border-radius:2px;background:{COLOURS[m['status']]}'></span>"
            for m in self.members
        )
        return f"<div style='max-width:420px;line-height:0'>{cells}</div>"


class TextBatchProgress:
    """One summary line per change (state counts), for terminals and logs."""

    def __init__(self, batch: Any, stream: Any = None) -> None:
        self.batch, self.stream, self.start, self.last = batch, stream or sys.stderr, time.monotonic(), None

    def update(self, status: dict[str, Any]) -> None:
        view = BatchView.from_status(status, time.monotonic() - self.start)
        key = (view.status, tuple(sorted(view.counts.items())))
        if key != self.last:
            self.last = key
            self.stream.write(f"batch {self.batch.id[:8]}: {view.text()}\n")
            for name, reason in view.failures.items() if view.status != "RUNNING" else ():
                self.stream.write(f"  {name}: {reason}\n")
            self.stream.flush()


class BatchProgress:
    """The Jupyter widget: overall bar, counts, the member grid, a cancel button and a
    list of failed members whose reason shows when one is selected."""

    def __init__(self, batch: Any) -> None:
        import ipywidgets as w

        self.batch, self.start = batch, time.monotonic()
        self.view = BatchView()
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info", layout=w.Layout(width="320px"))
        self.label = w.HTML()
        self.grid = w.HTML()
        self.failed = w.Select(options=[], rows=3, description="failed", layout=w.Layout(width="420px", display="none"))
        self.reason = w.HTML()
        self.failed.observe(lambda change: self._show_reason(change["new"]), names="value")
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="warning", layout=w.Layout(width="90px"))
        self.cancel_button.on_click(lambda _: self.batch.cancel())
        self.widget = w.VBox([w.HBox([self.bar, self.cancel_button]), self.label, self.grid, self.failed, self.reason])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _show_reason(self, name: str | None) -> None:
        reason = self.view.failures.get(name or "")
        self.reason.value = f"<code style='white-space: pre-wrap'>{html.escape(name)}: {html.escape(reason)}</code>" if name and reason else ""

    def update(self, status: dict[str, Any]) -> None:
        self.view = view = BatchView.from_status(status, time.monotonic() - self.start)
        self.bar.value = view.fraction
        ended = view.status != "RUNNING"
        self.bar.bar_style = {"COMPLETED": "success" if not view.failures else "warning", "FAILED": "danger", "CANCELLED": "warning"}.get(view.status, "info")
        self.label.value = f"<code style='white-space: pre'>{html.escape(view.text())}</code>"
        self.grid.value = view.grid_html()
        failures = list(view.failures)
        if failures != list(self.failed.options):
            self.failed.options = failures
            self.failed.layout.display = "" if failures else "none"
        self.cancel_button.disabled = ended
        if ended:
            self.cancel_button.layout.display = "none"


def make_batch_display(batch: Any) -> BatchProgress | TextBatchProgress:
    """The batch's progress: the widget in a Jupyter kernel, else text lines."""
    return widget_or_text(lambda: BatchProgress(batch), lambda: TextBatchProgress(batch))
