"""``FieldSlicer``: browse a field monitor plane by plane.

The state (which monitor, component, frequency or time, quantity, slice axis and
position) is a plain :class:`SlicerState`; the widget only maps it to controls. On
data opened with ``SimulationData.open`` (local or remote) each redraw reads just
the chunks of the plane shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import xarray as xr

from ..data import SimulationData
from ..plot import QUANTITIES as PLOT_QUANTITIES, spectral_label

QUANTITIES = tuple(PLOT_QUANTITIES)


def field_monitors(data: SimulationData) -> list[str]:
    """Monitors with field components over a plane or volume (frequency or time
    domain): not flux or mode monitors, nor point probes."""
    return [
        name
        for name, d in data.items()
        if isinstance(d, xr.Dataset) and {"x", "y", "z"} <= set(d.dims) and sum(d.sizes[a] > 1 for a in "xyz") >= 2
    ]


@dataclass(frozen=True)
class SlicerState:
    data: SimulationData
    monitor: str
    component: str
    axis: str
    index: int = 0
    spectral_index: int = 0
    quantity: str = "real"

    @classmethod
    def initial(cls, data: SimulationData, monitor: str | None = None) -> "SlicerState":
        names = field_monitors(data)
        if not names:
            raise ValueError("this result has no field monitor to slice")
        monitor = monitor or names[0]
        if monitor not in names:
            raise ValueError(f"{monitor!r} is not a field monitor; choose one of {names}")
        ds = data[monitor]
        flat = [a for a in "xyz" if ds.sizes[a] == 1]
        axis = flat[0] if flat else "z"  # a plane monitor is sliced across its flat axis
        index = ds.sizes[axis] // 2
        return cls(data=data, monitor=monitor, component=next(iter(ds.data_vars)), axis=axis, index=index)

    @property
    def dataset(self) -> xr.Dataset:
        return self.data[self.monitor]  # type: ignore[return-value]

    @property
    def components(self) -> list[str]:
        return [str(v) for v in self.dataset.data_vars]

    @property
    def spectral_dim(self) -> str:
        return "f" if "f" in self.dataset.dims else "t"

    @property
    def spectral_values(self) -> np.ndarray:
        return np.asarray(self.dataset[self.spectral_dim])

    @property
    def positions(self) -> np.ndarray:
        return np.asarray(self.dataset[self.axis])

    def select(self, **changes: Any) -> "SlicerState":
        """A new state; a new monitor resets the rest, indices are clamped."""
        if "monitor" in changes and changes["monitor"] != self.monitor:
            return SlicerState.initial(self.data, changes["monitor"])
        state = replace(self, **changes)
        if state.component not in state.components:
            raise ValueError(f"monitor {state.monitor!r} has no component {state.component!r}")
        if state.quantity not in QUANTITIES:
            raise ValueError(f"quantity must be one of {QUANTITIES}")
        if state.axis not in "xyz":
            raise ValueError("axis must be x, y or z")
        index = int(np.clip(state.index, 0, state.dataset.sizes[state.axis] - 1))
        spectral = int(np.clip(state.spectral_index, 0, state.spectral_values.size - 1))
        return replace(state, index=index, spectral_index=spectral)

    def plane(self) -> xr.DataArray:
        """The selected complex (or real) plane; reads only its chunks."""
        return self.dataset[self.component].isel({self.axis: self.index, self.spectral_dim: self.spectral_index})

    def plot(self, ax: Any = None) -> Any:
        """Draw the plane with structure outlines (see ``SimulationData.plot_field``)."""
        kwargs = {self.axis: float(self.positions[self.index]), self.spectral_dim: float(self.spectral_values[self.spectral_index])}
        return self.data.plot_field(self.monitor, self.component, val=self.quantity, ax=ax, **kwargs)


class FieldSlicer:
    """Dropdowns for monitor, component, frequency/time and quantity, a slice-axis
    selector and a position slider over a matplotlib image with µm axes, a colorbar
    and structure outlines."""

    def __init__(self, data: SimulationData, monitor: str | None = None) -> None:
        import ipywidgets as w

        self.state = SlicerState.initial(data, monitor)
        self.monitor = w.Dropdown(description="monitor", options=field_monitors(data), value=self.state.monitor)
        self.component = w.Dropdown(description="field")
        self.spectral = w.Dropdown(description="f / t")
        self.quantity = w.Dropdown(description="show", options=list(QUANTITIES), value=self.state.quantity)
        self.axis = w.ToggleButtons(description="slice ⊥", options=["x", "y", "z"], value=self.state.axis)
        self.slider = w.IntSlider(description="position", continuous_update=False)
        self.position = w.Label()
        self.output = w.Output()
        self._syncing = False
        self._sync_controls()
        for control, name in ((self.monitor, "monitor"), (self.component, "component"), (self.spectral, "spectral_index"), (self.quantity, "quantity"), (self.axis, "axis"), (self.slider, "index")):
            control.observe(lambda change, name=name: self._on_change(name, change["new"]), names="value")
        self.widget = w.VBox([w.HBox([self.monitor, self.component]), w.HBox([self.spectral, self.quantity]), self.axis, w.HBox([self.slider, self.position]), self.output])
        self.redraw()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _sync_controls(self) -> None:
        """Controls follow the state (options and values) without feedback loops."""
        self._syncing = True
        s = self.state
        self.component.options, self.component.value = s.components, s.component
        self.spectral.options = [(spectral_label(s.spectral_dim, v), i) for i, v in enumerate(s.spectral_values)]
        self.spectral.value = s.spectral_index
        self.axis.value = s.axis
        self.slider.max = s.dataset.sizes[s.axis] - 1
        self.slider.value = s.index
        self.position.value = f"{s.axis} = {s.positions[s.index]:.4g} µm"
        self._syncing = False

    def _on_change(self, name: str, value: Any) -> None:
        if self._syncing:
            return
        changes = {name: value}
        if name == "axis":
            changes["index"] = self.state.dataset.sizes[value] // 2
        self.state = self.state.select(**changes)
        self._sync_controls()
        self.redraw()

    def redraw(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        with self.output:
            self.output.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5.5, 4.2))
            self.state.plot(ax=ax)
            display(fig)
            plt.close(fig)
