"""A route request and its one validator: what :meth:`Scorer.top_k` and :meth:`Scorer.top_k_many` accept.

:func:`check_request` checks a :class:`RouteRequest` against the scorer's limits, candidates and tasks before
anything embeds, tokenizes or caches the text, and turns it into what routing needs: the task index, the
(w_effect, w_cost) weights and the candidate columns the request allows. Each problem is a
:class:`~graphrouter.errors.GraphRouterError` saying what is wrong (the service answers it with a 400).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from graphrouter.embeddings import check_text
from graphrouter.errors import GraphRouterError, QueryTooLongError
from graphrouter.rewards import scenario_weights
from graphrouter.world import UNKNOWN_TASK

MAX_QUERY_CHARS = 20_000
MAX_INPUT_TOKENS = 10_000_000  # a request's input_tokens and max_output_tokens: far above any model's context
# relative: answers give costs to 12 significant digits (api/models.py), and a budget copied from one must fit it
BUDGET_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RouteRequest:
    """One request of :meth:`Scorer.top_k_many` (the arguments of :meth:`Scorer.top_k`)."""

    query: str
    task: str | None = None
    k: int = 3
    scenario: str | None = None
    weights: tuple[float, float] | None = None
    budget: float | None = None
    candidates: list[str] | None = None
    explore: bool = False
    # the input tokens to price (e.g. a whole chat prompt, of which ``query`` is the part routed on); None: the
    # query's own, counted
    input_tokens: int | None = None
    # the call's cap on output tokens (its max_tokens): an LLM's predicted cost is at most the input and this many
    # output tokens at its prices; None: no cap
    max_output_tokens: int | None = None


def check_request(
    req: RouteRequest,
    max_query_chars: int,
    names: Sequence[str],
    excluded: Collection[str],
    task_index: Mapping[str, int],
) -> tuple[int, tuple[float, float], np.ndarray]:
    """Validate one request against the query length limit, the candidate ``names`` (in column order; the
    ``excluded`` ones are never routed to) and the known tasks (name → index): (task index, weights, candidate
    pool), or GraphRouterError saying what is wrong."""
    query_text, k, budget = req.query, req.k, req.budget
    if not isinstance(query_text, str) or not query_text.strip():
        raise GraphRouterError("query: must be a non-empty string")
    check_text(query_text, "query")  # before the embedder, the tokenizer, or any cache sees it
    if len(query_text) > max_query_chars:
        raise QueryTooLongError(
            f"query: {len(query_text):,} characters; the limit is {max_query_chars:,} "
            "(GRAPHROUTER_MAX_QUERY_CHARS for the service)"
        )
    w = scenario_weights(req.scenario, req.weights)
    pool = candidate_pool(names, excluded, req.candidates)
    if not len(pool):
        raise GraphRouterError("no candidate to route to: every LLM and agent was removed; register one first")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise GraphRouterError(f"k: must be a positive integer, got {k!r}")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int | float) or not math.isfinite(budget) or budget <= 0
    ):
        raise GraphRouterError(f"budget: must be a positive number of USD per query, got {budget!r}")
    n = req.input_tokens
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_INPUT_TOKENS):
        raise GraphRouterError(f"input_tokens: must be an integer from 0 to {MAX_INPUT_TOKENS:,}, got {n!r}")
    m = req.max_output_tokens
    if m is not None and (isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= MAX_INPUT_TOKENS):
        raise GraphRouterError(f"max_output_tokens: must be an integer from 1 to {MAX_INPUT_TOKENS:,}, got {m!r}")
    return task_row(task_index, req.task), w, pool


def candidate_pool(names: Sequence[str], excluded: Collection[str], candidates: list[str] | None) -> np.ndarray:
    """The columns of ``names`` a request may be routed to: all but the ``excluded``, or those of its
    ``candidates`` filter (each must be a routable name)."""
    if candidates is None:
        if not excluded:
            return np.arange(len(names))
        return np.array([i for i, c in enumerate(names) if c not in excluded], dtype=np.intp)
    index = {c: i for i, c in enumerate(names) if c not in excluded}
    unknown = [c for c in candidates if c not in index]
    if unknown:
        known = list(index)
        more = f", … ({len(known)} in all)" if len(known) > 20 else ""
        shown = ", ".join(known[:20]) + more
        raise GraphRouterError(f"candidates: unknown candidate(s) {unknown[:20]}; known: {shown}")
    if not candidates:
        raise GraphRouterError("candidates: the filter is empty; omit it to route among every candidate")
    return np.array(sorted({index[c] for c in candidates}), dtype=np.intp)


def task_row(task_index: Mapping[str, int], task: str | None) -> int:
    """The index of a request's task (``UNKNOWN_TASK`` when it names none: the router infers it)."""
    if task is None:
        return UNKNOWN_TASK
    if task not in task_index:
        raise GraphRouterError(f"task: unknown task {task!r}; known: {', '.join(task_index)} (or omit it)")
    return task_index[task]
