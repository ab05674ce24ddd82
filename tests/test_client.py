"""ms.Client against the running service, the progress displays, remote lazy reads."""

from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import metosim as ms
from metosim.session import AuthenticationError, ValidationError, download
from metosim.widgets import JobProgress, ProgressView, SlicerState, TextProgress

from .conftest import F_UNIT, CountingRangeServer, issue_key
from .test_service import slow, tiny

PULSE = ms.GaussianPulse(freq0=F_UNIT, fwidth=0.25 * F_UNIT)


def volume(n: int = 48) -> ms.Simulation:
    """3D with a volume field monitor: a results file of several MB."""
    return ms.Simulation(
        size=(n * 0.04,) * 3,
        grid_spec=ms.GridSpec.uniform(0.04),
        run_time=8e-15,
        structures=[ms.Structure(geometry=ms.Sphere(radius=0.4), medium=ms.Medium(permittivity=4))],
        sources=[ms.PointDipole(center=(0.1, 0, 0), polarization="Ez", source_time=PULSE)],
        monitors=[ms.FieldMonitor(name="volume", size=(ms.inf,) * 3, freqs=[0.9 * F_UNIT, F_UNIT])],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=8)),
        shutoff=0,
    )


@pytest.fixture()
def client(service: dict, request: pytest.FixtureRequest) -> ms.Client:
    return ms.Client(url=service["client"].base_url.__str__(), api_key=issue_key(service, request.node.name[:60]))


