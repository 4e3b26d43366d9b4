"""Contextual bandits over the query embedding (GreenServ's online routers): LinUCB and ε-greedy.

Each candidate (arm) has a ridge regression of its effect on the context ``x = [query embedding, 1]``:
``A = λI + Σ x xᵀ``, ``b = Σ effect · x``, ``θ = A⁻¹ b`` (``A⁻¹`` kept by Sherman–Morrison updates). Cost is not
learned: it is the shared :class:`~graphrouter.cost.CostModel`'s (tokens × prices, times factors learned from
observed costs of candidates added since fitting), so a scenario's utility is ``w_effect · θ·x − w_cost · cost_norm``
as for every router. LinUCB adds ``w_effect · α · √(xᵀ A⁻¹ x)``; ε-greedy routes a query at random (among the
candidates the request allows) with probability ε.

Fitting warm-starts every arm from the training queries' outcomes (full feedback), as the GNN has them;
:meth:`update` then learns from one observed outcome at a time (partial feedback), and
:meth:`register_candidate` adds an arm mid-stream from nothing (its prior: θ = 0, A = λI).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from graph_store import AGENT, LLM
from graphrouter.errors import CandidateExistsError, UnknownCandidateError
from graphrouter.rewards import utility
from graphrouter.routers.base import Router, register
from graphrouter.world import QueryFeatures, World


def _context(embedding: np.ndarray) -> np.ndarray:
    e = np.asarray(embedding, dtype=np.float64)
    return np.c_[e, np.ones(len(e))]


class _LinearBandit(Router):
    """Per-arm ridge regressions of effect on the query embedding, learned online."""

    learns_online: ClassVar[bool] = True

    def __init__(self, ridge: float = 1.0, warm_start: bool = True, seed: int = 0) -> None:
        self.ridge, self.warm_start, self.seed = ridge, warm_start, seed
        self.rng = np.random.default_rng(seed)

    def __setstate__(self, state: dict) -> None:
        # pickled before the cost factors: its added arms' costs kept as log ratios, whose queries are not known,
        # count towards their one multiplier as a (sum, count)
        if "_cost_logs" in state:
            state["_unplaced_logs"] = {col: (sum(v), len(v)) for col, v in state["_cost_logs"].items()}
            state["_cost_rows"] = {col: np.zeros((0, 3)) for col in state.pop("_cost_logs")}
        state.setdefault("_unplaced_logs", state.pop("_known_logs", {}))
        rows = state.get("_cost_rows", {})
        state["_cost_rows"] = {col: np.asarray(v, np.float64).reshape(-1, 3) for col, v in rows.items()}
        self.__dict__.update(state)

    def _fit(self, world: World, train_idx: np.ndarray) -> None:
        data = world.data
        d = world.query_emb.shape[1] + 1
        self._names, self._kinds = tuple(data.candidates), tuple(data.candidate_kind)
        self.a_inv = np.repeat(np.eye(d)[None] / self.ridge, data.n_candidates, axis=0)
        self.b = np.zeros((data.n_candidates, d))
        self.n = np.zeros(data.n_candidates)
        self._cost_rows: dict[int, np.ndarray] = {}  # (n, 3): the computed input and output USD, the observed
        self._unplaced_logs: dict[int, tuple[float, int]] = {}
        if not self.warm_start:
            return
        x = _context(world.query_emb[train_idx])
        for c in range(data.n_candidates):
            y = data.effect[train_idx, c]
            ok = np.isfinite(y)
            xs = x[ok]
            self.a_inv[c] = np.linalg.inv(self.ridge * np.eye(d) + xs.T @ xs)
            self.b[c] = xs.T @ y[ok]
            self.n[c] = ok.sum()

    @property
    def candidates(self) -> tuple[str, ...]:
        return self._names

    @property
    def kinds(self) -> tuple[str, ...]:
        return self._kinds

    def trained_counts(self) -> np.ndarray:
        return self.n.copy()

    def predict_effect(self, q: QueryFeatures) -> np.ndarray:
        theta = np.einsum("cij,cj->ci", self.a_inv, self.b)
        return np.clip(_context(q.embedding) @ theta.T, 0.0, 1.0)

    def width(self, q: QueryFeatures) -> np.ndarray:
        """(n, C) √(xᵀ A⁻¹ x): how uncertain each arm's estimate is for each query."""
        x = _context(q.embedding)
        # x @ A⁻¹ as one batched matrix product first: einsum's own loop over "ni,cij,nj" took ~40 s for 4,000
        # queries × 31 arms (MMLU-Pro's test fold), this ~2 s
        return np.sqrt(np.maximum(np.einsum("cnj,nj->nc", x @ self.a_inv, x), 0.0))

    # -- learning online --
    def update(self, q: QueryFeatures, column: int, effect: np.ndarray, cost: np.ndarray | None = None) -> int:
        """Learn observed effects of candidate ``column`` on the queries ``q`` (and, for a candidate added since
        fitting, its cost factors from observed costs in USD; NaN: not observed). Returns how many."""
        x = _context(q.embedding)
        a_inv, b = self.a_inv[column].copy(), self.b[column].copy()
        for xi, yi in zip(x, np.asarray(effect, dtype=np.float64), strict=True):
            ax = a_inv @ xi
            a_inv -= np.outer(ax, ax) / (1.0 + xi @ ax)
            b += yi * xi
        self.a_inv = self.a_inv.copy()  # replaced, never changed in place: routing reads without a lock
        self.a_inv[column], self.b = a_inv, self.b.copy()
        self.b[column] = b
        self.n = self.n.copy()
        self.n[column] += len(x)
        seen = np.full(len(x), np.nan) if cost is None else np.asarray(cost, dtype=np.float64)
        paid = np.isfinite(seen) & (seen > 0)  # (NaN: no cost posted with the outcome)
        if column in self._cost_rows and paid.any():
            inputs, outputs = self.cost_model.parts(q.tokens[paid], self.cost_model.prices[[column]])
            rows = np.concatenate([self._cost_rows[column], np.stack([inputs[:, 0], outputs[:, 0], seen[paid]], 1)])
            self._cost_rows = {**self._cost_rows, column: rows}
            self.cost_model.refit(column, *rows.T, self._unplaced_logs.get(column, (0.0, 0)))
        return len(x)

    def register_candidate(
        self,
        name: str,
        description_embedding: np.ndarray,
        input_price: float,
        output_price: float,
        size_b: float | None = None,
        outcomes: dict[int, float] | None = None,
        backed_by: str | None = None,
        costs: dict[int, float] | None = None,
    ) -> int:
        """A new arm from nothing (a bandit does not read descriptions), learning at once from ``outcomes`` on
        stored queries (world query index → effect)."""
        if name in self._names:
            raise CandidateExistsError(f"{name!r} is already a candidate (already routable); remove it first")
        d = self.b.shape[1]
        self.a_inv = np.r_[self.a_inv, np.eye(d)[None] / self.ridge]
        self.b, self.n = np.r_[self.b, np.zeros((1, d))], np.r_[self.n, 0.0]
        self.cost_model.add_candidate(np.array([input_price, output_price]))
        col = len(self._names)
        self._cost_rows = {**self._cost_rows, col: np.zeros((0, 3))}
        self._names, self._kinds = (*self._names, name), (*self._kinds, AGENT if backed_by else LLM)
        if outcomes or costs:
            self.add_outcomes(name, outcomes or {}, costs)
        return col

    def remove_candidate(self, name: str) -> None:
        if name not in self._names:
            raise UnknownCandidateError(f"{name!r} is not a candidate")
        if len(self._names) == 1:
            raise ValueError(f"{name!r} is the last candidate; a router needs at least one")
        col = self._names.index(name)
        keep = np.arange(len(self._names)) != col
        self.a_inv, self.b, self.n = self.a_inv[keep], self.b[keep], self.n[keep]
        self.cost_model.keep_candidates(keep)
        new_col = np.cumsum(keep) - 1
        self._cost_rows = {int(new_col[c]): v for c, v in self._cost_rows.items() if c != col}
        self._unplaced_logs = {int(new_col[c]): v for c, v in self._unplaced_logs.items() if c != col}
        self._names = self._names[:col] + self._names[col + 1 :]
        self._kinds = self._kinds[:col] + self._kinds[col + 1 :]

    def add_outcomes(self, name: str, outcomes: dict[int, float], costs: dict[int, float] | None = None) -> int:
        if name not in self._names:
            raise UnknownCandidateError(f"{name!r} is not a candidate")
        idx = np.array([i for i in outcomes if 0 <= i < self.world.data.n_queries], dtype=np.int64)
        if not len(idx):
            return 0
        q = self.world.features(idx)
        cost = np.array([(costs or {}).get(int(i), np.nan) for i in idx], dtype=np.float64)
        return self.update(q, self._names.index(name), np.array([outcomes[int(i)] for i in idx]), cost)


