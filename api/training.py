"""Retraining in the background: ``POST /v1/train`` starts it, ``GET /v1/train`` reports on it.

One training at a time, in a daemon thread, the way ``graphrouter train`` does it (``cli_checkpoint.cmd_train``):
a snapshot of the store → ``build_world`` → ``ROUTERS[name](**params).fit`` on every query → ``save_checkpoint``
(written to a temp file and renamed, so a restart never reads half a checkpoint). The router and its constructor
arguments are ``GRAPHROUTER_TRAIN_ROUTER`` and ``GRAPHROUTER_TRAIN_PARAMS`` (JSON). Then, holding the registry lock
(no registration can slip in between), the new scorer is synced with the store — candidates registered or deleted
while it trained are added or dropped — and swapped in under the state's exclusive lock: a route answer comes
wholly from the old checkpoint or wholly from the new one.

Not starving routing on a small machine: torch's intra-op pool is process-wide, so it is set once when the
service starts (``GRAPHROUTER_TORCH_THREADS``, default 1), which leaves a core to request threads while training
runs on one, and BLAS is kept to the same number of threads. The training thread keeps the request threads' OS
priority: niced, it got almost no CPU while 8 clients routed on 2 cores, and did not finish until the load stopped
(issue 12); at equal priority it shares the cores and routing keeps its own share.
It embeds with its own embedder instance (same model, same cache file), because the
embedder holds a lock while it encodes: the request path must not wait behind thousands of training texts.
A failed training leaves the serving scorer and the checkpoint file as they were; ``GET /v1/train`` says why. A
service that stops while it trains abandons the training (:meth:`Trainer.shutdown`).
Publishing: the checkpoint path is shared by every replica; once the file is in place, a ``checkpoint`` change
record names its version, and each other replica loads and swaps it in (api/replication.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

import graphrouter.world
from api.registry import CandidateRegistry
from api.settings import Settings
from api.state import ServiceState
from api.training_lease import TrainingLease, TrainingRunningError
from graph_store.changes import CHECKPOINT
from graph_store.changes import now as utc_now
from graphrouter.embeddings import DEFAULT_MODEL
from graphrouter.errors import GraphRouterError
from graphrouter.loading import make_embedder
from graphrouter.paths import check_writable
from graphrouter.scorer import Scorer

if TYPE_CHECKING:
    from graphrouter.routers.base import Router

log = logging.getLogger("api")

IDLE, RUNNING, SUCCEEDED, FAILED = "idle", "running", "succeeded", "failed"
PUBLISH_WAIT_S = 60.0  # how long a shutdown waits for a fitted training to publish its checkpoint


class TrainConfigError(GraphRouterError):
    """GRAPHROUTER_TRAIN_ROUTER / GRAPHROUTER_TRAIN_PARAMS do not make a router, or GRAPHROUTER_CHECKPOINT cannot be
    written (a server misconfiguration)."""


def train_router_from(settings: Settings) -> Router:
    """The unfitted router ``POST /v1/train`` fits (GRAPHROUTER_TRAIN_ROUTER with GRAPHROUTER_TRAIN_PARAMS), or a
    TrainConfigError saying what is wrong; ``graphrouter serve`` asks it once at start-up, so a bad setting stops
    the service there instead of failing (or training nothing) at the first training."""
    from graphrouter.routers import build_router  # torch and PyG: loaded when a training is asked for

    try:
        return build_router(
            settings.train_router, settings.train_params, "GRAPHROUTER_TRAIN_ROUTER", "GRAPHROUTER_TRAIN_PARAMS"
        )
    except GraphRouterError as exc:
        raise TrainConfigError(str(exc)) from None


def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, GraphRouterError) else f"{type(exc).__name__}: {exc}"


def release_memory() -> None:
    """Give the memory a training freed back to the system: Python's garbage first, then glibc's free heap pages
    (``malloc_trim``; without it a long-running service keeps each training's peak as its resident size)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
            pass


@dataclass(frozen=True)
class TrainStatus:
    status: str = IDLE
    router: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    checkpoint: str | None = None  # version written by this run
    queries: int | None = None
    candidates: int | None = None
    error: str | None = None


class Trainer:
    """Owns the one background training of a service."""

    def __init__(self, state: ServiceState, registry: CandidateRegistry, lease: TrainingLease | None = None) -> None:
        self.state = state
        self.registry = registry
        self.lease = lease  # replicas train one at a time (None: this replica alone decides)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._claim: str | None = None  # the running training's claim on the lease, ended once (by it or shutdown)
        self._abandoned = False  # the service shut down while it ran: it publishes nothing
        self._publishing = False  # it has fitted and publishes: a shutdown waits for it
        settings = state.settings
        self._status = TrainStatus(router=settings.train_router, params=dict(settings.train_params))

    @property
    def status(self) -> TrainStatus:
        return self._status

    def make_router(self) -> Router:
        return train_router_from(self.state.settings)

    def start(self) -> TrainStatus:
        """Start a training; TrainingRunningError if one is running, StoreUnavailableError if the store is down."""
        with self._lock:
            if self._status.status == RUNNING:
                raise TrainingRunningError(
                    f"a training is already running (started {self._status.started_at}); GET /v1/train for its status"
                )
            router = self.make_router()
            try:  # where the checkpoint goes: not found out after the fitting
                check_writable(self.state.settings.checkpoint, "set GRAPHROUTER_CHECKPOINT to a writable path")
            except GraphRouterError as exc:
                raise TrainConfigError(str(exc)) from None
            self.state.get_store().ping()
            claim = self.lease.claim() if self.lease is not None else None  # 409 if another replica trains
            self._claim, self._abandoned, self._publishing = claim, False, False
            self._status = TrainStatus(
                status=RUNNING,
                router=router.name,
                params=dict(self.state.settings.train_params),
                started_at=utc_now(),
            )
            self._thread = threading.Thread(target=self._run, args=(router,), name="graphrouter-train", daemon=True)
            self._thread.start()
            return self._status

    def wait(self, timeout: float | None = None) -> TrainStatus:
        """Block until the running training (if any) ends (tests, shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._status

    def shutdown(self) -> None:
        """The service is stopping (its lifespan's end, before the store closes): a running training is abandoned
        (reported as failed; it publishes no checkpoint) and its claim ended now, so that other replicas do not take
        it as running for the whole lease. Its thread, a daemon, ends with the process. One that has fitted and is
        publishing (checkpoint file, change record, swap) is waited for instead, up to :data:`PUBLISH_WAIT_S`: else
        the file could be replaced with no change record, or after its claim ended."""
        with self._lock:
            if self._status.status != RUNNING:
                return
            publishing = self._publishing
            if not publishing:
                self._abandoned = True
                self._status = replace(
                    self._status, status=FAILED, finished_at=utc_now(), error="abandoned: the service shut down"
                )
        if publishing:  # fitted and being published: let it finish (file, change record, swap) while the store is open
            log.info("the service is shutting down: the training publishes its checkpoint first")
            self.wait(PUBLISH_WAIT_S)
            return
        log.warning("the service is shutting down: the running training is abandoned")
        self.state.metrics.training_runs.labels(result=FAILED).inc()
        self._release()

    def _release(self) -> None:
        """End the running training's claim, once (the training's end and a shutdown may both ask)."""
        with self._lock:
            claim, self._claim = self._claim, None
        if claim is not None and self.lease is not None:
            self.lease.release(claim)

    def _finish(self, **changes: Any) -> None:
        with self._lock:
            if not self._abandoned:  # else shutdown() reported it
                self._status = replace(self._status, finished_at=utc_now(), **changes)

    def _run(self, router: Router) -> None:
        try:
            self._run_training(router)
        finally:
            self._release()

    def _run_training(self, router: Router) -> None:
        t0 = time.perf_counter()
        try:
            version, n_queries, n_candidates = self._train(router)
        except Exception as exc:  # reported by GET /v1/train; the serving scorer is untouched
            release_memory()
            if self._abandoned:
                return
            log.exception("training failed")
            self.state.metrics.training_runs.labels(result=FAILED).inc()
            self._finish(status=FAILED, seconds=round(time.perf_counter() - t0, 3), error=_message(exc))
            return
        release_memory()
        self.state.metrics.training_runs.labels(result=SUCCEEDED).inc()
        self._finish(
            status=SUCCEEDED,
            seconds=round(time.perf_counter() - t0, 3),
            checkpoint=version,
            queries=n_queries,
            candidates=n_candidates,
        )

    def _train(self, router: Router) -> tuple[str, int, int]:
        from graphrouter.checkpoint import save_checkpoint  # torch: loaded when a training starts

        state, settings = self.state, self.state.settings
        store = state.get_store()
        with self.registry.lock:  # the outcomes learned online so far are exactly those in the snapshot
            mark, snap = self.registry.outcome_mark(), store.snapshot()
        router.check_enough(graphrouter.world.check_learnable(snap))
        embedder, own_embedder = self._embedder()
        try:
            world = graphrouter.world.build_world(snap, embedder)
            with threadpool_limits(limits=settings.torch_threads or None):
                router.fit(world, np.arange(world.data.n_queries))
            with self._lock:  # from here on a shutdown waits for the publishing instead of abandoning it
                if self._abandoned:  # the service shut down meanwhile: its store may be closed, nothing is published
                    raise GraphRouterError("abandoned: the service shut down")
                self._publishing = True
            ckpt = save_checkpoint(router, embedder.model_name, settings.checkpoint)
        finally:
            if own_embedder:
                embedder.close()
        # published: the file is whole (temp file + rename); other replicas load it when they read this change
        store.record_change(
            self.registry.change(CHECKPOINT, ckpt.version, {"path": str(settings.checkpoint), "router": router.name})
        )
        serving = self._serving_embedder(ckpt.embedding_model)
        scorer = Scorer(ckpt, serving, settings.max_query_chars)
        # registrations wait; routing goes on with the old scorer until the swap
        attached = self.registry.install(scorer, f"the new checkpoint {ckpt.version}", outcomes_since=mark)
        log.info(
            "retrained %s: checkpoint %s, %d queries, %d candidates",
            router.name,
            ckpt.version,
            world.data.n_queries,
            len(scorer.candidates),
        )
        return ckpt.version, world.data.n_queries, len(scorer.candidates) - len(attached.excluded)

    def _model_name(self) -> str:
        scorer = self.state.scorer
        if self.state.settings.embedding_model is not None:
            return self.state.settings.embedding_model
        return str(scorer.checkpoint.embedding_model) if scorer is not None else DEFAULT_MODEL

    def _embedder(self) -> tuple[Any, bool]:
        """The training's embedder and whether it is its own (to close): an injected one is shared (tests)."""
        if self.state.embedder is not None:
            return self.state.embedder, False
        return self._make_embedder(self._model_name()), True

    def _serving_embedder(self, model: str) -> Any:
        """The embedder the new scorer routes with: the injected one, else the serving scorer's if it is the same
        model (already loaded, cache warm), else a new one."""
        if self.state.embedder is not None:
            return self.state.embedder
        scorer = self.state.scorer
        if scorer is not None and scorer.checkpoint.embedding_model == model:
            return scorer.embedder
        return self._make_embedder(model)

    def _make_embedder(self, model: str) -> Any:
        settings = self.state.settings
        return make_embedder(model, settings.embedding_cache, settings.embedding_backend, settings.embedding_threads)
