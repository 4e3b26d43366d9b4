"""How fast an outcome moves the next answer: ``POST /v1/outcomes`` on a new query, then ``POST /v1/route`` of it, in
process (FastAPI's TestClient, the service's full path: checks, store write, scorer update), with the GNN serving a
stored graph of ``--size`` queries (dcrouter's, grown with perturbed copies as in bench_api.py; reattached, no
retraining).

    python experiments/bench_online.py --store /path/dcrouter/graph.db [--size 100000] [--posts 50]

Each round routes a never-seen query (its text embedded then, as a client routes before it reports), posts the
picked candidate's outcome with the query's text, and routes it again: the latency of the post, of the post plus
the next route, and whether the candidate's predicted effect changed. Writes experiments/results/bench_online.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench_api import grow  # noqa: E402
from online import load_world  # noqa: E402

from api.main import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from graph_store import GraphBatch, LLMNode, Task  # noqa: E402
from graph_store.backends.embedded import EmbeddedStore  # noqa: E402
from graphrouter.checkpoint import Checkpoint  # noqa: E402
from graphrouter.embeddings import Embedder  # noqa: E402
from graphrouter.routers.gnn import GnnRouter  # noqa: E402
from graphrouter.scorer import Scorer  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "bench_online.md"
KEY = "bench-key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a store holding dcrouter")
    parser.add_argument("--world-cache", type=Path, default=None)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch
    from fastapi.testclient import TestClient

    torch.set_num_threads(args.threads)
    world, nodes = load_world(args.store, args.world_cache)
    t0 = time.perf_counter()
    router = GnnRouter(seeds=(0,)).fit(world, np.arange(world.data.n_queries))
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    router.reattach(grow(world, args.size))
    reattach_s = time.perf_counter() - t0
    print(f"fitted in {fit_s:.0f}s, reattached to {args.size:,} stored queries in {reattach_s:.0f}s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        embedder = Embedder(cache_path=Path(tmp) / "emb.sqlite")
        store = EmbeddedStore(Path(tmp) / "graph.db")
        store.write(
            GraphBatch(
                tasks=[Task(t) for t in world.data.task_names],
                llms=[nodes[c] if c in nodes else LLMNode(c, "", 1.0, 1.0) for c in world.data.candidates],
            )
        )
        scorer = Scorer(Checkpoint(router, embedder.model_name, "", "bench"), embedder)
        app = create_app(
            Settings(store="unused", api_key=KEY, embedding_cache=None), store=store, scorer=scorer, embedder=embedder
        )
        auth = {"Authorization": f"Bearer {KEY}"}
        post_ms, both_ms, changed = [], [], []
        rng = np.random.default_rng(0)
        with TestClient(app) as client:
            for i in range(args.posts + 3):
                task = world.data.task_names[i % len(world.data.task_names)]
                text = f"question {i} of the online bench about {task}: explain {rng.integers(1e9)} in one line"
                body = {"query": text, "task": task, "k": len(world.data.candidates), "scenario": "performance_first"}
                before = client.post("/v1/route", json=body).json()["candidates"]
                name, effect = before[0]["name"], before[0]["effect"]
                row = {"query": text, "task": task, "candidate": name, "effect": 0.0, "cost": 0.001}
                t = time.perf_counter()
                r = client.post("/v1/outcomes", json={"outcomes": [row]}, headers=auth)
                t_post = time.perf_counter()
                after = client.post("/v1/route", json=body).json()["candidates"]
                t_next = time.perf_counter()
                assert r.status_code == 200 and r.json()["applied_to_scorer"] == 1, r.text
                if i >= 3:  # warm-up rounds excluded
                    post_ms.append(1000 * (t_post - t))
                    both_ms.append(1000 * (t_next - t))
                    changed.append({c["name"]: c["effect"] for c in after}[name] != effect)
        store.close()

    def stat(ms: list[float]) -> str:
        return f"{statistics.median(ms):.1f} | {np.percentile(ms, 90):.1f}"

    text = "\n".join(
        [
            "# Post one outcome → the next answer changed",
            "",
            f"`python experiments/bench_online.py --size {args.size} --posts {args.posts} --threads {args.threads}`: "
            f"the GNN (1 member, fitted on dcrouter's {world.data.n_queries:,} queries in {fit_s:.0f}s) reattached to "
            f"a stored graph of {args.size:,} queries in {reattach_s:.0f}s; in-process service (TestClient), "
            "embedded store, the onnx encoder. Each round: route a never-seen query (embedded then), post its "
            "top candidate's outcome (effect 0) with the query's text, route it again. On a shared 2-core machine "
            "with other jobs running.",
            "",
            "| what | median (ms) | p90 (ms) |",
            "|---|---:|---:|",
            f"| POST /v1/outcomes (one new query) | {stat(post_ms)} |",
            f"| POST /v1/outcomes + the next POST /v1/route | {stat(both_ms)} |",
            "",
            f"The candidate's predicted effect changed in {sum(changed)} of {len(changed)} rounds. "
            "Target (issue 13): under 50 ms at 100k stored queries.",
            "",
        ]
    )
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
