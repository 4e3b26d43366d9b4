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
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from api.registry import WHAT, CandidateRegistry, same_registration
from api.state import ServiceState
from graph_store import AGENT, LLM, Agent, GraphStore, GraphStoreError, LLMNode, StoreUnavailableError
from graph_store.changes import (
    AGENT_DELETED,
    AGENT_REGISTERED,
    CHECKPOINT,
    LLM_DELETED,
    LLM_REGISTERED,
    OUTCOMES,
    TASK_DELETED,
    TASK_REGISTERED,
    Change,
)
from graphrouter.errors import GraphRouterError

log = logging.getLogger("api")

BATCH = 500  # changes read per store call


class Follower:
    """Polls the store's change log and applies other replicas' changes to this replica."""

    def __init__(self, state: ServiceState, registry: CandidateRegistry, interval: float) -> None:
        self.state = state
        self.registry = registry
        self._apply = ChangeApplier(registry)
        self.interval = interval
        self.version: int | None = None  # the last version seen (None: not read yet, the store was down)
        self.applied = 0
        self.last_poll: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()

    def mark(self) -> None:
        """Remember where the log is now (called before the scorer is loaded); quietly later if the store is down."""
        try:
            self.version = self.state.get_store().latest_version()
        except GraphStoreError as exc:
            log.warning("change log not read yet (%s); following it once the store answers", exc)

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="graphrouter-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except StoreUnavailableError as exc:  # an outage: /ready says so; try again at the next tick
                log.debug("change log not read: %s", exc)
            except Exception:  # never let the thread die: log and try again at the next tick
                log.exception("following the change log failed")

    def poll(self) -> int:
        """Apply every change not seen yet; returns how many were applied (others' changes)."""
        with self._poll_lock:
            store = self.state.get_store()
            if self.version is None:
                self.version = store.latest_version()
                return 0
            applied = 0
            while True:
                changes = store.changes_since(self.version, limit=BATCH)
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

    def __init__(self, registry: CandidateRegistry) -> None:
        self.registry = registry
        self.state = registry.state

    def __call__(self, change: Change) -> None:
        """Apply a change another replica made (already in the store) to this replica's scorer, through the same
        methods as a local change. Idempotent: applying a change twice, or one already reflected (a scorer loaded
        after it), changes nothing."""
        if change.kind == CHECKPOINT:
            self._checkpoint(change)
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
            else:
                log.warning("change %d: unknown kind %r, skipped", change.version, change.kind)

    def _registration(self, store: GraphStore, kind: str, name: str) -> None:
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
            scorer, store, kind, node, backing, store.outcomes(kind, target=name), undo=False
        )  # type: ignore[arg-type]
        if note:
            log.info("%s %r from another replica: %s", WHAT[kind], name, note)

    def _checkpoint(self, change: Change) -> None:
        """Load the published checkpoint from this replica's checkpoint path (shared by every replica) and swap
        it in; the file is written atomically (temp file + rename), so it is whole."""
        state, settings = self.state, self.state.settings
        current = state.scorer
        if current is None:
            self.registry.try_load(force=True)
            return
        if current.checkpoint.version == change.key:
            return
        same_model = settings.embedding_model in (None, current.checkpoint.embedding_model)
        scorer = self.registry.load_configured(state.embedder or (current.embedder if same_model else None))
        if scorer.checkpoint.embedding_model != current.checkpoint.embedding_model and state.embedder is None:
            scorer = self.registry.load_configured()
        if scorer.checkpoint.version == current.checkpoint.version:
            return
        self.registry.install(scorer, f"the published checkpoint {scorer.checkpoint.version}")
        log.info("installed checkpoint %s published by replica %s", scorer.checkpoint.version, change.origin)
