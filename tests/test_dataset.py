"""zarr datasets without the service: layout, exact round trip, lazy chunk reads over
HTTP, manifest checks and clear errors; sweeps."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import metosim as ms
from metosim.dataset import DatasetMember, write_dataset

from .conftest import F_UNIT, CountingRangeServer
from .test_service import tiny


def member(i: int, n: int = 64) -> ms.SimulationData:
    """A stand-in result: a (n, n, 1, 2) complex field plane and a flux spectrum."""
    rng = np.random.default_rng(i)
    coords = {"x": np.linspace(-1, 1, n), "y": np.linspace(-1, 1, n), "z": [0.0], "f": [F_UNIT, 1.1 * F_UNIT]}
    field = xr.Dataset(
        {c: (("x", "y", "z", "f"), (rng.normal(size=(n, n, 1, 2)) + 1j * rng.normal(size=(n, n, 1, 2))).astype(np.complex64)) for c in ("Ex", "Ey", "Ez", "Hx", "Hy", "Hz")},
        coords=coords,
        attrs={"monitor_type": "FieldMonitor"},
    )
    flux = xr.DataArray(rng.random(2), dims=("f",), coords={"f": coords["f"]}, name="flux", attrs={"monitor_type": "FluxMonitor"})
    return ms.SimulationData(tiny(run_fs=10 + i), {"field": field, "T": flux})


@pytest.fixture(scope="module")
def samples() -> list[ms.SimulationData]:
    return [member(i) for i in range(8)]


def members(samples: list[ms.SimulationData]) -> list[DatasetMember]:
    return [DatasetMember(f"w={0.1 * i:g}", {"width": 0.1 * i, "kind": "rib" if i % 2 else "strip"}, f"{i:064x}", lambda d=d: d) for i, d in enumerate(samples)]


def test_round_trip_is_exact_and_self_describing(samples: list[ms.SimulationData], tmp_path: Path) -> None:
    for target in (tmp_path / "d.zarr", tmp_path / "d.zarr.zip"):
        write_dataset(target, members(samples))
        tree = ms.open_dataset(target)
        assert tree.attrs["metosim_dataset"] == {"format": 1, "members": 8, "parameters": ["width", "kind"], "monitors": ["field", "T"]}
        field = tree["field"].to_dataset()
        assert field["Ez"].dims == ("sample", "x", "y", "z", "f") and field["Ez"].encoding["chunks"] == (1, 64, 64, 1, 2)
        assert list(field["kind"].values[:2]) == ["strip", "rib"] and field["width"].dtype == np.float64
        for i, data in enumerate(samples):
            for c in data["field"].data_vars:
                np.testing.assert_array_equal(field[c].isel(sample=i).values, data["field"][c].values)
            np.testing.assert_array_equal(tree["T"]["flux"].isel(sample=i).values, data["T"].values)
            assert ms.Simulation.model_validate_json(str(tree["config"].values[i])) == data.simulation
        assert ms.verify_dataset(target) > 20
    # The zip holds exactly the directory's files, and writing again gives the same bytes.
    with zipfile.ZipFile(tmp_path / "d.zarr.zip") as archive:
        assert sorted(archive.namelist()) == sorted(p.relative_to(tmp_path / "d.zarr").as_posix() for p in (tmp_path / "d.zarr").rglob("*") if p.is_file())
    first = (tmp_path / "d.zarr.zip").read_bytes()
    write_dataset(tmp_path / "d.zarr.zip", members(samples))
    assert (tmp_path / "d.zarr.zip").read_bytes() == first
    assert xr.open_zarr(tmp_path / "d.zarr", group="field", consolidated=True, chunks=None)["Hx"].sizes["sample"] == 8


def test_one_sample_reads_one_chunk_over_http(samples: list[ms.SimulationData], tmp_path: Path) -> None:
    target = tmp_path / "d.zarr.zip"
    write_dataset(target, members(samples))
    payload = target.read_bytes()
    chunk = len(payload) / (8 * 6)  # roughly one (sample, component) chunk
    server = CountingRangeServer(payload)
    try:
        tree = ms.open_dataset(server.url.replace("result.h5", "d.zarr.zip"), block_size=4096)
        opened = server.sent
        values = tree["field"]["Hy"].isel(sample=5).values
        read = server.sent - opened
        np.testing.assert_array_equal(values, samples[5]["field"]["Hy"].values)
        # One compressed chunk (complex noise barely compresses) plus a read-ahead block.
        assert 0.5 * chunk < read < chunk + 3 * 4096, (read, chunk)
        assert server.sent < 0.05 * len(payload), (server.sent, len(payload))
    finally:
        server.close()


def test_manifest_catches_changed_and_missing_files(samples: list[ms.SimulationData], tmp_path: Path) -> None:
    target = tmp_path / "d.zarr"
    write_dataset(target, members(samples[:2]))
    chunk = next(p for p in (target / "field" / "Ex").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[::-1])
    with pytest.raises(ValueError, match="does not match its manifest"):
        ms.verify_dataset(target)
    chunk.unlink()
    with pytest.raises(ValueError, match="missing"):
        ms.verify_dataset(target)


def test_members_that_do_not_stack_are_named(samples: list[ms.SimulationData], tmp_path: Path) -> None:
    odd = member(9, n=32)
    with pytest.raises(ValueError, match="member 'odd', monitor 'field': coordinate 'x' differs"):
        write_dataset(tmp_path / "d.zarr", [*members(samples[:1]), DatasetMember("odd", {"width": 1.0, "kind": "rib"}, "0" * 64, lambda: odd)])
    with pytest.raises(ValueError, match="no monitor 'nope'"):
        write_dataset(tmp_path / "d.zarr", members(samples[:1]), monitors=["nope"])
    with pytest.raises(ValueError, match="at least one member"):
        write_dataset(tmp_path / "d.zarr", [])


def test_sweep_is_the_cartesian_product_with_named_members() -> None:
    sweep = ms.sweep(lambda run_fs, shutoff: tiny(run_fs=run_fs, shutoff=shutoff), run_fs=np.array([20.0, 30.0]), shutoff=[0.0, 1e-5])
    assert list(sweep) == ["run_fs=20,shutoff=0", "run_fs=20,shutoff=1e-05", "run_fs=30,shutoff=0", "run_fs=30,shutoff=1e-05"]
    assert sweep.parameters["run_fs=30,shutoff=0"] == {"run_fs": 30.0, "shutoff": 0.0} and type(sweep.parameters["run_fs=30,shutoff=0"]["run_fs"]) is float
    assert "4 members" in repr(sweep)
    spec = ms.batch_spec.batch_spec(sweep, max_parallel=2)
    assert ms.BatchSpec.model_validate_json(spec.model_dump_json()) == spec
    assert json.loads(spec.model_dump_json())["members"][1]["parameters"] == {"run_fs": 20.0, "shutoff": 1e-05}
    with pytest.raises(ValueError, match="no values"):
        ms.sweep(tiny, run_fs=[])
    with pytest.raises(ValueError, match="'x' is reserved"):
        ms.batch_spec.batch_spec(ms.sweep(lambda x: tiny(), x=[1.0]))
    with pytest.raises(ValueError, match="same parameter names"):
        ms.BatchSpec(members=[ms.batch_spec.BatchMember(name="a", simulation=tiny(), parameters={"w": 1.0}), ms.batch_spec.BatchMember(name="b", simulation=tiny())])
