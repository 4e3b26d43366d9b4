"""Reading stored queries by key: one ``GraphStore.get_nodes`` call against a loop of ``has_node`` + ``get_node``
per key (what ``POST /v1/outcomes``'s checks and a start's relearning did before), side by side in one run, on each
backend: the embedded file and Bolt (an ArcadeDB server started for the run, as in the tests).

    python experiments/bench_lookups.py [--stored 20000] [--keys 10,100,1000] [--repeats 5] [--neo4j-uri bolt://…]

Prints a table and writes it to experiments/results/bench_lookups.md.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench_store import neo4j_opener  # noqa: E402

from graph_store import QUERY, GraphBatch, GraphStore, Query, Task  # noqa: E402
from graph_store.backends.embedded import EmbeddedStore  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "bench_lookups.md"


def one_by_one(store: GraphStore, keys: list[str]) -> dict[str, object]:
    return {k: store.get_node(QUERY, k) for k in keys if store.has_node(QUERY, k)}


def batched(store: GraphStore, keys: list[str]) -> dict[str, object]:
    return dict(store.get_nodes(QUERY, keys))


def timed(read: Callable[[GraphStore, list[str]], dict], store: GraphStore, keys: list[str], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        got = read(store, keys)
        runs.append(time.perf_counter() - t)
        assert len(got) == len(keys)
    return statistics.median(runs) * 1000


def measure(store: GraphStore, stored: int, sizes: list[int], repeats: int) -> list[tuple[int, float, float]]:
    queries = [Query(f"stored query number {i}", "math") for i in range(stored)]
    store.write(GraphBatch(tasks=[Task("math", "")]))
    for start in range(0, stored, 5000):
        store.write(GraphBatch(queries=queries[start : start + 5000]))
    rows = []
    for n in sizes:
        keys = [q.id for q in queries[:: max(stored // n, 1)][:n]]
        rows.append((n, timed(one_by_one, store, keys, repeats), timed(batched, store, keys, repeats)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=20000)
    parser.add_argument("--keys", default="10,100,1000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--neo4j-uri", default=None, help="measure a real Neo4j instead of ArcadeDB")
    args = parser.parse_args()
    sizes = [int(k) for k in args.keys.split(",")]
    t0 = time.perf_counter()
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        with EmbeddedStore(Path(tmp) / "graph.db") as store:
            table["embedded"] = measure(store, args.stored, sizes, args.repeats)
        with neo4j_opener(args.neo4j_uri, Path(tmp)) as open_store, contextlib.closing(open_store()) as store:
            store.clear()
            table["Bolt (Neo4j driver)" if args.neo4j_uri else "Bolt (ArcadeDB)"] = measure(
                store, args.stored, sizes, args.repeats
            )
    lines = [
        "# Reading stored queries by key: one get_nodes call against a get_node per key",
        "",
        f"`python experiments/bench_lookups.py --stored {args.stored} --keys {args.keys} --repeats {args.repeats}`"
        f": {args.stored:,} stored queries; median of {args.repeats} reads of the same keys; one run, both ways side"
        f" by side; total {time.perf_counter() - t0:.0f}s on a shared 2-core machine.",
        "",
        "| backend | keys | has_node + get_node per key (ms) | one get_nodes (ms) | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for backend, rows in table.items():
        lines += [f"| {backend} | {n:,} | {a:.1f} | {b:.1f} | {a / b:.0f}× |" for n, a, b in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
