"""TLS 1.3 only. Ray Serve hands uvicorn a certificate and key but no minimum protocol
version, so the service sets one where uvicorn builds its SSL context: this module's
:func:`require_tls13` runs as the Ray job's ``worker_process_setup_hook`` in every worker
process of the service, Serve's HTTP proxy included, before any actor starts."""

from __future__ import annotations

import ssl
from typing import Any

HOOK = "metosim.serve.tls.require_tls13"


def require_tls13() -> None:
    """Make every SSL context uvicorn creates in this process refuse TLS below 1.3."""
    import uvicorn.config

    build = uvicorn.config.create_ssl_context
    if getattr(build, "tls13_only", False):
        return

    def create_ssl_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = build(*args, **kwargs)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return context

    create_ssl_context.tls13_only = True  # type: ignore[attr-defined]
    uvicorn.config.create_ssl_context = create_ssl_context
