"""Cost, the one formula: ``(input tokens × input price + output tokens × output price) / 1e6`` USD (prices per 1M
tokens; GraphRouter fixes the output at 512 tokens), and the :class:`CostModel` every router shares."""

from __future__ import annotations

import logging

import numpy as np

from graphrouter.cost_factors import MAX_MULTIPLIER, fit_factors, is_split
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


log = logging.getLogger(__name__)
UNIT_WARNING = 10.0  # an LLM's learned multiplier beyond 10x (or under 1/10) its prices says: costs in another unit?
# (of split factors, the input's, unless at the floor, or the output's beyond 10x: :func:`_in_another_unit`)


def _in_another_unit(factors: np.ndarray) -> bool:
    """Whether an LLM's ``factors`` (2,) say its costs are in another unit than USD: one multiplier beyond 10x or
    under 1/10; of two factors, the input's (an LLM's answers may well be far shorter than 512 tokens, not its
    prompts; one at the floor says its costs do not grow with the prompt, a flat fee, not their unit), or the
    output's beyond 10x (a flat fee in cents)."""
    a, b = factors
    if not is_split(factors):
        return not 1 / UNIT_WARNING <= a <= UNIT_WARNING
    return (a > 1 / MAX_MULTIPLIER and not 1 / UNIT_WARNING <= a <= UNIT_WARNING) or b > UNIT_WARNING


def _format_factors(factors: np.ndarray) -> str:
    a, b = factors
    return f"{a:.3g}x the input, {b:.3g}x the output" if is_split(factors) else f"{a:.3g}x"


NEW_QUERY_COSTS = 2000  # an added candidate's costs on queries outside the world kept (outcome_feed.RELEARN_ROWS)
COST_OUTLIER = 10.0  # an LLM's observed cost this many times off its prediction (either way) sets no cost range
COST_OUTLIER_SPREAD = 5.0  # ... and this many of its own costs' spreads (1.4826 × their log ratios' MAD) off them


