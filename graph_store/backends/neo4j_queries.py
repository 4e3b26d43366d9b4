"""Every Cypher statement of the Neo4j backend, as named constants.

Values travel only as ``$parameters``. Labels, relationship types and key property names are formatted in from
the fixed constants of :mod:`graph_store.schema`, never from input. Statements that differ only by label or
relationship type are dicts keyed by it.
"""

from __future__ import annotations

from graph_store.schema import (
    AGENT,
    ANSWERED_BY,
    BACKED_BY,
    EDGE_TYPES,
    HANDLED_BY,
    LLM,
    NODE_KEY,
    NODE_LABELS,
    OF_TASK,
    OUTCOME_REL,
    QUERY,
    TASK,
)

# Outcome edge properties, in the order of an outcome row's columns after its two ends.
OUTCOME_PROPS: tuple[str, ...] = ("effect", "cost", "source", "observed_at")


# One uniqueness constraint per node key (Neo4j 5 syntax). They back every MERGE and key lookup with an index.
CREATE_CONSTRAINTS: tuple[str, ...] = tuple(
    f"CREATE CONSTRAINT {label.lower()}_{NODE_KEY[label]}_unique IF NOT EXISTS "
    f"FOR (n:{label}) REQUIRE n.{NODE_KEY[label]} IS UNIQUE"
    for label in NODE_LABELS
)

# ---- the change log (graph_store.changes) ----------------------------------------------------------------------
# One (:Change) node per change, its version taken from one (:ChangeCounter) node incremented in the transaction of
# the change: the counter's write lock orders concurrent writers, and the uniqueness constraint on the version
# refuses a duplicate should a server not lock it. The counter is never deleted, so versions are never reused.
CHANGE = "Change"
CHANGE_COUNTER = "ChangeCounter"
COUNTER_NAME = "changes"  # passed as $counter
CHANGE_CONSTRAINTS: tuple[str, ...] = (
    f"CREATE CONSTRAINT change_version_unique IF NOT EXISTS FOR (n:{CHANGE}) REQUIRE n.version IS UNIQUE",
    f"CREATE CONSTRAINT change_counter_name_unique IF NOT EXISTS FOR (n:{CHANGE_COUNTER}) REQUIRE n.name IS UNIQUE",
)
INIT_CHANGE_COUNTER = f"""
MERGE (c:{CHANGE_COUNTER} {{name: $counter}})
ON CREATE SET c.value = 0
RETURN c.value AS value
"""
APPEND_CHANGE = f"""
MATCH (c:{CHANGE_COUNTER} {{name: $counter}})
SET c.value = c.value + 1
WITH c
CREATE (n:{CHANGE} {{version: c.value, kind: $kind, key: $key, payload: $payload, origin: $origin, at: $at}})
RETURN n.version AS version
"""
CHANGES_SINCE = f"""
MATCH (n:{CHANGE})
WHERE n.version > $version
RETURN n.version AS version, n.kind AS kind, n.key AS key, n.payload AS payload, n.origin AS origin, n.at AS at
ORDER BY version
LIMIT $limit
"""
LATEST_VERSION = f"MATCH (c:{CHANGE_COUNTER} {{name: $counter}}) RETURN c.value AS value"
CLEAR_CHANGES = f"MATCH (n:{CHANGE}) WITH n LIMIT $batch DETACH DELETE n RETURN count(*) AS deleted"
# Retention: the counter's ``pruned`` is the highest version dropped from the log (only ever raised, never above
# the counter's value); the records at or below it are deleted in batches after it is raised.
PRUNED_THROUGH = f"MATCH (c:{CHANGE_COUNTER} {{name: $counter}}) RETURN coalesce(c.pruned, 0) AS pruned"
FIRST_VERSION_SINCE = f"MATCH (n:{CHANGE}) WHERE n.at >= $at RETURN min(n.version) AS version"
RAISE_PRUNED = f"""
MATCH (c:{CHANGE_COUNTER} {{name: $counter}})
WITH c, coalesce(c.pruned, 0) AS before
SET c.pruned = CASE WHEN $through > before AND $through <= c.value THEN $through ELSE before END
RETURN c.pruned AS pruned
"""
MARK_ALL_PRUNED = f"""
MATCH (c:{CHANGE_COUNTER} {{name: $counter}})
SET c.pruned = c.value
RETURN c.pruned AS pruned
"""
DELETE_PRUNED = f"""
MATCH (n:{CHANGE})
WHERE n.version <= $through
WITH n LIMIT $batch
DETACH DELETE n
RETURN count(*) AS n
"""

