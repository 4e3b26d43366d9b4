"""What the CV runner measures beyond rewards: calibration of effect predictions, cost–quality curves, plots.

* :func:`brier` and :class:`Reliability`: the Brier score of a router's predicted effects against the observed
  effects of the test queries (every observed query × candidate pair), and a reliability table over 10 equal-width
  bins of the prediction (mean predicted, mean observed, count), accumulated over folds;
* :func:`curve_weights` and :func:`curve_point`: routing with weights swept from Performance First (1, 0) to Cost
  First (0.2, 0.8) of :data:`graphrouter.rewards.SCENARIOS`, and the mean effect and cost of what was chosen;
* :func:`plot_reliability`, :func:`plot_cost_quality`: PNGs with matplotlib's headless Agg backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphrouter.rewards import SCENARIOS

N_BINS = 10
N_WEIGHTS = 15
# routers whose "effect" is not a prediction of the effect (random numbers, zeros, the observed outcome itself)
NOT_PREDICTORS = frozenset({"random", "cheapest", "oracle"})


def brier(pred: np.ndarray, observed: np.ndarray) -> float:
    """Mean squared error of predicted effects on the observed pairs (NaN in ``observed``: not observed)."""
    mask = np.isfinite(observed)
    return float(np.mean((np.clip(pred[mask], 0.0, 1.0) - observed[mask]) ** 2))


@dataclass
class Reliability:
    """Sums per bin of the prediction over [0, 1] (10 equal-width bins), accumulated over folds."""

    pred: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS))
    obs: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS))
    count: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, dtype=np.int64))

    def add(self, pred: np.ndarray, observed: np.ndarray) -> None:
        mask = np.isfinite(observed) & np.isfinite(pred)
        p, y = np.clip(pred[mask], 0.0, 1.0), observed[mask]
        b = np.minimum((p * N_BINS).astype(int), N_BINS - 1)
        self.pred += np.bincount(b, p, N_BINS)
        self.obs += np.bincount(b, y, N_BINS)
        self.count += np.bincount(b, minlength=N_BINS)

    def rows(self) -> list[tuple[float, float, float, int]]:
        """(bin start, mean predicted, mean observed, count) of every non-empty bin."""
        n = np.maximum(self.count, 1)
        return [
            (i / N_BINS, float(self.pred[i] / n[i]), float(self.obs[i] / n[i]), int(self.count[i]))
            for i in range(N_BINS)
            if self.count[i]
        ]

    def ece(self) -> float:
        """Expected calibration error: count-weighted mean |mean predicted − mean observed| over the bins."""
        total = self.count.sum()
        return float(sum(c * abs(p - o) for _, p, o, c in self.rows()) / total) if total else float("nan")


def curve_weights(n: int = N_WEIGHTS) -> list[tuple[float, float]]:
    """``n`` (w_effect, w_cost) on the straight line from Performance First to Cost First."""
    (e0, c0), (e1, c1) = SCENARIOS["performance_first"], SCENARIOS["cost_first"]
    return [(e0 + t * (e1 - e0), c0 + t * (c1 - c0)) for t in np.linspace(0.0, 1.0, n)]


def curve_point(choice: np.ndarray, effect: np.ndarray, cost: np.ndarray) -> tuple[float, float]:
    """(mean effect, mean cost in USD) of one chosen candidate per row of the (Q, C) outcome matrices."""
    rows = np.arange(len(choice))
    return float(effect[rows, choice].mean()), float(cost[rows, choice].mean())


def calibration_lines(
    brier_scores: dict[tuple[str, str], list[float]], reliability: dict[str, Reliability], routers: list[str]
) -> list[str]:
    """The markdown: Brier per router and mode (mean ± std over folds), ECE, and each router's reliability table."""
    lines = [
        "",
        "### Calibration of the predicted effects (test queries, every observed query × candidate pair)",
        "",
        "Brier score = mean (predicted effect − observed effect)²; lower is better. ECE: count-weighted |mean "
        "predicted − mean observed| over 10 equal-width bins (task given, pooled over folds).",
        "",
        "| router | Brier (task given) | Brier (task inferred) | ECE (task given) |",
        "|---|---:|---:|---:|",
    ]
    names = [r for r in routers if (r, "given") in brier_scores]
    for r in names:
        cells = []
        for mode in ("given", "inferred"):
            v = np.array(brier_scores.get((r, mode), [np.nan]))
            cells.append(f"{v.mean():.4f} ± {v.std():.4f}")
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {reliability[r].ece():.4f} |")
    lines += ["", "<details><summary>reliability tables (task given, pooled over folds)</summary>", ""]
    for r in names:
        lines += [f"**{r}**", "", "| bin | mean predicted | mean observed | count |", "|---|---:|---:|---:|"]
        for start, p, o, c in reliability[r].rows():
            lines.append(f"| {start:.1f}–{start + 1 / N_BINS:.1f} | {p:.3f} | {o:.3f} | {c:,} |")
        lines.append("")
    lines += ["</details>"]
    return lines


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on a server
    import matplotlib.pyplot as plt

    return plt


def plot_reliability(
    reliability: dict[str, Reliability], brier_given: dict[str, float], title: str, path: Path
) -> None:
    """A reliability diagram: mean observed against mean predicted per bin, one line per router."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, rel in reliability.items():
        rows = rel.rows()
        ax.plot(
            [p for _, p, _, _ in rows],
            [o for _, _, o, _ in rows],
            marker="o",
            label=f"{name} (Brier {brier_given[name]:.4f})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted effect (10 equal-width bins)")
    ax.set_ylabel("mean observed effect")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_cost_quality(curves: dict[str, list[tuple[float, float]]], title: str, path: Path) -> None:
    """Mean effect against mean cost (USD per 1k queries), one line per router (references dashed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, pts in curves.items():
        ref = name in ("oracle", "oracle_top5", "best_single")
        ax.plot(
            [1000 * c for _, c in pts],
            [e for e, _ in pts],
            marker="." if not ref else None,
            linestyle="--" if ref else "-",
            linewidth=2.0 if name == "gnn" else 1.2,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel("mean cost (USD per 1k queries, log scale)")
    ax.set_ylabel("mean effect")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
