"""Result storage: immutable, checksummed objects with expiring download URLs.

``S3Store`` talks to any S3-protocol service through boto3 (AWS, R2, MinIO);
``LocalStore`` keeps files in a directory for the embedded default and signs its
download URLs with HMAC-SHA256 (served by the API at ``/v1/files/...``). Keys are
``results/<job id>/<sha256>.h5`` (one run's HDF5) or
``results/<job id>/store-<dispatch>/<path>`` (the files of a results store that the
processes of a split run wrote, each its own part; ``…/manifest.json`` is recorded and
names every file with its SHA-256) or
``datasets/<batch id>/<sha256>.zarr.zip`` (a batch's zarr dataset) or
``optimizations/<id>/<iteration>-<sha256>.npz`` (an optimiser checkpoint) or
``checkpoints/<job id>/<config sha256>/<step>-<sha256>.npz`` (a solve's stepping
state, deleted when a newer one is stored and when the job ends; a solve split across
processes stores one part per process and a ``<step>-<sha256>.json`` manifest naming
each part with its SHA-256) and are never overwritten.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode

from .settings import Settings

_KEY = re.compile(r"^(results/[0-9a-f-]{36}/[0-9a-f]{64}\.h5|results/[0-9a-f-]{36}/store-[0-9]{1,9}(/[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*)+|datasets/[0-9a-f-]{36}/[0-9a-f]{64}\.zarr\.zip|optimizations/[0-9a-f-]{36}/[0-9]{5}-[0-9a-f]{64}\.npz|checkpoints/[0-9a-f-]{36}/[0-9a-f]{64}/[0-9]{10}-[0-9a-f]{64}\.(npz|json))$")
#: Content types by key suffix.
MEDIA_TYPES = {"": "application/octet-stream", ".h5": "application/x-hdf5", ".zip": "application/zip", ".npz": "application/octet-stream", ".json": "application/json"}


class ObjectExists(Exception):
    """The key already holds an object: results are immutable."""


def result_key(job_id: str, sha256: str) -> str:
    key = f"results/{job_id}/{sha256}.h5"
    if not _KEY.match(key):
        raise ValueError(f"not a result key: {key!r}")
    return key


def result_store_key(job_id: str, token: int, path: str) -> str:
    """The object of file ``path`` of a results store written by dispatch ``token``."""
    key = f"results/{job_id}/store-{token}/{path}"
    if not _KEY.match(key):
        raise ValueError(f"not a result store key: {key!r}")
    return key


def result_store_files(manifest_path: str, manifest_key: str) -> dict[str, tuple[str, str]]:
    """Each file of a results store by its path: (key, SHA-256), from its manifest
    (stored at ``manifest_key``); ValueError for a path that is not a store file's."""
    prefix = manifest_key.removesuffix("manifest.json")
    out = {}
    for path, sha256 in json.loads(Path(manifest_path).read_text())["files"].items():
        if not _KEY.match(key := prefix + path):
            raise ValueError(f"the manifest names {path!r}, not a results store file")
        out[path] = (key, sha256)
    return out


def is_result_store(key: str) -> bool:
    """Whether a recorded result is a results store's manifest (not an HDF5 file)."""
    return key.startswith("results/") and key.endswith("/manifest.json")


def dataset_key(batch_id: str, sha256: str) -> str:
    key = f"datasets/{batch_id}/{sha256}.zarr.zip"
    if not _KEY.match(key):
        raise ValueError(f"not a dataset key: {key!r}")
    return key


def checkpoint_key(optimization_id: str, iteration: int, sha256: str) -> str:
    key = f"optimizations/{optimization_id}/{iteration:05d}-{sha256}.npz"
    if not _KEY.match(key):
        raise ValueError(f"not a checkpoint key: {key!r}")
    return key


def job_checkpoint_key(job_id: str, config_sha256: str, step: int, sha256: str, suffix: str = ".npz") -> str:
    """A solve's checkpoint (``suffix`` ".npz") or the manifest of its parts (".json")."""
    key = f"checkpoints/{job_id}/{config_sha256}/{step:010d}-{sha256}{suffix}"
    if not _KEY.match(key):
        raise ValueError(f"not a job checkpoint key: {key!r}")
    return key


def is_job_checkpoint_key(job_id: str, key: str) -> bool:
    """Whether ``key`` names a checkpoint of job ``job_id``."""
    return key.startswith(f"checkpoints/{job_id}/") and bool(_KEY.match(key))


def write_manifest(path: str, parts: list[tuple[str, str]]) -> None:
    """Write the manifest of a checkpoint stored in parts: each part's key and SHA-256
    (so the manifest's own SHA-256 vouches for them all)."""
    Path(path).write_text(json.dumps({"parts": [{"key": key, "sha256": sha256} for key, sha256 in parts]}))


