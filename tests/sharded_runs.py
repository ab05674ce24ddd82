"""Runs each case on one device and split over four forced host CPU devices, in one
process, and prints one JSON line per case: the largest relative difference of each
monitor output, and the run facts. ``tests/test_sharding.py`` starts it: XLA reads its
device count once, before JAX starts, so the split runs need a process of their own.

    python tests/sharded_runs.py [case ...]
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np 

import metosim as ms 
from metosim.kernels import solve 
from metosim.kernels import checkpoint as ck 
from metosim.kernels.zarr_results import verify_store

F = ms.C_0 / 1.55e-6
PULSE = ms.GaussianPulse(freq0=F, fwidth=0.3 * F)
FREQS = F * np.array([0.9, 1.0, 1.1])
SILICON, OXIDE = ms.Medium(permittivity=12.1), ms.Medium(permittivity=2.085)
METAL = ms.Lorentz(eps_inf=2.0, poles=[(3.0, 0.8 * F, 0.1 * F)])
THIN_PML = ms.Boundary(minus=ms.PML(num_layers=6), plus=ms.PML(num_layers=6))


def guide() -> ms.Simulation:
    """A 3D silicon wire along x, launched by a mode source, past a dispersive block.
    48 cells along y against 32 and 32: the slabs are cut along y, so the mode planes,
    the flux plane, the z = 0 field plane, the line of the time monitor, the far-field
    box, the guide and the block all cross slab faces (at y = −0.6, 0, 0.6 µm); the
    field plane and the line span y, so a results store keeps them in pieces."""
    return ms.Simulation(
        size=(1.6, 2.4, 1.6), grid_spec=ms.GridSpec.uniform(0.05), run_time=40e-15, precision="float64",
        medium=OXIDE,
        structures=[
            ms.Structure(geometry=ms.Box(center=(0, 0, 0), size=(ms.inf, 0.5, 0.25)), medium=SILICON),
            ms.Structure(geometry=ms.Box(center=(0.3, 0.1, 0.3), size=(0.3, 0.6, 0.2)), medium=METAL),
        ],
        sources=[ms.ModeSource(center=(-0.5, 0, 0), size=(0, 1.6, 1.0), source_time=PULSE, mode_spec=ms.ModeSpec(num_modes=1))],
        monitors=[
            ms.ModeMonitor(name="mode", center=(0.6, 0, 0), size=(0, 1.6, 1.0), freqs=FREQS, mode_spec=ms.ModeSpec(num_modes=2)),
            ms.FluxMonitor(name="flux", center=(0.5, 0, 0), size=(0, 2.0, 1.0), freqs=FREQS),
            ms.FieldMonitor(name="plane", center=(0, 0, 0), size=(ms.inf, ms.inf, 0), freqs=[F]),
            ms.FieldTimeMonitor(name="line", center=(0.2, 0, 0), size=(0, ms.inf, 0), interval=20),
            ms.FieldProjectionAngleMonitor(name="far", center=(0, 0, 0), size=(1.0, 1.6, 0.8), freqs=[F], theta=[0.3, 1.2], phi=[0.0, 1.0]),
        ],
        boundary_spec=ms.BoundarySpec(x=THIN_PML, y=THIN_PML, z=THIN_PML),
    )


def bloch() -> ms.Simulation:
    """A plane wave tilted 30° in x, out of the xz plane, onto a glass half-space with a
    Drude block, Bloch-periodic along x and z: cut along x (32 cells), so the injection
    sheet, the flux planes and the periodic wrap with its phase cross slab faces."""
    source = ms.PlaneWave(center=(0, -0.4, 0), size=(ms.inf, 0, ms.inf), direction="+y", polarization="Ez", angle_theta=0.5, angle_phi=0.3, source_time=PULSE)
    sides = {name: ms.Boundary(minus=ms.BlochBoundary.from_source(source, a, size), plus=ms.BlochBoundary.from_source(source, a, size)) for a, name, size in ((0, "x", 1.6), (2, "z", 0.4))}
    return ms.Simulation(
        size=(1.6, 1.2, 0.4), grid_spec=ms.GridSpec.uniform(0.05), run_time=30e-15, precision="float64",
        structures=[
            ms.Structure(geometry=ms.Box(center=(0, 1, 0), size=(ms.inf, 2, ms.inf)), medium=OXIDE),
            ms.Structure(geometry=ms.Box(center=(0.1, 0.3, 0), size=(0.5, 0.2, ms.inf)), medium=ms.Drude(poles=[(1.5 * F, 0.05 * F)])),
        ],
        sources=[source],
        monitors=[
            ms.FluxMonitor(name="R", center=(0, -0.5, 0), size=(ms.inf, 0, ms.inf), freqs=FREQS, normal_dir="-"),
            ms.FluxMonitor(name="T", center=(0, 0.45, 0), size=(ms.inf, 0, ms.inf), freqs=FREQS),
            ms.FieldMonitor(name="plane", center=(0, 0, 0), size=(ms.inf, ms.inf, 0), freqs=[F]),
        ],
        boundary_spec=ms.BoundarySpec(y=ms.Boundary(minus=ms.PML(num_layers=8), plus=ms.PML(num_layers=8)), **sides),
    )


def symmetric() -> ms.Simulation:
    """A dipole at the centre of a glass cylinder with mirror symmetry in x and y: the
    halved grid (24 × 24 × 32 of 48 × 48 × 32) is cut along z, through the dipole's
    plane, the flux box and the far-field box."""
    return ms.Simulation(
        size=(2.4, 2.4, 1.6), grid_spec=ms.GridSpec.uniform(0.05), run_time=25e-15, precision="float64", symmetry=(1, 1, 0),
        structures=[ms.Structure(geometry=ms.Cylinder(center=(0, 0, 0), radius=0.4, length=1.0), medium=OXIDE)],
        sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=PULSE)],
        monitors=[
            ms.FluxMonitor(name=f"flux{label}", center=(0, 0, 0.5 * sign), size=(1.6, 1.6, 0), freqs=FREQS, normal_dir=side)
            for label, side, sign in (("_up", "+", 1), ("_down", "-", -1))
        ]
        + [
            ms.FieldMonitor(name="plane", center=(0, 0, 0), size=(0, ms.inf, ms.inf), freqs=[F]),
            ms.FieldProjectionAngleMonitor(name="far", center=(0, 0, 0), size=(1.2, 1.2, 1.2), freqs=[F], theta=[0.2, 1.0], phi=[0.5]),
        ],
        boundary_spec=ms.BoundarySpec(x=THIN_PML, y=THIN_PML, z=THIN_PML),
    )


def blocks() -> ms.Simulation:
    """The guide on 34 × 46 × 30 cells: four devices divide no axis, two and two divide
    x and y, so the grid is cut into 2 × 2 blocks (at x = 0 and y = 0), and every
    monitor, the source plane and both CPML axes cross a cut."""
    return guide().updated_copy(size=(1.7, 2.3, 1.5))


CASES = {"guide": guide, "bloch": bloch, "symmetric": symmetric, "blocks": blocks}


def arrays(data: object) -> dict[str, np.ndarray]:
    """Every numeric array of one monitor's output, by variable name."""
    if hasattr(data, "data_vars"):
        return {str(k): np.asarray(v.values) for k, v in data.data_vars.items()}
    return {"": np.asarray(data.values)}


