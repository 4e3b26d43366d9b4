"""What the running service holds: the store, the scorer, and the locks that keep them consistent.

The store and the scorer are built by the app's lifespan (or injected by tests). If either cannot be built at
start (store down, no checkpoint yet), the service still starts: ``/health`` answers, ``/ready`` says why it is not
ready, the affected routes answer 503, and each later request retries (at most every ``retry_interval`` seconds),
so the service recovers by itself once the store or the checkpoint is there.

Routing reads the scorer under a shared lock; registering an LLM changes it under the exclusive lock, so a route
answer never sees a half-registered candidate. A scorer cannot drop a candidate, so a deleted LLM is kept in
``removed`` and filtered out of every route (it stops being routable at once; a restart forgets it for good).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from api.settings import Settings
from graph_store import AGENT, LLM, TASK, GraphStore, GraphStoreError, LLMNode, StoreUnavailableError, open_store
from graphrouter.errors import GraphRouterError

if TYPE_CHECKING:
    from graphrouter.scorer import Scorer

log = logging.getLogger("api")


class ScorerUnavailableError(GraphRouterError):
    """The scorer is not loaded (no checkpoint, or the store was down when it was loaded); answered with 503."""


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers, so registration is not starved."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

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
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def same_llm(a: LLMNode, b: LLMNode) -> bool:
    """Same registration data (the stored embedding, if any, is not part of what a client sends)."""
    return (a.name, a.description, a.input_price, a.output_price, a.size_b) == (
        b.name,
        b.description,
        b.input_price,
        b.output_price,
        b.size_b,
    )


def load_scorer(store: GraphStore, settings: Settings, embedder: Any = None) -> tuple[Scorer, list[str], list[str]]:
    """Build the scorer from the checkpoint and the store, as ``graphrouter route`` does (cli._load_scorer).

    Unlike the CLI, a checkpoint candidate that is no longer in the store does not refuse the checkpoint: it is
    returned in the first list, to be filtered out of routing. The second list holds the store's LLMs that this
    router cannot add without retraining.
    """
    from graphrouter.checkpoint import CheckpointError, load_checkpoint
    from graphrouter.scorer import Scorer

    tasks = [t.key for t in store.list_nodes(TASK)]
    ckpt = load_checkpoint(settings.checkpoint, settings.embedding_model, tasks, None)
    if embedder is None:
        from graphrouter.embeddings import Embedder

        embedder = Embedder(ckpt.embedding_model, cache_path=settings.embedding_cache)
        embedder.dim  # noqa: B018 - load the model now, not on the first request
    scorer = Scorer(ckpt, embedder)
    stored = {n.key for n in store.list_nodes(LLM)} | {n.key for n in store.list_nodes(AGENT)}
    missing = [c for c in scorer.candidates if c not in stored]
    if len(missing) == len(scorer.candidates):
        raise CheckpointError(f"none of the candidates of {settings.checkpoint} is in the store; retrain")
    _added, skipped = scorer.sync_with_store(store)
    return scorer, missing, skipped


class ServiceState:
    """The store, the scorer and their locks; one per app, created by the lifespan."""

    retry_interval = 5.0  # seconds between attempts to (re)open the store or (re)load the scorer

    def __init__(
        self,
        settings: Settings,
        store: GraphStore | None = None,
        scorer: Scorer | None = None,
        embedder: Any = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.scorer = scorer
        self._owns_store = store is None
        self._embedder = embedder
        self.store_error: str | None = None
        self.scorer_error: str | None = None
        self.removed: dict[str, LLMNode | None] = {}  # deleted while running → filtered out of routing
        self.lock = RWLock()  # shared: routing; exclusive: changing the scorer's candidates or `removed`
        self.registry_lock = threading.Lock()  # serialises LLM writes (check, write store, register)
        self._load_lock = threading.Lock()
        self._last_store_try = self._last_scorer_try = float("-inf")

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._try_open_store(force=True)
        if self.scorer is None:
            self._try_load_scorer(force=True)

    def close(self) -> None:
        if self._owns_store and self.store is not None:
            self.store.close()
            self.store = None

    # ---- access -------------------------------------------------------------------------------------------
    def get_store(self) -> GraphStore:
        store = self.store or self._try_open_store()
        if store is None:
            raise StoreUnavailableError(self.store_error or "the graph store is not open")
        return store

    def get_scorer(self) -> Scorer:
        scorer = self.scorer or self._try_load_scorer()
        if scorer is None:
            raise ScorerUnavailableError(f"the scorer is not loaded: {self.scorer_error}")
        return scorer

    def routable(self, name: str) -> bool:
        return self.scorer is not None and name in self.scorer.candidates and name not in self.removed

    def candidate_pool(self, requested: list[str] | None) -> list[str] | None:
        """The candidate filter to pass to the scorer: the request's, checked, minus deleted ones."""
        scorer = self.get_scorer()
        if requested is not None:
            unknown = [c for c in requested if c not in scorer.candidates or c in self.removed]
            if unknown:
                known = [c for c in scorer.candidates if c not in self.removed]
                raise GraphRouterError(f"unknown candidate(s) {unknown}; known: {', '.join(known)}")
            return requested
        if not self.removed:
            return None
        return [c for c in scorer.candidates if c not in self.removed]

    # ---- (re)building -------------------------------------------------------------------------------------
    def _due(self, last: float, force: bool) -> bool:
        return force or time.monotonic() - last >= self.retry_interval

    def _try_open_store(self, force: bool = False) -> GraphStore | None:
        with self._load_lock:
            if self.store is not None or not self._due(self._last_store_try, force):
                return self.store
            self._last_store_try = time.monotonic()
            store = None
            try:
                store = open_store(self.settings.store)
                store.ping()
            except (GraphStoreError, OSError) as exc:  # down, or misconfigured: /ready says which
                if store is not None:
                    store.close()
                self.store_error = f"cannot open the graph store {self.settings.store!r}: {exc}"
                log.warning("%s", self.store_error)
                return None
            self.store, self.store_error = store, None
            log.info("graph store open (%s)", store.backend)
            return store

    def _try_load_scorer(self, force: bool = False) -> Scorer | None:
        store = self.store or self._try_open_store(force)
        with self._load_lock:
            if self.scorer is not None or not self._due(self._last_scorer_try, force):
                return self.scorer
            self._last_scorer_try = time.monotonic()
            if store is None:
                self.scorer_error = f"the graph store is unavailable ({self.store_error})"
                return None
            try:
                scorer, missing, skipped = load_scorer(store, self.settings, self._embedder)
            except GraphRouterError as exc:  # CheckpointError, a bad embedding model
                self.scorer_error = str(exc)
                log.warning("scorer not loaded: %s", exc)
                return None
            except StoreUnavailableError as exc:
                self.scorer_error = f"the graph store is unavailable ({exc})"
                log.warning("scorer not loaded: %s", exc)
                return None
            with self.lock.write():
                self.scorer, self.scorer_error = scorer, None
                self.removed = dict.fromkeys(missing)
            log.info(
                "scorer loaded: checkpoint %s (%s router), %d candidates",
                scorer.checkpoint.version,
                scorer.router.name,
                len(scorer.candidates) - len(missing),
            )
            if missing:
                log.warning("candidates no longer in the store, not routed to: %s", ", ".join(missing))
            if skipped:
                log.warning("not routable by the %r router until retrained: %s", scorer.router.name, ", ".join(skipped))
            return scorer
