"""The router interface (RouteLLM-style): an abstract base with one scoring method, and a name → class registry.

Every router, baseline or GNN, is fitted on a :class:`World` (the stored graph as matrices, with embeddings)
and scores a batch of :class:`QueryFeatures`: ``utility(q, weights)`` returns a (n, C) matrix whose row-wise
argmax is the routing decision. Most routers only predict effects; cost is known at routing time (input tokens ×
price) and shared by all of them through :class:`CostModel`, and an unknown task is inferred by
:class:`TaskInferer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from graphrouter.metrics import utility
from graphrouter.routing_data import RoutingData
from graphrouter.tokens import DEFAULT_OUTPUT_TOKENS

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

    def __len__(self) -> int:
        return int(self.embedding.shape[0])

    def with_task(self, task: np.ndarray) -> QueryFeatures:
        return QueryFeatures(self.embedding, task, self.tokens, self.index)


class TaskInferer:
    """Infers a query's task from its embedding: multinomial logistic regression on the stored training queries."""

    def __init__(self, c: float = 10.0) -> None:
        self.c = c
        self._clf = None
        self.n_tasks = 0

    def fit(self, world: World, train_idx: np.ndarray) -> TaskInferer:
        from sklearn.linear_model import LogisticRegression

        self.n_tasks = len(world.data.task_names)
        y = world.data.query_task[train_idx]
        # one BLAS thread: on a small shared machine, oversubscribed OpenBLAS made this fit 40x slower
        with threadpool_limits(limits=1):
            self._clf = LogisticRegression(C=self.c, max_iter=3000).fit(world.query_emb[train_idx], y)
        return self

    def proba(self, embedding: np.ndarray) -> np.ndarray:
        assert self._clf is not None, "TaskInferer.fit() first"
        out = np.zeros((embedding.shape[0], self.n_tasks))
        clf = self._clf
        if clf.coef_.shape[0] > 1:  # multinomial: the softmax of the linear scores, without sklearn's per-call checks
            z = np.asarray(embedding, dtype=np.float64) @ clf.coef_.T + clf.intercept_
            z = np.exp(z - z.max(1, keepdims=True))
            out[:, clf.classes_] = z / z.sum(1, keepdims=True)
        else:
            out[:, clf.classes_] = clf.predict_proba(embedding)
        return out

    def fill(self, q: QueryFeatures) -> QueryFeatures:
        """The same queries with every unknown task replaced by the most likely one."""
        unknown = q.task == UNKNOWN_TASK
        if not unknown.any():
            return q
        task = q.task.copy()
        task[unknown] = self.proba(q.embedding[unknown]).argmax(1)
        return q.with_task(task)