def resumed(sim: ms.Simulation, devices: int, on: int) -> object:
    """A run over ``devices`` checkpointed at every chunk, its middle checkpoint resumed
    over ``on`` devices: checkpoints hold the one-device state (the CPML ψ in slabs)."""
    saved: list[bytes] = []

    def keep(checkpoint: ck.Checkpoint) -> None:
        buffer = io.BytesIO()
        ck.write(checkpoint, buffer)  # as a worker uploads it
        saved.append(buffer.getvalue())

    solve(sim, devices=devices, checkpoints=ck.CheckpointPolicy(save=keep, interval_s=0.0))
    return solve(sim, resume=ck.read(io.BytesIO(saved[len(saved) // 2])), devices=on)


def outputs(result: object) -> dict[str, object]:
    """Monitor outputs by name, of an engine result or of ``SimulationData``."""
    return dict(result.monitors) if hasattr(result, "monitors") else {name: result[name] for name in result}


def differences(one: object, other: object) -> dict[str, float]:
    """The largest difference of each monitor output, relative to its largest value."""
    out, theirs = {}, outputs(other)
    for monitor, data in outputs(one).items():
        for var, a in arrays(data).items():
            b = arrays(theirs[monitor])[var]
            out[f"{monitor}.{var}".rstrip(".")] = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-300))
    return out


def stored(sim: ms.Simulation, one: object) -> dict:
    """The split run written into a results store: its differences from ``one``, the
    files verified against the manifest, and the monitors kept in pieces (their arrays
    stored in shards) with the shard files of each."""
    import zarr

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "store")
        data = ms.solve(sim, devices=4, output=root)
        monitors = zarr.open_group(root, mode="r")["monitors"]
        pieces = {
            name: {var: sum(1 for p in (root / "monitors" / name / var / "c").rglob("*") if p.is_file()) for var, array in node.arrays() if array.shards is not None}
            for name, node in monitors.groups()
        }
        return {"differences": differences(one, data), "verified": verify_store(root), "in_pieces": {name: files for name, files in pieces.items() if files}}


def compare(name: str) -> dict:
    sim = CASES[name]()
    one, split = solve(sim), solve(sim, devices=4)
    facts = {k: split.info[k] for k in ("device", "split_axis", "halo_bytes_per_step", "time_steps", "num_cells")}
    row = {"case": name, "steps_equal": one.info["time_steps"] == split.info["time_steps"], "differences": differences(one, split), **facts}
    row["stored"] = stored(sim, one)
    if name in ("guide", "blocks"):
        for label, devices, on in (("resumed_on_one", 4, 1), ("resumed_split", 1, 4)):
            again = resumed(sim, devices, on)
            row[label] = {"steps_equal": again.info["time_steps"] == one.info["time_steps"], "differences": differences(one, again), "from_step": again.info["resumed_step"]}
    return row


if __name__ == "__main__":
    # Before JAX starts its CPU backend (at the first solve), which reads it once.
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    for name in sys.argv[1:] or list(CASES):
        print(json.dumps(compare(name)), flush=True)
