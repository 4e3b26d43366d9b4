"""Agents: register (routable at once, without retraining, when the router can), list, inspect, remove.

An agent runs on a registered LLM (``llm``: the ``BACKED_BY`` edge) and is priced as that LLM. Writes need the API
key. A registration writes the Agent node (with its BACKED_BY edge) and its outcomes (``HANDLED_BY``) in one atomic
store write, then adds the agent to the scorer, kind ``Agent`` in route answers; if the scorer refuses it, the store
write is undone. An unknown ``llm`` is a 422 naming it. Routers other than the GNN cannot add a candidate without
retraining: the agent is then stored (the next training uses it) and answered with ``routable: false`` and a note;
so is an agent whose LLM is not routable itself.

Candidate names are shared by LLMs and agents (a route answer names either), so an agent cannot take an LLM's name.
Deleting removes the node and its edges from the store and the agent from routing at once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from api.deps import StateDep, StoreDep, WriteAuth
from api.models import AgentDetail, AgentIn, AgentList, AgentOut, AgentRegistered, Deleted
from api.routes.common import (
    AUTH_RESPONSES,
    add_to_scorer,
    refuse_stale_candidate,
    registration_outcomes,
    same_registration,
    write_or_422,
)
from api.state import same_agent
from graph_store import AGENT, LLM, MAX_PAGE_INDEX, Agent, GraphBatch, GraphStore, LLMNode

router = APIRouter(prefix="/v1/agents", tags=["agents"])

_AUTH = AUTH_RESPONSES


def _backing(store: GraphStore, node: Agent) -> LLMNode | None:
    if not store.has_node(LLM, node.llm):
        return None
    llm = store.get_node(LLM, node.llm)
    assert isinstance(llm, LLMNode)
    return llm


@router.post(
    "",
    response_model=AgentRegistered,
    status_code=status.HTTP_201_CREATED,
    summary="register an agent backed by a registered LLM; routable from the next /v1/route",
    responses={
        **_AUTH,
        200: {"model": AgentRegistered, "description": "already registered with the same data (idempotent)"},
        409: {"description": "an agent of that name is registered with other data, or an LLM has that name"},
        422: {"description": "invalid body, an unknown llm, or an outcome naming an unknown query"},
    },
)
def register_agent(
    body: AgentIn, response: Response, state: StateDep, store: StoreDep, _auth: WriteAuth
) -> AgentRegistered:
    node = body.node()
    outcomes = registration_outcomes(body.name, AGENT, body.outcomes)
    with state.registry_lock:
        backing = _backing(store, node)
        if backing is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"llm: no LLM named {node.llm!r} to back agent {node.name!r}; register it first (POST /v1/llms)",
            )
        if store.has_node(LLM, node.name):
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"name: {node.name!r} is an LLM; an agent needs a name of its own"
            )
        existing = same_registration(store, AGENT, node, same_agent, "agent", "/v1/agents")
        if existing is not None:
            if outcomes:  # stored for the next training; the scorer keeps what it was registered with
                write_or_422(store, GraphBatch(outcomes=outcomes))
            response.status_code = status.HTTP_200_OK
            return AgentRegistered(
                **AgentOut.of(existing, backing, state.routable(node.name)).model_dump(),
                created=False,
                outcomes_written=len(outcomes),
            )
        scorer = state.scorer
        refuse_stale_candidate(state, scorer, node, same_agent, "agent")
        write_or_422(store, GraphBatch(agents=[node], outcomes=outcomes))
        if scorer is not None and not state.routable(node.llm):
            note = f"stored; its LLM {node.llm!r} is not routable, so neither is the agent until a retrain"
        else:
            note = add_to_scorer(
                state,
                scorer,
                store,
                AGENT,
                node.name,
                outcomes,
                lambda s, eff, cost: s.register_agent(node, backing, eff, cost),
            )
    return AgentRegistered(
        **AgentOut.of(node, backing, state.routable(node.name)).model_dump(),
        created=True,
        outcomes_written=len(outcomes),
        note=note,
    )


@router.get("", response_model=AgentList, summary="list the stored agents, by name")
def list_agents(
    state: StateDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_PAGE_INDEX)] = 0,
) -> AgentList:
    nodes = [n for n in store.list_nodes(AGENT, limit=limit, offset=offset) if isinstance(n, Agent)]
    llms = {n.key: n for n in store.list_nodes(LLM) if isinstance(n, LLMNode)} if nodes else {}
    return AgentList(
        data=[AgentOut.of(n, llms.get(n.llm), state.routable(n.key)) for n in nodes],
        count=store.counts()[AGENT],
    )


@router.get("/{name:path}", response_model=AgentDetail, responses={404: {"description": "no such agent"}})
def get_agent(name: str, state: StateDep, store: StoreDep) -> AgentDetail:
    node = store.get_node(AGENT, name)
    assert isinstance(node, Agent)
    return AgentDetail(
        **AgentOut.of(node, _backing(store, node), state.routable(name)).model_dump(),
        outcomes=len(store.outcomes(AGENT, target=name)),
    )


@router.delete(
    "/{name:path}",
    response_model=Deleted,
    summary="remove an agent and its outcomes; it is not routed to from the next request",
    responses={**_AUTH, 404: {"description": "no such agent"}},
)
def delete_agent(name: str, state: StateDep, store: StoreDep, _auth: WriteAuth) -> Deleted:
    with state.registry_lock:
        node = store.get_node(AGENT, name)
        assert isinstance(node, Agent)
        store.delete_node(AGENT, name)
        state.remove_candidate(name, node)
    return Deleted(name=name)
