"""Objectives as data: a JSON-serialisable figure of merit over monitor outputs, so
an optimisation can run on the service without shipping user code.

    value = aggregate over f of  Σ_terms (weight · term(f) + offset)

with terms |mode amplitude|² (``ModeTerm``), normalised flux (``FluxTerm``) or mean
field intensity over a field monitor (``IntensityTerm``); ``aggregate`` is the mean
over frequencies, or the worst one (min-max: the minimum when maximising, the
maximum when minimising). ``"worst_term"`` does not sum the terms: it takes the worst
weight · term(f) + offset over every frequency *and* term — the epigraph form, e.g.
minimise max over λ of {R(λ), 1 − T(λ)} (terms R, and T with weight −1, offset 1), as
the photonics-opt-testbed's Meep script optimises its mode converter.
"""

from __future__ import annotations

from types import ModuleType
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BeforeValidator, Field

from ..base import Finite, MetoModel, _as_tuple
from ..monitor import FieldMonitor, FluxMonitor, ModeMonitor
from ..simulation import Simulation


class ModeTerm(MetoModel):
    """|a|² of mode ``mode_index`` travelling ``direction`` through a ``ModeMonitor``:
    the power in that mode over the source's. ``db``: 10·log₁₀(|a|² + ``floor``)
    instead — for targets like −40 dB of reflection, where a linear penalty is too
    weak near the goal and too strong far from it; ``floor`` keeps it (and its
    gradient) finite where the power vanishes."""

    type: Literal["mode"] = "mode"
    monitor: str
    mode_index: Annotated[int, Field(ge=0)] = 0
    direction: Literal["+", "-"] = "+"
    weight: Finite = 1.0
    #: Added after the weight (a term 1 − T: weight −1, offset 1).
    offset: Finite = 0.0
    db: bool = False
    floor: Annotated[Finite, Field(gt=0.0)] = 1e-6

    def value(self, outputs: dict[str, Any], xp: ModuleType) -> Any:
        amps = outputs[self.monitor][0 if self.direction == "+" else 1, self.mode_index]
        power = xp.abs(amps) ** 2
        return 10 * xp.log10(power + self.floor) if self.db else power


class FluxTerm(MetoModel):
    """A ``FluxMonitor``'s power over the source's."""

    type: Literal["flux"] = "flux"
    monitor: str
    weight: Finite = 1.0
    offset: Finite = 0.0

    def value(self, outputs: dict[str, Any], xp: ModuleType) -> Any:
        return outputs[self.monitor]


class IntensityTerm(MetoModel):
    """Mean |F|² of one component over a ``FieldMonitor``'s nodes (normalised units)."""

    type: Literal["intensity"] = "intensity"
    monitor: str
    component: Literal["Ex", "Ey", "Ez", "Hx", "Hy", "Hz"] = "Ez"
    weight: Finite = 1.0
    offset: Finite = 0.0

    def value(self, outputs: dict[str, Any], xp: ModuleType) -> Any:
        field = outputs[self.monitor][self.component]
        return xp.mean(xp.abs(field) ** 2, axis=(1, 2, 3))


Term = Annotated[Union[ModeTerm, FluxTerm, IntensityTerm], Field(discriminator="type")]
_MONITOR_KIND = {"mode": ModeMonitor, "flux": FluxMonitor, "intensity": FieldMonitor}


class Objective(MetoModel):
    """What an optimisation maximises or minimises (see the module doc)."""

    type: Literal["Objective"] = "Objective"
    terms: Annotated[tuple[Term, ...], Field(min_length=1), BeforeValidator(_as_tuple)]
    goal: Literal["maximize", "minimize"] = "maximize"
    aggregate: Literal["mean", "worst", "worst_term"] = "mean"

    def per_term(self, outputs: dict[str, Any], xp: ModuleType = np) -> list[Any]:
        """weight · term + offset, per term and frequency."""
        return [t.weight * t.value(outputs, xp) + t.offset for t in self.terms]

    def per_frequency(self, outputs: dict[str, Any], xp: ModuleType = np) -> Any:
        """Σ (weight · term + offset), per frequency."""
        return sum(self.per_term(outputs, xp))

    def __call__(self, outputs: dict[str, Any], xp: ModuleType = np) -> Any:
        """The figure of merit (as stated: larger is better when maximising)."""
        if self.aggregate == "mean":
            return xp.mean(self.per_frequency(outputs, xp))
        values = xp.concatenate([xp.ravel(v) for v in self.per_term(outputs, xp)]) if self.aggregate == "worst_term" else self.per_frequency(outputs, xp)
        return xp.min(values) if self.goal == "maximize" else xp.max(values)

    def outputs(self, data: Any) -> dict[str, Any]:
        """The outputs this objective reads, taken from a ``SimulationData`` (a plain
        solve's result), in the differentiable solve's layout and units."""
        from ..kernels.units import TIME_UNIT

        out: dict[str, Any] = {}
        for term in self.terms:
            result = data[term.monitor]
            if isinstance(term, ModeTerm):
                out[term.monitor] = result.amps.values
            elif isinstance(term, FluxTerm):
                out[term.monitor] = result.values
            else:  # DFT fields on (x, y, z, f) in field units × s → (f, x, y, z), normalised
                out.setdefault(term.monitor, {})[term.component] = np.moveaxis(result[term.component].values, -1, 0) / TIME_UNIT
        return out

    def loss(self, outputs: dict[str, Any], xp: ModuleType = np) -> Any:
        """What a minimiser descends: the value, negated when maximising."""
        value = self(outputs, xp)
        return -value if self.goal == "maximize" else value

    def errors(self, sim: Simulation) -> list[tuple[tuple[str | int, ...], str]]:
        """(field path within the objective, reason) for each term ``sim`` cannot serve."""
        monitors = {m.name: m for m in sim.monitors}
        errors: list[tuple[tuple[str | int, ...], str]] = []
        for i, term in enumerate(self.terms):
            monitor = monitors.get(term.monitor)
            kind = _MONITOR_KIND[term.type]
            if monitor is None:
                errors.append((("terms", i, "monitor"), f"no monitor named {term.monitor!r} in the simulation (monitors: {sorted(monitors)})"))
            elif not isinstance(monitor, kind):
                errors.append((("terms", i, "monitor"), f"a {term.type} term needs a {kind.__name__}, and {term.monitor!r} is a {monitor.type}"))
            elif isinstance(term, ModeTerm) and term.mode_index >= monitor.mode_spec.num_modes:
                errors.append((("terms", i, "mode_index"), f"monitor {term.monitor!r} solves {monitor.mode_spec.num_modes} mode(s): indices 0…{monitor.mode_spec.num_modes - 1}"))
            elif isinstance(term, IntensityTerm) and term.component not in monitor.fields:
                errors.append((("terms", i, "component"), f"monitor {term.monitor!r} records {list(monitor.fields)}"))
        frequencies = {tuple(monitors[t.monitor].freqs) for t in self.terms if t.monitor in monitors and hasattr(monitors[t.monitor], "freqs")}
        if len(frequencies) > 1:
            errors.append((("terms",), "every term's monitor must record the same frequencies (terms are added per frequency)"))
        return errors


__all__ = ["FluxTerm", "IntensityTerm", "ModeTerm", "Objective", "Term"]
