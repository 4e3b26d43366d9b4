"""Register with 20 outcomes → routable while many registered candidates already hold fresh outcomes.

    python experiments/bench_fresh.py --checkpoint .graphrouter/checkpoint.pt [--size 30000] [--counts 0,50,200]

The fit from outcomes (:mod:`graphrouter.routers.gnn.fit`) used to refit every candidate with fresh outcomes on each
change, so a registration's cost grew with their number. A patched change (registration, outcomes, deletion) now
refits the changed candidates only; the others keep their installed correction until the background refresh refits
them all.
This bench reattaches the checkpoint's GNN to ``--size`` stored queries (``bench_api.grow``), registers candidates
with 20 outcomes each up to every count of ``--counts``, and times (median of ``--reps``, each from exact caches)
one more registration with 20 outcomes (through :class:`~graphrouter.scorer.Scorer`, until routable), 20 more
outcomes of it, and its deletion. Writes experiments/results/bench_fresh.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.bench_api import grow  # noqa: E402
from graph_store import LLMNode  # noqa: E402
from graphrouter.checkpoint import load_checkpoint  # noqa: E402
from graphrouter.scorer import Scorer  # noqa: E402
from tests.hash_embedder import HashEmbedder  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "bench_fresh.md"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(ROOT / ".graphrouter" / "checkpoint.pt"))
    p.add_argument("--size", type=int, default=30_000, help="stored queries")
    p.add_argument("--counts", default="0,50,200", help="registered candidates with outcomes before timing")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    router = ckpt.router
    router.reattach(grow(router.world, args.size))
    scorer = Scorer(ckpt, HashEmbedder(router.world))  # the text embedding is not what is measured
    keys = router.world.data.query_keys
    rng = np.random.default_rng(0)

    def outcomes() -> dict[str, float]:
        return {keys[i]: float(rng.random() < 0.7) for i in rng.choice(len(keys), size=20, replace=False)}

    rows, registered = [], 0
    for count in (int(c) for c in args.counts.split(",")):
        for _ in range(count - registered):
            scorer.register_llm(LLMNode(f"fresh-{registered}", "a general model", 0.2, 0.4), outcomes())
            registered += 1
        reg, more, delete = [], [], []
        for j in range(args.reps):
            router.wait_exact(600)
            name = f"timed-{count}-{j}"
            t = time.perf_counter()
            scorer.register_llm(LLMNode(name, "a general model", 0.2, 0.4), outcomes())
            scorer.top_k("what is the derivative of x squared", k=1, candidates=[name])  # routable
            reg.append(1000 * (time.perf_counter() - t))
            router.wait_exact(600)
            t = time.perf_counter()
            scorer.add_outcomes(name, outcomes())
            more.append(1000 * (time.perf_counter() - t))
            router.wait_exact(600)
            t = time.perf_counter()
            scorer.remove_candidate(name)
            delete.append(1000 * (time.perf_counter() - t))
        med = statistics.median
        rows.append((count, med(reg), max(reg), med(more), med(delete)))
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# Registering beside many candidates with fresh outcomes",
            "",
            f"`python experiments/bench_fresh.py --checkpoint {args.checkpoint} --size {args.size} --counts "
            f"{args.counts}`, {time.strftime('%Y-%m-%d')}, this 2-core machine, torch on 1 thread: a "
            f"{len(router.members)}-member GNN reattached to {args.size:,} stored queries. Times in ms, median of "
            f"{args.reps} (and the worst registration), each from exact caches.",
            "",
            "| registered candidates with 20 outcomes | register with 20 outcomes → routable | worst "
            "| 20 more outcomes of it | delete it |",
            "|---:|---:|---:|---:|---:|",
            *[f"| {c} | {r:.0f} | {w:.0f} | {m:.0f} | {d:.0f} |" for c, r, w, m, d in rows],
            "",
        ]
    )
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
