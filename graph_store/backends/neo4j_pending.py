"""The Neo4j backend's pending outcomes: a mixin of :class:`Neo4jStore`.

A call the proxy forwarded waits for its effect as an ``(:Query)-[:AWAITS_FEEDBACK]->(:LLM)`` edge keyed by its
response id (see :mod:`neo4j_queries`); feedback completes it into an outcome edge, and the followers drop the ones
whose feedback never came, in batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import neo4j

from graph_store.backends import neo4j_queries as cypher
from graph_store.backends.neo4j_translate import translate_errors
from graph_store.changes import Change
from graph_store.schema import OUTCOME_REL, Outcome, PendingOutcome


class Neo4jPending:
    """The pending-outcome methods of :class:`~graph_store.backends.neo4j_store.Neo4jStore`."""

    if TYPE_CHECKING:  # provided by Neo4jStore
        _batch_size: int

        def _session(self) -> neo4j.Session: ...
        def _read(self, statement: str, **params: Any) -> list[neo4j.Record]: ...
        def _ensure_constraints(self) -> None: ...
        def _execute_logged(self, work: Callable[[neo4j.ManagedTransaction], Any]) -> Any: ...
        @staticmethod
        def _log(tx: neo4j.ManagedTransaction, change: Change | None) -> None: ...

    @translate_errors
    def _get_pending(self, response_id: str) -> PendingOutcome | None:
        for kind in OUTCOME_REL:
            records = self._read(cypher.GET_PENDING[kind], response_id=response_id)
            if records:
                r = records[0]
                return PendingOutcome(
                    response_id,
                    r["query_id"],
                    r["target"],
                    r["cost"],
                    kind=kind,  # type: ignore[arg-type]
                    source=r["source"] or "",
                    observed_at=r["observed_at"] or "",
                )
        return None

    @translate_errors
    def _complete_pending(self, response_id: str, outcome: Outcome, change: Change | None) -> bool:
        def work(tx: neo4j.ManagedTransaction) -> int:
            record = tx.run(
                cypher.COMPLETE_PENDING[outcome.kind],
                response_id=response_id,
                effect=outcome.effect,
                cost=outcome.cost,
                source=outcome.source,
                observed_at=outcome.observed_at,
            ).single(strict=True)
            completed = int(record["completed"])
            if completed:
                self._log(tx, change)
            return completed

        if change is not None:
            self._ensure_constraints()
        return self._execute_logged(work) > 0

    @translate_errors
    def _prune_pending(self, before: str) -> int:
        def work(tx: neo4j.ManagedTransaction) -> int:
            return int(
                tx.run(cypher.PRUNE_PENDING, before=before, batch=self._batch_size).single(strict=True)["deleted"]
            )

        removed = 0
        with self._session() as session:  # in batches: a first expiry may face a long backlog
            while n := session.execute_write(work):
                removed += n
        return removed
