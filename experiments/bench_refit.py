"""What the online learner's refit of a new candidate costs (graphrouter/online.py, OnlineLearner._refit): the next
request after one of its outcomes refits it on its rows and the trained candidates' predictions there.

    python experiments/bench_refit.py [--repeats 7]

Synthetic rows (a refit's cost depends on the number of rows, bases and tasks, not on their values): for each size,
one outcome is observed, then one request is corrected (the refit) and one more (the cached fit). Prints a table and
writes experiments/results/bench_refit.md.
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

from graphrouter.online import OnlineLearner  # noqa: E402
from graphrouter.world import QueryFeatures  # noqa: E402

SIZES = ((20, 8), (50, 8), (250, 30), (1000, 30), (2000, 30))  # (outcome rows of the new candidate, trained bases)
TASKS, DIM = 14, 384


def measure(rows: int, bases: int, repeats: int, rng: np.random.Generator) -> tuple[float, float]:
    """Median ms of (an outcome then the refitting request, a request on the cached fit)."""
    names = [f"llm-{i}" for i in range(bases)] + ["new"]
    emb = rng.normal(size=(rows + 1, DIM)).astype(np.float32)
    learner = OnlineLearner()
    others = {n: rng.random(rows) for n in names[:-1]}
    task = rng.integers(0, TASKS, rows)
    learner.observe("new", [f"q{i}" for i in range(rows)], emb[:rows], task, (rng.random(rows) < 0.6) * 1.0,
                    rng.random(rows), others)  # fmt: skip
    q = QueryFeatures(emb[rows:], np.array([3]), np.array([10.0]))
    effect, trained = rng.random((1, bases + 1)), np.r_[np.full(bases, 5000.0), 0.0]
    refit, cached = [], []
    for r in range(repeats):
        one = {n: np.array([0.5]) for n in names[:-1]}
        t0 = time.perf_counter()
        learner.observe("new", [f"extra{r}"], emb[rows:], np.array([3]), np.array([1.0]), np.array([0.5]), one)
        learner.adjust(names, q, effect, trained)
        refit.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        learner.adjust(names, q, effect, trained)
        cached.append(1000 * (time.perf_counter() - t0))
    return statistics.median(refit), statistics.median(cached)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    lines = [
        "# The online refit of a new candidate",
        "",
        f"`python experiments/bench_refit.py --repeats {args.repeats}`: {TASKS} tasks, {DIM}-d embeddings, synthetic "
        "rows; median over repeats, on a shared 2-core machine. The refit does not depend on the stored queries.",
        "",
        "| its outcome rows | trained bases | outcome + refitting request (ms) | request on the cached fit (ms) |",
        "|---:|---:|---:|---:|",
    ]
    for rows, bases in SIZES:
        refit, cached = measure(rows, bases, args.repeats, rng)
        lines.append(f"| {rows:,} | {bases} | {refit:.1f} | {cached:.2f} |")
    text = "\n".join(lines) + "\n"
    out = ROOT / "experiments" / "results" / "bench_refit.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
