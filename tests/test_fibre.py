"""``ms.fibre_fraction``: the share of a line's power in a tilted Gaussian beam, against
the closed-form overlaps of Gaussians."""

from __future__ import annotations

import numpy as np
import pytest

import metosim as ms

X = np.linspace(-40, 40, 8001)
LAM, W, N = 1.55, 5.2, 1.444


@pytest.mark.parametrize("angle", [0.0, 8.0, 15.0])
def test_the_beam_itself_is_all_in_the_beam(angle: float) -> None:
    g = ms.gaussian_beam_line(X, LAM, W, angle, 1.0, N)
    theta = np.radians(angle)
    assert ms.fibre_fraction(X, g, N * np.cos(theta) * g, LAM, W, angle, 1.0, N) == pytest.approx(1.0, abs=1e-12)
    assert ms.fibre_fraction(X, np.cos(theta) * g, -N * g, LAM, W, angle, 1.0, N, polarization="Ex") == pytest.approx(1.0, abs=1e-12)


def test_an_offset_beam_overlaps_as_exp_minus_d2_over_w2() -> None:
    d = 3.0
    e = np.exp(-((X - d) ** 2) / W**2)
    assert ms.fibre_fraction(X, e, N * e, LAM, W, 0.0, 0.0, N) == pytest.approx(np.exp(-(d**2) / W**2), rel=1e-9)


def test_a_tilted_wave_overlaps_as_exp_minus_dk2_w2_over_4() -> None:
    dk = 2 * np.pi * N / LAM * np.sin(np.radians(3.0))
    e = np.exp(-(X**2) / W**2) * np.exp(1j * dk * X)
    assert ms.fibre_fraction(X, e, N * e, LAM, W, 0.0, 0.0, N) == pytest.approx(np.exp(-(dk**2) * W**2 / 4), rel=1e-9)