def manifest_parts(path: str, job_id: str) -> list[tuple[str, str]]:
    """(key, SHA-256) of each part a manifest names; ValueError unless each is a
    checkpoint of job ``job_id``."""
    parts = [(p["key"], p["sha256"]) for p in json.loads(Path(path).read_text())["parts"]]
    for key, _ in parts:
        if not (is_job_checkpoint_key(job_id, key) and key.endswith(".npz")):
            raise ValueError(f"the manifest names {key!r}, not a checkpoint part of job {job_id}")
    return parts


def media_type(key: str) -> str:
    return MEDIA_TYPES[os.path.splitext(key)[1]]


def file_sha256(path: str | os.PathLike) -> tuple[str, int]:
    """(SHA-256 hex, size in bytes) of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


class ObjectStore(Protocol):
    def put(self, key: str, path: str) -> None:
        """Store the file at ``path`` under ``key``; raise ObjectExists if taken."""

    def presigned_url(self, key: str, expires_in: int) -> str:
        """A URL that downloads ``key`` for ``expires_in`` seconds."""

    def get(self, key: str, path: str) -> None:
        """Copy the object ``key`` to the file ``path``."""

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing if it is not there)."""

    def keys(self, prefix: str) -> list[str]:
        """The keys stored under ``prefix`` (a folder-like one, ending in "/")."""


class S3Store:
    def __init__(self, bucket: str, endpoint_url: str | None = None, region: str = "us-east-1") -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 3}))

    def put(self, key: str, path: str) -> None:
        from botocore.exceptions import ClientError

        with open(path, "rb") as body:
            try:
                # If-None-Match: * makes the write conditional: never overwrite a result.
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", ContentType=media_type(key))
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise ObjectExists(key) from e
                raise

    def presigned_url(self, key: str, expires_in: int) -> str:
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in)

    def get(self, key: str, path: str) -> None:
        self.client.download_file(self.bucket, key, path)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


class LocalStore:
    def __init__(self, root: str, base_url: str, secret: bytes) -> None:
        self.root = Path(root)
        self.base_url = base_url.rstrip("/")
        self.secret = secret

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError("invalid key")
        return self.root / key

    def put(self, key: str, path: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError as e:
            raise ObjectExists(key) from e
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            shutil.copyfileobj(src, out)

    def get(self, key: str, path: str) -> None:
        shutil.copyfile(self.path(key), path)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def keys(self, prefix: str) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in (self.root / prefix).rglob("*") if p.is_file())

    def signature(self, key: str, expires: int) -> str:
        return hmac.new(self.secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def presigned_url(self, key: str, expires_in: int) -> str:
        expires = math.ceil(time.time() + expires_in)  # valid for at least expires_in
        return f"{self.base_url}/v1/files/{key}?{urlencode({'expires': expires, 'signature': self.signature(key, expires)})}"

    def verify(self, key: str, expires: int, signature: str) -> bool:
        return expires >= time.time() and hmac.compare_digest(self.signature(key, expires), signature)


def make_store(settings: Settings) -> S3Store | LocalStore:
    if settings.s3_bucket:
        return S3Store(settings.s3_bucket, settings.s3_endpoint_url, settings.s3_region)
    return LocalStore(str(Path(settings.data_dir) / "objects"), settings.base_url, settings.secret())


def get_verified(store: ObjectStore, key: str, sha256: str, path: str, what: str) -> None:
    """Fetch ``key`` to ``path`` and check it against its recorded SHA-256 (ValueError
    naming ``what`` if it differs)."""
    store.get(key, path)
    if file_sha256(path)[0] != sha256:
        raise ValueError(f"{what} does not match its recorded SHA-256")


def read_verified(settings: Settings, key: str, sha256: str) -> bytes:
    """A small stored object (an optimiser checkpoint), verified, as bytes."""
    with tempfile.TemporaryDirectory(prefix="metosim-object-") as tmp:
        path = os.path.join(tmp, "object")
        get_verified(make_store(settings), key, sha256, path, key)
        return Path(path).read_bytes()


def upload_with_retry(store: ObjectStore, key: str, path: str, attempts: int, backoff_s: float, log: Callable[[str], None] | None = None) -> None:
    """``store.put`` with exponential backoff; an existing identical key counts as done
    (the key embeds the content hash, so the same key means the same bytes)."""
    for attempt in range(1, attempts + 1):
        try:
            store.put(key, path)
            return
        except ObjectExists:
            return
        except Exception as e:  # noqa: BLE001 - any storage fault is retried, then surfaced
            if attempt == attempts:
                raise
            if log:
                log(f"upload attempt {attempt} failed ({type(e).__name__}: {e}); retrying")
            time.sleep(backoff_s * 2 ** (attempt - 1))
