"""One simulation over the devices of several JAX processes, one per node, started by Ray.

Ray reserves the processes' resources together (a placement group: one bundle per
process, on distinct nodes when the cluster has GPUs) and starts one task per bundle in
a fresh worker process. The first process (the lead) decides whether the run goes ahead
(the service's lead reports the job started first), then hands its coordinator address
— and what the others need to know of the run, such as the checkpoint to go on from —
to the others through a small actor; each calls ``jax.distributed.initialize`` and the
same ``solve(sim, devices=N)`` over all N devices of all processes (CPU collectives
through gloo where there is no GPU). The engine places every array shard by shard
(:mod:`metosim.kernels.sharding`) and gathers the monitors to every process, the lead
returning what it made of them — or, given a results store to write, keeps the
field monitors that span a cut in pieces, each process writing its own. Checkpoints are taken at the steps the lead's clock
decides, each process storing its own part and the lead a manifest of the parts.
"""

from __future__ import annotations

import functools
import io
import math
import socket
import time
from collections.abc import Callable
from typing import Any

import ray

from ..data import SimulationData, solve
from ..simulation import Simulation
from .settings import Settings

#: How long the processes wait for each other (placement, the coordinator's address).
START_TIMEOUT_S = 120.0
#: Published instead of an address when the lead will not run (a stale dispatch).
STOP = "stop"
#: How long the other processes get to end on their own once one has ended the run,
#: before they are cancelled (those waiting in a collective for a failed one never do).
CANCEL_GRACE_S = 5.0

#: The lead's ``join(go, shared=None)``: whether the run goes ahead, and what the
#: other processes' ``follow(shared)`` gets.
Join = Callable[..., None]


@ray.remote(num_cpus=0)
class Rendezvous:
    """Holds the lead's coordinator address (host:port), or STOP, and what it shares
    with the others."""

    def __init__(self) -> None:
        self.published: tuple[str, Any] | None = None

    def publish(self, address: str, shared: Any) -> None:
        self.published = (address, shared)

    def lookup(self) -> tuple[str, Any] | None:
        return self.published


def node_capacity(settings: Settings) -> tuple[int, str]:
    """(devices, what they are) one JAX process of a split solve holds: the largest live
    node's GPU count on a cluster with GPUs, else ``settings.max_devices`` forced host
    CPU devices."""
    gpus = max((int(node["Resources"].get("GPU", 0)) for node in ray.nodes() if node["Alive"]), default=0)
    return (gpus, "GPUs on the largest node") if gpus else (settings.max_devices, "CPU devices per process (METOSIM_MAX_DEVICES)")


def max_processes(per_process: int) -> int:
    """How many JAX processes of ``per_process`` devices the cluster can hold at once:
    nodes with that many GPUs each, else (forced CPU devices) one per CPU core."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if any(r.get("GPU", 0) for r in nodes):
        return sum(1 for r in nodes if r.get("GPU", 0) >= per_process)
    return int(sum(r.get("CPU", 0) for r in nodes))


def processes_for(devices: int, per_node: int) -> int:
    """JAX processes for ``devices``: one while a node holds them, else the fewest that
    hold ``per_node`` or fewer each."""
    return max(1, math.ceil(devices / per_node))


def _free_address() -> str:
    """This node's address with a free TCP port, for the JAX coordinator."""
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return f"{ray.util.get_node_ip_address()}:{port}"


def _initialize(address: str, processes: int, rank: int) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # the CPU client's; GPUs use NCCL
    jax.distributed.initialize(address, num_processes=processes, process_id=rank, initialization_timeout=int(START_TIMEOUT_S))


def jax_process(rank: int, processes: int, rendezvous: Any, lead: Callable[[Join], Any], follow: Callable[[Any], None]) -> Any:
    """The body of one JAX process: the lead (rank 0) gets a ``join(go, shared=None)``
    to call once it knows whether the run goes ahead; the others wait for its address
    (or STOP), join and run ``follow(shared)``. Each runs in a worker of its own
    (``max_calls=1``), which exits after it."""
    if rank == 0:

        def join(go: bool, shared: Any = None) -> None:
            address = _free_address() if go else STOP
            ray.get(rendezvous.publish.remote(address, shared))
            if go:
                _initialize(address, processes, 0)

        return lead(join)
    deadline = time.monotonic() + START_TIMEOUT_S
    while (published := ray.get(rendezvous.lookup.remote())) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {rank}: no coordinator address after {START_TIMEOUT_S:.0f} s")
        time.sleep(0.1)
    address, shared = published
    if address != STOP:
        _initialize(address, processes, rank)
        follow(shared)
    return None


