"""Probe sets: the stored queries whose outcomes would tell the router most about a candidate.

A user onboarding a model runs it on the probe set and posts the outcomes (registration, or ``POST /v1/outcomes``);
the router's fit from outcomes (:mod:`graphrouter.routers.gnn.fit`) then knows where the model stands. The design:

* **across tasks**, k is spread in proportion to ``traffic share × uncertainty``: the task's share of the stored
  queries times ``1/√(1 + n)``, ``n`` the candidate's outcomes already observed in that task (largest remainders,
  then capped by what each task has left);
* **within a task**, the queries on which the *strong* known candidates disagree most come first: the variance of
  their observed effects, over the known candidates whose mean effect on the task is in its top half (where a new
  candidate could take traffic, what it does on a query the strong ones split on is what decides routing). Ties,
  and queries no two known candidates answered, are ordered by a seeded permutation.

Deterministic for a given graph (effects, tasks) and seed; queries the candidate already answered are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Probe:
    """A stored query to run a candidate on: its id (post the outcome under it), text and task."""

    id: str
    text: str
    task: str


def task_quota(traffic: np.ndarray, uncertainty: np.ndarray, available: np.ndarray, k: int) -> np.ndarray:
    """(T,) how many probes per task: k spread in proportion to ``traffic × uncertainty`` (largest remainders),
    never more than ``available`` in a task (the surplus goes to the others, in the same proportions)."""
    quota = np.zeros(len(traffic), np.int64)
    k = int(min(k, available.sum()))
    while quota.sum() < k:
        room = available - quota
        w = np.where(room > 0, traffic * uncertainty, 0.0)
        if w.sum() <= 0:
            w = (room > 0).astype(float)
        need = k - quota.sum()
        share = w / w.sum() * need
        add = np.minimum(np.floor(share).astype(np.int64), room)
        left = need - add.sum()
        if left > 0:  # largest remainders, ties to the lower task index
            order = np.lexsort((np.arange(len(w)), -(share - np.floor(share))))
            for t in order:
                if left == 0:
                    break
                if room[t] - add[t] > 0 and w[t] > 0:
                    add[t] += 1
                    left -= 1
        if add.sum() == 0:
            break
        quota += add
    return quota


def disagreement(effect: np.ndarray, task: np.ndarray, n_tasks: int) -> np.ndarray:
    """(N,) per query, the variance of the observed effects (NaN: unobserved) of the known candidates whose mean
    effect on the query's task is in the top half of that task; -1 where fewer than two of them answered it."""
    seen = np.isfinite(effect)
    out = np.full(len(effect), -1.0)
    for t in range(n_tasks):
        rows = np.flatnonzero(task == t)
        if not len(rows):
            continue
        e, s = effect[rows], seen[rows]
        count = s.sum(0)
        mean = np.where(count > 0, np.nansum(np.where(s, e, 0.0), 0) / np.maximum(count, 1), -np.inf)
        ranked = np.argsort(-mean, kind="stable")[: max(2, int(np.ceil((count > 0).sum() / 2)))]
        strong = ranked[np.isfinite(mean[ranked])]
        es, ss = e[:, strong], s[:, strong]
        n = ss.sum(1)
        m = np.where(ss, es, 0.0).sum(1) / np.maximum(n, 1)
        var = np.where(ss, (es - m[:, None]) ** 2, 0.0).sum(1) / np.maximum(n, 1)
        out[rows] = np.where(n >= 2, var, -1.0)
    return out


def design_probes(
    effect: np.ndarray,
    task: np.ndarray,
    n_tasks: int,
    k: int,
    own: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Positions (into the rows of ``effect``) of the k probes for one candidate, best first within each task.

    ``effect``: (N, C) observed effects of the known candidates on the stored queries (NaN: unobserved), the
    candidate itself excluded; ``task``: (N,) task of each query; ``own``: (N,) the candidate's own observed
    effects (NaN where none; those queries are skipped, and its counts per task lower the task's uncertainty)."""
    n = len(task)
    answered = np.zeros(n, bool) if own is None else np.isfinite(own)
    traffic = np.bincount(task, minlength=n_tasks) / max(n, 1)
    observed = np.bincount(task[answered], minlength=n_tasks)
    uncertainty = 1.0 / np.sqrt(1.0 + observed)
    open_rows = ~answered
    available = np.bincount(task[open_rows], minlength=n_tasks)
    quota = task_quota(traffic, uncertainty, available, k)
    score = disagreement(effect, task, n_tasks)
    tiebreak = np.random.default_rng(seed).permutation(n)
    chosen = []
    for t in np.flatnonzero(quota):
        rows = np.flatnonzero((task == t) & open_rows)
        order = np.lexsort((tiebreak[rows], -score[rows]))
        chosen.append(rows[order[: quota[t]]])
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def random_probes(n: int, k: int, own: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """k positions drawn uniformly (seeded) among the n stored queries the candidate has not answered."""
    rows = np.flatnonzero(~np.isfinite(own)) if own is not None else np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(rows, size=min(k, len(rows)), replace=False))
