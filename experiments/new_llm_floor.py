"""The floor of issue 10, on the runner's own draws: a registered LLM's effect is the plain per-task mean of its k
random outcomes, shrunk to their overall mean, instead of the GNN's fit.

The issue names it "the floor any onboarding method here must clear" (it quotes 39% of the gap recovered with
gpt-4o withheld from MMLU-Pro). The runner measures it beside the GNN on the same split, the same withheld sets and
the same random probe rows: the GNN router with the LLM registered from those k outcomes routes the known LLMs as
always (their utility, penalty included) and prices the new one as always (its predicted normalised cost), but the
new LLM's effect is its table entry, with no uncertainty penalty — a table is only what a user would write down from
20 outcomes. ``SHRINK`` pseudo-outcomes of the overall mean stand in each task (fixed beforehand, never tuned).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from graphrouter.world import World

SHRINK = 5.0  # pseudo-outcomes of the LLM's overall mean in each task's mean


def shrunk_task_means(y: np.ndarray, task: np.ndarray, n_tasks: int, shrink: float = SHRINK) -> np.ndarray:
    """(n_tasks,) per-task means of ``y`` (n,) shrunk toward their overall mean by ``shrink`` pseudo-outcomes."""
    y, task = np.asarray(y, dtype=float), np.asarray(task, dtype=np.int64)
    overall = float(y.mean()) if len(y) else 0.0
    total = np.bincount(task, weights=y, minlength=n_tasks)
    count = np.bincount(task, minlength=n_tasks)
    return (total + shrink * overall) / (count + shrink)


def floor_utility(world: World, router, probes: dict[int, np.ndarray], columns: np.ndarray) -> Callable:  # type: ignore[no-untyped-def]
    """``utility(q, w)`` of ``router`` (the GNN with the withheld LLMs registered; router column j is world candidate
    ``columns[j]``) with each withheld LLM's predicted effect replaced by the shrunk per-task mean of its outcomes on
    ``probes[world column]`` (stored rows) and its penalty dropped; what the runner's ``rewards`` routes by."""
    data = world.data
    tables = {
        int(np.flatnonzero(columns == j)[0]): shrunk_task_means(
            data.effect[rows, j], data.query_task[rows], len(data.task_names)
        )
        for j, rows in probes.items()
    }

    def utility(q, w: tuple[float, float]) -> np.ndarray:  # type: ignore[no-untyped-def]
        s = router.score(q, w)
        u = np.array(s.utility, dtype=np.float64, copy=True)
        for c, table in tables.items():
            u[:, c] = w[0] * table[s.task] - w[1] * s.cost_norm[:, c]
        return u

    return utility
