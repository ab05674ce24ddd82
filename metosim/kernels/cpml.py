"""Convolutional PML (Roden & Gedney 2000) grading profiles.

Inside a PML slab each spatial derivative ∂F/∂a becomes (1/κ)∂F/∂a + ψ with the
recursive convolution ψ ← b·ψ + c·∂F/∂a. This module computes b, c and 1/κ on the
nodes of one slab; the auxiliary fields ψ exist only on those nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SlabProfile:
    """b, c and 1/κ on the nodes of one PML slab, ordered by array index."""

    b: np.ndarray
    c: np.ndarray
    inv_kappa: np.ndarray


def slab_profile(
    num_layers: int,
    side: str,
    half_nodes: bool,
    dl: float,
    dt: float,
    sigma_order: float,
    sigma_scale: float,
    kappa_max: float,
    alpha_max: float,
) -> SlabProfile:
    """Profiles for a slab of ``num_layers`` cells on the ``side`` ("minus"/"plus") face.

    ``half_nodes`` selects the half-integer nodes (derivatives of E, feeding H) or
    the integer nodes (derivatives of H, feeding E). ``dl`` and ``dt`` are normalised
    (µm, µm/c); ``alpha_max`` is in units of 2π·c/µm.
    """
    # Offset of each node from the slab's first array index, in cells.
    j = np.arange(num_layers, dtype=np.float64) + (0.5 if half_nodes else 0.0)
    # Depth into the PML: 0 at the interior interface, 1 at the outer wall.
    depth = np.clip((num_layers - j) / num_layers if side == "minus" else j / num_layers, 0.0, 1.0)
    graded = depth**sigma_order
    sigma = sigma_scale * 0.8 * (sigma_order + 1) / dl * graded  # optimal σ for η = 1
    kappa = 1.0 + (kappa_max - 1.0) * graded
    alpha = 2 * np.pi * alpha_max * (1.0 - depth)
    b = np.exp(-(sigma / kappa + alpha) * dt)
    denominator = sigma * kappa + kappa**2 * alpha
    c = np.where(denominator > 0, sigma / np.where(denominator > 0, denominator, 1.0) * (b - 1.0), 0.0)
    return SlabProfile(b=b, c=c, inv_kappa=1.0 / kappa)
