"""Shared Pydantic base and field types for every MetoSim model.

Every model is immutable, strict (no silent string→number coercion), rejects
unknown keys, and carries a ``type`` tag so that a JSON dump validates back to an
equal object (the REST body, the stored JSONB and the HDF5 metadata are all this
dump).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

#: Infinite extent (µm): a source, monitor or geometry that spans the whole domain.
inf = math.inf


def _as_tuple(value: Any) -> Any:
    """Accept lists and NumPy arrays where a fixed-length tuple is expected."""
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    if isinstance(value, list):
        return tuple(value)
    return value


#: How infinite extents appear in JSON: standard JSON has no infinity token.
_INFINITIES = {"Infinity": math.inf, "-Infinity": -math.inf}


def _as_float(value: Any) -> Any:
    """Accept NumPy scalars (np.float32 is not a Python float) and the JSON spelling
    of an infinite extent, the string "Infinity"."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str) and value in _INFINITIES:
        return _INFINITIES[value]
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _not_nan(value: float) -> float:
    if math.isnan(value):
        raise ValueError("must not be NaN")
    return value


def _non_negative(value: float) -> float:
    if not value >= 0:
        raise ValueError("must be ≥ 0")
    return value


def _positive(value: float) -> float:
    if not value > 0:
        raise ValueError("must be > 0")
    return value


Float = Annotated[float, BeforeValidator(_as_float)]
#: A finite real number.
Finite = Annotated[Float, AfterValidator(_finite)]
#: A finite number > 0.
PositiveFinite = Annotated[Float, AfterValidator(_finite), AfterValidator(_positive)]
#: A finite number ≥ 0.
NonNegativeFinite = Annotated[Float, AfterValidator(_finite), AfterValidator(_non_negative)]
#: A length ≥ 0 that may be ``inf`` (spans the domain) but never NaN.
Extent = Annotated[Float, AfterValidator(_not_nan), AfterValidator(_non_negative)]

#: A point (x, y, z) in µm.
Coordinate = Annotated[tuple[Finite, Finite, Finite], BeforeValidator(_as_tuple)]
#: Mirror symmetry per axis (x, y, z): 0 none, +1 even tangential E (PMC plane), −1 odd (PEC plane).
Symmetry = Annotated[tuple[Literal[-1, 0, 1], Literal[-1, 0, 1], Literal[-1, 0, 1]], BeforeValidator(_as_tuple)]
#: A box size (x, y, z) in µm; ``inf`` allowed.
Size = Annotated[tuple[Extent, Extent, Extent], BeforeValidator(_as_tuple)]
#: A finite box size (x, y, z) in µm.
FiniteSize = Annotated[
    tuple[NonNegativeFinite, NonNegativeFinite, NonNegativeFinite], BeforeValidator(_as_tuple)
]


def _frequencies(value: tuple[float, ...]) -> tuple[float, ...]:
    if len(value) == 0:
        raise ValueError("needs at least one frequency")
    return value


#: Frequencies in Hz, each finite and > 0.
Frequencies = Annotated[
    tuple[PositiveFinite, ...], BeforeValidator(_as_tuple), AfterValidator(_frequencies)
]

AXES = ("x", "y", "z")
E_COMPONENTS = ("Ex", "Ey", "Ez")
H_COMPONENTS = ("Hx", "Hy", "Hz")
FIELD_COMPONENTS = E_COMPONENTS + H_COMPONENTS


def mirror_parity(component: str, axis: int, symmetry: int) -> int:
    """The factor (±1) a field ``component`` ("Ex" … "Hz") takes at the mirror image
    of a point under ``symmetry`` (+1 or −1) about a plane normal to ``axis``.

    ``symmetry`` is the parity of the tangential E: +1 (even tangential E, so zero
    tangential H on the plane: a PMC plane), −1 (odd tangential E: a PEC plane). E is
    a vector, so its normal component has the opposite parity; H is a pseudovector,
    so its tangential components have the opposite parity and its normal one the same.
    """
    normal = "xyz".index(component[1]) == axis
    parity = -symmetry if normal else symmetry
    return parity if component[0] == "E" else -parity


class MetoModel(BaseModel):
    """Base of every MetoSim model: frozen, strict, no unknown keys."""

    model_config = ConfigDict(
        frozen=True,
        strict=True,
        extra="forbid",
        ser_json_inf_nan="strings",
        validate_default=True,
    )

    def updated_copy(self, **changes: Any) -> Any:
        """A copy with ``changes`` (field name → new value), validated as a new model
        (Tidy3D's name): every check runs again and nothing cached on ``self`` (such as
        ``Simulation.grid``) is carried over."""
        return type(self).model_validate({**{name: getattr(self, name) for name in type(self).model_fields}, **changes})

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Any:
        """pydantic's copy (``update`` is not validated: use :meth:`updated_copy`), less
        anything cached on ``self`` (``functools.cached_property`` values such as
        ``Simulation.grid`` live in ``__dict__`` beside the fields and would describe
        the old fields)."""
        copy = super().model_copy(update=update, deep=deep)
        for key in [k for k in copy.__dict__ if k not in type(self).model_fields]:
            del copy.__dict__[key]
        return copy
