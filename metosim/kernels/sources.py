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
from .mesh import MeshedMedia
from .modes import simulation_modes
from .sampling import interior_node
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
    """A dipole of unit current moment: J = s(t) / (volume of the node's Yee cell)."""
    field = src.polarization
    index = tuple(nearest_index(grid, field, a, src.center[a]) for a in range(3))
    volume = grid.node_volume(field, index)  # type: ignore[arg-type]
    n = np.arange(num_steps)
    if field[0] == "E":
        # E update n → n+1 sees J at (n + ½)Δt: E −= cb · J.
        waveform = signal(src.source_time, (n + 0.5) * dt)
        amplitude = -float(cb[index]) / volume  # type: ignore[index]
    else:
        # H update n−½ → n+½ sees M at nΔt: H −= Δt · M.
        waveform = signal(src.source_time, n * dt)
        amplitude = -dt / volume
    return PointInjection(field=field, index=index, amplitude=amplitude, waveform=waveform)  # type: ignore[arg-type]


def curl_sign(p: int, a: int) -> int:
    """s in (∇×H)ₚ ⊃ s·∂ₐH_q, with q the third axis: +1 when (p, a, q) is cyclic."""
    return 1 if (a - p) % 3 == 1 else -1


@dataclass(frozen=True)
class Incident1D:
    """Incident fields from the 1D auxiliary run, per time step n and component
    (x, y, z): complex amplitudes on each component's own Yee node, the transverse
    phase exp(i k_t·r) taken out (real for normal incidence). Normalised units."""

    e: np.ndarray  # (num_steps, 3): E(i0, nΔt)
    h_before: np.ndarray  # (num_steps, 3): H(i0 − ½, (n+½)Δt)
    h_after: np.ndarray  # (num_steps, 3): H(i0 + ½, (n+½)Δt)


def discrete_wavenumber(k: float, dl: float) -> float:
    """What a Yee difference makes of ∂/∂x on exp(ikx): i·K with K = 2 sin(k dl/2)/dl
    (rad/µm), referred to the node the difference lands on."""
    return 2 * np.sin(k * dl / 2) / dl


