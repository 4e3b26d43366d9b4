"""Probe sets of a stored LLM or agent (``GET /v1/llms/{name}/probes``, ``GET /v1/agents/{name}/probes``).

The answer lists the stored training queries whose outcomes would tell the router most about the candidate
(:mod:`graphrouter.probes`). The onboarding loop: register the model (or not yet), fetch its probes, run the model on
them, post the outcomes (``POST /v1/outcomes``, or with the registration), and it routes on what they showed from the
next request. The API key is needed (401 first): stored queries include the texts of proxied calls. Unknown name: 404;
no scorer loaded: 503; ``k`` outside 1..500: 422.
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any

from fastapi import HTTPException, Query, status

from api.candidate_models import ProbeOut, ProbeSet
from api.errors import AUTH_RESPONSES
from graph_store import AGENT, LLM, GraphStore
from graphrouter.probes import MAX_PROBES, MAX_SEED
from graphrouter.scorer import Scorer

KParam = Annotated[int, Query(ge=1, le=MAX_PROBES, description="how many probes")]
SeedParam = Annotated[
    int,
    Query(ge=0, le=MAX_SEED, description="seed of the random sample within each task (same graph and seed: same set)"),
]


def probe_route(what: str) -> dict[str, Any]:
    """The arguments of a resource's ``GET /{name}/probes`` route, for candidates of one kind (``what``: "LLM",
    "agent")."""
    return {
        "response_model": ProbeSet,
        "summary": f"the stored queries to run this {what} on: their outcomes tell the router most about it (needs "
        "the key: stored queries include the texts of proxied calls)",
        "responses": {**AUTH_RESPONSES, 404: {"description": f"no such {what}"}, 503: {"description": "no scorer"}},
    }


def probe_set(kind: str, name: str, k: int, seed: int, store: GraphStore, scorer: Scorer) -> ProbeSet:
    """The probe set of the stored ``kind`` node ``name`` (NodeNotFoundError → 404)."""
    other, path = (AGENT, "agents") if kind == LLM else (LLM, "llms")
    if not store.has_node(kind, name) and store.has_node(other, name):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no {kind} named {name!r}; it is an {other}: GET /v1/{path}/{urllib.parse.quote(name, safe='')}/probes",
        )
    store.get_node(kind, name)  # 404 if unknown
    probes = scorer.probes(name, k, seed, store.answered(kind, name))
    return ProbeSet(name=name, k=k, seed=seed, probes=[ProbeOut(id=p.id, text=p.text, task=p.task) for p in probes])
