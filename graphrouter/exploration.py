"""Bounded exploration, the half of learning from live traffic that chooses what to learn
(:mod:`graphrouter.online` learns from it).

:class:`Explorer` holds the operator's budget (a share of traffic, and optionally extra expected USD per 1,000
requests) and draws a Thompson sample of each candidate's effect, ``N(effect, σ² / (1 + n))`` with ``n`` the outcomes
behind its prediction; the scorer routes to the sample's best candidate (among those the request allows) when that
differs from the argmax and the budget still has room. A candidate that is not known (new since training) is first
quizzed: until it has :attr:`Explorer.quiz` outcomes, and :attr:`Explorer.task_quiz` on the query's task, an exploring
request goes to it (where a perfect answer, then the best its outcomes on the task allow, could pay for its cost),
so its first outcomes come from random queries, not only from those its prediction already favours.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from scipy.special import betaincinv

from graphrouter.locked_state import LockedState

BURST = 1000  # requests' worth of unused exploration allowance that can be saved up (Explorer's burst)
TASK_QUIZ = 7  # per task, the outcomes a new candidate is quizzed for (derived in Explorer.sample's docstring)
EPS = 1e-9  # allowance sums of float shares (ten of 0.1 make 0.9999999999999999)
QUIZ_ALPHA = 1e-3  # a quiz on a task stops once its outcomes there are 99.9% sure it cannot win


def upper_level(total: np.ndarray, n: np.ndarray, alpha: float = QUIZ_ALPHA) -> np.ndarray:
    """Exact (Clopper–Pearson) one-sided upper bound, at confidence 1 − ``alpha``, on a candidate's mean effect from
    ``n`` outcomes summing to ``total`` (effects in [0, 1], counted as successes); 1 where ``n`` is 0. Exact, not
    Wilson's: Wilson's 99.9% bound after one failure is 0.905 (exact 0.999), so one unlucky outcome would end a quiz
    wherever the best known candidate is predicted above 0.9 (an operator audit saw it)."""
    total, n = np.broadcast_arrays(np.asarray(total, dtype=float), np.asarray(n, dtype=float))
    x = np.clip(total, 0.0, np.maximum(n, 0.0))
    short = x < n  # some outcome below 1: a bound below 1
    top = np.ones(x.shape)
    top[short] = betaincinv(x[short] + 1.0, n[short] - x[short], 1.0 - alpha)
    return top


class Explorer(LockedState):
    """The operator's exploration budget and the Thompson sampler. ``share``: at most this fraction of all routed
    requests explores; ``usd_per_1k``: at most this much extra expected cost (the explored pick's predicted cost
    minus the argmax's, when positive) per 1,000 routed requests (None: no cost bound). Both bounds hold at every
    moment, not only on average: the allowance accrues with every routed request, exploring or not, and is spent by
    explorations (a token bucket). ``burst``: at most this many requests' worth of unused allowance is saved up (and
    at least one exploration's), so after a long run of plain routes the next exploring requests explore about
    ``share × burst / (1 − share)`` in a row (the saved allowance and their own), then ``share`` of the requests
    again (without it, 100,000 plain routes would let the next 10,000 exploring requests all explore at a share of
    0.1); likewise at most ``burst`` requests' worth of USD, so a single exploration dearer than that never fits.
    ``known_at``: a candidate trained (or registered) with at least this many outcomes is known, and exploration
    never picks it over the argmax (see :meth:`sample`). Thread-safe."""

    def __init__(
        self,
        share: float = 0.1,
        usd_per_1k: float | None = None,
        sigma: float = 0.5,
        seed: int | None = None,
        known_at: float = 50.0,
        quiz: int = 50,
        task_quiz: int = TASK_QUIZ,
        burst: int = BURST,
    ):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"exploration share must be in [0, 1], got {share!r}")
        if usd_per_1k is not None and not (math.isfinite(usd_per_1k) and usd_per_1k >= 0):
            raise ValueError(f"exploration USD per 1k requests must be >= 0, got {usd_per_1k!r}")
        if not known_at > 0:
            raise ValueError(f"exploration's known_at must be > 0 outcomes, got {known_at!r}")
        if quiz < 0:
            raise ValueError(f"exploration's quiz must be >= 0 outcomes, got {quiz!r}")
        if task_quiz < 0:
            raise ValueError(f"exploration's task_quiz must be >= 0 outcomes, got {task_quiz!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"exploration's burst must be at least 1 request, got {burst!r}")
        self.share, self.usd_per_1k, self.sigma = float(share), usd_per_1k, float(sigma)
        self.burst = burst
        self.known_at, self.quiz, self.task_quiz = float(known_at), int(quiz), int(task_quiz)
        self.requests = 0
        self.explorations = 0
        self.extra_usd = 0.0
        self._saved = 0.0  # unused allowance, in explorations (at most _cap())
        self._saved_usd = 0.0  # unused allowance, in USD
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def __setstate__(self, state: dict) -> None:
        state.setdefault("known_at", 50.0)  # pickled before known candidates were left out
        state.setdefault("quiz", 0)  # pickled before quizzes: as it was
        state.setdefault("task_quiz", 0)  # pickled before per-task quizzes: as it was
        if "burst" not in state:  # pickled before the burst bound: what its cumulative bound had left, capped
            state["burst"] = BURST
            state["_saved"] = state["share"] * state["requests"] - state["explorations"]
            usd = state["usd_per_1k"]
            state["_saved_usd"] = 0.0 if usd is None else usd * state["requests"] / 1000.0 - state["extra_usd"]
        super().__setstate__(state)
        self._saved, self._saved_usd = min(self._saved, self._cap()), min(self._saved_usd, self._cap_usd())

    def _cap(self) -> float:
        """The most unused allowance saved up, in explorations: ``burst`` requests' worth, and at least one."""
        return max(self.share * self.burst, 1.0) if self.share > 0 else 0.0

    def _cap_usd(self) -> float:
        """The most unused USD allowance saved up: ``burst`` requests' worth."""
        return 0.0 if self.usd_per_1k is None else self.usd_per_1k * self.burst / 1000.0

    def count_request(self) -> None:
        """One more routed request: its share of the allowance (up to the burst's cap)."""
        with self._lock:
            self.requests += 1
            self._saved = min(self._saved + self.share, self._cap())
            if self.usd_per_1k is not None:
                self._saved_usd = min(self._saved_usd + self.usd_per_1k / 1000.0, self._cap_usd())

    def sample(
        self,
        effect: np.ndarray,
        cost_norm: np.ndarray,
        weights: tuple[float, float],
        counts: np.ndarray,
        pool: np.ndarray,
        trained: np.ndarray | None = None,
        seen: np.ndarray | None = None,
        task_seen: np.ndarray | None = None,
        task_hits: np.ndarray | None = None,
    ) -> int | None:
        """The best candidate of ``pool`` under one Thompson sample of the effects (C,), each ``N(effect, σ² / (1 +
        n))`` with ``n`` the outcomes behind its prediction (``counts``), clipped to [0, 1] (effects are: a sample above
        1 would explore a candidate whose cost even a perfect answer could not pay for); utility ``w_effect · sample −
        w_cost · cost_norm``. ``trained`` (C,): the outcomes each candidate was trained (or registered) with; one with
        at least ``known_at`` is known: compared at its prediction (no noise), and never the pick (None when the best is
        known). Exploration is for what outcomes can still teach: on MMLU-Pro's replay in Balance, near-tie swaps among
        trained LLMs took the whole 10% budget (9.8% of requests explored, 0.1% of them on the new LLM) and cost more
        than static routing, while the online learner treats a trained candidate's prediction as all but settled (its
        validated priors: κ = 1e4). A new candidate stays explorable, its noise shrinking with every outcome it gets.

        **Quiz.** ``seen`` (C,): the outcomes each candidate has in all (trained, registered and learned online). A
        candidate that is not known (a new one, or one trained on fewer than ``known_at`` outcomes) and has fewer than
        :attr:`quiz` is the pick (one of them, uniformly) whatever the sample; outcomes are counted as they arrive, so
        with delayed or sparse feedback it is quizzed until they do (within the budget). Its first outcomes then
        come from queries drawn at random, not only from those where its description-based prediction already looks
        best (on dcrouter's replay those were the hard queries, where every LLM fails: nemotron's outcomes there
        averaged 0.24 against a true 0.62, and its learned level never rose). Only a candidate that could win the
        query with a perfect answer at its cost is quizzed there. Bandit routers "quiz" a new model on 20–50 prompts
        the same way; 50, the most outcomes the GNN's registration was validated with.

        **Per task.** ``task_seen`` (C,): the outcomes each candidate has learned online on the request's task. A
        candidate with no outcome behind its prediction (registered from its description: the online learner refits it)
        is also quizzed there while it has fewer than :attr:`task_quiz` of them (unless :attr:`quiz` is 0, which turns
        every quiz off), so it gets at most :attr:`quiz` + ``task_quiz`` × tasks quizzes in all (50 + 98 with MMLU-Pro's
        14 tasks), within the same budget. Its refitted prediction has a level per task (:mod:`graphrouter.online`), and
        50 random outcomes leave some of 14 tasks with one or two. On MMLU-Pro's replay (Performance First, seed 0;
        experiments/online_task_levels.py) gpt-4o had 1 or 2 outcomes in 4 tasks after its quiz, their levels stayed
        where those outcomes put them (chemistry predicted 0.47 against a true 0.89), the spread of its sample (from its
        ~500 outcomes in all) was too small for the sample ever to try them again, and its share of the last 500 queries
        was 0.20 against the retrained router's 0.34. 7: the outcomes after which a task's own mean (a 0/1 mean's
        standard deviation 0.5 / √n) is surer than the refit's prior on a task's offset (about 0.2 in effect: 1.0 in
        logit at an effect near 0.7), 0.5² / 0.2² ≈ 6.25.

        **Until its outcomes say it cannot win.** ``task_hits`` (C,): the summed effects of those ``task_seen``
        outcomes. A quiz on a task asks whether the candidate could win there at its level on that task: at first a
        perfect answer, then the exact upper bound (:func:`upper_level`, 99.9% one-sided) of its mean there, so a
        candidate that failed its first 7 quizzes on a task (bound 0.63) is not quizzed there again where the best
        known candidate is predicted above that, nor after 30 failures (bound 0.21) where it is predicted above 0.21;
        how many failures it takes depends on what it would have to beat. The bound is on its mean on the task, not on
        each query: the sample (below) still tries it where its refitted prediction is high. It counts every outcome
        learned online on the task, not only the quiz's random ones, so outcomes from queries the sample or the
        argmax chose (biased, e.g. towards hard queries) count too; at 99.9% it takes many of them to end a quiz.
        It applies to every candidate not yet known (trained or registered with fewer than ``known_at``
        outcomes), with or without the per-task quiz."""
        with self._lock:
            z = self._rng.standard_normal(len(pool))
        n = np.maximum(counts[pool], 0.0)
        known = np.zeros(len(pool), bool) if trained is None else np.asarray(trained)[pool] >= self.known_at
        if seen is not None and self.quiz > 0:  # quiz = 0 turns the per-task quiz off too
            # only where its top (a perfect answer at first) could pay for its cost: no quiz can teach a choice this
            # scenario never makes
            # (a two-sigma top instead of 1 stopped PF quizzes too early on dcrouter's replay: nemotron's share
            # 0.38 ± 0.16 against 0.54 ± 0.03)
            best = float(np.max(weights[0] * effect[pool] - weights[1] * cost_norm[pool]))
            top = np.ones(len(pool))
            if task_seen is not None and task_hits is not None:
                top = upper_level(np.asarray(task_hits)[pool], np.asarray(task_seen)[pool])
            could_win = weights[0] * top - weights[1] * cost_norm[pool] > best
            short = np.asarray(seen)[pool] < self.quiz
            if task_seen is not None and trained is not None:  # per task: only a candidate the learner refits
                short |= (np.asarray(task_seen)[pool] < self.task_quiz) & (np.asarray(trained)[pool] <= 0)
            quizzed = pool[~known & could_win & short]
            if len(quizzed):
                with self._lock:
                    return int(quizzed[self._rng.integers(len(quizzed))])
        spread = np.where(known, 0.0, self.sigma / np.sqrt(1.0 + n))
        raw = effect[pool] + spread * z
        sampled = np.where(known, effect[pool], np.clip(raw, 0.0, 1.0))
        u = weights[0] * sampled - weights[1] * cost_norm[pool]
        best = int(np.lexsort((raw, u))[-1])  # ties (samples clipped to 1) go to the higher unclipped sample
        return None if known[best] else int(pool[best])

    def quiz_left(self, trained: float, seen: float) -> int:
        """Quiz outcomes a candidate still lacks in all: 0 once it is known (``trained`` ≥ :attr:`known_at`), with
        the quiz off, or after :attr:`quiz` outcomes (``seen``: trained, registered and learned online). Its quiz
        on a task may end sooner, or go on for :attr:`task_quiz` there (:meth:`sample`)."""
        if self.quiz <= 0 or trained >= self.known_at:
            return 0
        return max(0, self.quiz - int(seen))

    def try_spend(self, extra_usd: float) -> bool:
        """Take one exploration (with ``extra_usd`` expected extra cost) from the allowance if it fits; the request
        itself must already be counted. Never more than ``share`` of the requests counted so far explore, nor more
        than ``usd_per_1k`` per 1,000 of them is spent (the allowance accrues at those rates and starts at 0)."""
        extra = max(float(extra_usd), 0.0)
        with self._lock:
            if self._saved < 1.0 - EPS or self.explorations + 1 > self.share * self.requests:
                return False
            if self.usd_per_1k is not None and (
                extra > self._saved_usd + EPS or self.extra_usd + extra > self.usd_per_1k * self.requests / 1000
            ):
                return False
            self.explorations += 1
            self.extra_usd += extra
            self._saved -= 1.0
            if self.usd_per_1k is not None:
                self._saved_usd -= extra
            return True
