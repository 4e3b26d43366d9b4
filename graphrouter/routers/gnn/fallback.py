"""The GNN router's validation-selected per-task fallback to the per-task table.

The simple predictor is the per-task table: a candidate's mean observed effect on the training queries of the
query's task (what ``best_per_task`` routes by; the strongest simple router in Performance First on dcrouter and
MMLU-Pro). Where, on validation queries drawn from the training queries, routing by the table beats routing by the
GNN by more than noise, the GNN's effect predictions for queries of that task are replaced by the table's.

No extra training: every ensemble member already holds out an inner validation split of the training queries
(early stopping, :func:`~graphrouter.routers.gnn.training.fit_member`) and keeps its own cold-query predictions on
it (:attr:`Member.val_prob`). A training query held out by some members is predicted by the mean of those members,
and by the mean of those members' tables, each computed from that member's inner-training queries only. Per task,
the paired difference "table − GNN" of the reward of the routing decision, averaged over the three scenarios
(:data:`~graphrouter.rewards.SCENARIOS`), must exceed ``z`` standard errors (and there must be ``min_rows``
validation queries) for the task to fall back. The comparison is conservative for the GNN: a validation query is
predicted by one or two members, not by the whole ensemble that serves.

The decision and the table (fitted on all training queries) travel with the router, so the checkpoint and every
serving path (the numpy ego path, the PyTorch reference, the full graph) apply it the same way
(:meth:`Fallback.apply`). A candidate registered after training, or one with outcomes since training (fitted by
:mod:`~graphrouter.routers.gnn.fit`), keeps the GNN's prediction; an agent with no outcomes of its own takes its
LLM's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from graphrouter.rewards import SCENARIOS

if TYPE_CHECKING:
    from graphrouter.cost import CostModel
    from graphrouter.world import World

Z = 2.0  # standard errors of the paired difference the table must be ahead by (one-sided, about 2.3%)
MIN_ROWS = 30  # validation queries a task needs before it can fall back


@dataclass(frozen=True)
class TaskVerdict:
    """One task's validation comparison: queries, mean paired reward difference table − GNN, its standard error."""

    task: str
    n: int
    gain: float
    se: float
    fired: bool


@dataclass(frozen=True)
class Fallback:
    """Which tasks fall back (``tasks``, (T,) bool), the table (T, C0) of the trained candidates ``candidates``
    (NaN where a candidate has no outcome in a task: the GNN's prediction stays), and the verdict per task."""

    tasks: np.ndarray
    candidates: tuple[str, ...]
    table: np.ndarray
    verdicts: tuple[TaskVerdict, ...]

    @property
    def fired(self) -> list[str]:
        return [v.task for v in self.verdicts if v.fired]

    def describe(self) -> str:
        """One line: the tasks that fell back (with their validation gain), out of how many."""
        fired = [v for v in self.verdicts if v.fired]
        if not fired:
            return f"no task falls back (0 of {len(self.verdicts)})"
        shown = ", ".join(f"{v.task} (+{v.gain:.4f} ± {v.se:.4f}, n={v.n})" for v in fired)
        return f"{len(fired)} of {len(self.verdicts)} tasks fall back to the per-task table: {shown}"

    def apply(
        self,
        effect: np.ndarray,
        task: np.ndarray,
        names: Sequence[str],
        keep: frozenset[str],
        backing: dict[int, int] | None = None,
        shift: np.ndarray | None = None,
    ) -> np.ndarray:
        """``effect`` (B, C) over the candidates ``names`` with the table's values for queries of falling-back
        tasks (``task`` (B,)); candidates in ``keep`` (or not trained) keep theirs. ``backing`` (agent column → its
        LLM's column): an agent the table does not hold, with no outcomes of its own (not in ``keep``), takes its
        LLM's values, as it takes its LLM's outcomes and fit. ``shift`` (C, T): logit offsets the fit from outcomes
        gave each column (a trained candidate's outcomes since training), added to its table values as they are to
        its own predictions. Returns a new array or ``effect`` itself when nothing applies."""
        task = np.asarray(task, dtype=np.int64)
        rows = np.flatnonzero(self.tasks[task]) if len(task) else np.zeros(0, np.int64)
        if not len(rows):
            return effect
        index = {n: j for j, n in enumerate(self.candidates)}
        cols = [(c, index[n]) for c, n in enumerate(names) if n in index and n not in keep]
        for agent, llm in (backing or {}).items():
            if (
                names[agent] not in index
                and names[agent] not in keep
                and names[llm] in index
                and names[llm] not in keep
            ):
                cols.append((agent, index[names[llm]]))
        if not cols:
            return effect
        out = np.array(effect, dtype=np.float64, copy=True)
        c_out, c_tab = (np.array(x) for x in zip(*cols, strict=True))
        values = self.table[task[rows]][:, c_tab]
        if shift is not None and shift[c_out].any():  # moved by what the shift does at the (clipped) value
            at, s = np.clip(values, 0.02, 0.98), shift[c_out][:, task[rows]].T  # (rows, cols)
            values = np.clip(values + (1.0 / (1.0 + (1.0 - at) / at * np.exp(-s)) - at), 0.0, 1.0)
        block = out[np.ix_(rows, c_out)]
        out[np.ix_(rows, c_out)] = np.where(np.isfinite(values), values, block)
        return out


