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

from fastapi import APIRouter, Query, Response, status

from api.candidate_models import AgentDetail, AgentIn, AgentList, AgentOut, AgentRegistered, ProbeSet
from api.deps import RegistryDep, ScorerDep, StateDep, StoreDep, WriteAuth
from api.errors import AUTH_RESPONSES, registration_responses
from api.models import Deleted
from api.registry import stamped_outcomes
from api.routes.probes import KParam, SeedParam, probe_route, probe_set
from graph_store import AGENT, LLM, MAX_PAGE_INDEX, Agent, GraphStore, LLMNode

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
    responses=registration_responses(
        AgentRegistered,
        "an agent of that name is registered with other data, or an LLM has that name",
        "invalid body, an unknown llm, or an outcome naming an unknown query",
    ),
)
def register_agent(body: AgentIn, response: Response, registry: RegistryDep, _auth: WriteAuth) -> AgentRegistered:
    done = registry.register(body.node(), stamped_outcomes(body.name, AGENT, body.outcomes))
    response.status_code = done.status_code
    assert isinstance(done.node, Agent)
    return AgentRegistered(**AgentOut.of(done.node, done.backing, done.routable).model_dump(), **done.summary())


@router.get("", response_model=AgentList, summary="list the stored agents, by name")
@router.get("/", response_model=AgentList, include_in_schema=False)  # not "no agent named ''"
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
        count=store.count_nodes(AGENT),
    )


@router.get("/{name:path}/probes", **probe_route("agent"))
def get_agent_probes(
    name: str, _auth: WriteAuth, store: StoreDep, scorer: ScorerDep, k: KParam = 20, seed: SeedParam = 0
) -> ProbeSet:
    # declared before the catch-all GET /{name:path}, so that .../probes is matched here
    return probe_set(AGENT, name, k, seed, store, scorer)


@router.get("/{name:path}", response_model=AgentDetail, responses={404: {"description": "no such agent"}})
def get_agent(name: str, state: StateDep, store: StoreDep) -> AgentDetail:
    node = store.get_node(AGENT, name)
    assert isinstance(node, Agent)
    return AgentDetail(
        **AgentOut.of(node, _backing(store, node), state.routable(name)).model_dump(),
        outcomes=store.outcome_counts(AGENT, target=name).get(name, 0),
        learning=state.learning(name),
    )


@router.delete(
    "/{name:path}",
    response_model=Deleted,
    summary="remove an agent and its outcomes; it is not routed to from the next request",
    responses={**_AUTH, 404: {"description": "no such agent"}},
)
def delete_agent(name: str, registry: RegistryDep, _auth: WriteAuth) -> Deleted:
    return Deleted(name=name, outcomes_deleted=registry.delete(AGENT, name))
