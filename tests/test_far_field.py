"""Far-field projection against the analytic dipoles: the sin²θ pattern and the
radiated power k²η/(12π) of a unit electric current moment, in vacuum and in glass,
and k²/(12πη) of a unit magnetic one; in 2D the line current's isotropic pattern and
power kη/8, the in-plane line dipole's sin²φ."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

import metosim as ms

F = ms.C_0 / 1e-6  # 1 c/µm: λ₀ = 1 µm


def flux_box(half: float, planar: bool = False) -> list[ms.FluxMonitor]:
    """Outward flux monitors on the faces of the cube (square in 2D) of half-side ``half`` µm."""
    monitors = []
    for a in range(2 if planar else 3):
        for side in ("-", "+"):
            center, size = [0.0, 0.0, 0.0], [2 * half, 2 * half, 0.0 if planar else 2 * half]
            center[a], size[a] = (half if side == "+" else -half), 0.0
            monitors.append(ms.FluxMonitor(name=f"box_{'xyz'[a]}{'mp'[side == '+']}", center=tuple(center), size=tuple(size), freqs=[F], normal_dir=side))
    return monitors


def box_power(data: ms.SimulationData) -> float:
    return sum(float(data[name].values[0]) for name in data if name.startswith("box_"))


def dipole_far_field(n: float, polarization: str = "Ez") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """A z dipole (electric Ez or magnetic Hz) at the centre of a cube of 2.4/n µm (λ/25 cells in the medium) in a
    medium of index n, projected from a box of 1.2/n µm; θ on Gauss–Legendre nodes in
    cos θ. Scaling the geometry with the wavelength keeps the grid's accuracy alike."""
    cos_theta, weights = np.polynomial.legendre.leggauss(16)
    theta = np.arccos(cos_theta)
    phi = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    sim = ms.Simulation(
        size=(2.4 / n,) * 3,
        grid_spec=ms.GridSpec.uniform(0.04 / n),
        run_time=60e-15,
        medium=ms.Medium(permittivity=n**2),
        sources=[ms.PointDipole(center=(0, 0, 0), polarization=polarization, source_time=ms.GaussianPulse(freq0=F, fwidth=0.2 * F))],
        monitors=[ms.FieldProjectionAngleMonitor(name="far", size=(1.2 / n,) * 3, freqs=[F], theta=theta, phi=phi), *flux_box(0.6 / n)],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=10)),
        precision="float64",
    )
    data = ms.solve(sim)
    return data["far"].power.isel(f=0).values, theta, phi, weights, box_power(data)


@pytest.mark.parametrize("cells", [15.0, 15.3, 15.5, 15.7])
def test_boxes_between_nodes_close_and_measure_the_dipole_power(cells: float) -> None:
    """A projection box and a flux box whose half-width falls on, near and midway
    between nodes: each face snaps to its nearest node and the faces meet there. Before,
    the trapezoid halves applied only on a node, so faces overlapped or left gaps: here
    +8.0% (projection) and +4.0% (flux box) at 15.3 cells, −7.0% and −3.2% at 15.7."""
    dl, half = 0.04, cells * 0.04
    cos_theta, weights = np.polynomial.legendre.leggauss(16)
    phi = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    sim = ms.Simulation(
        size=(2.4, 2.4, 2.4),
        grid_spec=ms.GridSpec.uniform(dl),
        run_time=60e-15,
        sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=ms.GaussianPulse(freq0=F, fwidth=0.2 * F))],
        monitors=[ms.FieldProjectionAngleMonitor(name="far", size=(2 * half,) * 3, freqs=[F], theta=np.arccos(cos_theta), phi=phi), *flux_box(half)],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=10)),
        precision="float64",
    )
    data = ms.solve(sim)
    total = float(np.sum(weights[:, None] * data["far"].power.isel(f=0).values) * (2 * np.pi / phi.size))
    analytic = (2 * np.pi) ** 2 / (12 * np.pi)
    box = box_power(data)
    print(f"half-width {cells} cells: projection {total / analytic - 1:+.2%}, flux box {box / analytic - 1:+.2%} against k²η/(12π)")
    # Bounds 0.3% and 1% (measured |−0.09%| at most and +0.27…0.29%).
    assert abs(total - analytic) / analytic < 0.003 and abs(box - analytic) / analytic < 0.01