@register
class LinUcbRouter(_LinearBandit):
    """LinUCB (Li et al. 2010, as in GreenServ): the arm of highest upper confidence bound on its utility."""

    name = "linucb"

    def __init__(self, alpha: float = 0.5, ridge: float = 1.0, warm_start: bool = True, seed: int = 0) -> None:
        super().__init__(ridge, warm_start, seed)
        self.alpha = alpha

    def combine(
        self, q: QueryFeatures, effect: np.ndarray, cost_norm: np.ndarray, weights: tuple[float, float]
    ) -> np.ndarray:
        return utility(effect, cost_norm, weights) + weights[0] * self.alpha * self.width(q)


@register
class EpsilonGreedyRouter(_LinearBandit):
    """ε-greedy (as in GreenServ): the arm of highest estimated utility, or with probability ε a random one."""

    name = "epsilon_greedy"

    def __init__(self, epsilon: float = 0.1, ridge: float = 1.0, warm_start: bool = True, seed: int = 0) -> None:
        super().__init__(ridge, warm_start, seed)
        self.epsilon = epsilon

    def combine(
        self, q: QueryFeatures, effect: np.ndarray, cost_norm: np.ndarray, weights: tuple[float, float]
    ) -> np.ndarray:
        u = utility(effect, cost_norm, weights)
        explore = self.rng.random(len(u)) < self.epsilon
        if explore.any():  # random utilities: the argmax over any allowed subset is a uniform pick from it
            u = u.copy()
            u[explore] = self.rng.random((int(explore.sum()), u.shape[1])) + 10.0
        return u
