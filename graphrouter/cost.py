"""Cost, the one formula: ``(input tokens × input price + output tokens × output price) / 1e6`` USD (prices per 1M
tokens; GraphRouter fixes the output at 512 tokens), and the :class:`CostModel` every router shares."""

from __future__ import annotations

import logging

import numpy as np

from graphrouter.tokens import DEFAULT_OUTPUT_TOKENS
from graphrouter.world import World


def usd_cost(input_tokens: float, output_tokens: float, input_price: float, output_price: float) -> float:
    """Cost in USD of one call, prices in USD per 1M tokens."""
    return float(usd_costs(np.asarray([input_tokens]), np.asarray([[input_price, output_price]]), output_tokens)[0, 0])


def usd_costs(
    tokens: np.ndarray, prices: np.ndarray, output_tokens: float | np.ndarray = DEFAULT_OUTPUT_TOKENS
) -> np.ndarray:
    """(n, C) USD of n queries of ``tokens`` input tokens on C candidates of ``prices`` (C, 2); ``output_tokens``:
    one count for all, or (n,) one per query."""
    p = np.asarray(prices, dtype=np.float64)
    out = np.asarray(output_tokens, dtype=np.float64).reshape(-1, 1)
    return (np.asarray(tokens, dtype=np.float64)[:, None] * p[None, :, 0] + out * p[None, :, 1]) / 1e6


def _log_ratio(observed: np.ndarray, computed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where an observed cost is usable (finite, positive, with a positive computed cost) and log(observed /
    computed) there (0 elsewhere)."""
    ok = np.isfinite(observed) & (observed > 0) & (computed > 0)
    return ok, np.where(ok, np.log(np.where(ok, observed, 1.0)) - np.log(np.where(ok, computed, 1.0)), 0.0)


log = logging.getLogger(__name__)
UNIT_WARNING = 10.0  # an LLM's learned multiplier beyond 10x (or under 1/10) its prices says: costs in another unit?
MAX_MULTIPLIER = 1e3  # an agent making a thousand calls per query; beyond that an observed cost is taken as an error


def _in_another_unit(factors: np.ndarray) -> bool:
    """Whether an LLM's ``factors`` (2,) say its costs are in another unit than USD: one multiplier beyond 10x or
    under 1/10; of two factors, the input's (an LLM's answers may well be far shorter than 512 tokens, not its
    prompts; one at the floor says its costs do not grow with the prompt, a flat fee, not their unit), or the
    output's beyond 10x (a flat fee in cents)."""
    a, b = factors
    if a == b:
        return not 1 / UNIT_WARNING <= a <= UNIT_WARNING
    return (a > 1 / MAX_MULTIPLIER and not 1 / UNIT_WARNING <= a <= UNIT_WARNING) or b > UNIT_WARNING


def _shown(factors: np.ndarray) -> str:
    a, b = factors
    return f"{a:.3g}x" if a == b else f"{a:.3g}x the input, {b:.3g}x the output"


