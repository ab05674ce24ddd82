"""The Modal app for GPU overflow: the same worker entry point as the Ray task, on a
B200 (falling back to an A100), reporting to the API over HTTPS with the job's token.

Deploy with ``modal deploy metosim/serve/modal_app.py`` (needs a Modal account, a
secret ``metosim-s3`` holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and the API
reachable at METOSIM_PUBLIC_URL). ``python -m metosim.serve.modal_app`` runs one job
from a JSON payload on stdin: the local stand-in for Modal's cloud.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import modal

from .providers import MODAL_TIMEOUT_S
from .settings import Settings
from .worker import HttpReporter, execute

app = modal.App("metosim")
image = modal.Image.debian_slim(python_version="3.11").pip_install("metosim[gpu,serve]")


def run_payload(job: dict[str, Any]) -> str:
    """Run one job described by :func:`metosim.serve.providers.payload`."""
    reporter = HttpReporter(job["api_url"], job["callback_token"])
    try:
        return execute(job["job_id"], job["token"], job["config_json"], Settings(**job["settings"]), reporter, job.get("request_id"))
    except Exception as e:  # noqa: BLE001 - every failure is reported, then re-raised
        reporter.failed(job["job_id"], job["token"], f"{type(e).__name__}: {e}"[:1000])
        raise


@app.function(gpu=["B200", "A100-80GB"], image=image, timeout=MODAL_TIMEOUT_S, secrets=[modal.Secret.from_name("metosim-s3")])
def run_job(job: dict[str, Any]) -> str:
    return run_payload(job)


if __name__ == "__main__":
    run_payload(json.load(sys.stdin))
