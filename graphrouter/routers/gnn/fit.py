"""The fast fit from outcomes: a candidate's predicted skill follows what it was observed to do, without retraining.

The GNN's shared weights are trained on the candidates it knew; a candidate registered since, or one whose outcomes
changed since (a model upgraded), is described to it by a few outcome edges that move its predictions only a
little (the decoder was trained to distrust sparse evidence). So, when a candidate's outcomes arrive, this module
fits that candidate's own correction on top of the GNN, never the shared weights:

    logit'(q, c) = logit(q, c) + a_c + b_{c, task(q)}

per ensemble member, where ``logit`` is the GNN's output for the query as a *new* query (its own row left out of
its neighbours, so the fit sees what serving sees) and ``a_c`` (global) and ``b_{c,t}`` (per task) are the maximum
a-posteriori offsets under Gaussian priors (:class:`FitPrior`) given the candidate's *fresh* outcomes: those that
arrived since training (all of a registered candidate's, the new ones of a trained candidate). A few Newton steps
on at most (1 + tasks) parameters: microseconds per candidate; the cost is one batched ego-path pass over the fresh
outcome rows. With no fresh outcome the offsets are 0 and the GNN's own prediction stands.

The table of offsets (candidates × tasks) travels with the compiled ego path it was fitted for
(:attr:`~graphrouter.routers.gnn.ego.EgoPath.offsets`), so the numpy request path and the PyTorch reference apply
the same correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphrouter.routers.gnn.ego import EgoPath
from graphrouter.routers.gnn.graph import pad_neighbours
from graphrouter.routers.gnn.observed import Observed

MAX_ROWS = 4000  # fresh outcome rows fitted on per refit, all candidates together (the most recent kept)


@dataclass(frozen=True)
class FitPrior:
    """Prior standard deviations (logit scale) of the global offset and of the per-task offsets; chosen on an
    inner validation split of training queries (see :class:`~graphrouter.routers.gnn.router.GnnRouter`)."""

    global_sd: float = 1.5
    task_sd: float = 1.0
    steps: int = 8


def fit_offsets(
    base: np.ndarray, y: np.ndarray, task: np.ndarray, n_tasks: int, prior: FitPrior = FitPrior()
) -> np.ndarray:
    """(n_tasks,) MAP offsets ``a + b_t`` of one candidate: ``base`` its logits on its n observed queries, ``y`` the
    observed effects in [0, 1] (a Bernoulli likelihood, soft labels allowed), ``task`` their tasks."""
    n = len(y)
    if n == 0:
        return np.zeros(n_tasks)
    x = np.zeros((n, 1 + n_tasks))
    x[:, 0] = 1.0
    x[np.arange(n), 1 + task] = 1.0
    precision = np.r_[1.0 / prior.global_sd**2, np.full(n_tasks, 1.0 / prior.task_sd**2)]
    theta = np.zeros(1 + n_tasks)
    for _ in range(prior.steps):
        p = 1.0 / (1.0 + np.exp(-(base + x @ theta)))
        grad = x.T @ (p - y) + precision * theta
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(precision)
        theta -= np.linalg.solve(hess, grad)
    return theta[0] + theta[1:]


def self_excluded_neighbours(search, emb: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """The ``k`` nearest stored queries of the stored queries ``rows``, each row itself left out (as a new query
    would see them); ``search(emb, k)`` is the router's neighbour search. An approximate index that misses the row
    itself loses its farthest neighbour instead."""
    nb, sim = search(emb[rows], k + 1)
    if nb.shape[1] <= k:  # fewer stored queries than k + 1
        keep = nb != rows[:, None]
        nb = np.where(keep, nb, nb[:, :1] if nb.shape[1] == 1 else np.roll(nb, 1, 1))
        return pad_neighbours(nb, np.where(keep, sim, -1.0), k)
    is_self = nb == rows[:, None]
    drop = np.where(is_self.any(1), is_self.argmax(1), k)
    keep = np.ones_like(nb, bool)
    keep[np.arange(len(nb)), drop] = False
    return nb[keep].reshape(-1, k), sim[keep].reshape(-1, k)


def fit_correction(
    ego: EgoPath,
    obs: Observed,
    emb: np.ndarray,
    fresh: dict[int, np.ndarray],
    search,  # type: ignore[no-untyped-def]
    k_pair: int,
    n_tasks: int,
    prior: FitPrior = FitPrior(),
) -> np.ndarray | None:
    """(C, n_tasks) logit offsets for the serving state (``ego``, ``obs``): column c fitted to candidate c's fresh
    outcome rows ``fresh[c]`` (stored positions; their effects are read from ``obs``), 0 for the others; None when
    no candidate has fresh outcomes. ``emb``: the stored queries' embeddings."""
    n_cand = obs.effect.shape[1]
    fresh = {c: r[obs.visible[r, c]] for c, r in fresh.items() if 0 <= c < n_cand and len(r)}
    fresh = {c: r for c, r in fresh.items() if len(r)}
    if not fresh:
        return None
    per = max(1, MAX_ROWS // len(fresh))
    fresh = {c: r[-per:] for c, r in fresh.items()}
    rows = np.unique(np.concatenate(list(fresh.values())))
    nb, sim = self_excluded_neighbours(search, emb, rows, k_pair)
    task = obs.task[rows]
    logits = ego.logits(emb[rows], task, nb, sim, obs.pair_features(nb, sim, task)).mean(0)  # (n, C)
    offsets = np.zeros((n_cand, n_tasks))
    where = {r: i for i, r in enumerate(rows.tolist())}
    for c, r in fresh.items():
        i = np.array([where[x] for x in r.tolist()])
        offsets[c] = fit_offsets(logits[i, c], obs.effect[r, c], task[i], n_tasks, prior)
    return offsets.astype(np.float32)
