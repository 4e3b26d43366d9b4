"""The fast fit from outcomes: a candidate's predicted skill follows what it was observed to do, without retraining.

The GNN's shared weights are trained on the candidates it knew; a candidate registered since, or one whose outcomes
changed since (a model upgraded), is described to it by a few outcome edges that move its predictions only a
little (the decoder was trained to distrust sparse evidence). So, when a candidate's outcomes arrive, this module
fits that candidate's own correction on top of the GNN, never the shared weights:

    logit'(q, c) = logit(q, c) + a_c + b_{c, task(q)}

per ensemble member, where ``logit`` is the GNN's output for the query as a *new* query (its own row left out of
its neighbours, so the fit sees what serving sees) and ``a_c`` (global) and ``b_{c,t}`` (per task) are the maximum
a-posteriori offsets under Gaussian priors (:class:`FitPrior`) given the candidate's *fresh* outcomes: those that
arrived since training (all of a registered candidate's, the new ones of a trained candidate). A few Newton steps
on at most (1 + tasks) parameters: microseconds per candidate; the cost is one batched ego-path pass over the fresh
outcome rows. With no fresh outcome the offsets are 0 and the GNN's own prediction stands.

A *trained* candidate's offsets are the model average of "it changed" and "it did not"
(:func:`~graphrouter.logit_fit.fit_change`): its training outcomes already say what it does, so a few outcomes leave
it about where it was, and many that agree on a change (an upgrade) move it; re-posted outcomes it already had are
not fresh at all.

The fit of a new candidate is *paired* (:attr:`FitPrior.peers`): its peers are the 5 trained LLMs whose outcomes
agree most with this one's over its outcome rows; on each row, their mean residual (observed − predicted) there is
added to its base first, so a row that is harder or easier than the GNN predicts for everyone moves no offset.
Unpaired, a probe set chosen where the strong candidates disagree (hard rows that strong models still get right more
often than predicted) made the new LLM look better than it is (nemotron on dcrouter, 20 designed probes: predicted
0.68, true 0.56; experiments/results/new_llm_why_dcrouter.md).

The table of offsets (candidates × tasks) travels with the compiled ego path it was fitted for
(:attr:`~graphrouter.routers.gnn.ego.EgoPath.offsets`), so the numpy request path and the PyTorch reference apply
the same correction.
"""

from __future__ import annotations

import numpy as np

from graphrouter.logit_fit import FitPrior, fit_change, fit_offsets, fit_resemblance
from graphrouter.routers.gnn.correction import Correction
from graphrouter.routers.gnn.ego import EgoPath
from graphrouter.routers.gnn.graph import pad_neighbours
from graphrouter.routers.gnn.observed import Observed, clipped_logit

DEFAULT_PRIOR = FitPrior()
MAX_ROWS = 4000  # fresh outcome rows fitted on per refit, all candidates together (the most recent kept)


def peer_residual(y: np.ndarray, peer_y: np.ndarray, peer_seen: np.ndarray, peer_p: np.ndarray, m: int) -> np.ndarray:
    """(n,) per outcome row, the mean residual (observed − predicted effect) of the ``m`` candidates whose observed
    effects (``peer_y`` (n, S), seen where ``peer_seen``) agree most with ``y`` (n,) — agreement ``Σ seen · (1 −
    |peer_y − y|) / (Σ seen + 1)`` over the rows, shrunk toward 0 by one pseudo-row —; ``peer_p`` (n, S) their
    predicted effects. NaN on a row none of them answered (and everywhere when ``m`` is 0 or there are none)."""
    if m <= 0 or peer_y.shape[1] == 0:
        return np.full(len(y), np.nan)
    seen = peer_seen.astype(np.float64)
    agree = (seen * (1.0 - np.abs(peer_y - y[:, None]))).sum(0) / (seen.sum(0) + 1.0)
    top = np.argsort(-agree, kind="stable")[:m]
    s, res = seen[:, top], np.where(peer_seen[:, top], peer_y[:, top] - peer_p[:, top], 0.0)
    count = s.sum(1)
    return np.where(count > 0, (res * s).sum(1) / np.maximum(count, 1.0), np.nan)


