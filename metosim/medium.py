"""Optical media. Permittivity is relative; conductivity in S/m; pole frequencies
and damping rates in Hz (angular frequency = 2π × value)."""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from .base import Finite, MetoModel, NonNegativeFinite, PositiveFinite, _as_tuple
from .grid import C_0, EPSILON_0

#: A pole of the auxiliary differential equation: (resonance f0, damping γ, strength
#: S) in Hz, Hz, Hz², for the susceptibility S / (f0² − f² − i f γ). A Drude pole has
#: f0 = 0 and S = fp²; a Lorentz pole S = Δε·f0².
AdePole = tuple[float, float, float]


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

    def eps_model(self, freqs: Any) -> np.ndarray:
        """Complex relative permittivity at ``freqs`` (Hz): ε + iσ/(ε₀ω)."""
        f = np.asarray(freqs, dtype=float)
        return self.permittivity + 1j * self.conductivity / (EPSILON_0 * 2 * np.pi * f)


class PECMedium(MetoModel):
    """Perfect electric conductor (tangential E = 0)."""

    type: Literal["PEC"] = "PEC"
    name: str | None = "PEC"

    @property
    def eps_max(self) -> float:
        return 1.0


#: A (low, high) frequency range in Hz.
FrequencyRange = Annotated[tuple[PositiveFinite, PositiveFinite], BeforeValidator(_as_tuple)]
#: A pole's frequency or damping (Hz), up to 10²⁰ (hard X-rays): its square stays finite.
PoleFrequency = Annotated[PositiveFinite, Field(le=1e20)]
Damping = Annotated[NonNegativeFinite, Field(le=1e20)]


def _poles(value: object) -> object:
    value = _as_tuple(value)
    return tuple(_as_tuple(p) for p in value) if isinstance(value, tuple) else value


class Drude(MetoModel):
    """ε(f) = eps_inf − Σ fp² / (f² + i f γ) for poles ``(plasma_freq fp, gamma γ)`` in Hz."""

    type: Literal["Drude"] = "Drude"
    eps_inf: Annotated[Finite, Field(ge=1.0)] = 1.0
    poles: Annotated[
        tuple[tuple[PoleFrequency, Damping], ...], BeforeValidator(_poles), Field(min_length=1)
    ]
    name: str | None = None

    #: Frequencies (Hz) where the model is valid (e.g. a library fit's range); sources
    #: outside it warn.
    frequency_range: FrequencyRange | None = None

    @property
    def eps_max(self) -> float:
        return self.eps_inf

    def ade_poles(self) -> list[AdePole]:
        return [(0.0, gamma, fp**2) for fp, gamma in self.poles]

    def eps_model(self, freqs: Any) -> np.ndarray:
        return susceptibility_sum(self.eps_inf, self.ade_poles(), freqs)


class Lorentz(MetoModel):
    """ε(f) = eps_inf + Σ Δε f0² / (f0² − f² − i f γ) for poles ``(delta_eps, f0, γ)``, f0 and γ in Hz."""

    type: Literal["Lorentz"] = "Lorentz"
    eps_inf: Annotated[Finite, Field(ge=1.0)] = 1.0
    poles: Annotated[
        tuple[tuple[PositiveFinite, PoleFrequency, Damping], ...],
        BeforeValidator(_poles),
        Field(min_length=1),
    ]
    name: str | None = None

    frequency_range: FrequencyRange | None = None

    @property
    def eps_max(self) -> float:
        """The static ε (ε∞ + Σ Δε), or the largest Re ε over ``frequency_range`` when
        set (a far-infrared pole of a fit must not refine the grid for the visible)."""
        return _eps_max_in_range(self) if self.frequency_range else self.eps_inf + sum(p[0] for p in self.poles)

    def ade_poles(self) -> list[AdePole]:
        return [(f0, gamma, delta_eps * f0**2) for delta_eps, f0, gamma in self.poles]

    def eps_model(self, freqs: Any) -> np.ndarray:
        return susceptibility_sum(self.eps_inf, self.ade_poles(), freqs)


class DrudeLorentz(MetoModel):
    """Lorentz–Drude medium (Rakić et al. 1998 form): ε(f) = eps_inf − Σ fp²/(f² + i f γ)
    over ``drude_poles`` (fp, γ) + Σ Δε f0²/(f0² − f² − i f γ) over ``lorentz_poles``
    (Δε, f0, γ); frequencies in Hz. Metals need both kinds in one medium."""

    type: Literal["DrudeLorentz"] = "DrudeLorentz"
    eps_inf: Annotated[Finite, Field(ge=1.0)] = 1.0
    drude_poles: Annotated[tuple[tuple[PoleFrequency, Damping], ...], BeforeValidator(_poles)] = ()
    lorentz_poles: Annotated[tuple[tuple[PositiveFinite, PoleFrequency, Damping], ...], BeforeValidator(_poles)] = ()
    name: str | None = None
    frequency_range: FrequencyRange | None = None

    @model_validator(mode="after")
    def _check(self) -> "DrudeLorentz":
        if not self.drude_poles and not self.lorentz_poles:
            raise ValueError("give at least one pole (drude_poles or lorentz_poles)")
        return self

    @property
    def eps_max(self) -> float:
        """ε∞ plus the Lorentz strengths (Drude poles lower ε), or the largest Re ε over
        ``frequency_range`` when set: the auto grid's index."""
        return _eps_max_in_range(self) if self.frequency_range else self.eps_inf + sum(p[0] for p in self.lorentz_poles)

    def ade_poles(self) -> list[AdePole]:
        drude = [(0.0, gamma, fp**2) for fp, gamma in self.drude_poles]
        return drude + [(f0, gamma, delta_eps * f0**2) for delta_eps, f0, gamma in self.lorentz_poles]

    def eps_model(self, freqs: Any) -> np.ndarray:
        return susceptibility_sum(self.eps_inf, self.ade_poles(), freqs)


