"""Building the GNN router's graph from plain arrays, and the query neighbours it is built with.

:func:`build_graph` is pure: given the query nodes (:class:`QueryNodes`), the candidates (:class:`Candidates`),
which outcomes are visible, which queries are stored and which cold, and their neighbours, it returns the
:class:`~torch_geometric.data.HeteroData` (schema in :mod:`graphrouter.routers.gnn.schema`), the observed
aggregates and the cold queries' pair features. It is called for every training episode, once per serving-cache
refresh, and by the full-graph reference predictor (with the new queries appended to the query nodes).

Node inputs: the query's sentence embedding; the task's text embedding ‖ the mean embedding of its stored queries;
the candidate's features (:func:`~graphrouter.routers.gnn.observed.candidate_features`).

Cold queries (new requests; the training targets of an episode) have no outgoing edges, so nothing they hold
reaches a stored node: a new query's output depends only on its text, its task's cached states, its ``k_pair``
nearest stored queries' cached states and outcomes, and the cached candidate states. Serving therefore runs on that
ego-graph (:mod:`graphrouter.routers.gnn.ego`), not on the full graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphrouter.routers.baselines import cosine_knn
from graphrouter.routers.gnn.observed import Observed, inherit
from graphrouter.routers.gnn.schema import (
    ANSWERED_BY,
    CANDIDATE,
    OF_TASK,
    QUERY,
    REV_ANSWERED_BY,
    REV_OF_TASK,
    REV_TASK_CANDIDATE,
    SIMILAR_TO,
    TASK,
    TASK_CANDIDATE,
)

Neighbours = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # stored nb, stored sim, cold nb, cold sim


@dataclass(frozen=True)
class QueryNodes:
    """The queries (positions 0..N-1) and tasks a graph is built over; ``x`` is ``emb`` as a tensor."""

    emb: np.ndarray  # (N, d) float32 sentence embeddings
    task: np.ndarray  # (N,) int64 task of each query
    task_emb: np.ndarray  # (T, d) float32 task text embeddings
    n_tasks: int
    x: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", torch.as_tensor(self.emb))

    def __getstate__(self) -> dict:
        """Without ``x``: it shares ``emb``'s memory, but a pickle would store it a second time."""
        return {k: v for k, v in self.__dict__.items() if k != "x"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({k: v for k, v in state.items() if k != "x"})  # pickled with x before: dropped
        self.__post_init__()

    def __len__(self) -> int:
        return len(self.emb)

    def extended(self, emb: np.ndarray, task: np.ndarray) -> QueryNodes:
        """These nodes with the queries ``emb`` (of tasks ``task``) appended at positions N, N + 1, ..."""
        return QueryNodes(np.r_[self.emb, emb], np.r_[self.task, task], self.task_emb, self.n_tasks)


@dataclass(frozen=True)
class Candidates:
    """What changes when candidates are registered, removed or observed: a consistent snapshot of it."""

    features: np.ndarray  # (C, d) node features
    effect: np.ndarray  # (N, C) observed effects of the stored queries (NaN: not observed)
    backing: dict[int, int]  # agent column → LLM column


def _edge(a: np.ndarray, b: np.ndarray) -> Tensor:
    return torch.as_tensor(np.stack([a, b]), dtype=torch.long)


def task_features(nodes: QueryNodes, stored: np.ndarray) -> np.ndarray:
    """Per task: its text embedding ‖ the normalised mean embedding of its stored queries (zeros if none)."""
    mean = np.zeros_like(nodes.task_emb)
    for t in range(nodes.n_tasks):
        rows = stored[nodes.task[stored] == t]
        if len(rows):
            v = nodes.emb[rows].mean(0)
            mean[t] = v / max(float(np.linalg.norm(v)), 1e-12)
    return np.c_[nodes.task_emb, mean].astype(np.float32)


def build_graph(
    nodes: QueryNodes,
    cands: Candidates,
    visible: np.ndarray,
    stored: np.ndarray,
    cold: np.ndarray,
    cold_task: np.ndarray,
    neighbours: Neighbours,
    k_sim: int,
) -> tuple[HeteroData, Observed, np.ndarray]:
    """The graph over every query of ``nodes`` (those neither ``stored`` nor ``cold`` are isolated), the observed
    aggregates of the ``visible`` outcomes of stored queries (agents inherit their LLM's, see
    :func:`~graphrouter.routers.gnn.observed.inherit`), and the cold queries' pair features. ``cold_task``: the
    task each cold query is attached to; ``neighbours``: the stored queries' ``k_sim`` nearest stored queries and
    the cold queries' ``k_pair`` nearest, each sorted by similarity."""
    nb_s, sim_s, nb_c, sim_c = neighbours
    is_stored = np.zeros(len(nodes), bool)
    is_stored[stored] = True
    effect, visible = inherit(cands.effect, visible & is_stored[:, None], cands.backing)
    obs = Observed(effect, visible, nodes.task, nodes.n_tasks)
    qi, ci = np.nonzero(obs.visible)
    eff = torch.as_tensor(obs.effect[qi, ci], dtype=torch.float32)[:, None]
    t_src, t_dst, t_attr = obs.task_candidate_edges()
    k = k_sim
    sim_src = np.r_[nb_s.ravel(), nb_c[:, :k].ravel()]
    sim_dst = np.r_[np.repeat(stored, nb_s.shape[1]), np.repeat(cold, k)]
    sim_w = np.r_[sim_s.ravel(), sim_c[:, :k].ravel()]

    data = HeteroData()
    data[QUERY].x = nodes.x
    data[TASK].x = torch.as_tensor(task_features(nodes, stored))
    data[CANDIDATE].x = torch.as_tensor(cands.features)
    data[ANSWERED_BY].edge_index, data[ANSWERED_BY].edge_attr = _edge(qi, ci), eff
    data[REV_ANSWERED_BY].edge_index, data[REV_ANSWERED_BY].edge_attr = _edge(ci, qi), eff
    data[OF_TASK].edge_index = _edge(stored, nodes.task[stored])
    data[REV_OF_TASK].edge_index = _edge(np.r_[nodes.task[stored], cold_task], np.r_[stored, cold])
    data[SIMILAR_TO].edge_index = _edge(sim_src, sim_dst)
    data[SIMILAR_TO].edge_attr = torch.as_tensor(sim_w, dtype=torch.float32)[:, None]
    data[TASK_CANDIDATE].edge_index, data[TASK_CANDIDATE].edge_attr = _edge(t_src, t_dst), torch.as_tensor(t_attr)
    data[REV_TASK_CANDIDATE].edge_index = _edge(t_dst, t_src)
    data[REV_TASK_CANDIDATE].edge_attr = torch.as_tensor(t_attr)
    return data, obs, obs.pair_features(nb_c, sim_c, cold_task)


@dataclass(frozen=True)
class StoredGraph:
    """What the serving graph is built from besides the candidates: every query of ``nodes`` stored, with its
    ``k_sim`` nearest stored queries ``nb``/``sim``; ``k_pair`` sizes the (empty) cold neighbour arrays."""

    nodes: QueryNodes
    nb: np.ndarray
    sim: np.ndarray
    k_sim: int
    k_pair: int


def serving_graph(stored: StoredGraph, cands: Candidates) -> tuple[HeteroData, Observed]:
    """The stored graph as serving caches it: every stored query, every observed outcome, no cold query."""
    every = np.arange(len(stored.nodes))
    empty = np.zeros(0, np.int64)
    nb = (stored.nb, stored.sim, np.zeros((0, stored.k_pair), np.int64), np.zeros((0, stored.k_pair)))
    graph, obs, _ = build_graph(stored.nodes, cands, np.isfinite(cands.effect), every, empty, empty, nb, stored.k_sim)
    return graph, obs


# ---- neighbours ---------------------------------------------------------------------------------------------------
def knn_excluding_self(emb: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest of ``rows`` among ``rows`` (positions into ``emb``), each row itself excluded."""
    nb, sim = cosine_knn(emb[rows], emb[rows], k + 1)
    nb, sim = drop_self(nb, sim, k)
    return rows[nb], sim


def stored_neighbours(emb: np.ndarray, stored: np.ndarray, k_sim: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k_sim`` nearest other stored queries of each stored query (positions into ``emb``)."""
    if len(stored) <= k_sim:
        raise ValueError(f"the GNN router needs more than {k_sim} stored training queries")
    return knn_excluding_self(emb, stored, k_sim)


def pad_neighbours(nb: np.ndarray, sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fewer than k neighbours per row (fewer stored queries than k): pad with the farthest at weight ~0."""
    if nb.shape[1] < k:
        pad = k - nb.shape[1]
        nb, sim = np.c_[nb, np.repeat(nb[:, -1:], pad, 1)], np.c_[sim, np.full((len(nb), pad), -1.0)]
    return nb, sim


def nearest_stored(emb: np.ndarray, queries: np.ndarray, stored: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest of the ``stored`` positions of ``emb`` to each row of ``queries`` (padded to k)."""
    nb, sim = pad_neighbours(*cosine_knn(queries, emb[stored], k), k)
    return stored[nb], sim


def drop_self(nb: np.ndarray, sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From (n, k + 1) neighbours of rows 0..n-1 of the same set, the k that are not the row itself."""
    is_self = nb == np.arange(len(nb))[:, None]
    drop = np.where(is_self.any(1), is_self.argmax(1), k)
    keep = np.ones_like(nb, bool)
    keep[np.arange(len(nb)), drop] = False
    return nb[keep].reshape(-1, k), sim[keep].reshape(-1, k)


def first_allowed(nb: np.ndarray, sim: np.ndarray, ok: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first k neighbours with ``ok[nb]``; rows with fewer are padded with their last one at sim -1."""
    good = ok[nb]
    rank = np.cumsum(good, 1)
    keep = good & (rank <= k)
    out_nb = np.empty((nb.shape[0], k), nb.dtype)
    out_sim = np.full((nb.shape[0], k), -1.0, sim.dtype)
    r, c = np.nonzero(keep)
    out_nb[r, rank[r, c] - 1], out_sim[r, rank[r, c] - 1] = nb[r, c], sim[r, c]
    count = keep.sum(1)
    for i in np.flatnonzero(count < k):
        out_nb[i, count[i] :] = out_nb[i, count[i] - 1] if count[i] else nb[i, 0]
    return out_nb, out_sim
