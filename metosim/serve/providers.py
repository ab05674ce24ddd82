"""Overflow providers: run the worker entry point outside the Ray cluster.

``modal`` spawns the deployed Modal function (``metosim/serve/modal_app.py``);
``subprocess`` runs the very same entry point in a local process, standing in for
Modal's cloud where no Modal account exists (the tests use it). Both report back
over HTTP with a per-job callback token.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from .settings import Settings

MODAL_APP = "metosim"
MODAL_FUNCTION = "run_job"
#: The Modal function's timeout (s); its workers hand a job back ten minutes before it.
MODAL_TIMEOUT_S = 6 * 3600
MODAL_MARGIN_S = 600


def payload(settings: Settings, job_id: str, token: int, config_json: str, callback_token: str, request_id: str | None, provider: str) -> dict[str, Any]:
    """What a remote worker needs: the job, where to store the result, where to report,
    its time budget. No database URL or signing secret leaves the cluster."""
    storage = {k: v for k, v in asdict(settings).items() if k in ("s3_endpoint_url", "s3_bucket", "s3_region", "data_dir", "public_url", "host", "port", "upload_attempts", "upload_backoff_s", "solve_time_limit_s")}
    if provider == "modal" and not settings.solve_time_limit_s:
        storage["solve_time_limit_s"] = MODAL_TIMEOUT_S - MODAL_MARGIN_S
    return {"job_id": job_id, "token": token, "config_json": config_json, "settings": storage, "api_url": settings.base_url, "callback_token": callback_token, "request_id": request_id}


def spawn(provider: str, job: dict[str, Any]) -> Any:
    """Start the remote run; returns a handle (a Popen, or Modal's FunctionCall)."""
    if provider == "modal":
        import modal

        return modal.Function.from_name(MODAL_APP, MODAL_FUNCTION).spawn(job)
    if provider == "subprocess":
        process = subprocess.Popen([sys.executable, "-m", "metosim.serve.modal_app"], stdin=subprocess.PIPE, start_new_session=True)
        assert process.stdin is not None
        process.stdin.write(json.dumps(job).encode())
        process.stdin.close()
        return process
    raise ValueError(f"unknown overflow provider {provider!r}")