@pytest.mark.parametrize(("n", "polarization"), [(1.0, "Ez"), (1.5, "Ez"), (1.5, "Hz")])
def test_dipole_pattern_and_radiated_power(n: float, polarization: str) -> None:
    power, theta, phi, weights, box = dipole_far_field(n, polarization)
    # ∮ U dΩ with Gauss–Legendre in cos θ and the uniform φ rule (exact for this pattern).
    total = float(np.sum(weights[:, None] * power) * (2 * np.pi / phi.size))
    k = 2 * np.pi * n  # 1/µm
    # η k² / (12π) per unit electric current moment, k² / (12π η) per unit magnetic
    # one (duality), η = 1/n: the medium tells them apart (2.25× at n = 1.5).
    analytic = k**2 / n / (12 * np.pi) if polarization == "Ez" else k**2 * n / (12 * np.pi)
    print(f"{polarization}, n = {n}: radiated {total:.5f}, analytic {analytic:.5f}, flux box {box:.5f}")
    # The projection against the flux through the same box: bound 1% (measured 0.36% at
    # both indices; the README says 0.4%).
    assert abs(total - box) / box < 0.01
    # A unit dipole normalised, as flux monitors are, to |J(f)|² (or |M(f)|²). Electric:
    # bound 0.3% (measured 0.087% in vacuum, 0.008% at n = 1.5). Magnetic: bound 1.5%
    # (measured +0.73%; the flux box +0.40%, bound 1%).
    assert abs(total - analytic) / analytic < (0.003 if polarization == "Ez" else 0.015)
    assert abs(box - analytic) / analytic < 0.01
    # The pattern: sin²θ within 2% (grid anisotropy at λ/25), independent of φ.
    shape = power / power.max()
    np.testing.assert_allclose(shape, np.broadcast_to((np.sin(theta) ** 2 / np.max(np.sin(theta) ** 2))[:, None], shape.shape), atol=0.02)
    assert np.max(np.ptp(power, axis=1) / power.max()) < 5e-3


def line_source_far_field(n: float, polarization: str) -> ms.SimulationData:
    """A 2D (z-invariant) line source at the centre of a 2.4/n µm square, projected
    from the four sides of a 1.2/n µm square; φ uniform (the rule is exact here)."""
    phi = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    pml = ms.Boundary(minus=ms.PML(num_layers=10), plus=ms.PML(num_layers=10))
    sim = ms.Simulation(
        size=(2.4 / n, 2.4 / n, 0),
        grid_spec=ms.GridSpec.uniform(0.04 / n),
        run_time=60e-15,
        medium=ms.Medium(permittivity=n**2),
        sources=[ms.PointDipole(center=(0, 0, 0), polarization=polarization, source_time=ms.GaussianPulse(freq0=F, fwidth=0.2 * F))],
        monitors=[ms.FieldProjectionAngleMonitor(name="far", size=(1.2 / n, 1.2 / n, 0), freqs=[F], theta=[np.pi / 2], phi=phi), *flux_box(0.6 / n, planar=True)],
        boundary_spec=ms.BoundarySpec(x=pml, y=pml),
        precision="float64",
    )
    return ms.solve(sim)


@pytest.mark.parametrize("n", [1.0, 1.5])
def test_line_current_radiates_isotropically_with_the_analytic_power(n: float) -> None:
    data = line_source_far_field(n, "Ez")
    power, phi = data["far"].power.isel(f=0, theta=0).values, data["far"].phi.values
    total = float(np.sum(power) * 2 * np.pi / phi.size)
    analytic = 2 * np.pi * n / n / 8  # η k / 8 per unit line current, η = 1/n
    box = box_power(data)
    print(f"n = {n}: radiated {total:.5f}, analytic {analytic:.5f}, flux box {box:.5f}, anisotropy {np.ptp(power) / power.max():.4f}")
    # The projection against the flux through the same square: bound 1.4% (measured 0.46%).
    assert abs(total - box) / box < 0.014
    # Bound 0.8% (measured 0.20% in vacuum, 0.28% at n = 1.5; the README says 0.3%);
    # isotropic to 1% (measured 0.34%, 0.27%; the README says 0.4%).
    assert abs(total - analytic) / analytic < 0.008
    assert np.ptp(power) / power.max() < 0.01


