"""What the running service holds: the store, the scorer, and the locks that keep them consistent.

The store and the scorer are built by the app's lifespan (or injected by tests). If either cannot be built at
start (store down, no checkpoint yet), the service still starts: ``/health`` answers, ``/ready`` says why it is not
ready, the affected routes answer 503, and each later request retries (at most every ``retry_interval`` seconds),
so the service recovers by itself once the store or the checkpoint is there.

Routing reads the scorer under a shared lock; registering a candidate, passing it outcomes, and swapping in a
retrained scorer change it under the exclusive lock, so a route answer never sees a half-registered candidate or a
half-swapped scorer. A deleted LLM or agent is dropped from the scorer when its router can do that
(``Scorer.remove_candidate``); otherwise it is kept in ``removed`` and filtered out of every route (it stops being
routable at once; a restart or a retrain forgets it for good). A task deleted while its checkpoint still knows it
is kept in ``deleted_tasks`` and refused as a route's ``task``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from api.metrics import Metrics
from api.settings import Settings
from graph_store import (
    AGENT,
    LLM,
    TASK,
    Agent,
    GraphStore,
    GraphStoreError,
    LLMNode,
    StoreUnavailableError,
    open_store,
)
from graph_store.factory import redact
from graphrouter.errors import CheckpointError, GraphRouterError, ScorerUnavailableError

if TYPE_CHECKING:
    from api.training import Trainer
    from graphrouter.embeddings import Embedder
    from graphrouter.scorer import Scorer

log = logging.getLogger("api")


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


def same_agent(a: Agent, b: Agent) -> bool:
    return (a.name, a.llm, a.description, a.strategy) == (b.name, b.llm, b.description, b.strategy)


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


@dataclass
class Attached:
    """What :func:`attach_scorer` found: candidates to filter out of routing (their router could not drop them),
    store candidates this router cannot add without retraining, and trained tasks no longer in the store."""

    removed: dict[str, LLMNode | Agent | None] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    deleted_tasks: set[str] = field(default_factory=set)


def make_embedder(settings: Settings, model: str) -> Embedder:
    """An embedder for ``model`` as the settings configure it (cache, backend, threads)."""
    from graphrouter.embeddings import Embedder

    return Embedder(
        model,
        cache_path=settings.embedding_cache,
        backend=settings.embedding_backend,
        threads=settings.embedding_threads,
    )


def load_scorer(store: GraphStore, settings: Settings, embedder: Any = None) -> Scorer:
    """Build the scorer from the checkpoint, as ``graphrouter route`` does (cli._load_scorer); then
    :func:`attach_scorer` it to the store.

    Unlike the CLI, a checkpoint whose tasks or candidates are partly gone from the store is not refused (they are
    dropped or filtered out by :func:`attach_scorer`), so the service keeps serving and can retrain itself.
    """
    from graphrouter.checkpoint import load_checkpoint
    from graphrouter.scorer import Scorer

    ckpt = load_checkpoint(settings.checkpoint, settings.embedding_model, None, None)
    if embedder is None:
        embedder = make_embedder(settings, ckpt.embedding_model)
        embedder.dim  # noqa: B018 - load the model now, not on the first request
    return Scorer(ckpt, embedder, settings.max_query_chars)


def attach_scorer(scorer: Scorer, store: GraphStore, source: str) -> Attached:
    """Make a freshly loaded (or retrained) scorer agree with the store: drop (or mark for filtering) its candidates
    that the store no longer has, and register the store's LLMs and agents it does not know."""
    stored = {n.key for n in store.list_nodes(LLM)} | {n.key for n in store.list_nodes(AGENT)}
    missing = [c for c in scorer.candidates if c not in stored]
    if len(missing) == len(scorer.candidates):
        raise CheckpointError(f"none of the candidates of {source} is in the store; retrain")
    out = Attached()
    for name in reversed(missing):  # agents (after the LLMs) first: a router refuses to drop an LLM backing one
        try:
            scorer.remove_candidate(name)
        except (NotImplementedError, GraphRouterError):
            out.removed[name] = None
    _added, out.skipped = scorer.sync_with_store(store)
    out.deleted_tasks = set(scorer.tasks) - {t.key for t in store.list_nodes(TASK)}
    return out


