"""Normalised engine units: length 1 µm, time 1 µm / c, ε₀ = μ₀ = c = 1, H scaled by Z₀."""

from __future__ import annotations

from ..grid import C_0, MICROMETRE

Z_0 = 376.730313412  # Ω, vacuum impedance

#: Seconds per normalised time unit.
TIME_UNIT = MICROMETRE / C_0


def to_normalised_time(t_seconds: float) -> float:
    return t_seconds / TIME_UNIT


def to_normalised_frequency(f_hz: float) -> float:
    """Hz → cycles per normalised time unit (c / µm)."""
    return f_hz * TIME_UNIT


def to_normalised_conductivity(sigma_s_per_m: float) -> float:
    """S/m → σ·Z₀·L, the conductivity in units where ε₀ = c = 1 and L = 1 µm."""
    return sigma_s_per_m * Z_0 * MICROMETRE
