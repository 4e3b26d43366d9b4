"""The Neo4j backend's change log (see :mod:`graph_store.changes`): a mixin of :class:`Neo4jStore`.

One ``(:Change)`` node per change, its version taken from the one ``(:ChangeCounter)`` node, incremented in the
transaction of the change. The counter also holds ``pruned``: the highest version dropped from the log by pruning or
``clear()``. Pruning raises it first (one small transaction), then deletes the records at or below it in batches, so
a prune interrupted half-way leaves only records no read returns; the next prune deletes them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import neo4j
from neo4j import exceptions as neo4j_errors

from graph_store.backends import neo4j_queries as cypher
from graph_store.backends.neo4j_translate import translate_errors
from graph_store.changes import Change, from_row, now
from graph_store.errors import GraphStoreError

VERSION_RACE_ATTEMPTS = 8  # tries of a logged write whose change version another writer took at the same moment


class Neo4jChangeLog:
    """The change-log methods of :class:`~graph_store.backends.neo4j_store.Neo4jStore`."""

    if TYPE_CHECKING:  # provided by Neo4jStore
        _batch_size: int

        def _session(self) -> neo4j.Session: ...
        def _read(self, statement: str, **params: Any) -> list[neo4j.Record]: ...

    def _execute_logged(self, work: Callable[[neo4j.ManagedTransaction], Any]) -> Any:
        """``work`` in one write transaction, run again if its change record lost its version to another writer's.
        Neo4j orders writers on the counter's lock; a server that checks the version's uniqueness before it sees the
        two updates of the counter conflict (ArcadeDB, when fresh clients race to their first writes) refuses one
        with a constraint error, which is a lost race, not a bad write: the next attempt takes the next version."""
        for attempt in range(VERSION_RACE_ATTEMPTS):
            try:
                with self._session() as session:
                    return session.execute_write(work)
            except neo4j_errors.ConstraintError as exc:
                lost_race = cypher.CHANGE in str(exc) and "version" in str(exc)
                if not lost_race or attempt == VERSION_RACE_ATTEMPTS - 1:
                    raise
                time.sleep(0.005 * (attempt + 1) * (1 + random.random()))  # staggered: not in step again
        raise AssertionError("unreachable")

    @staticmethod
    def _log(tx: neo4j.ManagedTransaction, change: Change | None) -> None:
        """Append the change record in the caller's transaction."""
        if change is None:
            return
        record = tx.run(
            cypher.APPEND_CHANGE,
            counter=cypher.COUNTER_NAME,
            kind=change.kind,
            key=change.key,
            payload=change.payload_json(),
            origin=change.origin,
            at=now(),
        ).single()
        if record is None:
            raise GraphStoreError("the change counter is missing; the transaction was rolled back")

    @translate_errors
    def _changes_since(self, version: int, limit: int) -> tuple[list[Change], int]:
        def work(tx: neo4j.ManagedTransaction) -> tuple[list[neo4j.Record], int]:
            # the changes first, the mark after: a prune that removed some of them before they were read has
            # committed its (earlier) mark by then, so it is seen
            records = list(tx.run(cypher.CHANGES_SINCE, version=version, limit=limit))
            marks = list(tx.run(cypher.PRUNED_THROUGH, counter=cypher.COUNTER_NAME))
            return records, int(marks[0]["pruned"]) if marks else 0

        with self._session() as session:
            records, pruned = session.execute_read(work)
        changes = [from_row(r["version"], r["kind"], r["key"], r["payload"], r["origin"], r["at"]) for r in records]
        return changes, pruned

    @translate_errors
    def _latest_version(self) -> int:
        records = self._read(cypher.LATEST_VERSION, counter=cypher.COUNTER_NAME)
        return int(records[0]["value"]) if records else 0

    @translate_errors
    def _pruned_through(self) -> int:
        records = self._read(cypher.PRUNED_THROUGH, counter=cypher.COUNTER_NAME)
        return int(records[0]["pruned"]) if records else 0

    @translate_errors
    def _first_version_since(self, at: str) -> int | None:
        records = self._read(cypher.FIRST_VERSION_SINCE, at=at)
        value = records[0]["version"] if records else None
        return None if value is None else int(value)

    @translate_errors
    def _prune_changes(self, through: int) -> int:
        return self._raise_mark_and_delete(cypher.RAISE_PRUNED, through=through)

    def _mark_log_cleared(self) -> None:
        """``clear()``: every change so far counts as pruned (a follower behind the latest version resyncs)."""
        self._raise_mark_and_delete(cypher.MARK_ALL_PRUNED)

    def _raise_mark_and_delete(self, statement: str, **params: Any) -> int:
        def mark(tx: neo4j.ManagedTransaction) -> int:
            records = list(tx.run(statement, counter=cypher.COUNTER_NAME, **params))
            return int(records[0]["pruned"]) if records else 0

        def delete(tx: neo4j.ManagedTransaction, pruned: int) -> int:
            return int(tx.run(cypher.DELETE_PRUNED, through=pruned, batch=self._batch_size).single(strict=True)["n"])

        removed = 0
        with self._session() as session:
            pruned = session.execute_write(mark)
            while True:
                n = session.execute_write(delete, pruned)
                removed += n
                if n == 0:
                    return removed
