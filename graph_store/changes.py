"""The change log: one record per change that affects routing, with a monotonic version.

Service replicas share one graph of record and each keeps its own serving caches; they stay in step by following
this log (``GraphStore.changes_since``) and applying what they have not seen. A change is written by the same
transaction as the change itself (``GraphStore.write(batch, change=…)``, ``GraphStore.delete_node(…, change=…)``),
so the log never names a change that did not land, and no change that landed is missing from it.

Versions are positive integers, strictly increasing in commit order, never reused (also not after ``clear()``).
A change carries who wrote it (``origin``: a replica's id), so a replica can skip its own changes.

Retention: the log is pruned from its old end (``GraphStore.prune_changes``; the service's follower applies the
retention settings, api/replication.py). The store remembers the highest version it dropped (``pruned_through``;
``clear()`` drops the whole log and sets it to the latest version), and ``changes_since`` raises
:class:`~graph_store.errors.ChangeLogTruncatedError` for a version below it, so a follower that fell behind the
retained log notices the gap and resyncs from the store instead of silently missing changes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graph_store.errors import InvalidInputError
from graph_store.schema import GraphBatch

# What changed. Registrations and deletions name the node (``key``); ``outcomes`` carries its rows in the payload;
# ``checkpoint`` names the published checkpoint's version (``key``) and where it is (``payload["path"]``).
LLM_REGISTERED, LLM_DELETED = "llm.registered", "llm.deleted"
AGENT_REGISTERED, AGENT_DELETED = "agent.registered", "agent.deleted"
TASK_REGISTERED, TASK_DELETED = "task.registered", "task.deleted"
OUTCOMES = "outcomes"
CHECKPOINT = "checkpoint"
# A bulk import (``graphrouter import …``, ``register-llm``): one change per imported batch, its payload naming the
# ``llms``, ``agents`` and ``tasks`` written, those of them whose stored registration data it ``updated``, the number
# of ``outcomes``, and their ``rows`` [query_id, target, effect, cost] unless there are more than
# MAX_LOGGED_IMPORT_ROWS of them or they take more than MAX_LOGGED_IMPORT_BYTES as JSON (long query ids): then they
# are only stored, for the next training.
IMPORTED = "import"
MAX_LOGGED_IMPORT_ROWS = 10_000
MAX_LOGGED_IMPORT_BYTES = 4 * 1024 * 1024
# A replica's training: claimed when it starts, released when it ends (``key``: the training's id); replicas train
# one at a time, the earliest open claim winning (api/training_lease.py).
TRAINING_STARTED, TRAINING_ENDED = "training.started", "training.ended"
CHANGE_KINDS = (
    LLM_REGISTERED,
    LLM_DELETED,
    AGENT_REGISTERED,
    AGENT_DELETED,
    TASK_REGISTERED,
    TASK_DELETED,
    OUTCOMES,
    CHECKPOINT,
    IMPORTED,
    TRAINING_STARTED,
    TRAINING_ENDED,
)
MAX_CHANGE_KEY_CHARS = 1000
# A change's payload as UTF-8 JSON: half of the largest Bolt message ArcadeDB accepts (16 MiB), which it refuses by
# never answering.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
MAX_CHANGES_PER_READ = 10_000


@dataclass(frozen=True)
class Change:
    """One change. ``version`` and ``at`` are set by the store when it is written (0 and "" before)."""

    kind: str
    key: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
    version: int = 0
    at: str = ""

    def payload_json(self) -> str:
        """The payload as stored: UTF-8 JSON, or escaped to ASCII where a text cannot be UTF-8 (a file path of
        undecodable bytes holds lone surrogates)."""
        text = json.dumps(self.payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        try:
            text.encode()
        except UnicodeEncodeError:
            return json.dumps(self.payload, separators=(",", ":"), sort_keys=True)
        return text


def check_change(change: object) -> Change:
    """The change, if it is one a store can write; else :class:`InvalidInputError`."""
    if not isinstance(change, Change):
        raise InvalidInputError(f"change must be a Change, got {type(change).__name__}")
    if change.kind not in CHANGE_KINDS:
        raise InvalidInputError(f"change kind must be one of {', '.join(CHANGE_KINDS)}, got {change.kind!r}")
    for name in ("key", "origin"):
        value = getattr(change, name)
        if not isinstance(value, str) or len(value) > MAX_CHANGE_KEY_CHARS:
            raise InvalidInputError(f"change {name} must be a string of at most {MAX_CHANGE_KEY_CHARS} characters")
    if not isinstance(change.payload, dict):
        raise InvalidInputError("change payload must be a dict")
    try:
        size = len(change.payload_json().encode())
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"change payload must be JSON: {exc}") from None
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInputError(
            f"change payload is {size:,} bytes; the limit is {MAX_PAYLOAD_BYTES:,}: split what it records (the rows "
            "of a request or an import) into smaller batches"
        )
    return change


def import_change(batch: GraphBatch, origin: str = "graphrouter-import", updated: Sequence[str] = ()) -> Change:
    """The one change record of an imported batch (kind ``import``; see :data:`IMPORTED` for its payload);
    ``updated``: the stored LLMs and agents whose registration data it changes."""
    payload: dict[str, Any] = {
        "llms": sorted({n.key for n in batch.llms}),
        "agents": sorted({n.key for n in batch.agents}),
        "tasks": sorted({n.key for n in batch.tasks}),
        "outcomes": len(batch.outcomes),
        "updated": sorted(set(updated)),
    }
    if len(batch.outcomes) <= MAX_LOGGED_IMPORT_ROWS:
        rows = [[o.query_id, o.target, o.effect, o.cost] for o in batch.outcomes]
        if len(json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()) <= MAX_LOGGED_IMPORT_BYTES:
            payload["rows"] = rows
    return Change(IMPORTED, payload=payload, origin=origin)


UTC_SECOND = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")  # what now() writes: sortable as text


def now(at: float | None = None) -> str:
    """A change's ``at``: the time (``at``, seconds since the epoch; default now) in UTC, to the second, sortable."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


FUTURE_SLACK_S = 86_400.0  # how far ahead of this clock an observed_at may be (other clocks' skew)


def utc_second(value: object) -> str:
    """An outcome's ``observed_at`` as it is stored: an ISO-8601 time (text, or a ``datetime``; one without a zone is
    taken as UTC) in UTC to the second, ``YYYY-MM-DDTHH:MM:SSZ`` like :func:`now`, so that ordering the texts orders
    the times (a start relearns a new LLM's most recent outcomes by it). More than a day ahead of now is refused."""
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(str(value).strip().upper())  # RFC 3339 allows "t" and "z"
        except ValueError:
            raise InvalidInputError(
                f"observed_at must be an ISO-8601 time such as 2026-11-30T12:00:00Z, got {value!r}"
            ) from None
    try:
        at = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:  # a zone offset that moves it out of years 1–9999
        raise InvalidInputError(f"observed_at is out of range in UTC: {value!r}") from None
    if at.timestamp() > time.time() + FUTURE_SLACK_S:  # it would sort as the newest outcome for ever
        raise InvalidInputError(f"observed_at is in the future: {value!r} (now is {now()})")
    return f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}Z"


def from_row(version: int, kind: str, key: str, payload: str, origin: str, at: str) -> Change:
    return Change(kind=kind, key=key, payload=json.loads(payload), origin=origin, version=int(version), at=at)
