"""Training the GNN router's ensemble: episode sampling and the training loop.

Training is episodic on an inner split of the training queries: every episode hides a quarter of the pool
(cold queries, BCE targets on all their observed outcomes) and, half of the time, all but a few outcomes of one or
two candidates ("new" candidates); half of the episodes attach cold queries to their out-of-fold *predicted* task,
so that routing with an inferred task looks like training. Early stopping on the inner validation split; the
router is an ensemble of a few seeds (mean probability), one :class:`Member` per seed from :func:`fit_member`.
"""

from __future__ import annotations

import copy
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from graphrouter.routers.baselines import VAL_FRAC, inner_split
from graphrouter.routers.gnn.graph import (
    Candidates,
    QueryNodes,
    build_graph,
    first_allowed,
    knn_excluding_self,
    nearest_stored,
    stored_neighbours,
)
from graphrouter.routers.gnn.model import HeteroRouterGNN
from graphrouter.routers.gnn.schema import CANDIDATE, QUERY


@dataclass(frozen=True)
class Recipe:
    """The router's training hyper-parameters (see :class:`~graphrouter.routers.gnn.router.GnnRouter`)."""

    hidden: int
    num_layers: int
    dropout: float
    in_drop: float
    lr: float
    weight_decay: float
    max_episodes: int
    eval_every: int
    patience: int
    cold_frac: float
    k_sim: int
    k_pair: int
    p_new: float
    new_ks: tuple[int, ...]
    p_inferred_task: float


@dataclass(frozen=True)
class TrainingSet:
    """The training queries (positions 0..N-1), the candidates with their observed effects, and each query's
    out-of-fold predicted task."""

    nodes: QueryNodes
    cands: Candidates
    oof_task: np.ndarray


@dataclass
class Member:
    """One seed of the ensemble: a trained model, its best validation loss, how many episodes it ran, and its
    inner validation split (positions) with its cold-query effect predictions there (for the per-task fallback,
    :mod:`~graphrouter.routers.gnn.fallback`; None in members pickled before)."""

    model: HeteroRouterGNN
    best_val: float = float("nan")
    episodes: int = 0
    val_rows: np.ndarray | None = None
    val_prob: np.ndarray | None = None


def out_of_fold_tasks(emb: np.ndarray, task: np.ndarray, p_inferred_task: float, c: float) -> np.ndarray:
    """Each training query's task as predicted by a classifier that never saw it (task errors like serving's);
    ``c``: the task classifier's regularisation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if p_inferred_task <= 0 or len(np.unique(task)) < 2:
        return task.copy()
    n_splits = int(min(5, np.bincount(task).max()))
    if n_splits < 2:
        return task.copy()
    cv = StratifiedKFold(n_splits, shuffle=True, random_state=0)
    clf = LogisticRegression(C=c, max_iter=3000)
    with warnings.catch_warnings(), threadpool_limits(limits=1):  # see TaskInferer.fit on BLAS threads
        warnings.simplefilter("ignore", UserWarning)  # tasks with fewer queries than folds
        return cross_val_predict(clf, emb, task, cv=cv).astype(np.int64)


def targets(effect: np.ndarray, rows: np.ndarray) -> tuple[Tensor, Tensor]:
    """BCE targets and weights (1 where observed) of the given positions."""
    y = effect[rows]
    return (
        torch.as_tensor(np.nan_to_num(y), dtype=torch.float32),
        torch.as_tensor(np.isfinite(y), dtype=torch.float32),
    )


def build_model(graph: HeteroData, recipe: Recipe) -> HeteroRouterGNN:
    """A model for graphs like ``graph`` (its metadata, feature and edge-attribute sizes)."""
    return HeteroRouterGNN(
        graph.metadata(),
        {nt: graph[nt].num_features for nt in graph.node_types},
        {et: graph[et].edge_attr.size(-1) if "edge_attr" in graph[et] else 0 for et in graph.edge_types},
        recipe.hidden,
        recipe.num_layers,
        recipe.dropout,
        recipe.in_drop,
    )


class EpisodeSampler:
    """Draws training episodes from ``pool``: a random quarter cold, sometimes one or two candidates made "new",
    sometimes the cold queries attached to their predicted task. Every draw comes from ``rng``."""

    def __init__(self, data: TrainingSet, recipe: Recipe, pool: np.ndarray, rng: np.random.Generator) -> None:
        self.data, self.recipe, self.pool, self.rng = data, recipe, pool, rng
        self.observed = np.isfinite(data.cands.effect)
        # neighbours within the pool, once; each episode keeps the first ones that are not cold
        self.pool_nb, self.pool_sim = knn_excluding_self(data.nodes.emb, pool, min(96, len(pool) - 1))

    def __call__(self) -> tuple[HeteroData, Tensor, np.ndarray]:
        """An episode's graph, its cold queries' pair features and the cold positions."""
        rng, recipe, pool, observed = self.rng, self.recipe, self.pool, self.observed
        n, n_cand = self.data.cands.effect.shape
        perm = rng.permutation(pool)
        n_cold = max(1, int(len(pool) * recipe.cold_frac))
        cold, stored = np.sort(perm[:n_cold]), np.sort(perm[n_cold:])
        visible = observed.copy()
        if rng.random() < recipe.p_new:  # one or two candidates are "new": all but k of their outcomes hidden
            for c in rng.choice(n_cand, size=min(n_cand, int(rng.integers(1, 3))), replace=False):
                rows = stored[observed[stored, c]]
                keep = rng.choice(rows, size=min(int(rng.choice(recipe.new_ks)), len(rows)), replace=False)
                visible[:, c] = False
                visible[keep, c] = True
        use_inferred = rng.random() < recipe.p_inferred_task
        cold_task = self.data.oof_task[cold] if use_inferred else self.data.nodes.task[cold]
        ok = np.zeros(n, bool)
        ok[stored] = True
        ps, pc = np.searchsorted(pool, stored), np.searchsorted(pool, cold)
        nb = (
            *first_allowed(self.pool_nb[ps], self.pool_sim[ps], ok, recipe.k_sim),
            *first_allowed(self.pool_nb[pc], self.pool_sim[pc], ok, recipe.k_pair),
        )
        data = self.data
        graph, _, pair = build_graph(data.nodes, data.cands, visible, stored, cold, cold_task, nb, recipe.k_sim)
        return graph, torch.as_tensor(pair), cold


def train(
    model: HeteroRouterGNN, optimizer: torch.optim.Optimizer, sample: EpisodeSampler, effect: np.ndarray
) -> float:
    """One episode: a gradient step on the BCE of the cold queries' observed outcomes; returns the loss."""
    model.train()
    graph, pair, cold = sample()
    y, w = targets(effect, cold)
    optimizer.zero_grad()
    hs = model(graph.x_dict, graph.edge_index_dict, graph.edge_attr_dict)
    logits = model.decode(hs[-1][QUERY][torch.as_tensor(cold)], hs[-1][CANDIDATE], pair)
    loss = F.binary_cross_entropy_with_logits(logits, y, weight=w)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.item()


