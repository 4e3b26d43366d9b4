"""Pieces the resource routers share: the 401 documentation, outcomes from a registration body, an atomic write."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, status

from graph_store import GraphBatch, GraphStore, NodeNotFoundError, Outcome
from graphrouter.errors import GraphRouterError

if TYPE_CHECKING:
    from api.state import ServiceState
    from graphrouter.scorer import Scorer

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong API key, or no key configured"}
}


def registration_outcomes(name: str, kind: str, outcomes: list[Any] | None) -> list[Outcome]:
    """The outcome edges of a registration body (each with ``query_id``, ``effect``, ``cost``), stamped now."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return [
        Outcome(o.query_id, name, o.effect, o.cost, kind=kind, source="api", observed_at=now) for o in outcomes or []
    ]


def write_or_422(store: GraphStore, batch: GraphBatch) -> None:
    """One atomic store write; an outcome naming a query the store does not have is the client's 422."""
    try:
        store.write(batch)
    except NodeNotFoundError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"outcomes: {exc}") from None


def add_to_scorer(
    state: ServiceState, scorer: Scorer, store: GraphStore, kind: str, name: str, register: Callable[[], None]
) -> str | None:
    """Make a candidate that was just written to the store routable (``register`` adds it to the scorer), under
    the service's write lock. Returns a note when its router needs a retrain first. If the scorer refuses it, the
    store write is undone (it was new: this removes exactly what was written) and the error goes to the client."""
    try:
        with state.lock.write():
            if name in state.removed:  # deleted while the service ran and re-registered with the same data
                del state.removed[name]
            else:
                register()
    except NotImplementedError:
        return (
            f"stored; the {scorer.router.name!r} router cannot add a candidate without retraining: "
            "retrain (POST /v1/train) to route to it"
        )
    except GraphRouterError:
        store.delete_node(kind, name)
        raise
    return None
