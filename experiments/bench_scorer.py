"""Training time on the full dcrouter graph, and the warm scorer's top_k latency, side by side in one run.

    python experiments/bench_scorer.py [--store .graphrouter/graph.db] [--router gnn] [--queries 200]

Measures: fitting the router on all 6,108 queries; one ``top_k`` on a warm scorer excluding the embedding (the
query's embedding and token count precomputed) for the 9 real candidates and for 200 candidates (191 extra LLMs
registered without retraining); the embedding of an unseen query; and ``top_k`` end to end (embedding included,
uncached texts). Medians and p90 over ``--queries`` test queries. Writes experiments/results/bench_scorer.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graph_store import LLMNode, open_store  # noqa: E402
from graphrouter.checkpoint import Checkpoint  # noqa: E402
from graphrouter.embeddings import Embedder  # noqa: E402
from graphrouter.rewards import SCENARIOS  # noqa: E402
from graphrouter.routers import ROUTERS, QueryFeatures  # noqa: E402
from graphrouter.scorer import Scorer  # noqa: E402
from graphrouter.world import UNKNOWN_TASK, build_world  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "bench_scorer.md"


def timed(fn, items) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for x in items:
        t = time.perf_counter()
        fn(x)
        out.append(1000 * (time.perf_counter() - t))
    return out


def summary(ms: list[float]) -> str:
    return f"{statistics.median(ms):.2f} | {np.percentile(ms, 90):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None)
    parser.add_argument("--router", default="gnn")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny ops: 1 is fastest)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    embedder = Embedder()
    with open_store(args.store, create=False) as store:
        snapshot = store.snapshot()
    if len(snapshot.nodes["Query"]) == 0:
        raise SystemExit(f"no queries in the store {args.store or '(default)'}; run `make demo` or pass --store")
    world = build_world(snapshot, embedder)
    data = world.data
    t = time.perf_counter()
    router = ROUTERS[args.router]().fit(world, np.arange(data.n_queries))
    fit_s = time.perf_counter() - t
    scorer = Scorer(Checkpoint(router, embedder.model_name, "", "bench"), embedder)

    rng = np.random.default_rng(0)
    sample = rng.choice(data.n_queries, size=args.queries, replace=False)
    feats = [QueryFeatures(world.query_emb[[i]], np.array([UNKNOWN_TASK]), world.query_tokens[[i]]) for i in sample]
    w = SCENARIOS["balance"]

    def warm(q: QueryFeatures) -> None:  # the scorer's path after the embedding: one router pass, then ranking
        scorer._rank(scorer.router.score(q, w), 0, None, w, 3, None, np.arange(len(scorer.candidates)))

    for q in feats[:10]:
        warm(q)
    rows = [("top_k, warm, excluding embedding, task inferred", len(scorer.candidates), summary(timed(warm, feats)))]

    nonce = time.time_ns()  # texts never embedded before: the embedding cache persists across runs
    new_texts = [f"{data.query_text[i]} (variant {n}, run {nonce})" for n, i in enumerate(sample)]
    rows.append(
        (
            "embedding one unseen query",
            "",
            summary(timed(lambda s: embedder.embed([s]), new_texts[: args.queries // 2])),
        )
    )
    rows.append(
        (
            "top_k end to end (embed + tokens + score)",
            len(scorer.candidates),
            summary(timed(lambda s: scorer.top_k(s, k=3, scenario="balance"), new_texts[args.queries // 2 :])),
        )
    )

    t = time.perf_counter()
    n_extra = 200 - data.n_candidates
    for j in range(n_extra):
        src = j % data.n_candidates
        llm = LLMNode(f"extra-{j}", data.candidate_text[src], float(rng.uniform(0.05, 3)), float(rng.uniform(0.05, 3)))
        observed = rng.choice(data.n_queries, size=20, replace=False)
        scorer.register_llm(llm, {data.query_keys[i]: float(data.effect[i, src]) for i in observed})
    reg_s = (time.perf_counter() - t) / n_extra
    for q in feats[:10]:
        warm(q)
    rows.append(
        ("top_k, warm, excluding embedding, task inferred", len(scorer.candidates), summary(timed(warm, feats)))
    )

    lines = [
        "# scorer benchmark",
        "",
        f"`python experiments/bench_scorer.py --router {args.router} --queries {args.queries} "
        f"--threads {args.threads}`, one run, "
        f"{time.strftime('%Y-%m-%d')}. Training on all {data.n_queries:,} queries: **{fit_s:.0f} s**. "
        f"Registering one LLM (20 outcomes) without retraining: {reg_s:.2f} s. Texts are embedded by the "
        f"{embedder.backend} encoder on {embedder.threads} thread(s).",
        "",
        "| what | candidates | median (ms) | p90 (ms) |",
        "|---|---:|---:|---:|",
        *[f"| {what} | {n} | {s} |" for what, n, s in rows],
        "",
        "Targets (issue 3): training < 10 min; top_k excluding the embedding < 2 ms for 9 and < 5 ms for 200.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
