"""What the scorer learns from posted outcomes without retraining (:class:`ScorerOutcomes`, a part of
:class:`~graphrouter.scorer.Scorer`): outcomes on the router's stored training queries go to the router itself where
it can take them (the GNN's graph), every other one to the online learner or the router's own online update; a
replaced scorer's online learning is carried over to its successor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from graphrouter.errors import GraphRouterError
from graphrouter.tokens import count_tokens
from graphrouter.world import UNKNOWN_TASK, QueryFeatures

if TYPE_CHECKING:
    from graphrouter.embeddings import Embedder
    from graphrouter.online import OnlineLearner
    from graphrouter.routers.base import Router


class ScorerOutcomes:
    """The outcome-learning methods of :class:`~graphrouter.scorer.Scorer`; the state they read and replace is the
    scorer's."""

    if TYPE_CHECKING:  # provided by Scorer
        router: Router
        embedder: Embedder
        online: OnlineLearner
        _task_index: dict[str, int]
        _unsettled: set[str]

        @property
        def candidates(self) -> tuple[str, ...]: ...

    def add_outcomes(
        self,
        name: str,
        outcomes: dict[str, float],
        costs: dict[str, float] | None = None,
        queries: dict[str, tuple[str, str]] | None = None,
        settle: bool = True,
    ) -> int:
        """Learn observed effects (query id → effect) of candidate ``name`` now, without retraining, and its
        observed costs (query id → USD) if it was registered since training, on any query whose text is known (a
        trained candidate's cost factors are learned by training). ``settle=False``: where the router refitted the
        candidate, measuring its online corrections again (a pass over every one of them, seconds at 100,000) is left
        to :meth:`settle`, which the service runs under the routing lock's shared side, not the exclusive one routes
        wait for.

        Outcomes on the router's stored training queries are passed to the router when it can take them (the GNN
        updates its graph with them); every other outcome on a query whose embedding is known — a stored query of
        the router's world, or one of ``queries`` (query id → (text, task name)) — is learned online: by the
        router itself if it ``learns_online`` (bandits), else by :attr:`online` as a residual correction (and a
        neighbour for later requests). No outcome is learned twice. Returns how many effects are used now.
        """
        if name not in self.candidates:
            raise GraphRouterError(f"{name!r} is not a candidate")
        rows, cost_rows = self.router.training_rows(outcomes, costs)
        absorbed = 0
        if (rows or cost_rows) and not self.router.learns_online:
            try:
                absorbed = int(self.router.add_outcomes(name, rows, cost_rows))
            except NotImplementedError:  # this router uses stored outcomes only after retraining
                pass
            except GraphRouterError:
                raise
            except ValueError as exc:
                raise GraphRouterError(f"cannot add outcomes of {name!r}: {exc}") from None
        if absorbed:  # the router learned those itself (the GNN's graph): not corrected for a second time
            keys = self.router.query_rows()
            self.online.drop(name, [i for i in outcomes if keys.get(i) in rows])  # carried over from before
            outcomes = {i: e for i, e in outcomes.items() if keys.get(i) not in rows}
            if settle:
                self.online.repredict(name, self.router)  # its prediction moved: its corrections with it
            else:
                self._unsettled.add(name)
        ids, q = self._features(outcomes, queries or {})
        if not ids:
            return absorbed
        effect = np.array([float(outcomes[i]) for i in ids])
        if not np.isfinite(effect).all() or (effect < 0).any() or (effect > 1).any():
            raise GraphRouterError(f"cannot add outcomes of {name!r}: effects must be in [0, 1]")
        col = self.candidates.index(name)
        router = self.router
        q = router.task_inferer.fill(q)
        if costs and not router.learns_online:  # (the bandits learn costs in their update)
            index = router.query_rows()
            paid = {
                i: (float(q.tokens[k]), float(c))
                for k, i in enumerate(ids)
                if i not in index and (c := costs.get(i)) is not None
            }
            router.cost_model.observe_new(col, paid, router.world.query_tokens)
        if router.learns_online:
            cost = np.array([np.nan if (costs or {}).get(i) is None else float(costs[i]) for i in ids])
            router.update(q, col, effect, cost)  # type: ignore[attr-defined]
            return len(ids)
        predicted = router.predict_effect(q)  # uncorrected; every candidate's: the bases of a refit
        others = {c: predicted[:, k] for k, c in enumerate(router.candidates) if k != col}
        return absorbed + self.online.observe(name, ids, q.embedding, q.task, effect, predicted[:, col], others)

    def settle(self) -> int:
        """Measure again the online corrections of the candidates :meth:`add_outcomes` refitted with
        ``settle=False`` (against the router's predictions now); how many rows. Meanwhile a request may read a
        refitted prediction with its old corrections: for that moment, the refit's change counts twice."""
        names, self._unsettled = self._unsettled, set()
        return sum(self.online.repredict(n, self.router) for n in names if n in self.candidates)

    def _features(
        self, outcomes: dict[str, float], queries: dict[str, tuple[str, str]]
    ) -> tuple[list[str], QueryFeatures]:
        """The query ids of ``outcomes`` whose embedding is known, and their features (stored queries from the
        router's world; the others embedded from their text, with their task if the router knows it)."""
        world = self.router.world
        index = self.router.query_rows()
        stored = [i for i in outcomes if i in index]
        new = [i for i in outcomes if i not in index and i in queries]
        emb = [world.query_emb[[index[i] for i in stored]]] if stored else []
        if new:
            emb.append(self.embedder.embed([queries[i][0] for i in new]))
        ids = stored + new
        if not ids:
            return ids, QueryFeatures(np.zeros((0, 1)), np.zeros(0, dtype=np.int64), np.zeros(0))
        task = [int(world.data.query_task[index[i]]) for i in stored] + [
            self._task_index.get(queries[i][1], UNKNOWN_TASK) for i in new
        ]
        tokens = [float(world.query_tokens[index[i]]) for i in stored] + list(
            count_tokens([queries[i][0] for i in new]) if new else []
        )
        return ids, QueryFeatures(
            np.concatenate(emb).astype(np.float32), np.asarray(task, dtype=np.int64), np.asarray(tokens, dtype=float)
        )

    def quiz_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(C,) outcomes behind each candidate's prediction (trained, registered, or posted on stored queries) and
        (C,) those learned online since: what exploration's quiz counts."""
        return self.router.trained_counts(), self.online.counts(self.candidates)

    def unknown_queries(self, query_ids: list[str]) -> list[str]:
        """Those of ``query_ids`` that are not stored queries of the router's world (their text is needed to learn
        from their outcomes now)."""
        index = self.router.query_rows()
        return [i for i in query_ids if i not in index]

    def carry_over(self, previous: ScorerOutcomes, since: int | None = None) -> None:
        """Take over what a replaced scorer learned online: only the outcomes observed after mark ``since`` (the
        snapshot this scorer was trained on holds the older ones; None: all of them), re-based on this router's
        predictions. (The exploration budget is the service's, given to each scorer it installs.)"""
        tasks = list(previous.router.world.data.task_names)
        learned = previous.online.rebased(self.router, -1 if since is None else since, tasks)
        self.online = learned
        if not self.router.learns_online:
            self.router.online = learned
