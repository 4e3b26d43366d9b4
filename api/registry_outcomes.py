"""Posted outcomes reaching the serving scorer: a mixin of :class:`~api.registry.CandidateRegistry`.

Every outcome the service takes — ``POST /v1/outcomes`` (:meth:`RegistryOutcomes.post_outcomes`: checked, then
written to the store with its change record by :meth:`RegistryOutcomes.record_outcomes`), the proxy's feedback
(``GraphStore.complete_pending`` writes the edge with the change record :meth:`RegistryOutcomes.outcomes_change`
makes, then :meth:`RegistryOutcomes.pass_outcomes`) and
other replicas' changes (:meth:`RegistryOutcomes.pass_outcomes`, from api/replication.py) — is passed to the serving
scorer per routable candidate, with the text and task of the queries its router was not trained on, so the scorer
learns it at once (:meth:`Scorer.add_outcomes`).
:meth:`RegistryOutcomes.outcome_mark` is how many it learned so far: a training keeps only the newer ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from api.models import ObservedOutcome
from api.outcome_rows import outcome_batch
from graph_store import GraphBatch, GraphStore, Outcome
from graph_store.changes import OUTCOMES, Change
from graphrouter.outcome_feed import gather, give, outcome_rows

if TYPE_CHECKING:
    import threading

    from api.state import ServiceState


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

    def outcomes_change(self, *outcomes: Outcome) -> Change:
        """The change record of outcomes, for the other replicas to learn them (written with them: the proxy's
        feedback gives it to ``GraphStore.complete_pending``)."""
        return self.change(OUTCOMES, payload={"rows": outcome_rows(list(outcomes))})

    def pass_outcomes(self, rows: list[list[Any]], new_queries: dict[str, tuple[str, str]] | None = None) -> int:
        """Pass outcome rows [query_id, target, effect, cost] to the serving scorer, per routable candidate, with
        the (text, task) of queries its router was not trained on (from ``new_queries``, else the store)."""
        scorer = self.state.scorer
        if scorer is None:
            return 0
        # the store reads outside the lock
        by_candidate, queries = gather(scorer, rows, new_queries or {}, self.state.get_store())
        try:
            with self.state.lock.write():
                return give(scorer, by_candidate, queries, settle=False)
        finally:
            with self.state.lock.read():  # a refit's corrections measured again (seconds at 100k): routes go on
                scorer.settle()

    def outcome_mark(self) -> int:
        """How many outcomes the serving scorer has learned online so far: a training takes it with its snapshot
        (under :attr:`lock`), and keeps only the newer ones when it is installed."""
        scorer = self.state.scorer
        return scorer.online.seq if scorer is not None else 0
