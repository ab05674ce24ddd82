"""Minimum length scales of a design: measured on a binary design, and penalised
while one is optimised.

``measured_length_scales``: the narrowest solid feature and the narrowest gap, measured
the way fabrication rules are stated (the largest round brush that draws every solid,
resp. void, feature; imageruler, Chen et al., JOSA B 2024 — the measure the
photonics-opt-testbed reports).

``length_violation``: the geometric constraints of Zhou, Lazarov, Wang and Sigmund
(CMAME 2015), as Meep's adjoint module states them (Hammond et al., Opt. Express 2021):
where the filtered density ρ̃ is flat (a feature's middle), a solid pixel must reach
η_e and a void pixel must fall to η_d, or the feature is narrower than the length
scale the filter radius sets. Differentiable (NumPy, or jax.numpy under a gradient).

    solid, void = measured_length_scales(result.rho_hat(np.inf), pixel_size=0.01)   # µm
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

#: Thresholds a feature's middle must pass (solid: ρ̃ ≥ η_e; void: ρ̃ ≤ η_d). With a
#: conic filter of radius R these hold the solid width and the void gap at ≥ R
#: (b = R·(2 − 2√(1 − η_e)) = R at η_e = 0.75; Hammond et al. 2021).
ETA_ERODED, ETA_DILATED = 0.75, 0.25


def measured_length_scales(rho_hat: np.ndarray, pixel_size: float) -> tuple[float, float]:
    """(minimum solid width, minimum void spacing) in µm of the design ``rho_hat``
    (pixels of ``pixel_size`` µm; thresholded at ½). A 2D design (one axis of one
    pixel) is measured as an image; a 3D design as the smallest over its slices along
    the last axis (layers, as lithography makes them); a 1D design by its shortest
    runs. A design without any solid (void) pixel reports its whole extent for it."""
    solid = np.asarray(rho_hat) > 0.5
    layers = _layers(solid)
    if layers is None:  # 1D: runs of equal pixels along the one axis
        line = solid.ravel()
        edges = np.flatnonzero(np.diff(line.astype(np.int8))) + 1
        runs = np.split(line, edges)
        shortest = [min((r.size for r in runs if r[0] == kind), default=line.size) for kind in (True, False)]
        return shortest[0] * pixel_size, shortest[1] * pixel_size
    import imageruler

    scales = np.array([imageruler.minimum_length_scale(layer) for layer in layers])
    return float(scales[:, 0].min() * pixel_size), float(scales[:, 1].min() * pixel_size)


def _layers(solid: np.ndarray) -> list[np.ndarray] | None:
    """The 2D images to measure (None for a 1D design)."""
    kept = [n for n in solid.shape if n > 1]
    if len(kept) < 2:
        return None
    if len(kept) == 2:
        return [solid.reshape(kept)]
    return [solid[..., k] for k in range(solid.shape[-1])]


def length_violation(rho_tilde: Any, rho_hat: Any, radius: float, steps: tuple[float, ...], xp: ModuleType = np) -> tuple[Any, Any]:
    """(solid, void) violations of the minimum length scale, each ≥ 0 and 0 for a
    design whose features all span about ``radius`` µm or more.

    ``rho_tilde``: the filtered density (conic filter of ``radius`` µm); ``rho_hat``:
    its projection; ``steps``: the pixel size along each axis (µm; 0 along an axis of
    one pixel). The indicator exp(−c |∇ρ̃|²) picks the flat middles of features: with
    c = 64 R², it is e^(−64) at a conic-filtered edge, where |∇ρ̃| ≈ 1/R, and above
    1/e where the slope is below an eighth of that. Each violation is the mean over
    pixels of indicator × (squared shortfall)."""
    grad2 = sum(xp.gradient(rho_tilde, d, axis=k) ** 2 for k, d in enumerate(steps) if d > 0 and rho_tilde.shape[k] > 1)
    flat = xp.exp(-64.0 * radius**2 * grad2)
    solid = xp.mean(rho_hat * flat * xp.minimum(rho_tilde - ETA_ERODED, 0.0) ** 2)
    void = xp.mean((1.0 - rho_hat) * flat * xp.minimum(ETA_DILATED - rho_tilde, 0.0) ** 2)
    return solid, void
