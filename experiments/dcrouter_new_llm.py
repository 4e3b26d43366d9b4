"""DESIGN.md's new-LLM protocol on dcrouter: train the GNN with some LLMs withheld, then register them through the
scorer (the code path the API uses) with k ∈ {0, 5, 20, 50} observed training outcomes each, without retraining,
and route over all 9 LLMs on the official test split.

    python experiments/dcrouter_new_llm.py [--store .graphrouter/graph.db] [--ks 0,5,20,50]

Compared with (a) the GNN retrained with all 9 LLMs and (b) routing among the known LLMs only. Writes
experiments/results/dcrouter_new_llm.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graph_store import LLM, open_store  # noqa: E402
from graphrouter.checkpoint import Checkpoint  # noqa: E402
from graphrouter.embeddings import Embedder  # noqa: E402
from graphrouter.rewards import SCENARIOS, score_choices  # noqa: E402
from graphrouter.routers import ROUTERS, World  # noqa: E402
from graphrouter.scorer import Scorer  # noqa: E402
from graphrouter.world import build_world  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "dcrouter_new_llm.md"
WITHHELD = [
    ("llama-3.1-nemotron-51b-instruct",),  # the best single LLM
    ("qwen2.5-7b-instruct",),
    ("llama3-chatqa-1.5-8b",),  # a weak one
    ("llama-3.1-nemotron-51b-instruct", "qwen2.5-7b-instruct"),
]
MODES = ("given", "inferred")
MARGINS = (0.0, 1.0)  # GnnRouter.uncertainty_margin: 0 = plain argmax; 1 = the research's validation pick


def rewards(world: World, router, test: np.ndarray, columns: np.ndarray) -> dict[tuple[str, str], float]:  # type: ignore[no-untyped-def]
    """Reward per (mode, scenario) of routing test queries; router column j is world candidate columns[j]."""
    data, cn = world.data, world.data.cost_norm()
    out = {}
    for mode in MODES:
        q = world.features(test, task_given=mode == "given")
        for scen, w in SCENARIOS.items():
            ch = columns[router.choose(q, w)]
            out[(mode, scen)] = score_choices(ch, data.effect[test], data.cost[test], cn[test], w).reward
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None)
    parser.add_argument("--ks", default="0,5,20,50")
    parser.add_argument("--router", default="gnn")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    t0 = time.perf_counter()
    embedder = Embedder()
    with open_store(args.store, create=False) as store:
        world = build_world(store.snapshot(), embedder)
        llm_nodes = {n.key: n for n in store.list_nodes(LLM)}
    data = world.data
    train, test = np.flatnonzero(data.split == "train"), np.flatnonzero(data.split == "test")
    everyone = np.arange(data.n_candidates)
    retrained = ROUTERS[args.router]().fit(world, train)
    ref = rewards(world, retrained, test, everyone)
    print(f"retrained with all {data.n_candidates}: {ref} ({time.perf_counter() - t0:.0f}s)", flush=True)

    rows = []
    rng = np.random.default_rng(0)
    for withheld in WITHHELD:
        out_idx = np.array([data.candidates.index(n) for n in withheld])
        known = np.array([i for i in everyone if i not in out_idx])
        t1 = time.perf_counter()
        base = ROUTERS[args.router]().fit(world.select_candidates(known), train)
        fit_s = time.perf_counter() - t1
        rows.append((withheld, "known only", rewards(world, base, test, known), fit_s))
        if not hasattr(base, "uncertainty_margin"):
            raise SystemExit(f"router {args.router!r} cannot register candidates without retraining")
        for k in ks:
            router = copy.deepcopy(base)
            scorer = Scorer(Checkpoint(router, embedder.model_name, "", "experiment"), embedder)
            t2 = time.perf_counter()
            for j in out_idx:
                observed = rng.choice(train, size=k, replace=False) if k else np.array([], dtype=int)
                outcomes = {data.query_keys[i]: float(data.effect[i, j]) for i in observed}
                scorer.register_llm(llm_nodes[data.candidates[j]], outcomes)  # type: ignore[arg-type]
            reg_s = (time.perf_counter() - t2) / len(out_idx)
            for margin in MARGINS:
                router.uncertainty_margin = margin
                r = rewards(world, router, test, np.r_[known, out_idx])
                rows.append((withheld, f"k={k}, margin {margin:g}", r, reg_s))
        print(f"withheld {withheld}: done ({time.perf_counter() - t0:.0f}s)", flush=True)

    lines = [
        "# dcrouter: new LLMs registered without retraining",
        "",
        f"`python experiments/dcrouter_new_llm.py --ks {args.ks}`: official split (train 5,608 / test 500), router "
        f"`{args.router}`. Withheld LLMs are absent from training entirely; each is then registered through "
        "`Scorer.register_llm` with k observed outcomes on random training queries. Reward over all 9 LLMs; "
        "'% retrained' = reward / reward of the router retrained with all 9 (Performance First, task given). "
        "'margin c' subtracts c/√(1 + observed outcomes) from a candidate's predicted effect when routing. "
        f"Total {time.perf_counter() - t0:.0f}s.",
        "",
        "| withheld | registration | "
        + " | ".join(f"{s} ({m})" for m in MODES for s in SCENARIOS)
        + " | % retrained | fit or register (s) |",
        "|---|---|" + "---:|" * (2 * len(SCENARIOS) + 2),
        "| — | retrained with all 9 | "
        + " | ".join(f"{ref[(m, s)]:.4f}" for m in MODES for s in SCENARIOS)
        + " | 100% | |",
    ]
    for withheld, how, r, secs in rows:
        pct = 100 * r[("given", "performance_first")] / ref[("given", "performance_first")]
        lines.append(
            f"| {', '.join(withheld)} | {how} | "
            + " | ".join(f"{r[(m, s)]:.4f}" for m in MODES for s in SCENARIOS)
            + f" | {pct:.1f}% | {secs:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
