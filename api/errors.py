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
| a body over GRAPHROUTER_MAX_BODY_BYTES; over GRAPHROUTER_RATE_LIMIT (api/limits.py) | 413; 429 (with Retry-After) |
| a method the path does not take | 405, with ``Allow`` listing every method it takes |

``document_errors`` puts the same in the OpenAPI document: every operation lists the error statuses it can answer,
with ``ErrorOut`` (``{"detail": str}``) or, for 422, ``ValidationErrorOut`` (``{"detail": str, "errors": [...]}``)
instead of FastAPI's own validation-error schema, which the service never sends.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from api.limits import EXEMPT_PATHS
from api.models import ErrorOut, ProxyErrorOut, ValidationErrorOut
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


def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
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
    items = [{"field": field_name(e["loc"]), "problem": e["msg"], "type": e["type"]} for e in errors]
    detail = "; ".join(f"{i['field']}: {i['problem']}" for i in items)
    return JSONResponse({"detail": detail, "errors": items}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def graph_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GraphStoreError | GraphRouterError)
    code = status_for(exc)
    headers = {"Retry-After": RETRY_AFTER_S} if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
    if code >= 500:
        log.warning("%s %s → %d: %s: %s", request.method, request.url.path, code, type(exc).__name__, exc)
    return JSONResponse(error_body(request, code, str(exc)), status_code=code, headers=headers)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not the client's fault: a JSON 500 without the trace (which goes to the service log)."""
    log.error("%s %s → 500: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    detail = f"internal error ({type(exc).__name__}); the service log has the details"
    code = status.HTTP_500_INTERNAL_SERVER_ERROR
    return JSONResponse(error_body(request, code, detail), status_code=code)


def index_route_methods(app: FastAPI, routes: Iterable[BaseRoute]) -> None:
    """Keeps (path regex, methods) of ``routes`` for the 405 handler: the routes of the routers included in the app
    (FastAPI wraps those in its own objects) and the app's own (``/openapi.json``, ``/docs``)."""
    app.state.route_methods = [
        (route.path_regex, frozenset(route.methods))
        for route in (*app.router.routes, *routes)
        if isinstance(route, Route | APIRoute) and route.methods
    ]


# the OpenAI-compatible surface: its errors also carry OpenAI's shape, which OpenAI clients read the message from
OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/models"})


def is_openai_path(path: str) -> bool:
    """The OpenAI-compatible endpoints (a request's path, or a route's template in the OpenAPI document)."""
    return path in OPENAI_PATHS or path.startswith("/v1/models/")


_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


# a message's "field: problem" prefix: "outcomes[3].query_id", "messages (the last user message)"
_FIELD = re.compile(r"^[A-Za-z_][\w.\[\]]*(?: \([^)]*\))?$")


def message_field(message: str) -> str | None:
    """The field a refusal's message names first (``"task: unknown task …"`` → ``task``), or None."""
    field, sep, _ = message.partition(": ")
    return field if sep and _FIELD.match(field) else None


def error_body(request: Request, code: int, detail: Any) -> dict[str, object]:
    """``{"detail": …}``, and on the OpenAI-compatible endpoints OpenAI's error object beside it. A 422 raised by a
    handler also gets the ``errors`` list a body that fails validation has: its field is the message's ``field:``
    prefix (``body`` when it has none)."""
    body: dict[str, object] = {"detail": detail}
    if code == status.HTTP_422_UNPROCESSABLE_CONTENT and isinstance(detail, str):
        field = message_field(detail)
        problem = detail if field is None else detail[len(field) + 2 :]
        body["errors"] = [{"field": field or "body", "problem": problem, "type": "value_error"}]
    if is_openai_path(request.url.path):
        body["error"] = openai_error(code, str(detail))
    return body


def openai_error(code: int, message: str) -> dict[str, object]:
    """OpenAI's error object for a status and message (``{"message", "type", "param", "code"}``)."""
    kind = _OPENAI_TYPES.get(code, "api_error" if code >= 500 else "invalid_request_error")
    return {"message": message, "type": kind, "param": None, "code": None}


_FASTAPI_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's 400 for a body json.loads raised on


def _parse_failure(request: Request, cause: BaseException) -> str:
    """What was wrong with a JSON body that FastAPI could not parse (its own message names no cause)."""
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        return (
            f"Content-Encoding {request.headers['content-encoding']!r} is not supported: send the JSON body "
            "uncompressed"
        )
    return json_failure(cause)


def json_failure(cause: BaseException) -> str:
    """What was wrong with a request body ``json.loads`` raised ``cause`` on (the service's and the proxy's)."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the request body is not UTF-8 text ({cause.reason} at byte {cause.start}); send JSON as UTF-8"
    if isinstance(cause, RecursionError):
        return "the request body's JSON is nested too deeply"
    if "integer string conversion" in str(cause):  # Python's own limit, whose message tells the server what to do
        return "the request body's JSON holds an integer of more than 4,300 digits; no field takes one"
    return f"malformed JSON in the request body: {cause}"


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's answer to an HTTPException (``{"detail": message}`` with its headers), except a 405: Starlette's
    ``Allow`` names the methods of the first route matching the path only (``/v1/llms/{name:path}`` has two routes,
    GET and DELETE); this one names the methods of every route that matches it."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != status.HTTP_405_METHOD_NOT_ALLOWED:
        headers = getattr(exc, "headers", None)
        detail = exc.detail
        if detail == _FASTAPI_PARSE_ERROR and exc.__cause__ is not None:
            detail = _parse_failure(request, exc.__cause__)
        return JSONResponse(error_body(request, exc.status_code, detail), status_code=exc.status_code, headers=headers)
    path = request.url.path
    allowed = {m for regex, methods in request.app.state.route_methods for m in methods if regex.match(path)}
    allow = ", ".join(sorted(allowed))
    return JSONResponse(
        {"detail": f"method {request.method} not allowed on {request.url.path}; allowed: {allow}"},
        status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
        headers={"Allow": allow},
    )


_REF = "#/components/schemas/{model}"
_ERROR = {"$ref": _REF.format(model="ErrorOut")}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
_BODY_ERRORS = {
    "400": "malformed JSON in the request body",
    "413": "the body is over GRAPHROUTER_MAX_BODY_BYTES",
    "415": "the body is not sent as application/json",
}


def document_errors(openapi: dict[str, Any]) -> dict[str, Any]:
    """Adds to every operation of ``openapi`` (in place) the error statuses it can answer besides those its route
    declares — 400/413/415 with a body, 422 with a body or query parameters, 429 unless exempt from the rate limit,
    503 under ``/v1/`` (the store or the scorer) — and gives every error response its schema."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorOut, ValidationErrorOut, ProxyErrorOut):
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's, which the service never sends
        schemas.pop(name, None)
    for path, operations in openapi.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            add: dict[str, str] = {}
            if "requestBody" in operation:
                add |= _BODY_ERRORS
            has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
            if "requestBody" in operation or has_query:
                add["422"] = "invalid input: each field and its problem"
            if path not in EXEMPT_PATHS:
                add["429"] = "over GRAPHROUTER_RATE_LIMIT requests per second for this client (when set)"
            if path.startswith("/v1/"):
                add["503"] = "the store or the checkpoint is unavailable"
            for code, description in add.items():
                if code not in responses:
                    responses[code] = {"description": description}
                elif code == "400":  # the route's own 400 (a refusal), and malformed JSON
                    responses[code]["description"] += f"; or {description}"
            for code, response in responses.items():
                if not code.isdigit() or int(code) < 400:
                    continue
                if is_openai_path(path):  # its errors also carry OpenAI's shape (http_error)
                    response["content"] = {"application/json": {"schema": {"$ref": _REF.format(model="ProxyErrorOut")}}}
                elif code == "422":
                    response["content"] = {
                        "application/json": {"schema": {"$ref": _REF.format(model="ValidationErrorOut")}}
                    }
                elif not response.get("content", {}).get("application/json", {}).get("schema"):
                    response["content"] = {"application/json": {"schema": _ERROR}}
                if code in ("429", "503"):
                    response.setdefault("headers", {}).update(_RETRY_AFTER)
    return openapi


def install_openapi(app: FastAPI) -> None:
    """``app.openapi()`` gives FastAPI's document completed by :func:`document_errors` (built once)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_errors(generate())  # generate() caches the document in app.openapi_schema; completed in place
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, unexpected_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(GraphStoreError, graph_error)
    app.add_exception_handler(GraphRouterError, graph_error)