def ade_stability_margin(medium: Any, dt: float) -> float:
    """ε∞ + Re χ at the time step's Nyquist frequency, for the central-difference ADE:
    Σ S / (ω0² − (2/Δt)²) over the poles (angular units, Δt in s). The leapfrog is
    stable while this stays above courant² (measured: 0.92 stable, 0.95 not, for a
    pole whose margin crosses between them)."""
    margin = medium.eps_inf
    for f0, _, strength in medium.ade_poles():
        w0dt = 2 * np.pi * f0 * dt
        if w0dt >= 2:
            return -np.inf
        margin -= (2 * np.pi) ** 2 * strength * dt**2 / (4 - w0dt**2)
    return float(margin)


def _eps_max_in_range(medium: Any) -> float:
    """Largest Re ε over the medium's frequency range (at least 1)."""
    lo, hi = medium.frequency_range
    return max(1.0, float(np.max(np.real(medium.eps_model(np.geomspace(lo, hi, 64))))))


def susceptibility_sum(eps_inf: float, poles: list[AdePole], freqs: Any) -> np.ndarray:
    """ε(f) = ε∞ + Σ S / (f0² − f² − i f γ) for ADE poles (Hz; time dependence e^{−iωt},
    so loss is Im ε > 0)."""
    f = np.asarray(freqs, dtype=float)
    return eps_inf + sum((S / (f0**2 - f**2 - 1j * f * gamma) for f0, gamma, S in poles), np.zeros_like(f, dtype=complex))


def warn_outside_range(medium: Any, band: tuple[float, float], where: str) -> None:
    """Warn when the band (Hz) of a source leaves a medium's ``frequency_range``."""
    valid = getattr(medium, "frequency_range", None)
    if valid is None or (valid[0] <= band[0] and band[1] <= valid[1]):
        return
    name = getattr(medium, "name", None) or medium.type
    warnings.warn(
        f"{where}: {name} is valid for {valid[0] / 1e12:.4g}–{valid[1] / 1e12:.4g} THz "
        f"(λ {C_0 / valid[1] * 1e6:.3g}–{C_0 / valid[0] * 1e6:.3g} µm); the sources span "
        f"{band[0] / 1e12:.4g}–{band[1] / 1e12:.4g} THz, where its model is an extrapolation",
        UserWarning,
        stacklevel=2,
    )


class CustomMedium(MetoModel):
    """Lossless, non-dispersive permittivity given per pixel over its structure's box
    (which must be a ``Box``): ``permittivity[i][j][k]`` fills the (i, j, k)-th of
    equal pixels along x, y, z; a 2D design has one pixel along its invariant axis.
    Inverse design returns its designs as this medium. Each E node takes the volume
    average of its cell (linear between pixel centres); a ``CustomMedium`` structure
    is painted over the other structures whatever its place in the list."""

    type: Literal["CustomMedium"] = "CustomMedium"
    permittivity: list[list[list[Annotated[Finite, Field(ge=1.0)]]]]
    name: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "CustomMedium":
        shape = self.shape
        if min(shape) < 1 or any(len(row) != shape[1] or any(len(col) != shape[2] for col in row) for row in self.permittivity):
            raise ValueError(f"permittivity must be a non-empty 3D array of equal rows (nx, ny, nz); first row gives {shape}")
        return self

    @property
    def shape(self) -> tuple[int, int, int]:
        first = self.permittivity[0] if self.permittivity else []
        return (len(self.permittivity), len(first), len(first[0]) if first else 0)

    @property
    def values(self) -> np.ndarray:
        """The pixels as a float array of shape (nx, ny, nz)."""
        return np.asarray(self.permittivity, dtype=float)

    @classmethod
    def from_array(cls, permittivity: Any, name: str | None = None) -> "CustomMedium":
        """From an array of shape (nx, ny, nz), or (nx, ny) for a 2D design in x–y."""
        eps = np.asarray(permittivity, dtype=float)
        if eps.ndim == 2:
            eps = eps[:, :, None]
        return cls(permittivity=eps.tolist(), name=name)

    @property
    def eps_max(self) -> float:
        return float(self.values.max())


#: The perfect electric conductor.
PEC = PECMedium()

MediumType = Annotated[Union[Medium, PECMedium, Drude, Lorentz, DrudeLorentz, CustomMedium], Field(discriminator="type")]
#: Media the engine steps with auxiliary differential equations.
DISPERSIVE = (Drude, Lorentz, DrudeLorentz)

__all__ = ["DISPERSIVE", "PEC", "CustomMedium", "Drude", "DrudeLorentz", "Lorentz", "Medium", "MediumType", "PECMedium"]