def test_run_downloads_verifies_and_caches(client: ms.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    stream = io.StringIO()
    monkeypatch.setattr("metosim.widgets.progress.sys.stderr", stream)
    data = client.run(tiny())
    assert abs(float(data["T"].values[0]) - 1.0) < 1e-3
    shown = stream.getvalue()
    assert "done" in shown and "100.0%" in shown and "\r" in shown
    job = client.jobs(limit=1)[0]
    cached = list((tmp_path / "metosim" / "results").glob("*.h5"))
    assert [p.stem for p in cached] == [job["result"]["sha256"]]
    fetched: list[int] = []
    again = ms.Job(client, job["id"]).result(on_bytes=lambda done, total: fetched.append(done))
    assert fetched == [] and again.simulation == tiny()  # served from the cache


def test_wait_follows_the_event_stream(client: ms.Client) -> None:
    paths: list[str] = []
    client.http.event_hooks["request"].append(lambda request: paths.append(request.url.path))
    job = client.submit(slow(0.3))
    states = list(job.updates())
    assert states[-1]["status"] == "COMPLETED"
    assert any(s["status"] == "RUNNING" for s in states)
    # Progress arrived in order and ended at the last step. The stream samples the row
    # every 0.25 s, so whether the worker's final progress report shows as a RUNNING
    # state before COMPLETED depends on the upload's duration: the COMPLETED state
    # carries the final step itself.
    steps = [s["progress"]["step"] for s in states]
    assert steps == sorted(steps) and steps[-1] == states[-1]["progress"]["total_steps"] > 0
    status_path = f"/v1/simulations/{job.id}"
    assert paths.count(status_path + "/events") == 1 and status_path not in paths  # no polling


def test_a_broken_event_stream_falls_back_to_polling(client: ms.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import metosim.session as sdk

    real = sdk.connect_sse

    @contextmanager
    def breaks(*args: Any, **kwargs: Any) -> Iterator[Any]:
        """The real stream, broken after its first event."""
        with real(*args, **kwargs) as source:

            class Broken:
                response = source.response

                def iter_sse(self) -> Iterator[Any]:
                    yield next(source.iter_sse())
                    raise httpx.ReadError("connection reset")

            yield Broken()

    monkeypatch.setattr(sdk, "connect_sse", breaks)
    paths: list[str] = []
    client.http.event_hooks["request"].append(lambda request: paths.append(request.url.path))
    job = client.submit(slow(0.3))
    assert job.wait(progress=False)["status"] == "COMPLETED"
    assert paths.count(f"/v1/simulations/{job.id}") >= 2


def test_checksum_mismatch_deletes_and_raises(client: ms.Client, tmp_path: Path) -> None:
    job = client.submit(tiny())
    state = job.wait(progress=False)
    tampered = {**state["result"], "sha256": "0" * 64}
    with pytest.raises(ms.ChecksumMismatch, match="twice"):
        download(tampered, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_quota_exceeded_and_wait_for_slot(client: ms.Client) -> None:
    first = client.submit(slow(1.0))
    with pytest.raises(ms.QuotaExceeded) as excinfo:
        client.submit(tiny())
    assert excinfo.value.retry_after >= 1
    data = client.run(tiny(), progress=False, wait_for_slot=True, timeout=120)
    assert first.status()["status"] == "COMPLETED"
    assert data["T"].size == 1


def test_cancel_surfaces_as_job_failed(client: ms.Client) -> None:
    job = client.submit(slow(100.0))  # never finishes on its own within the test
    for state in job.updates():
        if state["status"] == "RUNNING":  # cancel on state, not after a fixed delay
            job.cancel()
            break
    with pytest.raises(ms.JobFailed) as excinfo:
        job.wait(progress=False, download=True)
    assert excinfo.value.status == "CANCELLED" and "cancelled" in excinfo.value.reason


def test_server_errors_are_typed(service: dict, client: ms.Client) -> None:
    huge = ms.Simulation(size=(4, 4, 4), grid_spec=ms.GridSpec.uniform(0.01), run_time=1e-12, boundary_spec=ms.BoundarySpec.all_sides(ms.Periodic()))
    with pytest.raises(ValidationError) as excinfo:
        client.submit(huge)
    assert excinfo.value.errors[0]["loc"] == "grid_spec"
    with pytest.raises(AuthenticationError):
        ms.Client(url=client.url, api_key="msk_wrong").jobs()


def test_progress_view_from_status() -> None:
    status = {"status": "RUNNING", "progress": {"step": 250, "total_steps": 1000, "fraction": 0.25, "cells_per_second": 3e8}, "error": None}
    # The ETA is the remaining steps at the stepping rate, not the elapsed time (which
    # counts setup and compilation) scaled by the fraction done.
    assert ProgressView.from_status(status, elapsed_s=10.0).eta_s is None  # no rate measured yet
    view = ProgressView.from_status(status, elapsed_s=10.0, steps_per_s=25.0)
    assert view.state == "running" and view.eta_s == pytest.approx(30.0)
    text = view.text()
    assert "25.0%" in text and "step 250/1000" in text and "ETA 0:30" in text and "300.0 Mcells/s" in text
    failed = ProgressView.from_status({"status": "FAILED", "progress": {}, "error": "worker died"}, 3.0)
    assert failed.state == "failed" and "worker died" in failed.text()


def test_progress_widget_state_without_a_browser() -> None:
    cancelled: list[bool] = []
    job = type("FakeJob", (), {"cancel": lambda self: cancelled.append(True)})()
    widget = JobProgress(job)
    widget.update({"status": "RUNNING", "progress": {"step": 5, "total_steps": 10, "fraction": 0.5, "cells_per_second": 1e6}, "error": None})
    assert widget.bar.value == 0.5 and widget.bar.bar_style == "info" and not widget.cancel_button.disabled
    widget.cancel_button.click()
    assert cancelled == [True]
    widget.downloading(50, 100)
    assert widget.bar.value == 0.5 and "downloading" in widget.label.value and widget.cancel_button.disabled
    widget.done()
    assert widget.bar.bar_style == "success" and "done" in widget.label.value and "1.0 Mcells/s" in widget.label.value
    assert widget.cancel_button.layout.display == "none"  # nothing left to cancel
    widget.update({"status": "FAILED", "progress": {}, "error": "<b>boom</b>"})
    assert widget.bar.bar_style == "danger" and "&lt;b&gt;boom&lt;/b&gt;" in widget.label.value  # a reason is text, never markup


def test_the_eta_counts_the_stepping_rate_from_the_first_step_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten seconds of setup and compilation, then 100 steps a second: after 1 s of
    stepping (10% of 1000 steps done) the ETA is 9 s, not the 99 s that scaling the
    elapsed time by the fraction would say; a requeued job measures afresh."""
    clock = [0.0]
    monkeypatch.setattr("metosim.widgets.progress.time.monotonic", lambda: clock[0])
    bar = TextProgress(job=None, stream=io.StringIO())

    def report(at: float, step: int, status: str = "RUNNING") -> ProgressView:
        clock[0] = at
        bar.update({"status": status, "progress": {"step": step, "total_steps": 1000, "fraction": step / 1000}, "error": None})
        return bar.view

    assert report(0.0, 0, "QUEUED").eta_s is None
    assert report(5.0, 0).eta_s is None  # setup
    assert report(10.5, 50).eta_s is None  # the first chunk: its time holds the compilation
    assert report(11.0, 100).eta_s == pytest.approx(9.0)
    assert report(12.0, 200).eta_s == pytest.approx(8.0)
    assert report(13.0, 0, "QUEUED").eta_s is None  # requeued (a lost worker)
    assert report(20.0, 150).eta_s is None  # resumed from a checkpoint at 150
    assert report(21.0, 250).eta_s == pytest.approx(7.5)


def test_text_progress_rewrites_one_line() -> None:
    stream = io.StringIO()
    bar = TextProgress(job=None, stream=stream)
    for step in (0, 5, 10):
        bar.update({"status": "RUNNING", "progress": {"step": step, "total_steps": 10, "fraction": step / 10}, "error": None})
    bar.done()
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.count("\r") == 4  # one line, updated in place


# ------------------------------------------------------------------ remote, lazy reads
@pytest.fixture(scope="module")
def volume_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[ms.SimulationData, bytes]:
    data = ms.solve(volume())
    buffer = io.BytesIO()
    data.to_hdf5(buffer)
    return data, buffer.getvalue()


def test_remote_slice_reads_a_small_fraction(volume_file: tuple[ms.SimulationData, bytes]) -> None:
    data, payload = volume_file
    server = CountingRangeServer(payload)
    try:
        remote = ms.SimulationData.open(server.url)
        state = SlicerState.initial(remote, "volume").select(component="Ez", axis="z", index=24, spectral_index=1)
        plane = state.plane().values
        np.testing.assert_array_equal(plane, data["volume"]["Ez"].isel(z=24, f=1).values)
        fraction = server.sent / len(payload)
        # One (x, y) plane of one component at one frequency is 1/(48·2·6) of the field
        # data; metadata, coordinates and read-ahead blocks bring it to a few percent.
        assert fraction < 0.1, (server.sent, len(payload))
        remote.close()
    finally:
        server.close()


def test_a_results_store_is_read_remotely_and_sliced_like_a_file(volume_file: tuple[ms.SimulationData, bytes], tmp_path: Path) -> None:
    """A results store (what a run split across processes writes), each file behind
    its own link: ``SimulationData.open`` reads it lazily — a plane costs a small
    fraction of the bytes — and the field slicer shows it as it shows an HDF5 file."""
    from metosim.widgets import FieldSlicer

    data, _ = volume_file
    stored = ms.solve(volume(), output=tmp_path / "store")
    files = {p.relative_to(tmp_path / "store").as_posix(): p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file()}
    server = CountingRangeServer(files)
    try:
        remote = ms.SimulationData.open({path: server.url_of(path) + "?signature=x" for path in files})
        plane = SlicerState.initial(remote, "volume").select(component="Ez", axis="z", index=24, spectral_index=1).plane().values
        np.testing.assert_array_equal(plane, stored["volume"]["Ez"].isel(z=24, f=1).values)
        np.testing.assert_allclose(plane, data["volume"]["Ez"].isel(z=24, f=1).values, rtol=0, atol=1e-6 * float(np.abs(plane).max()))
        fraction = server.sent / sum(map(len, files.values()))
        assert fraction < 0.1, (server.sent, fraction)
        slicer = FieldSlicer(remote)
        slicer.axis.value = "x"
        assert slicer.state.plot().collections[0].get_array().size == 48 * 48
    finally:
        server.close()


def test_open_presigned_s3_url(service: dict, client: ms.Client) -> None:
    job = client.submit(volume(24))
    result = job.wait(progress=False)["result"]
    remote = ms.SimulationData.open(result["url"])
    local = job.result(result and job.status())
    np.testing.assert_array_equal(remote["volume"]["Hz"].isel(x=12).values, local["volume"]["Hz"].isel(x=12).values)
    remote.close()


def test_field_slicer_widget_and_state(volume_file: tuple[ms.SimulationData, bytes]) -> None:
    from metosim.widgets import FieldSlicer

    data, _ = volume_file
    slicer = FieldSlicer(data)
    assert slicer.monitor.options == ("volume",)
    assert slicer.component.options == ("Ex", "Ey", "Ez", "Hx", "Hy", "Hz")
    # F_UNIT = c / 1 µm ≈ 299.8 THz
    assert [label for label, _ in slicer.spectral.options] == ["269.8 THz", "299.8 THz"]
    slicer.axis.value = "x"
    assert slicer.state.axis == "x" and slicer.slider.max == 47 and slicer.state.index == 24
    slicer.slider.value = 3
    slicer.quantity.value = "abs"
    assert slicer.state.index == 3 and slicer.state.quantity == "abs"
    assert "x = " in slicer.position.value
    ax = slicer.state.plot()
    assert ax.get_title().startswith("volume: Ex, x = ") and ax.get_xlabel() == "y (µm)"
    assert ax.collections[0].get_array().size == 48 * 48
    with pytest.raises(ValueError, match="no component"):
        slicer.state.select(component="Ew")


def test_embedded_local_service_starts_once_and_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """ms.Client() with no URL starts `metosim serve` in the background, keeps its key
    (0600) in the config dir, and a second client reuses both. Its results come over
    the local store's signed links, which serve HTTP range reads (a lazy remote slice);
    `metosim keys list` shows keys without the keys, `keys revoke` locks one out."""
    from metosim.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "METOSIM_DATA_DIR": str(tmp_path / "data"), "METOSIM_PORT": str(port)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("METOSIM_URL", raising=False)
    monkeypatch.delenv("METOSIM_API_KEY", raising=False)
    config = tmp_path / "config" / "metosim" / "local.json"
    try:
        first = ms.Client()
        assert first.url == f"http://127.0.0.1:{port}"
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        data = first.run(tiny(), progress=False)
        assert data["T"].size == 1
        second = ms.Client()
        assert second.http.headers["authorization"] == first.http.headers["authorization"]
        serve_pid = json.loads((tmp_path / "data" / "serve.json").read_text())["pid"]

        job = first.submit(volume(24))
        url = job.wait(progress=False)["result"]["url"]
        assert url.startswith(f"http://127.0.0.1:{port}/v1/files/")
        head = httpx.get(url, headers={"Range": "bytes=0-7"})
        assert head.status_code == 206 and head.content == b"\x89HDF\r\n\x1a\n" and head.headers["content-range"].startswith("bytes 0-7/")
        remote = ms.SimulationData.open(url)
        np.testing.assert_array_equal(remote["volume"]["Hz"].isel(x=12).values, job.result()["volume"]["Hz"].isel(x=12).values)
        remote.close()
        assert httpx.get(url.replace("signature=", "signature=0")).status_code == 403

        capsys.readouterr()
        assert main(["keys", "create", "--name", "notebook-2"]) == 0
        key = capsys.readouterr().out.strip()
        assert main(["keys", "list"]) == 0
        listed = capsys.readouterr().out
        mine = next(line for line in listed.splitlines() if "notebook-2" in line)
        assert key[:8] in mine and key not in listed and "active" in mine
        assert main(["keys", "revoke", mine.split()[0]]) == 0
        assert main(["keys", "list"]) == 0 and "revoked" in next(line for line in capsys.readouterr().out.splitlines() if "notebook-2" in line)
        with pytest.raises(AuthenticationError):
            ms.Client(url=first.url, api_key=key).jobs()
        assert main(["keys", "revoke", mine.split()[0]]) == 1  # nothing left to revoke
    finally:
        assert main(["stop"]) == 0
    # `metosim stop` waited for the service to exit before it stopped its database.
    assert not config.exists()
    assert not (tmp_path / "data" / "serve.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(serve_pid, 0)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()


def test_mode_data_over_the_service(client: ms.Client) -> None:
    """A waveguide with a mode source runs on the service; its mode amplitudes come back
    in the verified download and over lazy range reads, and the slicer offers only
    the field monitors."""
    from metosim.widgets.slicer import field_monitors

    from .test_modes import F0, straight_guide

    sim = straight_guide(False)
    sim = sim.model_copy(update={"monitors": (*sim.monitors, ms.FieldMonitor(name="field", size=(ms.inf, ms.inf, 0), freqs=[F0], fields=("Ey", "Hz")))})
    job = client.submit(sim)
    result = job.wait(progress=False)["result"]
    data = job.result(job.status())
    s21 = data["after"].amps.sel(direction="+", mode_index=0).values
    np.testing.assert_allclose(np.abs(s21) ** 2, 1.0, atol=5e-3)
    remote = ms.SimulationData.open(result["url"])
    np.testing.assert_array_equal(remote["after"].amps.values, data["after"].amps.values)
    assert list(remote["after"].direction.values) == ["+", "-"]
    remote.close()
    assert field_monitors(data) == ["field"]
