"""Top-k candidates for a query: ``POST /v1/route`` and ``POST /v1/route/batch``.

Validation happens in two places, both answered with a message naming the field: the request model (422: missing
or malformed fields, wrong JSON types, k < 1, NaN or negative weights, an unknown scenario, a text that is not valid
Unicode, ...) and the scorer (400: no candidate left to route to, an unknown task or candidate, no candidate within
the budget). A task registered after the checkpoint was trained is a 400 saying to retrain (or to omit the task);
it is not mapped to an inferred one behind the client's back. The top-1 candidate of every answer is counted in
``/metrics``.
The endpoints are ``async``: the checks run on the event loop and the routing itself (embedding, GNN) in one hop to
the thread pool, instead of a plain ``def`` endpoint's hop there and a second one to validate its response.
Query texts are never logged; a debug line carries their length and a short hash.
With ``GRAPHROUTER_BATCH_WINDOW_MS`` > 0, ``POST /v1/route`` goes through the micro-batcher (api/batching.py):
concurrent requests share one embedding call and one router pass (:func:`route_many`), with the same answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from api.deps import ScorerDep, SettingsDep, StateDep
from api.models import BatchRouteRequest, BatchRouteResponse, Candidate, RouteRequest, RouteResponse, Weights
from api.state import ServiceState
from graphrouter.errors import GraphRouterError, QueryTooLongError
from graphrouter.route_request import RouteRequest as ScorerRequest
from graphrouter.scorer import RouteResult

log = logging.getLogger("api")
router = APIRouter(prefix="/v1/route", tags=["route"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the scorer refused the request (the message says why)"},
    422: {"description": "the body is invalid (the message names the field)"},
    503: {"description": "no checkpoint loaded"},
}


def _log_request(req: RouteRequest) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "route: %d chars (sha256 %s), task=%s, k=%d",
            len(req.query),
            hashlib.sha256(req.query.encode()).hexdigest()[:12],
            req.task,
            req.k,
        )


def _weights(req: RouteRequest) -> tuple[float, float] | None:
    return (req.weights.w_effect, req.weights.w_cost) if req.weights is not None else None


def _route_one(req: RouteRequest, state: ServiceState, scorer: Any) -> RouteResponse:
    _log_request(req)
    weights = _weights(req)
    with state.lock.read():
        current = state.scorer or scorer  # a retrained scorer may have been swapped in since the request began
        if req.task is not None:
            state.check_task(req.task, current)
        result = current.top_k(
            req.query,
            task=req.task,
            k=req.k,
            scenario=req.scenario,
            weights=weights,
            budget=req.budget,
            candidates=req.candidates,
            explore=state.settings.explore_default if req.explore is None else req.explore,
        )
    return _response(result, state)


def route_many(reqs: Sequence[RouteRequest], state: ServiceState) -> list[RouteResponse | Exception]:
    """Route a micro-batch (api/batching.py): one embedding call and one router pass for all of them, under one
    read lock; each request gets its answer or its own error, exactly as :func:`_route_one` would give it."""
    out: list[RouteResponse | Exception | None] = [None] * len(reqs)
    with state.lock.read():
        current = state.require_scorer()
        todo: list[int] = []
        for i, req in enumerate(reqs):
            _log_request(req)
            try:
                if req.task is not None:
                    state.check_task(req.task, current)
                todo.append(i)
            except GraphRouterError as exc:
                out[i] = exc
        results = current.top_k_many(
            [
                ScorerRequest(
                    r.query,
                    r.task,
                    r.k,
                    r.scenario,
                    _weights(r),
                    r.budget,
                    r.candidates,
                    state.settings.explore_default if r.explore is None else r.explore,
                )
                for r in (reqs[i] for i in todo)
            ]
        )
    for i, result in zip(todo, results, strict=True):
        out[i] = result if isinstance(result, Exception) else _response(result, state)
    return out  # type: ignore[return-value]


def _response(result: RouteResult, state: ServiceState) -> RouteResponse:
    if result.candidates:
        state.metrics.decided(result.candidates[0].name, result.candidates[0].kind)
    if result.explored:
        state.metrics.explored(result.candidates[0].name, result.candidates[0].kind, result.extra_cost)
    return RouteResponse(
        task=result.task,
        task_inferred=result.task_inferred,
        weights=Weights(w_effect=result.weights[0], w_cost=result.weights[1]),
        candidates=[
            Candidate(name=c.name, kind=c.kind, effect=c.effect, cost=c.cost, utility=c.utility)
            for c in result.candidates
        ],
        checkpoint=result.checkpoint,
        explored=result.explored,
    )


@router.post("", response_model=RouteResponse, responses=_ERRORS, summary="top-k candidates for one query")
async def route(req: RouteRequest, request: Request, state: StateDep, scorer: ScorerDep) -> RouteResponse:
    batcher = getattr(request.app.state, "batcher", None)
    if batcher is not None:  # GRAPHROUTER_BATCH_WINDOW_MS > 0
        return await asyncio.wrap_future(batcher.submit(req))
    return await run_in_threadpool(_route_one, req, state, scorer)


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
            sep = "." if isinstance(exc, QueryTooLongError) else ": "  # its message starts with the field: query
            raise type(exc)(f"queries[{i}]{sep}{exc}") from None
    return BatchRouteResponse(results=results)
