"""Shared helpers for the physics tests (normalised frequency: c/µm)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

import metosim as ms

matplotlib.use("Agg")

#: 1 c/µm in Hz: the frequency whose free-space wavelength is 1 µm.
F_UNIT = ms.C_0 / 1e-6


def resonance(t: np.ndarray, signal: np.ndarray, guess: float, span: float = 0.05) -> float:
    """Frequency (Hz) of the strongest spectral peak within ±span·guess: Hann-windowed
    DFT on a fine grid, refined by a parabola through the top three points."""
    window = np.hanning(t.size)
    freqs = guess * np.linspace(1 - span, 1 + span, 4001)
    spectrum = np.abs(np.exp(-2j * np.pi * np.outer(freqs, t - t[0])) @ (window * (signal - signal.mean())))
    i = int(np.argmax(spectrum[1:-1])) + 1
    y0, y1, y2 = np.log(spectrum[i - 1 : i + 2])
    shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return float(freqs[i] + shift * (freqs[1] - freqs[0]))


@pytest.fixture(params=["jax", "numpy"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param