def _far_off(observed: np.ndarray, predicted: np.ndarray, llm: np.ndarray, current: np.ndarray | None) -> np.ndarray:
    """(Q, C) where an LLM's (``llm`` (C,) bool) positive observed cost, billed at its ``current`` prices (Q, C;
    None: all), is more than :data:`COST_OUTLIER` times off the predicted one and far outside the spread of its
    own costs. The task's cost range was the raw min–max of its observed costs: one cost in cents (100x) shrank
    every normalised cost of its task ~10x, so Balance and Cost First weighed cost a tenth as much there. An agent's
    costs may vary far more (its calls per query), and a cost billed at other prices is not the prices' error."""
    seen = np.isfinite(observed) & (observed > 0) & (predicted > 0) & np.asarray(llm, bool)[None, :]
    if current is not None:
        seen &= current
    logs = np.where(seen, np.log(np.where(seen, observed, 1.0) / np.where(seen, predicted, 1.0)), np.nan)
    off = np.zeros(observed.shape, bool)
    for c in np.flatnonzero(seen.any(axis=0)):
        col = logs[:, c]
        centre = np.nanmedian(col)
        spread = 1.4826 * np.nanmedian(np.abs(col - centre))
        off[:, c] = seen[:, c] & (np.abs(np.nan_to_num(col)) > np.log(COST_OUTLIER))
        off[:, c] &= np.abs(np.nan_to_num(col - centre)) > COST_OUTLIER_SPREAD * spread
    return off


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
        # candidates added since fitting: column → query (a world query's index, another query's id) → its input
        # tokens and observed USD
        self.observed: dict[int, dict[int | str, tuple[float, float]]] = {}
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
        # (costs kept as USD alone, before their input tokens were kept with them, by no release: dropped)
        state["observed"] = {
            c: {k: v for k, v in rows.items() if isinstance(v, tuple)} for c, rows in state["observed"].items()
        }
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
        data, used = world.data, (np.isfinite(observed) & (observed > 0)).sum(0)
        if (split := np.flatnonzero(is_split(model.factors))).size:  # (a change a user's store sees at a retrain)
            log.info(
                "costs whose prompt and answer scale apart, priced with a factor each: %s",
                "; ".join(f"{data.candidates[c]} {_format_factors(model.factors[c])}" for c in split),
            )
        predicted = model.cost(world.query_tokens)
        llm = np.array([kind == "LLM" for kind in data.candidate_kind])
        off = _far_off(data.cost, predicted, llm, data.billed_now)
        model.task_range = covering_range(data.task_cost_range(np.where(off, np.nan, data.cost)), predicted, world)
        if off.any():
            counts = off.sum(axis=0)
            q, c = (int(v[0]) for v in np.nonzero(off))
            log.warning(
                "observed costs more than %gx off what their LLM's prices and learned factors predict, and far outside "
                "its other costs, were left out of their tasks' cost ranges (one would rescale every cost of its "
                "task): %s; e.g. %s on query %s: %.3g USD, predicted %.3g. A cost in another unit, or a whole "
                "conversation's bill?",
                COST_OUTLIER, ", ".join(f"{data.candidates[j]} {counts[j]}" for j in np.flatnonzero(counts)),
                data.candidates[c], data.query_keys[q], data.cost[q, c], predicted[q, c],
            )  # fmt: skip
        far = [
            f"{name} {_format_factors(model.factors[c])} ({used[c]:,} costs)"
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
        new = {
            i: (float(tokens[i]), float(c))
            for i, c in costs.items()
            if 0 <= i < len(tokens) and np.isfinite(c) and c > 0
        }
        if col not in self.observed or not new:  # (others: not queries of this world, or no cost)
            return 0
        self._learn(col, {**self._legacy_costs(col, tokens), **self.observed[col], **new})
        return len(new)

    def observe_new(self, col: int, costs: dict[str, tuple[float, float]], tokens: np.ndarray) -> int:
        """The same from costs on queries outside the world (query id → (input tokens, USD)): a new LLM's proxied
        calls taught its factors only at the next retrain, so it was priced with 512 output tokens until then. The
        most recent :data:`NEW_QUERY_COSTS` of them are kept (as many as a start learns again of its outcomes).
        ``tokens``: the world's input tokens per query (for an old checkpoint's costs, :meth:`_legacy_costs`)."""
        new = {i: (float(t), float(c)) for i, (t, c) in costs.items() if np.isfinite(c) and c > 0 and np.isfinite(t)}
        if col not in self.observed or not new:
            return 0
        kept = {**self._legacy_costs(col, tokens), **self.observed[col]}
        rows = {k: v for k, v in kept.items() if k not in new}  # (a query posted again: now the latest)
        rows.update(new)
        others = [k for k in rows if isinstance(k, str)]
        for k in others[: max(len(others) - NEW_QUERY_COSTS, 0)]:  # the oldest beyond the bound
            del rows[k]
        self._learn(col, rows)
        return len(new)

    def _learn(self, col: int, rows: dict[int | str, tuple[float, float]]) -> None:
        """Refit an added candidate's factors from all its costs ``rows`` (query → (input tokens, USD)), which
        include an old checkpoint's legacy costs (:meth:`_legacy_costs`), now kept in ``observed``."""
        tokens, usd = np.array(list(rows.values()), dtype=np.float64).reshape(-1, 2).T
        inputs, outputs = self.parts(tokens, self.prices[[col]])
        self.refit(col, inputs[:, 0], outputs[:, 0], usd)
        self.observed = {**self.observed, col: rows}
        self.legacy_logs = {c: v for c, v in self.legacy_logs.items() if c != col}

    def refit(
        self,
        col: int,
        inputs: np.ndarray,
        outputs: np.ndarray,
        costs: np.ndarray,
        unplaced_logs: tuple[float, int] = (0.0, 0),
    ) -> None:
        """Set candidate ``col``'s factors from all its observed ``costs`` (USD) and their computed ``inputs`` and
        ``outputs`` parts (:meth:`parts`), as :func:`fit_factors` does (a split kept at a lower bar); the factors
        are replaced, not changed in place (routing reads them without a lock)."""
        factors = self.factors.copy()
        was_split = bool(is_split(factors[col]))
        factors[col] = fit_factors(inputs, outputs, costs, self.prior_outcomes, unplaced_logs, was_split)
        self.factors = factors

    def _legacy_costs(self, col: int, tokens: np.ndarray) -> dict[int | str, tuple[float, float]]:
        """An added candidate's costs kept as log ratios by a checkpoint from before the factors, as (input tokens,
        USD)."""
        logs = {i: v for i, v in self.legacy_logs.get(col, {}).items() if 0 <= i < len(tokens)}
        if not logs:
            return {}
        rows = np.fromiter(logs, dtype=np.int64, count=len(logs))
        computed = usd_costs(tokens[rows], self.prices[[col]], self.output_tokens)[:, 0]
        usd = np.exp(np.fromiter(logs.values(), np.float64)) * computed
        return {int(r): (float(tokens[r]), float(u)) for r, u in zip(rows, usd, strict=True)}

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
        split = is_split(self.factors)
        prompt = self.prices * np.stack([np.where(split, self.factors[:, 0], 1.0), np.ones(len(split))], axis=1)
        ceiling = usd_costs(tokens, prompt, np.where(has, cap, 0))
        bound = has[:, None] & np.asarray(capped, bool)[None, :]
        return np.where(bound, np.minimum(predicted, ceiling), predicted)

    def normalise(self, cost: np.ndarray, task: np.ndarray) -> np.ndarray:
        lo, hi = self.task_range[task, 0][:, None], self.task_range[task, 1][:, None]
        span = np.where(hi > lo, hi - lo, 1.0)
        return (cost - lo) / span
