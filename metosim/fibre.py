"""Coupling into a fibre: the share of the power crossing a line carried by a tilted
Gaussian beam (the fibre's mode in the cladding), by the mode-overlap integral.

For a grating coupler, record the DFT fields and the flux on a line above the grating
(2D, the line along x, power going +y); the coupling efficiency into the fibre is
``fibre_fraction(...) × flux`` (the flux over the waveguide mode's power, which is what
a mode source's flux monitors give). Reciprocity makes it the efficiency from the
fibre into the guide as well.
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def gaussian_beam_line(x: np.ndarray, wavelength: float, waist: float, angle: float, center: float, index: float) -> np.ndarray:
    """The field of a Gaussian beam (waist ``waist``, 1/e field radius, µm) tilted by
    ``angle`` (degrees from +y towards +x) in a medium of ``index``, on a line of
    constant y through its waist: exp(−((x − center)·cos θ / w)²)·exp(i k sin θ x), with
    the DFT convention Σ F e^{+iωt} of MetoSim's and Meep's monitors."""
    theta = np.radians(angle)
    k = 2 * np.pi * index / wavelength
    return np.exp(-(((x - center) * np.cos(theta)) ** 2) / waist**2) * np.exp(1j * k * np.sin(theta) * x)


def fibre_fraction(
    x: np.ndarray,
    e: np.ndarray,
    h: np.ndarray,
    wavelength: float,
    waist: float,
    angle: float,
    center: float,
    index: float,
    polarization: Literal["Ez", "Ex"] = "Ez",
) -> float:
    """The fraction of the power crossing a line (along x, normal +y) that a tilted
    Gaussian beam carries: |∫(E×H_b* + E_b*×H)·ŷ dx|² / (4·Re∫(E×H*)·ŷ dx·Re∫(E_b×H_b*)·ŷ dx).

    ``x``: node positions (µm); ``e``, ``h``: the line's tangential fields at one
    frequency — for "Ez" (E out of the plane: a slab's TE mode) Ez and Hx, for "Ex"
    (E in the plane) Ex and Hz — in units with Z₀ = 1 (MetoSim's and Meep's).
    The beam: :func:`gaussian_beam_line`, with H from the plane wave of its direction."""
    x, e, h = np.asarray(x, float), np.asarray(e), np.asarray(h)
    g = gaussian_beam_line(x, wavelength, waist, angle, center, index)
    theta = np.radians(angle)
    if polarization == "Ez":  # (E×H)·ŷ = Ez·Hx; the beam's Hx = n cos θ·Ez
        e_b, h_b, sign = g, index * np.cos(theta) * g, 1.0
    else:  # (E×H)·ŷ = −Ex·Hz; the beam's Ex = cos θ·g, Hz = −n·g
        e_b, h_b, sign = np.cos(theta) * g, -index * g, -1.0
    overlap = sign * np.trapezoid(e * np.conj(h_b) + np.conj(e_b) * h, x)
    power = sign * np.trapezoid(e * np.conj(h), x).real
    beam = sign * np.trapezoid(e_b * np.conj(h_b), x).real
    return float(abs(overlap) ** 2 / (4 * power * beam))
