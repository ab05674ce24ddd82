"""Batch and sweep *models*: the REST body of ``POST /v1/batches`` (``BatchSpec``, which
the service validates with this same model) and the named simulations a parameter
sweep makes. No HTTP here: ``metosim.batch`` follows a submitted batch.

    members = ms.sweep(make, width=[0.4, 0.5], gap=[0.1, 0.2])   # four named simulations
    body = batch_spec(members, max_parallel=2)                    # the REST body
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from .base import MetoModel
from .simulation import Simulation

#: A member's name: 1–100 characters, no "/" or control characters (it names files).
MemberName = Annotated[str, Field(pattern=r"^[^/\x00-\x1f]{1,100}$")]
#: A sweep parameter's value.
ParameterValue = StrictBool | StrictInt | StrictFloat | StrictStr
#: Coordinate names of results and datasets: not usable as sweep parameter names.
RESERVED = frozenset({"sample", "member", "sha256", "config", "x", "y", "z", "f", "t", "direction", "mode_index", "theta", "phi"})


class BatchMember(MetoModel):
    """One simulation of a batch, with the sweep parameter values that made it."""

    name: MemberName
    simulation: Simulation
    parameters: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")], ParameterValue] = {}


class BatchSpec(MetoModel):
    """The body of ``POST /v1/batches``: the members, and how many may run at once
    (capped by the key's own ``max_parallel``)."""

    members: Annotated[list[BatchMember], Field(min_length=1)]
    max_parallel: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "BatchSpec":
        seen: set[str] = set()
        for member in self.members:
            if member.name in seen:
                raise ValueError(f"duplicate member name {member.name!r}")
            seen.add(member.name)
        names = set(self.members[0].parameters)
        reserved = sorted(names & RESERVED)
        if reserved:
            raise ValueError(f"parameter name {reserved[0]!r} is reserved for a dataset coordinate; choose another (reserved: {sorted(RESERVED)})")
        for member in self.members[1:]:
            if set(member.parameters) != names:
                raise ValueError(f"member {member.name!r} has parameters {sorted(member.parameters)}, the first member has {sorted(names)}: every member needs the same parameter names")
        return self

    @property
    def parameter_names(self) -> list[str]:
        return list(self.members[0].parameters)


class Sweep(Mapping[str, Simulation]):
    """Named simulations made by :func:`sweep`, with each member's parameter values."""

    def __init__(self, members: Mapping[str, Simulation], parameters: Mapping[str, Mapping[str, Any]]) -> None:
        self._members = dict(members)
        self.parameters = {name: dict(values) for name, values in parameters.items()}

    def __getitem__(self, name: str) -> Simulation:
        return self._members[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        dims = {k: len({p[k] for p in self.parameters.values()}) for k in next(iter(self.parameters.values()), {})}
        return f"Sweep({len(self)} members over {dims})"


def sweep(make_sim: Callable[..., Simulation], **values: Sequence[Any]) -> Sweep:
    """Every combination of the given parameter values (the Cartesian product, in the
    order given), one simulation each: ``sweep(make, width=[0.4, 0.5], gap=[0.1, 0.2])``
    calls ``make(width=…, gap=…)`` four times. Members are named ``"width=0.4,gap=0.1"``."""
    if not values:
        raise ValueError("sweep needs at least one parameter, e.g. sweep(make, width=[0.4, 0.5])")
    for name, options in values.items():
        if len(options) == 0:
            raise ValueError(f"sweep parameter {name!r} has no values")
    members, parameters = {}, {}
    for combination in itertools.product(*values.values()):
        point = {name: _plain(value) for name, value in zip(values, combination)}
        label = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())
        if label in members:
            raise ValueError(f"sweep values repeat: {label}")
        members[label] = make_sim(**point)
        parameters[label] = point
    return Sweep(members, parameters)


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers (JSON and the strict models need them)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def batch_spec(members: Mapping[str, Simulation], max_parallel: int | None = None) -> BatchSpec:
    """The REST body for named simulations (a :class:`Sweep` carries its parameters)."""
    parameters = members.parameters if isinstance(members, Sweep) else {}
    return BatchSpec(
        members=[BatchMember(name=name, simulation=sim, parameters=parameters.get(name, {})) for name, sim in members.items()],
        max_parallel=max_parallel,
    )
