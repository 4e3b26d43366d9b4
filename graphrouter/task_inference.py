"""Task inference: a query that arrives without its task gets the most likely one, from its embedding."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from graphrouter.world import UNKNOWN_TASK, QueryFeatures, World


class TaskInferer:
    """Infers a query's task from its embedding: multinomial logistic regression on the stored training queries."""

    _only: int | None = None  # the one task of training data that has a single one (a class attribute for old pickles)

    def __init__(self, c: float = 10.0) -> None:
        self.c = c
        self._clf = None
        self.n_tasks = 0

    def fit(self, world: World, train_idx: np.ndarray) -> TaskInferer:
        from sklearn.linear_model import LogisticRegression

        self.n_tasks = len(world.data.task_names)
        y = world.data.query_task[train_idx]
        seen = np.unique(y)
        self._only = int(seen[0]) if len(seen) == 1 else None
        if self._only is not None:  # nothing to tell apart (a logistic regression needs two classes)
            self._clf = None
            return self
        # one BLAS thread: on a small shared machine, oversubscribed OpenBLAS made this fit 40x slower
        with threadpool_limits(limits=1):
            self._clf = LogisticRegression(C=self.c, max_iter=3000).fit(world.query_emb[train_idx], y)
        return self

    def proba(self, embedding: np.ndarray) -> np.ndarray:
        out = np.zeros((embedding.shape[0], self.n_tasks))
        if self._only is not None:
            out[:, self._only] = 1.0
            return out
        assert self._clf is not None, "TaskInferer.fit() first"
        clf = self._clf
        if clf.coef_.shape[0] > 1:  # multinomial: the softmax of the linear scores, without sklearn's per-call checks
            z = np.asarray(embedding, dtype=np.float64) @ clf.coef_.T + clf.intercept_
            z = np.exp(z - z.max(1, keepdims=True))
            out[:, clf.classes_] = z / z.sum(1, keepdims=True)
        else:
            out[:, clf.classes_] = clf.predict_proba(embedding)
        return out

    def fill(self, q: QueryFeatures) -> QueryFeatures:
        """The same queries with every unknown task replaced by the most likely one."""
        unknown = q.task == UNKNOWN_TASK
        if not unknown.any():
            return q
        task = q.task.copy()
        task[unknown] = self.proba(q.embedding[unknown]).argmax(1)
        return q.with_task(task)
