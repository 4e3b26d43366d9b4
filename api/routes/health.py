"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import FollowerDep, RegistryDep, StateDep
from api.models import Health, Readiness
from graph_store import GraphStoreError
from graphrouter.errors import GraphRouterError

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="liveness: the process answers")
def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    summary="readiness: the store answers a ping and a checkpoint is loaded",
    responses={503: {"model": Readiness, "description": "not ready; each field says why"}},
)
def ready(state: StateDep, registry: RegistryDep, follower: FollowerDep) -> Readiness | JSONResponse:
    store_status = scorer_status = "ok"
    try:
        state.get_store().ping()
    except GraphStoreError as exc:
        store_status = str(exc)
    try:
        scorer = registry.get_scorer()
    except (GraphStoreError, GraphRouterError) as exc:
        scorer, scorer_status = None, str(exc)
    body = Readiness(
        status="ready" if store_status == scorer_status == "ok" else "not ready",
        store=store_status,
        scorer=scorer_status,
        checkpoint=scorer.checkpoint.version if scorer else None,
        router=scorer.router.name if scorer else None,
        candidates=len(scorer.routable_candidates) if scorer else None,
        change_version=follower.version if follower is not None else None,
        change_resyncs=follower.resyncs if follower is not None else None,
        pending_expired=follower.expired if follower is not None else None,
        replica=state.replica_id,
    )
    if body.status != "ready":
        return JSONResponse(body.model_dump(), status_code=503)
    return body
