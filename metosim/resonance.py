"""``ResonanceFinder``: frequencies, decay rates and Q factors of resonances from a
ringing time signal, by harmonic inversion (the matrix pencil method).

The signal is modelled as a sum of damped complex exponentials
x(t) = Σ aₖ exp((i2πfₖ − γₖ)(t − t₀)). Steps:

1. shift the window's centre frequency to 0 and low-pass filter (a linear FIR filter
   maps each exponential onto itself, only scaling its amplitude by the filter's
   response at that pole, which is divided out again), then decimate so the pencil
   works on a few hundred samples that cover the window;
2. matrix pencil (Hua & Sarkar 1990): the Hankel matrix of the samples, truncated to
   the singular values above ``rcond`` × the largest, gives the poles exp((i2πf − γ)Δ)
   as the eigenvalues of the shifted signal subspace;
3. amplitudes by least squares on the poles.

Limits: resonances closer in frequency than about 1/(signal duration) merge;
Q is only meaningful while the signal covers a few decay times or enough cycles that
the decay is visible (Q ≲ 10³ · number of recorded periods); a signal with noise
needs the noise below ``rcond`` of the strongest resonance. ``error`` compares each
pole with the nearest pole of a second pencil of a different length: a resonance
that both agree on (error ≪ 1e-3) is real, one they disagree on is noise or a fit
artefact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr


class ResonanceFinder:
    """Find resonances between ``freq_window`` = (f_min, f_max) (Hz). ``rcond``: singular
    values kept relative to the largest (the model order); ``min_amplitude``: drop
    resonances weaker than this fraction of the strongest (noise poles)::

        rf = ms.ResonanceFinder(freq_window=(180e12, 200e12))
        res = rf.run(data["probe"]["Hz"])      # a FieldTimeMonitor component (one point)
        res.freq, res.Q, res.decay, res.amplitude, res.error
    """

    def __init__(self, freq_window: tuple[float, float], rcond: float = 1e-6, min_amplitude: float = 1e-3, max_samples: int = 1500) -> None:
        lo, hi = (float(f) for f in freq_window)
        if not 0 <= lo < hi:
            raise ValueError("freq_window must be (f_min, f_max) with 0 ≤ f_min < f_max (Hz)")
        self.freq_window = (lo, hi)
        self.rcond = rcond
        self.min_amplitude = min_amplitude
        self.max_samples = max_samples

    def run(self, signal: xr.DataArray | xr.Dataset) -> xr.Dataset:
        """Resonances of a time-monitor signal: a DataArray with a ``t`` dimension (s),
        summed over any spatial points it has; a Dataset is summed over its components."""
        if isinstance(signal, xr.Dataset):
            signal = sum(signal[v] for v in signal.data_vars)  # type: ignore[assignment]
        if "t" not in signal.dims:
            raise ValueError("the signal needs a time dimension 't' (a FieldTimeMonitor result)")
        others = [d for d in signal.dims if d != "t"]
        values = np.asarray(signal.sum(others).values) if others else np.asarray(signal.values)
        t = np.asarray(signal.t.values)
        if t.size < 8:
            raise ValueError("the signal needs at least 8 samples")
        steps = np.diff(t)
        if not np.allclose(steps, steps[0], rtol=1e-6):
            raise ValueError("the signal must be sampled at a constant interval")
        return self.run_raw_signal(values, float(steps[0]), t0=float(t[0]))

    def run_raw_signal(self, signal: np.ndarray, time_step: float, t0: float = 0.0) -> xr.Dataset:
        """Resonances of samples ``signal`` taken every ``time_step`` (s) from ``t0`` (s).

        Returns a Dataset on dim ``resonance`` (sorted by frequency): ``freq`` (Hz),
        ``decay`` (1/s, amplitude ∝ e^{−decay·t}), ``Q`` = π·freq/decay, ``amplitude``
        and ``phase`` (rad) at ``t0`` (for a real signal, of the damped cosine), ``error``.
        """
        x = np.asarray(signal)
        real_input = not np.iscomplexobj(x)
        lo, hi = self.freq_window
        centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        n = np.arange(x.size)
        baseband = x * np.exp(-2j * np.pi * centre * n * time_step)
        # Decimate so the new Nyquist frequency is at least twice the window's half
        # width, keeping at least ~200 samples for the pencil.
        factor = max(1, min(int(1 / (4 * half * time_step)), x.size // 200))
        if factor > 1:
            from scipy.signal import firwin

            taps = firwin(8 * factor + 1, cutoff=1.5 * half, fs=1 / time_step)
            filtered = np.convolve(baseband, taps, mode="valid")
            delay = taps.size - 1
        else:
            taps, filtered, delay = np.ones(1), baseband, 0
        y = filtered[::factor][: self.max_samples]
        if y.size < 8:
            raise ValueError("the signal is too short for this frequency window: record longer or widen the window")
        Z = self._pencil(y, y.size // 3)
        check = self._pencil(y, y.size // 2)
        error = np.array([np.min(np.abs(check - z)) / abs(z) for z in Z]) if check.size else np.full(Z.size, np.inf)
        # Amplitudes by least squares on the poles.
        vandermonde = Z[None, :] ** np.arange(y.size)[:, None]
        coef = np.linalg.lstsq(vandermonde, y, rcond=None)[0]
        log_z = np.log(Z) / factor  # per original sample
        z = np.exp(log_z)
        response = np.array([np.sum(taps * zz ** (-np.arange(taps.size))) for zz in z])
        amplitude = coef / (z**delay * response)  # at sample 0 (t0), where the shift is 1
        freq = centre + np.imag(log_z) / (2 * np.pi * time_step)
        decay = -np.real(log_z) / time_step
        keep = (freq >= lo) & (freq <= hi) & (decay > 0)
        strongest = np.max(np.abs(amplitude[keep])) if keep.any() else 0.0
        keep &= np.abs(amplitude) >= self.min_amplitude * strongest
        order = np.argsort(freq[keep])
        freq, decay, amplitude, error = freq[keep][order], decay[keep][order], amplitude[keep][order], error[keep][order]
        scale = 2.0 if real_input else 1.0
        return xr.Dataset(
            {
                "freq": ("resonance", freq),
                "decay": ("resonance", decay),
                "Q": ("resonance", np.pi * freq / decay),
                "amplitude": ("resonance", scale * np.abs(amplitude)),
                "phase": ("resonance", np.angle(amplitude)),
                "error": ("resonance", error),
            },
            attrs={"t0": t0, "freq_window": list(self.freq_window), "method": "matrix pencil"},
        )

    def _pencil(self, y: np.ndarray, pencil: int) -> np.ndarray:
        """Signal poles from the matrix pencil of length ``pencil``."""
        rows = y.size - pencil
        hankel = np.lib.stride_tricks.sliding_window_view(y, pencil + 1)[:rows]
        _, s, vh = np.linalg.svd(hankel, full_matrices=False)
        rank = int(np.sum(s > self.rcond * s[0]))
        if rank == 0:
            return np.zeros(0, dtype=complex)
        v = vh[:rank].T  # rows of H are combinations of [1, z, z², …]: (pencil + 1, rank)
        v1, v2 = v[:-1], v[1:]
        return np.linalg.eigvals(np.linalg.pinv(v1) @ v2)

    def __repr__(self) -> str:
        lo, hi = self.freq_window
        return f"ResonanceFinder(freq_window=({lo:.4g}, {hi:.4g}) Hz, rcond={self.rcond:g})"


def lorentzian_q(freqs: np.ndarray, power: np.ndarray, guess: float | None = None, span: float = 3.0) -> dict[str, Any]:
    """Fit a Lorentzian dip or peak, P(f) = c + A / (1 + (2(f − f₀)/Δf)²), to a
    spectrum (Hz, any power units) within ``span`` half-maximum widths of the
    resonance, and return f0, FWHM, Q = f0/FWHM, the baseline, the depth and the
    rms residual relative to the depth. ``guess``: the resonance frequency to start
    from (default: the point furthest from the median)."""
    from scipy.optimize import curve_fit

    f, p = np.asarray(freqs, float), np.asarray(power, float)
    order = np.argsort(f)  # ascending, whatever order the spectrum came in (wavelength-major is descending)
    f, p = f[order], p[order]
    base = float(np.median(p))
    i = int(np.argmax(np.abs(p - base))) if guess is None else int(np.argmin(np.abs(f - guess)))
    depth = p[i] - base
    # Starting width: where the curve is halfway between the baseline and the extreme.
    halfway = np.nonzero(np.abs(p - base) < 0.5 * abs(depth))[0]
    left, right = halfway[halfway < i], halfway[halfway > i]
    width = (f[right[0]] - f[left[-1]]) if left.size and right.size else (f[-1] - f[0]) / 10

    def model(ff: np.ndarray, c: float, a: float, f0: float, fwhm: float) -> np.ndarray:
        return c + a / (1 + (2 * (ff - f0) / fwhm) ** 2)

    # Only the resonance itself: neighbours and the Airy wings of a ring bias a global fit.
    near = np.abs(f - f[i]) <= span * width
    if np.count_nonzero(near) < 5:
        raise ValueError("fewer than 5 spectrum points within the resonance: sample the spectrum more finely")
    start = f[i]
    f, p = f[near], p[near]
    params, _ = curve_fit(model, f, p, p0=(base, depth, start, width), maxfev=20000)
    c, a, f0, fwhm = params
    fwhm = abs(fwhm)
    residual = float(np.sqrt(np.mean((model(f, *params) - p) ** 2)) / max(abs(a), 1e-300))
    return {"f0": float(f0), "fwhm": float(fwhm), "Q": float(f0 / fwhm), "baseline": float(c), "depth": float(a), "residual": residual}


__all__ = ["ResonanceFinder", "lorentzian_q"]