def incident_1d(
    source_time: GaussianPulse | ContinuousWave, axis: int, sign: int, polarization: np.ndarray, K: np.ndarray, dl: float, dt: float, eps: float, num_steps: int
) -> Incident1D:
    """Run the Yee equations of a plane wave exp(i k_t·r) on a line along ``axis``:
    all six components, the transverse derivatives ∂_b → i·K_b (``K``: discrete
    wavenumbers per axis, 0 along ``axis``), the tangential E of ``polarization``
    driven hard at one node, and sample the wave around an E node 4 cells downstream.

    With K = 0 this is the plain 1D pair (E_p, H_q) of normal incidence. The line is
    long enough (num_steps/2 + 16 cells) that nothing reflected from its far end
    returns to the sampling point within ``num_steps``.
    """
    n = axis
    length = num_steps // 2 + 16
    source_at = 2 if sign > 0 else length - 3
    k0 = source_at + 4 * sign
    dtype = complex if np.any(K) else float
    # E_c on integer nodes along n (E_n on half nodes), H_c on half nodes (H_n integer);
    # a half node j + ½ is stored at j. Ghosts: E past the far end and H before node 0 are 0.
    E = np.zeros((3, length), dtype)
    H = np.zeros((3, length), dtype)
    drive = signal(source_time, np.arange(num_steps + 1) * dt)
    tangential = [c for c in range(3) if c != n]

    def forward(F: np.ndarray) -> np.ndarray:
        return (np.append(F[1:], 0.0) - F) / dl

    def backward(F: np.ndarray) -> np.ndarray:
        return (F - np.concatenate([[0.0], F[:-1]])) / dl

    def derivative(F: np.ndarray, a: int, along_n: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        return along_n(F) if a == n else 1j * K[a] * F if K[a] else np.zeros_like(F)

    def curl(F: np.ndarray, along_n: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """(∇×F)_c = ∂_a F_b − ∂_b F_a, (c, a, b) cyclic."""
        return np.array([derivative(F[(c + 2) % 3], (c + 1) % 3, along_n) - derivative(F[(c + 1) % 3], (c + 2) % 3, along_n) for c in range(3)])

    out_e, out_hb, out_ha = (np.empty((num_steps, 3), dtype) for _ in range(3))
    for c in tangential:
        E[c, source_at] = polarization[c] * drive[0]
    for step in range(num_steps):
        out_e[step] = E[:, k0]
        H = H - dt * curl(E, forward)
        out_hb[step], out_ha[step] = H[:, k0 - 1], H[:, k0]
        E = E + dt / eps * curl(H, backward)
        E[:, 0] = 0.0
        for c in tangential:
            E[c, source_at] = polarization[c] * drive[step + 1]
    return Incident1D(e=out_e, h_before=out_hb, h_after=out_ha)


def transverse_areas(grid: Grid, field: str, slices: tuple[slice, ...], normal: int) -> np.ndarray:
    """Areas (µm², µm in 2D) of the Yee cells of ``field``'s nodes in ``slices``, across ``normal``."""
    area = np.ones(tuple(w.stop - w.start for w in slices))
    for b in range(3):
        if b != normal and grid.active[b]:
            below, above = grid.cell_extent(field, b)
            area = area * (below + above)[slices[b]].reshape([-1 if k == b else 1 for k in range(3)])
    return area


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
    src: PlaneWave | GaussianBeam, grid: Grid, dt: float, eps_background: float, cb: list[np.ndarray], num_steps: int
) -> tuple[list[SheetInjection], Callable[[np.ndarray], np.ndarray]]:
    """The TFSF sheets of a plane wave or Gaussian beam — one per tangential (E_t, H_q)
    pair the wave has: one at normal incidence, two for an oblique wave out of a
    coordinate plane — and its injected power spectrum P(f) (normalised units, f in
    c/µm) for flux normalisation. An oblique wave's profile is exp(i k_t·r) on each
    component's own nodes (complex fields, Bloch boundaries)."""
    n = src.axis
    i0 = interior_node(nearest_index(grid, src.polarization, n, src.center[n]), f"source {src.name or src.type!r}: the injection plane")
    # E on plane i0 sees H across the dual step there; H on i0 − ½ sees E across the
    # cell i0 − 1 → i0, whose step the 1D line takes (a graded grid should be locally
    # uniform at a source plane for an exact TFSF).
    dn = float(grid.primal_steps(n)[i0 - 1])
    dn_dual = float(grid.dual_steps(n)[i0])
    oblique = isinstance(src, PlaneWave) and src.angle_theta > 0
    polarization = np.array(src.polarization_vector if isinstance(src, PlaneWave) else [float(src.polarization == c) for c in ("Ex", "Ey", "Ez")])
    k = np.array(src.wavevector(eps_background)) if oblique else np.zeros(3)  # rad/µm: normalised already
    k[n] = 0.0
    K = np.array([discrete_wavenumber(k[b], float(np.mean(grid.primal_steps(b)))) for b in range(3)])
    inc = incident_1d(src.source_time, n, src.sign, polarization, K, dn, dt, eps_background, num_steps)

    def profile(field: str, slices: tuple[slice, ...]) -> np.ndarray:
        mesh = np.meshgrid(*[grid.component_nodes(field, b)[slices[b]] for b in range(3)], indexing="ij")
        if isinstance(src, GaussianBeam):
            r2 = sum((mesh[b] - src.center[b]) ** 2 for b in range(3) if b != n and grid.active[b])
            return np.exp(-r2 / src.waist_radius**2)
        if oblique:
            return np.exp(1j * sum(k[b] * mesh[b] for b in range(3) if b != n))
        return np.ones(mesh[0].shape)

    sheets, pairs = [], []
    peak = max(np.max(np.abs(inc.e)), 1e-300)
    for t in (c for c in range(3) if c != n):
        q = 3 - n - t
        if np.max(np.abs(inc.e[:, t])) < 1e-9 * peak and np.max(np.abs(inc.h_before[:, q])) < 1e-9 * peak:
            continue  # this pair carries nothing (e.g. H_q of an s-polarised wave)
        e_field, h_field = "E" + "xyz"[t], "H" + "xyz"[q]
        transverse = [_transverse_slice(grid, e_field, b, src.center[b], src.size[b]) for b in range(3)]
        e_slices = tuple(slice(i0, i0 + 1) if b == n else transverse[b] for b in range(3))
        h_slices = tuple(slice(i0 - 1, i0) if b == n else transverse[b] for b in range(3))
        s = curl_sign(t, n)
        sheets.append(
            SheetInjection(
                e_field=e_field,
                h_field=h_field,
                e_slices=e_slices,  # type: ignore[arg-type]
                h_slices=h_slices,  # type: ignore[arg-type]
                e_profile=(-src.sign * s / dn_dual * cb[t][e_slices] * profile(e_field, e_slices))[None],
                # The phase on H's own nodes; a beam's envelope as sampled for E.
                h_profile=(-src.sign * s * dt / dn * profile(h_field if oblique else e_field, h_slices))[None],
                e_waveform=inc.h_before[:, q : q + 1],
                h_waveform=inc.e[:, t : t + 1],
            )
        )
        pairs.append((t, q, 1 if t == (n + 1) % 3 else -1, e_slices, e_field))
    _, _, _, e_slices, e_field = pairs[0]
    weight = float(np.sum(np.abs(profile(e_field, e_slices)) ** 2 * transverse_areas(grid, e_field, e_slices, n)))
    steps = np.arange(num_steps)

    def power(freqs: np.ndarray) -> np.ndarray:
        total = np.zeros(np.shape(freqs))
        for t, q, poynting_sign, _, _ in pairs:
            e = dft(inc.e[:, t], steps * dt, freqs, dt)
            h = dft(0.5 * (inc.h_before[:, q] + inc.h_after[:, q]), (steps + 0.5) * dt, freqs, dt)
            total = total + poynting_sign * 0.5 * np.real(e * np.conj(h))
        return src.sign * total * weight

    return sheets, power


def dipole_power(injection: PointInjection, src: PointDipole, dt: float) -> Callable[[np.ndarray], np.ndarray]:
    """|J(f)|², the spectral density of the dipole's current: flux through a monitor
    is reported relative to it."""
    n = np.arange(injection.waveform.size)
    offset = 0.5 if src.polarization[0] == "E" else 0.0
    return lambda freqs: np.abs(dft(injection.waveform, (n + offset) * dt, freqs, dt)) ** 2


def mode_injection(
    src: ModeSource, where: str, sim, dt: float, media: MeshedMedia, cb: list[np.ndarray], num_steps: int
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
    plane, mode_sets = simulation_modes(sim, src.center, src.size, src.mode_spec, nodes, where, media=media, dt=dt)
    n, (u, v) = plane.normal, plane.axes
    i0 = interior_node(plane.index, f"{where}: the mode plane")
    profiles = _track_mode(mode_sets, src.mode_index, plane, int(np.argmin(np.abs(nodes - f0))), src.sign)
    # H on i0 − ½ sits half the cell i0 − 1 → i0 upstream; E on i0 sees H across the dual step.
    dn, dn_dual = float(grid.primal_steps(n)[i0 - 1]), float(grid.dual_steps(n)[i0])
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
    # A mode at an angle has complex profiles P (its phase across the plane): the real
    # drive Re[P·(w − i·Hw)], with Hw the Hilbert transform of the waveform w, is
    # P·W(f) at every frequency the DFT reads (e^{−iωt}) — a quadrature pair per node.
    quadrature = any(np.iscomplexobj(e[u]) for e, _, _ in profiles)
    if isinstance(st, ContinuousWave):
        # One frequency: the half-cell phase is a time shift; an FFT would wrap the
        # never-ending signal. The quadrature is a quarter period later.
        delay = beta_nodes[0] * dn / (2 * 2 * np.pi * f0)
        lags = (0.0, 0.25 / f0) if quadrature else (0.0,)
        waves = [(signal(st, steps * dt - lag), signal(st, (steps + 0.5) * dt + src.sign * delay - lag)) for lag in lags]
    else:
        size = 2 * num_steps  # zero-padded: the filters shift the pulse by under a step
        f = np.fft.rfftfreq(size, dt)
        spectrum = np.fft.rfft(s_e, size)
        weights = lagrange(f)
        shift = np.exp(1j * (2 * np.pi * f * dt / 2 + src.sign * beta_of(f) * dn / 2))
        turns = (1.0, -1j) if quadrature else (1.0,)
        waves = [(np.fft.irfft(spectrum * w * turn, size)[:num_steps], np.fft.irfft(spectrum * w * shift * turn, size)[:num_steps]) for turn in turns for w in weights]
    parts = (np.real, np.imag) if quadrature else (np.real,)
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
                # E_p(i0) += −sign·s·cb/Δn·H_q,inc(i0 − ½), H_inc = h_q·wave_h; H_q(i0 − ½) −= sign·s·Δt/Δn·E_p,inc(i0).
                e_profile=np.stack([-src.sign * s_pn / dn_dual * cb[p][e_slices] * plane.to_grid(part(h[q])) for part in parts for _, h, _ in profiles]),
                h_profile=np.stack([-src.sign * s_pn * dt / dn * plane.to_grid(part(e[p])) for part in parts for e, _, _ in profiles]),
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


def _track_mode(mode_sets: list, index: int, plane, reference: int, sign: int) -> list[tuple[dict, dict, float]]:
    """Mode ``index`` at the ``reference`` frequency followed to the other frequencies
    by its largest overlap (sign made continuous): per frequency (e, h, β) with e, h
    the transverse profiles of the mode travelling along ``sign`` (±1) the normal,
    keyed by axis — real (a lossless guide's profiles are real once the peak is made
    real) except at an angle."""
    from .modes import reciprocal_overlap

    u, v = plane.axes
    ref = mode_sets[reference]
    e_ref = (ref.E[0][index], ref.E[1][index])
    out = []
    for modes in mode_sets:
        # Against the backward partner's h (−h along the normal): at an angle a forward
        # pair's unconjugated product oscillates across the plane, a partner pair's does not.
        overlaps = np.array([-reciprocal_overlap(e_ref[0], e_ref[1], *modes.backward(m)[1], plane.steps) for m in range(modes.n_eff.size)])
        m = index if modes is ref else int(np.argmax(np.abs(overlaps)))
        angled = modes.E_back is not None
        if angled:  # complex profiles: align the whole phase
            continuous = np.conj(overlaps[m]) / abs(overlaps[m])
        else:
            continuous = 1.0 if np.real(overlaps[m]) >= 0 else -1.0
        e, h = ((modes.E[0][m], modes.E[1][m]), (modes.H[0][m], modes.H[1][m])) if sign > 0 else modes.backward(m)
        part = (lambda F: F) if angled else np.real
        out.append(({u: continuous * part(e[0]), v: continuous * part(e[1])}, {u: continuous * part(h[0]), v: continuous * part(h[1])}, float(np.real(modes.beta[m]))))
    return out
