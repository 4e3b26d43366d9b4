"""Why a registered LLM loses reward on the new-LLM protocol: where it is routed and how it does there.

    python experiments/new_llm_why.py --store .graphrouter/dcrouter.db --cache .graphrouter/fits \
        --withhold llama-3.1-nemotron-51b-instruct --withhold qwen2.5-7b-instruct

For each withheld LLM (official split, Performance First, task given; the runner's GNN fits, from ``--cache`` when
there), after registering it with k random or designed probes: how many test queries go to it, its observed effect
there against what known-only routing got on them, the net gain in queries, and its mean predicted effect over the
test queries against its true mean. A diagnosis of the runner's recovered shares, read on the test split; nothing
here is chosen from it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.benchmark import fit_gnn, load, splits  # noqa: E402
from experiments.cv import masked_choice  # noqa: E402
from experiments.new_llm import register  # noqa: E402
from graphrouter.embeddings import Embedder  # noqa: E402
from graphrouter.rewards import SCENARIOS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True)
    p.add_argument("--cache", default=None, help="the runner's --cache of fitted GNNs")
    p.add_argument("--withhold", action="append", required=True)
    p.add_argument("--runs", default="20:random,20:designed,50:random,50:designed")
    args = p.parse_args()
    opts = argparse.Namespace(
        dataset="dcrouter", store=args.store, gnn_seeds="0", gnn_max_episodes=120, cache=args.cache,
    )  # fmt: skip
    world, nodes, _ = load(opts)
    data = world.data
    train, test = splits(world, "official", 5)[0]
    embedder, w = Embedder(), SCENARIOS["performance_first"]
    q, eff, rows = world.features(test, task_given=True), data.effect[test], np.arange(len(test))
    print("| withheld | k | probes | routed to it | its effect there | known-only's there | net gain (queries) "
          "| predicted mean | true mean |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for name in args.withhold:
        j = data.candidates.index(name)
        known = np.array([i for i in range(data.n_candidates) if i != j])
        tag = hashlib.sha256(name.encode()).hexdigest()[:10]
        base = fit_gnn(world.select_candidates(known), train, opts, f"without-{tag}")
        only = known[masked_choice(base.utility(q, w), eff[:, known])]
        cols = np.r_[known, j]
        for run in args.runs.split(","):
            k, how = run.split(":")
            router = register(base, world, nodes, (name,), int(k), how, train, 0, embedder)
            chosen = cols[masked_choice(router.utility(q, w), eff[:, cols])]
            to_new = chosen == j
            gain = np.nansum(eff[rows, chosen] - eff[rows, only])
            there = f"{eff[to_new, j].mean():.3f}" if to_new.any() else "—"
            known_there = f"{eff[rows, only][to_new].mean():.3f}" if to_new.any() else "—"
            predicted = router.predict_effect(q)[:, len(known)].mean()
            print(
                f"| {name} | {k} | {how} | {to_new.sum()} of {len(test)} | {there} | {known_there} | {gain:+.0f} "
                f"| {predicted:.3f} | {np.nanmean(eff[:, j]):.3f} |"
            )


if __name__ == "__main__":
    main()
