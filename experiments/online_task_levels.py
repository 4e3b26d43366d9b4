"""Why a new LLM's traffic share fell after its quiz (the per-task quiz's evidence): one replay stream of
``experiments/online.py`` (online updates and exploration, Performance First), with the per-task quiz off and on, and at
the end of the stream, per task, the new LLM's outcomes learned online and its predicted effect against its true mean
on held-out pool queries (not in the stream).

    python experiments/online_task_levels.py --dataset mmlu-pro --store <MMLU-Pro store> [--seed 0]
        [--world-cache F] [--fit-cache DIR]

Writes experiments/results/online_task_levels_<dataset>.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from online import (  # noqa: E402
    NEW_LLM,
    RESULTS,
    WorldEmbedder,
    fitted_gnn,
    load_world,
    make_scorer,
    replay,
    split_queries,
)

from graphrouter.exploration import TASK_QUIZ  # noqa: E402
from graphrouter.online_priors import Priors  # noqa: E402
from graphrouter.rewards import SCENARIOS  # noqa: E402
from graphrouter.routers.gnn import GnnRouter  # noqa: E402

SCENARIO, STREAM, REGISTER_AT, HELD = "performance_first", 2300, 300, 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(NEW_LLM), required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world-cache", type=Path, default=None)
    parser.add_argument("--fit-cache", type=Path, default=None, help="experiments/online.py's --fit-cache (reused)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    world, nodes = load_world(args.store, args.world_cache)
    data = world.data
    train, _, pool = split_queries(world, 0.4, 0.1)  # experiments/online.py's defaults
    new_name = NEW_LLM[args.dataset]
    new_col = data.candidates.index(new_name)
    known = np.array([c for c in range(data.n_candidates) if c != new_col])
    base, _ = fitted_gnn(  # the GNN online.py fits without the new LLM (one member, seed 0)
        args.fit_cache,
        args.dataset,
        "known",
        0.4,
        "0",
        lambda: GnnRouter(seeds=(0,)).fit(world.select_candidates(known), train),
    )
    order = np.random.default_rng(args.seed).permutation(pool)
    stream, held = order[:STREAM], order[STREAM : STREAM + HELD]
    embedder = WorldEmbedder(world, "replay")
    priors = Priors(candidate=1e4, task=1e4, neighbours=1e4)  # trained LLMs uncorrected, as validated in online.py
    truth = data.effect[held, new_col]
    tasks = data.query_task[held]
    lines = [
        f"# {new_name} on {args.dataset}: per-task levels after one replay stream (seed {args.seed})",
        "",
        f"`python experiments/online_task_levels.py --dataset {args.dataset} --store <store> --seed {args.seed}`",
        "",
        f"One stream of {STREAM} pool queries in Performance First ({new_name} registered from its description before "
        f"query {REGISTER_AT}, online updates and exploration, share 0.1), then on {HELD} other pool queries: per "
        "task its outcomes learned online, its predicted effect (mean) and its true mean effect there.",
        "",
    ]
    for task_quiz in (0, TASK_QUIZ):
        scorer = make_scorer(base, embedder, priors, 0.1, args.seed, task_quiz)
        picks, _, _ = replay(scorer, world, stream, SCENARIO, True, True, nodes[new_name], REGISTER_AT)
        router = scorer.router
        q = world.features(held)
        scores = router.score(q, SCENARIOS[SCENARIO])
        j = list(router.candidates).index(new_name)
        pred = scores.effect[:, j]
        n_task = [scorer.online.counts([new_name], t)[0] for t in range(len(data.task_names))]
        share = float((picks[-500:] == new_col).mean())
        held_share = float((np.array(router.candidates)[scores.utility.argmax(1)] == new_name).mean())
        lines += [
            f"## task_quiz = {task_quiz}",
            "",
            f"Share of the last 500 stream queries {share:.3f}; of the held queries' argmax {held_share:.3f}; "
            f"predicted {pred.mean():.3f} against a true {truth.mean():.3f} on them.",
            "",
            "| task | outcomes learned online | held queries | predicted | true |",
            "|---|---:|---:|---:|---:|",
        ]
        for t, name in enumerate(data.task_names):
            sel = tasks == t
            if sel.any():
                lines.append(
                    f"| {name} | {n_task[t]:.0f} | {sel.sum()} | {pred[sel].mean():.3f} | {truth[sel].mean():.3f} |"
                )
        lines.append("")
        print(f"task_quiz {task_quiz}: last-500 share {share:.3f}", flush=True)
    out = RESULTS / f"online_task_levels_{args.dataset}.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
