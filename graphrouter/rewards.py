"""Routing quality: utility per scenario, reward of a routing decision, oracle gap closed, cost–quality curve.

Utility of a candidate: ``w_effect · effect − w_cost · cost_norm`` (GraphRouter). A router's reward is the mean
utility of the candidates it chose, over the evaluated queries, reported with their mean effect and mean cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from graphrouter.errors import GraphRouterError

SCENARIOS: dict[str, tuple[float, float]] = {
    "performance_first": (1.0, 0.0),
    "balance": (0.5, 0.5),
    "cost_first": (0.2, 0.8),
}
SCENARIO_ALIASES = {"performance": "performance_first", "perf": "performance_first", "cost": "cost_first"}


MAX_WEIGHT = 1e6  # utilities stay finite (1.7e308 overflowed to null); only the weights' ratio ranks


# How a refusal names what was given: the API's fields, or the CLI's flags (``graphrouter route``).
API_FIELDS = {"scenario": "scenario", "weights": "weights", "w_effect": "weights.w_effect", "w_cost": "weights.w_cost"}
CLI_FLAGS = {"scenario": "--scenario", "weights": "--w-effect/--w-cost", "w_effect": "--w-effect", "w_cost": "--w-cost"}


def scenario_weights(
    scenario: str | None = None, weights: tuple[float, float] | None = None, names: dict[str, str] = API_FIELDS
) -> tuple[float, float]:
    """(w_effect, w_cost) from a scenario name or explicit weights (not both); balance by default. A refusal starts
    with what was wrong as ``names`` call it."""
    if scenario is not None and weights is not None:
        raise GraphRouterError(f"{names['scenario']}: give a scenario or explicit weights, not both")
    if weights is not None:
        if len(weights) != 2:
            raise GraphRouterError(f"{names['weights']}: must be (w_effect, w_cost), got {weights!r}")
        for name, w in zip(("w_effect", "w_cost"), weights, strict=True):
            if (
                isinstance(w, bool)
                or not isinstance(w, int | float)
                or not math.isfinite(w)
                or not 0 <= w <= MAX_WEIGHT
            ):
                raise GraphRouterError(f"{names[name]}: must be a number from 0 to {MAX_WEIGHT:.0f}, got {w!r}")
        if weights[0] == 0 and weights[1] == 0:
            raise GraphRouterError(f"{names['weights']}: w_effect and w_cost cannot both be 0")
        return float(weights[0]), float(weights[1])
    name = (scenario or "balance").strip().lower().replace("-", "_").replace(" ", "_")
    name = SCENARIO_ALIASES.get(name, name)
    if name not in SCENARIOS:
        raise GraphRouterError(f"{names['scenario']}: unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def utility(effect: np.ndarray, cost_norm: np.ndarray, weights: tuple[float, float]) -> np.ndarray:
    return weights[0] * effect - weights[1] * cost_norm


@dataclass(frozen=True)
class RoutingScore:
    reward: float
    effect: float
    cost: float  # mean USD per query


def score_choices(
    choice: np.ndarray, effect: np.ndarray, cost: np.ndarray, cost_norm: np.ndarray, weights: tuple[float, float]
) -> RoutingScore:
    """Score one chosen candidate per row: rows of (Q, C) outcome matrices, ``choice`` of shape (Q,)."""
    rows = np.arange(len(choice))
    e, c, cn = effect[rows, choice], cost[rows, choice], cost_norm[rows, choice]
    if not (np.isfinite(e).all() and np.isfinite(c).all()):
        raise GraphRouterError("a router chose a candidate whose outcome on that query was never observed")
    return RoutingScore(reward=float(np.mean(utility(e, cn, weights))), effect=float(e.mean()), cost=float(c.mean()))


def choose(pred_effect: np.ndarray, pred_cost_norm: np.ndarray, weights: tuple[float, float]) -> np.ndarray:
    """The candidate of highest predicted utility per row (ties to the lowest index)."""
    return np.argmax(utility(pred_effect, pred_cost_norm, weights), axis=1)


def oracle_gap_closed(reward: float, baseline: float, oracle: float) -> float:
    """Fraction of the gap between a baseline (e.g. best single LLM) and the oracle that a router closes."""
    return (reward - baseline) / (oracle - baseline) if oracle != baseline else float("nan")


def cost_quality_curve(
    pred_effect: np.ndarray, pred_cost_norm: np.ndarray, effect: np.ndarray, cost: np.ndarray, n_points: int = 21
) -> list[tuple[float, float, float]]:
    """(w_cost, mean cost, mean effect) when routing with weights (1 − w, w) for w from 0 to 1."""
    out = []
    rows = np.arange(effect.shape[0])
    for w in np.linspace(0.0, 1.0, n_points):
        ch = choose(pred_effect, pred_cost_norm, (1.0 - w, w))
        out.append((float(w), float(cost[rows, ch].mean()), float(effect[rows, ch].mean())))
    return out
