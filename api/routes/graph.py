"""The graph of record, read-only views."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import StoreDep
from api.models import GraphStats

router = APIRouter(prefix="/v1/graph", tags=["graph"])


@router.get("/stats", response_model=GraphStats, summary="node counts by label, edge counts by type")
def stats(store: StoreDep) -> GraphStats:
    return GraphStats(backend=store.backend, counts=store.counts())
