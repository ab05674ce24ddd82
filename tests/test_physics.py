"""The engine against analytic physics (not against its own earlier output).

Frequencies are multiples of F_UNIT (1 c/µm, λ₀ = 1 µm); tolerances are justified
next to each assertion.
"""

from __future__ import annotations

import numpy as np
import pytest

import metosim as ms
from metosim.grid import EPSILON_0
from metosim.kernels.solver import yee_state

from .conftest import F_UNIT, resonance

PULSE = ms.GaussianPulse(freq0=F_UNIT, fwidth=0.25 * F_UNIT)
BAND = F_UNIT * np.linspace(0.7, 1.3, 13)  # where the pulse carries > 5% of its peak power


def slab_line(structures: list, dl: float = 0.01, **kwargs) -> ms.Simulation:
    """1D line along x: a +x plane wave from x = −2 µm, R plane behind it, T plane at +2.5 µm."""
    return ms.Simulation(
        size=(8.0, 0, 0),
        grid_spec=ms.GridSpec.uniform(dl),
        run_time=150e-15,
        structures=structures,
        sources=[ms.PlaneWave(center=(-2, 0, 0), size=(0, ms.inf, ms.inf), direction="+x", polarization="Ez", source_time=PULSE)],
        monitors=[
            ms.FluxMonitor(name="R", center=(-3, 0, 0), size=(0, ms.inf, ms.inf), freqs=BAND, normal_dir="-"),
            ms.FluxMonitor(name="T", center=(2.5, 0, 0), size=(0, ms.inf, ms.inf), freqs=BAND),
        ],
        boundary_spec=ms.BoundarySpec(x=ms.Boundary(minus=ms.PML(), plus=ms.PML())),
        **kwargs,
    )


def test_vacuum_plane_wave_flux_is_one(backend: str) -> None:
    data = ms.solve(slab_line([]), backend=backend)
    # TFSF with an exact 1D incident field: vacuum transmission equals the injected power
    # to rounding, and nothing travels backwards.
    np.testing.assert_allclose(data["T"].values, 1.0, atol=1e-4)
    assert np.all(np.abs(data["R"].values) < 1e-6)


def test_fresnel_half_space(backend: str) -> None:
    n = 2.0
    half_space = ms.Structure(geometry=ms.Box(center=(2.5, 0, 0), size=(5, ms.inf, ms.inf)), medium=ms.Medium(permittivity=n**2))
    data = ms.solve(slab_line([half_space]), backend=backend)
    r, t = (n - 1) ** 2 / (n + 1) ** 2, 4 * n / (n + 1) ** 2
    # |error| < 0.01 (the bound); at 10 nm cells (≥ 38 cells per wavelength in
    # the n = 2 medium) dispersion errors are ~1e-3.
    assert np.max(np.abs(data["R"].values - r)) < 0.01
    assert np.max(np.abs(data["T"].values - t)) < 0.01
    # Lossless: R + T = 1 up to discretisation of the flux planes.
    np.testing.assert_allclose(data["R"].values + data["T"].values, 1.0, atol=1e-3)


def test_fabry_perot_slab(backend: str) -> None:
    n, d = 1.5, 0.5
    slab = ms.Structure(geometry=ms.Box(center=(d / 2, 0, 0), size=(d, ms.inf, ms.inf)), medium=ms.Medium(permittivity=n**2))
    data = ms.solve(slab_line([slab]), backend=backend)
    f = BAND / F_UNIT  # c/µm, so the free-space wavenumber is 2πf per µm
    r = ((n - 1) / (n + 1)) ** 2
    airy = 1.0 / (1.0 + 4 * r / (1 - r) ** 2 * np.sin(2 * np.pi * n * d * f) ** 2)
    # Bound 0.02 from the issue; the slab faces sit on grid nodes, so subpixel averaging is exact.
    assert np.max(np.abs(data["T"].values - airy)) < 0.02
    assert np.ptp(airy) > 0.1  # the band really spans a fringe


#: A lossless Lorentz medium, n 1.55–1.59 over the band: its faces are averaged at the
#: pulse's centre frequency like a constant medium's (mesh.py), exactly so for E along
#: them at every frequency.
LORENTZ = ms.Lorentz(eps_inf=1.5, poles=[(0.75, 2.5 * F_UNIT, 0.0)])


