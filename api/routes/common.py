"""Pieces the resource routers share: the 401 documentation, outcomes from a registration body, an atomic write."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import HTTPException, status

from graph_store import Agent, GraphBatch, GraphStore, LLMNode, NodeNotFoundError, Outcome
from graphrouter.errors import GraphRouterError

if TYPE_CHECKING:
    from api.state import ServiceState
    from graphrouter.scorer import Scorer

Candidate = TypeVar("Candidate", LLMNode, Agent)

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong API key, or no key configured"}
}


def registration_outcomes(name: str, kind: str, outcomes: list[Any] | None) -> list[Outcome]:
    """The outcome edges of a registration body (each with ``query_id``, ``effect``, ``cost``), stamped now."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return [
        Outcome(o.query_id, name, o.effect, o.cost, kind=kind, source="api", observed_at=now) for o in outcomes or []
    ]


def outcome_values(outcomes: list[Outcome]) -> tuple[dict[str, float], dict[str, float]]:
    """Observed effects and costs by query id, as the scorer takes them."""
    return {o.query_id: o.effect for o in outcomes}, {o.query_id: o.cost for o in outcomes}


def write_or_422(store: GraphStore, batch: GraphBatch) -> None:
    """One atomic store write; an outcome naming a query the store does not have is the client's 422."""
    try:
        store.write(batch)
    except NodeNotFoundError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"outcomes: {exc}") from None


def add_to_scorer(
    state: ServiceState,
    scorer: Scorer | None,
    store: GraphStore,
    kind: str,
    name: str,
    outcomes: list[Outcome],
    register: Callable[[Scorer, dict[str, float], dict[str, float]], None],
) -> str | None:
    """Make a candidate that was just written to the store routable (``register`` adds it to the scorer with the
    observed effects and costs of its registration's ``outcomes``), under the service's write lock. Returns a note
    when it is not routable yet (no scorer loaded, or a router that needs a retrain first). If the scorer refuses
    it, the store write is undone (it was new: this removes exactly what was written) and the error goes to the
    client."""
    if scorer is None:
        return f"stored; the scorer is not loaded ({state.scorer_error}), it will be routable once it is"
    effects, costs = outcome_values(outcomes)
    try:
        with state.lock.write():
            if name in state.removed:  # deleted while the service ran and re-registered with the same data
                del state.removed[name]
            else:
                register(scorer, effects, costs)
    except NotImplementedError:
        return (
            f"stored; the {scorer.router.name!r} router cannot add a candidate without retraining: "
            "retrain (POST /v1/train) to route to it"
        )
    except GraphRouterError:
        store.delete_node(kind, name)
        raise
    return None


def same_registration(
    store: GraphStore, kind: str, node: Candidate, same: Callable[[Candidate, Candidate], bool], what: str, path: str
) -> Candidate | None:
    """The stored node of that name when it holds the same data (an idempotent re-registration), None when there
    is none; another registration under the name is a 409."""
    if not store.has_node(kind, node.name):
        return None
    existing = store.get_node(kind, node.name)
    if not isinstance(existing, type(node)) or not same(existing, node):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{what} {node.name!r} is already registered with other data; DELETE {path}/{node.name} first to "
            "replace it",
        )
    return existing


def refuse_stale_candidate(
    state: ServiceState,
    scorer: Scorer | None,
    node: Candidate,
    same: Callable[[Candidate, Candidate], bool],
    what: str,
    remedy: str = "retrain (POST /v1/train)",
) -> None:
    """A candidate deleted while the service ran that its router could not drop is still in the scorer with its
    old data: re-registering it is allowed with that same data only (409 otherwise)."""
    if scorer is None or node.name not in scorer.candidates:
        return
    before = state.removed.get(node.name)
    if not isinstance(before, type(node)) or not same(before, node):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{what} {node.name!r} was deleted while the service ran and the scorer still holds its old data; "
            f"re-register it with the same data, or {remedy} to register other data",
        )
