"""Every FastAPI dependency of the service, as ``Annotated`` aliases: StateDep, SettingsDep, StoreDep,
ScorerDep, RegistryDep, TrainerDep, BatcherDep, FollowerDep, MetricsDep, WriteAuth, OperatorView, ProxyDep,
ProxyAuth, FeedbackAuth; and ``strict_query``, which the service's own routers take for every operation. The
objects behind them are built once, in the app's lifespan."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.batching import MicroBatcher
from api.metrics import Metrics
from api.proxy import ChatProxy
from api.registry import CandidateRegistry
from api.replication import Follower
from api.settings import Settings
from api.state import ServiceState
from api.training import Trainer
from graph_store import GraphStore
from graphrouter.scorer import Scorer

# Dependencies that only read an attribute are ``async def``: FastAPI runs a plain ``def`` dependency in its thread
# pool, a thread hop per dependency per request. The ones that may block (opening the store, loading the scorer)
# hop only on that slow path.


def _query_names(dependant: Dependant) -> set[str]:
    names = {f.alias for f in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _needs_write_key(dependant: Dependant) -> bool:
    return dependant.call is require_write_key or any(_needs_write_key(sub) for sub in dependant.dependencies)


async def strict_query(request: Request) -> None:
    """Query parameters are as strict as bodies: one the operation does not take (``?n=2`` for ``?k=2``) is a 422
    naming it, not ignored. (Not on the OpenAI-compatible paths, where clients may add their own, e.g. api-version.)"""
    route = request.scope.get("route")
    if not request.query_params or route is None:
        return
    known = _query_names(route.dependant)
    unknown = [name for name in dict.fromkeys(request.query_params) if name not in known]
    if unknown:
        if _needs_write_key(route.dependant):  # a client without the key learns it needs one, not the parameters
            await require_write_key(request.app.state.service.settings, await _bearer(request))
        takes = f"this operation takes {', '.join(sorted(known))}" if known else "this operation takes none"
        raise RequestValidationError(
            [
                {"type": "extra_forbidden", "loc": ("query", name), "msg": f"unknown query parameter; {takes}"}
                for name in unknown
            ]
        )


async def get_state(request: Request) -> ServiceState:
    return request.app.state.service  # type: ignore[no-any-return]


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_store(state: StateDep) -> GraphStore:
    """The open store; 503 (StoreUnavailableError) if it cannot be reached."""
    return state.store or await run_in_threadpool(state.get_store)


StoreDep = Annotated[GraphStore, Depends(get_store)]


async def get_registry(request: Request) -> CandidateRegistry:
    return request.app.state.registry  # type: ignore[no-any-return]


RegistryDep = Annotated[CandidateRegistry, Depends(get_registry)]


async def get_trainer(request: Request) -> Trainer:
    return request.app.state.trainer  # type: ignore[no-any-return]


TrainerDep = Annotated[Trainer, Depends(get_trainer)]


async def get_batcher(request: Request) -> MicroBatcher | None:
    """The micro-batcher of /v1/route (None unless GRAPHROUTER_BATCH_WINDOW_MS > 0)."""
    return getattr(request.app.state, "batcher", None)


BatcherDep = Annotated[MicroBatcher | None, Depends(get_batcher)]


async def get_follower(request: Request) -> Follower | None:
    """The change-log follower (None when the service does not follow one)."""
    return getattr(request.app.state, "follower", None)


FollowerDep = Annotated[Follower | None, Depends(get_follower)]


async def get_scorer(state: StateDep, registry: RegistryDep) -> Scorer:
    """The loaded scorer; 503 if there is none (no checkpoint yet, or the store was down)."""
    return state.scorer or await run_in_threadpool(registry.get_scorer)


ScorerDep = Annotated[Scorer, Depends(get_scorer)]

_bearer = HTTPBearer(auto_error=False, description="the service's API key (GRAPHROUTER_API_KEY)")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _is_api_key(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> bool:
    """Whether the bearer sent is the configured API key (compared in constant time)."""
    key = settings.api_key
    return (
        key is not None
        and credentials is not None
        and secrets.compare_digest(credentials.credentials.encode(), key.get_secret_value().encode())
    )


async def require_write_key(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Writes need ``Authorization: Bearer <GRAPHROUTER_API_KEY>``; with no key configured they are refused."""
    if settings.api_key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "writes are disabled: no API key is configured; set GRAPHROUTER_API_KEY on the server and send "
            "'Authorization: Bearer <key>'",
            headers=_CHALLENGE,
        )
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing 'Authorization: Bearer <key>' header", headers=_CHALLENGE
        )
    if not _is_api_key(settings, credentials):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong API key", headers=_CHALLENGE)


WriteAuth = Annotated[None, Depends(require_write_key)]


async def operator_view(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Settings | None:
    """The settings to show the operator's details with (an LLM's upstream) when an open read comes with the API
    key; None otherwise. No key, or another one (a gateway's, a proxy key), is a plain open read, not an error."""
    return settings if _is_api_key(settings, credentials) else None


OperatorView = Annotated[Settings | None, Depends(operator_view)]


async def get_proxy(request: Request) -> ChatProxy:
    return request.app.state.proxy  # type: ignore[no-any-return]


ProxyDep = Annotated[ChatProxy, Depends(get_proxy)]

_proxy_bearer = HTTPBearer(
    auto_error=False, description="a proxy key (GRAPHROUTER_PROXY_KEY), as OpenAI clients send their api_key"
)


async def require_proxy_key(
    proxy: ProxyDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_proxy_bearer)]
) -> str:
    """The chat proxy needs ``Authorization: Bearer <a GRAPHROUTER_PROXY_KEY key>``, within its rate limit."""
    return proxy.authorize(credentials.credentials if credentials else None)


ProxyAuth = Annotated[str, Depends(require_proxy_key)]


async def require_feedback_key(
    proxy: ProxyDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_proxy_bearer)]
) -> str:
    """Feedback takes a proxy key (what the calling client holds) or the admin key."""
    return proxy.authorize(credentials.credentials if credentials else None, admin_too=True)


FeedbackAuth = Annotated[str, Depends(require_feedback_key)]