@pytest.mark.parametrize("medium", [ms.Medium(permittivity=2.25), LORENTZ], ids=["constant", "lorentz"])
def test_fabry_perot_converges_at_second_order_wherever_the_faces_fall(medium) -> None:
    """The slab above moved by 0, ¼ and ½ of a cell at 20 and 10 nm cells: subpixel
    smoothing keeps each face where it is, so the error against Airy is the Yee
    scheme's own dispersion, the same for every placement and falling as Δx²."""
    d, f = 0.5, BAND / F_UNIT
    n = np.sqrt(np.real(medium.eps_model(BAND)))
    r = ((n - 1) / (n + 1)) ** 2
    airy = 1.0 / (1.0 + 4 * r / (1 - r) ** 2 * np.sin(2 * np.pi * n * d * f) ** 2)
    errors = np.zeros((2, 3))
    for i, dl in enumerate((0.02, 0.01)):
        for j, shift in enumerate((0.0, 0.25, 0.5)):
            slab = ms.Structure(geometry=ms.Box(center=(d / 2 + shift * dl, 0, 0), size=(d, ms.inf, ms.inf)), medium=medium)
            errors[i, j] = np.max(np.abs(ms.solve(slab_line([slab], dl=dl))["T"].values - airy))
    print(type(medium).__name__, "errors (20, 10 nm × shifts 0, ¼, ½):", errors)
    # Measured 2.26e-3 and 5.72e-4 at every placement, spread 0.05% and 0.23%, order
    # 1.98 (the cell's own average gave 1.56e-3–2.26e-3 and 4.0e-4–5.7e-4, changing with
    # the placement). LORENTZ: 2.61e-3 and 6.37e-4 at every placement, spread 0.09% and
    # 0.23%, order 2.03; with each pole on its medium's nodes (ε∞ alone smoothed) the
    # face on a node read 2.7e-2 and 1.3e-2 (first order), the others 1.0e-3 and 2.5e-4.
    assert np.max(np.ptp(errors, axis=1) / errors.min(axis=1)) < 5e-3
    assert np.log2(errors[0] / errors[1]).min() > 1.9


def test_drude_half_space_reflection(backend: str) -> None:
    fp, gamma = 2.0 * F_UNIT, 0.05 * F_UNIT
    metal = ms.Structure(geometry=ms.Box(center=(2.5, 0, 0), size=(5, ms.inf, ms.inf)), medium=ms.Drude(poles=[(fp, gamma)]))
    data = ms.solve(slab_line([metal], dl=0.005), backend=backend)
    f = BAND
    eps = 1 - fp**2 / (f**2 + 1j * f * gamma)
    nc = np.sqrt(eps)
    r = np.abs((1 - nc) / (1 + nc)) ** 2
    # The central-difference ADE carries O((ωΔt)²) error in ε(ω); at 5 nm cells
    # (≥ 17 cells per skin depth) that keeps R within 0.01 of the analytic Drude value.
    assert np.max(np.abs(data["R"].values - r)) < 0.01


def test_conductor_skin_depth_and_reflection() -> None:
    """A conducting half-space (ε = 1, σ with σ/(ωε0) = 10 at f0 = 1 c/µm): the field
    decays inside as exp(−x/δ) with 1/δ = (ω/c) Im √(1 + iσ/(ωε0)), and reflects
    |(1 − ñ)/(1 + ñ)|² (Fresnel with the same complex index)."""
    sigma = 10 * 2 * np.pi * F_UNIT * EPSILON_0
    metal = ms.Structure(geometry=ms.Box(center=(2.0, 0, 0), size=(4.0, ms.inf, ms.inf)), medium=ms.Medium(conductivity=sigma))
    sim = slab_line([metal], dl=0.004).updated_copy(
        size=(6.0, 0, 0),
        monitors=[
            ms.FluxMonitor(name="R", center=(-2.5, 0, 0), size=(0, ms.inf, ms.inf), freqs=[F_UNIT], normal_dir="-"),
            ms.FieldMonitor(name="inside", center=(0.15, 0, 0), size=(0.3, 0, 0), freqs=[F_UNIT], fields=["Ez"]),
        ],
    )
    data = ms.solve(sim)
    index = np.sqrt(1 + 1j * sigma / (EPSILON_0 * 2 * np.pi * F_UNIT))
    ez = data["inside"]["Ez"].isel(f=0).squeeze()
    x = ez.x.values
    inside = (x > 0.01) & (x < 0.25)  # 0.13–3.3 skin depths (δ = 75 nm, 19 cells)
    decay = -np.polyfit(x[inside], np.log(np.abs(ez.values[inside])), 1)[0]
    expected = 2 * np.pi * index.imag  # 1/µm
    fresnel = abs((1 - index) / (1 + index)) ** 2
    print(f"decay {decay:.4f}/µm against {expected:.4f} ({decay / expected - 1:+.1e}); R {float(data['R'].values[0]):.5f} against {fresnel:.5f}")
    # Measured +2.6e-4 and 3.1e-4 (the conduction term's O((ωΔt)²) error).
    assert abs(decay / expected - 1) < 1e-3
    assert abs(float(data["R"].values[0]) - fresnel) < 1e-3


