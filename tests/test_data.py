"""SimulationData: xarray access, the HDF5 results file, plot_field, and the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import metosim as ms
from metosim.cli import demo_simulation, main, ring_report

from .conftest import F_UNIT

PULSE = ms.GaussianPulse(freq0=F_UNIT, fwidth=0.3 * F_UNIT)


@pytest.fixture(scope="module")
def data() -> ms.SimulationData:
    sim = ms.Simulation(
        size=(2.0, 1.6, 0.4),
        grid_spec=ms.GridSpec.uniform(0.05),
        run_time=15e-15,
        structures=[ms.Structure(geometry=ms.Sphere(radius=0.3), medium=ms.Medium(permittivity=4), name="ball")],
        sources=[ms.PointDipole(center=(-0.4, 0.1, 0), polarization="Ez", source_time=PULSE)],
        monitors=[
            ms.FieldMonitor(name="volume", size=(ms.inf, ms.inf, ms.inf), freqs=[0.9 * F_UNIT, F_UNIT]),
            ms.FluxMonitor(name="flux", center=(0.6, 0, 0), size=(0, ms.inf, ms.inf), freqs=[F_UNIT]),
            ms.FieldTimeMonitor(name="movie", size=(ms.inf, ms.inf, 0), interval=20, fields=("Ez",)),
        ],
        boundary_spec=ms.BoundarySpec(x=ms.Boundary(), y=ms.Boundary(), z=ms.Boundary(minus=ms.Periodic(), plus=ms.Periodic())),
    )
    return ms.solve(sim)


def test_monitor_data_are_labelled_xarray(data: ms.SimulationData) -> None:
    volume = data["volume"]
    assert isinstance(volume, xr.Dataset) and set(volume.data_vars) == set(ms.source.FIELD_COMPONENTS)
    assert volume["Ez"].dims == ("x", "y", "z", "f")
    assert volume.sizes == {"x": 40, "y": 32, "z": 8, "f": 2}
    np.testing.assert_allclose(volume.f, [0.9 * F_UNIT, F_UNIT])
    np.testing.assert_allclose(volume.x[[0, -1]], [-1.0, 0.95])
    assert isinstance(data["flux"], xr.DataArray) and data["flux"].dims == ("f",)
    assert data["movie"]["Ez"].dims == ("x", "y", "z", "t")
    assert sorted(data) == ["flux", "movie", "volume"]
    with pytest.raises(KeyError, match="no monitor named 'nope'"):
        data["nope"]


def test_hdf5_round_trip_path_and_file_object(data: ms.SimulationData, tmp_path: Path) -> None:
    path = tmp_path / "result.h5"
    data.to_hdf5(str(path))
    buffer = io.BytesIO()
    data.to_hdf5(buffer)
    for source in (str(path), io.BytesIO(buffer.getvalue())):
        again = ms.SimulationData.from_hdf5(source)
        assert again.simulation == data.simulation
        for name in data:
            xr.testing.assert_identical(again[name], data[name])
        assert again.info["time_steps"] == data.info["time_steps"]
        assert again.versions["metosim"] == ms.__version__


def test_hdf5_layout_is_self_describing_and_plane_chunked(data: ms.SimulationData, tmp_path: Path) -> None:
    path = tmp_path / "result.h5"
    data.to_hdf5(str(path))
    with h5py.File(path) as f:
        assert f.attrs["format"] == "metosim-results"
        sim = ms.Simulation.model_validate_json(f["simulation"].attrs["json"])  # the file alone reproduces the run
        assert sim == data.simulation
        assert "jax" in json.loads(f["simulation"].attrs["versions"])
        np.testing.assert_allclose(f["simulation/grid/x"][[0, -1]], [-1.0, 1.0])
        ez = f["monitors/volume/Ez"]
        assert json.loads(ez.attrs["dims"]) == ["x", "y", "z", "f"]
        assert ez.chunks == (40, 32, 1, 1)  # one z-plane at one frequency per chunk
        np.testing.assert_allclose(f["monitors/volume/coords/f"][()], data["volume"].f)


def test_not_a_results_file(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a MetoSim results file"):
        ms.SimulationData.from_hdf5(str(path))


@pytest.mark.parametrize("val", ["real", "imag", "abs", "int"])
def test_plot_field_with_outlines(data: ms.SimulationData, val: str) -> None:
    ax = data.plot_field("volume", "Ez", z=0, f=F_UNIT, val=val)
    image = ax.collections[0].get_array()
    assert image.size == 40 * 32
    expected = {"real": np.real, "imag": np.imag, "abs": np.abs, "int": lambda v: np.abs(v) ** 2}[val](data["volume"]["Ez"].sel(z=0, f=F_UNIT, method="nearest").values)
    np.testing.assert_allclose(np.asarray(image).reshape(32, 40).T, expected, rtol=1e-6)
    outlines = [p for p in ax.patches if not p.get_fill()]
    assert len(outlines) == 1  # the sphere
    assert "f = " in ax.get_title()
    ax_t = data.plot_field("movie", "Ez", z=0, t=data["movie"].t.values[-1])
    assert "t = " in ax_t.get_title()


def test_plot_field_errors(data: ms.SimulationData) -> None:
    with pytest.raises(ValueError, match="val must be"):
        data.plot_field("volume", "Ez", z=0, val="phase")
    with pytest.raises(ValueError, match="no field component"):
        data.plot_field("flux", "Ez", z=0)


def test_reprs(data: ms.SimulationData) -> None:
    assert "volume: Dataset" in repr(data)
    assert "<table>" in data._repr_html_() and "FluxMonitor" in data._repr_html_()


def test_cli_version() -> None:
    out = subprocess.run([sys.executable, "-m", "metosim.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"metosim {ms.__version__}"


def test_cli_demo_ring_resonator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo ring: a PNG, a results file that reads back with its mode data, and
    physics a photonics engineer would check."""
    png, h5 = tmp_path / "demo.png", tmp_path / "demo.h5"
    assert main(["demo", "--in-process", "--out", str(png), "--hdf5", str(h5)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    out = capsys.readouterr().out
    assert "Mcells/s" in out and "loaded Q" in out and "FSR" in out
    again = ms.SimulationData.from_hdf5(str(h5))
    assert again.simulation == demo_simulation()
    assert again["through"].amps.dims == ("direction", "mode_index", "f") and list(again["through"].direction.values) == ["+", "-"]
    report = ring_report(again)
    through, drop = report["through"], report["drop"]
    # Passive and lossless apart from radiation: each port between 0 and 1, and their
    # sum never above 1 (to the ring-down truncation, measured max 0.9998).
    assert np.all((through >= 0) & (through <= 1.002)) and np.all(drop >= 0) and np.max(through + drop) <= 1.002
    assert through.min() < 0.5 and drop.max() > 0.2  # resonances a reader can see
    # FSR = c / (n_g · 2πR) with the bus mode's group index as a rough ring n_g (±15%).
    assert 10e12 < report["fsr"] < 14e12
    # Bound 5% (issue): loaded Q from harmonic inversion of the ring-down against a
    # Lorentzian fit of the through spectrum (measured 310 against 298: 3.9%).
    assert abs(report["q_resonance_finder"] - report["q_lorentzian"]) / report["q_resonance_finder"] < 0.05
    assert np.all(report["resonances"].error.values < 1e-5)