def _log_ratio(observed: np.ndarray, computed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where an observed cost is usable (finite, positive, with a positive computed cost) and log(observed /
    computed) there (0 elsewhere)."""
    ok = np.isfinite(observed) & (observed > 0) & (computed > 0)
    return ok, np.where(ok, np.log(np.where(ok, observed, 1.0)) - np.log(np.where(ok, computed, 1.0)), 0.0)


MAX_MULTIPLIER = 1e3  # an agent making a thousand calls per query; beyond that an observed cost is taken as an error


def _multiplier(log_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The shrunk geometric mean exp(Σ log ratio / (n + prior)), kept within [1/MAX_MULTIPLIER, MAX_MULTIPLIER]."""
    bound = np.log(MAX_MULTIPLIER)
    return np.exp(np.clip(log_sum / count, -bound, bound))


class CostModel:
    """Cost is (almost) known before the call: ``(input tokens × input price + 512 × output price) / 1e6 × m``, where
    ``m`` is a per-candidate multiplier learned from the observed costs of its outcomes (an agent that makes several
    LLM calls per query costs a multiple of its LLM's single call; an LLM's observed costs give m ≈ 1). ``m`` is the
    geometric mean of observed / computed cost, shrunk towards 1 with a prior of 5 outcomes (and kept within 1000×
    either way: beyond that an observed cost is taken as an error, not a price). Costs are normalised
    with the (given or inferred) task's min–max range observed in the world."""

    prior_outcomes = 5.0

    def __init__(
        self,
        prices: np.ndarray,
        task_range: np.ndarray,
        output_tokens: int = DEFAULT_OUTPUT_TOKENS,
        multiplier: np.ndarray | None = None,
    ):
        self.prices = np.asarray(prices, dtype=np.float64)  # (C, 2)
        self.task_range = np.asarray(task_range, dtype=np.float64)  # (T, 2)
        self.output_tokens = output_tokens
        self.multiplier = np.ones(len(self.prices)) if multiplier is None else np.asarray(multiplier, np.float64)
        # candidates added since fitting: column → world query index → log(observed / computed cost)
        self.observed: dict[int, dict[int, float]] = {}

    def __setstate__(self, state: dict) -> None:  # checkpoints written before the multiplier existed
        state.setdefault("multiplier", np.ones(len(state["prices"])))
        state.setdefault("observed", {})
        self.__dict__.update(state)

    @classmethod
    def from_world(cls, world: World) -> CostModel:
        model = cls(world.data.candidate_prices, world.data.task_cost_range())
        ok, log_ratio = _log_ratio(world.data.cost, model.cost(world.query_tokens))
        model.multiplier = _multiplier(np.where(ok, log_ratio, 0.0).sum(0), ok.sum(0) + cls.prior_outcomes)
        return model

    def add_candidate(self, prices: np.ndarray) -> None:
        """Append a candidate (its multiplier starts at 1; :meth:`observe` learns it)."""
        self.prices = np.r_[self.prices, np.asarray(prices, dtype=np.float64).reshape(1, 2)]
        self.multiplier = np.r_[self.multiplier, 1.0]
        self.observed = {**self.observed, len(self.prices) - 1: {}}

    def keep_candidates(self, keep: np.ndarray) -> None:
        new_col = np.cumsum(keep) - 1
        self.prices, self.multiplier = self.prices[keep], self.multiplier[keep]
        self.observed = {int(new_col[c]): rows for c, rows in self.observed.items() if keep[c]}

    def observe(self, col: int, costs: dict[int, float], tokens: np.ndarray) -> int:
        """Learn the multiplier of a candidate added since fitting from its observed costs at once (world query
        index → USD; ``tokens``: the world's input tokens per query); a fitted candidate's waits for the next
        fit. A query observed again replaces its earlier cost. Returns how many costs were used."""
        costs = {i: c for i, c in costs.items() if 0 <= i < len(tokens)}  # others: not queries of this world
        if col not in self.observed or not costs:
            return 0
        rows = np.fromiter(costs, dtype=np.int64, count=len(costs))
        seen = np.fromiter(costs.values(), dtype=np.float64, count=len(costs))
        ok, log_ratio = _log_ratio(seen, self.cost(tokens[rows], self.prices[[col]])[:, 0])
        logs = {**self.observed[col], **{int(r): float(v) for r, v in zip(rows[ok], log_ratio[ok], strict=True)}}
        multiplier = self.multiplier.copy()  # replaced, never changed in place: routing reads it without a lock
        multiplier[col] = _multiplier(np.array(sum(logs.values())), np.array(len(logs) + self.prior_outcomes))
        self.observed = {**self.observed, col: logs}
        self.multiplier = multiplier
        return int(ok.sum())

    def cost(self, tokens: np.ndarray, prices: np.ndarray | None = None) -> np.ndarray:
        """(n, C) predicted USD; with explicit ``prices`` (C', 2) the plain computed cost (no multiplier)."""
        p = self.prices if prices is None else prices
        computed = (
            np.asarray(tokens, dtype=np.float64)[:, None] * p[None, :, 0] + self.output_tokens * p[None, :, 1]
        ) / 1e6
        return computed if prices is not None else computed * self.multiplier

    def normalise(self, cost: np.ndarray, task: np.ndarray) -> np.ndarray:
        lo, hi = self.task_range[task, 0][:, None], self.task_range[task, 1][:, None]
        span = np.where(hi > lo, hi - lo, 1.0)
        return (cost - lo) / span


class Router(ABC):
    """Scores every candidate for every query; higher utility is better."""

    name: ClassVar[str] = "abstract"

    def fit(self, world: World, train_idx: np.ndarray) -> Router:
        """Learn from the training queries' outcomes (and nothing else of theirs)."""
        self.world = world
        self.train_idx = np.asarray(train_idx)
        self.cost_model = CostModel.from_world(world)
        self.task_inferer = TaskInferer().fit(world, self.train_idx)
        self._fit(world, self.train_idx)
        return self

    def _fit(self, world: World, train_idx: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Router-specific training; the default learns nothing."""

    @abstractmethod
    def predict_effect(self, q: QueryFeatures) -> np.ndarray:
        """(n, C) expected effect of each candidate on each query (tasks already filled in)."""

    def utility(self, q: QueryFeatures, weights: tuple[float, float], effect: np.ndarray | None = None) -> np.ndarray:
        """(n, C) predicted ``w_effect · effect − w_cost · cost_norm``; pass ``effect`` if already predicted for
        ``q`` (the scorer does, to run the model once per request). Routers whose utility is not built from the
        predicted effect ignore it."""
        q = self.task_inferer.fill(q)
        cost_norm = self.cost_model.normalise(self.cost_model.cost(q.tokens), q.task)
        return utility(self.predict_effect(q) if effect is None else effect, cost_norm, weights)

    def choose(self, q: QueryFeatures, weights: tuple[float, float]) -> np.ndarray:
        return np.argmax(self.utility(q, weights), axis=1)

    def candidate_kinds(self) -> list[tuple[str, str]]:
        """(name, kind) of every candidate this router scores, in column order: its training world's, unless it
        added or dropped candidates since (inductive routers override this)."""
        data = self.world.data
        return list(zip(data.candidates, data.candidate_kind, strict=True))

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
        """Add a candidate without retraining (its description, prices and observed effects on stored queries,
        keyed by world query index) and return its column. ``backed_by`` names the candidate LLM an agent runs on;
        ``costs`` (world query index → USD) teach the cost model its multiplier at once.

        Only inductive routers can; the others raise :class:`NotImplementedError`.
        """
        raise NotImplementedError(
            f"the {self.name!r} router cannot add a candidate without retraining; use the 'gnn' router or retrain"
        )

    def remove_candidate(self, name: str) -> None:
        """Stop routing to ``name`` for good (its column and outcomes are dropped). Inductive routers only."""
        raise NotImplementedError(f"the {self.name!r} router cannot drop a candidate without retraining")

    def add_outcomes(self, name: str, outcomes: dict[int, float], costs: dict[int, float] | None = None) -> int:
        """Use newly observed effects of candidate ``name`` on stored training queries (world query index →
        effect) at once, and its observed costs if it was added since training; returns how many effects were
        applied. Inductive routers only."""
        raise NotImplementedError(f"the {self.name!r} router uses new outcomes only after retraining")


ROUTERS: dict[str, type[Router]] = {}


def register(cls: type[Router]) -> type[Router]:
    """Class decorator: make a router available by its ``name`` (experiments, CLI, API)."""
    ROUTERS[cls.name] = cls
    return cls