# Upsert nodes without references: properties replaced (the key is part of row.props).
UPSERT_TASKS = f"""
UNWIND $rows AS row
MERGE (n:{TASK} {{{NODE_KEY[TASK]}: row.key}})
SET n = row.props
RETURN count(*) AS written
"""

UPSERT_LLMS = f"""
UNWIND $rows AS row
MERGE (n:{LLM} {{{NODE_KEY[LLM]}: row.key}})
SET n = row.props
RETURN count(*) AS written
"""


def _upsert_with_parent(label: str, parent: str, rel: str) -> str:
    """Upsert ``label`` nodes with their one ``rel`` edge to a ``parent`` node (``row.ref``). A row whose parent
    does not exist is dropped by the first MATCH, so ``written`` falls short of the number of rows; the caller then
    names the missing parents and rolls back. An edge to any other parent (the node moved) is deleted."""
    return f"""
UNWIND $rows AS row
MATCH (p:{parent} {{{NODE_KEY[parent]}: row.ref}})
MERGE (n:{label} {{{NODE_KEY[label]}: row.key}})
SET n = row.props
WITH n, p
OPTIONAL MATCH (n)-[old:{rel}]->(other:{parent})
WHERE other <> p
WITH n, p, collect(old) AS stale
FOREACH (r IN stale | DELETE r)
MERGE (n)-[:{rel}]->(p)
RETURN count(*) AS written
"""


UPSERT_QUERIES = _upsert_with_parent(QUERY, TASK, OF_TASK)  # queries with their OF_TASK edge
UPSERT_AGENTS = _upsert_with_parent(AGENT, LLM, BACKED_BY)  # agents with their BACKED_BY edge

# One outcome edge per (query, target), its properties replaced. Rows with a missing end are dropped (see above).
# Outcome rows are positional lists [query_id, target, effect, cost, source, observed_at]: the driver's pure-Python
# packer and the server's unpacker spend most of a bulk import on row maps (about 2x slower than lists).
OUTCOME_ROW: tuple[str, ...] = ("query_id", "target", *OUTCOME_PROPS)
UPSERT_OUTCOMES: dict[str, str] = {
    kind: f"""
UNWIND $rows AS row
MATCH (q:{QUERY} {{{NODE_KEY[QUERY]}: row[0]}})
MATCH (c:{kind} {{{NODE_KEY[kind]}: row[1]}})
MERGE (q)-[r:{rel}]->(c)
SET r.effect = row[2], r.cost = row[3], r.source = row[4], r.observed_at = row[5]
RETURN count(*) AS written
"""
    for kind, rel in OUTCOME_REL.items()
}

# Pending outcomes (forwarded calls awaiting their effect) are AWAITS_FEEDBACK edges from the query to the candidate,
# keyed by the response id. They are not outcome edges: no statement that reads outcomes, counts or snapshots sees
# them, and DETACH DELETE of either end removes them. Rows are [response_id, query_id, target, cost, source,
# observed_at]; a response id written again replaces its edge (the old one is deleted first).
AWAITS_FEEDBACK = "AWAITS_FEEDBACK"
PENDING_ROW: tuple[str, ...] = ("response_id", "query_id", "target", "cost", "source", "observed_at")
# Relationship property indexes (created with the constraints): the feedback's lookup by response id and the
# expiry's scan by time, and outcomes by time (what a start reads of those observed since its training snapshot).
CREATE_INDEXES: tuple[str, ...] = tuple(
    f"CREATE INDEX awaits_feedback_{prop} IF NOT EXISTS FOR ()-[p:{AWAITS_FEEDBACK}]-() ON (p.{prop})"
    for prop in ("response_id", "observed_at")
) + tuple(
    f"CREATE INDEX {rel.lower()}_observed_at IF NOT EXISTS FOR ()-[r:{rel}]-() ON (r.observed_at)"
    for rel in OUTCOME_REL.values()
)
DELETE_PENDING = f"""
UNWIND $ids AS id
MATCH ()-[p:{AWAITS_FEEDBACK} {{response_id: id}}]->()
DELETE p
RETURN count(*) AS deleted
"""
UPSERT_PENDING: dict[str, str] = {
    kind: f"""
UNWIND $rows AS row
MATCH (q:{QUERY} {{{NODE_KEY[QUERY]}: row[1]}})
MATCH (c:{kind} {{{NODE_KEY[kind]}: row[2]}})
CREATE (q)-[p:{AWAITS_FEEDBACK}]->(c)
SET p.response_id = row[0], p.cost = row[3], p.source = row[4], p.observed_at = row[5]
RETURN count(*) AS written
"""
    for kind in OUTCOME_REL
}
GET_PENDING: dict[str, str] = {
    kind: f"""
MATCH (q:{QUERY})-[p:{AWAITS_FEEDBACK} {{response_id: $response_id}}]->(c:{kind})
RETURN q.{NODE_KEY[QUERY]} AS query_id, c.{NODE_KEY[kind]} AS target, p.cost AS cost, p.source AS source,
       p.observed_at AS observed_at
"""
    for kind in OUTCOME_REL
}
# Expire those whose feedback never came: observed (a sortable UTC time string) before $before; none without a time.
# At most $batch per transaction (the caller loops until none is left).
PRUNE_PENDING = f"""
MATCH ()-[p:{AWAITS_FEEDBACK}]->()
WHERE p.observed_at <> '' AND p.observed_at < $before
WITH p LIMIT $batch
DELETE p
RETURN count(*) AS deleted
"""
# Complete one: the outcome edge written (or updated) and the pending edge deleted, in the same statement.
COMPLETE_PENDING: dict[str, str] = {
    kind: f"""
MATCH (q:{QUERY})-[p:{AWAITS_FEEDBACK} {{response_id: $response_id}}]->(c:{kind})
MERGE (q)-[r:{rel}]->(c)
SET r.effect = $effect, r.cost = $cost, r.source = $source, r.observed_at = $observed_at
DELETE p
RETURN count(*) AS completed
"""
    for kind, rel in OUTCOME_REL.items()
}

