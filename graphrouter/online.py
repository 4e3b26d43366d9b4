"""Learning from live traffic without retraining: online corrections of a router's effect predictions
(:class:`OnlineLearner`); the exploration that feeds them is :mod:`graphrouter.exploration`.

**Corrections.** Every outcome posted for a candidate — trained or registered since, on a query its router was not
trained on (a router that takes outcomes on its training queries, the GNN, takes those itself) — is kept as (query
embedding, task, candidate, observed effect, residual), where the residual is the observed effect minus the router's
own (uncorrected) prediction for that candidate on that query at the time (the rows:
:mod:`graphrouter.online_rows`). A request's prediction for candidate ``c`` on a query of task ``t`` is then
corrected by a hierarchical shrinkage estimate of the residual (Gaussian posterior means with prior strengths
counted in outcomes, each level one :func:`shrink`)::

    g  = Σ_c r / (n_c + κ_candidate)                          the candidate's mean residual, shrunk to 0
    τ  = (Σ_{c,t} r + κ_task · g) / (n_{c,t} + κ_task)        its mean residual on the task, shrunk to g
    ℓ  = (Σ_i w_i r_i + κ_neighbours · τ) / (Σ_i w_i + κ_neighbours)   over its k nearest remembered queries,
         w_i = exp((sim_i − 1) / temperature)                 so a new query posted with its outcome is a neighbour

and ``effect + ℓ`` (clipped to [0, 1]) is what the router's utility is computed from. A candidate with no outcomes
behind the router's own prediction (registered since training from its description) is instead *refitted* on its
outcomes (:meth:`OnlineLearner._refit`, the GNN's fit from outcomes in :mod:`graphrouter.logit_fit`): a model average of
its own logit and the trained candidates' logits, by their evidence, plus per-task offsets, so it takes the per-query
shape of the trained candidates it answers like (a description-based prediction is often too flat: nemotron's on
dcrouter averaged 0.39 against a true 0.62, too high on hard queries and far too low on easy ones, and no residual level
could fix both). :meth:`Router.score` applies it in the one request pass; the scorer feeds it
(:meth:`Scorer.add_outcomes`). Nothing new is persisted: the outcomes are in the store (a restarted service learns them
again, those observed since the training snapshot for a trained candidate: ``outcome_feed.unlearned``), and the next
full training learns from them;
:meth:`OnlineLearner.rebased` keeps only the outcomes newer than that training's snapshot, re-based on the new router's
predictions (no outcome counted twice).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from graphrouter.logit_fit import FitPrior, fit_resemblance
from graphrouter.online_priors import Priors
from graphrouter.online_rows import OnlineRows
from graphrouter.world import QueryFeatures

REFIT_ROWS = 2000  # the most recent outcomes of a candidate its refit reads (2,000 rows on 30 bases: ~20 ms)


class Predictor(Protocol):
    """What re-basing needs of a router (:class:`~graphrouter.routers.base.Router` has it; not imported here,
    since the router imports this module)."""

    candidates: tuple[str, ...]
    world: Any
    task_inferer: Any

    def predict_effect(self, q: QueryFeatures) -> np.ndarray: ...


def remembered(router: Predictor, embedding: np.ndarray, task: np.ndarray) -> QueryFeatures:
    """The features of queries the learner remembers (embeddings and task indices, -1 where unknown: inferred by
    ``router``), to predict their effects again."""
    return router.task_inferer.fill(QueryFeatures(embedding, task, np.zeros(len(task))))


def _logit(p: np.ndarray) -> np.ndarray:
    """The logit of a predicted effect, clipped to [0.01, 0.99] (a base of exactly 0 or 1 would dominate a fit)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.01, 0.99)
    return np.log(p / (1 - p))


