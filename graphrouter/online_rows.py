"""The online learner's memory (:class:`OnlineRows`): one row per posted outcome it learned (query embedding, task,
candidate, observed effect, residual against the router's prediction, every candidate's prediction there), a repeated
(query, candidate) replacing its row; each candidate's oldest rows leave past :data:`MAX_ROWS_PER_CANDIDATE` and stay
counted. What is computed from the rows, the corrections, is :class:`~graphrouter.online.OnlineLearner`'s."""

from __future__ import annotations

import threading

import numpy as np

from graphrouter.locked_state import LockedState

# The most recent outcomes of a candidate the learner keeps (the older ones leave once it holds a tenth more): every
# request compares its query with every kept row, and a refit of a trained candidate measures them all again, so an
# unbounded memory made routes slower with every outcome (30 ms at 100,000 rows, 229 ms at 1M). The outcomes are in
# the store; the next training learns them all.
MAX_ROWS_PER_CANDIDATE = 5000


class OnlineRows(LockedState):
    """The rows of the outcomes learned online and their counts per candidate and task; thread-safe (``_lock``),
    keyed by candidate name, so registering or removing candidates never misaligns them."""

    def __init__(self, dim: int | None = None) -> None:
        self._lock = threading.Lock()
        self._dim = dim
        self._n = 0
        self._emb = np.zeros((0, dim or 0), dtype=np.float32)
        self._task = np.zeros(0, dtype=np.int64)
        self._cand = np.zeros(0, dtype=np.int64)  # index into self._names
        self._effect = np.zeros(0)
        self._resid = np.zeros(0)
        self._seq = np.zeros(0, dtype=np.int64)
        self._names: list[str] = []
        self._name_id: dict[str, int] = {}
        self._key: dict[tuple[str, str], int] = {}  # (query id, candidate) → row: a repeated outcome replaces it
        self._by_cand: dict[int, np.ndarray] = {}  # rows per candidate id, rebuilt lazily
        # every candidate's uncorrected prediction on each row when it was observed (columns by name, NaN where a
        # candidate was not there): the bases a candidate registered since training is refitted on
        self._others = np.zeros((0, 0), dtype=np.float32)
        self._other_names: list[str] = []
        self._version: dict[int, int] = {}  # per candidate id, bumped by every change of its rows
        # what eviction forgot, still counted: per (candidate id, task index) the outcomes and the sum of their effects
        # (the quiz, the uncertainty penalty and learned_online read the counts; only corrections need the rows)
        self._evicted: dict[tuple[int, int], tuple[int, float]] = {}

    def __setstate__(self, state: dict) -> None:
        state.setdefault("_others", np.full((len(state["_resid"]), 0), np.nan, np.float32))  # pickled before refits
        state.setdefault("_other_names", [])
        state.setdefault("_version", {})
        state.setdefault("_evicted", {})
        super().__setstate__(state)

    def __len__(self) -> int:
        return self._n

    def _add(
        self,
        candidate: str,
        query_ids: list[str],
        embedding: np.ndarray,
        task: np.ndarray,
        effect: np.ndarray,
        predicted: np.ndarray,
        seqs: np.ndarray,
        others: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Store rows (caller holds the lock)."""
        emb = np.asarray(embedding, dtype=np.float32).reshape(len(query_ids), -1)
        effect = np.asarray(effect, dtype=np.float64)
        resid = effect - np.asarray(predicted, dtype=np.float64)
        task = np.asarray(task, dtype=np.int64)
        if self._dim is None or self._n == 0:  # (empty again, after every row left: the other arrays keep their size)
            self._dim = emb.shape[1]
            if self._emb.shape != (len(self._resid), self._dim):
                self._emb = np.zeros((len(self._resid), self._dim), dtype=np.float32)
        if emb.shape[1] != self._dim:
            raise ValueError(f"embeddings of size {emb.shape[1]}; the learner's are {self._dim}")
        cid = self._name_id.setdefault(candidate, len(self._names))
        if cid == len(self._names):
            self._names.append(candidate)
        others = others or {}
        new_names = [n for n in others if n not in self._other_names]
        if new_names:
            self._other_names += new_names
            extra = np.full((len(self._others), len(new_names)), np.nan, np.float32)
            self._others = np.hstack([self._others, extra])
        block = np.full((len(query_ids), len(self._other_names)), np.nan, np.float32)
        for j, name in enumerate(self._other_names):
            if name in others:
                block[:, j] = others[name]
        for i, qid in enumerate(query_ids):
            row = self._key.get((qid, candidate))
            seq = seqs[i]
            if row is None:
                row = self._grow()
                self._key[(qid, candidate)] = row
            elif self._effect[row] == effect[i]:  # the same outcome again (a replayed change, a relearning): as old
                seq = self._seq[row]  # as it was, so a training mark taken before it still counts it as seen
            self._emb[row], self._task[row], self._cand[row] = emb[i], task[i], cid
            self._effect[row], self._resid[row], self._seq[row] = effect[i], resid[i], seq
            self._others[row] = block[i]
        self._version[cid] = self._version.get(cid, 0) + 1
        self._by_cand = {}
        self._evict(cid)

    def _evict(self, cid: int) -> None:
        """Forget candidate ``cid``'s oldest rows once it holds a tenth more than :data:`MAX_ROWS_PER_CANDIDATE`,
        down to that many (caller holds the lock; in batches, so the compaction is rare)."""
        rows = np.flatnonzero(self._cand[: self._n] == cid)
        if len(rows) <= MAX_ROWS_PER_CANDIDATE * 1.1:
            return
        oldest = rows[np.argsort(self._seq[rows], kind="stable")][: len(rows) - MAX_ROWS_PER_CANDIDATE]
        for t, e in zip(self._task[oldest].tolist(), self._effect[oldest].tolist(), strict=True):
            n, total = self._evicted.get((cid, t), (0, 0.0))
            self._evicted[(cid, t)] = (n + 1, total + e)
        gone = set(oldest.tolist())
        self._key = {key: row for key, row in self._key.items() if row not in gone}
        self._remove_rows(sorted(gone, reverse=True))
        self._version[cid] = self._version.get(cid, 0) + 1

    def _remove_rows(self, rows: list[int]) -> None:
        """Free ``rows`` (descending; their keys already popped): the last row moves into each freed one (caller
        holds the lock)."""
        where = {row: key for key, row in self._key.items()}
        for row in rows:  # descending: never a row about to be freed
            last = self._n - 1
            if row != last:
                for a in (self._emb, self._task, self._cand, self._effect, self._resid, self._seq, self._others):
                    a[row] = a[last]
                if (key := where.pop(last, None)) is not None:
                    self._key[key], where[row] = row, key
            self._n -= 1
        self._by_cand = {}

    def _grow(self) -> int:
        """The next free row, doubling the arrays when full (caller holds the lock)."""
        if self._n == len(self._resid):
            extra = max(64, self._n)

            def more(a: np.ndarray) -> np.ndarray:
                return np.concatenate([a, np.zeros((extra, *a.shape[1:]), dtype=a.dtype)])

            self._emb, self._task, self._cand = more(self._emb), more(self._task), more(self._cand)
            self._effect, self._resid, self._seq = more(self._effect), more(self._resid), more(self._seq)
            self._others = np.vstack([self._others, np.full((extra, self._others.shape[1]), np.nan, np.float32)])
        self._n += 1
        return self._n - 1

    def drop(self, candidate: str, query_ids: list[str]) -> int:
        """Forget these outcomes of ``candidate`` (its router took them into its own graph since: a retrained GNN
        whose world holds their queries), so that none is corrected for twice; how many were held."""
        with self._lock:
            held = [(q, candidate) for q in query_ids if (q, candidate) in self._key]
            rows = sorted((self._key.pop(key) for key in held), reverse=True)
            if not rows:
                return 0
            self._remove_rows(rows)
            cid = self._name_id[candidate]
            self._version[cid] = self._version.get(cid, 0) + 1
            return len(rows)

    def _forget_rows(self, name: str) -> int | None:
        """Drop a removed candidate's rows and counts; its id, or None if none was learned (caller holds the lock)."""
        cid = self._name_id.pop(name, None)
        if cid is None:
            return None
        self._names[cid] = ""  # its id is not reused, so the ids of the others do not move
        self._key = {key: row for key, row in self._key.items() if key[1] != name}
        self._remove_rows(sorted(np.flatnonzero(self._cand[: self._n] == cid).tolist(), reverse=True))
        self._evicted = {key: v for key, v in self._evicted.items() if key[0] != cid}
        return cid

    # ---- counts -------------------------------------------------------------------------------------------
    def counts(self, candidates: tuple[str, ...] | list[str], task: int | None = None) -> np.ndarray:
        """(C,) outcomes learned online per candidate, in the given column order; with ``task``, only those on
        queries of that task (index)."""
        return self.tally(candidates, task)[0]

    def task_counts(self, candidates: tuple[str, ...] | list[str], n_tasks: int) -> np.ndarray:
        """(T, C) outcomes learned online per task index and candidate (outcomes of an unknown task left out)."""
        with self._lock:
            task, cand = self._task[: self._n], self._cand[: self._n]
            keep = (task >= 0) & (task < n_tasks)
            width = self._width()
            per = np.bincount(task[keep] * width + cand[keep], minlength=n_tasks * width).reshape(n_tasks, width)
            per = per.astype(float)
            for (cid, t), (n, _) in self._evicted.items():
                if 0 <= t < n_tasks:
                    per[t, cid] += n
            return self._in_order(per, candidates)

    def tally(self, candidates: tuple[str, ...] | list[str], task: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(C,) outcomes learned online per candidate and (C,) the sum of their observed effects, in the given column
        order; with ``task``, only those on queries of that task (index)."""
        with self._lock:
            rows = slice(0, self._n) if task is None else np.flatnonzero(self._task[: self._n] == task)
            cand, effect = self._cand[rows], self._effect[rows]
            per = np.bincount(cand, minlength=self._width()).astype(float)
            total = np.bincount(cand, weights=effect, minlength=self._width())
            for (cid, t), (n, e) in self._evicted.items():
                if task is None or t == task:
                    per[cid] += n
                    total[cid] += e
            return self._in_order(per, candidates), self._in_order(total, candidates)

    def _width(self) -> int:
        """Columns of a per-candidate-id count (at least one, so that it can be indexed; caller holds the lock)."""
        return max(len(self._names), 1)

    def _in_order(self, per_id: np.ndarray, candidates: tuple[str, ...] | list[str]) -> np.ndarray:
        """``per_id`` (…, ids) in the given column order, 0 for a name never learned (caller holds the lock)."""
        cols = np.array([self._name_id.get(c, -1) for c in candidates], dtype=np.int64)
        return np.where(cols >= 0, per_id[..., np.maximum(cols, 0)], 0).astype(float)
