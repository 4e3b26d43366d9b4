"""The scorer: top-k candidates for a query text, from a checkpoint, with predicted effect, cost and utility.

Candidate, task and stored-query state live in the fitted router (computed once); a request embeds the query
(cached), fills in its task if none is given, and scores every candidate. LLMs registered in the store after
training are added to the router at load time (or by :meth:`Scorer.register_llm`) without retraining, and so are
agents (:meth:`Scorer.register_agent`, priced as their backing LLM). Routers that cannot change their candidates
without retraining raise :class:`NotImplementedError` from the registering, removing and outcome methods.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from graph_store import AGENT, LLM, Agent, GraphStore, LLMNode
from graphrouter.embeddings import Embedder
from graphrouter.errors import GraphRouterError, QueryTooLongError
from graphrouter.probes import Probe, design_probes
from graphrouter.rewards import scenario_weights
from graphrouter.tokens import count_tokens
from graphrouter.world import UNKNOWN_TASK, QueryFeatures

if TYPE_CHECKING:
    from graphrouter.checkpoint import Checkpoint

MAX_QUERY_CHARS = 20_000


@dataclass(frozen=True)
class Recommendation:
    name: str
    kind: str  # "LLM" or "Agent"
    effect: float  # predicted, in [0, 1]
    cost: float  # predicted USD for this query
    utility: float


@dataclass(frozen=True)
class RouteResult:
    task: str
    task_inferred: bool
    weights: tuple[float, float]
    candidates: list[Recommendation]
    checkpoint: str


class Scorer:
    def __init__(self, checkpoint: Checkpoint, embedder: Embedder, max_query_chars: int = MAX_QUERY_CHARS) -> None:
        self.max_query_chars = max_query_chars
        self.checkpoint = checkpoint
        self.router = checkpoint.router
        self.embedder = embedder
        self._task_index = {t: i for i, t in enumerate(self.router.world.data.task_names)}
        # deleted candidates that the router cannot drop without retraining (name → the data they were deleted
        # with): kept out of every route until a retrain, or a re-registration with the same data
        self._excluded: dict[str, LLMNode | Agent | None] = {}

    @property
    def candidates(self) -> tuple[str, ...]:
        """The router's candidate list (the router owns it; registered candidates included)."""
        return self.router.candidates

    @property
    def excluded(self) -> dict[str, LLMNode | Agent | None]:
        """Deleted candidates the router still scores (it cannot drop them): never routed to."""
        return dict(self._excluded)

    def routable(self, name: str) -> bool:
        return name in self.router.candidates and name not in self._excluded

    @property
    def routable_candidates(self) -> list[str]:
        return [c for c in self.router.candidates if c not in self._excluded]

    def restore(self, name: str) -> bool:
        """Route to an excluded candidate again (it was re-registered with the data it had); False if it was not
        excluded."""
        return self._excluded.pop(name, ...) is not ...

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.router.kinds

    # ---- registering ----------------------------------------------------------------------------------------
    def register_llm(
        self, llm: LLMNode, outcomes: dict[str, float] | None = None, costs: dict[str, float] | None = None
    ) -> None:
        """Make ``llm`` routable now, from its description, prices and effects observed on stored queries (query
        id → effect); observed ``costs`` (query id → USD) on them set its cost multiplier."""
        keys = {k: i for i, k in enumerate(self.router.world.data.query_keys)}
        rows = {keys[q]: e for q, e in (outcomes or {}).items() if q in keys}
        emb = self.embedder.embed_one(f"{llm.name}: {llm.description}")
        try:
            self.router.register_candidate(
                llm.name,
                emb,
                llm.input_price,
                llm.output_price,
                llm.size_b,
                rows,
                costs=self._training_rows(costs)[0],
            )
        except GraphRouterError:
            raise
        except ValueError as exc:
            raise GraphRouterError(f"cannot register {llm.name!r}: {exc}") from None

    def register_agent(
        self,
        agent: Agent,
        backing: LLMNode,
        outcomes: dict[str, float] | None = None,
        costs: dict[str, float] | None = None,
    ) -> None:
        """Make ``agent`` routable now: described by its own text, priced as its backing LLM (which must be a
        candidate already) times a multiplier learned from its observed ``costs``, with its effects observed on
        stored queries."""
        if backing.name != agent.llm:
            raise GraphRouterError(f"agent {agent.name!r} is backed by {agent.llm!r}, not {backing.name!r}")
        if backing.name not in self.candidates or self.kinds[self.candidates.index(backing.name)] != LLM:
            raise GraphRouterError(
                f"agent {agent.name!r}: its backing LLM {backing.name!r} is not a candidate of this router"
            )
        emb = self.embedder.embed_one(f"{agent.name}: {agent.description}")  # as world.candidate_texts
        rows, cost_rows = self._training_rows(outcomes, costs)
        try:
            self.router.register_candidate(
                agent.name,
                emb,
                backing.input_price,
                backing.output_price,
                backing.size_b,
                rows,
                backed_by=backing.name,
                costs=cost_rows,
            )
        except GraphRouterError:
            raise
        except ValueError as exc:
            raise GraphRouterError(f"cannot register {agent.name!r}: {exc}") from None

    def remove_candidate(self, name: str) -> None:
        """Stop routing to ``name`` (an LLM or an agent) at once; raises NotImplementedError if the router cannot."""
        try:
            self.router.remove_candidate(name)
        except GraphRouterError:
            raise
        except ValueError as exc:
            raise GraphRouterError(f"cannot remove {name!r}: {exc}") from None
        self._excluded.pop(name, None)

    def exclude(self, name: str, node: LLMNode | Agent | None = None) -> bool:
        """Stop routing to a deleted candidate at once: dropped by the router if it can (True), else kept out of
        every route until a retrain (False). ``node``: its data, to recognise a re-registration of the same."""
        if name not in self.router.candidates:
            return True
        try:
            self.remove_candidate(name)
        except (NotImplementedError, GraphRouterError):
            self._excluded[name] = node
            return False
        return True

    def add_outcomes(self, name: str, outcomes: dict[str, float], costs: dict[str, float] | None = None) -> int:
        """Pass observed effects (query id → effect) of candidate ``name`` to the router without retraining, and
        its observed costs (query id → USD) if it was registered since training (a trained candidate's cost
        multiplier is learned by training).

        Only outcomes on the router's stored training queries can be used; the others wait for the next training.
        Returns how many effects were applied. Raises NotImplementedError if the router cannot take outcomes.
        """
        if name not in self.candidates:
            raise GraphRouterError(f"{name!r} is not a candidate")
        rows, cost_rows = self._training_rows(outcomes, costs)
        if not rows and not cost_rows:
            return 0
        try:
            return int(self.router.add_outcomes(name, rows, cost_rows))
        except GraphRouterError:
            raise
        except ValueError as exc:
            raise GraphRouterError(f"cannot add outcomes of {name!r}: {exc}") from None

    def _training_rows(self, *values: dict[str, float | None] | None) -> list[dict[int, float]]:
        """Each of ``values`` (query id → value) as world query index → value, keeping only the router's training
        queries (and values that are there); the world's index is built once for all of them."""
        if not any(values):
            return [{} for _ in values]
        keys = {k: i for i, k in enumerate(self.router.world.data.query_keys)}
        train = set(np.asarray(getattr(self.router, "train_idx", np.arange(len(keys)))).tolist())
        return [
            {keys[q]: float(v) for q, v in (vals or {}).items() if v is not None and keys.get(q, -1) in train}
            for vals in values
        ]

    # ---- probe sets -----------------------------------------------------------------------------------------
    def probes(self, name: str, k: int = 20, seed: int = 0, answered: Iterable[str] = ()) -> list[Probe]:
        """The ``k`` stored training queries whose outcomes would tell the router most about candidate ``name``
        (registered or not yet): see :mod:`graphrouter.probes`. Queries it answered (its outcomes known to the
        router, or the query ids ``answered``) are skipped. Deterministic for a given graph and ``seed``."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise GraphRouterError(f"k must be a positive integer, got {k!r}")
        router = self.router
        data = router.world.data
        pool = np.asarray(getattr(router, "train_idx", np.arange(data.n_queries)))
        effect = router.observed_effects()
        names = self.candidates
        own = np.full(len(pool), np.nan)
        if name in names:
            own = effect[:, names.index(name)].copy()
        skip = set(answered)
        if skip:
            own[[i for i, q in enumerate(pool) if data.query_keys[q] in skip]] = 1.0
        known = [j for j, c in enumerate(names) if c != name and c not in self._excluded]
        task = data.query_task[pool].astype(np.int64)
        rows = design_probes(effect[:, known], task, len(data.task_names), k, own, seed)
        return [
            Probe(data.query_keys[q], data.query_text[q], data.task_names[int(data.query_task[q])]) for q in pool[rows]
        ]

    @property
    def tasks(self) -> list[str]:
        """The tasks this checkpoint was trained with (``top_k(task=…)`` accepts only these)."""
        return list(self._task_index)

    def sync_with_store(self, store: GraphStore) -> tuple[list[str], list[str]]:
        """Register every LLM, then every agent, in the store that the checkpoint does not know.

        Returns (registered names, names skipped because this router cannot add candidates without retraining, or
        because an agent's backing LLM is not a candidate).
        """
        added, skipped = [], []
        for node in store.list_nodes(LLM):
            if node.key not in self.candidates:
                observed = store.outcomes(LLM, target=node.key)
                try:
                    self.register_llm(  # type: ignore[arg-type]
                        node, {o.query_id: o.effect for o in observed}, {o.query_id: o.cost for o in observed}
                    )
                except NotImplementedError:
                    skipped.append(node.key)
                else:
                    added.append(node.key)
        for agent in store.list_nodes(AGENT):
            assert isinstance(agent, Agent)
            if agent.key in self.candidates:
                continue
            if agent.llm not in self.candidates or not store.has_node(LLM, agent.llm):
                skipped.append(agent.key)
                continue
            backing = store.get_node(LLM, agent.llm)
            assert isinstance(backing, LLMNode)
            observed = store.outcomes(AGENT, target=agent.key)
            try:
                self.register_agent(
                    agent, backing, {o.query_id: o.effect for o in observed}, {o.query_id: o.cost for o in observed}
                )
            except NotImplementedError:
                skipped.append(agent.key)
            else:
                added.append(agent.key)
        return added, skipped

    # ---- routing --------------------------------------------------------------------------------------------
    def top_k(
        self,
        query_text: str,
        task: str | None = None,
        k: int = 3,
        scenario: str | None = None,
        weights: tuple[float, float] | None = None,
        budget: float | None = None,
        candidates: list[str] | None = None,
    ) -> RouteResult:
        """The ``k`` candidates of highest predicted utility for this query."""
        if not isinstance(query_text, str) or not query_text.strip():
            raise GraphRouterError("query must be a non-empty string")
        if len(query_text) > self.max_query_chars:
            raise QueryTooLongError(
                f"query: {len(query_text):,} characters; the limit is {self.max_query_chars:,} "
                "(GRAPHROUTER_MAX_QUERY_CHARS for the service)"
            )
        w = scenario_weights(scenario, weights)
        pool = self._pool(candidates)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise GraphRouterError(f"k must be a positive integer, got {k!r}")
        if k > len(pool):
            raise GraphRouterError(f"k={k} but only {len(pool)} candidate(s) to choose from")
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int | float) or not math.isfinite(budget) or budget <= 0
        ):
            raise GraphRouterError(f"budget must be a positive number of USD per query, got {budget!r}")
        t = self._task(task)
        q = QueryFeatures(
            embedding=self.embedder.embed([query_text]),
            task=np.array([t]),
            tokens=np.asarray(count_tokens([query_text]), dtype=np.float64),
        )
        return self._rank(q, task, w, k, budget, pool)

    def _pool(self, candidates: list[str] | None) -> np.ndarray:
        names = self.candidates
        if candidates is None:
            if not self._excluded:
                return np.arange(len(names))
            return np.array([i for i, c in enumerate(names) if c not in self._excluded])
        index = {c: i for i, c in enumerate(names) if c not in self._excluded}
        unknown = [c for c in candidates if c not in index]
        if unknown:
            known = list(index)
            more = f", … ({len(known)} in all; GET /v1/llms lists them)" if len(known) > 20 else ""
            shown = ", ".join(known[:20]) + more
            raise GraphRouterError(f"unknown candidate(s) {unknown[:20]}; known: {shown}")
        if not candidates:
            raise GraphRouterError("the candidate filter is empty")
        return np.array(sorted({index[c] for c in candidates}))

    def _task(self, task: str | None) -> int:
        if task is None:
            return UNKNOWN_TASK
        if task not in self._task_index:
            raise GraphRouterError(f"unknown task {task!r}; known: {', '.join(self._task_index)} (or omit it)")
        return self._task_index[task]

    def _rank(
        self, q: QueryFeatures, task: str | None, w: tuple[float, float], k: int, budget: float | None, pool: np.ndarray
    ) -> RouteResult:
        router = self.router
        scores = router.score(q, w)
        effect, cost, utility = scores.effect[0], scores.cost[0], scores.utility[0]
        if budget is not None:
            affordable = pool[cost[pool] <= budget]
            if len(affordable) == 0:
                raise GraphRouterError(
                    f"no candidate fits the budget of {budget:g} USD; the cheapest costs {cost[pool].min():.3g} USD"
                )
            pool = affordable
        order = pool[np.argsort(-utility[pool], kind="stable")][:k]
        recs = [
            Recommendation(
                self.candidates[i], self.kinds[i], float(np.clip(effect[i], 0, 1)), float(cost[i]), float(utility[i])
            )
            for i in order
        ]
        task_name = router.world.data.task_names[int(scores.task[0])]
        return RouteResult(
            task=task_name, task_inferred=task is None, weights=w, candidates=recs, checkpoint=self.checkpoint.version
        )
