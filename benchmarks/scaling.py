"""One simulation over several devices: measured overhead on forced CPU devices, and
a model of scaling on GPUs.

``measure`` (the default) forces ``max(--devices)`` host CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count``) and times ``ms.solve(sim,
devices=n)``:
- strong scaling: the standard problem of ``benchmarks/engine.py`` (100³ cells) split
  over n devices;
- weak scaling: 50·n × 100 × 100 cells (the same problem stretched along x), so each
  device keeps 50 × 100 × 100.
Forced host devices share this machine's cores, so no speed-up is possible: the figures
are a correctness and overhead check (what the partitioned program and its halo copies
cost), not a prediction for GPUs.

``model`` prints the expected weak-scaling efficiency and the break-even size of the
slab decomposition on 8 × H200 over NVLink and across nodes over 400 Gb/s InfiniBand,
from a single-GPU rate, the halo (``metosim.kernels.sharding.halo_bytes``: four float32
planes received per device per step) and the collectives per step that ``measure``
counts in the compiled split step (each pays a link latency). No overlap of halo
exchange and interior update is assumed (XLA's partitioner does not overlap them).

    python benchmarks/scaling.py [measure] [--devices 1 2 4] [--steps 200] [--repeat 2]
    python benchmarks/scaling.py model [--gcups 9 50]
    python benchmarks/scaling.py results [--devices 4] [--steps 200] [--repeat 2]

``results`` times a split run's result written gathered (one HDF5 file) against in
pieces (a results store), with a field monitor over the whole volume.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

#: Link figures for the model (per GPU, one direction): NVLink 4 through NVSwitch
#: (H100/H200 SXM: 450 GB/s), one 400 Gb/s InfiniBand NIC per GPU (50 GB/s), both at
#: 80% of peak, and the latency of one neighbour exchange (NCCL send/recv).
NVLINK_BYTES_S, IB_BYTES_S = 0.8 * 450e9, 0.8 * 50e9
NVLINK_LATENCY_S, IB_LATENCY_S = 10e-6, 15e-6
#: Planes an interior device receives (and sends) per step, float32; collectives per
#: step in the compiled split step of the standard problem (``measure`` counts them:
#: one shift per halo plane, two for the point source's node).
HALO_PLANES, ITEM, COLLECTIVES = 4, 4, 6


def exchange_seconds(face_cells: float, across_nodes: bool) -> float:
    """One time step's collectives, one after another: each pays a latency; the halo
    planes cross NVLink, or InfiniBand at a node boundary (which sets the pace)."""
    latency, bandwidth = (IB_LATENCY_S, IB_BYTES_S) if across_nodes else (NVLINK_LATENCY_S, NVLINK_BYTES_S)
    return COLLECTIVES * latency + HALO_PLANES * face_cells * ITEM / bandwidth


def weak_efficiency(side: int, gcups: float, across_nodes: bool) -> float:
    """Each device steps side³ cells at ``gcups`` (10⁹ cells/s) and exchanges side² faces."""
    compute = side**3 / (gcups * 1e9)
    return compute / (compute + exchange_seconds(side**2, across_nodes))


def break_even_side(devices: int, gcups: float, across_nodes: bool) -> int:
    """The smallest cube (side, cells) that ``devices`` slabs step faster than one device."""
    side = 8
    while side**3 / (gcups * 1e9) <= side**3 / (devices * gcups * 1e9) + exchange_seconds(side**2, across_nodes):
        side += 8
    return side


def model(rates: list[float]) -> None:
    print("Weak scaling (each GPU steps side³ cells; 8 GPUs, slabs along one axis):")
    print("| GCUPS per GPU | side | cells per GPU | 8 × H200, NVLink | 2 nodes × 8, InfiniBand |")
    print("| --- | --- | --- | --- | --- |")
    for gcups in rates:
        for side in (128, 256, 384, 512, 768):
            print(f"| {gcups:g} | {side} | {side**3 / 1e6:.0f} M | {weak_efficiency(side, gcups, False):.1%} | {weak_efficiency(side, gcups, True):.1%} |")
    print("\nStrong scaling: the smallest cube that 8 GPUs step faster than one:")
    for gcups in rates:
        one_node, two_nodes = break_even_side(8, gcups, False), break_even_side(16, gcups, True)
        print(f"- {gcups:g} GCUPS per GPU: {one_node}³ cells on one node (8 GPUs), {two_nodes}³ over two nodes (16 GPUs)")
    for gcups in rates:
        side = next(s for s in range(8, 4096, 8) if weak_efficiency(s, gcups, True) >= 0.8)
        print(f"- 80% weak-scaling efficiency across nodes at {gcups:g} GCUPS from {side}³ cells per GPU ({side**3 * 40 / 2**30:.1f} GiB at ~40 B per cell)")


def collectives_per_step(sim: object, devices: int) -> dict[str, int]:
    """The cross-device operations in the compiled split step of ``sim`` (one step of
    the engine's loop body, as ``ms.solve(sim, devices=devices)`` places it)."""
    import collections
    import re

    import jax
    import jax.numpy as jnp

    from metosim.kernels import solver
    from metosim.kernels.sharding import shardings, split_axes, whole_axis_psi
    from metosim.kernels.yee import jax_ops, make_step, single_polarisation

    sim = solver.check_inputs(sim)
    problem, _ = solver.apply_symmetry(sim, solver._setup(sim))
    layout = single_polarisation(problem.layout)
    split = split_axes(layout.shape, layout.active, devices)
    state, params = problem.state, problem.params
    for axis, _ in split:
        layout, state, params = whole_axis_psi(layout, state, params, axis)
    step = make_step(layout, jax_ops())
    placed = shardings(state, layout, split)
    state, params = jax.device_put(state, placed), jax.device_put(params, shardings(params, layout, split))
    compiled = jax.jit(lambda s, p, n: step(s, p, n), out_shardings=placed).lower(state, params, jnp.int32(0)).compile().as_text()
    return dict(collections.Counter(re.findall(r"= \S+ (collective-permute|all-gather|all-reduce|all-to-all|reduce-scatter)\(", compiled)))


def measure(devices: list[int], steps: int, repeat: int) -> None:
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={max(devices)}"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax

    import metosim as ms
    from engine import dipole_problem, standard_problem

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, {jax.device_count()} forced CPU devices, {steps} steps, best of {repeat}")

    def best(sim: ms.Simulation, n: int) -> tuple[float, dict]:
        runs = [ms.solve(sim, devices=n) for _ in range(repeat)]
        return max(r.info["cells_per_second"] for r in runs) / 1e6, runs[0].info

    one = None
    print("| case | devices | cells | split | halo received per step per device | Mcells/s | against 1 device |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, build in (("strong (100³)", lambda n: standard_problem(steps)),
                         ("weak (50·n × 100 × 100)", lambda n: dipole_problem((1.0 * n, 2, 2), ms.Sphere(radius=0.4), (0.3, 0.2, 0.1), "Ez", steps))):
        for n in devices:
            rate, info = best(build(n), n)
            one = rate if n == 1 else one
            split = info.get("split_axis", "—")
            halo = f"{info['halo_bytes_per_step'] / 1e3:.0f} kB" if n > 1 else "—"
            print(f"| {label} | {n} | {info['num_cells']:,} | {split} | {halo} | {rate:.0f} | {rate / one:.2f} |", flush=True)
    for n in devices[1:]:
        print(f"collectives per step, standard problem over {n} devices: {collectives_per_step(standard_problem(steps), n)}")


def results(devices: int, steps: int, repeat: int) -> None:
    """The standard problem with a field monitor over the whole volume (one frequency)
    split over ``devices`` forced CPU devices: its results gathered into the process
    and written as one HDF5 file, against kept in pieces and written into a results
    store (``output=``). Prints the seconds from the start of the solve to the result
    on disk (best of ``repeat``) and the bytes of the monitor a process holds at the
    end: the whole of it gathered, one piece per device kept in pieces."""
    import tempfile
    import time
    from pathlib import Path

    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax

    import metosim as ms
    from engine import standard_problem

    sim = standard_problem(steps)
    f0 = sim.sources[0].source_time.freq0
    sim = sim.updated_copy(monitors=[*sim.monitors, ms.FieldMonitor(name="volume", size=(ms.inf,) * 3, freqs=[f0])])
    whole = 6 * sim.grid.total_cells * 8  # six complex64 components
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, {devices} forced CPU devices, {sim.grid.total_cells:,} cells, {steps} steps, best of {repeat}")

    def gathered(tmp: Path) -> int:
        path = tmp / "result.h5"
        ms.solve(sim, devices=devices).to_hdf5(path)
        return path.stat().st_size

    def in_pieces(tmp: Path) -> int:
        ms.solve(sim, devices=devices, output=tmp / "store")
        return sum(p.stat().st_size for p in (tmp / "store").rglob("*") if p.is_file())

    print("| result | seconds to the result on disk | bytes on disk | the volume monitor's bytes a process holds at the end |")
    print("| --- | --- | --- | --- |")
    for label, write, held in (("gathered, one HDF5 file", gathered, whole), ("in pieces, a results store", in_pieces, whole // devices)):
        times = []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                size = write(Path(tmp))
                times.append(time.perf_counter() - start)
        print(f"| {label} | {min(times):.2f} | {size / 1e6:.1f} MB | {held / 1e6:.1f} MB |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="measure", choices=["measure", "model", "results"])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--gcups", type=float, nargs="+", default=[9.0, 50.0], help="single-GPU rates for the model")
    args = parser.parse_args()
    if args.what == "model":
        model(args.gcups)
    elif args.what == "results":
        results(max(args.devices), args.steps, args.repeat)
    else:
        measure(args.devices, args.steps, args.repeat)


if __name__ == "__main__":
    main()
