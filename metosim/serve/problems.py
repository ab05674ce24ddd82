"""Refusals as problem-details JSON (RFC 9457, ``application/problem+json``): the one
shape every 4xx of the API takes, with the field path of each validation error."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

PROBLEM = "application/problem+json"
BEARER = {"WWW-Authenticate": "Bearer"}


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}, status_code=status, media_type=PROBLEM, headers=headers)


class Problem(Exception):
    """A refusal raised from a helper and answered as problem+json by the handler
    :func:`install` registers, so routes read straight through instead of checking
    what each helper returned."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.response = problem(status, title, detail, headers=headers, **extra)


def errors_of(e: ValidationError, locate: Any = None) -> list[dict[str, Any]]:
    """Pydantic errors as problem-details entries: ``loc`` is the dotted field path
    (``locate`` may rewrite it and add keys, e.g. a batch member's name)."""
    out = []
    for err in e.errors(include_url=False, include_input=False):
        entry = {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"], "type": err["type"]}
        if locate:
            entry.update(locate(err["loc"]))
        out.append(entry)
    return out


def invalid(title: str, errors: list[dict[str, Any]]) -> JSONResponse:
    """422 listing every error, each with its field path."""
    return problem(422, title, "; ".join(f"{x['loc'] or 'body'}: {x['msg']}" for x in errors), errors=errors)


def admitted(outcome: dict[str, Any]) -> dict[str, Any]:
    """The job-state actor's answer to a submission, its refusals raised as 409
    (quota, with Retry-After) or 422 (Idempotency-Key reused with another body)."""
    if outcome["refused"] == "quota":
        raise Problem(409, "Active job limit reached", outcome["detail"], headers={"Retry-After": str(outcome["retry_after"])})
    if outcome["refused"] == "idempotency":
        raise Problem(422, "Idempotency-Key conflict", outcome["detail"], errors=[{"loc": "header.Idempotency-Key", "msg": outcome["detail"], "type": "conflict"}])
    return outcome


def member_locator(body: bytes) -> Any:
    """Rewrites ``members.3.simulation.run_time`` to ``members[<name>].simulation.run_time``
    and adds ``"member": <name>``, so a 422 names the batch member."""
    try:
        raw = json.loads(body)["members"]
    except (ValueError, KeyError, TypeError, RecursionError):  # found by tests/test_fuzz.py
        raw = []

    def locate(loc: tuple) -> dict[str, Any]:
        if len(loc) >= 2 and loc[0] == "members" and isinstance(loc[1], int) and loc[1] < len(raw) and isinstance(raw[loc[1]], dict):
            name = str(raw[loc[1]].get("name", loc[1]))
            return {"loc": ".".join([f"members[{name}]", *(str(p) for p in loc[2:])]), "member": name}
        return {}

    return locate


def install(app: FastAPI) -> None:
    """Answer :class:`Problem` and FastAPI's own request errors as problem+json."""

    @app.exception_handler(Problem)
    async def problem_response(request: Request, exc: Problem) -> JSONResponse:
        return exc.response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """Query, path and header errors as problem+json naming each parameter (422)."""
        errors = [{"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"], "type": err["type"]} for err in exc.errors()]
        return invalid("Invalid request", errors)
