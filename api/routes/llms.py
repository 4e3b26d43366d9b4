"""LLM candidates: register (routable at once, without retraining, when the router can), list, inspect, remove.

Writes need the API key. A registration writes the LLM node and its outcomes in one atomic store write, then adds
the LLM to the scorer. If the scorer refuses it, the store write is undone, so the store and the scorer agree.
Routers other than the GNN cannot add a candidate without retraining: the LLM is then stored (the next training
uses it) and answered with ``routable: false`` and a note.

Deleting removes the node and its outcome edges from the store and drops the LLM from the scorer at once. An LLM
that agents run on cannot be deleted (409) until they are: the store would keep agents backed by nothing. For
routers that cannot drop a candidate, a deleted LLM is filtered out of every later route instead; re-registering
it with the same data makes it routable again, with different data it needs a restart (or a retrain).
Candidate names are shared by LLMs and agents, so an LLM cannot take an agent's name (409).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import RegistryDep, ScorerDep, StateDep, StoreDep, WriteAuth
from api.errors import AUTH_RESPONSES
from api.models import Deleted, LLMDetail, LLMIn, LLMList, LLMOut, LLMRegistered, ProbeSet
from api.registry import stamped_outcomes
from api.routes.probes import KParam, SeedParam, probe_set
from graph_store import LLM, LLMNode

router = APIRouter(prefix="/v1/llms", tags=["llms"])

_AUTH = AUTH_RESPONSES


@router.post(
    "",
    response_model=LLMRegistered,
    status_code=status.HTTP_201_CREATED,
    summary="register an LLM; routable from the next /v1/route",
    responses={
        **_AUTH,
        200: {"model": LLMRegistered, "description": "already registered with the same data (idempotent)"},
        409: {"description": "an LLM of that name is registered with other data"},
        422: {"description": "invalid body, or an outcome names an unknown query"},
    },
)
def register_llm(body: LLMIn, response: Response, registry: RegistryDep, _auth: WriteAuth) -> LLMRegistered:
    done = registry.register(body.node(), stamped_outcomes(body.name, LLM, body.outcomes))
    if not done.created:
        response.status_code = status.HTTP_200_OK
    assert isinstance(done.node, LLMNode)
    return LLMRegistered(
        **LLMOut.of(done.node, done.routable).model_dump(),
        created=done.created,
        outcomes_written=done.outcomes_written,
        note=done.note,
    )


@router.get("", response_model=LLMList, summary="list the stored LLMs, by name")
def list_llms(
    state: StateDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> LLMList:
    nodes = store.list_nodes(LLM, limit=limit, offset=offset)
    return LLMList(
        data=[LLMOut.of(n, state.routable(n.key)) for n in nodes if isinstance(n, LLMNode)],
        count=store.counts()[LLM],
    )


@router.get(
    "/{name:path}/probes",
    response_model=ProbeSet,
    summary="the stored queries to run this LLM on: their outcomes tell the router most about it",
    responses={404: {"description": "no such LLM"}, 503: {"description": "no scorer loaded"}},
)
def get_llm_probes(name: str, store: StoreDep, scorer: ScorerDep, k: KParam = 20, seed: SeedParam = 0) -> ProbeSet:
    # declared before the catch-all GET /{name:path}, so that .../probes is matched here
    return probe_set(LLM, name, k, seed, store, scorer)


@router.get("/{name:path}", response_model=LLMDetail, responses={404: {"description": "no such LLM"}})
def get_llm(name: str, state: StateDep, store: StoreDep) -> LLMDetail:
    node = store.get_node(LLM, name)
    assert isinstance(node, LLMNode)
    return LLMDetail(
        **LLMOut.of(node, state.routable(name)).model_dump(), outcomes=len(store.outcomes(LLM, target=name))
    )


@router.delete(
    "/{name:path}",
    response_model=Deleted,
    summary="remove an LLM and its outcomes; it is not routed to from the next request",
    responses={**_AUTH, 404: {"description": "no such LLM"}, 409: {"description": "agents run on it"}},
)
def delete_llm(name: str, registry: RegistryDep, _auth: WriteAuth) -> Deleted:
    registry.delete(LLM, name)
    return Deleted(name=name)
