"""Posted outcomes reaching the serving scorer: a mixin of :class:`~api.registry.CandidateRegistry`.

Every outcome the service takes — ``POST /v1/outcomes`` (:meth:`RegistryOutcomes.post_outcomes`: checked, then
written to the store with its change record by :meth:`RegistryOutcomes.record_outcomes`), the proxy's feedback
(:meth:`RegistryOutcomes.apply_outcomes`: the store already holds the edge, only the change record is written) and
other replicas' changes (:meth:`RegistryOutcomes.pass_outcomes`, from api/replication.py) — is passed to the serving
scorer per routable candidate, with the text and task of the queries its router was not trained on, so the scorer
learns it at once (:meth:`Scorer.add_outcomes`).
:meth:`RegistryOutcomes.outcome_mark` is how many it learned so far: a training keeps only the newer ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from api.models import ObservedOutcome
from api.outcome_rows import outcome_batch
from graph_store import (
    QUERY,
    GraphBatch,
    GraphStore,
    GraphStoreError,
    Outcome,
    Query,
    StoreUnavailableError,
)
from graph_store.changes import OUTCOMES, Change
from graphrouter.errors import GraphRouterError
from graphrouter.online import REFIT_ROWS
from graphrouter.scorer import Scorer

if TYPE_CHECKING:
    import threading

    from api.state import ServiceState

log = logging.getLogger("api")

RELEARN_ROWS = REFIT_ROWS  # per candidate, the most recent stored outcomes a start learns again


def outcome_rows(outcomes: list[Outcome]) -> list[list[Any]]:
    """Outcomes as a change's payload rows: [query_id, target, effect, cost]."""
    return [[o.query_id, o.target, o.effect, o.cost] for o in outcomes]


