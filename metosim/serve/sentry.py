"""Error reporting to Sentry when ``METOSIM_SENTRY_DSN`` is set: unhandled errors in
the API and the worker, and every job that ends FAILED, tagged with the request id
and job id. Every event passes :func:`scrub` first, so no API key, Authorization
header, callback token, pre-signed URL signature or signing secret leaves the service.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .settings import Settings

FILTERED = "[Filtered]"
#: Secret-bearing text inside any string of an event.
PATTERNS = (
    re.compile(r"msk_[A-Za-z0-9_\-]{16,}"),  # MetoSim API keys
    re.compile(r"(?i)(?<=bearer )[^\s\"',]+"),  # Authorization values, worker callback tokens
    re.compile(r"(?i)(?<=signature=)[^&\s\"']+"),  # local-store and S3 (v2) link signatures
    re.compile(r"(?i)(?<=x-amz-signature=)[^&\s\"']+"),  # S3 (v4) pre-signed URL signatures
    re.compile(r"(?i)(?<=x-amz-credential=)[^&\s\"']+"),
    re.compile(r"(?i)(?<=x-amz-security-token=)[^&\s\"']+"),
)
#: Keys whose values are dropped whole, wherever they appear (headers, extras, locals).
SENSITIVE_KEYS = frozenset({"authorization", "cookie", "set-cookie", "x-api-key", "api_key", "key", "token", "callback", "secret", "signing_secret", "password", "signature"})


def scrub(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """``value`` (an event, or any part of one) with secrets replaced by ``[Filtered]``."""
    if isinstance(value, dict):
        return {k: FILTERED if isinstance(k, str) and k.lower() in SENSITIVE_KEYS else scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v, secrets) for v in value)
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, FILTERED)
        for pattern in PATTERNS:
            value = pattern.sub(FILTERED, value)
    return value


def _secrets(settings: Settings) -> tuple[str, ...]:
    """Literal secrets of this deployment: the local store's signing secret."""
    found = [settings.signing_secret] if settings.signing_secret else []
    path = Path(settings.data_dir) / "signing-secret"
    if path.exists():
        found.append(path.read_text().strip())
    return tuple(s for s in found if s)


def init(settings: Settings, component: str) -> bool:
    """Start the Sentry SDK in this process (once) if a DSN is configured."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk

    from ..version import __version__

    if not sentry_sdk.get_client().is_active():
        secrets = _secrets(settings)
        sentry_sdk.init(
            dsn=settings.sentry_dsn,
            release=f"metosim@{__version__}",
            environment=settings.sentry_environment,
            send_default_pii=False,
            include_local_variables=False,  # locals can hold keys and configs
            traces_sample_rate=0.0,
            before_send=lambda event, hint: scrub(event, secrets),
            before_breadcrumb=lambda crumb, hint: scrub(crumb, secrets),
        )
    # The global scope: every request's and task's own scope starts from it.
    sentry_sdk.get_global_scope().set_tag("component", component)
    return True


def tag(**tags: str | None) -> None:
    """Tags on the current scope (a request's, or the worker's task)."""
    import sentry_sdk

    for name, value in tags.items():
        if value:
            sentry_sdk.set_tag(name, value)


def job_failed(job_id: str, reason: str, request_id: str | None) -> None:
    """One error event for a job that ended FAILED (no-op without a DSN)."""
    import sentry_sdk

    if not sentry_sdk.get_client().is_active():
        return
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("job_id", job_id)
        if request_id:
            scope.set_tag("request_id", request_id)
        scope.fingerprint = ["job-failed", reason.split(":", 1)[0]]
        sentry_sdk.capture_message(f"job FAILED: {reason}", level="error")


def flush(timeout_s: float = 2.0) -> None:
    import sentry_sdk

    if sentry_sdk.get_client().is_active():
        sentry_sdk.flush(timeout=timeout_s)
