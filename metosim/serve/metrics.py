"""Prometheus metrics of an API replica: requests and latency, plus job counts and
durations read from PostgreSQL at scrape time.

The objects live here, not in ``app``: Serve ships the ingress class by value, and
its methods must reach the same registry as the middleware."""

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

from .db import connect
from .states import TERMINAL

REGISTRY = CollectorRegistry()
REQUESTS = Counter("metosim_http_requests", "HTTP requests", ["method", "route", "code"], registry=REGISTRY)
LATENCY = Histogram("metosim_http_request_seconds", "HTTP request latency", ["method", "route"], registry=REGISTRY, buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
_registered: list[Any] = []


class JobMetrics:
    """Prometheus collector reading job counts and durations from PostgreSQL at scrape."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def collect(self) -> Iterator[Any]:
        with connect(self.database_url) as conn:
            counts = conn.execute("SELECT status, count(*) AS n FROM jobs GROUP BY status").fetchall()
            durations = conn.execute(
                "SELECT count(*) FILTER (WHERE started_at IS NOT NULL) AS started, "
                "coalesce(sum(extract(epoch FROM started_at - created_at)), 0) AS wait, "
                "count(*) FILTER (WHERE status = 'COMPLETED') AS done, "
                "coalesce(sum(extract(epoch FROM finished_at - started_at)) FILTER (WHERE status = 'COMPLETED'), 0) AS solve FROM jobs"
            ).fetchone()
        jobs = GaugeMetricFamily("metosim_jobs", "Jobs by state", labels=["state"])
        by_state = {r["status"]: r["n"] for r in counts}
        for state in ("QUEUED", "RUNNING", *TERMINAL):
            jobs.add_metric([state], by_state.get(state, 0))
        yield jobs
        yield SummaryMetricFamily("metosim_queue_wait_seconds", "Time from submission to start", count_value=durations["started"], sum_value=float(durations["wait"]))
        yield SummaryMetricFamily("metosim_solve_seconds", "Time from start to completion", count_value=durations["done"], sum_value=float(durations["solve"]))


def register_job_metrics(database_url: str) -> None:
    """Add the job collector once per process."""
    if not _registered:
        collector = JobMetrics(database_url)
        REGISTRY.register(collector)
        _registered.append(collector)


def latest() -> bytes:
    return generate_latest(REGISTRY)
