"""Minimum length scales of a binary design: the narrowest solid feature and the
narrowest gap, measured the way fabrication rules are stated (the largest round brush
that draws every solid, resp. void, feature; imageruler, Chen et al., JOSA B 2024 — the
measure the photonics-opt-testbed reports).

    solid, void = measured_length_scales(result.rho_hat(np.inf), pixel_size=0.01)   # µm
"""

from __future__ import annotations

import numpy as np


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
