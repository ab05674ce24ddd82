"""What the service benchmarks share: the embedded service on a free port with a
fresh data directory, and a one-line description of the machine."""

from __future__ import annotations

import os
import platform
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from metosim.serve.db import stop_embedded
from metosim.serve.service import shutdown, start
from metosim.serve.settings import Settings


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, ray {ray.__version__}"


@contextmanager
def embedded_service(num_cpus: int, **settings: Any) -> Iterator[Settings]:
    """Local Ray with ``num_cpus`` CPUs for solves, the embedded PostgreSQL and the
    local store; everything (PostgreSQL included) stopped on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = Settings(data_dir=tempfile.mkdtemp(prefix="metosim-bench-"), port=port, **settings)
    start(config, num_cpus=num_cpus)
    try:
        yield config
    finally:
        shutdown()
        stop_embedded(config)