def in_snapshot(router: Predictor, keys: list[tuple[str, str] | None], effects: Any = None) -> np.ndarray:
    """(n,) whether each (query id, candidate) is an observed cell of ``router``'s training world (None: not), with
    the same effect where ``effects`` (n,) are given: an outcome posted again with another value since is not."""
    data = router.world.data
    rows = {k: i for i, k in enumerate(data.query_keys)}
    column = {c: j for j, c in enumerate(data.candidates)}
    out = np.zeros(len(keys), bool)
    for n, key in enumerate(keys):
        i, j = (None, None) if key is None else (rows.get(key[0]), column.get(key[1]))
        seen = i is not None and j is not None and bool(np.isfinite(data.effect[i, j]))
        out[n] = seen and (effects is None or float(data.effect[i, j]) == float(effects[n]))
    return out


def shrink(total: Any, count: Any, strength: float, prior: Any = 0.0) -> Any:
    """A mean shrunk toward ``prior``: ``(total + strength · prior) / (count + strength)``, the posterior mean of
    ``count`` observations summing to ``total`` under a prior worth ``strength`` observations (the one formula of
    every level of the correction; scalars or arrays alike)."""
    return (total + strength * prior) / (count + strength)


class OnlineLearner(OnlineRows):
    """Per-candidate, per-task posterior corrections of a router's effect predictions, computed from its memory of
    the outcomes posted (:class:`~graphrouter.online_rows.OnlineRows`: their queries' nearest neighbours correct
    later requests). Thread-safe; keyed by candidate name, so registering or removing candidates never misaligns
    it."""

    def __init__(self, priors: Priors | None = None, dim: int | None = None) -> None:
        super().__init__(dim)
        self.priors = priors or Priors()
        self.seq = 0  # outcomes ever observed (monotonic across re-basing): the mark a training snapshot takes
        self._refits: dict[int, tuple] = {}  # per candidate id: ((version, bases), usable bases, w_own, w, offsets)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("_refits", {})  # pickled before refits
        super().__setstate__(state)

    # ---- learning -----------------------------------------------------------------------------------------
    def observe(
        self,
        candidate: str,
        query_ids: list[str],
        embedding: np.ndarray,
        task: np.ndarray,
        effect: np.ndarray,
        predicted: np.ndarray,
        others: dict[str, np.ndarray] | None = None,
    ) -> int:
        """Remember outcomes of ``candidate``: per query its id, (d,) embedding, task index (-1 if unknown), the
        observed effect and the router's uncorrected prediction now; ``others``: every candidate's uncorrected
        prediction on the same queries (name → (n,)), the bases of a refit. Returns how many were taken."""
        with self._lock:
            seqs = np.arange(self.seq + 1, self.seq + 1 + len(query_ids))
            self.seq += len(query_ids)
            self._add(candidate, query_ids, embedding, task, effect, predicted, seqs, others)
        return len(query_ids)

    def repredict(self, candidate: str, router: Predictor) -> int:
        """Measure ``candidate``'s corrections again against ``router``'s (uncorrected) predictions now. After the
        router refitted it from outcomes it took into its own graph (a new LLM's on stored training queries), a
        correction measured against the prediction before would count the refit's change a second time, and the
        answer would depend on the order the outcomes came in (a start, which registers it with those outcomes
        first, gave another). How many rows were measured again."""
        col = list(router.candidates).index(candidate)
        for _ in range(3):  # the predictions outside the lock: again if the rows changed meanwhile
            with self._lock:
                cid = self._name_id.get(candidate)
                rows = np.zeros(0, np.int64) if cid is None else np.flatnonzero(self._cand[: self._n] == cid)
                if cid is None or not len(rows):
                    return 0
                version, emb, task = self._version.get(cid, 0), self._emb[rows], self._task[rows]
            predicted = np.asarray(router.predict_effect(remembered(router, emb, task))[:, col], dtype=np.float64)
            with self._lock:
                same = self._name_id.get(candidate) == cid and self._version.get(cid, 0) == version
                if same and np.array_equal(np.flatnonzero(self._cand[: self._n] == cid), rows):  # none moved
                    self._resid[rows] = self._effect[rows] - predicted
                    self._version[cid] = version + 1
                    self._by_cand = {}
                    return len(rows)
        return 0

    def forget(self, name: str) -> None:
        """Drop what was learned about a candidate that is removed (a later one of that name starts afresh)."""
        with self._lock:
            cid = self._forget_rows(name)
            if cid is not None:
                self._refits.pop(cid, None)

    def correction(
        self,
        candidates: tuple[str, ...] | list[str],
        q: QueryFeatures,
        trained: np.ndarray | None = None,
        effect: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """(n, C) residual corrections for the queries ``q`` (tasks filled in), or None when nothing was learned.
        ``trained``: (C,) outcomes behind each candidate's prediction before any learned here (few: priors nearer
        the weaker :attr:`Priors.untrained`, see :attr:`Priors.trained_scale`). ``effect``: the router's (n, C)
        uncorrected predictions for ``q``; with it (and ``trained``), a candidate with no outcome behind the router's
        prediction (registered from its description only) is refitted (:meth:`_refit`) on the candidates with
        freshness < 1/2 instead of corrected by residual levels."""
        p = self.priors
        with self._lock:
            if self._n == 0:
                return None
            n = self._n
            emb, task, cand, resid = self._emb[:n], self._task[:n], self._cand[:n], self._resid[:n]
            if not self._by_cand:
                order = np.argsort(cand, kind="stable")
                bounds = np.searchsorted(cand[order], np.arange(len(self._names) + 1))
                self._by_cand = {c: order[bounds[c] : bounds[c + 1]] for c in range(len(self._names))}
            by_cand = self._by_cand
            fresh = None if trained is None else p.freshness(trained)
            qe = np.asarray(q.embedding, dtype=np.float32)
            sims = qe @ emb.T  # (n_q, M)
            out = np.zeros((len(q), len(candidates)))
            known = [] if fresh is None else [c for j, c in enumerate(candidates) if fresh[j] < 0.5]
            for j, name in enumerate(candidates):
                cid = self._name_id.get(name)
                if cid is None or not len(by_cand.get(cid, ())):
                    continue
                rows = by_cand[cid]
                f = 0.0 if fresh is None else fresh[j]
                if effect is not None and trained is not None and trained[j] <= 0 and p.resemble_own < 1.0:
                    out[:, j] = self._refit(cid, rows, [c for c in known if c != name], candidates, q.task, effect, j)
                    continue
                r = resid[rows]
                k_cand, k_task = f * p.untrained + (1 - f) * p.candidate, f * p.untrained + (1 - f) * p.task
                g = shrink(r.sum(), len(r), k_cand)
                t_rows = task[rows]
                for t in np.unique(q.task):
                    sel_q = q.task == t
                    same = t_rows == t
                    tau = shrink(r[same].sum(), same.sum(), k_task, g)
                    s = sims[np.ix_(sel_q, rows)]
                    k = min(p.k, len(rows))
                    top = (
                        np.argpartition(-s, k - 1, axis=1)[:, :k]
                        if k < len(rows)
                        else np.broadcast_to(np.arange(len(rows)), (len(s), len(rows)))
                    )
                    w = np.exp((np.take_along_axis(s, top, 1) - 1.0) / p.temperature)
                    local = (w * r[top]).sum(1)
                    out[sel_q, j] = shrink(local, w.sum(1), p.neighbours, tau)
            return out

    def _refit(
        self,
        cid: int,
        rows: np.ndarray,
        bases: list[str],
        candidates: tuple[str, ...] | list[str],
        task: np.ndarray,
        effect: np.ndarray,
        j: int,
    ) -> np.ndarray:
        """(n,) correction of column ``j`` (candidate id ``cid``, outcome ``rows``) for queries of ``task`` with
        uncorrected predictions ``effect``: its prediction refitted to its outcomes as a model average of its own
        logit and those of the trained candidates ``bases`` (each as it was predicted on its rows), plus per-task
        offsets (:func:`~graphrouter.logit_fit.fit_resemblance`), minus the uncorrected prediction. The fit is
        kept until the candidate's rows or the bases change (caller holds the lock)."""
        key = (self._version.get(cid, 0), tuple(bases))
        cached = self._refits.get(cid)
        if cached is None or cached[0] != key:
            rows = rows[np.argsort(self._seq[rows], kind="stable")][-REFIT_ROWS:]
            rows = rows[self._task[rows] >= 0]  # (the scorer fills every task in)
            col = {n: i for i, n in enumerate(self._other_names)}
            # a base is used where it was predicted on at least half of the rows (a candidate added later, or rows
            # remembered before bases were), and the fit reads the rows where every base used was
            usable = tuple(b for b in bases if b in col and np.isfinite(self._others[rows, col[b]]).mean() >= 0.5)
            values = self._others[np.ix_(rows, [col[b] for b in usable])]
            rows, values = rows[np.isfinite(values).all(1)], values[np.isfinite(values).all(1)]
            if not len(rows):
                return np.zeros(len(task))
            t = self._task[rows]
            n_tasks = int(t.max(initial=-1)) + 2  # the last, never observed: its offset is the global one alone
            own = _logit(self._effect[rows] - self._resid[rows])
            prior = FitPrior(own=self.priors.resemble_own)
            w_own, w, offsets = fit_resemblance(own, _logit(values), self._effect[rows], t, n_tasks, prior)
            cached = self._refits[cid] = (key, usable, w_own, w, offsets)
        _, usable, w_own, w, offsets = cached
        cols = [list(candidates).index(b) for b in usable]
        t = np.where((task >= 0) & (task < len(offsets) - 1), task, len(offsets) - 1)  # a task never seen: global
        z = w_own * _logit(effect[:, j]) + _logit(effect[:, cols]) @ w + offsets[t]
        return 1.0 / (1.0 + np.exp(-z)) - effect[:, j]

    def adjust(
        self,
        candidates: tuple[str, ...] | list[str],
        q: QueryFeatures,
        effect: np.ndarray,
        trained: np.ndarray | None = None,
    ) -> np.ndarray:
        """``effect`` (n, C) corrected by what was learned online, clipped to [0, 1]; ``effect`` itself (the same
        array) when nothing was learned, so routing without outcomes is exactly as without the learner."""
        corr = self.correction(candidates, q, trained, effect)
        if corr is None:
            return effect
        return np.clip(effect + corr, 0.0, 1.0)

    # ---- the next training absorbs them -------------------------------------------------------------------
    def rebased(self, router: Predictor, since: int, task_names: list[str] | None = None) -> OnlineLearner:
        """A learner for a retrained ``router`` holding only the outcomes observed after mark ``since`` (older ones
        are in its training snapshot), their residuals recomputed against its predictions. ``task_names``: the
        tasks the kept task indices refer to (the previous router's), mapped by name onto the new router's (a task
        added since training can sort before the others; one the new router lacks is inferred again). Without a
        mark (``since`` < 0: a replica installing a checkpoint another one trained, or resyncing), an outcome whose
        (query, candidate) the new router's world observed with the same effect is taken to be in its snapshot, and
        dropped."""
        with self._lock:
            rows = {row: key for key, row in self._key.items()}
            keep = np.flatnonzero(self._seq[: self._n] > since)
            if since < 0:
                keep = keep[~in_snapshot(router, [rows.get(int(r)) for r in keep], self._effect[keep])]
            names = list(self._names)
            emb, task, cand = self._emb[keep], self._task[keep], self._cand[keep]
            effect, seq = self._effect[keep], self._seq[keep]
            last = self.seq
        out = OnlineLearner(self.priors, self._dim)
        out.seq = last
        if not len(keep):
            return out
        new_tasks = list(router.world.data.task_names)
        if task_names is not None:
            index = {t: i for i, t in enumerate(new_tasks)}
            lookup = np.array([index.get(t, -1) for t in task_names] + [-1], dtype=np.int64)
            task = lookup[np.where((task >= 0) & (task < len(task_names)), task, len(task_names))]
        task = np.where(task < len(new_tasks), task, -1)
        q = remembered(router, emb, task)
        pred = router.predict_effect(q)
        cols = {c: i for i, c in enumerate(router.candidates)}
        for j, name in enumerate(names):
            sel = np.flatnonzero(cand == j)
            if name not in cols or not len(sel):
                continue
            ids = [rows[int(keep[i])][0] for i in sel]
            others = {c: pred[sel, k] for c, k in cols.items() if c != name}
            out._add(name, ids, emb[sel], q.task[sel], effect[sel], pred[sel, cols[name]], seq[sel], others)
        return out
