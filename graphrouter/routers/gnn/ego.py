"""The GNN router's serving path for new queries, compiled to numpy with the ensemble's members stacked.

A new query's effect predictions depend only on its ego-graph (see :mod:`graphrouter.routers.gnn.graph`): its text, its
task's cached states, its ``k_sim`` nearest stored queries' cached states, the candidates' cached states and the
pair features. This module precomputes everything that does not depend on the request, once per cache refresh:

* the first linear layer of the ``similar_to`` message MLP applied to every stored query's state (the edge
  attribute, a similarity, enters as one extra column added per request);
* the whole ``rev_of_task`` message of every task (it has no edge attribute);
* the sum of every relation's root weight on the query (all are applied to the same query state and summed);
* the candidate half of the decoder's first layer.

A request then costs a few small matrix products over (members × neighbours × hidden) and (members × candidates ×
hidden), with the members as a leading batch axis, instead of ~100 PyTorch calls per member. It computes the same
function as :meth:`GnnRouter.predict_effect_reference` (checked by the tests to float32 precision).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from graphrouter.routers.gnn.correction import Correction
from graphrouter.routers.gnn.model import HeteroRouterGNN
from graphrouter.routers.gnn.schema import CANDIDATE, QUERY, REV_OF_TASK, SIMILAR_TO, TASK

if TYPE_CHECKING:
    from graphrouter.routers.gnn.candidate_state import LayerState


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _linear(layer: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    """(in, out) weight and (out,) bias, for ``x @ w + b``."""
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
    return _np(layer.weight).T.copy(), _np(bias)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


class EgoPath:
    """Every member's cold-query computation, weights and request-independent products stacked on axis 0."""

    correction: Correction | None = None  # the class default: a path pickled before corrections existed has none

    def __init__(self, models: list[HeteroRouterGNN], states: list[list[LayerState]], k_sim: int) -> None:
        self.k_sim = k_sim
        self.num_layers = len(models[0].convs)

        def stack(fn) -> np.ndarray:  # type: ignore[no-untyped-def]
            return np.stack([fn(m, s) for m, s in zip(models, states, strict=True)])

        enc = [_linear(m.enc[QUERY][0]) + _linear(m.enc[QUERY][2]) for m in models]
        self.enc_w1, self.enc_b1, self.enc_w2, self.enc_b2 = (np.stack([e[i] for e in enc]) for i in range(4))
        self.layers = []
        for i in range(self.num_layers):
            sim_conv = [m.convs[i].convs[SIMILAR_TO] for m in models]
            first = [_linear(c.msg[0]) for c in sim_conv]  # (hidden + 1, hidden): state rows, then similarity
            hidden = first[0][0].shape[1]
            stored = np.stack(  # (M, N, hidden): the first message layer on every stored query's state
                [_np(s[i][QUERY]) @ w[:hidden] + b for (w, b), s in zip(first, states, strict=True)]
            )
            self.layers.append(
                {
                    "stored": stored,
                    "w_sim": np.stack([w[hidden:] for w, _ in first]),  # (M, 1, hidden)
                    "w2": np.stack([_linear(c.msg[2])[0] for c in sim_conv]),
                    "b2": np.stack([_linear(c.msg[2])[1] for c in sim_conv]),
                    "task_msg": stack(lambda m, s, i=i: _np(m.convs[i].convs[REV_OF_TASK].msg(s[i][TASK]))),
                    "root": stack(
                        lambda m, s, i=i: sum(
                            _linear(c.root)[0] for et, c in m.convs[i].convs.items() if et[2] == QUERY
                        )
                    ),
                    "gamma": stack(lambda m, s, i=i: _np(m.norms[i][QUERY].weight)),
                    "beta": stack(lambda m, s, i=i: _np(m.norms[i][QUERY].bias)),
                    "eps": float(models[0].norms[i][QUERY].eps),
                }
            )
        dec = [(_linear(m.dec[0]), _linear(m.dec[3]), _linear(m.dec[5]), _linear(m.skip)) for m in models]
        h = self.enc_w2.shape[2]
        w1 = np.stack([d[0][0] for d in dec])  # (M, 3h + n_pair, 2h)
        cand = np.stack([_np(s[-1][CANDIDATE]) for s in states])  # (M, C, h)
        self.dec_q, self.dec_qc, self.dec_pair = w1[:, :h], w1[:, 2 * h : 3 * h], w1[:, 3 * h :]
        self._dec_wc, self._dec_b1 = w1[:, h : 2 * h], np.stack([d[0][1] for d in dec])  # the candidate half
        self.dec_cand = cand @ self._dec_wc + self._dec_b1[:, None, :]  # (M, C, 2h)
        self.cand = cand
        self.dec_w2, self.dec_b2 = np.stack([d[1][0] for d in dec]), np.stack([d[1][1] for d in dec])
        self.dec_w3, self.dec_b3 = np.stack([d[2][0] for d in dec]), np.stack([d[2][1] for d in dec])
        self.skip_w, self.skip_b = np.stack([d[3][0] for d in dec]), np.stack([d[3][1] for d in dec])
        # the per-candidate correction fitted to outcomes (:mod:`~graphrouter.routers.gnn.fit`), or None; set
        # before this path is installed, never changed after
        self.correction: Correction | None = None

    def with_candidates(self, cand: np.ndarray, rows: list[int], removed: int | None = None) -> EgoPath:
        """This path over the candidates' new last-layer states ``cand`` (M, C, h), of which only ``rows`` are new or
        changed since this one was built (after dropping row ``removed``): the decoder's candidate half is computed
        for those rows only; everything else (weights, stored-query products) is shared, never mutated."""
        new = copy.copy(self)
        dec = self.dec_cand if removed is None else np.delete(self.dec_cand, removed, axis=1)
        if cand.shape[1] > dec.shape[1]:
            dec = np.concatenate([dec, np.zeros((len(dec), cand.shape[1] - dec.shape[1], dec.shape[2]), dec.dtype)], 1)
        elif removed is None:
            dec = dec.copy()
        if rows:
            dec[:, rows] = cand[:, rows] @ self._dec_wc + self._dec_b1[:, None, :]
        new.cand, new.dec_cand = cand, dec
        return new

    def predict(
        self, emb: np.ndarray, task: np.ndarray, nb: np.ndarray, sim: np.ndarray, pair: np.ndarray
    ) -> np.ndarray:
        """(B, C) mean effect probability over members for B new queries: embeddings (B, d), task rows (B,),
        stored neighbours and similarities (B, ≥ k_sim), pair features (B, C, n_pair); the fitted
        :attr:`correction` applied to every member's logits."""
        logits = self.logits(emb, task, nb, sim, pair)
        if self.correction is not None:
            logits = self.correction.apply(logits, task)
        return (1.0 / (1.0 + np.exp(-logits))).mean(0).astype(np.float64)

    def logits(
        self, emb: np.ndarray, task: np.ndarray, nb: np.ndarray, sim: np.ndarray, pair: np.ndarray
    ) -> np.ndarray:
        """(M, B, C) every member's effect logits, before the fitted correction (arguments as :meth:`predict`)."""
        emb = np.asarray(emb, dtype=np.float32)
        h = _relu(emb @ self.enc_w1 + self.enc_b1[:, None]) @ self.enc_w2 + self.enc_b2[:, None]  # (M, B, h)
        src, s = nb[:, : self.k_sim], np.asarray(sim[:, : self.k_sim], dtype=np.float32)
        for layer in self.layers:
            z = layer["stored"][:, src] + s[None, :, :, None] * layer["w_sim"][:, None]  # (M, B, k, h)
            msg = _relu(z).mean(2) @ layer["w2"] + layer["b2"][:, None]  # the second linear commutes with the mean
            out = h @ layer["root"] + msg + layer["task_msg"][:, task]
            mu = out.mean(-1, keepdims=True)
            var = ((out - mu) ** 2).mean(-1, keepdims=True)
            normed = (out - mu) / np.sqrt(var + layer["eps"]) * layer["gamma"][:, None] + layer["beta"][:, None]
            h = _relu(normed) + h
        pair = np.asarray(pair, dtype=np.float32)
        x = (
            (h @ self.dec_q)[:, :, None, :]
            + self.dec_cand[:, None]
            + (h[:, :, None, :] * self.cand[:, None]) @ self.dec_qc[:, None]
            + (pair @ self.dec_pair[:, None])
        )  # (M, B, C, 2h)
        x = _relu(_relu(x) @ self.dec_w2[:, None] + self.dec_b2[:, None, None]) @ self.dec_w3[:, None]
        return x[..., 0] + self.dec_b3[:, None] + (pair @ self.skip_w[:, None])[..., 0] + self.skip_b[:, None]
