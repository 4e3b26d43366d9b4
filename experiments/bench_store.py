"""Import dcrouter into each graph_store backend and time it, side by side in one run.

    python experiments/bench_store.py [--data-dir ../shared/data/LLMRouter] [--repeats 3] [--neo4j-uri bolt://…]

Without ``--neo4j-uri`` the Neo4j backend is measured against an ArcadeDB Bolt server started for the run
(tests/_arcadedb.py), as in the tests. Each repeat starts from an empty store. Prints a table and writes it to
experiments/results/bench_store.md. Targets (this 2-core machine): full import < 30 s embedded, < 60 s Bolt;
snapshot < 2 s. Also timed: the read a starting service makes of the outcomes observed since its checkpoint's
snapshot (``outcomes(observed_since=…)``, by an index on ``observed_at``; none match here).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graph_store import GraphStore  # noqa: E402
from graph_store.backends.embedded import EmbeddedStore  # noqa: E402
from graphrouter.datasets.dcrouter import dcrouter_rows, import_dcrouter  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "bench_store.md"


@contextlib.contextmanager
def neo4j_opener(uri: str | None, tmp: Path) -> Iterator[Callable[[], GraphStore]]:
    import neo4j

    from graph_store.backends.neo4j_store import Neo4jStore

    if uri:
        yield lambda: Neo4jStore.from_env(uri=uri)
        return
    from tests._arcadedb import arcadedb_bolt_server

    with arcadedb_bolt_server(tmp / "arcadedb") as server:
        driver = neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password))
        try:
            yield lambda: Neo4jStore(driver, database=server.database)
        finally:
            driver.close()


def measure(open_store: Callable[[], GraphStore], data_dir: Path, repeats: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"import_s": [], "reimport_s": [], "snapshot_s": [], "since_s": []}
    with open_store() as store:
        for _ in range(repeats):
            store.clear()
            t = time.perf_counter()
            written = import_dcrouter(store, data_dir)
            out["import_s"].append(time.perf_counter() - t)
            assert written["outcomes"] == store.counts()["ANSWERED_BY"] == 54972, store.counts()
            t = time.perf_counter()
            import_dcrouter(store, data_dir)  # idempotent: same counts, everything MERGEd again
            out["reimport_s"].append(time.perf_counter() - t)
            for _ in range(3):
                t = time.perf_counter()
                snap = store.snapshot()
                out["snapshot_s"].append(time.perf_counter() - t)
            assert len(snap.edges[("Query", "ANSWERED_BY", "LLM")]) == 54972
            for _ in range(3):  # a start's read of what was observed since its checkpoint's snapshot: none here
                t = time.perf_counter()
                assert store.outcomes("LLM", observed_since=snap.taken_at[:4] + "-12-31T23:59:59Z") == []
                out["since_s"].append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "LLMRouter")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--neo4j-uri", default=None, help="measure a real Neo4j instead of ArcadeDB")
    args = parser.parse_args()

    t = time.perf_counter()
    _, rows = dcrouter_rows(args.data_dir)
    parse_s = time.perf_counter() - t
    n_edges = len(rows)
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["embedded"] = measure(lambda: EmbeddedStore(Path(tmp) / "graph.db"), args.data_dir, args.repeats)
        with neo4j_opener(args.neo4j_uri, Path(tmp)) as opener:
            name = f"neo4j ({args.neo4j_uri or 'ArcadeDB Bolt'})"
            results[name] = measure(opener, args.data_dir, args.repeats)

    lines = [
        f"# graph_store import benchmark: dcrouter ({n_edges:,} ANSWERED_BY edges, 6,108 queries)",
        "",
        f"`python experiments/bench_store.py --repeats {args.repeats}` on {platform.node() or 'this machine'}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}. Medians over {args.repeats} imports into an empty "
        f"store (snapshot and outcomes since: median of {3 * args.repeats}). Reading and validating the files alone: "
        f"{parse_s:.1f} s.",
        "",
        "| backend | full import (s) | edges/s | re-import (s) | snapshot (s) | outcomes since a time (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        imp = statistics.median(r["import_s"])
        lines.append(
            f"| {name} | {imp:.1f} | {n_edges / imp:,.0f} | {statistics.median(r['reimport_s']):.1f} | "
            f"{statistics.median(r['snapshot_s']):.2f} | {1000 * statistics.median(r['since_s']):.2f} |"
        )
    emb, neo = (statistics.median(r["import_s"]) for r in results.values())
    lines += [
        "",
        f"Neo4j-backend import / embedded import: {neo / emb:.1f}x.",
        "Targets: import < 30 s (embedded), < 60 s (Bolt); snapshot < 2 s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
