"""How much k outcomes can say about a new LLM: its lead over the strongest other LLMs, against the noise of k outcomes.

    python experiments/new_llm_information.py --dataset mmlu_pro --store .graphrouter/mmlu_pro.db \
        --split seeded --withhold gpt-4o-2024-05-13

Read on the training queries of the split only (the runner's split; nothing here is chosen from it). For the withheld
LLM against each of the 5 strongest others: the mean paired difference of their 0/1 effects on the queries both
answered, its standard deviation, and for k = 20 and 50 outcomes the standard error of a k-query paired mean with
the chance that its sign is right (normal approximation). Then, per task, the withheld LLM's mean against the best
other LLM's there. Prints a markdown table and writes ``experiments/results/<dataset>_new_llm_information.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.benchmark import load, splits, store_arguments  # noqa: E402

KS = (20, 50)


def sign_right(mean: float, se: float) -> float:
    """P(a paired mean with standard error ``se`` has the sign of ``mean``), normal approximation."""
    return 0.5 * (1.0 + math.erf(abs(mean) / se / math.sqrt(2.0))) if se > 0 else 1.0


def tables(effect: np.ndarray, task: np.ndarray, names: list[str], task_names: list[str], new: int) -> list[str]:
    """The markdown tables for candidate ``new`` over ``effect`` (n, C) 0/1 outcomes (NaN: not answered)."""
    mean = np.nanmean(effect, 0)
    others = [c for c in np.argsort(-mean) if c != new][:5]
    lines = [
        f"{names[new]}: mean effect {mean[new]:.4f} on {np.isfinite(effect[:, new]).sum():,} training queries.",
        "",
        "| other LLM | its mean | paired difference | sd | "
        + " | ".join(f"k={k}: se, P(sign right)" for k in KS)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(KS),
    ]
    for c in others:
        both = np.isfinite(effect[:, new]) & np.isfinite(effect[:, c])
        diff = effect[both, new] - effect[both, c]
        m, sd = float(diff.mean()), float(diff.std())
        cells = [f"{sd / math.sqrt(k):.3f}, {sign_right(m, sd / math.sqrt(k)):.2f}" for k in KS]
        lines.append(f"| {names[c]} | {mean[c]:.4f} | {m:+.4f} | {sd:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "| task | queries | it | best other there | its mean | difference |", "|---|---:|---:|---|---:|---:|"]
    for t, name in enumerate(task_names):
        rows = task == t
        if not rows.any():
            continue
        per = np.nanmean(effect[rows], 0)
        best = max((c for c in range(len(names)) if c != new and np.isfinite(per[c])), key=lambda c: per[c])
        gap = per[new] - per[best]
        lines.append(f"| {name} | {rows.sum():,} | {per[new]:.3f} | {names[best]} | {per[best]:.3f} | {gap:+.3f} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    store_arguments(p)
    p.add_argument("--split", default="seeded", help="official | seeded (the runner's; its training queries are read)")
    p.add_argument("--withhold", required=True, help="the new LLM")
    args = p.parse_args()
    t0 = time.perf_counter()
    world, _, _ = load(args)
    data = world.data
    if args.withhold not in data.candidates:
        raise SystemExit(f"unknown LLM {args.withhold!r}; known: {', '.join(data.candidates)}")
    train, _ = splits(world, args.split, 5)[0]
    body = tables(
        np.asarray(data.effect[train], dtype=float),
        data.query_task[train],
        list(data.candidates),
        list(data.task_names),
        data.candidates.index(args.withhold),
    )
    command = "python experiments/new_llm_information.py " + " ".join(sys.argv[1:])
    text = "\n".join(
        [f"# {args.dataset}: what k outcomes can tell about {args.withhold}", "", f"`{command}`", "", *body, ""]
        + [f"Training queries of the {args.split} split only. {time.perf_counter() - t0:.0f} s.", ""]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.dataset}_new_llm_information.md"
    path.write_text(text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