@torch.no_grad()
def cold_logits(model: HeteroRouterGNN, graph: HeteroData, rows: np.ndarray, pair: Tensor) -> Tensor:
    """(len(rows), C) effect logits of the cold queries ``rows`` of ``graph`` (the validation graph)."""
    model.eval()
    hs = model(graph.x_dict, graph.edge_index_dict, graph.edge_attr_dict)
    return model.decode(hs[-1][QUERY][torch.as_tensor(rows)], hs[-1][CANDIDATE], pair)


def evaluate(model: HeteroRouterGNN, graph: HeteroData, rows: np.ndarray, pair: Tensor, y: Tensor, w: Tensor) -> float:
    """The BCE of the cold queries ``rows`` of ``graph`` (the validation graph) against ``y`` weighted by ``w``."""
    return float(F.binary_cross_entropy_with_logits(cold_logits(model, graph, rows, pair), y, weight=w))


def fit_member(data: TrainingSet, recipe: Recipe, seed: int) -> Member:
    """Train one member: episodes until ``max_episodes`` or ``patience`` evaluations without improvement (every
    ``eval_every`` episodes and at the last); the weights of the best validation loss are kept. Shows a progress
    bar per seed on a terminal."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    emb, effect = data.nodes.emb, data.cands.effect
    pool, val = inner_split(np.arange(len(effect)), VAL_FRAC, seed)

    # the validation graph: pool stored, validation queries cold; also fixes the model's metadata and sizes
    val_nb = (*stored_neighbours(emb, pool, recipe.k_sim), *nearest_stored(emb, emb[val], pool, recipe.k_pair))
    val_graph, _, val_pair = build_graph(
        data.nodes, data.cands, np.isfinite(effect), pool, val, data.nodes.task[val], val_nb, recipe.k_sim
    )
    val_graph.validate()
    model = build_model(val_graph, recipe)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    val_pair_t = torch.as_tensor(val_pair)
    val_y, val_w = targets(effect, val)
    sample = EpisodeSampler(data, recipe, pool, rng)

    best, best_state, bad, episodes = np.inf, copy.deepcopy(model.state_dict()), 0, 0
    # a bar on a terminal only (tqdm's disable=None), one per seed, with the validation loss as it goes
    bar = tqdm(
        range(1, recipe.max_episodes + 1),
        desc=f"gnn seed {seed}",
        unit="ep",
        disable=None,
        leave=False,
        file=sys.stderr,
    )
    for ep in bar:
        train_loss = train(model, optimizer, sample, effect)
        episodes = ep
        if ep % recipe.eval_every and ep < recipe.max_episodes:  # the last episode is evaluated too: with fewer
            continue  # than eval_every episodes the starting weights were kept, an untrained model served
        loss = evaluate(model, val_graph, val, val_pair_t, val_y, val_w)
        if loss < best - 1e-4:
            best, best_state, bad = loss, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{loss:.4f}", best=f"{best:.4f}")
        if bad >= recipe.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    val_prob = torch.sigmoid(cold_logits(model, val_graph, val, val_pair_t)).numpy().astype(np.float32)
    return Member(model, best_val=float(best), episodes=episodes, val_rows=val, val_prob=val_prob)
