"""Who is calling: API keys from the ``Authorization: Bearer`` header (looked up by
their SHA-256) and the per-key request rate limit."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from . import keys
from .problems import BEARER, Problem


class TokenBucket:
    """Per-key request rate limit (this replica's view)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.state: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if allowed, else seconds until a token is available."""
        with self.lock:
            now = time.monotonic()
            tokens, last = self.state.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self.state[key] = (tokens - 1, now)
                return 0.0
            self.state[key] = (tokens, now)
            return (1 - tokens) / self.rate


def bearer_token(request: Request) -> str:
    """The request's ``Authorization: Bearer`` token (else Problem 401)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "Unauthorized", "missing Authorization: Bearer <key>", headers=BEARER)
    return token.strip()


async def authenticate(db: AsyncConnectionPool, token: str) -> dict[str, Any]:
    """The key row of an API key, looked up by its SHA-256 (else Problem 401)."""
    async with db.connection() as conn:
        cur = await conn.execute(keys.AUTHENTICATE, (keys.digest(token),))
        key = await cur.fetchone()
    if key is None:
        raise Problem(401, "Unauthorized", "unknown or revoked API key", headers=BEARER)
    return key
