"""Routing data as matrices, built from a store snapshot: what every router and every metric works on.

Rows are queries, columns are candidates (LLMs, then agents). ``effect`` and ``cost`` hold the observed outcome
of a query on a candidate, NaN where unobserved. ``cost_norm`` is GraphRouter's normalisation: min-max within
each task, over every observed outcome of that task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graph_store import AGENT, LLM, QUERY, TASK, GraphSnapshot

SOURCE_SPLITS = ("train", "test")


@dataclass
class RoutingData:
    query_keys: list[str]
    query_text: list[str]
    query_task: np.ndarray  # (Q,) int index into task_names
    task_names: list[str]
    candidates: list[str]  # LLM names, then agent names
    candidate_kind: list[str]  # "LLM" or "Agent"
    candidate_text: list[str]  # descriptions
    candidate_prices: np.ndarray  # (C, 2) input/output USD per 1M tokens (an agent: its LLM's)
    candidate_size_b: np.ndarray  # (C,) NaN when unknown
    effect: np.ndarray  # (Q, C) NaN where unobserved
    cost: np.ndarray  # (Q, C) NaN where unobserved
    split: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # (Q,) "train"/"test"/""
    # (C,) for an agent the column of the LLM it is backed by (Agent -BACKED_BY-> LLM); -1 for LLMs. Empty: none
    candidate_backing: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # when the store snapshot these data come from was taken (UTC, to the second); "": unknown (built from arrays)
    snapshot_at: str = ""
    # (Q, C) False where an observed cost was billed before its LLM's prices last changed (``LLMNode.priced_at``):
    # it does not teach the cost multiplier. None: every cost was billed at the current prices (the usual case)
    billed_now: np.ndarray | None = None

    def __setstate__(self, state: dict) -> None:  # checkpoints written before agents had a backing column
        state.setdefault("candidate_backing", np.zeros(0, dtype=np.int64))
        state.setdefault("snapshot_at", "")  # or before the snapshot's time was kept
        state.setdefault("billed_now", None)  # or before prices could change
        self.__dict__.update(state)

    def backing(self) -> dict[int, int]:
        """Agent column → the column of its LLM, for agents whose LLM is a candidate."""
        return {int(a): int(b) for a, b in enumerate(self.candidate_backing) if b >= 0}

    def observed_counts(self) -> np.ndarray:
        """(C,) how many outcomes of each candidate the matrices hold (over every query: the snapshot's)."""
        return np.count_nonzero(np.isfinite(self.effect), axis=0)

    @property
    def n_queries(self) -> int:
        return len(self.query_keys)

    @property
    def n_candidates(self) -> int:
        return len(self.candidates)

    def cost_norm(self) -> np.ndarray:
        """(Q, C) cost min-max normalised within each task over all its observed outcomes (NaN stays NaN)."""
        out = np.full_like(self.cost, np.nan)
        for t in range(len(self.task_names)):
            rows = self.query_task == t
            block = self.cost[rows]
            if not np.isfinite(block).any():
                continue
            lo, hi = np.nanmin(block), np.nanmax(block)
            out[rows] = (block - lo) / (hi - lo) if hi > lo else 0.0
        return out

    def task_cost_range(self, cost: np.ndarray | None = None) -> np.ndarray:
        """(T, 2) min and max observed cost per task (the normalisation of :meth:`cost_norm`); of ``cost`` (Q, C)
        instead of the observed costs if given (some of them left out as NaN)."""
        cost = self.cost if cost is None else cost
        rng = np.zeros((len(self.task_names), 2))
        for t in range(len(self.task_names)):
            block = cost[self.query_task == t]
            if np.isfinite(block).any():
                rng[t] = np.nanmin(block), np.nanmax(block)
        return rng

    def select_candidates(self, keep: np.ndarray) -> RoutingData:
        """The same queries with only the candidate columns ``keep`` (e.g. to withhold some LLMs)."""
        keep = np.asarray(keep)
        new_col = {int(old): new for new, old in enumerate(keep)}
        old = self.candidate_backing if len(self.candidate_backing) else np.full(self.n_candidates, -1)
        backing = np.array([new_col.get(int(b), -1) for b in old[keep]], dtype=np.int64)
        return RoutingData(
            query_keys=self.query_keys,
            query_text=self.query_text,
            query_task=self.query_task,
            task_names=self.task_names,
            candidates=[self.candidates[i] for i in keep],
            candidate_kind=[self.candidate_kind[i] for i in keep],
            candidate_text=[self.candidate_text[i] for i in keep],
            candidate_prices=self.candidate_prices[keep],
            candidate_size_b=self.candidate_size_b[keep],
            effect=self.effect[:, keep],
            cost=self.cost[:, keep],
            split=self.split,
            candidate_backing=backing,
            snapshot_at=self.snapshot_at,
            billed_now=None if self.billed_now is None else self.billed_now[:, keep],
        )

    def select_queries(self, rows: np.ndarray) -> RoutingData:
        """Only the query rows ``rows`` (e.g. the training queries, as a router's stored graph)."""
        rows = np.asarray(rows)
        return RoutingData(
            query_keys=[self.query_keys[i] for i in rows],
            query_text=[self.query_text[i] for i in rows],
            query_task=self.query_task[rows],
            task_names=self.task_names,
            candidates=self.candidates,
            candidate_kind=self.candidate_kind,
            candidate_text=self.candidate_text,
            candidate_prices=self.candidate_prices,
            candidate_size_b=self.candidate_size_b,
            effect=self.effect[rows],
            cost=self.cost[rows],
            split=self.split[rows] if len(self.split) else self.split,
            candidate_backing=self.candidate_backing,
            snapshot_at=self.snapshot_at,
            billed_now=None if self.billed_now is None else self.billed_now[rows],
        )

    @classmethod
    def from_snapshot(cls, snap: GraphSnapshot) -> RoutingData:
        queries, tasks, llms, agents = (snap.nodes[x] for x in (QUERY, TASK, LLM, AGENT))
        task_index = tasks.index()
        llm_index = llms.index()
        n_llm = len(llms)
        candidates = list(llms.keys) + list(agents.keys)
        prices = np.zeros((len(candidates), 2))
        size = np.full(len(candidates), np.nan)
        prices[:n_llm, 0] = llms.numeric["input_price"]
        prices[:n_llm, 1] = llms.numeric["output_price"]
        size[:n_llm] = llms.numeric["size_b"]
        backing = np.full(len(candidates), -1, dtype=np.int64)
        for i, llm in enumerate(agents.text["llm"]):
            j = llm_index.get(llm)
            if j is not None:
                prices[n_llm + i] = prices[j]
                size[n_llm + i] = size[j]
                backing[n_llm + i] = j
        q, c = len(queries), len(candidates)
        effect = np.full((q, c), np.nan)
        cost = np.full((q, c), np.nan)
        billed = np.ones((q, c), dtype=bool)
        for rel, offset in (("ANSWERED_BY", 0), ("HANDLED_BY", n_llm)):
            e = snap.edges[(QUERY, rel, LLM if rel == "ANSWERED_BY" else AGENT)]
            effect[e.src, e.dst + offset] = e.attrs.get("effect", np.zeros(len(e)))
            cost[e.src, e.dst + offset] = e.attrs.get("cost", np.zeros(len(e)))
            billed[e.src, e.dst + offset] = e.attrs.get("billed_now", np.ones(len(e))) > 0
        return cls(
            query_keys=list(queries.keys),
            query_text=list(queries.text["text"]),
            query_task=np.array([task_index.get(t, -1) for t in queries.text["task"]], dtype=np.int64),
            task_names=list(tasks.keys),
            candidates=candidates,
            candidate_kind=[LLM] * n_llm + [AGENT] * len(agents),
            candidate_text=list(llms.text["description"]) + list(agents.text["description"]),
            candidate_prices=prices,
            candidate_size_b=size,
            effect=effect,
            cost=cost,
            split=_splits_from_keys(queries.keys),
            candidate_backing=backing,
            snapshot_at=snap.taken_at,
            billed_now=None if billed.all() else billed,
        )


def _splits_from_keys(keys: list[str]) -> np.ndarray:
    """The official dcrouter split, recovered from query ids ``dcrouter:{train,test}:{i}``; "" for other queries."""
    out = np.empty(len(keys), dtype=object)
    for i, k in enumerate(keys):
        parts = k.split(":")
        out[i] = parts[1] if len(parts) == 3 and parts[0] == "dcrouter" and parts[1] in SOURCE_SPLITS else ""
    return out
