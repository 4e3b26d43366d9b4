"""Baseline routers, all behind the same interface as the GNN, all fitted on training queries only."""

from __future__ import annotations

import numpy as np
import torch

from graphrouter.neighbours import exact_knn as cosine_knn
from graphrouter.rewards import utility
from graphrouter.routers.base import Router, register
from graphrouter.world import QueryFeatures, World

VAL_FRAC = 0.15  # the share of the training queries an inner validation split holds out


def inner_split(train_idx: np.ndarray, frac: float = VAL_FRAC, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A validation split drawn from inside the training queries (never from the evaluated ones)."""
    perm = np.random.default_rng(seed).permutation(train_idx)
    n_val = int(len(perm) * frac)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def inner_split_min(fit_on: int = 1, frac: float = VAL_FRAC) -> int:
    """The fewest training queries whose :func:`inner_split` holds out at least one and keeps ``fit_on`` to fit on."""
    n = max(fit_on, 1)
    while int(n * frac) < 1 or n - int(n * frac) < fit_on:
        n += 1
    return n


@register
class RandomRouter(Router):
    """Picks uniformly at random (seeded)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def predict_effect(self, q: QueryFeatures) -> np.ndarray:
        return self.rng.random((len(q), self.world.data.n_candidates))

    def combine(
        self, q: QueryFeatures, effect: np.ndarray, cost_norm: np.ndarray, weights: tuple[float, float]
    ) -> np.ndarray:
        return effect


@register
class CheapestRouter(Router):
    """Always the candidate of lowest input price."""

    name = "cheapest"

    def predict_effect(self, q: QueryFeatures) -> np.ndarray:
        return np.zeros((len(q), self.world.data.n_candidates))

    def combine(
        self, q: QueryFeatures, effect: np.ndarray, cost_norm: np.ndarray, weights: tuple[float, float]
    ) -> np.ndarray:
        return np.broadcast_to(-self.world.data.candidate_prices[:, 0], (len(q), self.world.data.n_candidates))


class _TrainUtilityRouter(Router):
    """Routes by the mean *observed* utility on training queries (of all of them, or of the query's task)."""

    per_task = False
    ranks_unseen_last = True

    def _fit(self, world: World, train_idx: np.ndarray) -> None:
        self._cost_norm = world.data.cost_norm()[train_idx]
        self._effect = world.data.effect[train_idx]
        self._task = world.data.query_task[train_idx]

    def _mean_utility(
        self, weights: tuple[float, float], rows: np.ndarray, fallback: np.ndarray | None = None
    ) -> np.ndarray:
        """Each candidate's mean observed utility on ``rows``; where it has no outcome there, ``fallback`` (its mean
        on every training query), else an effect of 0 at the dearest cost, and :meth:`rank_unseen_last` ranks one
        with no outcome at all last (it used to be NaN, which argmax picks and JSON cannot hold)."""
        u = utility(self._effect[rows], self._cost_norm[rows], weights)
        seen = np.isfinite(u).any(axis=0)
        out = np.full(u.shape[1], -weights[1]) if fallback is None else fallback.copy()
        out[seen] = np.nanmean(u[:, seen], axis=0)
        return out

    def predict_effect(self, q: QueryFeatures) -> np.ndarray:
        return self._table(q, (1.0, 0.0))

    def combine(
        self, q: QueryFeatures, effect: np.ndarray, cost_norm: np.ndarray, weights: tuple[float, float]
    ) -> np.ndarray:
        return self.rank_unseen_last(self._table(q, weights))

    def _table(self, q: QueryFeatures, weights: tuple[float, float]) -> np.ndarray:
        if not self.per_task:
            return np.broadcast_to(
                self._mean_utility(weights, np.ones(len(self._task), bool)), (len(q), self._effect.shape[1])
            )
        q = self.task_inferer.fill(q)
        overall = self._mean_utility(weights, np.ones(len(self._task), bool))
        tasks = range(len(self.world.data.task_names))
        table = np.stack([self._mean_utility(weights, self._task == t, overall) for t in tasks])
        return table[q.task]


@register
class BestSingleRouter(_TrainUtilityRouter):
    """The one candidate with the best mean utility on training queries, for every query."""

    name = "best_single"


@register
class BestPerTaskRouter(_TrainUtilityRouter):
    """The candidate with the best mean utility on the training queries of the query's (given or inferred) task."""

    name = "best_per_task"
    per_task = True


@register
class OracleRouter(Router):
    """The best candidate per query by its observed outcome: an upper bound, only for stored queries."""

    name = "oracle"

    def _fit(self, world: World, train_idx: np.ndarray) -> None:
        self._cost_norm = world.data.cost_norm()  # observed outcomes of every stored query, computed once

    def predict_effect(self, q: QueryFeatures) -> np.ndarray:
        if q.index is None or (q.index < 0).any():
            raise ValueError("the oracle can only route stored queries whose outcomes are known")
        return self.world.data.effect[q.index]

    def combine(
        self, q: QueryFeatures, effect: np.ndarray, cost_norm: np.ndarray, weights: tuple[float, float]
    ) -> np.ndarray:
        return utility(effect, self._cost_norm[q.index], weights)


@register
class KnnRouter(Router):
    """Similarity-weighted mean effect of the k nearest training queries; k chosen on an inner validation split."""

    name = "knn"
    ranks_unseen_last = True
    within_task = False
    candidate_ks = (5, 10, 20, 50, 100)
    temperature = 0.1

    def _fit(self, world: World, train_idx: np.ndarray) -> None:
        inner, val = inner_split(train_idx)
        best, chosen = np.inf, self.candidate_ks[0]  # kept if validation has no outcome to compare with
        for k in self.candidate_ks if len(val) else ():
            self.k, self._base = k, inner
            pred = self.predict_effect(self.task_inferer.fill(world.features(val)))
            err = float(np.nanmean((pred - world.data.effect[val]) ** 2))
            if err < best:
                best, chosen = err, k
        self.k, self._base = chosen, train_idx

    def predict_effect(self, q: QueryFeatures) -> np.ndarray:
        data = self.world.data
        out = np.zeros((len(q), data.n_candidates))
        groups = np.unique(q.task) if self.within_task else [None]
        for t in groups:
            sel = np.ones(len(q), bool) if t is None else q.task == t
            base = self._base if t is None else self._base[data.query_task[self._base] == t]
            if len(base) == 0:
                base = self._base
            nb, sim = cosine_knn(q.embedding[sel], self.world.query_emb[base], self.k)
            w = np.exp(sim / self.temperature)[:, :, None]
            eff = np.nan_to_num(data.effect[base][nb], nan=0.0)
            seen = np.isfinite(data.effect[base][nb])
            out[sel] = (w * eff).sum(1) / np.maximum((w * seen).sum(1), 1e-12)
        return out


@register
class KnnTaskRouter(KnnRouter):
    """kNN restricted to training queries of the same (given or inferred) task."""

    name = "knn_task"
    within_task = True


class _TorchEffectRouter(Router):
    """A small network from (query embedding, task one-hot) to every candidate's effect, BCE, early stopping."""

    epochs, lr, batch_size, patience = 200, 1e-3, 128, 10
    ranks_unseen_last = True  # (its columns without outcomes are the net's untrained guess)

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _x(self, emb: np.ndarray, task: np.ndarray) -> torch.Tensor:
        onehot = np.zeros((len(task), len(self.world.data.task_names)), np.float32)
        onehot[np.arange(len(task)), task] = 1.0
        return torch.from_numpy(np.concatenate([emb.astype(np.float32), onehot], 1))

    def _net(self, n_in: int, n_out: int) -> torch.nn.Module:
        raise NotImplementedError

    def min_queries(self) -> int:
        return inner_split_min()  # early stopping needs a validation query

    def _fit(self, world: World, train_idx: np.ndarray) -> None:
        torch.manual_seed(self.seed)
        inner, val = inner_split(train_idx)
        data = world.data
        x_tr, x_va = (self._x(world.query_emb[i], data.query_task[i]) for i in (inner, val))
        y_tr, y_va = (torch.from_numpy(np.nan_to_num(data.effect[i]).astype(np.float32)) for i in (inner, val))
        m_tr, m_va = (torch.from_numpy(np.isfinite(data.effect[i]).astype(np.float32)) for i in (inner, val))
        self.net = self._net(x_tr.shape[1], data.n_candidates)
        opt = torch.optim.AdamW(self.net.parameters(), self.lr, weight_decay=1e-4)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        best, state, bad = np.inf, None, 0
        for _ in range(self.epochs):
            self.net.train()
            for b in torch.randperm(len(inner)).split(self.batch_size):
                opt.zero_grad()
                bce(self.net(x_tr[b]), y_tr[b], weight=m_tr[b]).backward()
                opt.step()
            self.net.eval()
            with torch.no_grad():
                loss = bce(self.net(x_va), y_va, weight=m_va).item()
            if loss < best:
                best, state, bad = loss, {k: v.clone() for k, v in self.net.state_dict().items()}, 0
            elif (bad := bad + 1) >= self.patience:
                break
        self.net.load_state_dict(state)
        self.net.eval()

    @torch.no_grad()
    def predict_effect(self, q: QueryFeatures) -> np.ndarray:
        effect = torch.sigmoid(self.net(self._x(q.embedding, q.task))).numpy()
        unseen = self.unseen
        if unseen is not None and len(unseen) == effect.shape[1] and unseen.any():
            effect[:, unseen] = 0.0  # no outcome to learn from: not the net's untrained guess (ranked last)
        return effect


@register
class MlpRouter(_TorchEffectRouter):
    """An MLP predicting every candidate's effect from the query embedding (and task)."""

    name = "mlp"

    def _net(self, n_in: int, n_out: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Linear(n_in, 256), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(256, n_out)
        )


class _MatrixFactorisation(torch.nn.Module):
    def __init__(self, n_in: int, n_out: int, dim: int = 64) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(n_in, dim, bias=False)
        self.models = torch.nn.Parameter(torch.randn(n_out, dim) * 0.1)
        self.out = torch.nn.Linear(dim, 1, bias=False)
        self.bias = torch.nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.proj(x)[:, None, :] * self.models[None]).squeeze(-1) + self.bias


@register
class MatrixFactorisationRouter(_TorchEffectRouter):
    """RouteLLM-style matrix factorisation: logit = w · (v_model ⊙ W q) + b_model."""

    name = "mf"
    lr = 3e-3

    def _net(self, n_in: int, n_out: int) -> torch.nn.Module:
        return _MatrixFactorisation(n_in, n_out)
