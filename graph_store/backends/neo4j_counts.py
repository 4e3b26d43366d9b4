"""The Neo4j backend's aggregate reads (counts, and the query ids a candidate answered): a mixin of
:class:`~graph_store.backends.neo4j_store.Neo4jStore`. Each is one statement that returns numbers or keys, anchored
on a key index where it has one, never the rows it counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import neo4j

from graph_store.backends import neo4j_queries as cypher
from graph_store.backends.neo4j_translate import translate_errors


class Neo4jCounts:
    """The aggregate reads of :class:`~graph_store.backends.neo4j_store.Neo4jStore`."""

    if TYPE_CHECKING:  # provided by Neo4jStore

        def _read(self, statement: str, **params: Any) -> list[neo4j.Record]: ...

        def _session(self) -> neo4j.Session: ...

    @translate_errors
    def _answered(self, kind: str, target: str) -> list[str]:
        return [r["query_id"] for r in self._read(cypher.ANSWERED_BY_TARGET[kind], target=target)]

    @translate_errors
    def _outcome_counts(self, kind: str, target: str | None) -> dict[str, int]:
        if target is None:
            records = self._read(cypher.OUTCOME_COUNTS[kind])
        else:
            records = self._read(cypher.OUTCOME_COUNTS_OF[kind], target=target)
        return {r["target"]: int(r["n"]) for r in records}

    @translate_errors
    def _queries_in_task(self, task: str) -> int:
        return int(self._read(cypher.COUNT_QUERIES_IN_TASK, task=task)[0]["n"])

    @translate_errors
    def _count_nodes(self, label: str) -> int:
        return int(self._read(cypher.COUNT_NODES[label])[0]["n"])

    @translate_errors
    def _counts(self) -> dict[str, int]:
        def work(tx: neo4j.ManagedTransaction) -> dict[str, int]:
            out = {label: int(tx.run(s).single(strict=True)["n"]) for label, s in cypher.COUNT_NODES.items()}
            out.update({rel: int(tx.run(s).single(strict=True)["n"]) for rel, s in cypher.COUNT_EDGES.items()})
            return out

        with self._session() as session:
            return session.execute_read(work)
