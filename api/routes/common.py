"""Pieces the resource routers share: the 401 documentation, outcomes from a registration body, an atomic write."""

from __future__ import annotations

import time
from typing import Any

from fastapi import HTTPException, status

from graph_store import GraphBatch, GraphStore, NodeNotFoundError, Outcome

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