# Which of the given keys exist (used only to name the missing ones after a short write).
EXISTING_KEYS: dict[str, str] = {
    label: f"""
UNWIND $keys AS key
MATCH (n:{label} {{{NODE_KEY[label]}: key}})
RETURN DISTINCT key
"""
    for label in NODE_LABELS
}

GET_NODE: dict[str, str] = {
    label: f"MATCH (n:{label} {{{NODE_KEY[label]}: $key}}) RETURN properties(n) AS props" for label in NODE_LABELS
}

GET_NODES: dict[str, str] = {
    label: f"UNWIND $keys AS key MATCH (n:{label} {{{NODE_KEY[label]}: key}}) RETURN properties(n) AS props"
    for label in NODE_LABELS
}

LIST_NODES: dict[str, str] = {
    label: f"MATCH (n:{label}) RETURN properties(n) AS props ORDER BY n.{NODE_KEY[label]} SKIP $offset"
    for label in NODE_LABELS
}
LIST_NODES_LIMIT: dict[str, str] = {label: f"{LIST_NODES[label]} LIMIT $limit" for label in NODE_LABELS}

# A node its writer found absent, created first in the write's transaction (the upsert then sets its properties): if
# another writer stored it since, the key's uniqueness constraint refuses it, and if one is storing it now, waits for
# that one to end (GraphStore.write's ``new``).
CLAIM_NODE: dict[str, str] = {label: f"CREATE (:{label} {{{NODE_KEY[label]}: $key}})" for label in NODE_LABELS}

DELETE_NODE: dict[str, str] = {
    label: f"MATCH (n:{label} {{{NODE_KEY[label]}: $key}}) DETACH DELETE n RETURN count(*) AS deleted"
    for label in NODE_LABELS
}

# The outcome edges a node's deletion takes with it (counted in the same transaction), one statement per edge type.
COUNT_OUTCOMES_OF: dict[str, list[str]] = {
    label: [
        f"MATCH (q:{QUERY})-[r:{rel}]->(c:{kind}) WHERE {'c' if label == kind else 'q'}.{NODE_KEY[label]} = $key "
        "RETURN count(r) AS n"
        for kind, rel in OUTCOME_REL.items()
        if label in (kind, QUERY)
    ]
    for label in NODE_LABELS
}

