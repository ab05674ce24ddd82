"""Checkpoints of the stepping state (``metosim.kernels.checkpoint``): a solve resumed
from any checkpoint returns exactly the uninterrupted run's numbers, on both backends;
a checkpoint of another simulation, precision or engine, or a damaged file, is refused
with the reason; a deadline suspends a solve at a checkpoint it can go on from."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

import metosim as ms
from metosim.kernels import checkpoint as ck
from metosim.kernels.solver import solve

F = ms.C_0 / 1e-6
PULSE = ms.GaussianPulse(freq0=F, fwidth=0.3 * F)
PML = ms.Boundary(minus=ms.PML(num_layers=6), plus=ms.PML(num_layers=6))


def every_state_kind(shutoff: float = 0.0) -> ms.Simulation:
    """3D, with every array the loop carries: CPML ψ on all axes, Lorentz
    polarisations, field/flux/far-field DFT sums, a field-time buffer; mirrored in x
    (a halved state); and the energy shutoff's peak when ``shutoff`` > 0."""
    metal = ms.Lorentz(eps_inf=2.0, poles=[(3.0, 0.8 * F, 0.1 * F)])
    return ms.Simulation(
        size=(1.2, 1.2, 1.2),
        grid_spec=ms.GridSpec.uniform(0.06),
        run_time=30e-15,
        boundary_spec=ms.BoundarySpec(x=PML, y=PML, z=PML),
        sources=[ms.PointDipole(center=(0, 0, -0.2), polarization="Ez", source_time=PULSE)],
        structures=[ms.Structure(geometry=ms.Box(center=(0, 0, 0.15), size=(0.4, 0.3, 0.2)), medium=metal)],
        monitors=[
            ms.FieldMonitor(name="field", size=(0.6, 0.6, 0), freqs=[F, 1.1 * F]),
            ms.FluxMonitor(name="flux", center=(0, 0, 0.4), size=(0.8, 0.8, 0), freqs=[F]),
            ms.FieldTimeMonitor(name="probe", center=(0.1, 0.1, 0.1), size=(0, 0, 0), interval=5),
            ms.FieldProjectionAngleMonitor(name="far", center=(0, 0, 0), size=(0.9, 0.9, 0.9), freqs=[F], theta=[0.0, 1.0], phi=[0.0]),
        ],
        symmetry=(1, 0, 0),
        shutoff=shutoff,
        precision="float64",
    )


class Keeper:
    """A ``CheckpointPolicy.save`` that writes every checkpoint to bytes, as a worker
    writes them to a file."""

    def __init__(self) -> None:
        self.taken: list[bytes] = []

    def __call__(self, checkpoint: ck.Checkpoint) -> None:
        self.taken.append(self.written(checkpoint))

    @staticmethod
    def written(checkpoint: ck.Checkpoint) -> bytes:
        buffer = io.BytesIO()
        ck.write(checkpoint, buffer)
        return buffer.getvalue()

    def read(self, i: int) -> ck.Checkpoint:
        return ck.read(io.BytesIO(self.taken[i]))


def assert_identical(a: ms.SimulationData, b: ms.SimulationData) -> None:
    for name in a:
        x, y = a[name], b[name]
        for var in getattr(x, "data_vars", [None]):
            u, v = (np.asarray(x[var]), np.asarray(y[var])) if var else (np.asarray(x), np.asarray(y))
            assert np.array_equal(u, v), f"{name} {var or ''}: max |Δ| {np.max(np.abs(u - v)):.3g}"


