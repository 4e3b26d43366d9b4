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

from fastapi import APIRouter, HTTPException, Query, Response, status

from api.deps import StateDep, StoreDep, WriteAuth
from api.models import Deleted, LLMDetail, LLMIn, LLMList, LLMOut, LLMRegistered
from api.routes.common import (
    AUTH_RESPONSES,
    add_to_scorer,
    refuse_stale_candidate,
    registration_outcomes,
    same_registration,
    write_or_422,
)
from api.state import same_llm
from graph_store import AGENT, LLM, MAX_PAGE_INDEX, Agent, GraphBatch, LLMNode

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
def register_llm(body: LLMIn, response: Response, state: StateDep, store: StoreDep, _auth: WriteAuth) -> LLMRegistered:
    node = body.node()
    outcomes = registration_outcomes(body.name, LLM, body.outcomes)
    with state.registry_lock:
        if store.has_node(AGENT, node.name):
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"name: {node.name!r} is an agent; an LLM needs a name of its own"
            )
        existing = same_registration(store, LLM, node, same_llm, "LLM", "/v1/llms")
        if existing is not None:
            if outcomes:  # stored for the next training; the scorer keeps what it was registered with
                write_or_422(store, GraphBatch(outcomes=outcomes))
            response.status_code = status.HTTP_200_OK
            return LLMRegistered(
                **LLMOut.of(existing, state.routable(node.name)).model_dump(),
                created=False,
                outcomes_written=len(outcomes),
            )
        scorer = state.scorer
        refuse_stale_candidate(state, scorer, node, same_llm, "LLM", "restart the service (or retrain)")
        write_or_422(store, GraphBatch(llms=[node], outcomes=outcomes))
        note = add_to_scorer(
            state, scorer, store, LLM, node.name, outcomes, lambda s, eff, cost: s.register_llm(node, eff, cost)
        )
    return LLMRegistered(
        **LLMOut.of(node, state.routable(node.name)).model_dump(),
        created=True,
        outcomes_written=len(outcomes),
        note=note,
    )


@router.get("", response_model=LLMList, summary="list the stored LLMs, by name")
def list_llms(
    state: StateDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_PAGE_INDEX)] = 0,
) -> LLMList:
    nodes = store.list_nodes(LLM, limit=limit, offset=offset)
    return LLMList(
        data=[LLMOut.of(n, state.routable(n.key)) for n in nodes if isinstance(n, LLMNode)],
        count=store.counts()[LLM],
    )


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
def delete_llm(name: str, state: StateDep, store: StoreDep, _auth: WriteAuth) -> Deleted:
    with state.registry_lock:
        node = store.get_node(LLM, name)
        assert isinstance(node, LLMNode)
        agents = [a.key for a in store.list_nodes(AGENT) if isinstance(a, Agent) and a.llm == name]
        if agents:
            shown = ", ".join(agents[:10]) + (", …" if len(agents) > 10 else "")
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"LLM {name!r} backs {len(agents)} agent(s) ({shown}); delete them first (DELETE /v1/agents/…)",
            )
        store.delete_node(LLM, name)
        state.remove_candidate(name, node)
    return Deleted(name=name)
