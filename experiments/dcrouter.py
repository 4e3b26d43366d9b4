"""The DESIGN.md benchmark protocol on dcrouter: every router in the registry, official split and 5-fold CV,
three scenarios, two modes (task given / task inferred from the text).

    python experiments/dcrouter.py [--store .graphrouter/graph.db] [--routers all] [--folds 5]

Reads the graph from the store (run ``graphrouter import dcrouter`` first, or ``make demo``), embeds with the
offline all-MiniLM-L6-v2 (cached), and writes experiments/results/dcrouter.md plus a cost–quality plot
experiments/results/dcrouter_official_cost_quality.png. Every model is fitted on the training queries of its split only;
validation for model selection comes from inside the training queries.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graph_store import open_store  # noqa: E402
from graphrouter.embeddings import Embedder  # noqa: E402
from graphrouter.rewards import SCENARIOS, cost_quality_curve, oracle_gap_closed, score_choices  # noqa: E402
from graphrouter.routers import ROUTERS, World  # noqa: E402
from graphrouter.world import build_world  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
MODES = ("given", "inferred")
REFERENCE = "gnn"  # paired differences are reported against this router when it is evaluated


def splits(world: World, n_folds: int, seed: int = 0) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    n = world.data.n_queries
    perm = np.random.default_rng(seed).permutation(n)
    folds = np.array_split(perm, n_folds)
    cv = [(np.sort(np.concatenate(folds[:i] + folds[i + 1 :])), np.sort(folds[i])) for i in range(n_folds)]
    split = world.data.split
    out = {f"cv{n_folds}": cv}
    if (split == "train").any() and (split == "test").any():
        out["official"] = [(np.flatnonzero(split == "train"), np.flatnonzero(split == "test"))]
    return out


def evaluate(world: World, routers: list[str], n_folds: int) -> tuple[dict, dict]:
    """-> scores[(split, router, mode, scenario)] = list of (reward, effect, cost) per fold; curves per router."""
    data = world.data
    cost_norm = data.cost_norm()
    scores: dict[tuple[str, str, str, str], list[tuple[float, float, float]]] = {}
    curves: dict[str, list] = {}
    for split_name, folds in splits(world, n_folds).items():
        for f, (train, test) in enumerate(folds):
            for name in routers:
                t0 = time.perf_counter()
                router = ROUTERS[name]().fit(world, train)
                fit_s = time.perf_counter() - t0
                for mode in MODES:
                    q = world.features(test, task_given=mode == "given")
                    for scen, weights in SCENARIOS.items():
                        s = score_choices(
                            router.choose(q, weights), data.effect[test], data.cost[test], cost_norm[test], weights
                        )
                        scores.setdefault((split_name, name, mode, scen), []).append((s.reward, s.effect, s.cost))
                    if split_name == "official" and mode == "given" and name not in ("random", "cheapest"):
                        curves[name] = _curve(router, q, data, test)
                print(
                    f"{split_name} fold {f} {name:<14} fit {fit_s:6.1f}s  "
                    f"perf(given) {scores[(split_name, name, 'given', 'performance_first')][-1][0]:.4f}",
                    flush=True,
                )
    return scores, curves


def _curve(router, q, data, test):  # type: ignore[no-untyped-def]
    eff_pred = router.utility(q, (1.0, 0.0))
    cost_pred = -router.utility(q, (0.0, 1.0))
    return cost_quality_curve(eff_pred, cost_pred, data.effect[test], data.cost[test])


def tables(scores: dict, routers: list[str]) -> list[str]:
    lines: list[str] = []
    split_names = sorted({k[0] for k in scores}, key=lambda s: s != "official")
    for split_name in split_names:
        n = len(next(v for k, v in scores.items() if k[0] == split_name))
        for mode in MODES:
            title = {
                "official": "official train/test split",
                "seeded": "one seeded 80/20 split (seed 0)",
            }.get(split_name, f"{n}-fold CV over all queries (mean ± std)")
            lines += ["", f"### {title}, task {mode}", ""]
            head = "| router | " + " | ".join(f"{s} reward | effect | cost ($/1k)" for s in SCENARIOS) + " |"
            lines += [head, "|---|" + "---:|" * (3 * len(SCENARIOS))]
            for name in routers:
                cells = []
                for scen in SCENARIOS:
                    arr = np.array(scores[(split_name, name, mode, scen)])
                    r = f"{arr[:, 0].mean():.4f}" + (f" ± {arr[:, 0].std():.4f}" if len(arr) > 1 else "")
                    cells += [r, f"{arr[:, 1].mean():.3f}", f"{1000 * arr[:, 2].mean():.4f}"]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            if split_name != "official" and "oracle" in routers and "best_single" in routers:
                lines.append("")
                perf = {x: np.mean([v[0] for v in scores[(split_name, x, mode, "performance_first")]]) for x in routers}
                for name in routers:
                    gap = oracle_gap_closed(perf[name], perf["best_single"], perf["oracle"])
                    lines.append(
                        f"- {name}: closes {100 * gap:.0f}% of the best-single → oracle gap (Performance First)"
                    )
            if REFERENCE in routers and split_name != "official":
                lines += [
                    "",
                    f"Paired difference {REFERENCE} − router on the same folds (mean ± std over folds):",
                    "",
                    "| router | " + " | ".join(SCENARIOS) + " |",
                    "|---|" + "---:|" * len(SCENARIOS),
                ]
                for name in routers:
                    if name == REFERENCE:
                        continue
                    cells = []
                    for scen in SCENARIOS:
                        d = np.array(
                            [
                                a[0] - b[0]
                                for a, b in zip(
                                    scores[(split_name, REFERENCE, mode, scen)],
                                    scores[(split_name, name, mode, scen)],
                                    strict=True,
                                )
                            ]
                        )
                        cells.append(f"{d.mean():+.4f} ± {d.std():.4f}")
                    lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, pts in curves.items():
        ax.plot([1000 * c for _, c, _ in pts], [e for *_, e in pts], marker=".", label=name)
    ax.set_xlabel("mean cost (USD per 1k queries)")
    ax.set_ylabel("mean effect")
    ax.set_title("dcrouter official test split, task given: routing with weights (1−w, w), w∈[0,1]")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="graph store location (default: as graphrouter CLI)")
    parser.add_argument("--routers", default="all", help="comma-separated names from the registry, or 'all'")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "dcrouter.md")
    args = parser.parse_args()
    routers = list(ROUTERS) if args.routers == "all" else args.routers.split(",")
    unknown = [r for r in routers if r not in ROUTERS]
    if unknown:
        parser.error(f"unknown routers {unknown}; known: {', '.join(ROUTERS)}")

    t0 = time.perf_counter()
    with open_store(args.store, create=False) as store:
        snap = store.snapshot()
    if len(snap.nodes["Query"]) == 0:
        parser.error("the store is empty: run `graphrouter import dcrouter` (or `make demo`) first")
    world = build_world(snap, Embedder(), progress=sys.stderr.isatty())
    print(
        f"world: {world.data.n_queries} queries × {world.data.n_candidates} candidates "
        f"({time.perf_counter() - t0:.0f}s)"
    )
    scores, curves = evaluate(world, routers, args.folds)
    lines = [
        "# dcrouter benchmark",
        "",
        f"`python experiments/dcrouter.py --routers {args.routers} --folds {args.folds}`; reward = mean utility "
        "of the chosen LLM (w_effect · effect − w_cost · cost_norm), cost in USD per 1k queries. "
        f"Total time {time.perf_counter() - t0:.0f}s.",
        *tables(scores, routers),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if curves:
        # (not dcrouter_cost_quality.png: that is the runner's, experiments/cv.py)
        plot(curves, args.out.with_name("dcrouter_official_cost_quality.png"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
