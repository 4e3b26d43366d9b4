"""Exception handlers: every error a client can cause is a 4xx ``{"detail": message}`` naming the field and the
problem; an unavailable store or scorer is a 503. None of them is a 500 with a stack trace.

| error | status |
|---|---|
| malformed JSON body | 400 |
| a body that is not sent as JSON | 415 |
| request validation (missing field, wrong type, out of range, NaN, unknown field) | 422, with ``errors`` |
| InvalidInputError, GraphRouterError (e.g. a Scorer.top_k refusal) | 400 |
| NodeNotFoundError | 404 |
| ConflictError | 409 |
| StoreUnavailableError, CheckpointError, scorer not loaded | 503 (with Retry-After) |
| any other GraphStoreError (the database rejected something) | 500, message only |
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from graph_store import ConflictError, GraphStoreError, InvalidInputError, NodeNotFoundError, StoreUnavailableError
from graphrouter.errors import (
    CandidateExistsError,
    CheckpointError,
    GraphRouterError,
    QueryTooLongError,
    ScorerUnavailableError,
)

log = logging.getLogger("api")

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong API key, or no key configured"}
}


def registration_responses(model: type, conflict: str, unprocessable: str) -> dict[int | str, dict[str, Any]]:
    """What a registration endpoint can answer besides its 201 (OpenAPI)."""
    return {
        **AUTH_RESPONSES,
        200: {"model": model, "description": "already registered with the same data (idempotent)"},
        409: {"description": conflict},
        422: {"description": unprocessable},
    }


RETRY_AFTER_S = "5"


_PARAMETER_KINDS = ("query", "path", "header", "cookie")


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "queries", 3, "k")`` → ``queries[3].k``; the body itself is ``body``; ``("query", "limit")`` →
    ``limit (query parameter)``."""
    kind = loc[0] if loc and loc[0] in ("body", *_PARAMETER_KINDS) else None
    out = ""
    for p in loc[1:] if kind else loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    if kind in _PARAMETER_KINDS:
        return f"{out} ({kind} parameter)"
    return out or "body"


def status_for(exc: GraphStoreError | GraphRouterError) -> int:
    """The HTTP status of an error of either root (the store's or graphrouter's)."""
    if isinstance(exc, StoreUnavailableError | ScorerUnavailableError | CheckpointError):
        return status.HTTP_503_SERVICE_UNAVAILABLE
    if isinstance(exc, NodeNotFoundError):
        return status.HTTP_404_NOT_FOUND
    if isinstance(exc, ConflictError | CandidateExistsError):
        return status.HTTP_409_CONFLICT
    if isinstance(exc, QueryTooLongError):
        return status.HTTP_422_UNPROCESSABLE_CONTENT
    if isinstance(exc, InvalidInputError | GraphRouterError):
        return status.HTTP_400_BAD_REQUEST
    return status.HTTP_500_INTERNAL_SERVER_ERROR


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    for e in errors:
        if e.get("type") == "json_invalid":
            problem = (e.get("ctx") or {}).get("error", "not valid JSON")
            where = e["loc"][1] if len(e.get("loc", ())) > 1 else "?"
            return JSONResponse(
                {"detail": f"malformed JSON in the request body: {problem} (at character {where})"},
                status_code=status.HTTP_400_BAD_REQUEST,
            )
    if any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type.lower():
            return JSONResponse(
                {"detail": f"body: send a JSON object with 'Content-Type: application/json' (got {content_type!r})"},
                status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            )
    # the offending input is not echoed back: it may be a 20,000-character query
    items = [{"field": _field(e["loc"]), "problem": e["msg"], "type": e["type"]} for e in errors]
    detail = "; ".join(f"{i['field']}: {i['problem']}" for i in items)
    return JSONResponse({"detail": detail, "errors": items}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def graph_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GraphStoreError | GraphRouterError)
    code = status_for(exc)
    headers = {"Retry-After": RETRY_AFTER_S} if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
    if code >= 500:
        log.warning("%s %s → %d: %s: %s", request.method, request.url.path, code, type(exc).__name__, exc)
    return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not the client's fault: a JSON 500 without the trace (which goes to the service log)."""
    log.error("%s %s → 500: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    return JSONResponse(
        {"detail": f"internal error ({type(exc).__name__}); the service log has the details"},
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, unexpected_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(GraphStoreError, graph_error)
    app.add_exception_handler(GraphRouterError, graph_error)
