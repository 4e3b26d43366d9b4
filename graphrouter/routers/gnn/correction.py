"""What the fit from outcomes (:mod:`~graphrouter.routers.gnn.fit`) adds to the GNN's effect logits: per-candidate,
per-task offsets, and for candidates registered since training a mix of their own logit with the trained
candidates' (the ones they resemble). One small value object, applied the same way by the numpy ego path and the
PyTorch reference."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Correction:
    """What the fit from outcomes adds to the GNN's logits (M, B, C) of queries of tasks ``task`` (B,):
    ``offsets`` (C, T), and for the fitted columns ``cols`` (F,) a mix of their own logit (weight ``own``, (F,)) and
    the logits of columns ``src`` (S,) (weights ``mix``, (F, S)). The numpy ego path and the PyTorch reference
    both call :meth:`apply`, so they agree."""

    offsets: np.ndarray
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    own: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    # the columns the fit paired its rows against (gnn.fit.FitPrior.peers): removing one of them changes every fit
    peer_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __setstate__(self, state: dict) -> None:
        state.setdefault("peer_cols", np.zeros(0, np.int64))  # pickled before the paired fit
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def copied(self, pairs: dict[int, int]) -> Correction:
        """This correction with column ``a`` made a copy of column ``b``'s for each ``a: b`` of ``pairs`` whose ``a``
        has none of its own (an agent without outcomes takes its backing LLM's, as it takes its outcomes)."""
        pairs = {a: b for a, b in pairs.items() if a < len(self.offsets) and not self.offsets[a].any()}
        pairs = {a: b for a, b in pairs.items() if a not in set(self.cols.tolist())}
        if not pairs:
            return self
        offsets = self.offsets.copy()
        cols, own, mix = list(self.cols), list(self.own), list(self.mix)
        at = {c: i for i, c in enumerate(self.cols.tolist())}
        for a, b in pairs.items():
            offsets[a] = offsets[b]
            if b in at:
                cols.append(a)
                own.append(self.own[at[b]])
                mix.append(self.mix[at[b]])
        return Correction(
            offsets,
            np.array(cols, np.int64),
            np.array(own, np.float32),
            self.src,
            np.array(mix, np.float32).reshape(len(cols), len(self.src)),
            self.peer_cols,
        )

    def without(self, col: int) -> Correction | None:
        """This correction with column ``col`` removed (the columns after it move down by one); None when ``col``
        is one the fitted columns mix from or were paired against (a full refit is due)."""
        if col in set(self.src.tolist()) | set(self.peer_cols.tolist()):
            return None
        keep = self.cols != col
        return Correction(
            np.delete(self.offsets, col, axis=0),
            self.cols[keep] - (self.cols[keep] > col),
            self.own[keep],
            self.src - (self.src > col),
            self.mix[keep],
            self.peer_cols - (self.peer_cols > col),
        )

    def merged(self, new: Correction | None, refitted: set[int], n_cand: int, n_tasks: int) -> Correction | None:
        """This correction (of the installed state) with columns ``refitted`` replaced by ``new``'s entries (None:
        no fresh outcome among them), for ``n_cand`` columns (columns appended since get zeros unless refitted).
        No column may have moved. The trained columns mixed from (``src``) are the same in both."""
        offsets = np.zeros((n_cand, n_tasks), np.float32)
        offsets[: len(self.offsets)] = self.offsets[:n_cand]
        rows = sorted(c for c in refitted if c < n_cand)
        offsets[rows] = 0.0 if new is None else new.offsets[rows]
        keep = [i for i, c in enumerate(self.cols.tolist()) if c not in refitted]
        cols = [int(self.cols[i]) for i in keep]
        own = [float(self.own[i]) for i in keep]
        mix = [self.mix[i] for i in keep]
        src = self.src
        if new is not None and len(new.cols):
            if len(keep) and not np.array_equal(new.src, self.src):
                raise ValueError("the trained columns of a partial fit differ from the installed correction's")
            src = new.src
            cols += new.cols.tolist()
            own += new.own.tolist()
            mix += list(new.mix)
        if not offsets.any() and not cols:
            return None
        return Correction(
            offsets,
            np.array(cols, np.int64),
            np.array(own, np.float32),
            src,
            np.array(mix, np.float32).reshape(len(cols), len(src)),
            new.peer_cols if new is not None and len(new.peer_cols) else self.peer_cols,
        )

    def apply(self, logits: np.ndarray, task: np.ndarray) -> np.ndarray:
        out = logits + self.offsets.T[np.asarray(task)][None]
        if len(self.cols):
            out[..., self.cols] += (self.own - 1.0) * logits[..., self.cols] + logits[..., self.src] @ self.mix.T
        return out
