"""Optical media. Permittivity is relative; conductivity in S/m; pole frequencies
and damping rates in Hz (angular frequency = 2π × value)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field

from .base import Finite, MetoModel, NonNegativeFinite, PositiveFinite, _as_tuple


class Medium(MetoModel):
    """Non-dispersive medium: relative ``permittivity`` ≥ 1 and ``conductivity`` ≥ 0 (S/m)."""

    type: Literal["Medium"] = "Medium"
    permittivity: Annotated[Finite, Field(ge=1.0)] = 1.0
    conductivity: NonNegativeFinite = 0.0
    name: str | None = None

    @property
    def eps_max(self) -> float:
        """Largest real permittivity, which sets the auto grid's cell size."""
        return self.permittivity


class PECMedium(MetoModel):
    """Perfect electric conductor (tangential E = 0)."""

    type: Literal["PEC"] = "PEC"
    name: str | None = "PEC"

    @property
    def eps_max(self) -> float:
        return 1.0


def _poles(value: object) -> object:
    value = _as_tuple(value)
    return tuple(_as_tuple(p) for p in value) if isinstance(value, tuple) else value


class Drude(MetoModel):
    """ε(f) = eps_inf − Σ fp² / (f² + i f γ) for poles ``(plasma_freq fp, gamma γ)`` in Hz."""

    type: Literal["Drude"] = "Drude"
    eps_inf: Annotated[Finite, Field(ge=1.0)] = 1.0
    poles: Annotated[
        tuple[tuple[PositiveFinite, NonNegativeFinite], ...], BeforeValidator(_poles), Field(min_length=1)
    ]
    name: str | None = None

    @property
    def eps_max(self) -> float:
        return self.eps_inf


class Lorentz(MetoModel):
    """ε(f) = eps_inf + Σ Δε f0² / (f0² − f² − i f γ) for poles ``(delta_eps, f0, γ)``, f0 and γ in Hz."""

    type: Literal["Lorentz"] = "Lorentz"
    eps_inf: Annotated[Finite, Field(ge=1.0)] = 1.0
    poles: Annotated[
        tuple[tuple[PositiveFinite, PositiveFinite, NonNegativeFinite], ...],
        BeforeValidator(_poles),
        Field(min_length=1),
    ]
    name: str | None = None

    @property
    def eps_max(self) -> float:
        return self.eps_inf + sum(p[0] for p in self.poles)


#: The perfect electric conductor.
PEC = PECMedium()

MediumType = Annotated[Union[Medium, PECMedium, Drude, Lorentz], Field(discriminator="type")]

__all__ = ["PEC", "Drude", "Lorentz", "Medium", "MediumType", "PECMedium"]