def test_slab_resonances_have_the_analytic_q() -> None:
    """A silicon-like slab (n = 3.5, d = 1 µm) in air rings at its Fabry–Perot poles:
    f_m = m c/(2nd) and Q_m = π m / (2 ln(1/|r|)), r = (n − 1)/(n + 1) (the exact poles of
    1/(1 − r² e^{2ikd})), found by harmonic inversion of the ring-down."""
    n, d = 3.5, 1.0
    f1 = F_UNIT / (2 * n * d)
    sim = ms.Simulation(
        size=(6.0, 0, 0),
        grid_spec=ms.GridSpec.uniform(0.005),
        run_time=400e-15,
        structures=[ms.Structure(geometry=ms.Box(size=(d, ms.inf, ms.inf)), medium=ms.Medium(permittivity=n**2))],
        sources=[ms.PointDipole(center=(0.13, 0, 0), polarization="Ez", source_time=ms.GaussianPulse(freq0=5 * f1, fwidth=1.5 * f1))],
        monitors=[ms.FieldTimeMonitor(name="ring", center=(-0.21, 0, 0), size=(0, 0, 0), start=60e-15, interval=4, fields=["Ez"])],
        boundary_spec=ms.BoundarySpec(x=ms.Boundary()),
        shutoff=0,
    )
    found = ms.ResonanceFinder(freq_window=(3.5 * f1, 6.5 * f1)).run(ms.solve(sim)["ring"]["Ez"])
    orders = np.round(found.freq.values / f1)
    assert list(orders) == [4, 5, 6]
    q = np.pi * orders / (2 * np.log((n + 1) / (n - 1)))
    print(f"f/f_m − 1: {found.freq.values / (orders * f1) - 1}; Q {found.Q.values} against {q}")
    # Measured: f within 3.4e-4 (the grid's dispersion at 57 cells per wavelength in the
    # slab), Q within 4.2e-4.
    np.testing.assert_allclose(found.freq.values, orders * f1, rtol=1e-3)
    np.testing.assert_allclose(found.Q.values, q, rtol=1.5e-3)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_lorentzian_fit_recovers_a_dip_in_either_frequency_order(order: str) -> None:
    """``ms.lorentzian_q`` on an exact Lorentzian dip (a ring's through port near one
    resonance) beside a second one, sampled in frequency order or, as a wavelength-major
    spectrum comes, in reverse: f0, Q and the depth come back exactly."""
    f = np.linspace(190e12, 200e12, 401)
    f0, q, other = 194.3e12, 2500.0, 198.6e12

    def dip(centre: float, quality: float, depth: float) -> np.ndarray:
        return depth / (1 + (2 * (f - centre) / (centre / quality)) ** 2)

    power = 0.98 - dip(f0, q, 0.6) - dip(other, 800.0, 0.5)
    if order == "descending":
        f, power = f[::-1], power[::-1]
    fit = ms.lorentzian_q(f, power, guess=194.2e12)
    print(fit)
    # Within the fit's window the neighbour's tail adds a slowly varying term: measured
    # errors 1e-8 (f0), 3e-5 (Q) and 4e-6 (depth).
    assert abs(fit["f0"] / f0 - 1) < 1e-6 and abs(fit["Q"] / q - 1) < 1e-3 and abs(-fit["depth"] / 0.6 - 1) < 1e-3


