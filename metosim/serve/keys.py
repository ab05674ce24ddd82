"""API keys: created once (the key is printed once), stored only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

import psycopg

PREFIX = "msk_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(conn: psycopg.Connection, name: str, quota: int = 1, max_parallel: int = 8) -> tuple[str, dict[str, Any]]:
    """A new key: returns (the key itself — shown once —, its stored row). ``quota``:
    active jobs or batches at once; ``max_parallel``: members of a batch run at once."""
    key = PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO api_keys (id, name, key_sha256, prefix, quota, max_parallel) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, name, prefix, quota, max_parallel, created_at, revoked_at",
        (uuid.uuid4(), name, digest(key), key[: len(PREFIX) + 6], quota, max_parallel),
    ).fetchone()
    return key, row


def list_keys(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return conn.execute("SELECT id, name, prefix, quota, max_parallel, created_at, revoked_at FROM api_keys ORDER BY created_at").fetchall()


def revoke(conn: psycopg.Connection, key_id_or_prefix: str) -> int:
    """Revoke by id or by the printed prefix; returns how many keys were revoked."""
    try:
        key_id = uuid.UUID(key_id_or_prefix)
        cur = conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (key_id,))
    except ValueError:
        cur = conn.execute("UPDATE api_keys SET revoked_at = now() WHERE prefix = %s AND revoked_at IS NULL", (key_id_or_prefix,))
    return cur.rowcount


#: The active key row for a presented key's digest.
AUTHENTICATE = "SELECT id, name, quota, max_parallel FROM api_keys WHERE key_sha256 = %s AND revoked_at IS NULL"


def authenticate(conn: psycopg.Connection, key: str) -> dict[str, Any] | None:
    """The active key row for a presented key, or None."""
    return conn.execute(AUTHENTICATE, (digest(key),)).fetchone()
