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

An LLM may carry an ``upstream`` (an OpenAI-compatible ``base_url``, the upstream ``model`` id, and the NAME of the
server's environment variable holding its key, ``api_key_env``), which ``POST /v1/chat/completions`` uses to call it.
It is set at registration or with ``PATCH /v1/llms/{name}`` (``{"upstream": {...}}`` or ``{"upstream": null}``), and
shown on GET with ``api_key_set`` (whether that variable is set on the server), never the key, and only to a request
that carries the API key (an open read sees ``proxied``: whether it has one). It is not part of
the registration's identity: registering the same routing data again with another upstream is the idempotent 200
with a note, and leaves the stored upstream as it was (PATCH changes it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.candidate_models import LLMDetail, LLMIn, LLMList, LLMOut, LLMPatch, LLMRegistered, ProbeSet
from api.deps import OperatorView, RegistryDep, ScorerDep, SettingsDep, StateDep, StoreDep, WriteAuth
from api.errors import AUTH_RESPONSES, registration_responses
from api.models import Deleted
from api.registry import stamped_outcomes
from api.routes.probes import KParam, SeedParam, probe_route, probe_set
from api.upstream import check_key_env
from graph_store import LLM, MAX_PAGE_INDEX, LLMNode

router = APIRouter(prefix="/v1/llms", tags=["llms"])

_AUTH = AUTH_RESPONSES


@router.post(
    "",
    response_model=LLMRegistered,
    status_code=status.HTTP_201_CREATED,
    summary="register an LLM; routable from the next /v1/route",
    responses=registration_responses(
        LLMRegistered,
        "an LLM of that name is registered with other data, or an agent has that name",
        "invalid body, or an outcome names an unknown query",
    ),
)
def register_llm(
    body: LLMIn, response: Response, registry: RegistryDep, settings: SettingsDep, _auth: WriteAuth
) -> LLMRegistered:
    check_key_env(settings, body.upstream.api_key_env if body.upstream else None)
    done = registry.register(body.node(), stamped_outcomes(body.name, LLM, body.outcomes))
    response.status_code = done.status_code
    assert isinstance(done.node, LLMNode)
    return LLMRegistered(**LLMOut.of(done.node, done.routable, operator=settings).model_dump(), **done.summary())


@router.get("", response_model=LLMList, summary="list the stored LLMs, by name")
@router.get("/", response_model=LLMList, include_in_schema=False)  # not "no LLM named ''"
def list_llms(
    state: StateDep,
    store: StoreDep,
    operator: OperatorView,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_PAGE_INDEX)] = 0,
) -> LLMList:
    nodes = store.list_nodes(LLM, limit=limit, offset=offset)
    return LLMList(
        data=[LLMOut.of(n, state.routable(n.key), operator) for n in nodes if isinstance(n, LLMNode)],
        count=store.count_nodes(LLM),
    )


@router.get("/{name:path}/probes", **probe_route("LLM"))
def get_llm_probes(
    name: str, _auth: WriteAuth, store: StoreDep, scorer: ScorerDep, k: KParam = 20, seed: SeedParam = 0
) -> ProbeSet:
    # declared before the catch-all GET /{name:path}, so that .../probes is matched here
    return probe_set(LLM, name, k, seed, store, scorer)


@router.get("/{name:path}", response_model=LLMDetail, responses={404: {"description": "no such LLM"}})
def get_llm(name: str, state: StateDep, store: StoreDep, operator: OperatorView) -> LLMDetail:
    node = store.get_node(LLM, name)
    assert isinstance(node, LLMNode)
    return LLMDetail(
        **LLMOut.of(node, state.routable(name), operator).model_dump(),
        outcomes=store.outcome_counts(LLM, target=name).get(name, 0),
        learning=state.learning(name),
    )


@router.patch(
    "/{name:path}",
    response_model=LLMOut,
    summary="set or remove an LLM's upstream (how POST /v1/chat/completions calls it); routing is unchanged",
    responses={**_AUTH, 404: {"description": "no such LLM"}, 400: {"description": "an invalid upstream"}},
)
def patch_llm(name: str, body: LLMPatch, state: StateDep, registry: RegistryDep, _auth: WriteAuth) -> LLMOut:
    up = body.upstream
    check_key_env(state.settings, up.api_key_env if up else None)
    node = registry.set_upstream(
        name, up.base_url if up else None, up.model if up else None, up.api_key_env if up else None
    )
    return LLMOut.of(node, state.routable(name), operator=state.settings)


@router.delete(
    "/{name:path}",
    response_model=Deleted,
    summary="remove an LLM and its outcomes; it is not routed to from the next request",
    responses={**_AUTH, 404: {"description": "no such LLM"}, 409: {"description": "agents run on it"}},
)
def delete_llm(name: str, registry: RegistryDep, _auth: WriteAuth) -> Deleted:
    return Deleted(name=name, outcomes_deleted=registry.delete(LLM, name))
