"""A bulk, array-shaped copy of the whole graph, for training and for the scorer's caches.

Nodes of each label are sorted by key; edges refer to them by row index. Nothing here imports torch:
``graphrouter`` turns a snapshot into a PyG ``HeteroData``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graph_store.schema import EDGE_TYPES, NODE_LABELS, billed_since

# Numeric node properties, returned as float64 arrays with NaN where a node has no value.
NUMERIC_PROPS: dict[str, tuple[str, ...]] = {"LLM": ("input_price", "output_price", "size_b")}
# Text (and other string) node properties, returned as lists of str ("" where missing).
TEXT_PROPS: dict[str, tuple[str, ...]] = {
    "Task": ("description",),
    "Query": ("text", "task"),
    "LLM": ("description", "priced_at"),
    "Agent": ("description", "strategy", "llm"),
}
# Outcome edge attributes: effect and cost, and ``billed_now``: 1 where the cost was observed at (or after) its LLM's
# ``priced_at`` (an agent's: its LLM's), i.e. billed at the prices the snapshot holds; 0 where it was billed before
# they changed. (The backends read each edge's ``observed_at`` for it; the snapshot keeps only the flag.)
OUTCOME_ATTRS: tuple[str, ...] = ("effect", "cost", "billed_now")


@dataclass
class NodeTable:
    keys: list[str]
    text: dict[str, list[str]] = field(default_factory=dict)
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    embedding: np.ndarray | None = None  # (n, d) float32, only when every node of the label has one

    def __len__(self) -> int:
        return len(self.keys)

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}


@dataclass
class EdgeTable:
    src: np.ndarray  # int64 row indices into the source label's NodeTable
    dst: np.ndarray  # int64 row indices into the destination label's NodeTable
    attrs: dict[str, np.ndarray] = field(default_factory=dict)  # float64 per edge (OUTCOME_ATTRS)

    def __len__(self) -> int:
        return int(self.src.shape[0])

    @property
    def edge_index(self) -> np.ndarray:
        return np.stack([self.src, self.dst])


@dataclass
class GraphSnapshot:
    nodes: dict[str, NodeTable]
    edges: dict[tuple[str, str, str], EdgeTable]
    taken_at: str = ""  # when the store began to read it (UTC, to the second, as Outcome.observed_at); "": unknown

    def counts(self) -> dict[str, int]:
        out = {label: len(t) for label, t in self.nodes.items()}
        out.update({rel: len(self.edges[(s, rel, d)]) for s, rel, d in EDGE_TYPES})
        return out


def build_snapshot(
    node_rows: dict[str, list[dict[str, Any]]],
    edge_rows: dict[tuple[str, str, str], tuple[list[str], list[str], dict[str, list[float]]]],
) -> GraphSnapshot:
    """Assemble a snapshot from backend rows: node property dicts per label, and edges as key lists."""
    nodes: dict[str, NodeTable] = {}
    for label in NODE_LABELS:
        rows = sorted(node_rows.get(label, []), key=lambda r: r["key"])
        table = NodeTable(keys=[r["key"] for r in rows])
        for prop in TEXT_PROPS.get(label, ()):
            table.text[prop] = [r.get(prop) or "" for r in rows]
        for prop in NUMERIC_PROPS.get(label, ()):
            vals = [r.get(prop) for r in rows]
            table.numeric[prop] = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
        embs = [r.get("embedding") for r in rows]
        if rows and all(e is not None for e in embs) and len({len(e) for e in embs}) == 1:
            table.embedding = np.asarray(embs, dtype=np.float32)
        nodes[label] = table

    edges: dict[tuple[str, str, str], EdgeTable] = {}
    for etype in EDGE_TYPES:
        src_label, _, dst_label = etype
        src_keys, dst_keys, attrs = edge_rows.get(etype, ([], [], {}))
        src_idx, dst_idx = nodes[src_label].index(), nodes[dst_label].index()
        src = np.fromiter((src_idx[k] for k in src_keys), dtype=np.int64, count=len(src_keys))
        dst = np.fromiter((dst_idx[k] for k in dst_keys), dtype=np.int64, count=len(dst_keys))
        order = np.lexsort((dst, src))
        table = EdgeTable(src=src[order], dst=dst[order])
        if "observed_at" in attrs:
            attrs = dict(attrs)
            priced, seen = _priced_at(nodes, dst_label), attrs.pop("observed_at")
            billed = (
                [billed_since(at, priced[d]) for at, d in zip(seen, dst.tolist(), strict=True)]
                if any(priced)
                else np.ones(len(dst))  # no price ever changed (the usual case): no per-edge comparison
            )
            attrs["billed_now"] = np.asarray(billed, dtype=np.float64)
        for name, values in attrs.items():
            table.attrs[name] = np.asarray(values, dtype=np.float64)[order]
        edges[etype] = table
    return GraphSnapshot(nodes=nodes, edges=edges)


def _priced_at(nodes: dict[str, NodeTable], label: str) -> list[str]:
    """Per node of ``label`` (LLM or Agent), when the prices it is billed at last changed ("" if never): an LLM's
    ``priced_at``, an agent's LLM's."""
    llm_priced = nodes["LLM"].text.get("priced_at", [""] * len(nodes["LLM"]))
    if label == "LLM":
        return llm_priced
    by_name = dict(zip(nodes["LLM"].keys, llm_priced, strict=True))
    return [by_name.get(llm, "") for llm in nodes[label].text.get("llm", [""] * len(nodes[label]))]