def shifted(logit: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """``logit`` with ``residual`` added on the probability scale (clipped to [0.02, 0.98]); unchanged where the
    residual is NaN (no peer answered the row)."""
    moved = clipped_logit(1.0 / (1.0 + np.exp(-logit)) + np.nan_to_num(residual))
    return np.where(np.isfinite(residual), moved, logit)


def self_excluded_neighbours(search, emb: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """The ``k`` nearest stored queries of the stored queries ``rows``, each row itself left out (as a new query
    would see them); ``search(emb, k)`` is the router's neighbour search. An approximate index that misses the row
    itself loses its farthest neighbour instead."""
    nb, sim = search(emb[rows], k + 1)
    if nb.shape[1] <= k:  # fewer stored queries than k + 1
        keep = nb != rows[:, None]
        nb = np.where(keep, nb, nb[:, :1] if nb.shape[1] == 1 else np.roll(nb, 1, 1))
        return pad_neighbours(nb, np.where(keep, sim, -1.0), k)
    is_self = nb == rows[:, None]
    drop = np.where(is_self.any(1), is_self.argmax(1), k)
    keep = np.ones_like(nb, bool)
    keep[np.arange(len(nb)), drop] = False
    return nb[keep].reshape(-1, k), sim[keep].reshape(-1, k)


def fit_correction(
    ego: EgoPath,
    obs: Observed,
    emb: np.ndarray,
    fresh: dict[int, np.ndarray],
    search,  # type: ignore[no-untyped-def]
    k_pair: int,
    n_tasks: int,
    prior: FitPrior = DEFAULT_PRIOR,
    resemble: np.ndarray | None = None,
    peer_cols: np.ndarray | None = None,
) -> Correction | None:
    """The correction of the serving state (``ego``, ``obs``): column c fitted to candidate c's fresh outcome rows
    ``fresh[c]`` (stored positions; their effects are read from ``obs``), nothing for the others; None when no
    candidate has fresh outcomes. ``emb``: the stored queries' embeddings. ``resemble`` (S,): the trained columns a
    candidate *not* among them may resemble (model averaging over bases); None or empty: offsets only.
    ``peer_cols``: the columns a candidate may be paired against (:attr:`FitPrior.peers`; the trained LLMs: an
    agent inherits its LLM's outcomes, so it would pair an upgraded LLM with itself); None or empty: unpaired."""
    n_cand = obs.effect.shape[1]
    fresh = {c: r[obs.visible[r, c]] for c, r in fresh.items() if 0 <= c < n_cand and len(r)}
    fresh = {c: r for c, r in fresh.items() if len(r)}
    if not fresh:
        return None
    per = max(1, MAX_ROWS // len(fresh))
    fresh = {c: r[-per:] for c, r in fresh.items()}
    rows = np.unique(np.concatenate(list(fresh.values())))
    nb, sim = self_excluded_neighbours(search, emb, rows, k_pair)
    task = obs.task[rows]
    logits = ego.logits(emb[rows], task, nb, sim, obs.pair_features(nb, sim, task)).mean(0)  # (n, C)
    known = np.zeros(0, np.int64) if resemble is None else np.asarray(resemble, np.int64)
    src = known if prior.own < 1.0 else np.zeros(0, np.int64)
    trained = set(known.tolist())  # a trained candidate's own logit is its base: it resembles no one
    pairable = np.zeros(0, np.int64) if peer_cols is None or prior.peers <= 0 else np.asarray(peer_cols, np.int64)
    offsets = np.zeros((n_cand, n_tasks))
    cols, own, mix = [], [], []
    where = {r: i for i, r in enumerate(rows.tolist())}
    for c, r in fresh.items():
        i = np.array([where[x] for x in r.tolist()])
        y, t = obs.effect[r, c], task[i]
        if c in trained:  # against its own calibrated prediction: a peer-shifted base makes one row a surprise
            offsets[c] = fit_change(logits[i, c], y, t, n_tasks, prior)
            continue
        own_base, other_bases = logits[i, c], logits[i][:, src]
        peers = pairable[pairable != c]  # the same whichever other columns are refitted
        if len(peers):
            peer_p = 1.0 / (1.0 + np.exp(-logits[i][:, peers]))
            res = peer_residual(y, obs.effect[r][:, peers], obs.visible[r][:, peers], peer_p, prior.peers)
            own_base, other_bases = shifted(own_base, res), shifted(other_bases, res[:, None])
        if len(src):
            w_own, w, offsets[c] = fit_resemblance(own_base, other_bases, y, t, n_tasks, prior)
            cols.append(c)
            own.append(w_own)
            mix.append(w)
        else:  # nothing to resemble
            offsets[c] = fit_offsets(own_base, y, t, n_tasks, prior)
    if not cols:
        return Correction(offsets.astype(np.float32), peer_cols=pairable)
    return Correction(
        offsets.astype(np.float32),
        np.array(cols, np.int64),
        np.array(own, np.float32),
        src,
        np.array(mix, np.float32).reshape(len(cols), len(src)),
        pairable,
    )


def refit_base(installed: Correction | None, removed: int | None, resemble: np.ndarray) -> Correction | None:
    """What a partial refit (a patched change) keeps of the installed correction: it with the ``removed`` column
    dropped; None when a full fit is due instead (nothing installed, or a removed column was one the fitted columns
    mix from or were paired against, or they mix from other trained columns than ``resemble``)."""
    if installed is not None and removed is not None:
        installed = installed.without(removed)
    if installed is None or (len(installed.src) and not np.array_equal(installed.src, resemble)):
        return None
    return installed
