"""The world routers learn from: the stored graph as matrices with embeddings (:class:`World`), a batch of queries
to route (:class:`QueryFeatures`), and :func:`build_world`, which makes a world from a store snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from graph_store import ANSWERED_BY, HANDLED_BY, QUERY, TASK, GraphSnapshot
from graphrouter.errors import GraphRouterError
from graphrouter.routing_data import RoutingData
from graphrouter.tokens import count_tokens

if TYPE_CHECKING:
    from graphrouter.embeddings import Embedder

UNKNOWN_TASK = -1


@dataclass
class World:
    """What routers learn from: routing matrices plus embeddings of queries, candidates and tasks."""

    data: RoutingData
    query_emb: np.ndarray  # (Q, d) float32, L2-normalised
    query_tokens: np.ndarray  # (Q,) input tokens
    candidate_emb: np.ndarray  # (C, d) embeddings of candidate descriptions
    task_emb: np.ndarray  # (T, d) embeddings of task names/descriptions

    def select_candidates(self, keep: np.ndarray) -> World:
        """The same world with only the candidates ``keep``, as if the others had never been seen."""
        keep = np.asarray(keep)
        return World(
            self.data.select_candidates(keep),
            self.query_emb,
            self.query_tokens,
            self.candidate_emb[keep],
            self.task_emb,
        )

    def select_queries(self, rows: np.ndarray) -> World:
        """The same world with only the queries ``rows``."""
        rows = np.asarray(rows)
        return World(
            self.data.select_queries(rows),
            self.query_emb[rows],
            self.query_tokens[rows],
            self.candidate_emb,
            self.task_emb,
        )

    def features(self, idx: np.ndarray, task_given: bool = True) -> QueryFeatures:
        """Features of stored queries ``idx``, with their task (or, ``task_given=False``, an unknown task)."""
        idx = np.asarray(idx)
        task = self.data.query_task[idx] if task_given else np.full(len(idx), UNKNOWN_TASK)
        return QueryFeatures(self.query_emb[idx], task.copy(), self.query_tokens[idx], idx.copy())


@dataclass
class QueryFeatures:
    """A batch of queries to route: embeddings, task index (or UNKNOWN_TASK), input tokens, and for stored queries
    their row in the world (-1 for new ones; only the oracle looks at it)."""

    embedding: np.ndarray  # (n, d)
    task: np.ndarray  # (n,) int
    tokens: np.ndarray  # (n,)
    index: np.ndarray | None = None
    # (n,) each call's cap on output tokens (max_tokens), NaN where it has none; None: no call has one
    max_output: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.embedding.shape[0])

    def with_task(self, task: np.ndarray) -> QueryFeatures:
        return QueryFeatures(self.embedding, task, self.tokens, self.index, self.max_output)


def task_text(name: str, description: str) -> str:
    """The text a task is embedded from (its name, and its description if it has one)."""
    return f"{name}: {description}" if description else name


def candidate_texts(data: RoutingData) -> list[str]:
    return [f"{name}: {desc}" for name, desc in zip(data.candidates, data.candidate_text, strict=True)]


def check_learnable(snapshot: GraphSnapshot) -> int:
    """How many stored queries have an outcome (what a router learns from; a query the proxy stored with a pending
    outcome only has none), or a :class:`GraphRouterError` if none has: ``graphrouter train`` and ``POST /v1/train``
    ask it before embedding anything, then :meth:`Router.check_enough
    <graphrouter.routers.base.Router.check_enough>` with the count."""
    if len(snapshot.nodes[QUERY]) == 0:
        raise GraphRouterError(
            "the store has no queries to learn from; import some (graphrouter import …) or POST /v1/outcomes"
        )
    src = [snapshot.edges[key].src for key in snapshot.edges if key[1] in (ANSWERED_BY, HANDLED_BY)]
    answered = len(np.unique(np.concatenate(src))) if src else 0
    if answered == 0:
        raise GraphRouterError(
            "the store has no outcomes to learn from; import some (graphrouter import …) or POST /v1/outcomes"
        )
    return answered


def build_world(snapshot: GraphSnapshot, embedder: Embedder, progress: bool = False) -> World:
    """Embeds every query, candidate description and task (from the embedding cache where possible)."""
    data = RoutingData.from_snapshot(snapshot)
    tasks = snapshot.nodes[TASK]
    task_texts = [task_text(n, d) for n, d in zip(tasks.keys, tasks.text["description"], strict=True)]
    return World(
        data=data,
        query_emb=embedder.embed(data.query_text, progress=progress),
        query_tokens=np.asarray(count_tokens(data.query_text), dtype=np.float64),
        candidate_emb=embedder.embed(candidate_texts(data)),
        task_emb=embedder.embed(task_texts),
    )
