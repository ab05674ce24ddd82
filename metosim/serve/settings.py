"""Service settings, from ``METOSIM_*`` environment variables with embedded defaults."""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"METOSIM_{name}")
    return value if value not in (None, "") else default


def modal_token_present() -> bool:
    """A Modal token in the environment or in ~/.modal.toml."""
    return bool(os.environ.get("MODAL_TOKEN_ID")) or Path(os.path.expanduser("~/.modal.toml")).exists()


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "metosim"


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know; plain values so it pickles to Ray workers."""

    data_dir: str = field(default_factory=lambda: str(default_data_dir()))
    #: PostgreSQL URL; None starts an embedded server under ``data_dir/postgres``.
    database_url: str | None = None
    #: S3 endpoint (AWS, R2, MinIO…) and bucket; no bucket → the local store.
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    host: str = "127.0.0.1"
    port: int = 8000
    #: Base URL that clients use to reach the API (download links of the local store).
    public_url: str | None = None
    #: PEM certificate (chain) and private key: the API serves HTTPS (through Ray
    #: Serve's own HTTPOptions) and sends Strict-Transport-Security.
    tls_cert: str | None = None
    tls_key: str | None = None
    ray_address: str | None = None
    max_body_bytes: int = 1 << 20
    #: Largest cells × time steps one job may ask for.
    max_cell_steps: float = 2e11
    #: Largest batch: members, request body (bytes) and cells × time steps in total.
    max_batch_members: int = 1000
    max_batch_bytes: int = 32 << 20
    max_batch_cell_steps: float = 1e13
    rate_per_second: float = 20.0
    rate_burst: int = 40
    default_quota: int = 1
    #: Ray-level retries of a solve whose worker process died.
    max_retries: int = 1
    heartbeat_timeout_s: float = 120.0
    url_expiry_s: int = 900
    upload_attempts: int = 5
    upload_backoff_s: float = 0.5
    signing_secret: str | None = None
    #: Overflow provider for jobs that find no free GPU: "modal", "subprocess" (Modal's
    #: stand-in: the same entry point in a local process) or None. ``modal`` needs
    #: METOSIM_MODAL_ENABLED=1 and a Modal token.
    overflow_provider: str | None = None
    #: How long (s) a QUEUED job waits for a free Ray GPU before it overflows.
    overflow_wait_s: float = 60.0
    #: Seconds of stepping between checkpoints of a solve (a job may ask for its own
    #: with ``?checkpoint_interval=``, not below ``checkpoint_floor_s``): a solve that
    #: loses its worker resumes from the newest one. Shorter solves write none.
    checkpoint_interval_s: float = 600.0
    checkpoint_floor_s: float = 10.0
    #: A worker's time budget (s; 0: none): a solve that would outrun it writes a
    #: checkpoint and hands the job back to go on elsewhere. Modal workers get their
    #: function's timeout less ten minutes when this is 0.
    solve_time_limit_s: float = 0.0
    #: Most devices one solve may be split over on a cluster without GPUs (forced host
    #: CPU devices: a correctness and overhead check, not a speed-up); with GPUs the
    #: limit is the largest node's GPU count.
    max_devices: int = 8
    #: Memory (bytes) of one device, which each device's share of a split solve must
    #: fit; 0: the engine's host limit (METOSIM_MAX_MEMORY, default 80% of RAM).
    device_memory_bytes: float = 0.0
    #: How long (s) a request waits for a database connection before it fails.
    db_timeout_s: float = 10.0
    #: Sentry DSN: errors and FAILED jobs become events (secrets scrubbed).
    sentry_dsn: str | None = None
    sentry_environment: str = "production"

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Settings from the environment; keyword arguments win."""
        env = {
            "data_dir": _env("DATA_DIR"),
            "database_url": _env("DATABASE_URL"),
            "s3_endpoint_url": _env("S3_ENDPOINT_URL"),
            "s3_bucket": _env("S3_BUCKET"),
            "s3_region": _env("S3_REGION"),
            "host": _env("HOST"),
            "port": _env("PORT"),
            "public_url": _env("PUBLIC_URL"),
            "tls_cert": _env("TLS_CERT"),
            "tls_key": _env("TLS_KEY"),
            "ray_address": _env("RAY_ADDRESS"),
            "max_body_bytes": _env("MAX_BODY_BYTES"),
            "max_cell_steps": _env("MAX_CELL_STEPS"),
            "max_batch_members": _env("MAX_BATCH_MEMBERS"),
            "max_batch_bytes": _env("MAX_BATCH_BYTES"),
            "max_batch_cell_steps": _env("MAX_BATCH_CELL_STEPS"),
            "rate_per_second": _env("RATE_PER_SECOND"),
            "rate_burst": _env("RATE_BURST"),
            "default_quota": _env("DEFAULT_QUOTA"),
            "signing_secret": _env("SIGNING_SECRET"),
            "overflow_provider": "modal" if _env("MODAL_ENABLED", "0").lower() in ("1", "true", "yes") and modal_token_present() else None,
            "overflow_wait_s": _env("OVERFLOW_WAIT_S"),
            "max_retries": _env("MAX_RETRIES"),
            "checkpoint_interval_s": _env("CHECKPOINT_INTERVAL_S"),
            "checkpoint_floor_s": _env("CHECKPOINT_FLOOR_S"),
            "solve_time_limit_s": _env("SOLVE_TIME_LIMIT_S"),
            "max_devices": _env("MAX_DEVICES"),
            "device_memory_bytes": _env("DEVICE_MEMORY_BYTES"),
            "sentry_dsn": _env("SENTRY_DSN"),
            "sentry_environment": _env("SENTRY_ENVIRONMENT"),
        }
        types = {k: type(v) for k, v in asdict(cls()).items()}
        values = {k: (types[k](v) if types[k] in (int, float) else v) for k, v in env.items() if v is not None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        return self.public_url or f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def tls(self) -> bool:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both METOSIM_TLS_CERT and METOSIM_TLS_KEY (--tls-cert and --tls-key)")
        return bool(self.tls_cert)

    def secret(self) -> bytes:
        """HMAC secret for local download links: the setting, else a random one kept
        (0600) in the data directory so restarts keep issued links valid."""
        if self.signing_secret:
            return self.signing_secret.encode()
        path = Path(self.data_dir) / "signing-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return path.read_text().strip().encode()
