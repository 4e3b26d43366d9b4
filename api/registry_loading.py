"""Loading and installing the serving scorer: a mixin of :class:`~api.registry.CandidateRegistry`, whose lock keeps
every registration out from between reading the store and swapping a scorer in.

At the service's start the checkpoint's scorer is loaded (in a background thread with ``background``, so the port
opens at once and ``/ready`` reports progress); a request that needs it while none is loaded retries the load at most
every ``retry_interval`` s. A loaded, retrained or published scorer is attached to the store (the candidates
registered since its training added, those deleted dropped) and swapped in by :meth:`RegistryLoading.install`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from graph_store import GraphStoreError, StoreUnavailableError
from graphrouter.errors import GraphRouterError, ScorerUnavailableError
from graphrouter.loading import Attached, attach_scorer, load_scorer
from graphrouter.outcome_feed import learn_stored, refitted
from graphrouter.scorer import Scorer

if TYPE_CHECKING:
    from api.state import ServiceState

log = logging.getLogger("api")


class RegistryLoading:
    """The scorer-loading methods of :class:`~api.registry.CandidateRegistry`."""

    if TYPE_CHECKING:  # provided by CandidateRegistry
        state: ServiceState
        lock: threading.Lock

    def _init_loading(self) -> None:
        self._load_lock = threading.Lock()
        self._last_load = float("-inf")
        self._loading: str | None = None  # what the background load is doing, while it runs
        self._loader: threading.Thread | None = None

    @property
    def loading(self) -> str | None:
        """While the scorer loads in the background: what it is doing (e.g. "loading: 300 of 1,000 candidates
        registered"); None otherwise."""
        return self._loading

    def start(self, background: bool = False) -> None:
        """Load the checkpoint's scorer (or attach the injected one) at the service's start; with ``background``,
        in a thread, so the port opens at once: meanwhile ``/ready`` reports progress and the routes that need the
        scorer answer 503 with Retry-After."""
        state = self.state
        if state.scorer is None and background:
            self._loading = "loading: the checkpoint"
            self._loader = threading.Thread(target=self._load_in_background, name="scorer-load", daemon=True)
            self._loader.start()
        elif state.scorer is None:
            self.try_load(force=True)
        elif state.injected_scorer and state.store is not None:
            try:
                self.install(state.scorer, "the given scorer")
            except (GraphStoreError, GraphRouterError) as exc:  # served as given; /ready and the routes still work
                log.warning("the given scorer could not be synced with the store: %s", exc)

    def _load_in_background(self) -> None:
        try:
            self.try_load(force=True)
        except Exception:  # reported by /ready; a request retries the load later
            log.exception("loading the scorer failed")
        finally:
            self._loading = None

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until a background load ended (True), or ``timeout`` s passed (tests, benchmarks)."""
        loader = self._loader
        if loader is not None:
            loader.join(timeout)
        return self._loading is None

    def _progress(self, done: int, total: int) -> None:
        self._loading = f"loading: {done:,} of {total:,} candidates registered"

    def get_scorer(self) -> Scorer:
        """The serving scorer, loading it if it is not (at most every ``retry_interval`` s); 503 if it cannot be.
        Never waits for a background load: while it runs, a 503 saying how far it got."""
        loading = self._loading
        if self.state.scorer is None and loading is not None:
            raise ScorerUnavailableError(f"the scorer is {loading}; retry shortly")
        if self.state.scorer is None:
            self.try_load()
        return self.state.require_scorer()

    def load_configured(self, embedder: Any = None) -> Scorer:
        """The checkpoint's scorer as the settings configure it (``embedder``: an already loaded one to reuse)."""
        settings = self.state.settings
        return load_scorer(
            settings.checkpoint,
            settings.embedding_model,
            embedder,
            cache_path=settings.embedding_cache,
            backend=settings.embedding_backend,
            threads=settings.embedding_threads,
            max_query_chars=settings.max_query_chars,
        )

    def try_load(self, force: bool = False) -> None:
        state = self.state
        with self._load_lock:
            if state.scorer is not None or not state.due(self._last_load, force):
                return
            self._last_load = time.monotonic()
            try:
                state.get_store()
            except StoreUnavailableError as exc:
                state.scorer_error = f"the graph store is unavailable ({exc})"
                return
            settings = state.settings
            try:
                scorer = self.load_configured(state.embedder)
                self._loading = self._loading and "loading: registering the store's candidates"
                self.install(scorer, str(settings.checkpoint), progress=self._progress if self._loading else None)
            except GraphRouterError as exc:  # CheckpointError, a bad embedding model
                state.scorer_error = str(exc)
                log.warning("scorer not loaded: %s", exc)
                return
            except StoreUnavailableError as exc:
                state.scorer_error = f"the graph store is unavailable ({exc})"
                log.warning("scorer not loaded: %s", exc)
                return
            log.info(
                "scorer loaded: checkpoint %s (%s router), %d candidates",
                scorer.checkpoint.version,
                scorer.router.name,
                len(scorer.routable_candidates),
            )

    def install(
        self,
        scorer: Scorer,
        source: str,
        progress: Callable[[int, int], None] | None = None,
        outcomes_since: int | None = None,
        relearn: bool = False,
    ) -> Attached:
        """Attach a loaded or retrained scorer to the store and swap it in (no registration in between). It takes
        over the service's exploration budget and what the serving scorer learned online from outcomes after mark
        ``outcomes_since`` (:meth:`outcome_mark`, taken with a retraining's snapshot: the older ones are in it), and
        learns again its trained candidates' stored outcomes observed since its snapshot (``outcome_feed.learn_stored``:
        what the GNN's graph took during the training, which is not carried over). With no serving scorer (the
        service's start), or ``relearn`` (a resync, which may have missed some), it also learns again the stored
        outcomes of the candidates it refits, in place of those carried over (the store has what they learned, and
        only the current incarnation of a name's)."""
        store = self.state.get_store()
        with self.lock:
            previous = self.state.scorer
            # the serving scorer synced in place (an injected one, or a resync that could not reload the checkpoint)
            # changes under routing's feet: requests wait for it, as for a registration, and never see it half-synced
            with self.state.lock.write() if previous is scorer else nullcontext():
                attached = attach_scorer(scorer, store, source, progress)
                if previous is not None and previous is not scorer:
                    scorer.carry_over(previous, outcomes_since)
                if previous is None or (relearn and previous is not scorer):  # what was learned online is stored
                    if previous is not None:  # the store's rows, not those carried over: a candidate deleted and
                        for name in refitted(scorer):  # registered again meanwhile is another model of the same name
                            scorer.online.forget(name)
                    learn_stored(scorer, store, counts=attached.outcome_counts)
                elif previous is not scorer:  # a retrained or published checkpoint
                    learn_stored(scorer, store, trained_only=True, counts=attached.outcome_counts)
                scorer.explorer = self.state.explorer
                self.state.install(scorer, attached.deleted_tasks, attached.redescribed_tasks)
        return attached
