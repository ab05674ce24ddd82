"""Lab clusters: cluster.yaml against Ray's own autoscaler schema, the commands it
runs against our CLI, the Modal app offline, and GPU scheduling with overflow on a
real two-node local Ray cluster."""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema  # installed with ray
import pytest
import yaml  # installed with ray

from metosim.cli import build_parser

ROOT = Path(__file__).parent.parent
CONFIG = yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_own_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(CONFIG)))
    broken = copy.deepcopy(CONFIG)
    broken["available_node_types"]["gpu_a100"]["gpus"] = 8  # unknown key
    with pytest.raises(jsonschema.ValidationError, match="'gpus' was unexpected"):
        validate_config(prepare_config(broken))


def test_node_types_scale_from_zero_with_b200_and_a100() -> None:
    types = CONFIG["available_node_types"]
    assert types[CONFIG["head_node_type"]]["resources"] == {}  # CPU head: no solves
    assert types["gpu_b200"]["node_config"]["InstanceType"] == "p6-b200.48xlarge"
    assert types["gpu_a100"]["node_config"]["InstanceType"] == "p4d.24xlarge"
    assert types["gpu_b200"]["resources"]["accelerator_type:B200"] > 0
    assert types["gpu_a100"]["resources"]["accelerator_type:A100"] > 0
    assert all(t["min_workers"] == 0 for t in types.values())
    assert CONFIG["idle_timeout_minutes"] > 0
    assert any('metosim[gpu,serve]' in c for c in CONFIG["setup_commands"])


def test_spot_gpu_types_mirror_the_on_demand_ones() -> None:
    """A job that fits an on-demand GPU type fits its spot twin: a preempted node's
    jobs can go on on either (from their checkpoints)."""
    types = CONFIG["available_node_types"]
    for name in ("gpu_b200", "gpu_a100"):
        spot, on_demand = types[f"{name}_spot"], types[name]
        assert spot["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
        assert "InstanceMarketOptions" not in on_demand["node_config"]
        assert spot["resources"] == on_demand["resources"]
        assert spot["node_config"]["InstanceType"] == on_demand["node_config"]["InstanceType"]


def test_every_metosim_command_in_cluster_yaml_exists_in_the_cli() -> None:
    commands = [c for key in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands") for c in CONFIG.get(key, [])]
    invocations = []
    for command in commands:
        for match in re.finditer(r"(?:^|&&\s*|nohup\s+)metosim\s+([^>&|;]*)", command):
            invocations.append(shlex.split(match.group(1)))
    assert invocations, "cluster.yaml starts no metosim command"
    parser = build_parser()
    for args in invocations:
        parsed = parser.parse_args(args)  # exits (fails the test) on an unknown command or flag
        assert parsed.command == "serve" and parsed.address == "auto"


def test_modal_app_builds_without_credentials() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from metosim.serve import modal_app as m; import modal; "
         "print(type(m.run_job).__name__, m.app.name, sorted(m.app.registered_functions))"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Function", "metosim", "['run_job']"]


def test_gpu_scheduling_queueing_and_overflow_on_a_two_node_cluster() -> None:
    """Head (API + job-state actor, no GPU) and a worker node with one GPU and an
    A100 accelerator resource: an A100 job runs on the GPU node; the next job waits
    QUEUED while the GPU is busy, then overflows to the subprocess provider (Modal's
    stand-in), which reports back over HTTP with its job token (`completed`, and
    `failed` for a job the engine refuses); a batch with ?accelerator=A100 runs on the
    GPU node."""
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "scenarios" / "multinode.py")], capture_output=True, text=True, timeout=600)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    seen = json.loads(lines[-1])
    assert seen["actor_node"] == seen["head"]  # the head keeps the job state (and the API)
    assert seen["a"] == {"node": seen["gpu_node"], "accelerator": "A100", "provider": "ray", "requested_accelerator": "A100"}
    assert seen["b_while_gpu_busy"] == "QUEUED"
    assert seen["b"]["status"] == "COMPLETED" and seen["b"]["provider"] == "subprocess" and seen["b"]["sha256_ok"]
    assert seen["a_status_after"] == "RUNNING"  # b overflowed rather than waiting for a
    # A failing overflow job reports `failed` over its callback: FAILED with the engine's reason.
    assert seen["c"]["status"] == "FAILED" and seen["c"]["provider"] == "subprocess" and "no guided mode" in seen["c"]["error"]
    assert seen["batch"] == {"status": "COMPLETED", "node": seen["gpu_node"], "accelerator": "A100", "provider": "ray", "requested_accelerator": "A100"}