def shrunk_multiplier(log_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The shrunk geometric mean exp(Σ log ratio / (n + prior)), kept within [1/MAX_MULTIPLIER, MAX_MULTIPLIER]."""
    bound = np.log(MAX_MULTIPLIER)
    return np.exp(np.clip(log_sum / count, -bound, bound))


AFFINE_MIN_OUTCOMES = 20  # costs needed before the input and output parts get factors of their own
AFFINE_MIN_ERROR = 0.1  # ... where one multiplier misprices them by over 10% (median |log(predicted / billed)|)
# ... and factors of their own cut its squared relative error, averaged without the largest 10% (AFFINE_TRIM) of
# each fit's (so a few outliers decide nothing), by at least this many times their own per cost (n × (one − two) /
# two, a χ²-like statistic of the added factor: 25 ≈ five standard errors). On simulated costs
# (`python experiments/cost_factors.py --simulate`, 100 draws each at 20, 200 and 2,000 costs) it splits no agent's
# costs noisy in proportion (σ 0.5 or 1 in log), no LLM's billed as priced but for 2 costs 30x on its longest
# prompts or 5 costs 10x on its shortest (whole conversations billed), no clean agent's with one cost 30x; and
# 60-token answers' (σ 0.7) 25–92% of the time at 20 costs, always at 200 and 2,000
AFFINE_EVIDENCE = 25.0
AFFINE_TRIM = 0.1
# the split is decided and fitted on at most this many of the costs, evenly spread (two factors need no more; at
# 100,000 costs of a candidate added since training, all of them took 32 ms per outcome posted)
AFFINE_MAX_ROWS = 4096
AFFINE_OUTLIER = 5.0  # a cost this many times off the two factors' prediction (either way) does not fit them


def _trimmed_mean(values: np.ndarray, trim: float = AFFINE_TRIM) -> float:
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
    more than :data:`AFFINE_OUTLIER` times off the fit's prediction (twice): two costs 30x on an LLM's longest
    prompts made 200 costs of true factors 1 and 0.15 fit 1.65 and 0.06. Returns f, its predictions and the rows
    it was fitted on."""
    kept = np.ones(len(observed), bool)
    pred = np.full(len(observed), start)
    for _ in range(3):
        for _ in range(3):
            w = 1.0 / pred[kept]
            f = _non_negative_fit(parts[kept] * w[:, None], observed[kept] * w)
            pred = np.maximum(parts @ f, 1e-300)
        near = np.abs(np.log(observed / pred)) <= np.log(AFFINE_OUTLIER)
        if (near == kept).all() or near.sum() < AFFINE_MIN_OUTCOMES:
            break
        kept = near
    return f, pred, kept


def fit_factors(
    inputs: np.ndarray,
    outputs: np.ndarray,
    observed: np.ndarray,
    prior: float,
    known_logs: tuple[float, int] = (0.0, 0),
) -> np.ndarray:
    """(2,) the factors of one candidate's computed input and output cost, from its observed costs (USD; NaN or ≤ 0:
    not usable) and the computed parts of the same queries (``inputs``: input tokens × input price, ``outputs``: the
    fixed 512 output tokens × output price).

    One multiplier for both (the shrunk geometric mean of observed / computed, ``prior`` outcomes towards 1), unless
    at least :data:`AFFINE_MIN_OUTCOMES` costs say the two parts scale apart: one multiplier (their geometric mean)
    misprices them by over :data:`AFFINE_MIN_ERROR` and factors of their own (:func:`_two_factor_fit`) fit them
    better, by :data:`AFFINE_EVIDENCE` (an agent's costs, noisy in proportion, or a few outliers do not). An LLM
    whose answers are ~60 tokens, learned from prompts of every length, got one multiplier of ~0.15 and priced a
    12,000-token prompt at 1/6 of its bill; its factors are ~1 (the prompt as computed) and ~0.12 (its answers). On
    costs proportional to the computed ones (both benchmarks') the one multiplier is kept. ``known_logs``: the sum
    and count of more log(observed / computed) whose queries are not known (kept so by a checkpoint from before the
    factors): they count towards the one multiplier only."""
    x, o, y = (np.asarray(v, dtype=np.float64) for v in (inputs, outputs, observed))
    ok, log_ratio = _log_ratio(y, x + o)
    m = float(shrunk_multiplier(np.where(ok, log_ratio, 0.0).sum() + known_logs[0], ok.sum() + known_logs[1] + prior))
    # the factors' evidence leaves out costs beyond 1000x what the prices compute (the one multiplier is only
    # clipped there): an error, not a price
    ok &= np.abs(log_ratio) <= np.log(MAX_MULTIPLIER)
    if ok.sum() < AFFINE_MIN_OUTCOMES:
        return np.array([m, m])
    if ok.sum() > AFFINE_MAX_ROWS:
        spread = np.flatnonzero(ok)[np.linspace(0, ok.sum() - 1, AFFINE_MAX_ROWS).astype(np.int64)]
        ok = np.zeros_like(ok)
        ok[spread] = True
    # each row divided by its computed cost (the same weighted fit; the numbers stay near 1)
    computed, logs = x[ok] + o[ok], log_ratio[ok]
    parts, ratio = np.stack([x[ok], o[ok]], axis=1) / computed[:, None], y[ok] / computed
    if float(np.median(np.abs(logs - np.median(logs)))) <= AFFINE_MIN_ERROR:
        return np.array([m, m])
    f, pred, kept = _two_factor_fit(parts, ratio, float(ratio.mean()))
    ratio, pred = ratio[kept], pred[kept]  # (both measured on the costs the factors fit)
    one = _trimmed_mean((1 - ratio / ratio.mean()) ** 2)  # (the best one multiplier for this measure: the mean)
    two = _trimmed_mean(((pred - ratio) / pred) ** 2)
    if len(ratio) * (one - two) <= AFFINE_EVIDENCE * two:
        return np.array([m, m])
    return np.clip(f, 1 / MAX_MULTIPLIER, MAX_MULTIPLIER)


COST_OUTLIER = 10.0  # an observed cost this many times off its prediction (either way) sets no task's cost range


def _far_off(observed: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(Q, C) where a positive observed cost is more than :data:`COST_OUTLIER` times off the predicted one. The
    task's cost range was the raw min–max of its observed costs: one cost in cents (100x) shrank every normalised
    cost of its task ~10x, so Balance and Cost First weighed cost a tenth as much there."""
    seen = np.isfinite(observed) & (observed > 0) & (predicted > 0)
    ratio = np.where(seen, observed, 1.0) / np.where(seen, predicted, 1.0)
    return seen & (np.abs(np.log(ratio)) > np.log(COST_OUTLIER))


def covering_range(observed: np.ndarray, predicted: np.ndarray, world: World) -> np.ndarray:
    """(T, 2) the min–max cost per task the reward's normalisation would have if every candidate had answered the
    task's queries: ``observed`` (T, 2), from the world's costs, widened to the ``predicted`` costs (Q, C) of the
    candidates with no outcome on the task; the predicted costs of all where the observed ones span nothing (all
    equal, e.g. recorded as 0, or none). Without it a candidate outside a range observed on others got a normalised
    cost of -3 and its cost swamped its effect (an audit saw utilities of 2 to 3), and with every cost 0 the cost was
    divided by 1 USD, so cost_first picked the dearest LLM. A task whose outcomes cover every candidate with a spread
    (the benchmarks' every task) keeps its observed range."""
    out = np.array(observed, dtype=np.float64, copy=True)
    task, cost = world.data.query_task, world.data.cost
    for t in range(len(out)):
        rows = task == t
        if not rows.any():
            continue
        lo, hi = out[t]
        if hi > lo:  # (a spread: some cost observed)
            missing = ~np.isfinite(cost[rows]).any(axis=0)
            if missing.any():
                block = predicted[rows][:, missing]
                out[t] = min(lo, float(block.min())), max(hi, float(block.max()))
        elif (p_hi := float(np.max(predicted[rows]))) > (p_lo := float(np.min(predicted[rows]))):
            out[t] = p_lo, p_hi
    return out


class CostModel:
    """Cost is (almost) known before the call: ``(input tokens × input price × a + 512 × output price × b) / 1e6``,
    where ``a`` and ``b`` are a candidate's :attr:`factors`, learned from the observed costs of its outcomes by
    :func:`fit_factors`: one multiplier for both as a rule (an agent that makes several LLM calls per query costs a
    multiple of its LLM's single call; an LLM's observed costs give ≈ 1), the geometric mean of observed / computed
    cost shrunk towards 1 with a prior of 5 outcomes (and kept within 1000× either way: beyond that an observed cost
    is taken as an error, not a price); a factor each where the costs show the prompt and the answer scale apart (an
    LLM answering in a few tokens, seen on prompts of every length). Costs are normalised with the (given or
    inferred) task's min–max range observed in the world."""

    prior_outcomes = 5.0

    def __init__(
        self,
        prices: np.ndarray,
        task_range: np.ndarray,
        output_tokens: int = DEFAULT_OUTPUT_TOKENS,
        factors: np.ndarray | None = None,
    ):
        self.prices = np.asarray(prices, dtype=np.float64)  # (C, 2)
        self.task_range = np.asarray(task_range, dtype=np.float64)  # (T, 2)
        self.output_tokens = output_tokens
        # (C, 2) the factors of the computed input and output cost; replaced, never changed in place: routing reads
        # them without a lock
        self.factors = np.ones((len(self.prices), 2)) if factors is None else np.asarray(factors, np.float64)
        # candidates added since fitting: column → world query index → observed USD
        self.observed: dict[int, dict[int, float]] = {}
        # the same from a checkpoint written before the two factors, as log(observed / computed): read as USD (at
        # the candidate's prices, which do not change while it is added) at its next cost
        self.legacy_logs: dict[int, dict[int, float]] = {}

    def __setstate__(self, state: dict) -> None:
        if "factors" not in state:  # checkpoints written before the two factors: one multiplier (or none) for both
            multiplier = state.pop("multiplier", np.ones(len(state["prices"])))
            state["factors"] = np.repeat(np.asarray(multiplier, np.float64)[:, None], 2, axis=1)
            state["legacy_logs"] = state.get("observed", {})
            state["observed"] = {col: {} for col in state["legacy_logs"]}
        state.setdefault("legacy_logs", {})  # (or with them, before their conversion was kept)
        self.__dict__.update(state)

    @classmethod
    def from_world(cls, world: World) -> CostModel:
        model = cls(world.data.candidate_prices, world.data.task_cost_range())
        observed = world.data.cost
        if world.data.billed_now is not None:  # a cost billed at an LLM's old prices says nothing of its new ones
            observed = np.where(world.data.billed_now, observed, np.nan)
        inputs, outputs = model.parts(world.query_tokens)
        model.factors = np.stack(
            [
                fit_factors(inputs[:, c], outputs[:, c], observed[:, c], cls.prior_outcomes)
                for c in range(len(model.prices))
            ]
        ).reshape(-1, 2)
        predicted = model.cost(world.query_tokens)
        off = _far_off(world.data.cost, predicted)
        model.task_range = covering_range(
            world.data.task_cost_range(np.where(off, np.nan, world.data.cost)), predicted, world
        )
        data, used = world.data, (np.isfinite(observed) & (observed > 0)).sum(0)
        if off.any():
            q, c = (int(v[0]) for v in np.nonzero(off))
            log.warning(
                "%d observed cost(s) more than %gx off what their candidate's prices and learned factors predict were "
                "left out of their tasks' cost ranges (one would rescale every cost of its task), e.g. %s on query "
                "%s: %.3g USD, predicted %.3g. A cost in another unit, or a whole conversation's bill?",
                int(off.sum()), COST_OUTLIER, data.candidates[c], data.query_keys[q], data.cost[q, c], predicted[q, c],
            )  # fmt: skip
        far = [
            f"{name} {_shown(model.factors[c])} ({used[c]:,} costs)"
            for c, name in enumerate(data.candidates)
            if data.candidate_kind[c] == "LLM" and _in_another_unit(model.factors[c])
        ]
        if far:  # (an agent's may be far above 1: several calls a query)
            log.warning(
                "observed costs far from what the prices compute, learned as cost multipliers: %s. Are the costs in "
                "USD per query and the prices in USD per 1M tokens?",
                "; ".join(far),
            )
        return model

    def add_candidate(self, prices: np.ndarray) -> None:
        """Append a candidate (its factors start at 1; :meth:`observe` learns them)."""
        self.prices = np.r_[self.prices, np.asarray(prices, dtype=np.float64).reshape(1, 2)]
        self.factors = np.r_[self.factors, np.ones((1, 2))]
        self.observed = {**self.observed, len(self.prices) - 1: {}}

    def keep_candidates(self, keep: np.ndarray) -> None:
        new_col = np.cumsum(keep) - 1
        self.prices, self.factors = self.prices[keep], self.factors[keep]
        self.observed = {int(new_col[c]): rows for c, rows in self.observed.items() if keep[c]}
        self.legacy_logs = {int(new_col[c]): rows for c, rows in self.legacy_logs.items() if keep[c]}

    def observe(self, col: int, costs: dict[int, float], tokens: np.ndarray) -> int:
        """Learn the factors of a candidate added since fitting from its observed costs at once (world query
        index → USD; ``tokens``: the world's input tokens per query); a fitted candidate's wait for the next
        fit. A query observed again replaces its earlier cost. Returns how many costs were used (finite and
        positive, of this world's queries)."""
        new = {i: float(c) for i, c in costs.items() if 0 <= i < len(tokens) and np.isfinite(c) and c > 0}
        if col not in self.observed or not new:  # (others: not queries of this world, or no cost)
            return 0
        rows_costs = {**self._legacy_costs(col, tokens), **self.observed[col], **new}
        rows = np.fromiter(rows_costs, dtype=np.int64, count=len(rows_costs))
        inputs, outputs = self.parts(tokens[rows], self.prices[[col]])
        factors = self.factors.copy()
        factors[col] = fit_factors(
            inputs[:, 0], outputs[:, 0], np.fromiter(rows_costs.values(), np.float64), self.prior_outcomes
        )
        self.observed = {**self.observed, col: rows_costs}
        self.legacy_logs = {c: v for c, v in self.legacy_logs.items() if c != col}  # (now in ``observed``)
        self.factors = factors
        return len(new)

    def _legacy_costs(self, col: int, tokens: np.ndarray) -> dict[int, float]:
        """An added candidate's costs kept as log ratios by a checkpoint from before the factors, in USD."""
        logs = {i: v for i, v in self.legacy_logs.get(col, {}).items() if 0 <= i < len(tokens)}
        if not logs:
            return {}
        rows = np.fromiter(logs, dtype=np.int64, count=len(logs))
        computed = usd_costs(tokens[rows], self.prices[[col]], self.output_tokens)[:, 0]
        usd = np.exp(np.fromiter(logs.values(), np.float64)) * computed
        return dict(zip(rows.tolist(), usd.tolist(), strict=True))

    def parts(self, tokens: np.ndarray, prices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(n, C) each the computed input and output cost in USD (no factors), at ``prices`` or the candidates'."""
        p = self.prices if prices is None else np.asarray(prices, dtype=np.float64)
        return usd_costs(tokens, p * [1.0, 0.0], self.output_tokens), usd_costs(
            tokens, p * [0.0, 1.0], self.output_tokens
        )

    def cost(
        self,
        tokens: np.ndarray,
        prices: np.ndarray | None = None,
        max_output: np.ndarray | None = None,
        capped: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n, C) predicted USD; with explicit ``prices`` (C', 2) the plain computed cost (no factors).
        ``max_output`` (n,): each call's cap on output tokens (NaN: none); a ``capped`` candidate (C,) bool, one
        call per query (an LLM, not an agent), is then predicted at most its input and that many output tokens
        at its prices: the most the call can be billed (the factors, learned from uncapped answers, would
        price a 16-token answer as a full one)."""
        if prices is not None:
            return usd_costs(tokens, prices, self.output_tokens)
        predicted = usd_costs(tokens, self.prices * self.factors, self.output_tokens)  # (each part times its factor)
        if max_output is None or capped is None:
            return predicted
        cap = np.asarray(max_output, dtype=np.float64)
        has = np.isfinite(cap)
        if not has.any():
            return predicted
        # the input as computed, or times its own factor where the costs gave it one (a tokenizer counting more)
        split = self.factors[:, 0] != self.factors[:, 1]
        prompt = self.prices * np.stack([np.where(split, self.factors[:, 0], 1.0), np.ones(len(split))], axis=1)
        ceiling = usd_costs(tokens, prompt, np.where(has, cap, 0))
        bound = has[:, None] & np.asarray(capped, bool)[None, :]
        return np.where(bound, np.minimum(predicted, ceiling), predicted)

    def normalise(self, cost: np.ndarray, task: np.ndarray) -> np.ndarray:
        lo, hi = self.task_range[task, 0][:, None], self.task_range[task, 1][:, None]
        span = np.where(hi > lo, hi - lo, 1.0)
        return (cost - lo) / span