# Outcome reads, one statement per filter combination so that each one can use the key indexes.
_OUTCOME_RETURN: dict[str, str] = {
    kind: f"""
RETURN q.{NODE_KEY[QUERY]} AS query_id, c.{NODE_KEY[kind]} AS target, r.effect AS effect, r.cost AS cost,
       r.source AS source, r.observed_at AS observed_at
ORDER BY query_id, target
"""
    for kind in OUTCOME_REL
}
OUTCOMES_ALL: dict[str, str] = {
    kind: f"MATCH (q:{QUERY})-[r:{rel}]->(c:{kind}){_OUTCOME_RETURN[kind]}" for kind, rel in OUTCOME_REL.items()
}
OUTCOMES_SINCE: dict[str, str] = {
    kind: f"MATCH (q:{QUERY})-[r:{rel}]->(c:{kind}) WHERE r.observed_at >= $since{_OUTCOME_RETURN[kind]}"
    for kind, rel in OUTCOME_REL.items()
}
OUTCOMES_BY_QUERY: dict[str, str] = {
    kind: f"MATCH (q:{QUERY} {{{NODE_KEY[QUERY]}: $query_id}})-[r:{rel}]->(c:{kind}){_OUTCOME_RETURN[kind]}"
    for kind, rel in OUTCOME_REL.items()
}
OUTCOMES_BY_TARGET: dict[str, str] = {
    kind: f"MATCH (q:{QUERY})-[r:{rel}]->(c:{kind} {{{NODE_KEY[kind]}: $target}}){_OUTCOME_RETURN[kind]}"
    for kind, rel in OUTCOME_REL.items()
}
ANSWERED_BY_TARGET: dict[str, str] = {  # the query ids only
    kind: f"MATCH (q:{QUERY})-[:{rel}]->(c:{kind} {{{NODE_KEY[kind]}: $target}}) "
    f"RETURN q.{NODE_KEY[QUERY]} AS query_id ORDER BY query_id"
    for kind, rel in OUTCOME_REL.items()
}
OUTCOMES_BY_BOTH: dict[str, str] = {
    kind: f"MATCH (q:{QUERY} {{{NODE_KEY[QUERY]}: $query_id}})-[r:{rel}]->"
    f"(c:{kind} {{{NODE_KEY[kind]}: $target}}){_OUTCOME_RETURN[kind]}"
    for kind, rel in OUTCOME_REL.items()
}

OUTCOME_COUNTS: dict[str, str] = {  # per candidate
    kind: f"MATCH (:{QUERY})-[r:{rel}]->(c:{kind}) RETURN c.{NODE_KEY[kind]} AS target, count(r) AS n"
    for kind, rel in OUTCOME_REL.items()
}
OUTCOME_COUNTS_OF: dict[str, str] = {  # one candidate's, from its key index
    kind: f"MATCH (:{QUERY})-[r:{rel}]->(c:{kind} {{{NODE_KEY[kind]}: $target}}) "
    f"RETURN c.{NODE_KEY[kind]} AS target, count(r) AS n"
    for kind, rel in OUTCOME_REL.items()
}

COUNT_QUERIES_IN_TASK = (  # from the task's key index, over its OF_TASK edges
    f"MATCH (q:{QUERY})-[:{OF_TASK}]->(t:{TASK} {{{NODE_KEY[TASK]}: $task}}) RETURN count(q) AS n"
)

# Counts: one small statement each (ArcadeDB drops the zero row of an empty aggregate inside UNION ALL).
COUNT_NODES: dict[str, str] = {label: f"MATCH (n:{label}) RETURN count(n) AS n" for label in NODE_LABELS}
COUNT_EDGES: dict[str, str] = {  # a type joins one pair of labels only: unlabelled ends, which Neo4j counts from its
    rel: f"MATCH ()-[r:{rel}]->() RETURN count(r) AS n"
    for _, rel, _ in EDGE_TYPES  # count store, not by a scan
}

# Snapshot: one statement per label and per edge type, each returning one record of parallel lists, which the
# driver decodes far faster than one record per node or edge.
SNAPSHOT_NODES: dict[str, str] = {
    label: f"MATCH (n:{label}) RETURN collect(properties(n)) AS rows" for label in NODE_LABELS
}
SNAPSHOT_EDGES: dict[tuple[str, str, str], str] = {
    (src, rel, dst): (
        f"MATCH (s:{src})-[r:{rel}]->(d:{dst}) "
        f"RETURN collect(s.{NODE_KEY[src]}) AS src, collect(d.{NODE_KEY[dst]}) AS dst"
        + (
            ", collect(r.effect) AS effect, collect(r.cost) AS cost, collect(r.observed_at) AS observed_at"
            if rel in (ANSWERED_BY, HANDLED_BY)
            else ""
        )
    )
    for src, rel, dst in EDGE_TYPES
}

# Clear, in bounded transactions so a large graph does not need one huge one.
CLEAR_LABEL: dict[str, str] = {
    label: f"MATCH (n:{label}) WITH n LIMIT $batch DETACH DELETE n RETURN count(*) AS deleted" for label in NODE_LABELS
}

PING = "RETURN 1 AS ok"
