"""The FastAPI app: ``create_app()`` builds it; uvicorn runs it with ``uvicorn api.main:create_app --factory``.

Nothing heavy happens at import or in ``create_app``: the lifespan opens the store and loads the scorer (the
checkpoint, the embedding model, and any LLM or agent registered in the store since training), unless they are
injected — in a background thread when ``GRAPHROUTER_LOAD_IN_BACKGROUND`` is on (``serve`` turns it on, so the port
opens at once and ``/ready`` reports progress), else before the app serves. Each app has its own Prometheus
registry (``app.state.metrics``), filled by a middleware. A follower applies other replicas' changes from the
store's change log; an optional micro-batcher routes concurrent requests together.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from api.batching import MicroBatcher
from api.deps import strict_query
from api.errors import index_route_methods, install_error_handlers, install_openapi
from api.limits import BodyLimitMiddleware, RateLimitMiddleware
from api.metrics import Metrics, MetricsMiddleware
from api.proxy import ChatProxy
from api.registry import CandidateRegistry
from api.replication import Follower
from api.routes import agents, chat, graph, health, llms, metrics, outcomes, route, tasks, train
from api.routing import route_many
from api.settings import Settings
from api.state import ServiceState
from api.training import Trainer
from api.training_lease import TrainingLease
from api.upstream import make_client, warn_refused_key_envs
from graph_store import GraphStore
from graphrouter.scorer import Scorer

log = logging.getLogger("api")

DESCRIPTION = """\
Recommends which LLMs (or agents) should answer a query, trading predicted quality (effect) against cost.

Reads are open (`GET` anything but `/v1/models*`, and `POST /v1/route`). Writes (`POST`/`DELETE` on `/v1/llms`,
`/v1/agents`, `/v1/tasks`, `PATCH /v1/llms/{name}`, `POST /v1/outcomes`, `POST /v1/train`) need
`Authorization: Bearer <key>`, the key being the server's `GRAPHROUTER_API_KEY`; with none configured, writes are
refused. Errors are `{"detail": message}`, with a 4xx
naming the field and the problem for bad input (422: `{"detail": message, "errors": [...]}`), 413 for a body over
`GRAPHROUTER_MAX_BODY_BYTES`, 429 (with `Retry-After`) over `GRAPHROUTER_RATE_LIMIT` when it is set, and 503 while the
store or the checkpoint is unavailable.

`POST /v1/chat/completions` is an OpenAI-compatible proxy (`model: "graphrouter"` routes, a candidate's name passes
through) and `POST /v1/feedback` completes the outcome of one of its calls; they and `GET /v1/models` take a proxy
key (`GRAPHROUTER_PROXY_KEY`) instead (feedback also takes the admin key).
"""


def create_app(
    settings: Settings | None = None,
    *,
    store: GraphStore | None = None,
    scorer: Scorer | None = None,
    embedder: Any = None,
) -> FastAPI:
    """Build the app. ``store`` / ``scorer`` are used as given (and a given store is not closed); ``embedder``
    replaces the configured embedding model when the scorer is loaded from the checkpoint (tests)."""
    settings = settings if settings is not None else Settings()
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(settings, store=store, scorer=scorer, embedder=embedder, metrics=app_metrics)
        registry = CandidateRegistry(state)
        app.state.service, app.state.registry = state, registry
        lease = TrainingLease(registry)
        app.state.trainer = Trainer(state, registry, lease)
        upstreams = make_client(settings)
        app.state.proxy = ChatProxy(state, registry, upstreams)
        follower = Follower(state, registry, settings.sync_interval, lease)
        lease.follower = follower  # the claims up to its version are known to the lease
        app.state.follower = follower
        app_metrics.follow(follower)
        await run_in_threadpool(state.start)
        await run_in_threadpool(warn_refused_key_envs, state, settings)  # said once, if the store answers
        await run_in_threadpool(follower.mark)  # before loading: changes made while it loads are applied after
        await run_in_threadpool(registry.start, settings.load_in_background)
        follower.start()
        if settings.batch_window_ms > 0:
            app.state.batcher = MicroBatcher(
                lambda reqs: route_many(reqs, state), settings.batch_window_ms / 1000, settings.batch_max
            )
        try:
            yield
        finally:
            if getattr(app.state, "batcher", None) is not None:
                await run_in_threadpool(app.state.batcher.close)
                app.state.batcher = None
            await run_in_threadpool(app.state.trainer.shutdown)  # its claim ended while the store is open
            await run_in_threadpool(follower.stop)
            app_metrics.follow(None)  # not kept (with the state it holds) until a next start
            await upstreams.aclose()
            await run_in_threadpool(state.close)

    app = FastAPI(title="GraphRouter", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.metrics = app_metrics
    # the last added is the outermost: metrics see every answer, a refused client costs no body reading
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.rate_limit is not None:
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        app.add_middleware(RateLimitMiddleware, rate=settings.rate_limit, burst=settings.burst, api_key=key)
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    install_error_handlers(app)
    install_openapi(app)
    modules = (health, route, chat, llms, agents, tasks, outcomes, train, graph, metrics)
    for module in modules:  # the service's own operations refuse unknown query parameters; the proxy's and the
        # probes' (/health, /ready, /metrics) let them be, for clients and monitors that add their own
        strict = [] if module in (chat, health, metrics) else [Depends(strict_query)]
        app.include_router(module.router, dependencies=strict)
    index_route_methods(app, [r for module in modules for r in module.router.routes])
    return app