class ServiceState:
    """The store, the scorer and their locks; one per app, created by the lifespan."""

    retry_interval = 5.0  # seconds between attempts to (re)open the store or (re)load the scorer

    def __init__(
        self,
        settings: Settings,
        store: GraphStore | None = None,
        scorer: Scorer | None = None,
        embedder: Any = None,
        metrics: Metrics | None = None,
    ) -> None:
        from api.training import Trainer

        self.settings = settings
        self.store = store
        self.scorer = scorer
        self._owns_store = store is None
        self._injected_scorer = scorer is not None
        self.embedder = embedder  # injected (tests); else each scorer loads the checkpoint's embedding model
        self.metrics = metrics if metrics is not None else Metrics()
        self.store_error: str | None = None
        self.scorer_error: str | None = None
        self.removed: dict[str, LLMNode | Agent | None] = {}  # deleted, but the router cannot drop them: filtered
        self.deleted_tasks: set[str] = set()  # deleted, but the scorer was trained with them: refused
        self.lock = RWLock()  # shared: routing; exclusive: changing the scorer, its candidates or `removed`
        self.registry_lock = threading.Lock()  # serialises graph writes (check, write store, update the scorer)
        self._load_lock = threading.Lock()
        self._last_store_try = self._last_scorer_try = float("-inf")
        self._torch_threads_before: int | None = None
        self.trainer: Trainer = Trainer(self)

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._torch_threads_before = limit_torch_threads(self.settings.torch_threads)
        self._try_open_store(force=True)
        if self.scorer is None:
            self._try_load_scorer(force=True)
        elif self._injected_scorer and self.store is not None:
            try:
                with self.registry_lock:
                    self._attach(self.scorer, self.store, "the given scorer")
            except (GraphStoreError, GraphRouterError) as exc:  # served as given; /ready and the routes still work
                log.warning("the given scorer could not be synced with the store: %s", exc)

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

    def get_scorer(self) -> Scorer:
        scorer = self.scorer or self._try_load_scorer()
        if scorer is None:
            raise ScorerUnavailableError(f"the scorer is not loaded: {self.scorer_error}")
        return scorer

    def routable(self, name: str) -> bool:
        return self.scorer is not None and name in self.scorer.candidates and name not in self.removed

    def candidate_pool(self, requested: list[str] | None, scorer: Scorer | None = None) -> list[str] | None:
        """The candidate filter to pass to the scorer: the request's, checked, minus deleted ones."""
        scorer = scorer if scorer is not None else self.get_scorer()
        if requested is not None:
            unknown = [c for c in requested if c not in scorer.candidates or c in self.removed]
            if unknown:
                known = [c for c in scorer.candidates if c not in self.removed]
                raise GraphRouterError(f"unknown candidate(s) {unknown}; known: {', '.join(known)}")
            return requested
        if not self.removed:
            return None
        return [c for c in scorer.candidates if c not in self.removed]

    def check_task(self, task: str, scorer: Scorer) -> None:
        """Refuse, with a message saying what to do, a route's task that the scorer cannot use."""
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

    def remove_candidate(self, name: str, node: LLMNode | Agent) -> None:
        """Stop routing to a deleted LLM or agent at once: drop it from the scorer, or filter it out."""
        scorer = self.scorer
        if scorer is None or name not in scorer.candidates:
            return
        with self.lock.write():
            try:
                scorer.remove_candidate(name)
            except (NotImplementedError, GraphRouterError):  # cannot drop it (or not now): filter it out
                self.removed[name] = node
            else:
                self.removed.pop(name, None)

    def install(self, scorer: Scorer, attached: Attached) -> None:
        """Swap a scorer in atomically (routing sees the old one or the new one, never a mix)."""
        with self.lock.write():
            self.scorer, self.scorer_error = scorer, None
            self.removed = attached.removed
            self.deleted_tasks = attached.deleted_tasks

    def _attach(self, scorer: Scorer, store: GraphStore, source: str) -> Attached:
        attached = attach_scorer(scorer, store, source)
        self.install(scorer, attached)
        if attached.removed:
            log.warning("candidates no longer in the store, not routed to: %s", ", ".join(attached.removed))
        if attached.skipped:
            log.warning(
                "not routable by the %r router until retrained: %s", scorer.router.name, ", ".join(attached.skipped)
            )
        return attached

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
                self.store_error = f"cannot open the graph store {redact(self.settings.store)!r}: {exc}"
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
                scorer = load_scorer(store, self.settings, self.embedder)
                with self.registry_lock:  # no registration between reading the store and installing the scorer
                    self._attach(scorer, store, str(self.settings.checkpoint))
            except GraphRouterError as exc:  # CheckpointError, a bad embedding model
                self.scorer_error = str(exc)
                log.warning("scorer not loaded: %s", exc)
                return None
            except StoreUnavailableError as exc:
                self.scorer_error = f"the graph store is unavailable ({exc})"
                log.warning("scorer not loaded: %s", exc)
                return None
            log.info(
                "scorer loaded: checkpoint %s (%s router), %d candidates",
                scorer.checkpoint.version,
                scorer.router.name,
                len(scorer.candidates) - len(self.removed),
            )
            return scorer
