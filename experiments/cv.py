"""The runner's ``cv`` protocol (experiments/evaluate.py): every router on the same folds, task given and inferred,
three scenarios; paired differences against the GNN, the share of the best-single → oracle gap each closes,
calibration (Brier, reliability), a cost–quality curve per data set, the GNN's per-task fallback per fold, and the
wall time of every fit. Writes the markdown lines; the PNGs go beside it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from experiments.dcrouter import tables
from experiments.quality import (
    NOT_PREDICTORS,
    Reliability,
    brier,
    calibration_lines,
    curve_point,
    curve_weights,
    plot_cost_quality,
    plot_reliability,
)
from graphrouter.rewards import SCENARIOS, oracle_gap_closed, score_choices
from graphrouter.routers import ROUTERS, Router, World

MODES = ("given", "inferred")
RELIABILITY_PLOTTED = ("gnn", "mlp", "mf", "knn", "knn_task", "best_per_task")
TOP5 = "oracle_top5"


def masked_choice(utility: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """The argmax of ``utility`` per row among the candidates whose outcome on the query was observed (MMLU-Pro
    lacks 1,880 pairs: no router is scored on an outcome that does not exist)."""
    return np.argmax(np.where(np.isfinite(effect), utility, -np.inf), axis=1)


def run_cv(
    dataset: str,
    world: World,
    folds: list[tuple[np.ndarray, np.ndarray]],
    routers: list[str],
    label: str,
    fit_gnn: Callable[[np.ndarray], Router],
    out: Path,
) -> list[str]:
    """Every router of ``routers`` fitted on each fold's training queries (the GNN through ``fit_gnn``), scored on
    its test queries; returns the markdown lines and writes ``<dataset>_reliability.png`` and
    ``<dataset>_cost_quality.png`` into ``out``."""
    data = world.data
    cost_norm = data.cost_norm()
    weights = curve_weights()
    scores: dict[tuple[str, str, str, str], list[tuple[float, float, float]]] = {}
    briers: dict[tuple[str, str], list[float]] = {}
    reliability: dict[str, Reliability] = {}
    curves: dict[str, np.ndarray] = {}  # router -> (folds, weights, 2) mean effect and cost
    fit_s: dict[str, list[float]] = {}
    fallback: list[str] = []
    bar = tqdm([(f, n) for f in range(len(folds)) for n in routers], desc="cv", unit="fit", file=sys.stderr)
    for f, name in bar:
        train, test = folds[f]
        bar.set_postfix_str(f"fold {f} {name}")
        t0 = time.perf_counter()
        router = fit_gnn(train) if name == "gnn" else ROUTERS[name]().fit(world, train)
        fit_s.setdefault(name, []).append(time.perf_counter() - t0)
        if name == "gnn":
            fallback.append(f"- fold {f}: {_fallback_note(router)}")
        eff, cost, cn = data.effect[test], data.cost[test], cost_norm[test]
        for mode in MODES:
            q = router.task_inferer.fill(world.features(test, task_given=mode == "given"))
            one = router.score(q, SCENARIOS["performance_first"])  # effects and costs predicted once per mode

            def utility(w: tuple[float, float], router: Router = router, q=q, one=one) -> np.ndarray:  # type: ignore[no-untyped-def]
                return router.combine(q, one.effect, one.cost_norm, w)

            for scen, w in SCENARIOS.items():
                s = score_choices(masked_choice(utility(w), eff), eff, cost, cn, w)
                scores.setdefault((label, name, mode, scen), []).append((s.reward, s.effect, s.cost))
            if name not in NOT_PREDICTORS:
                briers.setdefault((name, mode), []).append(brier(one.effect, eff))
                if mode == "given":
                    reliability.setdefault(name, Reliability()).add(one.effect, eff)
            if mode == "given" and name != "random":
                pts = [curve_point(masked_choice(utility(w), eff), eff, cost) for w in weights]
                curves.setdefault(name, []).append(pts)
    bar.close()
    extra = []
    if data.n_candidates > 10:  # the oracle over the 5 LLMs of highest training mean (the all-LLM one is inflated)
        for train, test in folds:
            top = np.argsort(-np.nanmean(data.effect[train], 0))[:5]
            eff, cost, cn = data.effect[test], data.cost[test], cost_norm[test]

            def top_choice(w: tuple[float, float], top=top, eff=eff, cn=cn) -> np.ndarray:  # type: ignore[no-untyped-def]
                u = w[0] * eff[:, top] - w[1] * cn[:, top]
                return top[np.argmax(np.nan_to_num(u, nan=-np.inf), 1)]

            for scen, w in SCENARIOS.items():
                s = score_choices(top_choice(w), eff, cost, cn, w)
                for mode in MODES:
                    scores.setdefault((label, TOP5, mode, scen), []).append((s.reward, s.effect, s.cost))
            curves.setdefault(TOP5, []).append([curve_point(top_choice(w), eff, cost) for w in weights])
        extra = [TOP5]
    names = routers + extra
    lines = tables(scores, names)
    lines += targets(scores, names, label)
    lines += calibration_lines(briers, reliability, routers)
    n_test = sum(len(t) for _, t in folds)
    title = f"{dataset}, {label}, task given ({n_test:,} test queries over the folds)"
    plotted = {r: reliability[r] for r in RELIABILITY_PLOTTED if r in reliability}
    if plotted:
        b = {r: float(np.mean(briers[(r, "given")])) for r in plotted}
        plot_reliability(plotted, b, f"reliability: {title}", out / f"{dataset}_reliability.png")
        lines += ["", f"![reliability]({dataset}_reliability.png)"]
    mean_curves = {r: [tuple(p) for p in np.mean(np.array(c), 0)] for r, c in curves.items()}
    plot_cost_quality(
        mean_curves,
        f"cost–quality: {title}\nweights (w_effect, w_cost) from (1, 0) to (0.2, 0.8), {len(weights)} points",
        out / f"{dataset}_cost_quality.png",
    )
    lines += [
        "",
        "### Cost–quality curve (task given, mean over folds)",
        "",
        f"Routing with {len(weights)} weights (w_effect, w_cost) on the line from Performance First (1, 0) to Cost "
        "First (0.2, 0.8); mean effect and mean cost (USD per 1k queries) of the chosen candidates.",
        "",
        f"![cost-quality]({dataset}_cost_quality.png)",
        "",
        "<details><summary>the points (effect @ $/1k)</summary>",
        "",
        "| router | " + " | ".join(f"w_cost {w[1]:.2f}" for w in weights[::2]) + " |",
        "|---|" + "---:|" * len(weights[::2]),
    ]
    for r, pts in mean_curves.items():
        lines.append(f"| {r} | " + " | ".join(f"{e:.3f} @ {1000 * c:.3f}" for e, c in pts[::2]) + " |")
    lines += ["", "</details>"]
    if fallback:
        lines += ["", "### The GNN's per-task fallback (chosen on validation splits of each fold's training set)", ""]
        lines += fallback
    lines += ["", "### Wall time of each fit (seconds)", "", "| router | mean per fold | total |", "|---|---:|---:|"]
    lines += [f"| {r} | {np.mean(s):.1f} | {np.sum(s):.0f} |" for r, s in fit_s.items()]
    return lines


def _fallback_note(router: Router) -> str:
    fb = getattr(router, "fallback", None)
    return "no fallback (disabled)" if fb is None else fb.describe()


def targets(scores: dict, names: list[str], label: str) -> list[str]:
    """The issue's bar, checked: the GNN's paired difference to every baseline (mean ≥ 0 in every scenario, mean >
    std in Performance First and Balance), and the share of the best-single → oracle-top5 gap it closes."""
    if "gnn" not in names:
        return []
    baselines = [n for n in names if n not in ("gnn", "oracle", TOP5)]
    lines = ["", "### Against the bar (issue 11)", ""]
    for mode in MODES:
        misses = []
        for scen in SCENARIOS:
            for b in baselines:
                gnn, other = scores[(label, "gnn", mode, scen)], scores[(label, b, mode, scen)]
                d = np.array([g[0] - x[0] for g, x in zip(gnn, other, strict=True)])
                if d.mean() < 0 or (scen != "cost_first" and len(d) > 1 and d.mean() <= d.std()):
                    misses.append(f"{scen} vs {b}: {d.mean():+.4f} ± {d.std():.4f}")
        verdict = "met" if not misses else f"missed in {len(misses)} cell(s): " + "; ".join(misses)
        lines.append(f"- task {mode}: every paired mean ≥ 0 (and > std in Performance First, Balance): {verdict}")
        if TOP5 in names:
            perf = {
                n: float(np.mean([v[0] for v in scores[(label, n, mode, "performance_first")]]))
                for n in ("gnn", "best_single", "best_per_task", TOP5)
                if (label, n, mode, "performance_first") in scores
            }
            for n in ("gnn", "best_per_task"):
                if n in perf and "best_single" in perf and perf[TOP5] <= perf["best_single"]:
                    lines.append("  - no gap to close: the best single LLM is as good as the oracle over the top 5")
                    break
                if n in perf and "best_single" in perf:
                    gap = oracle_gap_closed(perf[n], perf["best_single"], perf[TOP5])
                    lines.append(
                        f"  - {n} closes {100 * gap:.1f}% of the best single ({perf['best_single']:.4f}) → "
                        f"oracle over the top 5 ({perf[TOP5]:.4f}) gap in Performance First ({perf[n]:.4f})"
                    )
    return lines