def pec_cavity(dl: float, run_time_units: float, precision: str = "float64", **monitors) -> ms.Simulation:
    """2D 1.0 × 0.8 µm PEC box, TM (Ez) dipole off-centre, pulse around TM₁₁."""
    f11 = 0.5 * np.hypot(1 / 1.0, 1 / 0.8) * F_UNIT
    pulse = ms.GaussianPulse(freq0=f11, fwidth=0.3 * f11)
    return ms.Simulation(
        size=(1.0, 0.8, 0),
        grid_spec=ms.GridSpec.uniform(dl),
        run_time=run_time_units * 1e-6 / ms.C_0,
        sources=[ms.PointDipole(center=(0.13, 0.07, 0), polarization="Ez", source_time=pulse)],
        monitors=list(monitors.values()),
        boundary_spec=ms.BoundarySpec.all_sides(ms.PECBoundary()),
        precision=precision,
        shutoff=0,
    )


F11 = 0.5 * np.hypot(1 / 1.0, 1 / 0.8) * F_UNIT


def cavity_frequency(dl: float, backend: str) -> float:
    source_end = pec_cavity(dl, 1).sources[0].source_time.end_time
    probe = ms.FieldTimeMonitor(name="probe", center=(0.31, 0.23, 0), size=(0, 0, 0), start=source_end, fields=("Ez",))
    data = ms.solve(pec_cavity(dl, 40.0, probe=probe), backend=backend)
    ez = data["probe"]["Ez"]
    return resonance(ez.t.values, ez.values.ravel(), F11)


def test_pec_cavity_resonance(backend: str) -> None:
    f = cavity_frequency(0.02, backend)
    # Analytic TM₁₁ of a 1.0 × 0.8 µm PEC box: f = c/2·√(1/a² + 1/b²); bound 0.5% (issue).
    assert abs(f - F11) / F11 < 5e-3


def test_second_order_convergence() -> None:
    cells = np.array([0.1, 0.05, 0.025])  # errors stay well above the estimator's ~1e-6 floor
    errors = np.array([abs(cavity_frequency(dl, "jax") - F11) / F11 for dl in cells])
    order = np.polyfit(np.log(cells), np.log(errors), 1)[0]
    # Yee's scheme is second order in space and time on this smooth (interface-free) case.
    assert 1.8 < order < 2.2, (errors, order)


def test_pec_cavity_conserves_energy() -> None:
    dl, steps_end = 0.02, 10_000
    sim = pec_cavity(dl, 160.0)
    assert sim.grid.num_time_steps >= steps_end + 1
    start = int(np.ceil(sim.sources[0].source_time.end_time / sim.grid.dt)) + 1

    def invariant(n: int) -> float:
        # The discrete Yee energy ε|Eⁿ|² + Hⁿ⁻½·Hⁿ⁺½ is exactly conserved by the scheme.
        now, nxt = yee_state(sim, n, "jax"), yee_state(sim, n + 1, "jax")
        electric = sum(np.sum(e * E * E) for e, E in zip(now["eps"], now["E"]))
        return float(electric + sum(np.sum(a * b) for a, b in zip(now["H"], nxt["H"])))

    w0, w1 = invariant(start), invariant(start + steps_end - 1)
    assert w0 > 0
    # Bound 1e-4 over 10k steps in float64 (issue). Measured: 7e-7 from end_time, all of
    # it the pulse tail (≈ e^{-offset²/2} of its peak) still injecting; starting 2000
    # steps later the invariant is constant to the last bit (drift 0.0).
    assert abs(w1 - w0) / w0 < 1e-4


def test_pml_reflection_against_large_domain() -> None:
    """A dipole in a 2 µm box with a 12-layer CPML versus the same dipole in a box so
    large that its boundary's echo cannot reach the probe within the run."""
    pulse = ms.GaussianPulse(freq0=F_UNIT, fwidth=0.4 * F_UNIT)
    run_time = 8.0 * 1e-6 / ms.C_0

    def run(size: float) -> np.ndarray:
        sim = ms.Simulation(
            size=(size, size, 0),
            grid_spec=ms.GridSpec.uniform(0.02),
            run_time=run_time,
            sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=pulse)],
            monitors=[ms.FieldTimeMonitor(name="probe", center=(0.5, 0.3, 0), size=(0, 0, 0), fields=("Ez",))],
            boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=12)),
            shutoff=0,
        )
        return ms.solve(sim, backend="jax")["probe"]["Ez"].values.ravel()

    small, reference = run(2.48), run(12.0)
    error = np.max(np.abs(small - reference)) / np.max(np.abs(reference))
    # Bound 1e-3 (issue): the echo of the small box's CPML relative to the direct field.
    assert error < 1e-3, error
