"""One simulation over the devices of several JAX processes, one per node, started by Ray.

Ray reserves the processes' resources together (a placement group: one bundle per
process, on distinct nodes when the cluster has GPUs), starts one task per bundle in a
fresh worker process, and hands the first process's coordinator address to the others
through a small actor. Each process calls ``jax.distributed.initialize`` and then the
same ``solve(sim, devices=N)`` over all N devices of all processes (CPU collectives
through gloo where there is no GPU); the engine places every array shard by shard
(:mod:`metosim.kernels.sharding`) and gathers the monitors to every process, and the
first process returns the results.
"""

from __future__ import annotations

import io
import socket
import time
from typing import Any

import ray

from ..data import SimulationData, solve
from ..simulation import Simulation

#: How long the processes wait for each other (placement, the coordinator's address).
START_TIMEOUT_S = 120.0


@ray.remote(num_cpus=0)
class Rendezvous:
    """Holds the first process's coordinator address (host:port) for the others."""

    def __init__(self) -> None:
        self.address: str | None = None

    def publish(self, address: str) -> None:
        self.address = address

    def lookup(self) -> str | None:
        return self.address


def _free_address() -> str:
    """This node's address with a free TCP port, for the JAX coordinator."""
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return f"{ray.util.get_node_ip_address()}:{port}"


def jax_process(rank: int, processes: int, rendezvous: Any, config_json: str, devices: int, gpu: bool) -> bytes | None:
    """The body of one JAX process: join the others, solve, and (rank 0) return the
    results file's bytes."""
    import jax

    if rank == 0:
        address = _free_address()
        ray.get(rendezvous.publish.remote(address))
    else:
        deadline = time.monotonic() + START_TIMEOUT_S
        while (address := ray.get(rendezvous.lookup.remote())) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {rank}: no coordinator address after {START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
    if not gpu:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(address, num_processes=processes, process_id=rank, initialization_timeout=int(START_TIMEOUT_S))
    try:
        data = solve(Simulation.model_validate_json(config_json), devices=devices)
    finally:
        jax.distributed.shutdown()
    if rank:
        return None
    buffer = io.BytesIO()
    data.to_hdf5(buffer)
    return buffer.getvalue()


def solve_across_processes(sim: Simulation, processes: int, devices_per_process: int, timeout: float | None = None) -> SimulationData:
    """Run ``sim`` split over ``processes`` × ``devices_per_process`` devices, one JAX
    process per placement-group bundle: the GPUs of distinct nodes on a cluster with
    GPUs, else forced host CPU devices (a test of the same code path on one machine).
    Raises what a process raised (a refused ``devices`` included)."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    gpu = ray.cluster_resources().get("GPU", 0) > 0
    bundle = {"CPU": 1, "GPU": devices_per_process} if gpu else {"CPU": 1}
    group = placement_group([bundle] * processes, strategy="STRICT_SPREAD" if gpu else "SPREAD")
    rendezvous = Rendezvous.remote()
    refs: list[Any] = []
    try:
        ray.get(group.ready(), timeout=START_TIMEOUT_S)
        env = {} if gpu else {"env_vars": {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}}
        # jax.distributed initialises once per process: a fresh worker for each task.
        task = ray.remote(max_calls=1)(jax_process)
        refs = [
            task.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank),
                num_cpus=1,
                num_gpus=devices_per_process if gpu else 0,
                runtime_env=env,
            ).remote(rank, processes, rendezvous, sim.model_dump_json(), processes * devices_per_process, gpu)
            for rank in range(processes)
        ]
        # The first process to fail ends the run: the others would wait in their
        # collectives for it.
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=None if deadline is None else max(deadline - time.monotonic(), 0.0))
            if not done:
                raise TimeoutError(f"the {processes} JAX processes did not finish in {timeout} s")
            ray.get(done[0])
        results = ray.get(refs)
    finally:
        for ref in refs:  # no-ops for finished ones
            ray.cancel(ref, force=True)
        ray.kill(rendezvous)
        remove_placement_group(group)
    return SimulationData.from_hdf5(io.BytesIO(results[0]))
