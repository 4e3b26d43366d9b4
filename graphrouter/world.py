"""Build a :class:`~graphrouter.routers.base.World` from a store snapshot: matrices, embeddings, token counts."""

from __future__ import annotations

import numpy as np

from graph_store import TASK, GraphSnapshot
from graphrouter.embeddings import Embedder
from graphrouter.routers.base import World
from graphrouter.routing_data import RoutingData
from graphrouter.tokens import count_tokens


def candidate_texts(data: RoutingData) -> list[str]:
    return [f"{name}: {desc}" for name, desc in zip(data.candidates, data.candidate_text, strict=True)]


def build_world(snapshot: GraphSnapshot, embedder: Embedder, progress: bool = False) -> World:
    """Embeds every query, candidate description and task (from the embedding cache where possible)."""
    data = RoutingData.from_snapshot(snapshot)
    tasks = snapshot.nodes[TASK]
    task_texts = [f"{n}: {d}" if d else n for n, d in zip(tasks.keys, tasks.text["description"], strict=True)]
    return World(
        data=data,
        query_emb=embedder.embed(data.query_text, progress=progress),
        query_tokens=np.asarray(count_tokens(data.query_text), dtype=np.float64),
        candidate_emb=embedder.embed(candidate_texts(data)),
        task_emb=embedder.embed(task_texts),
    )
