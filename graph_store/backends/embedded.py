"""The embedded backend (the default): one SQLite file, no server.

Durability: WAL journal with ``synchronous=FULL``, so a write that returned has reached the disk and survives
``kill -9``. Concurrency: one connection guarded by a lock; every public operation is one transaction, so
concurrent readers and writers inside one process see whole batches or nothing. Several processes on one host may
share the file (the WAL lets readers run beside the one writer; a writer waits up to 30 s for another's
transaction), as ``graphrouter serve --workers N`` does. The change log (see :mod:`graph_store.changes`) is a table
with an AUTOINCREMENT version, written in the transaction of the change; ``sqlite_sequence`` keeps versions from
being reused after ``clear()``; the highest version pruned from it is the ``meta`` row ``changes_pruned_through``.
A store written before the log existed gets the (empty) table when opened.
Relationships live in their own tables with foreign keys (``ON DELETE CASCADE``), so deleting a node removes its
edges and a dangling reference aborts the whole batch.

Schema changes are additive (the version stays 1 and older code still reads a newer file): columns added since the
first version (an LLM's upstream: ``base_url``, ``upstream_model``, ``api_key_env``) are added to an older file when
it is opened, and new tables (``pending_outcome``) are created if missing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from graph_store.backends.embedded_sql import (
    ADDED_COLUMNS,
    CHANGES_SINCE,
    COLUMNS,
    COUNT_OUTCOMES_OF,
    COUNT_QUERIES_IN_TASK,
    DELETE_PRUNED,
    FIRST_VERSION_SINCE,
    INSERT_CHANGE,
    KEY,
    LATEST_VERSION,
    OUTCOME_COLUMNS,
    OUTCOME_TABLE,
    PRUNE_PENDING,
    PRUNE_PENDING_BATCH,
    PRUNED_THROUGH,
    REL_TABLE,
    SCHEMA,
    SCHEMA_VERSION,
    SELECT_PENDING,
    SET_PRUNED,
    TABLE,
    UPSERT_BACKED_BY,
    UPSERT_NODE,
    UPSERT_OF_TASK,
    UPSERT_OUTCOME,
    UPSERT_PENDING,
)
from graph_store.base import EdgeRows, GraphStore, NodeRows, claimed_meanwhile
from graph_store.changes import Change, from_row, now
from graph_store.errors import InvalidInputError, NodeNotFoundError, StoreUnavailableError
from graph_store.schema import (
    AGENT,
    ANSWERED_BY,
    BACKED_BY,
    HANDLED_BY,
    LLM,
    OF_TASK,
    QUERY,
    TASK,
    Agent,
    GraphBatch,
    LLMNode,
    NodeRecord,
    Outcome,
    PendingOutcome,
    Query,
    Task,
)

RECORD = {TASK: Task, QUERY: Query, LLM: LLMNode, AGENT: Agent}


def _blob(vec: tuple[float, ...] | None) -> bytes | None:
    return None if vec is None else np.asarray(vec, dtype="<f8").tobytes()


def _unblob(blob: bytes | None) -> list[float] | None:
    return None if blob is None else np.frombuffer(blob, dtype="<f8").tolist()


def _row_values(label: str, node: Any) -> tuple[Any, ...]:
    return tuple(_blob(node.embedding) if c == "embedding" else getattr(node, c) for c in COLUMNS[label])


def _pending_row(p: PendingOutcome) -> tuple[Any, ...]:
    llm, agent = (p.target, None) if p.kind == LLM else (None, p.target)
    return (p.response_id, p.kind, p.query_id, llm, agent, p.cost, p.source, p.observed_at)


def _pending_record(row: tuple[Any, ...]) -> PendingOutcome:
    response_id, kind, query_id, llm, agent, cost, source, observed_at = row
    return PendingOutcome(response_id, query_id, llm if kind == LLM else agent, cost, kind, source, observed_at)


def _record(label: str, row: tuple[Any, ...]) -> NodeRecord:
    props = dict(zip(COLUMNS[label], row, strict=True))
    props["embedding"] = _unblob(props["embedding"])
    return RECORD[label](**props)


class EmbeddedStore(GraphStore):
    """The graph in one SQLite file at ``path`` (its folder is created if needed)."""

    backend = "embedded"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidInputError(f"store path {self.path} is a directory; give a file path such as graph.db")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(SCHEMA)  # creates what is missing; an older file keeps its tables as they are
            self._add_columns()  # ... and gets the columns added since
            version = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailableError(f"cannot open the embedded store {self.path}: {exc}") from exc
        if version is None:
            self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(version[0]) != SCHEMA_VERSION:
            raise StoreUnavailableError(
                f"{self.path} has schema version {version[0]}, this code reads version {SCHEMA_VERSION}"
            )
        self._lock = threading.RLock()
        self._closed = False
        self._where = self.path.resolve()
        self._identity = self._file_identity()  # the file opened: removed or replaced later, a call says so

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.path)!r})"

    def _add_columns(self) -> None:
        for table, column, sql_type in ADDED_COLUMNS:
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")

    # ---- plumbing -----------------------------------------------------------------------------------------
    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._where)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise StoreUnavailableError(f"the embedded store {self.path} is closed")
            if self._file_identity() != self._identity:  # else writes land in a file no later open finds
                raise StoreUnavailableError(
                    f"the embedded store {self.path} was removed or replaced since it was opened; restart to open "
                    "what is there now"
                )
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield self._conn
                except BaseException:
                    if self._conn.in_transaction:  # SQLite may have rolled back already (a full disk): keep its error
                        self._conn.execute("ROLLBACK")
                    raise
                else:
                    self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # locked, read-only, disk full or I/O error: any call, a 503
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreUnavailableError(f"embedded store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    # ---- writes -------------------------------------------------------------------------------------------
    @staticmethod
    def _log(db: sqlite3.Connection, change: Change | None) -> None:
        if change is not None:
            db.execute(INSERT_CHANGE, (change.kind, change.key, change.payload_json(), change.origin, now()))

    def _write(self, batch: GraphBatch, change: Change | None, new: list[tuple[str, str]]) -> None:
        try:
            with self._tx(write=True) as db:  # BEGIN IMMEDIATE: no other writer until it ends
                for label, key in new:
                    if db.execute(f"SELECT 1 FROM {TABLE[label]} WHERE {KEY[label]} = ?", (key,)).fetchone():
                        raise claimed_meanwhile([(label, key)])
                for label in (TASK, LLM, QUERY, AGENT):
                    nodes = batch.nodes(label)
                    if nodes:
                        db.executemany(UPSERT_NODE[label], (_row_values(label, n) for n in nodes))
                if batch.queries:
                    db.executemany(UPSERT_OF_TASK, ((q.id, q.task) for q in batch.queries))
                if batch.agents:
                    db.executemany(UPSERT_BACKED_BY, ((a.name, a.llm) for a in batch.agents))
                for kind in (LLM, AGENT):
                    rows = [
                        (o.query_id, o.target, o.effect, o.cost, o.source, o.observed_at)
                        for o in batch.outcomes
                        if o.kind == kind
                    ]
                    if rows:
                        db.executemany(UPSERT_OUTCOME[kind], rows)
                if batch.pending:
                    db.executemany(UPSERT_PENDING, (_pending_row(p) for p in batch.pending))
                self._log(db, change)
        except sqlite3.IntegrityError as exc:
            raise NodeNotFoundError(self._dangling(batch) or f"the batch refers to a missing node ({exc})") from None
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"embedded store {self.path}: {exc}") from exc

    def _missing(self, label: str, keys: Iterable[str]) -> list[str]:
        wanted = sorted(set(keys))
        with self._tx() as db:
            have = {r[0] for r in db.execute(f"SELECT {KEY[label]} FROM {TABLE[label]}")}
        return [k for k in wanted if k not in have]

    def _dangling(self, batch: GraphBatch) -> str | None:
        """Name the first reference the batch makes to a node that is neither stored nor in the batch."""
        checks = [
            (TASK, "query's task", [q.task for q in batch.queries]),
            (LLM, "agent's LLM", [a.llm for a in batch.agents]),
            (QUERY, "outcome's query", [o.query_id for o in batch.outcomes]),
            (LLM, "outcome's LLM", [o.target for o in batch.outcomes if o.kind == LLM]),
            (AGENT, "outcome's agent", [o.target for o in batch.outcomes if o.kind == AGENT]),
            (QUERY, "pending outcome's query", [p.query_id for p in batch.pending]),
            (LLM, "pending outcome's LLM", [p.target for p in batch.pending if p.kind == LLM]),
            (AGENT, "pending outcome's agent", [p.target for p in batch.pending if p.kind == AGENT]),
        ]
        for label, what, keys in checks:
            in_batch = {n.key for n in batch.nodes(label)}
            missing = [k for k in self._missing(label, keys) if k not in in_batch]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                return f"{what} {missing[0]!r} is not a stored {label}{more}; nothing was written"
        return None

    def _delete_node(self, label: str, key: str, change: Change | None) -> int | None:
        with self._tx(write=True) as db:
            outcomes = sum(int(db.execute(sql, (key,)).fetchone()[0]) for sql in COUNT_OUTCOMES_OF[label])
            cur = db.execute(f"DELETE FROM {TABLE[label]} WHERE {KEY[label]} = ?", (key,))
            if cur.rowcount == 0:
                return None
            self._log(db, change)
            return outcomes

    def _clear(self) -> None:
        with self._tx(write=True) as db:
            for table in ("pending_outcome", *REL_TABLE.values(), *TABLE.values(), "change_log"):
                db.execute(f"DELETE FROM {table}")
            db.execute(SET_PRUNED, (str(self._latest(db)),))

    # ---- reads --------------------------------------------------------------------------------------------
    def _get_node(self, label: str, key: str) -> NodeRecord | None:
        cols = ", ".join(COLUMNS[label])
        with self._tx() as db:
            row = db.execute(f"SELECT {cols} FROM {TABLE[label]} WHERE {KEY[label]} = ?", (key,)).fetchone()
        return None if row is None else _record(label, row)

    def _get_nodes(self, label: str, keys: list[str]) -> dict[str, NodeRecord]:
        cols = ", ".join(COLUMNS[label])
        marks = ", ".join("?" * len(keys))
        with self._tx() as db:
            rows = db.execute(f"SELECT {cols} FROM {TABLE[label]} WHERE {KEY[label]} IN ({marks})", keys).fetchall()
        return {node.key: node for node in (_record(label, r) for r in rows)}

    def _list_nodes(self, label: str, limit: int | None, offset: int) -> list[NodeRecord]:
        cols = ", ".join(COLUMNS[label])
        sql = f"SELECT {cols} FROM {TABLE[label]} ORDER BY {KEY[label]} LIMIT ? OFFSET ?"
        with self._tx() as db:
            rows = db.execute(sql, (-1 if limit is None else limit, offset)).fetchall()
        return [_record(label, r) for r in rows]

    def _outcomes(
        self, kind: str, target: str | None, query_id: str | None, observed_since: str | None = None
    ) -> list[Outcome]:
        table = OUTCOME_TABLE[kind]
        by_time = f" INDEXED BY {table}_observed_at" if observed_since is not None else ""  # not a scan in key order
        sql = f"SELECT {', '.join(OUTCOME_COLUMNS)} FROM {table}{by_time} WHERE 1=1"
        args: list[str] = []
        if observed_since is not None:
            sql += " AND observed_at >= ?"  # (an untimed outcome's "" sorts before every time)
            args.append(observed_since)
        if target is not None:
            sql += " AND target = ?"
            args.append(target)
        if query_id is not None:
            sql += " AND query_id = ?"
            args.append(query_id)
        with self._tx() as db:
            rows = db.execute(sql + " ORDER BY query_id, target", args).fetchall()
        return [Outcome(q, t, e, c, kind=kind, source=s, observed_at=at) for q, t, e, c, s, at in rows]  # type: ignore[arg-type]

    def _answered(self, kind: str, target: str) -> list[str]:
        with self._tx() as db:  # the target index
            rows = db.execute(
                f"SELECT query_id FROM {OUTCOME_TABLE[kind]} WHERE target = ? ORDER BY query_id", (target,)
            )
            return [q for (q,) in rows.fetchall()]

    def _get_pending(self, response_id: str) -> PendingOutcome | None:
        with self._tx() as db:
            row = db.execute(f"{SELECT_PENDING} WHERE response_id = ?", (response_id,)).fetchone()
        return None if row is None else _pending_record(row)

    def _complete_pending(self, response_id: str, outcome: Outcome, change: Change | None) -> bool:
        try:
            with self._tx(write=True) as db:
                if db.execute("DELETE FROM pending_outcome WHERE response_id = ?", (response_id,)).rowcount == 0:
                    return False
                o = outcome
                db.execute(UPSERT_OUTCOME[o.kind], (o.query_id, o.target, o.effect, o.cost, o.source, o.observed_at))
                self._log(db, change)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"embedded store {self.path}: {exc}") from exc
        return True

    def _prune_pending(self, before: str) -> int:
        removed = 0
        try:
            while True:  # in batches, each its own short write transaction: the proxy's writes wait for one only
                with self._tx(write=True) as db:
                    n = db.execute(PRUNE_PENDING, (before, PRUNE_PENDING_BATCH)).rowcount
                removed += n
                if n < PRUNE_PENDING_BATCH:
                    return removed
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"embedded store {self.path}: {exc}") from exc

    def _outcome_counts(self, kind: str, target: str | None) -> dict[str, int]:
        table = OUTCOME_TABLE[kind]
        with self._tx() as db:
            if target is None:
                rows = db.execute(f"SELECT target, count(*) FROM {table} GROUP BY target").fetchall()
            else:  # the target index
                rows = db.execute(
                    f"SELECT target, count(*) FROM {table} WHERE target = ? GROUP BY target", (target,)
                ).fetchall()
        return dict(rows)

    def _queries_in_task(self, task: str) -> int:
        with self._tx() as db:
            return db.execute(COUNT_QUERIES_IN_TASK, (task,)).fetchone()[0]

    def _count_nodes(self, label: str) -> int:
        with self._tx() as db:
            return db.execute(f"SELECT count(*) FROM {TABLE[label]}").fetchone()[0]

    def _counts(self) -> dict[str, int]:
        with self._tx() as db:
            out = {label: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for label, t in TABLE.items()}
            out.update({rel: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for rel, t in REL_TABLE.items()})
        return out

    def _snapshot_rows(self) -> tuple[NodeRows, EdgeRows]:
        nodes: NodeRows = {}
        edges: EdgeRows = {}
        with self._tx() as db:
            for label in TABLE:
                cols = COLUMNS[label]
                rows = db.execute(f"SELECT {', '.join(cols)} FROM {TABLE[label]}").fetchall()
                dicts = []
                for row in rows:
                    d = dict(zip(cols, row, strict=True))
                    d["key"] = d[KEY[label]]
                    d["embedding"] = None if d["embedding"] is None else np.frombuffer(d["embedding"], "<f8")
                    dicts.append(d)
                nodes[label] = dicts
            for (src, dst), (etype, table) in {
                ("query_id", "task"): ((QUERY, OF_TASK, TASK), "of_task"),
                ("agent", "llm"): ((AGENT, BACKED_BY, LLM), "backed_by"),
            }.items():
                rows = db.execute(f"SELECT {src}, {dst} FROM {table}").fetchall()
                edges[etype] = ([r[0] for r in rows], [r[1] for r in rows], {})
            for kind, rel in ((LLM, ANSWERED_BY), (AGENT, HANDLED_BY)):
                table = OUTCOME_TABLE[kind]
                rows = db.execute(f"SELECT query_id, target, effect, cost, observed_at FROM {table}").fetchall()
                cols = list(zip(*rows, strict=True)) if rows else [[], [], [], [], []]
                edges[(QUERY, rel, kind)] = (
                    list(cols[0]),
                    list(cols[1]),
                    {"effect": list(cols[2]), "cost": list(cols[3]), "observed_at": list(cols[4])},
                )
        return nodes, edges

    def _ping(self) -> None:
        with self._tx() as db:
            db.execute("SELECT 1").fetchone()

    def _changes_since(self, version: int, limit: int) -> tuple[list[Change], int]:
        with self._tx() as db:  # one snapshot: the changes and the pruning mark agree
            rows = db.execute(CHANGES_SINCE, (version, limit)).fetchall()
            pruned = self._pruned(db)
        return [from_row(*row) for row in rows], pruned

    @staticmethod
    def _latest(db: sqlite3.Connection) -> int:
        row = db.execute(LATEST_VERSION).fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _pruned(db: sqlite3.Connection) -> int:
        row = db.execute(PRUNED_THROUGH).fetchone()
        return 0 if row is None else int(row[0])

    def _latest_version(self) -> int:
        with self._tx() as db:
            return self._latest(db)

    def _pruned_through(self) -> int:
        with self._tx() as db:
            return self._pruned(db)

    def _first_version_since(self, at: str) -> int | None:
        with self._tx() as db:
            row = db.execute(FIRST_VERSION_SINCE, (at,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _prune_changes(self, through: int) -> int:
        try:
            with self._tx(write=True) as db:
                pruned = self._pruned(db)
                if through > pruned:
                    db.execute(SET_PRUNED, (str(through),))
                    pruned = through
                return db.execute(DELETE_PRUNED, (pruned,)).rowcount
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"embedded store {self.path}: {exc}") from exc
