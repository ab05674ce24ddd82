"""Source kernels: time signals, injection points/sheets and source power spectra.

Point dipoles are soft currents on one Yee node. Plane waves and Gaussian beams are
total-field/scattered-field (TFSF) sheets: the incident field on the sheet comes
from a 1D Yee run with the same cell, time step and background, so the injected
wave is an exact discrete solution and nothing leaks backwards in a homogeneous
background.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..grid import Grid
from ..source import ContinuousWave, GaussianBeam, GaussianPulse, ModeSource, PlaneWave, PointDipole
from .modes import simulation_modes
from .units import to_normalised_frequency, to_normalised_time


def signal(source_time: GaussianPulse | ContinuousWave, t: np.ndarray) -> np.ndarray:
    """Source amplitude at normalised times ``t`` (µm/c)."""
    w0 = 2 * np.pi * to_normalised_frequency(source_time.freq0)
    tau = to_normalised_time(source_time.tau)
    t0 = source_time.offset * tau
    envelope = np.exp(-((t - t0) ** 2) / (2 * tau**2))
    if isinstance(source_time, ContinuousWave):
        envelope = np.where(t < t0, envelope, 1.0)
    # sin, not cos: odd about t0, so the pulse carries no DC component that would
    # leave a static field behind (which no PML absorbs).
    return envelope * np.sin(w0 * (t - t0))


def dft(values: np.ndarray, times: np.ndarray, freqs: np.ndarray, dt: float) -> np.ndarray:
    """Σₙ vₙ e^{i2πf tₙ} Δt of a signal ``values`` (normalised units), summed between
    its first and last non-zero sample (a pulse is exactly zero long before a run
    ends: the same sum for a fraction of the work)."""
    nonzero = np.flatnonzero(values)
    if nonzero.size == 0:
        return np.zeros(np.shape(freqs), dtype=complex)
    keep = slice(nonzero[0], nonzero[-1] + 1)
    return np.exp(2j * np.pi * np.outer(freqs, times[keep])) @ values[keep] * dt


@dataclass(frozen=True)
class PointInjection:
    """A soft current on one node: ``field[index] += amplitude · waveform[n]`` at step n."""

    field: str
    index: tuple[int, int, int]
    amplitude: float
    waveform: np.ndarray


@dataclass(frozen=True)
class SheetInjection:
    """A TFSF sheet along ``axis``: at step n, ``e_field[e_slices] += Σₖ e_waveform[n, k] ·
    e_profile[k]`` (on the E-node plane i0) and likewise for ``h_field`` on the H-node
    plane i0 − ½: K profiles (shape (K, *slice)), each with its own waveform (num_steps, K)."""

    e_field: str
    h_field: str
    e_slices: tuple[slice, slice, slice]
    h_slices: tuple[slice, slice, slice]
    e_profile: np.ndarray
    h_profile: np.ndarray
    e_waveform: np.ndarray  # H_inc(i0 − ½, (n + ½)Δt)
    h_waveform: np.ndarray  # E_inc(i0, nΔt)


def nearest_index(grid: Grid, field: str, axis: int, position: float) -> int:
    nodes = grid.component_nodes(field, axis)
    return int(np.argmin(np.abs(nodes - position)))


def point_injection(src: PointDipole, grid: Grid, dt: float, cb: np.ndarray | None, num_steps: int) -> PointInjection:
    """A dipole of unit current moment: J = s(t) / (cell volume)."""
    field = src.polarization
    index = tuple(nearest_index(grid, field, a, src.center[a]) for a in range(3))
    n = np.arange(num_steps)
    if field[0] == "E":
        # E update n → n+1 sees J at (n + ½)Δt: E −= cb · J.
        waveform = signal(src.source_time, (n + 0.5) * dt)
        amplitude = -float(cb[index]) / grid.cell_volume  # type: ignore[index]
    else:
        # H update n−½ → n+½ sees M at nΔt: H −= Δt · M.
        waveform = signal(src.source_time, n * dt)
        amplitude = -dt / grid.cell_volume
    return PointInjection(field=field, index=index, amplitude=amplitude, waveform=waveform)  # type: ignore[arg-type]


def curl_sign(p: int, a: int) -> int:
    """s in (∇×H)ₚ ⊃ s·∂ₐH_q, with q the third axis: +1 when (p, a, q) is cyclic."""
    return 1 if (a - p) % 3 == 1 else -1


@dataclass(frozen=True)
class Incident1D:
    """Incident fields from the 1D auxiliary run, per time step n (normalised units)."""

    e: np.ndarray  # E_p(i0, nΔt)
    h_before: np.ndarray  # H_q(i0 − ½, (n+½)Δt)
    h_after: np.ndarray  # H_q(i0 + ½, (n+½)Δt)


def incident_1d(source_time: GaussianPulse | ContinuousWave, sign: int, s: int, dl: float, dt: float, eps: float, num_steps: int) -> Incident1D:
    """Run the 1D Yee pair (E_p, H_q) along the propagation axis with a hard source and
    sample the wave two half-cells around an E node 4 cells downstream.

    The line is long enough (num_steps/2 + 16 cells) that nothing reflected from its
    far end returns to the sampling point within ``num_steps``.
    """
    length = num_steps // 2 + 16
    source_at = 2 if sign > 0 else length - 3
    k0 = source_at + 4 * sign
    e = np.zeros(length)
    h = np.zeros(length)  # h[i] at node i + ½; h[length − 1] has a PEC ghost beyond it
    ce, ch = dt / eps / dl, dt / dl
    drive = signal(source_time, np.arange(num_steps + 1) * dt)
    out_e, out_hb, out_ha = np.empty(num_steps), np.empty(num_steps), np.empty(num_steps)
    e[source_at] = drive[0]
    for n in range(num_steps):
        out_e[n] = e[k0]
        h[:-1] += s * ch * (e[1:] - e[:-1])
        h[-1] += s * ch * (0.0 - e[-1])
        out_hb[n], out_ha[n] = h[k0 - 1], h[k0]
        e[1:] += s * ce * (h[1:] - h[:-1])
        e[0] = 0.0
        e[source_at] = drive[n + 1]
    return Incident1D(e=out_e, h_before=out_hb, h_after=out_ha)


def _transverse_slice(grid: Grid, field: str, axis: int, center: float, size: float) -> slice:
    nodes = grid.component_nodes(field, axis)
    if not grid.active[axis]:
        return slice(0, 1)
    inside = np.nonzero(np.abs(nodes - center) <= size / 2 + 1e-9 * grid.dl[axis])[0]
    if inside.size == 0:
        i = nearest_index(grid, field, axis, center)
        return slice(i, i + 1)
    return slice(int(inside[0]), int(inside[-1]) + 1)


def sheet_injection(
    src: PlaneWave | GaussianBeam, grid: Grid, dt: float, eps_background: float, cb: np.ndarray, num_steps: int
) -> tuple[SheetInjection, Callable[[np.ndarray], np.ndarray]]:
    """The TFSF sheet of a plane wave or Gaussian beam, and its injected power
    spectrum P(f) (normalised units, f in c/µm) for flux normalisation."""
    a, p = src.axis, "xyz".index(src.polarization[1])
    q = 3 - a - p
    e_field, h_field = src.polarization, "H" + "xyz"[q]
    s = curl_sign(p, a)
    i0 = nearest_index(grid, e_field, a, src.center[a])
    if i0 < 1:
        raise ValueError(f"source {src.name or src.type!r}: the injection plane must be at least one cell inside the domain")
    transverse = [_transverse_slice(grid, e_field, b, src.center[b], src.size[b]) for b in range(3)]
    e_slices = tuple(slice(i0, i0 + 1) if b == a else transverse[b] for b in range(3))
    h_slices = tuple(slice(i0 - 1, i0) if b == a else transverse[b] for b in range(3))
    mesh = np.meshgrid(*[grid.component_nodes(e_field, b)[e_slices[b]] for b in range(3)], indexing="ij")
    if isinstance(src, GaussianBeam):
        r2 = sum((mesh[b] - src.center[b]) ** 2 for b in range(3) if b != a and grid.active[b])
        profile = np.exp(-r2 / src.waist_radius**2)
    else:
        profile = np.ones(mesh[0].shape)
    dl = grid.dl[a]
    inc = incident_1d(src.source_time, src.sign, s, dl, dt, eps_background, num_steps)
    sheet = SheetInjection(
        e_field=e_field,
        h_field=h_field,
        e_slices=e_slices,  # type: ignore[arg-type]
        h_slices=h_slices,  # type: ignore[arg-type]
        e_profile=(-src.sign * s / dl * cb[e_slices] * profile)[None],
        h_profile=(-src.sign * s * dt / dl * profile)[None],
        e_waveform=inc.h_before[:, None],
        h_waveform=inc.e[:, None],
    )
    transverse_area = grid.cell_volume / dl
    weight = float(np.sum(profile**2)) * transverse_area
    poynting_sign = 1 if p == (a + 1) % 3 else -1
    n = np.arange(num_steps)

    def power(freqs: np.ndarray) -> np.ndarray:
        e = dft(inc.e, n * dt, freqs, dt)
        h = dft(0.5 * (inc.h_before + inc.h_after), (n + 0.5) * dt, freqs, dt)
        return src.sign * poynting_sign * 0.5 * np.real(e * np.conj(h)) * weight

    return sheet, power


def dipole_power(injection: PointInjection, src: PointDipole, dt: float) -> Callable[[np.ndarray], np.ndarray]:
    """|J(f)|², the spectral density of the dipole's current: flux through a monitor
    is reported relative to it."""
    n = np.arange(injection.waveform.size)
    offset = 0.5 if src.polarization[0] == "E" else 0.0
    return lambda freqs: np.abs(dft(injection.waveform, (n + offset) * dt, freqs, dt)) ** 2


def mode_injection(
    src: ModeSource, where: str, sim, dt: float, permittivity: tuple[np.ndarray, ...], cb: list[np.ndarray], num_steps: int
) -> tuple[list[SheetInjection], Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """The two TFSF sheets (one per transverse (E, H) pair, each with a profile per
    frequency node) that launch mode
    ``src.mode_index`` along ``src.direction``, the injected mode's complex amplitude
    spectrum A(f) (its power is |A|², in the unit-power mode normalisation), and the
    power spectrum a FluxMonitor normalises by.

    The incident field on the E plane i0 is E(f) = e(f)·S(f) and on the H plane half a
    cell upstream H(f) = ±h(f)·S(f)·exp(i(ωΔt/2 ± β(f)Δn/2)) (half a time step later,
    half a cell's phase earlier), with e, h, β the grid's own mode. The profile's
    frequency dependence is interpolated through ``num_freqs`` Chebyshev nodes over the
    pulse band (f0 ± 2·fwidth) by Lagrange polynomials, each node's profile driven
    by the pulse filtered with its polynomial (one FFT per node); one node keeps the
    f0 profile, with β(f) linear through the group index.
    """
    grid = sim.grid
    st = src.source_time
    f0, fw = to_normalised_frequency(st.freq0), to_normalised_frequency(st.fwidth)
    K = src.num_freqs
    nodes = f0 + 2 * fw * np.cos((2 * np.arange(K) + 1) * np.pi / (2 * K)) if K > 1 else np.array([f0])
    nodes = np.maximum(nodes, 0.05 * f0)
    plane, mode_sets = simulation_modes(sim, src.center, src.size, src.mode_spec, nodes, where, permittivity=permittivity, dt=dt)
    n, (u, v) = plane.normal, plane.axes
    i0 = plane.index
    if i0 < 1:
        raise ValueError(f"{where}: the mode plane must be at least one cell inside the domain")
    profiles = _track_mode(mode_sets, src.mode_index, plane, int(np.argmin(np.abs(nodes - f0))))
    dn = grid.dl[n]
    beta_nodes = np.array([p[2] for p in profiles])

    def lagrange(f: np.ndarray) -> np.ndarray:
        """(K, len(f)) Lagrange basis on the nodes, held constant outside f0 ± 3·fwidth."""
        f = np.clip(f, f0 - 3 * fw, f0 + 3 * fw)
        basis = np.ones((K, f.size))
        for k in range(K):
            for j in range(K):
                if j != k:
                    basis[k] *= (f - nodes[j]) / (nodes[k] - nodes[j])
        return basis

    k_centre = int(np.argmin(np.abs(nodes - f0)))
    n_group = float(np.real(mode_sets[k_centre].n_group[src.mode_index]))

    def beta_of(f: np.ndarray) -> np.ndarray:
        if K == 1:
            return beta_nodes[0] + n_group * 2 * np.pi * (f - nodes[0])
        return lagrange(f).T @ beta_nodes

    steps = np.arange(num_steps)
    s_e = signal(st, steps * dt)
    if isinstance(st, ContinuousWave):
        # One frequency: the half-cell phase is a time shift; an FFT would wrap the
        # never-ending signal.
        delay = beta_nodes[0] * dn / (2 * 2 * np.pi * f0)
        waves = [(s_e, signal(st, (steps + 0.5) * dt + src.sign * delay))]
    else:
        size = 2 * num_steps  # zero-padded: the filters shift the pulse by under a step
        f = np.fft.rfftfreq(size, dt)
        spectrum = np.fft.rfft(s_e, size)
        weights = lagrange(f)
        shift = np.exp(1j * (2 * np.pi * f * dt / 2 + src.sign * beta_of(f) * dn / 2))
        waves = [(np.fft.irfft(spectrum * w, size)[:num_steps], np.fft.irfft(spectrum * w * shift, size)[:num_steps]) for w in weights]
    sheets = []
    for p, q in ((u, v), (v, u)):
        s_pn = curl_sign(p, n)
        window = list(plane.window)
        window[n] = slice(i0, i0 + 1)
        e_slices = tuple(window)
        window[n] = slice(i0 - 1, i0)
        h_slices = tuple(window)
        sheets.append(
            SheetInjection(
                e_field="E" + "xyz"[p],
                h_field="H" + "xyz"[q],
                e_slices=e_slices,  # type: ignore[arg-type]
                h_slices=h_slices,  # type: ignore[arg-type]
                # E_p(i0) += −s·cb/Δn·H_q,inc(i0 − ½) with H_inc = sign·h_q·wave_h: the signs cancel.
                e_profile=np.stack([-s_pn / dn * cb[p][e_slices] * plane.to_grid(h[q]) for _, h, _ in profiles]),
                h_profile=np.stack([-src.sign * s_pn * dt / dn * plane.to_grid(e[p]) for e, _, _ in profiles]),
                e_waveform=np.stack([wave_h for _, wave_h in waves], axis=1),
                h_waveform=np.stack([wave_e for wave_e, _ in waves], axis=1),
            )
        )

    def amplitude(freqs: np.ndarray) -> np.ndarray:
        return dft(s_e, steps * dt, freqs, dt)

    def power(freqs: np.ndarray) -> np.ndarray:
        # What a FluxMonitor reads for this wave: it averages H from the two half
        # nodes around its plane, which scales a mode's flux by cos(βΔn/2).
        return np.abs(amplitude(freqs)) ** 2 * np.cos(beta_of(freqs) * dn / 2)

    return sheets, amplitude, power


def _track_mode(mode_sets: list, index: int, plane, reference: int) -> list[tuple[dict, dict, float]]:
    """Mode ``index`` at the ``reference`` frequency followed to the other frequencies
    by its largest overlap (sign made continuous): per frequency (e, h, β) with e, h
    real transverse profiles keyed by axis (a lossless guide's profiles are real once
    the peak is made real)."""
    from .modes import reciprocal_overlap

    u, v = plane.axes
    ref = mode_sets[reference]
    e_ref = (ref.E[0][index], ref.E[1][index])
    out = []
    for modes in mode_sets:
        overlaps = np.array([reciprocal_overlap(e_ref[0], e_ref[1], modes.H[0][m], modes.H[1][m], plane.steps) for m in range(modes.n_eff.size)])
        m = index if modes is ref else int(np.argmax(np.abs(overlaps)))
        sign = 1.0 if np.real(overlaps[m]) >= 0 else -1.0
        e = {u: sign * np.real(modes.E[0][m]), v: sign * np.real(modes.E[1][m])}
        h = {u: sign * np.real(modes.H[0][m]), v: sign * np.real(modes.H[1][m])}
        out.append((e, h, float(np.real(modes.beta[m]))))
    return out
