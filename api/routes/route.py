"""Top-k candidates for a query: ``POST /v1/route`` and ``POST /v1/route/batch``.

Validation happens in three steps, each answered with a message naming the field: the request model (422: missing or
malformed fields, wrong JSON types, k < 1, NaN, negative or huge weights, an unknown scenario, a text that is not
valid Unicode, ...), the service state (400: a task deleted, or registered after training) and the scorer's one
validator, graphrouter/route_request.py (400: no candidate left to route to, an unknown task or candidate, no
candidate within the budget).
A task registered after the checkpoint was trained is a 400 saying to retrain (or to omit the task);
it is not mapped to an inferred one behind the client's back. The top-1 candidate of every answer is counted in
``/metrics``.
The endpoints are ``async``: the checks run on the event loop and the routing itself (embedding, GNN) in one hop to
the thread pool, instead of a plain ``def`` endpoint's hop there and a second one to validate its response.
The routing itself is api/routing.py's, shared with the micro-batcher and the chat proxy. With
``GRAPHROUTER_BATCH_WINDOW_MS`` > 0, ``POST /v1/route`` goes through the micro-batcher (api/batching.py):
concurrent requests share one embedding call and one router pass (:func:`api.routing.route_many`), with the same
answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, status
from starlette.concurrency import run_in_threadpool

from api import routing
from api.deps import BatcherDep, ScorerDep, SettingsDep, StateDep
from api.errors import message_field
from api.models import BatchRouteRequest, BatchRouteResponse, RouteRequest, RouteResponse
from api.state import ServiceState
from graphrouter.errors import GraphRouterError, QueryTooLongError

router = APIRouter(prefix="/v1/route", tags=["route"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the scorer refused the request (the message says why)"},
    422: {"description": "the body is invalid (the message names the field)"},
    503: {"description": "no checkpoint loaded"},
}


@router.post("", response_model=RouteResponse, responses=_ERRORS, summary="top-k candidates for one query")
async def route(req: RouteRequest, state: StateDep, scorer: ScorerDep, batcher: BatcherDep) -> RouteResponse:
    if batcher is not None:  # GRAPHROUTER_BATCH_WINDOW_MS > 0
        return await asyncio.wrap_future(batcher.submit(req))
    return await run_in_threadpool(_route_one, req, state, scorer)


def _route_one(req: RouteRequest, state: ServiceState, scorer: Any) -> RouteResponse:
    return routing.response(routing.route(req, state, scorer), state)


@router.post(
    "/batch", response_model=BatchRouteResponse, responses=_ERRORS, summary="top-k candidates for many queries"
)
async def route_batch(
    req: BatchRouteRequest, state: StateDep, settings: SettingsDep, scorer: ScorerDep
) -> BatchRouteResponse:
    """All or nothing: if one item is refused, the answer is that item's error, prefixed with its index."""
    if len(req.queries) > settings.max_batch_size:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"queries: {len(req.queries)} items; the limit is {settings.max_batch_size} (GRAPHROUTER_MAX_BATCH_SIZE)",
        )
    return await run_in_threadpool(_route_all, req, state, scorer)


def _route_all(req: BatchRouteRequest, state: ServiceState, scorer: Any) -> BatchRouteResponse:
    results = []
    for i, item in enumerate(req.queries):
        try:
            results.append(_route_one(item, state, scorer))
        except (GraphRouterError, QueryTooLongError) as exc:
            if type(exc) not in (GraphRouterError, QueryTooLongError):  # e.g. no scorer: not this item's fault
                raise
            sep = "." if message_field(str(exc)) else ": "  # "task: unknown…" → "queries[1].task: unknown…"
            raise type(exc)(f"queries[{i}]{sep}{exc}") from None
    return BatchRouteResponse(results=results)
