"""The graph as networkx, and written out as GraphML (Gephi, yEd), node-link JSON, or a self-contained HTML page.

Exports take a snapshot, so they work the same for every backend. ``max_queries`` bounds the sample: all tasks,
LLMs and agents are kept, plus the first ``max_queries`` queries (by key) and the edges among what is kept.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import networkx as nx

from graph_store.errors import InvalidInputError
from graph_store.schema import NODE_KEY, QUERY
from graph_store.snapshot import GraphSnapshot

EXPORT_FORMATS = ("graphml", "json", "html")
CAPTION_CHARS = 60
LABEL_COLORS = {"Task": "#f79767", "Query": "#57c7e3", "LLM": "#8dcc93", "Agent": "#c990c0"}


def node_id(label: str, key: str) -> str:
    return f"{label}:{key}"


def _caption(label: str, key: str, text: dict[str, list[str]], i: int) -> str:
    if label != QUERY:
        return key
    t = " ".join(text["text"][i].split())
    return t if len(t) <= CAPTION_CHARS else t[: CAPTION_CHARS - 1] + "…"


def to_networkx(snapshot: GraphSnapshot, max_queries: int | None = None) -> nx.DiGraph:
    """A directed graph whose nodes are ``"Label:key"`` with ``label``, ``caption`` and the node's properties."""
    if max_queries is not None and max_queries < 0:
        raise InvalidInputError(f"max_queries must be >= 0, got {max_queries}")
    g = nx.DiGraph()
    kept: dict[str, set[int]] = {}
    for label, table in snapshot.nodes.items():
        n = len(table) if (label != QUERY or max_queries is None) else min(max_queries, len(table))
        kept[label] = set(range(n))
        for i in range(n):
            key = table.keys[i]
            attrs: dict[str, Any] = {
                "label": label,
                NODE_KEY[label]: key,
                "caption": _caption(label, key, table.text, i),
            }
            attrs.update({p: vals[i] for p, vals in table.text.items()})
            attrs.update({p: float(v[i]) for p, v in table.numeric.items() if v[i] == v[i]})  # NaN = unknown
            g.add_node(node_id(label, key), **attrs)
    for (src_label, rel, dst_label), edges in snapshot.edges.items():
        src_keys, dst_keys = snapshot.nodes[src_label].keys, snapshot.nodes[dst_label].keys
        src_kept, dst_kept = kept[src_label], kept[dst_label]
        for e in range(len(edges)):
            s, d = int(edges.src[e]), int(edges.dst[e])
            if s in src_kept and d in dst_kept:
                attrs = {name: float(values[e]) for name, values in edges.attrs.items()}
                g.add_edge(node_id(src_label, src_keys[s]), node_id(dst_label, dst_keys[d]), type=rel, **attrs)
    return g


# what XML 1.0 cannot hold, even escaped (control characters, lone surrogates, U+FFFE/U+FFFF); a stored text may
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(g: nx.DiGraph) -> nx.DiGraph:
    """``g`` with the characters XML cannot hold replaced by U+FFFD in its text attributes (a query text with a
    control character made the GraphML file unreadable; the JSON export keeps them), and in node ids (a key may hold
    U+FFFE)."""

    def clean(value: Any) -> Any:
        return NOT_XML.sub("\ufffd", value) if isinstance(value, str) else value

    texts = (v for n, a in g.nodes(data=True) for v in (n, *a.values()) if isinstance(v, str))
    if not any(NOT_XML.search(v) for v in texts):
        return g
    out = nx.relabel_nodes(g, {n: clean(n) for n in g.nodes if NOT_XML.search(n)}, copy=True)
    for _, a in out.nodes(data=True):
        a.update({k: clean(v) for k, v in a.items()})
    return out


def write_export(snapshot: GraphSnapshot, fmt: str, path: str | Path, max_queries: int | None = None) -> Path:
    """Write the graph (or a bounded sample) in ``fmt`` (graphml, json or html) to ``path``."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInputError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = to_networkx(snapshot, max_queries)
    if fmt == "graphml":
        nx.write_graphml(_xml_safe(g), path)
    elif fmt == "json":
        path.write_text(json.dumps(nx.node_link_data(g, edges="edges"), ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text(_html(g), encoding="utf-8")
    return path


def _html(g: nx.DiGraph) -> str:
    from neo4j_viz import Node, Relationship, VisualizationGraph

    nodes = [
        Node(
            id=n,
            caption=a["caption"],
            color=LABEL_COLORS[a["label"]],
            size=20 if a["label"] != QUERY else 8,
            properties={k: v for k, v in a.items() if k != "caption"},
        )
        for n, a in g.nodes(data=True)
    ]
    rels = [
        Relationship(source=s, target=d, caption=a["type"], properties={k: v for k, v in a.items() if k != "type"})
        for s, d, a in g.edges(data=True)
    ]
    page = VisualizationGraph(nodes=nodes, relationships=rels).render(
        height="900px", max_allowed_nodes=max(10_000, len(nodes))
    )
    head = "<!doctype html><html><head><meta charset='utf-8'><title>GraphRouter graph</title></head>"
    return f"{head}<body>{page.data}</body></html>"
