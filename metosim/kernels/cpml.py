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
    steps: float | np.ndarray,
    dt: float,
    sigma_order: float,
    sigma_scale: float,
    kappa_max: float,
    alpha_max: float,
) -> SlabProfile:
    """Profiles for a slab of ``num_layers`` cells on the ``side`` ("minus"/"plus") face.

    ``half_nodes`` selects the half-integer nodes (derivatives of E, feeding H) or
    the integer nodes (derivatives of H, feeding E). ``steps``: the slab's cell sizes
    (one value for a uniform grid, else ``num_layers`` values in array order); they
    and ``dt`` are normalised (µm, µm/c); ``alpha_max`` is in units of 2π·c/µm.
    """
    h = np.broadcast_to(np.asarray(steps, dtype=np.float64), (num_layers,))
    # Position of each node from the slab's first array node, as a fraction of the slab.
    start = np.concatenate([[0.0], np.cumsum(h)[:-1]])
    thickness = float(np.sum(h))
    position = (start + (0.5 * h if half_nodes else 0.0)) / thickness
    # Depth into the PML: 0 at the interior interface, 1 at the outer wall.
    depth = np.clip(1.0 - position if side == "minus" else position, 0.0, 1.0)
    graded = depth**sigma_order
    sigma = sigma_scale * 0.8 * (sigma_order + 1) / (thickness / num_layers) * graded  # optimal σ for η = 1
    kappa = 1.0 + (kappa_max - 1.0) * graded
    alpha = 2 * np.pi * alpha_max * (1.0 - depth)
    b = np.exp(-(sigma / kappa + alpha) * dt)
    denominator = sigma * kappa + kappa**2 * alpha
    c = np.where(denominator > 0, sigma / np.where(denominator > 0, denominator, 1.0) * (b - 1.0), 0.0)
    return SlabProfile(b=b, c=c, inv_kappa=1.0 / kappa)
