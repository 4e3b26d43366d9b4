"""What the running service holds: the store, the scorer, and the locks that keep them consistent.

The store and the scorer are built by the app's lifespan (or injected by tests). If either cannot be built at
start (store down, no checkpoint yet), the service still starts: ``/health`` answers, ``/ready`` says why it is not
ready, the affected routes answer 503, and each later request retries (at most every ``retry_interval`` seconds),
so the service recovers by itself once the store or the checkpoint is there.

Routing reads the scorer under a shared lock; registering a candidate, passing it outcomes, and swapping in a
retrained scorer change it under the exclusive lock, so a route answer never sees a half-registered candidate or a
half-swapped scorer. Who is a candidate is the scorer's router's to say
(``Scorer.candidates``, ``Scorer.routable``); loading a scorer and changing its candidates is the registration
service's (:mod:`api.registry`). A task deleted while its checkpoint still knows it is kept in ``deleted_tasks`` and
refused as a route's ``task``, until it is registered again as the checkpoint knew it (with another description, it is
refused until a retrain).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from api.metrics import Metrics
from api.settings import Settings
from graph_store import TASK, GraphStore, GraphStoreError, StoreUnavailableError, open_store
from graph_store.location import redact
from graphrouter.errors import GraphRouterError, ScorerUnavailableError
from graphrouter.exploration import Explorer

if TYPE_CHECKING:
    from graphrouter.scorer import Scorer

log = logging.getLogger("api")


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers, so registration is not starved. The writer may
    take the write lock again (a change made of several steps, each of which locks, holds it across them all)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._owner: int | None = None
        self._depth = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer and self._owner == me:  # taken again by its holder
                self._depth += 1
            else:
                self._writers_waiting += 1
                while self._writer or self._readers:
                    self._cond.wait()
                self._writers_waiting -= 1
                self._writer, self._owner, self._depth = True, me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._writer, self._owner = False, None
                    self._cond.notify_all()


def limit_torch_threads(n: int | None) -> int | None:
    """torch's intra-op pool is process-wide (``torch.set_num_threads`` is global): routing requests and a background
    training share it, so it is set once for the whole service. Returns the previous setting if it changed it."""
    if n is None:
        return None
    import torch

    before = torch.get_num_threads()
    if before == n:
        return None
    torch.set_num_threads(n)
    return before


class ServiceState:
    """The store, the serving scorer and the routing lock; one per app, created by the lifespan."""

    retry_interval = 5.0  # seconds between attempts to (re)open the store or (re)load the scorer

    def __init__(
        self,
        settings: Settings,
        store: GraphStore | None = None,
        scorer: Scorer | None = None,
        embedder: Any = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.scorer = scorer
        self._owns_store = store is None
        self.injected_scorer = scorer is not None
        self.embedder = embedder  # injected (tests); else each scorer loads the checkpoint's embedding model
        self.metrics = metrics if metrics is not None else Metrics()
        self.store_error: str | None = None
        self.scorer_error: str | None = None
        self.deleted_tasks: set[str] = set()  # the scorer's, deleted (or registered again otherwise): refused
        self.redescribed_tasks: set[str] = set()  # of those, stored again with another description
        self.lock = RWLock()  # shared: routing; exclusive: changing the scorer or its candidates
        # this replica's id, the origin of the change records it writes (so that it does not apply them twice)
        self.replica_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # the exploration budget: one for the service, handed to every scorer installed
        self.explorer = Explorer(
            settings.explore_share,
            settings.explore_usd_per_1k,
            quiz=settings.explore_quiz,
            task_quiz=settings.explore_task_quiz,
            burst=settings.explore_burst,
        )
        self._load_lock = threading.Lock()
        self._last_store_try = float("-inf")
        self._torch_threads_before: int | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._torch_threads_before = limit_torch_threads(self.settings.torch_threads)
        self._try_open_store(force=True)

    def close(self) -> None:
        if self._torch_threads_before is not None:  # give the process (e.g. a test session) its setting back
            limit_torch_threads(self._torch_threads_before)
        if self._owns_store and self.store is not None:
            self.store.close()
            self.store = None

    # ---- access -------------------------------------------------------------------------------------------
    def get_store(self) -> GraphStore:
        store = self.store or self._try_open_store()
        if store is None:
            raise StoreUnavailableError(self.store_error or "the graph store is not open")
        return store

    def require_scorer(self) -> Scorer:
        if self.scorer is None:
            raise ScorerUnavailableError(f"the scorer is not loaded: {self.scorer_error}")
        return self.scorer

    def routable(self, name: str) -> bool:
        return self.scorer is not None and self.scorer.routable(name)

    def learning(self, name: str) -> dict[str, int | float] | None:
        """What the scorer has learned of a routable candidate (``LearningOut``'s fields), or None."""
        with self.lock.read():
            scorer = self.scorer
            if scorer is None or not scorer.routable(name):
                return None
            col = scorer.candidates.index(name)
            trained, online = (float(n[col]) for n in scorer.quiz_counts())
            left = scorer.explorer.quiz_left(trained, trained + online)
            cost_in, cost_out = scorer.cost_factors(name)
            return {
                "outcomes": int(trained),
                "learned_online": int(online),
                "quiz_outcomes_left": left,
                "cost_input_factor": cost_in,
                "cost_output_factor": cost_out,
            }

    def check_task(self, task: str, scorer: Scorer) -> None:
        """Refuse, with a message saying what to do, a route's task that the scorer cannot use."""
        if task in self.redescribed_tasks:
            raise GraphRouterError(
                f"task: {task!r} was registered again with another description since checkpoint "
                f"{scorer.checkpoint.version} was trained; retrain (POST /v1/train) to route with it, or omit task to "
                "have it inferred"
            )
        if task in self.deleted_tasks:
            raise GraphRouterError(f"task: {task!r} was deleted; omit task to have it inferred")
        if task in scorer.tasks:
            return
        try:
            stored = self.store is not None and self.store.has_node(TASK, task)
        except GraphStoreError:  # the store being down is not this request's problem: say "unknown task"
            stored = False
        if stored:
            raise GraphRouterError(
                f"task: {task!r} was registered after checkpoint {scorer.checkpoint.version} was trained; retrain "
                "(POST /v1/train) to route with it, or omit task to have it inferred"
            )

    def install(self, scorer: Scorer, deleted_tasks: set[str], redescribed_tasks: set[str] | None = None) -> None:
        """Swap a scorer in atomically (routing sees the old one or the new one, never a mix)."""
        with self.lock.write():
            self.scorer, self.scorer_error = scorer, None
            self.deleted_tasks = set(deleted_tasks)
            self.redescribed_tasks = set(redescribed_tasks or ())

    def due(self, last: float, force: bool = False) -> bool:
        return force or time.monotonic() - last >= self.retry_interval

    def _try_open_store(self, force: bool = False) -> GraphStore | None:
        with self._load_lock:
            if self.store is not None or not self.due(self._last_store_try, force):
                return self.store
            self._last_store_try = time.monotonic()
            store = None
            try:
                store = open_store(self.settings.store, create=self.settings.store_may_be_created)
                store.ping()
            except (GraphStoreError, OSError) as exc:  # down, or misconfigured: /ready says which
                if store is not None:
                    store.close()
                self.store_error = f"cannot open the graph store {redact(self.settings.store)!r}: {exc}"
                log.warning("%s", self.store_error)
                return None
            self.store, self.store_error = store, None
            log.info("graph store open (%s)", store.backend)
            return store
