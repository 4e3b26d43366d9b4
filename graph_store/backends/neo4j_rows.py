"""Row helpers of the Neo4j backend: batching parameters under the Bolt message limit, de-duplicating records
and trimming snapshot edges. Pure Python: no driver, no Cypher."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from graph_store.base import EdgeRows, NodeRows
from graph_store.schema import NodeRecord


def packed_size(value: Any) -> int:
    """About how many bytes ``value`` takes in a Bolt message (an upper bound for the types we send)."""
    if isinstance(value, str):
        return 5 + 4 * len(value)  # UTF-8 needs at most 4 bytes a character
    if isinstance(value, dict):
        return 5 + sum(5 + 4 * len(k) + packed_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        if value and isinstance(value[0], float):  # an embedding: schema validation made every item a float
            return 5 + 9 * len(value)
        return 5 + sum(packed_size(x) for x in value)
    return 9  # float, int, bool, None


def outcome_row_size(row: list[Any]) -> int:
    """``packed_size`` of an outcome row (see neo4j_queries.OUTCOME_ROW), without walking it."""
    return 64 + 4 * (len(row[0]) + len(row[1]) + len(row[4]) + len(row[5]))


def chunks(
    rows: Sequence[Any], max_rows: int, max_bytes: int, size_of: Callable[[Any], int] = packed_size
) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``max_rows`` rows and (unless one row is larger) ``max_bytes`` bytes."""
    start, size = 0, 0
    for i, row in enumerate(rows):
        row_size = size_of(row)
        if i > start and (i - start >= max_rows or size + row_size > max_bytes):
            yield rows[start:i]
            start, size = i, 0
        size += row_size
    if start < len(rows):
        yield rows[start:]


def drop_edges_to_unseen_nodes(nodes: NodeRows, edges: EdgeRows) -> EdgeRows:
    """Keep only edges whose two ends are among the snapshot's nodes.

    Neo4j (and ArcadeDB) read at READ COMMITTED: the edge statements of a snapshot can see an edge written by a
    transaction that committed after the node statements ran, whose new node the snapshot then lacks.
    """
    keys = {label: {row["key"] for row in rows} for label, rows in nodes.items()}
    out: EdgeRows = {}
    for (src_label, rel, dst_label), (src, dst, attrs) in edges.items():
        src_keys, dst_keys = keys.get(src_label, set()), keys.get(dst_label, set())
        if src_keys.issuperset(src) and dst_keys.issuperset(dst):
            out[(src_label, rel, dst_label)] = (src, dst, attrs)
            continue
        keep = [i for i, (s, d) in enumerate(zip(src, dst, strict=True)) if s in src_keys and d in dst_keys]
        out[(src_label, rel, dst_label)] = (
            [src[i] for i in keep],
            [dst[i] for i in keep],
            {name: [values[i] for i in keep] for name, values in attrs.items()},
        )
    return out


def last_by_key(nodes: Sequence[NodeRecord]) -> list[NodeRecord]:
    """One record per key, the last one written winning (as if the batch were applied in order)."""
    return list({node.key: node for node in nodes}.values())
