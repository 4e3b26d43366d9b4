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
        )

    def apply(self, logits: np.ndarray, task: np.ndarray) -> np.ndarray:
        out = logits + self.offsets.T[np.asarray(task)][None]
        if len(self.cols):
            out[..., self.cols] += (self.own - 1.0) * logits[..., self.cols] + logits[..., self.src] @ self.mix.T
        return out
