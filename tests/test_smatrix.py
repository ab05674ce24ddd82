"""S-matrices against physics: a straight guide transmits with the phase exp(iβL) and
does not reflect; a width step is reciprocal (S21 = S12) and passive; Touchstone files
read back through scikit-rf; the same matrix through the service's batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import metosim as ms

from .conftest import issue_key

LAMBDA = 1.55
F0 = ms.C_0 / (LAMBDA * 1e-6)
SILICON, SILICA = ms.Medium(permittivity=3.48**2), ms.Medium(permittivity=1.444**2)
TE = ms.ModeSpec(filter_pol="te")
PORTS = [
    ms.Port(name="a", center=(-1.2, 0, 0), size=(0, 2.0, ms.inf), direction="+", mode_spec=TE),
    ms.Port(name="b", center=(1.2, 0, 0), size=(0, 2.0, ms.inf), direction="-", mode_spec=TE),
]
FREQS = F0 * np.linspace(0.95, 1.05, 3)


def junction(width_out: float, steps_per_wvl: float = 16) -> ms.Simulation:
    """A 0.5 µm silicon guide meeting a ``width_out`` guide at x = 0 (2D, in silica)."""
    return ms.Simulation(
        size=(4.0, 3.0, 0),
        grid_spec=ms.GridSpec.auto(wavelength=LAMBDA, min_steps_per_wvl=steps_per_wvl),
        run_time=300e-15,
        medium=SILICA,
        structures=[
            ms.Structure(geometry=ms.Box(center=(-1.5, 0, 0), size=(3.0, 0.5, ms.inf)), medium=SILICON),
            ms.Structure(geometry=ms.Box(center=(1.5, 0, 0), size=(3.0, width_out, ms.inf)), medium=SILICON),
        ],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=10)),
    )


def test_straight_guide_transmits_with_the_propagation_phase() -> None:
    smatrix = ms.SMatrix(junction(0.5), PORTS, FREQS)
    s = smatrix.run_local().isel(mode_out=0, mode_in=0)
    s21, s12 = s.sel(port_out="b", port_in="a").values, s.sel(port_out="a", port_in="b").values
    np.testing.assert_allclose(np.abs(s21) ** 2, 1.0, atol=5e-3)
    assert np.all(np.abs(s.sel(port_out="a", port_in="a").values) ** 2 < 1e-3)
    np.testing.assert_allclose(s12, s21, atol=1e-3)  # reciprocity
    # Reference planes are the grid planes nearest the port centres: S21 = exp(iβL).
    nodes = smatrix.simulation.grid.nodes(0, False)
    length = np.ptp([nodes[np.argmin(np.abs(nodes - p.center[0]))] for p in PORTS])
    n_eff = ms.solve(smatrix.member("a@0"))["port.b"].n_eff.sel(mode_index=0).values
    beta = 2 * np.pi * FREQS / ms.C_0 * 1e-6 * n_eff
    assert np.max(np.abs(np.angle(s21 * np.exp(-1j * beta * length)))) < 0.01


def test_width_step_is_reciprocal_and_passive(tmp_path: Path) -> None:
    smatrix = ms.SMatrix(junction(0.3), PORTS, FREQS)
    s = smatrix.run_local()
    single = s.isel(mode_out=0, mode_in=0)
    s21, s12 = single.sel(port_out="b", port_in="a").values, single.sel(port_out="a", port_in="b").values
    assert np.max(np.abs(s21 - s12)) < 0.02  # reciprocity of a step the pulse sees from both sides
    power = (np.abs(single) ** 2).sum("port_out").values  # (port_in, f): what comes back out
    assert np.all(power < 1.005) and np.all(power > 0.95)  # passive; little radiation at the step
    assert np.all(np.abs(single.sel(port_out="a", port_in="a").values) ** 2 > 1e-4)  # the step reflects
    # Touchstone through scikit-rf, read back.
    import skrf

    path = smatrix.to_touchstone(str(tmp_path / "step.s2p"))
    network = skrf.Network(path)
    np.testing.assert_allclose(network.f, FREQS, rtol=1e-9)
    np.testing.assert_allclose(network.s[:, 1, 0], s21, atol=1e-6)
    np.testing.assert_allclose(network.s[:, 0, 0], single.sel(port_out="a", port_in="a").values, atol=1e-6)


def test_bad_ports_are_refused_with_the_port_named() -> None:
    with pytest.raises(ValueError, match="unique"):
        ms.SMatrix(junction(0.5), [PORTS[0], PORTS[0]], FREQS)
    outside = ms.Port(name="far", center=(5.0, 0, 0), size=(0, 2.0, ms.inf), direction="-", mode_spec=TE)
    with pytest.raises(ValueError, match="port 'far'"):
        ms.SMatrix(junction(0.5), [PORTS[0], outside], FREQS)
    with pytest.raises(ValueError):
        ms.SMatrix(junction(0.5), PORTS, [-1.0])
    smatrix = ms.SMatrix(junction(0.5), PORTS, FREQS)
    assert "2 ports" in repr(smatrix)
    with pytest.raises(ValueError, match="no S-matrix yet"):
        smatrix.to_touchstone("never.s2p")


def test_smatrix_through_the_service_equals_the_local_one(service: dict) -> None:
    client = ms.Client(url=str(service["client"].base_url), api_key=issue_key(service, "smatrix", max_parallel=2))
    smatrix = ms.SMatrix(junction(0.3, steps_per_wvl=12), PORTS, FREQS[:1])
    remote = smatrix.run(client, progress=False, timeout=120)
    local = smatrix.run_local()
    np.testing.assert_allclose(remote.values, local.values, rtol=1e-5, atol=1e-7)
