"""The scorer: top-k candidates for a query text, from a checkpoint, with predicted effect, cost and utility.

Candidate, task and stored-query state live in the fitted router (computed once); a request embeds the query
(cached), fills in its task if none is given, and scores every candidate. LLMs registered in the store after
training are added to the router at load time (or by :meth:`Scorer.register_llm`) without retraining, and so are
agents (:meth:`Scorer.register_agent`, priced as their backing LLM). Routers that cannot change their candidates
without retraining raise :class:`NotImplementedError` from the registering, removing and outcome methods (the
outcome ones in :mod:`graphrouter.scorer_outcomes`). A request is validated first, by
:func:`graphrouter.route_request.check_request`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from graph_store import LLM, Agent, LLMNode
from graphrouter.embeddings import Embedder
from graphrouter.errors import GraphRouterError
from graphrouter.exploration import Explorer
from graphrouter.online import OnlineLearner
from graphrouter.probes import MAX_SEED, Probe, design_probes
from graphrouter.route_request import BUDGET_TOLERANCE, MAX_QUERY_CHARS, RouteRequest, check_request
from graphrouter.route_result import Recommendation, RouteResult
from graphrouter.scorer_outcomes import ScorerOutcomes
from graphrouter.tokens import count_tokens
from graphrouter.world import QueryFeatures, task_text

if TYPE_CHECKING:
    from graphrouter.checkpoint import Checkpoint
    from graphrouter.routers.base import Scores

SAME_TEXT_COSINE = 0.999  # two embeddings of one text agree to float rounding (a near-identical edit is taken as it)


class Scorer(ScorerOutcomes):
    def __init__(self, checkpoint: Checkpoint, embedder: Embedder, max_query_chars: int = MAX_QUERY_CHARS) -> None:
        self.max_query_chars = max_query_chars
        self.checkpoint = checkpoint
        self.router = checkpoint.router
        self.embedder = embedder
        self._task_index = {t: i for i, t in enumerate(self.router.world.data.task_names)}
        # deleted candidates that the router cannot drop without retraining (name → the data they were deleted
        # with): kept out of every route until a retrain, or a re-registration with the same data
        self._excluded: dict[str, LLMNode | Agent | None] = {}
        # what is learned from posted outcomes without retraining (the router applies it in its one pass), and
        # the exploration budget (the service shares one across scorer swaps)
        self.online = OnlineLearner()
        if not self.router.learns_online:
            self.router.online = self.online
        self.explorer = Explorer()
        # candidates whose corrections wait to be measured again after their router refitted them: added by
        # add_outcomes(settle=False) under the routing lock's exclusive side, taken by settle() under its shared side,
        # so never both at once (settles may overlap: each takes the set it finds, at worst one measures again)
        self._unsettled: set[str] = set()

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

    def cost_factors(self, name: str) -> tuple[float, float]:
        """The learned multipliers of candidate ``name``'s computed input and output cost (equal unless its costs
        showed the prompt and the answer scale apart)."""
        a, b = self.router.cost_model.factors[self.router.candidates.index(name)]
        return float(a), float(b)

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
        id → effect); observed ``costs`` (query id → USD) on them set its cost factors."""
        rows, cost_rows = self.router.training_rows(outcomes, costs)
        emb = self.embedder.embed_one(f"{llm.name}: {llm.description}")
        try:
            self.router.register_candidate(
                llm.name,
                emb,
                llm.input_price,
                llm.output_price,
                llm.size_b,
                rows,
                costs=cost_rows,
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
        candidate already) times factors learned from its observed ``costs``, with its effects observed on
        stored queries."""
        if backing.name != agent.llm:
            raise GraphRouterError(f"agent {agent.name!r} is backed by {agent.llm!r}, not {backing.name!r}")
        if backing.name not in self.candidates or self.kinds[self.candidates.index(backing.name)] != LLM:
            raise GraphRouterError(
                f"agent {agent.name!r}: its backing LLM {backing.name!r} is not a candidate of this router"
            )
        emb = self.embedder.embed_one(f"{agent.name}: {agent.description}")  # as world.candidate_texts
        rows, cost_rows = self.router.training_rows(outcomes, costs)
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
        self.online.forget(name)

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
        self._excluded.pop(name, None)  # kept out before, dropped now (another candidate took its place)
        return True

    # ---- probe sets -----------------------------------------------------------------------------------------
    def probes(self, name: str, k: int = 20, seed: int = 0, answered: Iterable[str] = ()) -> list[Probe]:
        """The ``k`` stored training queries whose outcomes would tell the router most about candidate ``name``
        (registered or not yet): see :mod:`graphrouter.probes`. Queries it answered (its outcomes known to the
        router, or the query ids ``answered``) are skipped. Deterministic for a given graph and ``seed``."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise GraphRouterError(f"k: must be a positive integer, got {k!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise GraphRouterError(f"seed: must be an integer from 0 to {MAX_SEED}, got {seed!r}")
        router = self.router
        data = router.world.data
        pool = np.asarray(getattr(router, "train_idx", np.arange(data.n_queries)))
        names = self.candidates
        own = np.full(len(pool), np.nan)
        if name in names:
            own = router.observed_effects()[:, names.index(name)].copy()
        skip = set(answered)
        if skip:
            own[[i for i, q in enumerate(pool) if data.query_keys[q] in skip]] = 1.0
        task = data.query_task[pool].astype(np.int64)
        rows = design_probes(task, len(data.task_names), k, own, seed)
        return [
            Probe(data.query_keys[q], data.query_text[q], data.task_names[int(data.query_task[q])]) for q in pool[rows]
        ]

    @property
    def tasks(self) -> list[str]:
        """The tasks this checkpoint was trained with (``top_k(task=…)`` accepts only these)."""
        return list(self._task_index)

    def redescribed(self, tasks: dict[str, str]) -> set[str]:
        """Those of ``tasks`` (name → description, as stored) this checkpoint was trained with under another
        description (deleted and registered again): what it learned of them is about another task. Compared by
        their text embeddings (one call), which a retraining would embed the same way."""
        known = [name for name in tasks if name in self._task_index]
        if not known:
            return set()
        emb = self.embedder.embed([task_text(name, tasks[name]) for name in known])
        trained = np.asarray(self.router.world.task_emb)[[self._task_index[name] for name in known]]
        cosine = (emb * trained).sum(1) / np.maximum(
            np.linalg.norm(emb, axis=1) * np.linalg.norm(trained, axis=1), 1e-12
        )
        return {name for name, c in zip(known, cosine, strict=True) if c < SAME_TEXT_COSINE}

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
        explore: bool = False,
        input_tokens: int | None = None,
        max_output_tokens: int | None = None,
    ) -> RouteResult:
        """The ``k`` candidates of highest predicted utility for this query. With ``explore``, the first one may
        instead be a Thompson sample's best (:class:`~graphrouter.exploration.Explorer`), within the exploration
        budget, among the candidates the request allows. ``input_tokens``: the input to price, if not the query's
        own (a whole chat prompt routed on its last user message); ``max_output_tokens``: the call's cap on output
        tokens (its max_tokens), which bounds an LLM's predicted cost."""
        req = RouteRequest(
            query_text, task, k, scenario, weights, budget, candidates, explore, input_tokens, max_output_tokens
        )
        t, w, pool = self._check(req)
        q = QueryFeatures(
            embedding=self.embedder.embed([query_text]),
            task=np.array([t]),
            tokens=_tokens([req]),
            max_output=_max_output([req]),
        )
        return self._rank(self.router.score(q, w), 0, task, w, k, budget, pool, explore)

    def top_k_many(self, requests: Sequence[RouteRequest]) -> list[RouteResult | GraphRouterError]:
        """:meth:`top_k` for many requests in one pass: one embedding call for all their texts and one router pass
        per distinct weights (usually one), each request then ranked on its own. The answer for each request is
        what :meth:`top_k` would give it, or the error it would raise (returned in its place, not raised)."""
        out: list[RouteResult | GraphRouterError | None] = [None] * len(requests)
        checked: dict[int, tuple[int, tuple[float, float], np.ndarray]] = {}
        for i, req in enumerate(requests):
            try:
                checked[i] = self._check(req)
            except GraphRouterError as exc:
                out[i] = exc
        if checked:
            rows = list(checked)
            texts = [requests[i].query for i in rows]
            embedding = self.embedder.embed(texts)
            tokens = _tokens([requests[i] for i in rows])
            max_output = _max_output([requests[i] for i in rows])
            by_weights: dict[tuple[float, float], list[int]] = {}
            for j, i in enumerate(rows):
                by_weights.setdefault(checked[i][1], []).append(j)
            for w, js in by_weights.items():
                q = QueryFeatures(
                    embedding=embedding[js],
                    task=np.array([checked[rows[j]][0] for j in js]),
                    tokens=tokens[js],
                    max_output=None if max_output is None else max_output[js],
                )
                scores = self.router.score(q, w)
                for n, j in enumerate(js):
                    i = rows[j]
                    req = requests[i]
                    try:
                        out[i] = self._rank(scores, n, req.task, w, req.k, req.budget, checked[i][2], req.explore)
                    except GraphRouterError as exc:
                        out[i] = exc
        return out  # type: ignore[return-value]

    def _check(self, req: RouteRequest) -> tuple[int, tuple[float, float], np.ndarray]:
        """Validate one request (:func:`~graphrouter.route_request.check_request`): (task index, weights,
        candidate pool), or GraphRouterError saying what is wrong."""
        return check_request(req, self.max_query_chars, self.candidates, self._excluded, self._task_index)

    def _rank(
        self,
        scores: Scores,
        row: int,
        task: str | None,
        w: tuple[float, float],
        k: int,
        budget: float | None,
        pool: np.ndarray,
        explore: bool = False,
    ) -> RouteResult:
        router = self.router
        effect, cost, utility = scores.effect[row], scores.cost[row], scores.utility[row]
        if budget is not None:
            affordable = pool[cost[pool] <= budget * (1 + BUDGET_TOLERANCE)]  # a cost as the answer shows it fits
            if len(affordable) == 0:
                raise GraphRouterError(
                    f"budget: no candidate fits the budget of {budget:.12g} USD; the cheapest costs "
                    f"{cost[pool].min():.12g} USD"
                )
            pool = affordable
        order = pool[np.argsort(-utility[pool], kind="stable")]
        self.explorer.count_request()
        explored, extra, argmax = False, 0.0, self.candidates[int(order[0])]
        if explore and len(order) > 1:
            counts, (trained, online) = router.outcome_counts(), self.quiz_counts()
            seen = trained + online
            task_seen = task_hits = None  # what a quiz on this task asks: only a candidate not yet known is quizzed
            if self.explorer.quiz > 0 and (trained[pool] < self.explorer.known_at).any():
                task_seen, task_hits = self.online.tally(self.candidates, int(scores.task[row]))
            pick = self.explorer.sample(
                effect, scores.cost_norm[row], w, counts, pool, trained, seen, task_seen, task_hits
            )
            extra = 0.0 if pick is None else float(cost[pick] - cost[order[0]])
            if pick is not None and pick != order[0] and self.explorer.try_spend(extra):
                order, explored = np.r_[pick, order[order != pick]], True
        if not explored:
            extra = 0.0
        order = order[:k]
        recs = [
            Recommendation(
                self.candidates[i], self.kinds[i], float(np.clip(effect[i], 0, 1)), float(cost[i]), float(utility[i])
            )
            for i in order
        ]
        task_name = router.world.data.task_names[int(scores.task[row])]
        return RouteResult(
            task=task_name,
            task_inferred=task is None,
            weights=w,
            candidates=recs,
            checkpoint=self.checkpoint.version,
            explored=explored,
            extra_cost=extra,
            instead_of=argmax if explored else None,
        )


def _max_output(requests: Sequence[RouteRequest]) -> np.ndarray | None:
    """(n,) each request's cap on output tokens (NaN: none), or None if none has one."""
    if all(r.max_output_tokens is None for r in requests):
        return None
    return np.array([np.nan if r.max_output_tokens is None else r.max_output_tokens for r in requests], np.float64)


def _tokens(requests: Sequence[RouteRequest]) -> np.ndarray:
    """(n,) the input tokens each request is priced with: its ``input_tokens``, or its query's counted."""
    counted = iter(count_tokens([r.query for r in requests if r.input_tokens is None]))
    return np.array([next(counted) if r.input_tokens is None else r.input_tokens for r in requests], dtype=np.float64)
