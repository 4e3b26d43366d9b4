"""Replicas stay in step through the store: a follower thread applies the changes other replicas made.

Every change that affects routing (a candidate or task registered or deleted, outcomes, a published checkpoint) is
recorded in the graph of record with a monotonic version, in the transaction of the change (graph_store.changes).
Each replica — a worker process, or a process on another host — runs one :class:`Follower`: every
``GRAPHROUTER_SYNC_INTERVAL`` seconds (1 s by default; 0 turns it off) it reads the changes after the last version
it has seen and hands each one to :meth:`CandidateRegistry.apply`, which changes the serving scorer through the same
methods a local request uses. Changes this replica wrote itself (their ``origin`` is its ``replica_id``) were applied
when they were made and are skipped. Replicas never talk to each other: the store is the only channel.

The starting point is the store's latest version read *before* the scorer is loaded: loading syncs the scorer with
the store, and the changes after that point are applied again, which is harmless (applying is idempotent).
"""

from __future__ import annotations

import logging
import threading
import time

from api.registry import CandidateRegistry
from api.state import ServiceState
from graph_store import GraphStoreError, StoreUnavailableError
from graphrouter.errors import GraphRouterError

log = logging.getLogger("api")

BATCH = 500  # changes read per store call


class Follower:
    """Polls the store's change log and applies other replicas' changes to this replica."""

    def __init__(self, state: ServiceState, registry: CandidateRegistry, interval: float) -> None:
        self.state = state
        self.registry = registry
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
                            self.registry.apply(change)
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
