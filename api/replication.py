"""Replicas stay in step through the store: a follower thread applies the changes other replicas made.

Every change that affects routing (a candidate or task registered or deleted, outcomes, a published checkpoint) is
recorded in the graph of record with a monotonic version, in the transaction of the change (graph_store.changes).
Each replica — a worker process, or a process on another host — runs one :class:`Follower`: every
``GRAPHROUTER_SYNC_INTERVAL`` seconds (1 s by default; 0 turns it off) it reads the changes after the last version
it has seen and hands each one to :class:`ChangeApplier`, which changes the serving scorer through the same
methods a local request uses. Changes this replica wrote itself (their ``origin`` is its ``replica_id``) were applied
when they were made and are skipped. Replicas never talk to each other: the store is the only channel.

The starting point is the store's latest version read *before* the scorer is loaded: loading syncs the scorer with
the store, and the changes after that point are applied again, which is harmless (applying is idempotent).

Retention: each replica's follower also prunes the log every ``GRAPHROUTER_CHANGELOG_PRUNE_INTERVAL`` seconds
(:meth:`Follower.prune`), keeping the newest ``GRAPHROUTER_CHANGELOG_KEEP`` changes and every change younger than
``GRAPHROUTER_CHANGELOG_KEEP_SECONDS`` (and never what it has not applied itself). Pruning from several replicas at
once is harmless. A replica that fell behind the pruned log (stalled, or cut off from the store longer than that) is
told so by ``changes_since`` (:class:`ChangeLogTruncatedError`) and resyncs: it reloads the checkpoint and attaches it
to the store, exactly as at start-up (:meth:`ChangeApplier.resync`), then follows the log from the version it read
before reloading.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from api.registry import WHAT, CandidateRegistry, same_registration
from api.state import ServiceState
from api.training_lease import TrainingLease
from graph_store import (
    AGENT,
    LLM,
    Agent,
    ChangeLogTruncatedError,
    GraphStore,
    GraphStoreError,
    LLMNode,
    StoreUnavailableError,
)
from graph_store.changes import (
    AGENT_DELETED,
    AGENT_REGISTERED,
    CHECKPOINT,
    IMPORTED,
    LLM_DELETED,
    LLM_REGISTERED,
    OUTCOMES,
    TASK_DELETED,
    TASK_REGISTERED,
    TRAINING_ENDED,
    TRAINING_STARTED,
    Change,
    now,
)
from graphrouter.errors import GraphRouterError
from graphrouter.loading import can_replace, with_riders
from graphrouter.outcome_feed import learn_stored
from graphrouter.scorer import Scorer

log = logging.getLogger("api")

BATCH = 500  # changes read per store call


class Follower:
    """Polls the store's change log and applies other replicas' changes to this replica."""

    def __init__(
        self, state: ServiceState, registry: CandidateRegistry, interval: float, lease: TrainingLease | None = None
    ) -> None:
        self.state = state
        self.registry = registry
        self._apply = ChangeApplier(registry, lease)
        self.interval = interval
        self.version: int | None = None  # the last version seen (None: not read yet, the store was down)
        self.applied = 0
        self.resyncs = 0  # full resyncs from the store (the log was pruned past this replica's version)
        self.pruned = 0  # change records this replica pruned
        self.expired = 0  # pending outcomes this replica dropped (their feedback never came)
        self.last_poll: float | None = None
        self._last_prune = time.monotonic()  # the first pruning one interval after the start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()

    def mark(self) -> None:
        """Remember where the log is now (called before the scorer is loaded); quietly later if the store is down."""
        try:
            self._start_at(self.state.get_store())
        except GraphStoreError as exc:
            log.warning("change log not read yet (%s); following it once the store answers", exc)

    def _start_at(self, store: GraphStore) -> None:
        """Follow the log from its latest version, knowing the training claims made before it (the lease's)."""
        version = store.latest_version()
        lease = self._apply.lease
        if lease is not None and (open_claims := lease.prime(store, version)):
            log.info("%d training claim(s) of other replicas are open", open_claims)
        self.version = version

    @property
    def prune_interval(self) -> float:
        return self.state.settings.changelog_prune_interval

    def start(self) -> None:
        if self.prune_interval <= 0 and self.state.settings.pending_ttl_seconds > 0:
            log.warning(
                "GRAPHROUTER_CHANGELOG_PRUNE_INTERVAL is 0: this replica never expires pending outcomes "
                "(GRAPHROUTER_PENDING_TTL_SECONDS); another replica with an interval must"
            )
        if (self.interval <= 0 and self.prune_interval <= 0) or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="graphrouter-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        tick = min(i for i in (self.interval, self.prune_interval) if i > 0)
        while not self._stop.wait(tick):
            steps = [self.poll] if self.interval > 0 else []
            if self._apply.lease is not None:
                steps.append(self._apply.lease.retry_releases)  # a claim an outage left open (usually none)
            if self.prune_interval > 0 and time.monotonic() - self._last_prune >= self.prune_interval:
                self._last_prune = time.monotonic()
                steps += [self.prune, self.expire_pending]
            for step in steps:  # each its own try: one failing does not skip the others
                try:
                    step()
                except StoreUnavailableError as exc:  # an outage: /ready says so; try again at the next tick
                    log.debug("%s: store unavailable: %s", step.__name__, exc)
                except Exception:  # never let the thread die: log and try again at the next tick
                    log.exception("the follower's %s failed", step.__name__)

    def prune(self) -> int:
        """Apply the retention settings to the store's change log once; returns how many records were removed.
        Keeps the newest ``changelog_keep`` changes, those younger than ``changelog_keep_seconds``, and (when this
        replica follows the log) those it has not applied yet."""
        settings = self.state.settings
        store = self.state.get_store()
        keep_after = store.latest_version() - settings.changelog_keep
        if self.interval > 0 and self.version is not None:  # following: keep what it has not applied yet
            keep_after = min(keep_after, self.version)
        if keep_after <= 0:
            return 0
        since = now(time.time() - settings.changelog_keep_seconds) if settings.changelog_keep_seconds > 0 else None
        removed = store.prune_changes(keep_after, keep_since=since)
        if removed:
            self.pruned += removed
            log.info("change log pruned: %d record(s), through version %d", removed, store.pruned_through())
        return removed

    def expire_pending(self) -> int:
        """Drop the proxied calls' pending outcomes older than ``pending_ttl_seconds`` (0: none) once; returns how
        many. Their feedback (``POST /v1/feedback``) is a 404 afterwards."""
        ttl = self.state.settings.pending_ttl_seconds
        if ttl <= 0:
            return 0
        removed = self.state.get_store().prune_pending(now(time.time() - ttl))
        if removed:
            self.expired += removed
            log.info("pending outcomes expired: %d older than %.0f s", removed, ttl)
        return removed

    def resync(self) -> None:
        """Rebuild this replica's scorer from the store, as at start-up, and follow the log from the version read
        before (so nothing written meanwhile is missed; what is applied again is harmless)."""
        store = self.state.get_store()
        version = store.latest_version()
        self._apply.resync()
        if self._apply.lease is not None:  # the training claims among the changes it missed
            self._apply.lease.prime(store, version)
        self.version = version
        self.resyncs += 1

    def poll(self) -> int:
        """Apply every change not seen yet; returns how many were applied (others' changes). If the log was pruned
        past this replica's version, resync from the store first (:meth:`resync`)."""
        with self._poll_lock:
            store = self.state.get_store()
            if self.version is None:
                self._start_at(store)
                return 0
            applied = 0
            resynced = False
            while True:
                try:
                    changes = store.changes_since(self.version, limit=BATCH)
                except ChangeLogTruncatedError as exc:
                    if resynced:  # pruned past it again at once (a retention of ~0): the next tick tries again
                        raise
                    log.warning("replica %s fell behind the change log (%s): resyncing", self.state.replica_id, exc)
                    self.resync()
                    resynced = True
                    continue
                for change in changes:
                    if change.origin != self.state.replica_id:
                        try:
                            self._apply(change)
                        except StoreUnavailableError:
                            raise  # the store went away: this change is tried again at the next tick
                        except (GraphRouterError, GraphStoreError) as exc:  # this change cannot be applied: next
                            log.warning("change %d (%s) not applied: %s", change.version, change.kind, exc)
                        applied += 1
                    self.version = change.version
                if len(changes) < BATCH:
                    break
            self.applied += applied
            self.last_poll = time.time()
            return applied


_RECORD: dict[str, Any] = {LLM: LLMNode, AGENT: Agent}


class ChangeApplier:
    """Applies a change another replica made (already in the store) to this replica's scorer, through the
    registry's methods for local changes."""

    def __init__(self, registry: CandidateRegistry, lease: TrainingLease | None = None) -> None:
        self.registry = registry
        self.state = registry.state
        self.lease = lease

    def __call__(self, change: Change) -> None:
        """Apply a change another replica made (already in the store) to this replica's scorer, through the same
        methods as a local change. Idempotent: applying a change twice, or one already reflected (a scorer loaded
        after it), changes nothing."""
        if change.kind == CHECKPOINT:
            self._checkpoint(change)
            return
        if change.kind in (TRAINING_STARTED, TRAINING_ENDED):
            if self.lease is not None:
                self.lease.seen(change)
            return
        store = self.state.get_store()
        with self.registry.lock:
            if change.kind in (LLM_REGISTERED, AGENT_REGISTERED):
                self._registration(store, LLM if change.kind == LLM_REGISTERED else AGENT, change.key)
            elif change.kind in (LLM_DELETED, AGENT_DELETED):
                data = change.payload.get("node")
                kind = LLM if change.kind == LLM_DELETED else AGENT
                self.registry.exclude_candidate(change.key, _RECORD[kind](**data) if isinstance(data, dict) else None)
            elif change.kind == OUTCOMES:
                self.registry.pass_outcomes(change.payload.get("rows", []))
            elif change.kind == TASK_REGISTERED:
                self.registry.task_registered(change.key)
            elif change.kind == TASK_DELETED:
                self.registry.task_deleted(change.key)
            elif change.kind == IMPORTED:
                self._import(store, change)
            else:
                log.warning("change %d: unknown kind %r, skipped", change.version, change.kind)

    def _registration(self, store: GraphStore, kind: str, name: str, undated: bool = False) -> None:
        scorer = self.state.scorer
        if scorer is None or scorer.routable(name):
            return  # a scorer loaded later syncs with the store; a routable one has it already
        node = store.get_node(kind, name) if store.has_node(kind, name) else None
        if node is None:
            return  # deleted since: that deletion is a later change
        if name in scorer.candidates and not same_registration(scorer.excluded.get(name), node):  # type: ignore[arg-type]
            log.warning("%s %r re-registered with other data; routable here after a retrain", WHAT[kind], name)
            return
        backing = None
        if isinstance(node, Agent):
            if not store.has_node(LLM, node.llm):
                return
            backing = store.get_node(LLM, node.llm)
            assert isinstance(backing, LLMNode)
        note = self.registry.add_to_scorer(
            scorer, store, kind, node, backing, store.outcomes(kind, target=name), undo=False, undated=undated
        )  # type: ignore[arg-type]
        if note:
            log.info("%s %r from another replica: %s", WHAT[kind], name, note)

    def _import(self, store: GraphStore, change: Change) -> None:
        """A bulk import (``graphrouter import``): its new LLMs and agents registered as another replica's would be
        (with their stored outcomes), its tasks usable, its outcome rows passed to the scorer (when the change
        carries them; a larger import's are stored for the next training)."""
        payload = change.payload
        registered: set[str] = set()
        scorer = self.state.scorer
        updated = [n for n in payload.get("updated", []) if scorer is not None and n in scorer.candidates]
        if scorer is not None and updated and can_replace(scorer):  # --update gave them other data: the store's
            replaced = with_riders(scorer, store, updated)
            kinds = dict(zip(scorer.candidates, scorer.kinds, strict=True))
            with self.state.lock.write():  # one step for routing: no request finds them gone in between
                for name in reversed(replaced):  # agents first: an LLM backing one cannot be dropped
                    self.registry.exclude_candidate(name, None)
                # as at a start, costs billed before its (LLM's) prices changed set no multiplier, and none of an
                # agent the import changed do (it may have moved to another LLM; its costs do not say)
                for name in replaced:
                    self._registration(store, kinds[name], name, undated=name in updated and kinds[name] == AGENT)
                learn_stored(scorer, store, only=set(replaced))  # what they had learned online, from the store
            registered.update(replaced)
        elif updated:
            log.warning("import %d changed %s; routed with the old data here until a retrain", change.version, updated)
        for kind, names in ((LLM, payload.get("llms", [])), (AGENT, payload.get("agents", []))):
            for name in names:
                if self.state.scorer is not None and not self.state.scorer.routable(name):
                    self._registration(store, kind, name)
                    registered.add(name)
        for name in payload.get("tasks", []):
            self.registry.task_registered(name)
        rows = [row for row in payload.get("rows", []) if row[1] not in registered]  # those read their outcomes
        if rows:
            self.registry.pass_outcomes(rows)
        elif "rows" not in payload and payload.get("outcomes"):
            log.info("import %d: %d outcome(s) stored for the next training", change.version, payload["outcomes"])

    def _checkpoint(self, change: Change) -> None:
        """Load the published checkpoint from this replica's checkpoint path (shared by every replica) and swap
        it in; the file is written atomically (temp file + rename), so it is whole."""
        current = self.state.scorer
        if current is None:
            self.registry.try_load(force=True)
            return
        if current.checkpoint.version == change.key:
            return
        scorer = self._reload()
        if scorer.checkpoint.version == current.checkpoint.version:
            log.warning(
                "replica %s published checkpoint %s, but %s still holds %s, which this replica keeps serving: do "
                "the replicas share one checkpoint path (GRAPHROUTER_CHECKPOINT)?",
                change.origin,
                change.key,
                self.state.settings.checkpoint,
                current.checkpoint.version,
            )
            return
        if scorer.checkpoint.version != change.key:  # a later one was published meanwhile: it is the file's now
            log.info("checkpoint %s was replaced by %s before it was loaded", change.key, scorer.checkpoint.version)
        self.registry.install(scorer, f"the published checkpoint {scorer.checkpoint.version}")
        log.info("installed checkpoint %s published by replica %s", scorer.checkpoint.version, change.origin)

    def resync(self) -> None:
        """Rebuild the scorer from the store, as at start-up: the configured checkpoint loaded again and attached to the
        store (its candidates registered or dropped, deleted tasks refused), taking over what the current one learned
        online and learning the stored outcomes again (``outcome_feed.learn_stored``: those it missed included). For a
        replica that missed changes (the log was pruned past them)."""
        current = self.state.scorer
        if current is None:
            self.registry.try_load(force=True)
            return
        try:
            scorer = self._reload()
        except GraphRouterError as exc:  # no checkpoint to reload (e.g. an injected scorer): sync the current one
            log.warning("resync: the checkpoint was not reloaded (%s); syncing the serving scorer's candidates", exc)
            scorer = current
        self.registry.install(scorer, f"checkpoint {scorer.checkpoint.version} (a resync with the store)", relearn=True)
        log.info(
            "resynced with the store: checkpoint %s, %d candidates", scorer.checkpoint.version, len(scorer.candidates)
        )

    def _reload(self) -> Scorer:
        """The configured checkpoint's scorer, loaded again (reusing the current embedder when the model agrees)."""
        state, settings = self.state, self.state.settings
        current = state.scorer
        assert current is not None
        same_model = settings.embedding_model in (None, current.checkpoint.embedding_model)
        scorer = self.registry.load_configured(state.embedder or (current.embedder if same_model else None))
        if scorer.checkpoint.embedding_model != current.checkpoint.embedding_model and state.embedder is None:
            scorer = self.registry.load_configured()
        return scorer
