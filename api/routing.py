"""Routing through the serving scorer, one way for every entry point: ``POST /v1/route`` and its batch
(api/routes/route.py), the micro-batcher (api/batching.py) and the chat proxy (api/proxy.py).

Each call takes the service's read lock (a retrained scorer is swapped in under its write lock, so an answer comes
wholly from one checkpoint), refuses a named task the registry does not route (registered after training, or
deleted: :meth:`ServiceState.check_task`), and applies the service's exploration default
(``GRAPHROUTER_EXPLORE_DEFAULT``) to a request that does not say. :func:`response` counts the decision in
``/metrics``. Query texts are never logged; a debug line carries their length and a short hash.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from api.models import RouteRequest, RouteResponse
from api.settings import Settings
from api.state import ServiceState
from graphrouter.errors import GraphRouterError
from graphrouter.route_request import RouteRequest as ScorerRequest
from graphrouter.route_result import RouteResult

log = logging.getLogger("api")


def scorer_request(req: RouteRequest, settings: Settings, k: int | None = None) -> ScorerRequest:
    """The scorer's form of an API route request (``k``: instead of the request's own)."""
    weights = (req.weights.w_effect, req.weights.w_cost) if req.weights is not None else None
    explore = settings.explore_default if req.explore is None else req.explore
    return ScorerRequest(
        req.query,
        req.task,
        req.k if k is None else k,
        req.scenario,
        weights,
        req.budget,
        req.candidates,
        explore,
        req.input_tokens,
        req.max_output_tokens,
    )


def route(req: RouteRequest, state: ServiceState, scorer: Any, k: int | None = None) -> RouteResult:
    """One request: the scorer's answer, or the GraphRouterError saying why not. ``scorer``: the one the request
    began with, used if none is installed now."""
    _log_request(req)
    r = scorer_request(req, state.settings, k)
    with state.lock.read():
        current = state.scorer or scorer  # a retrained scorer may have been swapped in since the request began
        if req.task is not None:
            state.check_task(req.task, current)
        return current.top_k(
            r.query,
            task=r.task,
            k=r.k,
            scenario=r.scenario,
            weights=r.weights,
            budget=r.budget,
            candidates=r.candidates,
            explore=r.explore,
            input_tokens=r.input_tokens,
            max_output_tokens=r.max_output_tokens,
        )


def route_many(reqs: Sequence[RouteRequest], state: ServiceState) -> list[RouteResponse | Exception]:
    """Route a micro-batch (api/batching.py): one embedding call and one router pass for all of them, under one
    read lock; each request gets its answer or its own error, exactly as :func:`route` would give it."""
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
        results = current.top_k_many([scorer_request(reqs[i], state.settings) for i in todo])
    for i, result in zip(todo, results, strict=True):
        out[i] = result if isinstance(result, Exception) else response(result, state)
    return out  # type: ignore[return-value]


def response(result: RouteResult, state: ServiceState) -> RouteResponse:
    """The API's answer to a routed request, its top-1 (and an exploration) counted in ``/metrics``."""
    if result.candidates:
        state.metrics.decided(result.candidates[0].name, result.candidates[0].kind)
    if result.explored:
        state.metrics.explored(result.candidates[0].name, result.candidates[0].kind, result.extra_cost)
    return RouteResponse.model_validate(result.answer())


def _log_request(req: RouteRequest) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "route: %d chars (sha256 %s), task=%s, k=%d",
            len(req.query),
            hashlib.sha256(req.query.encode()).hexdigest()[:12],
            req.task,
            req.k,
        )
