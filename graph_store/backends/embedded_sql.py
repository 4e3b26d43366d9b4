"""The embedded backend's SQL (graph_store/backends/embedded.py runs it): the schema, the table and column names
per label, and the statements, values always as ``?`` parameters (as neo4j_queries.py holds the Cypher)."""

from __future__ import annotations

from graph_store.schema import (
    AGENT,
    ANSWERED_BY,
    BACKED_BY,
    HANDLED_BY,
    LLM,
    OF_TASK,
    QUERY,
    TASK,
)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS task (name TEXT PRIMARY KEY, description TEXT NOT NULL, embedding BLOB);
CREATE TABLE IF NOT EXISTS query (id TEXT PRIMARY KEY, text TEXT NOT NULL, task TEXT NOT NULL, embedding BLOB);
CREATE TABLE IF NOT EXISTS llm (
    name TEXT PRIMARY KEY, description TEXT NOT NULL, input_price REAL NOT NULL, output_price REAL NOT NULL,
    size_b REAL, embedding BLOB, base_url TEXT, upstream_model TEXT, api_key_env TEXT, priced_at TEXT);
CREATE TABLE IF NOT EXISTS agent (
    name TEXT PRIMARY KEY, llm TEXT NOT NULL, description TEXT NOT NULL, strategy TEXT NOT NULL, embedding BLOB);
