"""Scattering by a dielectric sphere against the Mie series: the cross-section from the
scattered field (total run minus empty run) through a closed box, over a band."""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.special import spherical_jn, spherical_yn

import metosim as ms

RADIUS, INDEX = 0.4, 1.5  # µm; a glass sphere in vacuum
WAVELENGTHS = np.linspace(0.8, 1.6, 9)  # µm: size parameter 2πr/λ from 3.1 to 1.6
DL, HALF_BOX, PML = 0.025, 0.6, 12  # λ/(n·21) in the sphere at 0.8 µm; box 0.2 µm off the sphere


def mie_efficiency(m: float, x: float) -> float:
    """Scattering efficiency Q = σ/(πr²) of a sphere of relative index ``m`` and size
    parameter ``x`` (Bohren & Huffman, ch. 4), from Riccati–Bessel functions."""
    n = np.arange(1, int(x + 4 * x ** (1 / 3) + 2) + 1)

    def psi(z: float) -> tuple[np.ndarray, np.ndarray]:
        j = spherical_jn(n, z)
        return z * j, j + z * spherical_jn(n, z, derivative=True)

    def xi(z: float) -> tuple[np.ndarray, np.ndarray]:
        h = spherical_jn(n, z) + 1j * spherical_yn(n, z)
        return z * h, h + z * (spherical_jn(n, z, derivative=True) + 1j * spherical_yn(n, z, derivative=True))

    (p_mx, dp_mx), (p_x, dp_x), (x_x, dx_x) = psi(m * x), psi(x), xi(x)
    a = (m * p_mx * dp_x - p_x * dp_mx) / (m * p_mx * dx_x - x_x * dp_mx)
    b = (p_mx * dp_x - m * p_x * dp_mx) / (p_mx * dx_x - m * x_x * dp_mx)
    return float(2 / x**2 * np.sum((2 * n + 1) * (np.abs(a) ** 2 + np.abs(b) ** 2)))


def box_faces() -> list[tuple[int, int, ms.FieldMonitor]]:
    freqs = list(ms.C_0 / (WAVELENGTHS * 1e-6))
    faces = []
    for a in range(3):
        for side in (-1, 1):
            center, size = [0.0, 0.0, 0.0], [2 * HALF_BOX] * 3
            center[a], size[a] = side * HALF_BOX, 0.0
            faces.append((a, side, ms.FieldMonitor(name=f"face_{'xyz'[a]}_{('minus', 'plus')[side > 0]}", center=tuple(center), size=tuple(size), freqs=freqs)))
    return faces


def outward_flux(E: list[np.ndarray], H: list[np.ndarray], a: int, side: int, coords: list[np.ndarray]) -> np.ndarray:
    """½Re(E × H*)·n̂ over one face (trapezoid rule), per frequency; arrays (f, x, y, z)."""
    u, v = (a + 1) % 3, (a + 2) % 3
    s = 0.5 * np.real(E[u] * np.conj(H[v]) - E[v] * np.conj(H[u]))
    weights = np.ones(s.shape[1:])
    for b in (u, v):
        w = np.full(coords[b].size, DL)
        w[[0, -1]] = DL / 2
        weights = weights * w.reshape([-1 if k == b else 1 for k in range(3)])
    return side * np.sum(s * weights, axis=(1, 2, 3))


def test_sphere_scattering_cross_section_matches_mie() -> None:
    faces = box_faces()
    size = 2 * (HALF_BOX + 0.25) + 2 * PML * DL
    f0 = ms.C_0 / 1.1e-6

    def run(structures: list) -> ms.SimulationData:
        return ms.solve(
            ms.Simulation(
                size=(size,) * 3,
                grid_spec=ms.GridSpec.uniform(DL),
                run_time=120e-15,
                structures=structures,
                sources=[ms.PlaneWave(center=(-HALF_BOX - 0.15, 0, 0), size=(0, ms.inf, ms.inf), direction="+x", polarization="Ez", source_time=ms.GaussianPulse(freq0=f0, fwidth=0.35 * f0))],
                monitors=[m for _, _, m in faces],
                boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=PML)),
                shutoff=1e-6,
            )
        )

    empty = run([])
    total = run([ms.Structure(geometry=ms.Sphere(radius=RADIUS), medium=ms.Medium(permittivity=INDEX**2))])

    def fields(data: xr.Dataset, kind: str) -> list[np.ndarray]:
        return [data[f"{kind}{c}"].transpose("f", "x", "y", "z").values for c in "xyz"]

    scattered, incident = 0.0, None
    for a, side, monitor in faces:
        inc, tot = empty[monitor.name], total[monitor.name]
        coords = [inc[c].values for c in "xyz"]
        # Linearity: total − empty is the field the sphere scatters under the same incident field.
        E = [t - i for t, i in zip(fields(tot, "E"), fields(inc, "E"))]
        H = [t - i for t, i in zip(fields(tot, "H"), fields(inc, "H"))]
        scattered = scattered + outward_flux(E, H, a, side, coords)
        if (a, side) == (0, -1):  # the incident intensity: its flux into the box per area
            incident = -outward_flux(fields(inc, "E"), fields(inc, "H"), a, side, coords) / (2 * HALF_BOX) ** 2
    efficiency = scattered / incident / (np.pi * RADIUS**2)
    exact = np.array([mie_efficiency(INDEX, 2 * np.pi * RADIUS / w) for w in WAVELENGTHS])
    error = np.abs(efficiency - exact) / exact
    for w, q, e in zip(WAVELENGTHS, efficiency, exact):
        print(f"λ = {w:.2f} µm: Q = {q:.4f}, Mie {e:.4f} ({(q - e) / e:+.2%})")
    # Bound 3% (issue; Meep's tutorial reports 2.2%); measured at most 1.16% (λ = 0.8 µm),
    # 16 cells across the sphere's radius.
    assert np.max(error) < 0.03
