"""Replicas train one at a time: claims in the store's change log, the earliest open claim winning.

A replica about to train writes a ``training.started`` change (its key: the training's id) and reads the log back
from the last version its follower applied through its own claim. Claims before that version it knows already: its
follower passed them here (:meth:`TrainingLease.seen`) with their ends. If any other replica's claim is open and
earlier than its own, it withdraws (writes ``training.ended``) and ``POST /v1/train`` answers 409 naming that
replica. Since the log orders every write, two replicas claiming at once both see both claims and agree on the
winner. A claim whose end never comes (its replica died while training) stops blocking after
``GRAPHROUTER_TRAINING_LEASE_SECONDS``, or at once on the host it was made on (each claim names its host and process).
A replica reads the open claims back from the log when it starts (:meth:`TrainingLease.prime`): one started while
another trains does not train beside it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from graph_store import ConflictError, GraphStore, GraphStoreError
from graph_store.changes import TRAINING_ENDED, TRAINING_STARTED, Change
from graphrouter.errors import GraphRouterError

if TYPE_CHECKING:
    from api.registry import CandidateRegistry

log = logging.getLogger("api")
HOST = socket.gethostname()  # with the process id, in each claim: a dead process's claim on this host does not block
PROCESS = uuid.uuid4().hex  # this process's incarnation (a restarted container's PID 1 is another one)
READ_LIMIT = 10_000  # changes read back at a claim: those since the follower's last poll, a few seconds' worth


class TrainingRunningError(ConflictError):
    """A training is already running, here or on another replica (answered with 409)."""


class TrainingLease:
    """Other replicas' open training claims (from the change log) and this replica's own claim."""

    def __init__(self, registry: CandidateRegistry) -> None:
        self.registry = registry
        self.state = registry.state
        self.follower: Any = None  # this replica's change-log follower (api/replication.py), set in the lifespan
        self._open: dict[str, tuple[float, Change]] = {}  # training id → (when seen, monotonic; the claim)
        self._unreleased: set[str] = set()  # this replica's claims whose end the store did not take: retried
        self._lock = threading.Lock()

    def seen(self, change: Change, age: float = 0.0) -> None:
        """Another replica's claim or its end (the follower passes every training change it applies); ``age``: how
        long ago the claim was made, for one read back from the log (:meth:`prime`)."""
        with self._lock:
            if change.kind == TRAINING_STARTED:
                self._open[change.key] = (time.monotonic() - age, change)
            elif change.kind == TRAINING_ENDED:
                self._open.pop(change.key, None)

    def prime(self, store: GraphStore, through: int) -> int:
        """Read back the claims other replicas made before this one started following the log (through version
        ``through``, its starting mark), so a replica started while another trains does not train beside it. The
        retained log is read from its start; claims older than the lease are left out. Returns the open claims."""
        ttl = self.state.settings.training_lease_seconds
        version = store.pruned_through()
        while version < through:
            changes = store.changes_since(version, limit=READ_LIMIT)
            if not changes:
                break
            for change in changes:
                if change.version > through:
                    break
                if change.kind in (TRAINING_STARTED, TRAINING_ENDED) and change.origin != self.state.replica_id:
                    age = max(time.time() - _epoch(change.at), 0.0)
                    if change.kind == TRAINING_ENDED or age < ttl:
                        self.seen(change, age)
            version = changes[-1].version
        with self._lock:
            return len(self._open)

    def claim(self) -> str:
        """Claim the training for this replica (its id), or raise ``TrainingRunningError`` naming the replica that
        holds it."""
        ttl = self.state.settings.training_lease_seconds
        with self._lock:
            live = [c for seen, c in self._open.values() if time.monotonic() - seen < ttl and _alive(c)]
        if live:
            first = min(live, key=lambda c: c.at)
            raise TrainingRunningError(_busy(first.origin, first.at))
        store = self.state.get_store()
        self.retry_releases()  # an earlier claim of this replica that an outage left open
        applied = self.follower.version if self.follower is not None else None  # the last version it applied
        since = applied if applied is not None else store.latest_version()
        tid = f"{self.state.replica_id}-{uuid.uuid4().hex[:8]}"
        me = {"host": HOST, "pid": os.getpid(), "process": PROCESS}
        store.record_change(self.registry.change(TRAINING_STARTED, tid, me))
        claims: dict[str, Change] = {}
        for change in store.changes_since(since, limit=READ_LIMIT):
            if change.kind == TRAINING_STARTED and (change.key == tid or _alive(change)):
                claims[change.key] = change
            elif change.kind == TRAINING_ENDED:
                claims.pop(change.key, None)
        first = min(claims.values(), key=lambda c: c.version, default=None)
        if first is not None and first.key != tid:
            self.release(tid)
            raise TrainingRunningError(_busy(first.origin, first.at))
        return tid

    def release(self, tid: str) -> None:
        """End this replica's claim (its training finished, failed, or withdrew); if the store cannot take it (an
        outage), it is logged and retried by :meth:`retry_releases` (else other replicas wait out the lease)."""
        try:
            self.state.get_store().record_change(self.registry.change(TRAINING_ENDED, tid))
        except (GraphStoreError, GraphRouterError) as exc:
            log.warning("training %s: its end not written (%s); retried while the store answers", tid, exc)
            with self._lock:
                self._unreleased.add(tid)

    def retry_releases(self) -> int:
        """Write the ends of this replica's claims that an outage kept out of the store (the follower's tick, and
        before a claim); how many were written. A store error propagates: the next tick tries again."""
        with self._lock:
            todo = sorted(self._unreleased)
        for tid in todo:
            self.state.get_store().record_change(self.registry.change(TRAINING_ENDED, tid))
            with self._lock:
                self._unreleased.discard(tid)
            log.info("training %s: its end written after the store came back", tid)
        return len(todo)


def _alive(claim: Change) -> bool:
    """Whether the process that made a training claim may still run: a claim made on this host by a process that
    is gone (its replica was killed or restarted: a new replica id each start), or by an earlier process with this
    one's id (PID 1 of a restarted container), does not block; another host's cannot be checked here and lapses
    after the lease."""
    host, pid = claim.payload.get("host"), claim.payload.get("pid")
    if host != HOST or not isinstance(pid, int) or isinstance(pid, bool):
        return True
    if pid == os.getpid():  # this process (another app in it, as in the tests), or an earlier one with its id
        return claim.payload.get("process") == PROCESS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, as another user's
        return True
    return True


def _epoch(at: str) -> float:
    """Seconds since the epoch of a change's ``at`` (``graph_store.changes.now``'s format); now if unreadable."""
    try:
        return datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return time.time()


def _busy(replica: str, at: str) -> str:
    return (
        f"replica {replica} is training (since {at}); one replica trains at a time, and the others load the "
        "checkpoint it publishes (GET /v1/train there for its status)"
    )
