"""Observed aggregates of the stored graph and the features computed from them.

:class:`Observed` holds the aggregates of the visible outcomes of stored queries (per task × candidate, per
candidate, relative skill); its :meth:`~Observed.pair_features` are the decoder's metapath features and its
:meth:`~Observed.task_candidate_edges` the ``task -task_candidate-> candidate`` edges.

Agents are candidates too. ``Agent -BACKED_BY-> LLM`` passes the LLM's outcome edges to the agent on every query
where the agent has none of its own (:func:`inherit`), so a new agent is routed like the model it runs on and its
own outcomes take over query by query. Its price is its LLM's.

:func:`candidate_features` are the candidate nodes' inputs: the description embedding ‖ log prices, log size (and
whether the size is unknown).
"""

from __future__ import annotations

import numpy as np

from graphrouter.routers.gnn.schema import PAIR_KS


def clipped_logit(p: np.ndarray) -> np.ndarray:
    """The logit of ``p`` clipped to [0.02, 0.98] (a shrunk mean of a few outcomes may be 0 or 1)."""
    p = np.clip(p, 0.02, 0.98)
    return np.log(p / (1 - p))


class Observed:
    """Aggregates of the visible outcomes of stored queries: per task × candidate, per candidate, relative skill."""

    def __init__(
        self,
        effect: np.ndarray,
        visible: np.ndarray,
        task: np.ndarray,
        n_tasks: int,
        alpha: float = 5.0,
    ) -> None:
        self.alpha = alpha
        self.visible = visible & np.isfinite(effect)
        self.effect = np.where(self.visible, np.nan_to_num(effect), 0.0)
        self.task = task
        v, e = self.visible, self.effect
        vf = v.astype(np.float64)
        self.count = vf.sum(0)
        self.task_count = np.zeros((n_tasks, e.shape[1]))
        self._task_sum = np.zeros_like(self.task_count)
        np.add.at(self._task_sum, task, e)
        np.add.at(self.task_count, task, vf)
        # relative skill: effect minus the other candidates' mean effect on the same queries (a paired comparison,
        # far less noisy than a raw mean when a new candidate has few outcomes)
        self._row_sum, self._row_count = e.sum(1), vf.sum(1)  # per stored query, over candidates
        diff, paired = self._relative(slice(None))
        self._rel_sum, self._rel_count = np.zeros_like(self.task_count), np.zeros_like(self.task_count)
        np.add.at(self._rel_sum, task, diff)
        np.add.at(self._rel_count, task, paired)
        self._diff_sum, self._paired_sum = diff.sum(0), paired.sum(0)
        self._finish()

    def _relative(self, rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(effect − the other candidates' mean effect) where paired, and whether paired, on ``rows``."""
        v, e = self.visible[rows], self.effect[rows]
        vf = v.astype(np.float64)
        n_others = self._row_count[rows, None] - vf
        others = (self._row_sum[rows, None] - e) / np.maximum(n_others, 1)
        paired = v & (n_others > 0)
        return np.where(paired, e - others, 0.0), paired.astype(np.float64)

    def _finish(self) -> None:
        """The shrunk means from the sums (cheap: per candidate and per task × candidate)."""
        prior, alpha = 0.4, self.alpha
        e_sum = self._task_sum.sum(0)
        self.mean = (e_sum + 2.0 * prior) / (self.count + 2.0)
        self.task_mean = (self._task_sum + alpha * self.mean[None]) / (self.task_count + alpha)
        self.rel = self._diff_sum / (self._paired_sum + 2.0)
        self.task_rel = (self._rel_sum + alpha * self.rel[None]) / (self._rel_count + alpha)

    @property
    def n_candidates(self) -> int:
        return int(self.effect.shape[1])

    def changed(
        self,
        columns: list[int],
        effect: np.ndarray,
        visible: np.ndarray,
        removed: int | None = None,
    ) -> Observed:
        """A new :class:`Observed` with column ``removed`` dropped first, then the (already inherited) ``effect``
        and ``visible`` (N, len(columns)) as ``columns`` (a column past the end is appended; they must be the next
        ones). Work beyond copying the arrays is proportional to the rows whose outcomes change × candidates, not
        to stored queries × candidates; the same aggregates as building it anew (to float rounding)."""
        new = Observed.__new__(Observed)
        new.__dict__.update(self.__dict__)
        new._row_sum, new._row_count = self._row_sum.copy(), self._row_count.copy()
        sums = ("count", "task_count", "_task_sum", "_rel_sum", "_rel_count", "_diff_sum", "_paired_sum")
        if removed is not None:
            gone = np.zeros((len(self.effect), 1))
            new = new._set([removed], gone, gone.astype(bool), copy_arrays=True)
            for name in ("visible", "effect", *sums):
                setattr(new, name, np.delete(getattr(new, name), removed, axis=-1))
            copy_arrays = False
        else:
            copy_arrays = True
        width = max(columns, default=-1) + 1 - new.n_candidates
        if width > 0:
            for name in ("visible", "effect", *sums):
                arr = getattr(new, name)
                pad = np.zeros((*arr.shape[:-1], width), arr.dtype)
                setattr(new, name, np.concatenate([arr, pad], axis=-1))
            copy_arrays = False
        if columns:
            new = new._set(columns, effect, visible, copy_arrays=copy_arrays)
        new._finish()
        return new

    def _set(self, columns: list[int], effect: np.ndarray, visible: np.ndarray, copy_arrays: bool) -> Observed:
        """Replace ``columns`` in place on self (its arrays copied first if ``copy_arrays``), updating every sum
        on the rows whose outcomes change only."""
        visible = visible & np.isfinite(effect)
        effect = np.where(visible, np.nan_to_num(effect), 0.0)
        cols = np.asarray(columns, dtype=np.int64)
        rows = np.flatnonzero(((self.visible[:, cols] != visible) | (self.effect[:, cols] != effect)).any(1))
        names = ("visible", "effect", "count", "task_count", "_task_sum", "_rel_sum", "_rel_count")
        if copy_arrays:
            for name in (*names, "_diff_sum", "_paired_sum"):
                setattr(self, name, getattr(self, name).copy())
        old_diff, old_paired = self._relative(rows)
        task = self.task[rows]
        for i, c in enumerate(cols):  # the changed columns' own sums, on their changed rows
            ov, oe = self.visible[rows, c].astype(np.float64), self.effect[rows, c]
            nv, ne = visible[rows, i].astype(np.float64), effect[rows, i]
            self.count[c] += (nv - ov).sum()
            np.add.at(self.task_count[:, c], task, nv - ov)
            np.add.at(self._task_sum[:, c], task, ne - oe)
        self.visible[:, cols], self.effect[:, cols] = visible, effect
        self._row_sum[rows] = self.effect[rows].sum(1)
        self._row_count[rows] = self.visible[rows].sum(1)
        diff, paired = self._relative(rows)  # every candidate's relative skill moves on these rows
        np.add.at(self._rel_sum, task, diff - old_diff)
        np.add.at(self._rel_count, task, paired - old_paired)
        self._diff_sum += (diff - old_diff).sum(0)
        self._paired_sum += (paired - old_paired).sum(0)
        return self

    def pair_features(self, nb: np.ndarray, sim: np.ndarray, task: np.ndarray, tau: float = 0.1) -> np.ndarray:
        """(B, C, N_PAIR) from each cold query's stored neighbours ``nb`` (B, k_pair), sorted by similarity ``sim``,
        and its task: query-similar_to->query-answered_by->candidate at several k (all neighbours, same-task
        neighbours), query-of_task->task-task_candidate->candidate, the candidate's global mean and relative skill."""
        w = np.exp((sim - 1.0) / tau)[:, :, None]
        v = self.visible[nb]
        wv = w * v
        we = wv * self.effect[nb]
        tm = self.task_mean[task]
        near = [(we[:, :k].sum(1) + tm) / (wv[:, :k].sum(1) + 1.0) for k in PAIR_KS]  # shrunk to the task mean
        same = (self.task[nb] == task[:, None])[:, :, None]
        near_task = ((we * same).sum(1) + tm) / ((wv * same).sum(1) + 1.0)
        mass = wv.sum(1)
        b, c = mass.shape
        lw = np.log1p(self.count)[None]
        difficulty = (near[1] * lw).sum(1, keepdims=True) / max(lw.sum(), 1e-9)  # neighbours' mean over candidates
        rel = self.task_rel[task]
        feats = [clipped_logit(f) for f in near] + [
            clipped_logit(near_task),
            clipped_logit(tm),
            clipped_logit(np.broadcast_to(self.mean[None], (b, c))),
            v.mean(1),
            np.log1p(mass),
            np.log1p(self.task_count[task]) / 5,
            np.log1p(np.broadcast_to(self.count[None], (b, c))) / 8,
            near[0] - tm,
            rel,
            np.broadcast_to(clipped_logit(difficulty), (b, c)),
            clipped_logit(difficulty + rel),
        ]
        return np.stack(feats, -1).astype(np.float32)

    def task_candidate_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t, c = np.meshgrid(np.arange(self.task_mean.shape[0]), np.arange(self.task_mean.shape[1]), indexing="ij")
        attr = np.stack([self.task_mean.ravel(), np.log1p(self.task_count.ravel()) / 5], 1).astype(np.float32)
        return t.ravel(), c.ravel(), attr


def inherit(effect: np.ndarray, visible: np.ndarray, backing: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Agent -BACKED_BY-> LLM: an agent inherits its LLM's visible outcomes on the queries where it has none of its
    own, so a new agent is routed like the model it runs on, and its own outcomes take over query by query."""
    if not backing:
        return effect, visible
    effect, visible = effect.copy(), visible.copy()
    for agent, llm in backing.items():
        fill = ~visible[:, agent] & visible[:, llm]
        effect[fill, agent] = effect[fill, llm]
        visible[fill, agent] = True
    return effect, visible


def candidate_features(desc_emb: np.ndarray, prices: np.ndarray, size_b: np.ndarray) -> np.ndarray:
    """Description embedding ‖ log input/output price ‖ log size (unknown: 10B) ‖ size-unknown flag."""
    size = np.asarray(size_b, dtype=np.float64)
    unknown = ~np.isfinite(size)
    num = np.c_[
        np.log(np.asarray(prices, dtype=np.float64) + 0.01) / 2,
        np.log(np.where(unknown, 10.0, np.maximum(size, 0.1))) / 4,
        unknown.astype(np.float64),
    ]
    return np.c_[desc_emb, num].astype(np.float32)


def inherited_columns(effect: np.ndarray, backing: dict[int, int], columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, len(columns)) effects and visibility of ``columns`` of the raw ``effect`` (NaN: not observed) after
    :func:`inherit`: what :class:`Observed` holds for them, computed for these columns only."""
    eff = effect[:, columns].astype(np.float64)
    vis = np.isfinite(eff)
    for i, c in enumerate(columns):
        llm = backing.get(c)
        if llm is not None:
            fill = ~vis[:, i] & np.isfinite(effect[:, llm])
            eff[fill, i] = effect[fill, llm]
            vis[fill, i] = True
    return eff, vis
