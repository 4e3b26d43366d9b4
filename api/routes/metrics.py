"""``GET /metrics``: the app's Prometheus metrics (see ``api/metrics.py``), open like every read."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import MetricsDep
from api.metrics import Metrics

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus text format: requests and latencies per route, routing decisions per model",
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition format"}},
)
def metrics(registry: MetricsDep) -> Response:
    return Response(registry.render(), media_type=Metrics.content_type)