def task_table(effect: np.ndarray, task: np.ndarray, n_tasks: int) -> np.ndarray:
    """(n_tasks, C) mean observed effect per task and candidate (NaN where none was observed)."""
    out = np.full((n_tasks, effect.shape[1]), np.nan)
    seen = np.isfinite(effect)
    for t in range(n_tasks):
        rows = task == t
        n = seen[rows].sum(0)
        s = np.nansum(effect[rows], 0)
        out[t] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return out


def select_fallback(
    held_out: Sequence[tuple[np.ndarray, np.ndarray]],
    effect: np.ndarray,
    cost_norm: np.ndarray,
    pred_cost_norm: np.ndarray,
    task: np.ndarray,
    task_names: Sequence[str],
    candidates: Sequence[str],
    penalty: Callable[[tuple[float, float]], np.ndarray | None] = lambda w: None,
    z: float = Z,
    min_rows: int = MIN_ROWS,
) -> Fallback:
    """The fallback decision. ``held_out``: per member, its validation positions and its (n_val, C) predicted
    effects there; ``effect``, ``cost_norm`` (observed) and ``pred_cost_norm`` (what routing uses) are (N, C) over
    the training queries (positions), ``task`` (N,); ``penalty(weights)`` is the router's (C,) utility penalty.
    The served table is fitted on all N training queries."""
    n, n_cand = effect.shape
    n_tasks = len(task_names)
    gnn, tab, count = np.zeros((n, n_cand)), np.zeros((n, n_cand)), np.zeros(n)
    for rows, prob in held_out:
        inner = np.setdiff1d(np.arange(n), rows)
        table = task_table(effect[inner], task[inner], n_tasks)[task[rows]]
        gnn[rows] += prob
        tab[rows] += np.where(np.isfinite(table), table, prob)
        count[rows] += 1
    val = np.flatnonzero(count > 0)
    gnn, tab = gnn[val] / count[val, None], tab[val] / count[val, None]
    eff, cn, pcn = effect[val], cost_norm[val], pred_cost_norm[val]
    seen = np.isfinite(eff)
    rows = np.arange(len(val))
    diff = np.zeros(len(val))
    for w in SCENARIOS.values():
        pen = penalty(w)
        pen = 0.0 if pen is None else pen[None, :]
        reward = []
        for pred in (tab, gnn):
            u = np.where(seen, w[0] * pred - w[1] * pcn - pen, -np.inf)
            ch = np.argmax(u, 1)
            reward.append(w[0] * eff[rows, ch] - w[1] * np.nan_to_num(cn[rows, ch]))
        diff += (reward[0] - reward[1]) / len(SCENARIOS)
    verdicts, fires = [], np.zeros(n_tasks, bool)
    for t, name in enumerate(task_names):
        d = diff[task[val] == t]
        gain = float(d.mean()) if len(d) else 0.0
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")
        fires[t] = len(d) >= min_rows and gain > 0 and gain > z * se
        verdicts.append(TaskVerdict(name, len(d), gain, se, bool(fires[t])))
    return Fallback(fires, tuple(candidates), task_table(effect, task, n_tasks), tuple(verdicts))


def fallback_for(
    held_out: Sequence[tuple[np.ndarray, np.ndarray]],
    world: World,
    train_idx: np.ndarray,
    cost_model: CostModel,
    penalty: Callable[[tuple[float, float]], np.ndarray | None],
    z: float = Z,
) -> Fallback:
    """:func:`select_fallback` for a router fitted on ``world``'s queries ``train_idx`` (in that order), routing
    with ``cost_model``'s normalised costs and ``penalty``."""
    data = world.data
    task = data.query_task[train_idx].astype(np.int64)
    pred_cost_norm = cost_model.normalise(cost_model.cost(world.query_tokens[train_idx]), task)
    effect = np.asarray(data.effect[train_idx], dtype=np.float64)
    cost_norm = data.cost_norm()[train_idx]
    names, cands = data.task_names, data.candidates
    return select_fallback(held_out, effect, cost_norm, pred_cost_norm, task, names, cands, penalty, z)
