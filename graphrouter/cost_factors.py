"""How a candidate's observed costs set the factors of its computed cost (:func:`fit_factors`): one multiplier for
its input and output part (the rule), or one each where its costs show the prompt and the answer scale apart."""

from __future__ import annotations

import numpy as np

MAX_MULTIPLIER = 1e3  # an agent making a thousand calls per query; beyond that an observed cost is taken as an error


def log_ratios(observed: np.ndarray, computed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where an observed cost is usable (finite, positive, with a positive computed cost) and log(observed /
    computed) there (0 elsewhere)."""
    ok = np.isfinite(observed) & (observed > 0) & (computed > 0)
    return ok, np.where(ok, np.log(np.where(ok, observed, 1.0)) - np.log(np.where(ok, computed, 1.0)), 0.0)


def shrunk_multiplier(log_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The shrunk geometric mean exp(Σ log ratio / (n + prior)), kept within [1/MAX_MULTIPLIER, MAX_MULTIPLIER]."""
    bound = np.log(MAX_MULTIPLIER)
    return np.exp(np.clip(log_sum / count, -bound, bound))


SPLIT_MIN_OUTCOMES = 20  # costs needed before the input and output parts get factors of their own
SPLIT_MIN_ERROR = 0.1  # ... where one multiplier misprices them by over ~10% (their log ratios' median deviation)
# ... and factors of their own cut its squared relative error, averaged without the largest 10% (SPLIT_TRIM) of
# each fit's (so a few outliers decide nothing), by at least this many times their own per cost (n × (one − two) /
# two, a χ²-like statistic of the added factor: 25 ≈ five standard errors). On simulated costs
# (`python experiments/cost_factors.py --simulate`, 100 draws each at 20, 200 and 2,000 costs) it splits no agent's
# costs noisy in proportion (σ 0.5 or 1 in log), no LLM's billed as priced but for 2 costs 30x on its longest
# prompts or 5 costs 10x on its shortest (whole conversations billed), no clean agent's with one cost 30x; and
# 60-token answers' (σ 0.7) 25–92% of the time at 20 costs (by prompt lengths and prices), always at 200 and 2,000
SPLIT_EVIDENCE = 25.0
SPLIT_TRIM = 0.1
# the split is decided and fitted on at most this many of the costs, evenly spread (two factors need no more; at
# 100,000 costs of a candidate added since training, all of them took 32 ms per outcome posted)
SPLIT_MAX_ROWS = 4096
SPLIT_KEEP = 0.5  # a candidate split already stays so while its evidence reaches this share of both bars
SPLIT_OUTLIER = 5.0  # a cost this many times off the two factors' prediction (either way) does not fit them


def _trimmed_mean(values: np.ndarray, trim: float = SPLIT_TRIM) -> float:
    """The mean of ``values`` without their largest ``trim`` share."""
    kept = np.sort(values)[: max(int(np.ceil((1 - trim) * len(values))), 1)]
    return float(kept.mean())


def _non_negative_fit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(2,) non-negative f minimising |a f − b|², ``a`` (n, 2): the optimum, or where it has a negative part the
    better of the two one-column fits (the constrained optimum then lies on an axis)."""
    f = np.linalg.lstsq(a.T @ a, a.T @ b, rcond=None)[0]  # (the normal equations: 2 x 2, a tenth of the time)
    if (f >= 0).all():
        return f
    single = [np.where(np.arange(2) == j, (a[:, j] @ b) / max(a[:, j] @ a[:, j], 1e-300), 0.0) for j in range(2)]
    return min(single, key=lambda g: float(np.sum((a @ g - b) ** 2)))


def _two_factor_fit(parts: np.ndarray, observed: np.ndarray, start: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Factors f (2,) of the computed ``parts`` (n, 2) fitted to the ``observed`` costs by least squares weighted
    with 1 / prediction² (three reweightings from ``start`` for every prediction): a fit of the mean bill that is
    not pulled down by the observed cost in its weights, as weighting by 1 / observed² is (tried: it priced the
    input of 60-token answers 14% high and their output at half its mean). Then fitted again without the costs
    more than :data:`SPLIT_OUTLIER` times off the fit's prediction (twice): two costs 30x on an LLM's longest
    prompts made 200 costs of true factors 1 and 0.15 fit 1.65 and 0.06. Returns f, its predictions and the rows
    it was fitted on."""
    kept = np.ones(len(observed), bool)
    pred = np.full(len(observed), start)
    for _ in range(3):
        for _ in range(3):
            w = 1.0 / pred[kept]
            f = _non_negative_fit(parts[kept] * w[:, None], observed[kept] * w)
            pred = np.maximum(parts @ f, 1e-300)
        near = np.abs(np.log(observed / pred)) <= np.log(SPLIT_OUTLIER)
        if (near == kept).all() or near.sum() < SPLIT_MIN_OUTCOMES:
            break
        kept = near
    return f, pred, kept


def is_split(factors: np.ndarray) -> np.ndarray | bool:
    """Whether ``factors`` ((2,) or (C, 2)) give the input and the output part factors of their own."""
    f = np.asarray(factors)
    return f[..., 0] != f[..., 1]


def fit_factors(
    inputs: np.ndarray,
    outputs: np.ndarray,
    observed: np.ndarray,
    prior: float,
    unplaced_logs: tuple[float, int] = (0.0, 0),
    was_split: bool = False,
) -> np.ndarray:
    """(2,) the factors of one candidate's computed input and output cost, from its observed costs (USD; NaN or ≤ 0:
    not usable) and the computed parts of the same queries (``inputs``: input tokens × input price, ``outputs``: the
    output tokens a cost is computed with, 512, × output price).

    One multiplier for both (the shrunk geometric mean of observed / computed, ``prior`` outcomes towards 1), unless
    at least :data:`SPLIT_MIN_OUTCOMES` costs say the two parts scale apart: one multiplier misprices them by over
    :data:`SPLIT_MIN_ERROR` (the median distance of their log ratios from their median) and factors of their own
    (:func:`_two_factor_fit`) fit them better, by :data:`SPLIT_EVIDENCE` (an agent's costs, noisy in proportion, or a
    few outliers do not). An LLM whose answers are ~60 tokens, learned from prompts of every length, got one
    multiplier of ~0.15 and priced a 12,000-token prompt at 1/6 of its bill; its factors are ~1 (the prompt as
    computed) and ~0.12 (its answers). On costs proportional to the computed ones (both benchmarks') the one
    multiplier is kept. ``unplaced_logs``: the sum and count of more log(observed / computed) whose queries are not
    known (kept so by a checkpoint from before the factors): they count towards the one multiplier only.
    ``was_split``: the candidate's factors are split now (refitted at each cost it gets): both bars are then
    :data:`SPLIT_KEEP` as high, so a candidate near them does not flip between one and two factors (and its price
    of a long prompt between two levels) from one cost to the next."""
    x, o, y = (np.asarray(v, dtype=np.float64) for v in (inputs, outputs, observed))
    ok, log_ratio = log_ratios(y, x + o)
    m = float(
        shrunk_multiplier(np.where(ok, log_ratio, 0.0).sum() + unplaced_logs[0], ok.sum() + unplaced_logs[1] + prior)
    )
    # the factors' evidence leaves out costs beyond 1000x what the prices compute (the one multiplier is only
    # clipped there): an error, not a price
    ok &= np.abs(log_ratio) <= np.log(MAX_MULTIPLIER)
    if ok.sum() < SPLIT_MIN_OUTCOMES:
        return np.array([m, m])
    if ok.sum() > SPLIT_MAX_ROWS:
        spread = np.flatnonzero(ok)[np.linspace(0, ok.sum() - 1, SPLIT_MAX_ROWS).astype(np.int64)]
        ok = np.zeros_like(ok)
        ok[spread] = True
    # each row divided by its computed cost (the same weighted fit; the numbers stay near 1)
    computed, logs = x[ok] + o[ok], log_ratio[ok]
    parts, ratio = np.stack([x[ok], o[ok]], axis=1) / computed[:, None], y[ok] / computed
    bar = SPLIT_KEEP if was_split else 1.0
    if float(np.median(np.abs(logs - np.median(logs)))) <= SPLIT_MIN_ERROR * bar:
        return np.array([m, m])
    f, pred, kept = _two_factor_fit(parts, ratio, float(ratio.mean()))
    ratio, pred = ratio[kept], pred[kept]  # (both measured on the costs the factors fit)
    # one multiplier at the mean ratio: the level the weighted fit of the two factors converges to with one part
    # (not the best one for this squared error, E[r²]/E[r]: both fits are measured on the same estimator)
    one = _trimmed_mean((1 - ratio / ratio.mean()) ** 2)
    two = _trimmed_mean(((pred - ratio) / pred) ** 2)
    if len(ratio) * (one - two) <= SPLIT_EVIDENCE * bar * two:
        return np.array([m, m])
    return np.clip(f, 1 / MAX_MULTIPLIER, MAX_MULTIPLIER)
