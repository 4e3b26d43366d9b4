"""A routed request's answer: the recommended candidates, best first, and how the answer was reached; in the one
shape clients get it (``POST /v1/route``, ``graphrouter route --json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def significant(value: float) -> float:
    """A figure of an answer to 12 significant digits: a price × tokens product shows as 0.0001033, not
    0.00010330000000000002 (the API's and the CLI's answers)."""
    return float(f"{value:.12g}")


@dataclass(frozen=True)
class Recommendation:
    name: str
    kind: str  # "LLM" or "Agent"
    effect: float  # predicted, in [0, 1]
    cost: float  # predicted USD for this query
    utility: float


@dataclass(frozen=True)
class RouteResult:
    task: str
    task_inferred: bool
    weights: tuple[float, float]
    candidates: list[Recommendation]
    checkpoint: str
    explored: bool = False  # the first candidate is an exploration's pick, not the argmax
    extra_cost: float = 0.0  # its predicted cost minus the argmax's (USD), when explored
    instead_of: str | None = None  # the argmax it replaced, when explored

    def answer(self) -> dict[str, Any]:
        """The answer as clients get it (``POST /v1/route``'s fields, ``graphrouter route --json``), figures to 12
        significant digits."""
        return {
            "task": self.task,
            "task_inferred": self.task_inferred,
            "weights": {"w_effect": self.weights[0], "w_cost": self.weights[1]},
            "candidates": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "effect": significant(c.effect),
                    "cost": significant(c.cost),
                    "utility": significant(c.utility),
                }
                for c in self.candidates
            ],
            "checkpoint": self.checkpoint,
            "explored": self.explored,
            "explored_instead_of": self.instead_of,
            "exploration_extra_cost": significant(self.extra_cost),
        }