@pytest.mark.parametrize("shutoff", [0.0, 1e-3], ids=["to run_time", "energy shutoff"])
def test_a_resumed_solve_equals_the_uninterrupted_one_bit_for_bit(backend: str, shutoff: float) -> None:
    sim = every_state_kind(shutoff)
    keeper = Keeper()
    whole = ms.solve(sim, backend=backend, checkpoints=ck.CheckpointPolicy(save=keeper, interval_s=0.0))
    assert len(keeper.taken) >= 5  # one after every chunk but the last
    if shutoff:
        assert whole.info["time_steps"] < sim.grid.num_time_steps  # the shutoff did end it
    for i in (0, len(keeper.taken) * 3 // 5, len(keeper.taken) - 1):
        checkpoint = keeper.read(i)
        ck.check(checkpoint, sim)
        resumed = ms.solve(sim, backend=backend, resume=checkpoint)
        assert resumed.info["resumed_step"] == checkpoint.step > 0
        assert resumed.info["time_steps"] == whole.info["time_steps"]
        assert_identical(whole, resumed)
    assert float(np.max(np.abs(whole["probe"]["Ez"]))) > 0  # the probe saw the pulse


def test_a_checkpoint_of_anything_else_is_refused_with_the_reason() -> None:
    sim = every_state_kind()
    keeper = Keeper()
    solve(sim, checkpoints=ck.CheckpointPolicy(save=keeper, interval_s=0.0))
    checkpoint = keeper.read(1)
    other = sim.model_copy(update={"run_time": 31e-15})
    with pytest.raises(ck.CheckpointMismatch, match="config_sha256"):
        ck.check(checkpoint, other)
    with pytest.raises(ck.CheckpointMismatch, match="config_sha256"):
        solve(other, resume=checkpoint)  # the engine checks before anything runs
    with pytest.raises(ck.CheckpointMismatch, match="precision"):
        ck.check(checkpoint, sim.model_copy(update={"precision": "float32"}))
    with pytest.raises(ck.CheckpointMismatch, match="engine"):
        ck.check(ck.Checkpoint(checkpoint.step, checkpoint.peak, checkpoint.state, {**checkpoint.meta, "engine": "0.0.1"}), sim)
    with pytest.raises(ck.CheckpointMismatch, match="format"):
        ck.check(ck.Checkpoint(checkpoint.step, checkpoint.peak, checkpoint.state, {**checkpoint.meta, "format": 0}), sim)
    # The same metadata over another state layout (a bug, or a forged file): refused by array.
    state = dict(checkpoint.state)
    state["E/0"] = state["E/0"][:-1]
    with pytest.raises(ck.CheckpointMismatch, match="E/0"):
        solve(sim, resume=ck.Checkpoint(checkpoint.step, checkpoint.peak, state, checkpoint.meta))
    del state["E/0"]
    with pytest.raises(ck.CheckpointMismatch, match="missing"):
        solve(sim, resume=ck.Checkpoint(checkpoint.step, checkpoint.peak, state, checkpoint.meta))
    for damaged in (keeper.taken[1][: len(keeper.taken[1]) // 2], b"not a checkpoint"):
        with pytest.raises(ck.CheckpointMismatch, match="not a readable checkpoint"):
            ck.read(io.BytesIO(damaged))


def in_parts(checkpoint: ck.Checkpoint, count: int) -> list[ck.Checkpoint]:
    """``checkpoint`` as ``count`` processes of a split run write it: each array cut
    into blocks along its first axis, block i in part i (where the axis has cells)."""
    parts: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for path, array in checkpoint.state.items():
        for i, block in enumerate(np.array_split(np.arange(array.shape[0]) if array.ndim else np.zeros(1), count)):
            if block.size:
                start = (int(block[0]),) + (0,) * (array.ndim - 1)
                parts[i][ck.piece_name(path, start)] = array[int(block[0]):int(block[-1]) + 1] if array.ndim else array
    return [ck.Checkpoint(checkpoint.step, checkpoint.peak, state, {**checkpoint.meta, "part": [i, count]}) for i, state in enumerate(parts)]


def test_a_checkpoint_in_parts_goes_on_only_when_every_piece_is_there() -> None:
    """Processes of a split run each write their part (blocks of the arrays, named by
    where they start): the parts together resume the uninterrupted run bit for bit; a
    part or a piece missing, or parts of different steps, are refused naming it."""
    sim = every_state_kind()
    keeper = Keeper()
    whole = ms.solve(sim, checkpoints=ck.CheckpointPolicy(save=keeper, interval_s=0.0))
    checkpoint = keeper.read(2)
    parts = [ck.read(io.BytesIO(written)) for written in map(Keeper.written, in_parts(checkpoint, 3))]
    combined = ck.combine(parts[::-1])
    ck.check(combined, sim)
    assert len(combined.state) > len(checkpoint.state)  # pieces, not whole arrays
    assert_identical(whole, ms.solve(sim, resume=combined))
    with pytest.raises(ck.CheckpointMismatch, match=r"needs parts 0…2, not \[0, 2\]"):
        ck.combine([parts[0], parts[2]])
    later = keeper.read(3)
    with pytest.raises(ck.CheckpointMismatch, match=f"part 1 is of step {later.step}"):
        ck.combine([parts[0], in_parts(later, 3)[1], parts[2]])
    dropped = dict(combined.state)
    del dropped[ck.piece_name("E/0", (0, 0, 0))]
    with pytest.raises(ck.CheckpointMismatch, match=r"pieces of \['E/0'\] cover .* a part is missing"):
        solve(sim, resume=ck.Checkpoint(combined.step, combined.peak, dropped, combined.meta))


def test_a_deadline_suspends_the_solve_at_a_checkpoint_it_resumes_from() -> None:
    sim = every_state_kind()
    whole = ms.solve(sim)
    keeper, resume, chunk = Keeper(), None, 0
    for run in (1, 2):  # a deadline already past: each run steps one chunk, then stops
        with pytest.raises(ck.SolveSuspended) as suspended:
            ms.solve(sim, checkpoints=ck.CheckpointPolicy(save=keeper, interval_s=1e9, deadline=time.monotonic()), resume=resume)
        resume = keeper.read(-1)
        chunk = chunk or resume.step
        assert resume.step == suspended.value.step == run * chunk < suspended.value.total
    assert len(keeper.taken) == 2
    assert_identical(whole, ms.solve(sim, resume=resume))
