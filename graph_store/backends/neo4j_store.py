"""The Neo4j backend: the graph of record in a Neo4j 5 database, over Bolt with the official driver.

In the style of ``neo4j-graphrag-python``: the caller passes in a ``neo4j.Driver`` (or :meth:`Neo4jStore.from_env`
builds one from ``NEO4J_URI`` / ``NEO4J_USER`` / ``NEO4J_PASSWORD`` / ``NEO4J_DATABASE``). Every Cypher statement
is a named constant in :mod:`graph_store.backends.neo4j_queries` (values only as ``$parameters``); bulk writes are
``UNWIND $rows AS row`` in batches of ``batch_size`` rows (and at most ``max_batch_bytes`` of parameters);
uniqueness constraints on the node keys are created on first use, before any ``MERGE``. The change log (see
:mod:`graph_store.changes`) is one ``:Change`` node per change, versioned by a ``:ChangeCounter`` node incremented in
the transaction of the change; its methods (reading, pruning) are in :mod:`graph_store.backends.neo4j_changelog`,
the translation of driver errors in :mod:`graph_store.backends.neo4j_translate`.

A :class:`~graph_store.schema.GraphBatch` is written in one managed write transaction (retried by the driver on
transient errors), so it lands entirely or not at all. A dangling reference (a query's task, an agent's LLM, an
outcome's query or target that is neither stored nor in the batch) raises :class:`NodeNotFoundError` inside the
transaction, which rolls it back.

The driver is thread-safe; every operation opens its own session. Driver and server errors are translated:
an unreachable server is :class:`StoreUnavailableError`, a constraint violation :class:`ConflictError`, anything
else the server rejects :class:`GraphStoreError`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import neo4j
from neo4j import exceptions as neo4j_errors

from graph_store.backends import neo4j_queries as cypher
from graph_store.backends import neo4j_rows
from graph_store.backends.neo4j_changelog import Neo4jChangeLog
from graph_store.backends.neo4j_counts import Neo4jCounts
from graph_store.backends.neo4j_pending import Neo4jPending
from graph_store.backends.neo4j_ping import Neo4jPing
from graph_store.backends.neo4j_translate import translate_errors
from graph_store.base import EdgeRows, GraphStore, NodeRows, claimed_meanwhile
from graph_store.changes import Change
from graph_store.errors import GraphStoreError, InvalidInputError, NodeNotFoundError, StoreUnavailableError
from graph_store.location import DEFAULT_TIMEOUT_S, REDACTED, TIMEOUT_ENV, parse_bolt_location, redact, store_timeout
from graph_store.schema import (
    AGENT,
    LLM,
    NODE_KEY,
    OUTCOME_REL,
    QUERY,
    TASK,
    GraphBatch,
    NodeRecord,
    Outcome,
    node_from_props,
    node_props,
)

DEFAULT_URI = "bolt://localhost:7687"
DEFAULT_USER = "neo4j"
DEFAULT_BATCH_SIZE = 5000
# A batch is also cut before its parameters pass this many bytes: 5,000 queries with 384-float embeddings are
# about 17 MB, and ArcadeDB's Bolt server refuses messages over 16 MiB (and then never answers the client).
DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024


log = logging.getLogger("graph_store")


class Neo4jStore(Neo4jChangeLog, Neo4jCounts, Neo4jPending, Neo4jPing, GraphStore):
    """The graph of record in Neo4j 5 (or anything speaking its Bolt protocol and Cypher, e.g. ArcadeDB)."""

    backend = "neo4j"

    def __init__(
        self,
        driver: neo4j.Driver,
        database: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        owns_driver: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
        location: str | None = None,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("max_batch_bytes", max_batch_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        self._max_batch_bytes = max_batch_bytes
        self._driver = driver
        self._database = database or None
        self._batch_size = batch_size
        self._owns_driver = owns_driver  # close() closes the driver only if the store owns it
        self._closed = False
        self._constraints_ready = False
        self._constraints_lock = threading.Lock()
        self._timeout = store_timeout(timeout)  # the fail-fast window after an outage error
        self._down_until = 0.0
        self._init_ping()
        self._location = redact(location) if location else None
        self._where = self._location or "the driver's address"
        self._secret = ""  # a password to scrub from error messages (set by from_env)

    @classmethod
    def from_env(cls, uri: str | None = None) -> Neo4jStore:
        """A store on a driver built from a location and the environment; the store owns the driver and closes it.

        The location is ``uri`` (else ``NEO4J_URI``, else ``bolt://localhost:7687``), of the form
        ``scheme://[user[:password]@]host[:port][/database][?timeout=SECONDS]``; user, password and database
        default to ``NEO4J_USER`` (else ``neo4j``), ``NEO4J_PASSWORD`` and ``NEO4J_DATABASE`` (else the server's
        default database), the timeout to ``GRAPHROUTER_STORE_TIMEOUT`` (else 2 s; see ``DEFAULT_TIMEOUT_S``).
        The driver gets the timeout as its ``connection_timeout``, ``connection_acquisition_timeout`` and
        ``max_transaction_retry_time``. The password never appears in the store's repr or error messages.
        """
        location = uri or os.environ.get("NEO4J_URI") or DEFAULT_URI
        driver_uri, user, password, database, timeout = parse_bolt_location(location)
        user = user or os.environ.get("NEO4J_USER") or DEFAULT_USER
        password = password if password is not None else os.environ.get("NEO4J_PASSWORD", "")
        database = database or os.environ.get("NEO4J_DATABASE") or None
        seconds = store_timeout(timeout if timeout is not None else os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
        try:
            driver = neo4j.GraphDatabase.driver(
                driver_uri,
                auth=(user, password),
                connection_timeout=seconds,
                connection_acquisition_timeout=seconds,
                max_transaction_retry_time=seconds,
            )
        except (neo4j_errors.ConfigurationError, ValueError) as exc:
            message = f"invalid Neo4j URI {redact(location)!r}: {exc}"
            raise InvalidInputError(message.replace(password, REDACTED) if password else message) from None
        store = cls(driver, database=database, owns_driver=True, timeout=seconds, location=location)
        store._secret = password
        return store

    @property
    def driver(self) -> neo4j.Driver:
        return self._driver

    @property
    def database(self) -> str | None:
        return self._database

    @property
    def timeout(self) -> float:
        return self._timeout

    def __repr__(self) -> str:
        where = f"{self._location!r}, " if self._location else ""
        return f"Neo4jStore({where}database={self._database!r}, batch_size={self._batch_size})"

    def _scrub(self, message: str) -> str:
        """The message without the password, on one line (the driver's span several)."""
        if self._secret:  # first: a password may hold the whitespace that joining the lines changes
            message = message.replace(self._secret, REDACTED)
        return " ".join(message.split())

    def _fail_fast(self) -> None:
        left = self._down_until - time.monotonic()
        if left > 0 and not self._closed:
            raise StoreUnavailableError(
                f"Neo4j at {self._where} was unreachable moments ago; not trying again for {left:.1f} s"
            )

    # ---- plumbing -------------------------------------------------------------------------------------------
    def _session(self) -> neo4j.Session:
        if self._closed:
            raise StoreUnavailableError(f"the Neo4j store at {self._where} is closed")
        # The driver's shared bookmark manager gives read-your-writes across sessions, also on a cluster.
        return self._driver.session(
            database=self._database, bookmark_manager=self._driver.execute_query_bookmark_manager
        )

    def _ensure_constraints(self) -> None:
        """Create the key uniqueness constraints (and the pending outcomes' indexes) once per store, before the
        first MERGE."""
        if self._constraints_ready:
            return
        with self._constraints_lock:
            if self._constraints_ready:
                return
            with self._session() as session:
                for statement in (*cypher.CREATE_CONSTRAINTS, *cypher.CHANGE_CONSTRAINTS, *cypher.CREATE_INDEXES):
                    try:
                        session.run(statement).consume()
                    except neo4j_errors.Neo4jError as exc:
                        # Another client creating the same constraint at the same moment can make IF NOT EXISTS
                        # report the equivalent rule instead of skipping it; the constraint exists either way.
                        if "EquivalentSchemaRuleAlreadyExists" in (exc.code or ""):
                            continue
                        if statement not in cypher.CHANGE_CONSTRAINTS:
                            raise
                        # a log written before these constraints may hold the duplicates they forbid (the race
                        # they close): the store stays usable, and says how to mend it
                        log.warning(
                            "the change log's constraint could not be created (%s): its Change or ChangeCounter "
                            "nodes hold duplicates from before it (replicas racing on a new database); until the "
                            "extra ChangeCounter nodes (keep the highest value) and repeated Change versions are "
                            "deleted, two changes may share a version",
                            self._scrub(str(exc.code or exc)),
                        )
                try:
                    session.run(cypher.INIT_CHANGE_COUNTER, counter=cypher.COUNTER_NAME).consume()
                except neo4j_errors.ConstraintError:
                    pass  # another client created the counter at the same moment: it exists
            self._constraints_ready = True

    # ---- writes ---------------------------------------------------------------------------------------------
    @translate_errors
    def _write(self, batch: GraphBatch, change: Change | None, new: list[tuple[str, str]]) -> None:
        self._ensure_constraints()
        tasks = [{"key": n.key, "props": node_props(n)} for n in neo4j_rows.last_by_key(batch.tasks)]
        llms = [{"key": n.key, "props": node_props(n)} for n in neo4j_rows.last_by_key(batch.llms)]
        queries = [{"key": n.key, "ref": n.task, "props": node_props(n)} for n in neo4j_rows.last_by_key(batch.queries)]
        agents = [{"key": n.key, "ref": n.llm, "props": node_props(n)} for n in neo4j_rows.last_by_key(batch.agents)]
        outcomes: dict[str, dict[tuple[str, str], list[Any]]] = {kind: {} for kind in OUTCOME_REL}
        for o in batch.outcomes:  # one row per (query, target), the last one winning; columns as cypher.OUTCOME_ROW
            outcomes[o.kind][(o.query_id, o.target)] = [o.query_id, o.target, o.effect, o.cost, o.source, o.observed_at]
        pending: dict[str, dict[str, list[Any]]] = {kind: {} for kind in OUTCOME_REL}
        for p in batch.pending:  # one row per response id, the last one winning; columns as cypher.PENDING_ROW
            for rows in pending.values():
                rows.pop(p.response_id, None)
            pending[p.kind][p.response_id] = [p.response_id, p.query_id, p.target, p.cost, p.source, p.observed_at]

        def work(tx: neo4j.ManagedTransaction) -> None:
            for label, key in new:
                try:
                    tx.run(cypher.CLAIM_NODE[label], key=key).consume()
                except neo4j_errors.ConstraintError:  # (Neo4j says so here; ArcadeDB at the commit, below)
                    raise claimed_meanwhile([(label, key)]) from None
            self._run_rows(tx, cypher.UPSERT_TASKS, tasks)
            self._run_rows(tx, cypher.UPSERT_LLMS, llms)
            self._run_rows(
                tx, cypher.UPSERT_QUERIES, queries, check=lambda rows: self._missing_refs(tx, QUERY, TASK, rows)
            )
            self._run_rows(
                tx, cypher.UPSERT_AGENTS, agents, check=lambda rows: self._missing_refs(tx, AGENT, LLM, rows)
            )
            for kind, rows in outcomes.items():
                self._run_rows(
                    tx,
                    cypher.UPSERT_OUTCOMES[kind],
                    list(rows.values()),
                    check=lambda rows, kind=kind: self._missing_outcome_ends(tx, kind, rows),
                    size_of=neo4j_rows.outcome_row_size,
                )
            if batch.pending:
                tx.run(cypher.DELETE_PENDING, ids=sorted({p.response_id for p in batch.pending})).consume()
            for kind, rows in pending.items():
                self._run_rows(
                    tx,
                    cypher.UPSERT_PENDING[kind],
                    list(rows.values()),
                    check=lambda rows, kind=kind: self._missing_outcome_ends(tx, kind, [r[1:] for r in rows]),
                )
            self._log(tx, change)

        try:
            self._execute_logged(work)
        except neo4j_errors.ConstraintError:
            # a claimed node that is there now was another writer's (this transaction rolled back); else it was
            # another constraint (a concurrent MERGE of a query, say): reported as such
            taken = [(label, key) for label, key in new if self._get_node(label, key) is not None]
            if not taken:
                raise
            raise claimed_meanwhile(taken) from None

    def _run_rows(
        self,
        tx: neo4j.ManagedTransaction,
        statement: str,
        rows: Sequence[Any],
        check: Callable[[Sequence[Any]], None] | None = None,
        size_of: Callable[[Any], int] = neo4j_rows.packed_size,
    ) -> None:
        """Run an ``UNWIND $rows`` statement in batches; if fewer rows were written than sent, ``check`` raises."""
        for chunk in neo4j_rows.chunks(rows, self._batch_size, self._max_batch_bytes, size_of):
            record = tx.run(statement, rows=chunk).single(strict=True)
            written = int(record["written"])
            if written != len(chunk):
                if check is not None:
                    check(chunk)  # raises NodeNotFoundError naming the missing node(s)
                raise GraphStoreError(f"wrote {written} of {len(chunk)} rows; the transaction was rolled back")

    @staticmethod
    def _existing(tx: neo4j.ManagedTransaction, label: str, keys: set[str]) -> set[str]:
        result = tx.run(cypher.EXISTING_KEYS[label], keys=sorted(keys))
        return {record["key"] for record in result}

    @classmethod
    def _missing_refs(
        cls, tx: neo4j.ManagedTransaction, label: str, ref_label: str, rows: Sequence[dict[str, Any]]
    ) -> None:
        refs = {row["ref"] for row in rows}
        missing = refs - cls._existing(tx, ref_label, refs)
        if missing:
            key = NODE_KEY[ref_label]
            examples = [
                f"{label} {row['key']!r} refers to {ref_label} {row['ref']!r}" for row in rows if row["ref"] in missing
            ][:3]
            raise NodeNotFoundError(
                f"no {ref_label} with {key} {', '.join(map(repr, sorted(missing)[:5]))}"
                f"{' …' if len(missing) > 5 else ''} ({'; '.join(examples)}); nothing was written"
            )

    @classmethod
    def _missing_outcome_ends(cls, tx: neo4j.ManagedTransaction, kind: str, rows: Sequence[list[Any]]) -> None:
        for label, column in ((QUERY, 0), (kind, 1)):
            keys = {row[column] for row in rows}
            missing = keys - cls._existing(tx, label, keys)
            if missing:
                raise NodeNotFoundError(
                    f"outcome refers to a missing {label}: no {label} with {NODE_KEY[label]} "
                    f"{', '.join(map(repr, sorted(missing)[:5]))}{' …' if len(missing) > 5 else ''}; "
                    "nothing was written"
                )

    @translate_errors
    def _delete_node(self, label: str, key: str, change: Change | None) -> int | None:
        def work(tx: neo4j.ManagedTransaction) -> int | None:
            outcomes = sum(int(tx.run(q, key=key).single(strict=True)["n"]) for q in cypher.COUNT_OUTCOMES_OF[label])
            if not int(tx.run(cypher.DELETE_NODE[label], key=key).single(strict=True)["deleted"]):
                return None
            self._log(tx, change)
            return outcomes

        if change is not None:
            self._ensure_constraints()
        return self._execute_logged(work)

    @translate_errors
    def _clear(self) -> None:
        def work(tx: neo4j.ManagedTransaction, statement: str) -> int:
            return int(tx.run(statement, batch=self._batch_size).single(strict=True)["deleted"])

        with self._session() as session:
            for statement in (*cypher.CLEAR_LABEL.values(), cypher.CLEAR_CHANGES):
                while session.execute_write(work, statement) > 0:
                    pass
        self._mark_log_cleared()

    # ---- reads ----------------------------------------------------------------------------------------------
    def _read(self, statement: str, **params: Any) -> list[neo4j.Record]:
        def work(tx: neo4j.ManagedTransaction) -> list[neo4j.Record]:
            return list(tx.run(statement, params))

        with self._session() as session:
            return session.execute_read(work)

    @translate_errors
    def _get_node(self, label: str, key: str) -> NodeRecord | None:
        records = self._read(cypher.GET_NODE[label], key=key)
        return node_from_props(label, records[0]["props"]) if records else None

    @translate_errors
    def _get_nodes(self, label: str, keys: list[str]) -> dict[str, NodeRecord]:
        records = self._read(cypher.GET_NODES[label], keys=keys)
        return {node.key: node for node in (node_from_props(label, r["props"]) for r in records)}

    @translate_errors
    def _list_nodes(self, label: str, limit: int | None, offset: int) -> list[NodeRecord]:
        if limit is None:
            records = self._read(cypher.LIST_NODES[label], offset=offset)
        else:
            records = self._read(cypher.LIST_NODES_LIMIT[label], offset=offset, limit=limit)
        return [node_from_props(label, record["props"]) for record in records]

    @translate_errors
    def _outcomes(
        self, kind: str, target: str | None, query_id: str | None, observed_since: str | None = None
    ) -> list[Outcome]:
        if observed_since is not None:  # what changed since a time, e.g. a training's snapshot (indexed by time)
            records = self._read(cypher.OUTCOMES_SINCE[kind], since=observed_since)
            return [
                o for o in self._outcome_records(kind, records)
                if (target is None or o.target == target) and (query_id is None or o.query_id == query_id)
            ]  # fmt: skip
        if query_id is not None and target is not None:
            records = self._read(cypher.OUTCOMES_BY_BOTH[kind], query_id=query_id, target=target)
        elif query_id is not None:
            records = self._read(cypher.OUTCOMES_BY_QUERY[kind], query_id=query_id)
        elif target is not None:
            records = self._read(cypher.OUTCOMES_BY_TARGET[kind], target=target)
        else:
            records = self._read(cypher.OUTCOMES_ALL[kind])
        return self._outcome_records(kind, records)

    @staticmethod
    def _outcome_records(kind: str, records: list[Any]) -> list[Outcome]:
        return [
            Outcome(
                query_id=r["query_id"],
                target=r["target"],
                effect=r["effect"],
                cost=r["cost"],
                kind=kind,  # type: ignore[arg-type]
                source=r["source"] or "",
                observed_at=r["observed_at"] or "",
            )
            for r in records
        ]

    @translate_errors
    def _snapshot_rows(self) -> tuple[NodeRows, EdgeRows]:
        def work(tx: neo4j.ManagedTransaction) -> tuple[NodeRows, EdgeRows]:
            nodes: NodeRows = {}
            for label, statement in cypher.SNAPSHOT_NODES.items():
                rows = tx.run(statement).single(strict=True)["rows"]
                key = NODE_KEY[label]
                for row in rows:
                    row["key"] = row[key]
                nodes[label] = rows
            edges: EdgeRows = {}
            for etype, statement in cypher.SNAPSHOT_EDGES.items():
                record = tx.run(statement).single(strict=True)
                attrs = {name: record[name] for name in ("effect", "cost", "observed_at") if name in record.keys()}
                edges[etype] = (record["src"], record["dst"], attrs)
            return nodes, neo4j_rows.drop_edges_to_unseen_nodes(nodes, edges)

        with self._session() as session:
            return session.execute_read(work)

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the driver if this store created it (see :meth:`from_env`); a passed-in one stays open."""
        if self._closed:
            return
        self._closed = True
        if self._owns_driver:
            self._driver.close()


__all__ = ["Neo4jStore"]