def across_processes(processes: int, devices_per_process: int, lead: Callable[[Join], Any], follow: Callable[[Any], None], timeout: float | None = None, name: str = "", placement_timeout: float | None = START_TIMEOUT_S) -> Any:
    """Run ``lead`` in the first of ``processes`` JAX processes and ``follow`` in the
    others (see :func:`jax_process`), each holding ``devices_per_process`` devices: GPUs
    of distinct nodes on a cluster with GPUs, else forced host CPU devices. Returns the
    lead's result; the first process to fail ends the run with its error. ``name``
    names the placement group, so whoever cancels the run can remove it
    (:func:`release`). ``placement_timeout``: how long to wait for the processes'
    resources (None: until they are free, as a queued job does).

    Each process of a GPU cluster holds one CPU and its GPUs; on a cluster without GPUs
    (forced host devices: the same code path, for tests and small runs) the processes
    share one CPU between them, which is what a one-device CPU job holds."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    gpu = ray.cluster_resources().get("GPU", 0) > 0
    cpus = 1.0 if gpu else 1.0 / processes
    bundle = {"CPU": cpus, "GPU": devices_per_process} if gpu else {"CPU": cpus}
    group = placement_group([bundle] * processes, strategy="STRICT_SPREAD" if gpu else "SPREAD", name=name)
    rendezvous = Rendezvous.remote()
    refs: list[Any] = []
    try:
        ray.get(group.ready(), timeout=placement_timeout)
        # jax.distributed must start before JAX's backend: a worker of its own for each
        # process (an environment no other task has, so Ray starts one), gone after it.
        env = {"METOSIM_JAX_PROCESS": "1"} if gpu else {"METOSIM_JAX_PROCESS": "1", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
        # Not retried: a process started again could not rejoin the others' collectives;
        # a lost one ends the run (the service requeues it if it had checkpointed).
        task = ray.remote(max_calls=1, max_retries=0)(jax_process)
        refs = [
            task.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank),
                num_cpus=cpus,
                num_gpus=devices_per_process if gpu else 0,
                runtime_env={"env_vars": env},
            ).remote(rank, processes, rendezvous, lead, follow)
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
        return ray.get(refs[0])
    finally:
        if refs:
            # Only what still runs after a moment is cancelled (a refusal ends every
            # process alike, on its own): cancelling a task just as it finishes aborts
            # this process in Ray 2.x ("Tried to complete task that was not pending",
            # ray-project/ray#54527), which killed the test run once.
            _, running = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
            for ref in running:
                ray.cancel(ref, force=True)
        ray.kill(rendezvous)
        remove_placement_group(group)


def release(name: str) -> None:
    """Remove the placement group ``name`` if it is still there: a run cancelled by force
    never reaches its own clean-up, and would hold its devices."""
    from ray.util.placement_group import get_placement_group, remove_placement_group

    try:
        remove_placement_group(get_placement_group(name))
    except ValueError:  # already removed
        pass


def follow_solve(config_json: str, devices: int, shared: Any = None, output: str | None = None) -> None:
    """A follower's part of a split solve: the same solve, writing its own part of the
    results store at ``output`` if one is named, else its results dropped. ``shared``
    is what the lead joined with: nothing here (no checkpoint to resume)."""
    solve(Simulation.model_validate_json(config_json), devices=devices, output=output)


def _lead_solve(config_json: str, devices: int, output: str | None, join: Join) -> bytes | None:
    join(True)
    data = solve(Simulation.model_validate_json(config_json), devices=devices, output=output)
    if output is not None:
        return None  # the store is whole once every process's solve has returned
    buffer = io.BytesIO()
    data.to_hdf5(buffer)
    return buffer.getvalue()


def solve_across_processes(sim: Simulation, processes: int, devices_per_process: int, timeout: float | None = None, output: str | None = None) -> SimulationData:
    """Run ``sim`` split over ``processes`` × ``devices_per_process`` devices, one JAX
    process each (:func:`across_processes`), and return the results. Raises what a
    process raised (a refused ``devices`` included).

    ``output``: a directory every process sees (a cluster's shared filesystem) for the
    results as a zarr store, each process writing its own part (``ms.solve(...,
    output=)``); the data returned read from it. Without it the lead's gathered
    results come back through Ray."""
    config, devices = sim.model_dump_json(), processes * devices_per_process
    lead, follow = functools.partial(_lead_solve, config, devices, output), functools.partial(follow_solve, config, devices, output=output)
    results = across_processes(processes, devices_per_process, lead, follow, timeout)
    return SimulationData.open(output) if output is not None else SimulationData.from_hdf5(io.BytesIO(results))