CREATE TABLE IF NOT EXISTS of_task (
    query_id TEXT PRIMARY KEY REFERENCES query(id) ON DELETE CASCADE,
    task TEXT NOT NULL REFERENCES task(name) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS backed_by (
    agent TEXT PRIMARY KEY REFERENCES agent(name) ON DELETE CASCADE,
    llm TEXT NOT NULL REFERENCES llm(name) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS answered_by (
    query_id TEXT NOT NULL REFERENCES query(id) ON DELETE CASCADE,
    target TEXT NOT NULL REFERENCES llm(name) ON DELETE CASCADE,
    effect REAL NOT NULL, cost REAL NOT NULL, source TEXT NOT NULL, observed_at TEXT NOT NULL,
    PRIMARY KEY (query_id, target)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS handled_by (
    query_id TEXT NOT NULL REFERENCES query(id) ON DELETE CASCADE,
    target TEXT NOT NULL REFERENCES agent(name) ON DELETE CASCADE,
    effect REAL NOT NULL, cost REAL NOT NULL, source TEXT NOT NULL, observed_at TEXT NOT NULL,
    PRIMARY KEY (query_id, target)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_outcome (
    response_id TEXT PRIMARY KEY, kind TEXT NOT NULL,
    query_id TEXT NOT NULL REFERENCES query(id) ON DELETE CASCADE,
    llm TEXT REFERENCES llm(name) ON DELETE CASCADE,
    agent TEXT REFERENCES agent(name) ON DELETE CASCADE,
    cost REAL NOT NULL, source TEXT NOT NULL, observed_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS change_log (
    version INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL,
    origin TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS of_task_task ON of_task(task);
CREATE INDEX IF NOT EXISTS backed_by_llm ON backed_by(llm);
CREATE INDEX IF NOT EXISTS answered_by_target ON answered_by(target);
CREATE INDEX IF NOT EXISTS handled_by_target ON handled_by(target);
CREATE INDEX IF NOT EXISTS answered_by_observed_at ON answered_by(observed_at);
CREATE INDEX IF NOT EXISTS handled_by_observed_at ON handled_by(observed_at);
CREATE INDEX IF NOT EXISTS pending_outcome_observed_at ON pending_outcome(observed_at);
-- what deleting a query, LLM or agent cascades to: without these, every such delete scanned the pending table
CREATE INDEX IF NOT EXISTS pending_outcome_query ON pending_outcome(query_id);
CREATE INDEX IF NOT EXISTS pending_outcome_llm ON pending_outcome(llm);
CREATE INDEX IF NOT EXISTS pending_outcome_agent ON pending_outcome(agent);
"""

TABLE = {TASK: "task", QUERY: "query", LLM: "llm", AGENT: "agent"}
KEY = {TASK: "name", QUERY: "id", LLM: "name", AGENT: "name"}
COLUMNS = {
    TASK: ("name", "description", "embedding"),
    QUERY: ("id", "text", "task", "embedding"),
    LLM: ("name", "description", "input_price", "output_price", "size_b", "embedding")
    + ("base_url", "upstream_model", "api_key_env", "priced_at"),
    AGENT: ("name", "llm", "description", "strategy", "embedding"),
}
OUTCOME_TABLE = {LLM: "answered_by", AGENT: "handled_by"}
REL_TABLE = {OF_TASK: "of_task", BACKED_BY: "backed_by", ANSWERED_BY: "answered_by", HANDLED_BY: "handled_by"}
OUTCOME_COLUMNS = ("query_id", "target", "effect", "cost", "source", "observed_at")
# Columns added after the first version of the schema: (table, column, type), added to older files on open.
ADDED_COLUMNS = (
    ("llm", "base_url", "TEXT"),
    ("llm", "upstream_model", "TEXT"),
    ("llm", "api_key_env", "TEXT"),
    ("llm", "priced_at", "TEXT"),
)
UPSERT_PENDING = (
    "INSERT INTO pending_outcome (response_id, kind, query_id, llm, agent, cost, source, observed_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(response_id) DO UPDATE SET kind = excluded.kind, "
    "query_id = excluded.query_id, llm = excluded.llm, agent = excluded.agent, cost = excluded.cost, "
    "source = excluded.source, observed_at = excluded.observed_at"
)
INSERT_CHANGE = "INSERT INTO change_log (kind, key, payload, origin, at) VALUES (?, ?, ?, ?, ?)"
CHANGES_SINCE = (
    "SELECT version, kind, key, payload, origin, at FROM change_log WHERE version > ? ORDER BY version LIMIT ?"
)
LATEST_VERSION = "SELECT seq FROM sqlite_sequence WHERE name = 'change_log'"
PRUNED_KEY = "changes_pruned_through"
PRUNED_THROUGH = f"SELECT value FROM meta WHERE key = '{PRUNED_KEY}'"
SET_PRUNED = f"INSERT INTO meta VALUES ('{PRUNED_KEY}', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
FIRST_VERSION_SINCE = "SELECT min(version) FROM change_log WHERE at >= ?"
DELETE_PRUNED = "DELETE FROM change_log WHERE version <= ?"


def _upsert_sql(table: str, cols: tuple[str, ...], key: str | tuple[str, ...]) -> str:
    keys = (key,) if isinstance(key, str) else key
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
        f"ON CONFLICT({', '.join(keys)}) DO UPDATE SET {sets}"
    )


UPSERT_NODE = {label: _upsert_sql(TABLE[label], COLUMNS[label], KEY[label]) for label in TABLE}
UPSERT_OF_TASK = _upsert_sql("of_task", ("query_id", "task"), "query_id")
COUNT_QUERIES_IN_TASK = "SELECT count(*) FROM of_task WHERE task = ?"  # of_task_task's index
UPSERT_BACKED_BY = _upsert_sql("backed_by", ("agent", "llm"), "agent")
UPSERT_OUTCOME = {
    kind: _upsert_sql(table, OUTCOME_COLUMNS, ("query_id", "target")) for kind, table in OUTCOME_TABLE.items()
}


# The outcome edges a node's deletion takes with it (counted in the delete's transaction): an LLM's or agent's
# own, or every candidate's on a query; a task has none.
COUNT_OUTCOMES_OF: dict[str, list[str]] = {
    **{kind: [f"SELECT COUNT(*) FROM {table} WHERE target = ?"] for kind, table in OUTCOME_TABLE.items()},
    QUERY: [f"SELECT COUNT(*) FROM {table} WHERE query_id = ?" for table in OUTCOME_TABLE.values()],
    TASK: [],
}

PRUNE_PENDING = (
    "DELETE FROM pending_outcome WHERE response_id IN (SELECT response_id FROM pending_outcome "
    "WHERE observed_at <> '' AND observed_at < ? LIMIT ?)"
)
PRUNE_PENDING_BATCH = 5000
SELECT_PENDING = "SELECT response_id, kind, query_id, llm, agent, cost, source, observed_at FROM pending_outcome"
