"""The router interface (RouteLLM-style): an abstract base with one scoring method, and a name → class registry.

Every router, baseline or GNN, is fitted on a :class:`~graphrouter.world.World` (the stored graph as matrices,
with embeddings) and scores a batch of :class:`~graphrouter.world.QueryFeatures`. :meth:`Router.score` is the one
pass of a request: it fills in the task once, predicts effects once (:meth:`Router.predict_effect`, the one method
a router must write), computes cost once (:class:`~graphrouter.cost.CostModel`, shared by every router) and the
utility, minus the router's own :meth:`Router.penalty` (none by default). Its row-wise argmax is the routing
decision. An unknown task is inferred by :class:`~graphrouter.task_inference.TaskInferer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from graph_store import LLM
from graphrouter.cost import CostModel
from graphrouter.errors import GraphRouterError
from graphrouter.rewards import utility
from graphrouter.task_inference import TaskInferer
from graphrouter.world import QueryFeatures, World

if TYPE_CHECKING:
    from graphrouter.online import OnlineLearner


@dataclass(frozen=True)
class Scores:
    """One pass of a router over a batch of queries: the task used for each query, and (n, C) predicted effect,
    cost (USD), normalised cost and utility."""

    task: np.ndarray
    effect: np.ndarray
    cost: np.ndarray
    cost_norm: np.ndarray
    utility: np.ndarray


@dataclass(frozen=True)
class NewCandidate:
    """One candidate to register: the arguments of :meth:`Router.register_candidate`."""

    name: str
    description_embedding: np.ndarray
    input_price: float
    output_price: float
    size_b: float | None = None
    outcomes: dict[int, float] | None = None
    backed_by: str | None = None
    costs: dict[int, float] | None = None


class Router(ABC):
    """Scores every candidate for every query; higher utility is better."""

    name: ClassVar[str] = "abstract"
    # a router that learns from each outcome itself (``update``) instead of through an OnlineLearner (bandits)
    learns_online: ClassVar[bool] = False
    # corrections learned online from posted outcomes (set by the scorer; None: predictions as trained)
    online: OnlineLearner | None = None
    # a router that has nothing to rank a candidate without training outcomes by ranks it last (the baselines)
    ranks_unseen_last: ClassVar[bool] = False
    # (C,) those candidates, set by fit where ranks_unseen_last (rank_unseen_last); None: none
    unseen: np.ndarray | None = None

    def min_queries(self) -> int:
        """The fewest training queries this router can learn from (1 unless it holds some out to validate on)."""
        return 1

    def check_enough(self, n_queries: int) -> None:
        """A :class:`GraphRouterError` if ``n_queries`` training queries with an outcome are fewer than this router
        learns from (:meth:`min_queries`); trainers ask it before embedding a store's queries, :meth:`fit` always."""
        if n_queries < (need := self.min_queries()):
            raise GraphRouterError(
                f"the {self.name!r} router needs at least {need:,} training queries with outcomes, got {n_queries:,}; "
                "import more outcomes, or train a router that learns from fewer (e.g. best_per_task or knn_task: 1)"
            )

    def fit(self, world: World, train_idx: np.ndarray) -> Router:
        """Learn from the training queries' outcomes (and nothing else of theirs); a :class:`GraphRouterError` if
        there are fewer than :meth:`min_queries` of them."""
        observed = np.isfinite(world.data.effect[np.asarray(train_idx)])
        self.check_enough(int(observed.any(axis=1).sum()))
        if self.ranks_unseen_last:
            self.unseen = ~observed.any(axis=0)
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

    def score(self, q: QueryFeatures, weights: tuple[float, float]) -> Scores:
        """The one pass of a request: the task filled in once (inferred where unknown), effects predicted once,
        cost computed once, and ``w_effect · effect − w_cost · cost_norm − penalty``."""
        q = self.task_inferer.fill(q)
        effect = self.predict_effect(q)
        if self.online is not None:  # a no-op (the same array) until an outcome was learned
            effect = self.online.adjust(self.candidates, q, effect, self.trained_counts())
        capped = None  # the LLMs (one call each: a max_tokens bounds its bill), read only when a request has a cap
        if q.max_output is not None:
            capped = np.array([kind == LLM for kind in self.kinds], bool)
        cost = self.cost_model.cost(q.tokens, max_output=q.max_output, capped=capped)
        cost_norm = self.cost_model.normalise(cost, q.task)
        return Scores(q.task, effect, cost, cost_norm, self.combine(q, effect, cost_norm, weights))

    def combine(
        self, q: QueryFeatures, effect: np.ndarray, cost_norm: np.ndarray, weights: tuple[float, float]
    ) -> np.ndarray:
        """(n, C) utility from this pass's predictions (tasks filled in): ``w_effect · effect − w_cost · cost_norm``
        minus :meth:`penalty`. Routers whose utility is not built from the predicted effect override this."""
        u = utility(effect, cost_norm, weights)
        penalty = self.penalty(weights, q.task)
        return self.rank_unseen_last(u if penalty is None else u - (penalty if penalty.ndim == 2 else penalty[None, :]))

    def rank_unseen_last(self, u: np.ndarray) -> np.ndarray:
        """``u`` (n, C) with the candidates of :attr:`unseen` 1 below the lowest of the others in each row: a router
        with no outcome of them to learn from ranks them last, whatever their cost (the same array if none)."""
        unseen = self.unseen
        if unseen is None or len(unseen) != u.shape[1] or not unseen.any() or unseen.all():
            return u
        u = np.array(u, dtype=np.float64, copy=True)
        u[:, unseen] = u[:, ~unseen].min(axis=1, keepdims=True) - 1.0
        return u

    def penalty(self, weights: tuple[float, float], task: np.ndarray | None = None) -> np.ndarray | None:
        """Utility subtracted from each candidate (e.g. for uncertainty): (C,) whatever the query, or (n, C) for
        queries of tasks ``task`` (n,) where it depends on the task; none by default."""
        return None

    def trained_names(self) -> frozenset[str]:
        """The candidates this router was trained with and still holds as trained (its training world's)."""
        return frozenset(self.world.data.candidates)

    def trained_counts(self) -> np.ndarray:
        """(C,) outcomes behind each candidate's prediction at training (or registration): its observed training
        outcomes. Inductive routers whose candidates change override this."""
        return np.isfinite(self.world.data.effect[self.train_idx]).sum(0).astype(float)

    def outcome_counts(self) -> np.ndarray:
        """(C,) outcomes behind each candidate's prediction now: :meth:`trained_counts` plus those learned online,
        weighted by how untrained the candidate is (``Priors.freshness``, ``Priors.penalty_weight``): the spread of
        exploration's Thompson sample, and the GNN's uncertainty penalty."""
        n = self.trained_counts()
        if self.online is None:
            return n
        return n + self.online_weight(n) * self.online.counts(self.candidates)

    def online_weight(self, trained: np.ndarray) -> np.ndarray:
        """(C,) what one outcome learned online counts in :meth:`outcome_counts`, by the outcomes each candidate was
        trained with (``Priors.freshness`` × ``Priors.penalty_weight``)."""
        p = self.online.priors
        return p.freshness(trained) * p.penalty_weight

    def utility(self, q: QueryFeatures, weights: tuple[float, float]) -> np.ndarray:
        """(n, C) predicted utility (:meth:`score`'s)."""
        return self.score(q, weights).utility

    def choose(self, q: QueryFeatures, weights: tuple[float, float]) -> np.ndarray:
        return np.argmax(self.utility(q, weights), axis=1)

    def training_rows(self, *values: dict[str, float | None] | None) -> list[dict[int, float]]:
        """Each of ``values`` (query id → value) as world query index → value, keeping only this router's stored
        training queries (and values that are there). The id → row index is built once per world."""
        if not any(values):
            return [{} for _ in values]
        keys = self.world.data.query_keys
        index = self._per_world("_training_keys", lambda: {keys[int(i)]: int(i) for i in self.train_idx})
        return [
            {index[q]: float(v) for q, v in (vals or {}).items() if v is not None and q in index} for vals in values
        ]

    def query_rows(self) -> dict[str, int]:
        """Every stored query of this router's world, trained on or not, as query id → world row; built once per
        world. (The scorer asks it which posted outcomes' queries it can take from the world.)"""
        return self._per_world("_query_rows", lambda: {k: i for i, k in enumerate(self.world.data.query_keys)})

    def _per_world(self, name: str, build: Callable[[], dict[str, int]]) -> dict[str, int]:
        """An index kept under ``name`` until the router's world is replaced (reattaching or refitting)."""
        cached = self.__dict__.get(name)
        if cached is None or cached[0] is not self.world:
            cached = (self.world, build())
            self.__dict__[name] = cached
        return cached[1]

    @property
    def candidates(self) -> tuple[str, ...]:
        """The names this router scores, in column order: the one candidate list of a running service (the scorer
        and the API read it here). Its training world's, unless it added or dropped candidates since (inductive
        routers override this, replacing the tuple on every change, so a reader never sees half a change)."""
        return tuple(self.world.data.candidates)

    @property
    def kinds(self) -> tuple[str, ...]:
        """ "LLM" or "Agent" per column of :attr:`candidates`."""
        return tuple(self.world.data.candidate_kind)

    def candidate_kinds(self) -> list[tuple[str, str]]:
        """(name, kind) of every candidate, in column order."""
        return list(zip(self.candidates, self.kinds, strict=True))

    def observed_effects(self) -> np.ndarray:
        """(len(train_idx), C) the observed effects of the stored training queries for every column of
        :attr:`candidates` (NaN: unobserved); routers that take outcomes since training override it."""
        return self.world.data.effect[self.train_idx]

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
        ``costs`` (world query index → USD) teach the cost model its factors at once.

        Only inductive routers can; the others raise :class:`NotImplementedError`.
        """
        raise NotImplementedError(
            f"the {self.name!r} router cannot add a candidate without retraining; use the 'gnn' router or retrain"
        )

    def register_candidates(self, specs: list[NewCandidate]) -> list[int]:
        """Add several candidates (:meth:`register_candidate` each, unless a router does it in one change)."""
        return [self.register_candidate(**vars(spec)) for spec in specs]

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


def build_router(
    name: str, params: object, router_setting: str = "", params_setting: str = "router settings"
) -> Router:
    """An unfitted router of the registry from its name and constructor settings, or a GraphRouterError naming the
    setting that is wrong (``router_setting``, ``params_setting``: what the user set them with, e.g.
    GRAPHROUTER_TRAIN_ROUTER / GRAPHROUTER_TRAIN_PARAMS or ``--params``)."""
    if name not in ROUTERS:
        where = f"{router_setting}: " if router_setting else ""
        raise GraphRouterError(f"{where}unknown router {name!r}; use one of {', '.join(ROUTERS)}")
    try:
        if not isinstance(params, dict):
            raise ValueError("not a JSON object")
        return ROUTERS[name](**params)
    except (TypeError, ValueError) as exc:
        raise GraphRouterError(f"{params_setting} do not fit the {name!r} router: {exc}") from None