def test_in_plane_line_dipole_has_the_sin2_pattern() -> None:
    data = line_source_far_field(1.0, "Ex")
    power, phi = data["far"].power.isel(f=0, theta=0).values, data["far"].phi.values
    ax = data.plot_far_field("far")
    assert ax.name == "polar" and "per rad in the xy plane" in ax.get_title()
    total = float(np.sum(power) * 2 * np.pi / phi.size)
    # Half the line current's power: the in-plane dipole radiates ∝ sin²φ (mean ½).
    assert abs(total - 2 * np.pi / 16) / (2 * np.pi / 16) < 0.01  # measured 0.08%
    np.testing.assert_allclose(power / power.max(), np.sin(phi) ** 2, atol=0.02)  # measured 0.004


def test_far_field_reads_back_and_plots(tmp_path) -> None:
    sim = ms.Simulation(
        size=(1.6, 1.6, 1.6), grid_spec=ms.GridSpec.uniform(0.05), run_time=30e-15,
        sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ex", source_time=ms.GaussianPulse(freq0=F, fwidth=0.2 * F))],
        monitors=[ms.FieldProjectionAngleMonitor(name="far", size=(0.8, 0.8, 0.8), freqs=[F], theta=np.linspace(0, np.pi, 13), phi=[0.0, np.pi / 2])],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=8)),
    )
    data = ms.solve(sim)
    far = data["far"]
    # H = r̂ × E / η in the far field.
    np.testing.assert_allclose(far.Hphi.values, far.Etheta.values, rtol=1e-12)
    data.to_hdf5(str(tmp_path / "far.h5"))
    again = ms.SimulationData.from_hdf5(str(tmp_path / "far.h5"))
    np.testing.assert_array_equal(again["far"].power.values, far.power.values)
    assert again["far"].attrs["power_per"] == "per_sr"  # what the plot reads back
    ax = data.plot_far_field("far", phi=np.pi / 2)
    assert ax.name == "polar" and "φ = 90°" in ax.get_title()
    # An x dipole radiates nothing along x (θ = 90°, φ = 0) and most along y and z.
    by_phi = far.power.isel(f=0)
    assert float(by_phi.sel(theta=np.pi / 2, phi=0.0, method="nearest")) < 0.05 * float(by_phi.max())


def test_projection_monitor_checks() -> None:
    with pytest.raises(ValidationError, match="closed box"):
        ms.FieldProjectionAngleMonitor(name="far", size=(1, 0, 1), freqs=[F], theta=[0.1], phi=[0.0])
    base = dict(size=(2.0, 2.0, 0), grid_spec=ms.GridSpec.uniform(0.05), run_time=1e-15)
    with pytest.raises(ValidationError, match="in a 2D simulation the projection surface is a rectangle"):
        ms.Simulation(**base, monitors=[ms.FieldProjectionAngleMonitor(name="far", size=(1, 1, 1), freqs=[F], theta=[0.1], phi=[0.0])])
    with pytest.raises(ValidationError, match=r"theta = \(π/2,\)"):
        ms.Simulation(**base, monitors=[ms.FieldProjectionAngleMonitor(name="far", size=(1, 1, 0), freqs=[F], theta=[0.1], phi=[0.0])])
    with pytest.raises(ValidationError, match="invariant along z"):
        ms.Simulation(**{**base, "size": (2.0, 0, 2.0)}, monitors=[ms.FieldProjectionAngleMonitor(name="far", size=(1, 1, 0), freqs=[F], theta=[np.pi / 2], phi=[0.0])])
    with pytest.raises(ValidationError, match="closed box"):
        ms.Simulation(**{**base, "size": (2.0, 2.0, 2.0)}, monitors=[ms.FieldProjectionAngleMonitor(name="far", size=(1, 1, 0), freqs=[F], theta=[np.pi / 2], phi=[0.0])])
    with pytest.raises(ValidationError, match="inside the simulation domain"):
        ms.Simulation(**{**base, "size": (2.0, 2.0, 2.0)}, monitors=[ms.FieldProjectionAngleMonitor(name="far", size=(3, 1, 1), freqs=[F], theta=[0.1], phi=[0.0])])
