"""The GNN router's candidate list and its changes, without retraining: registering candidates (LLMs, agents backed by
an LLM), removing one, and adding observed outcomes (:class:`CandidateList`, a part of
:class:`~graphrouter.routers.gnn.router.GnnRouter`).

A change computes the new serving state from the cached one first (:meth:`ServingCache.patched`; a failure leaves the
router as it was), then installs it with the candidate list, the cost model and the outcomes that arrived since
training (what the fit from outcomes uses), all under the serving lock; an exact refresh follows in the background.
The router is the one owner of the candidate list: ``candidates`` and ``kinds`` are tuples replaced on every change.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

from graph_store import AGENT, LLM
from graphrouter.errors import CandidateExistsError, UnknownCandidateError
from graphrouter.routers.base import NewCandidate
from graphrouter.routers.gnn.graph import Candidates
from graphrouter.routers.gnn.observed import candidate_features

if TYPE_CHECKING:
    from graphrouter.cost import CostModel
    from graphrouter.routers.gnn.graph import QueryNodes
    from graphrouter.routers.gnn.serving import ServingCache
    from graphrouter.world import World


class CandidateList:
    """The candidate-list methods of :class:`~graphrouter.routers.gnn.router.GnnRouter`; the state they read and
    replace is the router's (set by its fitting)."""

    _cache: ServingCache
    _candidates: tuple[str, ...]
    _kinds: tuple[str, ...]
    _fresh: dict[str, np.ndarray]
    _trained: tuple[str, ...]
    _nodes: QueryNodes
    cost_model: CostModel
    world: World
    train_idx: np.ndarray

    @property
    def candidates(self) -> tuple[str, ...]:
        """Candidates in column order, registered ones included, removed ones gone (replaced on every change)."""
        return self._candidates

    @property
    def kinds(self) -> tuple[str, ...]:
        return self._kinds

    def candidate_kinds(self) -> list[tuple[str, str]]:
        with self._cache.lock:
            return list(zip(self._candidates, self._kinds, strict=True))

    def register_candidate(
        self,
        name: str,
        description_embedding: np.ndarray,
        input_price: float,
        output_price: float,
        size_b: float | None = None,
        outcomes: dict[int, float] | None = None,
        backed_by: str | None = None,
        costs: dict[int, float] | None = None,
    ) -> int:
        """Add a candidate without retraining and return its column. ``outcomes`` maps stored (training) query
        indices of the world to the candidate's observed effect on them; ``backed_by`` names the LLM candidate an
        agent runs on (the agent inherits its outcome edges); ``costs`` (same keys, USD) set its cost factors.
        Routable when this returns; see :meth:`ServingCache.patched`."""
        spec = NewCandidate(name, description_embedding, input_price, output_price, size_b, outcomes, backed_by, costs)
        return self.register_candidates([spec])[0]

    def register_candidates(self, specs: list[NewCandidate]) -> list[int]:
        """Add several candidates in one change (one patch of the serving state, one background refresh): what a
        start-up or an attach after a retrain registers. All or none; an agent may be backed by an LLM of the same
        batch listed before it. Returns their columns."""
        with self._cache.lock:
            names, kinds = list(self._candidates), list(self._kinds)
            now = self._cache.candidates
            backing_of = dict(now.backing)
            features, columns, new_cols, fresh_rows = [], [], [], []
            for spec in specs:
                if spec.name in names:
                    raise CandidateExistsError(
                        f"{spec.name!r} is already a candidate (already routable); remove it first"
                    )
                col = len(names)
                if spec.backed_by is not None:
                    if spec.backed_by not in names:
                        raise ValueError(f"backing LLM {spec.backed_by!r} is not a candidate")
                    backing = names.index(spec.backed_by)
                    if kinds[backing] != LLM:
                        raise ValueError(f"{spec.backed_by!r} is an agent; an agent must be backed by an LLM")
                    backing_of[col] = backing
                column = np.full(len(self._nodes), np.nan)
                rows, effects = self._positions(spec.outcomes or {})
                column[rows] = effects
                fresh_rows.append(rows)
                emb = np.asarray(spec.description_embedding, dtype=np.float32).reshape(1, -1)
                prices = np.array([[spec.input_price, spec.output_price]], dtype=np.float64)
                size = np.array([np.nan if spec.size_b is None else spec.size_b], dtype=np.float64)
                features.append(candidate_features(emb, prices, size))
                columns.append(column)
                new_cols.append(col)
                names.append(spec.name)
                kinds.append(AGENT if spec.backed_by is not None else LLM)
            if not specs:
                return []
            cands = Candidates(np.r_[now.features, *features], np.c_[now.effect, *columns], backing_of)
            serving = self._cache.patched(cands, new_cols)  # computed first: a failure leaves the router as it was
            cost_model = copy.copy(self.cost_model)  # its arrays are replaced, never changed in place
            for spec, col in zip(specs, new_cols, strict=True):
                cost_model.add_candidate(np.array([[spec.input_price, spec.output_price]], dtype=np.float64))
                cost_model.observe(col, spec.costs or {}, self.world.query_tokens)
            self.cost_model = cost_model
            self._candidates, self._kinds = tuple(names), tuple(kinds)
            for spec, rows in zip(specs, fresh_rows, strict=True):  # outcomes since training: what the fit uses
                self._fresh = {k: v for k, v in self._fresh.items() if k != spec.name}
                self._note_fresh(spec.name, rows)
            self._cache.commit(cands, serving, new_cols, reshaped=True, refit_only=True)
            return new_cols

    def remove_candidate(self, name: str) -> None:
        with self._cache.lock:
            if name not in self.candidates:
                raise UnknownCandidateError(f"{name!r} is not a candidate")
            now = self._cache.candidates
            col = self.candidates.index(name)
            agents = [self.candidates[a] for a, llm in now.backing.items() if llm == col]
            if agents:
                raise ValueError(f"{name!r} backs the agent(s) {agents}; remove them first")
            if len(self.candidates) == 1:
                raise ValueError(f"{name!r} is the last candidate; a router needs at least one")
            keep = np.arange(len(self.candidates)) != col
            new_col = np.cumsum(keep) - 1
            cands = Candidates(
                now.features[keep],
                now.effect[:, keep],
                {int(new_col[a]): int(new_col[llm]) for a, llm in now.backing.items() if a != col},
            )
            serving = self._cache.patched(cands, [], removed_row=col)
            self.cost_model.keep_candidates(keep)
            self._candidates = self._candidates[:col] + self._candidates[col + 1 :]
            self._kinds = self._kinds[:col] + self._kinds[col + 1 :]
            self._fresh = {k: v for k, v in self._fresh.items() if k != name}
            # registered again under this name, it is a new candidate (its trained column is gone)
            self._trained = tuple(n for n in self._trained if n != name)
            self._cache.commit(cands, serving, [], reshaped=True, refit_only=True, removed=col)

    def add_outcomes(self, name: str, outcomes: dict[int, float], costs: dict[int, float] | None = None) -> int:
        with self._cache.lock:
            if name not in self.candidates:
                raise UnknownCandidateError(f"{name!r} is not a candidate")
            rows, effects = self._positions(outcomes, strict=False)  # checked before anything changes
            used = len(rows)
            self.cost_model.observe(self.candidates.index(name), costs or {}, self.world.query_tokens)
            if len(rows):
                now = self._cache.candidates
                col = self.candidates.index(name)
                same = now.effect[rows, col] == effects  # known already (re-posted): not news, nothing to refit
                rows, effects = rows[~same], effects[~same]
            if len(rows):
                effect = now.effect.copy()  # never mutated in place: a background refresh may be reading it
                effect[rows, col] = effects
                cands = Candidates(now.features, effect, dict(now.backing))
                columns = [col] + [a for a, llm in now.backing.items() if llm == col]
                back = self._trained_values(name, rows) == effects  # back to what it was trained on: news no more
                self._note_fresh(name, rows[~back])
                self._forget_fresh(name, rows[back])
                serving = self._cache.patched(cands, columns)
                self._cache.commit(cands, serving, columns, reshaped=False, refit_only=True)
            return used

    def _positions(self, outcomes: dict[int, float], strict: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Stored positions and effects of ``outcomes`` (world query index → effect); with ``strict=False``
        queries that are not stored training queries are skipped (the next training uses them)."""
        pos = np.full(self.world.data.n_queries, -1)
        pos[self.train_idx] = np.arange(len(self.train_idx))
        rows, effects = [], []
        for idx, eff in outcomes.items():
            if not 0 <= idx < len(pos) or pos[idx] < 0:
                if strict:
                    raise ValueError(f"query {idx} is not a stored training query of this router")
                continue
            if not 0.0 <= float(eff) <= 1.0:
                raise ValueError(f"effect must be in [0, 1], got {eff!r} for query {idx}")
            rows.append(pos[idx])
            effects.append(float(eff))
        return np.asarray(rows, dtype=np.int64), np.asarray(effects, dtype=np.float64)

    def _trained_values(self, name: str, rows: np.ndarray) -> np.ndarray:
        """(len(rows),) the effects a trained candidate ``name`` was trained with on stored positions ``rows`` (NaN
        where it had none, and for a candidate registered since training)."""
        if name not in self._trained:
            return np.full(len(rows), np.nan)
        return np.asarray(self.world.data.effect[self.train_idx[rows], self.world.data.candidates.index(name)])

    def _forget_fresh(self, name: str, rows: np.ndarray) -> None:
        """``name``'s outcomes on ``rows`` are what it was trained on again: not fresh any more."""
        old = self._fresh.get(name)
        if old is None or not len(rows):
            return
        left = old[~np.isin(old, rows)]
        self._fresh = {k: v for k, v in self._fresh.items() if k != name} | ({name: left} if len(left) else {})

    def _note_fresh(self, name: str, rows: np.ndarray) -> None:
        """Record that ``name``'s outcomes on stored positions ``rows`` arrived since training (most recent last)."""
        if not len(rows):
            return
        old = self._fresh.get(name, np.zeros(0, np.int64))
        self._fresh = {**self._fresh, name: np.r_[old[~np.isin(old, rows)], rows].astype(np.int64)}
