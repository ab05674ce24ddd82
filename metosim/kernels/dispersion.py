"""Dispersive and lossy media on the grid: the auxiliary-differential-equation (ADE)
coefficients of each pole, and the permittivity the time-stepped update realises at a
frequency — what a mode solved for the engine's sources and monitors must see.

Each pole of a medium (ε(f) = ε∞ + Σ S/(f0² − f² − i f γ), ``medium.ade_poles()``)
drives a polarisation P by central differences,

    P^{n+1} = c1·P^n + c2·P^{n−1} + c3·E^n,

c1 = (2 − ω0²Δt²)/d, c2 = −(1 − γΔt/2)/d, c3 = SΔt²/d, d = 1 + γΔt/2 (ω0, γ, S in
normalised units), and the E update takes ε∞(E^{n+1} − E^n)/Δt + σ(E^{n+1} + E^n)/2 +
(P^{n+1} − P^n)/Δt = ∇×H. With fields ∝ z^n, z = e^{−iωΔt}, that is
D = (ε∞ + iσ cos(ωΔt/2)/ω̃ + Σ c3/(z − c1 − c2/z))·E under the leapfrog's ω̃ =
(2/Δt) sin(ωΔt/2): the continuum ε(f) to O((ωΔt)²).
"""

from __future__ import annotations

import math

import numpy as np

from ..medium import DISPERSIVE
from .mesh import MeshedMedia
from .units import to_normalised_frequency

#: (c1, c2, c3 before the node mask) of one pole.
AdeCoefficients = tuple[float, float, float]


def ade_coefficients(medium, dt: float) -> list[AdeCoefficients]:
    """The ADE coefficients of each pole of a dispersive ``medium`` at time step ``dt``
    (normalised units)."""
    out = []
    for f0, damping, strength_hz2 in medium.ade_poles():
        w0 = 2 * math.pi * to_normalised_frequency(f0)
        gamma = 2 * math.pi * to_normalised_frequency(damping)
        strength = strength_hz2 * (2 * math.pi * to_normalised_frequency(1.0)) ** 2
        den = 1 + gamma * dt / 2
        out.append(((2 - w0**2 * dt**2) / den, -(1 - gamma * dt / 2) / den, strength * dt**2 / den))
    return out


def grid_permittivity(sim, media: MeshedMedia, window: tuple[slice, slice, slice], f: float, dt: float) -> tuple[np.ndarray, ...]:
    """The complex permittivity per E component (arrays cut to ``window``) that the
    update realises at normalised frequency ``f`` (c/µm) with time step ``dt``: the
    meshed ε∞ and σ (subpixel-averaged) and each dispersive medium's poles with their
    per-node weights (:attr:`.mesh.MeshedMedia.pole_weight`)."""
    omega = 2 * math.pi * f
    z = np.exp(-1j * omega * dt)
    omega_grid = 2 / dt * math.sin(omega * dt / 2)
    chi = {k: sum(c3 / (z - c1 - c2 / z) for c1, c2, c3 in ade_coefficients(m, dt)) for k, m in enumerate(sim.media) if isinstance(m, DISPERSIVE)}
    out = []
    for p in range(3):
        eps = media.permittivity[p][window] + 1j * media.conductivity[p][window] * math.cos(omega * dt / 2) / omega_grid
        for k, value in chi.items():
            eps = eps + value * media.pole_weight[k][p][window]
        out.append(eps)
    return tuple(out)


__all__ = ["AdeCoefficients", "ade_coefficients", "grid_permittivity"]