class RegistryOutcomes:
    """The outcome methods of :class:`~api.registry.CandidateRegistry`."""

    if TYPE_CHECKING:  # provided by CandidateRegistry
        state: ServiceState
        lock: threading.Lock

        def change(self, kind: str, key: str = "", payload: dict[str, Any] | None = None) -> Change: ...

    def post_outcomes(self, rows: Sequence[ObservedOutcome], max_query_chars: int) -> tuple[GraphBatch, int]:
        """``POST /v1/outcomes``: under :attr:`lock`, check the rows against the store (api/outcome_rows.py), then
        :meth:`record_outcomes`. Returns the batch written and how many effects the scorer took."""
        store = self.state.get_store()
        with self.lock:  # candidates, queries and tasks cannot vanish between the checks and the write
            batch = outcome_batch(rows, store, max_query_chars)
            return batch, self.record_outcomes(store, batch)

    def record_outcomes(self, store: GraphStore, batch: GraphBatch) -> int:
        """Write new queries and outcomes in one atomic store write (the caller checked them under :attr:`lock`),
        then pass them to the serving scorer, per routable candidate: it learns every effect at once (on stored
        and new queries alike: :meth:`Scorer.add_outcomes`), and the costs of candidates registered since
        training. Returns how many effects the scorer took."""
        rows = outcome_rows(batch.outcomes)
        store.write(batch, change=self.change(OUTCOMES, payload={"rows": rows}))
        return self.pass_outcomes(rows, {q.id: (q.text, q.task) for q in batch.queries})

    def apply_outcomes(self, outcomes: list[Outcome]) -> int:
        """Pass outcomes already in the store to the serving scorer, and log them for the other replicas (the
        proxy's feedback: ``GraphStore.complete_pending`` wrote the edge); how many effects the scorer took."""
        rows = outcome_rows(outcomes)
        self.state.get_store().record_change(self.change(OUTCOMES, payload={"rows": rows}))
        return self.pass_outcomes(rows)

    def pass_outcomes(self, rows: list[list[Any]], new_queries: dict[str, tuple[str, str]] | None = None) -> int:
        """Pass outcome rows [query_id, target, effect, cost] to the serving scorer, per routable candidate, with
        the (text, task) of queries its router was not trained on (from ``new_queries``, else the store)."""
        scorer = self.state.scorer
        if scorer is None:
            return 0
        # the store reads outside the lock
        by_candidate, queries = self._gather(scorer, rows, new_queries or {}, self.state.get_store())
        with self.state.lock.write():
            return self._give(scorer, by_candidate, queries)

    def learn_stored(self, scorer: Scorer, store: GraphStore) -> int:
        """Pass a scorer that the service installs at its start (not yet serving) what a running service had
        learned online of the candidates it refits (:meth:`Scorer.relearned`: registered since training, or trained
        without outcomes), from their stored outcomes (:meth:`Scorer.unlearned`; the most recent
        :data:`RELEARN_ROWS` of each, by ``observed_at``): a restart used to forget a new LLM's refit from its
        outcomes and its quiz's counts until the next training. Other failures than an unavailable store are
        logged, and the scorer is installed all the same."""
        names = scorer.relearned()
        if not names:
            return 0
        try:
            stored = [o for name, kind in names.items() for o in store.outcomes(kind, target=name)]
            per: dict[str, list[Outcome]] = {}
            for o in sorted(scorer.unlearned(stored), key=lambda o: o.observed_at):
                per.setdefault(o.target, []).append(o)
            todo = [o for mine in per.values() for o in mine[-RELEARN_ROWS:]]  # its refit reads its most recent
            if not todo:
                return 0
            applied = self._give(scorer, *self._gather(scorer, outcome_rows(todo), {}, store))
        except StoreUnavailableError:
            raise  # the load fails and is retried, as without outcomes to learn
        except (GraphStoreError, GraphRouterError) as exc:
            log.warning("stored outcomes not learned again at start: %s", exc)
            return 0
        log.info("learned %d stored outcome(s) of %d candidate(s) the router refits", applied, len(names))
        return applied

    def _gather(
        self, scorer: Scorer, rows: list[list[Any]], new_queries: dict[str, tuple[str, str]], store: GraphStore
    ) -> tuple[dict[str, tuple[dict[str, float], dict[str, float]]], dict[str, tuple[str, str]]]:
        """Outcome rows per routable candidate of ``scorer`` (query id → effect, → cost), and the (text, task) of
        their queries its router was not trained on (from ``new_queries``, else ``store``)."""
        by_candidate: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
        for query, target, effect, cost in rows:
            if scorer.routable(target):
                effects, costs = by_candidate.setdefault(target, ({}, {}))
                effects[query], costs[query] = effect, cost
        ids = list(dict.fromkeys(q for effects, _ in by_candidate.values() for q in effects))
        return by_candidate, self._query_texts(store, scorer, new_queries, ids)

    @staticmethod
    def _give(
        scorer: Scorer,
        by_candidate: dict[str, tuple[dict[str, float], dict[str, float]]],
        queries: dict[str, tuple[str, str]],
    ) -> int:
        """Pass :meth:`_gather`'s outcomes to ``scorer`` (the caller holds the serving lock if it serves)."""
        applied = 0
        for name, (effects, costs) in by_candidate.items():
            try:
                applied += scorer.add_outcomes(name, effects, costs, queries=queries)
            except NotImplementedError:  # this router learns outcomes only by retraining
                return 0
            except GraphRouterError as exc:  # stored all the same; the next training uses them
                log.warning("outcomes of %s not passed to the scorer: %s", name, exc)
        return applied

    def outcome_mark(self) -> int:
        """How many outcomes the serving scorer has learned online so far: a training takes it with its snapshot
        (under :attr:`lock`), and keeps only the newer ones when it is installed."""
        scorer = self.state.scorer
        return scorer.online.seq if scorer is not None else 0

    @staticmethod
    def _query_texts(
        store: GraphStore, scorer: Scorer, new: dict[str, tuple[str, str]], ids: list[str]
    ) -> dict[str, tuple[str, str]]:
        """(text, task) of those queries ``ids`` that the scorer's router was not trained on: from ``new`` (the
        batch just written), else from the store (a query added by an earlier post or by another replica)."""
        unknown = scorer.unknown_queries(ids)
        stored = store.get_nodes(QUERY, [qid for qid in unknown if qid not in new])  # one read, not one per query
        out = {qid: new[qid] for qid in unknown if qid in new}
        out.update({qid: (node.text, node.task) for qid, node in stored.items() if isinstance(node, Query)})
        return out
