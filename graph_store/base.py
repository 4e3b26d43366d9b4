"""The one interface every graph backend implements.

As in PyG's ``GraphStore``: public methods check their arguments and raise clear errors, then call small
abstract ``_methods`` that each backend implements. Backends may assume their inputs are valid records.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from graph_store.changes import MAX_CHANGES_PER_READ, UTC_SECOND, Change, check_change, now
from graph_store.errors import ChangeLogTruncatedError, ConflictError, InvalidInputError, NodeNotFoundError
from graph_store.schema import (
    AGENT,
    EDGE_TYPES,
    LLM,
    NODE_KEY,
    NODE_LABELS,
    OUTCOME_REL,
    GraphBatch,
    NodeRecord,
    Outcome,
    PendingOutcome,
    check_for_write,
    check_label,
    node_label,
    non_nfc_name,
)
from graph_store.snapshot import GraphSnapshot, build_snapshot

NodeRows = dict[str, list[dict[str, Any]]]
EdgeRows = dict[tuple[str, str, str], tuple[list[str], list[str], dict[str, list[float]]]]

# Listing bounds: ``offset`` and ``limit`` of :meth:`GraphStore.list_nodes` are integers in [0, MAX_PAGE_INDEX].
# Far above any real graph, far below what SQLite (signed 64-bit) and Cypher integers overflow on.
MAX_PAGE_INDEX = 1_000_000_000
GET_NODES_BATCH = 500  # keys per read of GraphStore.get_nodes (SQLite's bound variables: 999 in old builds)


def _outcome_kind(kind: object) -> None:
    if kind not in OUTCOME_REL:
        raise InvalidInputError(f"kind must be 'LLM' or 'Agent', got {kind!r}")


def _page_index(value: object, name: str, *, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PAGE_INDEX:
        also = " or None" if none_ok else ""
        raise InvalidInputError(f"{name} must be an integer from 0 to {MAX_PAGE_INDEX:,}{also}, got {value!r}")


def claimed_meanwhile(nodes: list[tuple[str, str]]) -> ConflictError:
    """The error of a write one of whose new ``nodes`` (label, key) another writer stored since it looked (see
    ``GraphStore.write``)."""
    named = ", ".join(f"{label} {key!r}" for label, key in nodes[:5]) + (" …" if len(nodes) > 5 else "")
    return ConflictError(
        f"{named if len(nodes) == 1 else 'one of ' + named} was registered by another writer while this one was "
        "checking it; nothing was written: try again (the same data then succeeds, other data is refused as for any "
        "stored name)"
    )


class GraphStore(ABC):
    """The graph of record: tasks, queries, LLMs, agents and the outcomes between them."""

    backend: str = "abstract"

    # ---- writes -------------------------------------------------------------------------------------------
    def write(self, batch: GraphBatch, change: Change | None = None, new: Iterable[NodeRecord] = ()) -> dict[str, int]:
        """Write a batch atomically: every node and edge in it lands, or (on any error) none does.

        ``new``: nodes of the batch its writer found absent (a registration that compared before it wrote): if one is
        stored when the transaction writes (another writer's, since), :class:`ConflictError` and nothing is written,
        so that of two writers registering one name with different data, one is told instead of both succeeding.

        With a ``change``, its record is appended to the change log in the same transaction (see
        :mod:`graph_store.changes`); an empty batch with a change writes the record alone.

        Nodes are upserted by key (properties replaced); outcome edges are unique per (query, target) and
        overwritten. Every referenced node (a query's task, an agent's LLM, an outcome's query and target)
        must be in the batch or already stored, else :class:`NodeNotFoundError` and nothing is written.
        Returns the number of records written per kind.
        """
        if not isinstance(batch, GraphBatch):
            raise InvalidInputError(f"write() takes a GraphBatch, got {type(batch).__name__}")
        for label in NODE_LABELS:
            for node in batch.nodes(label):
                if node_label(node) != label:
                    raise InvalidInputError(f"a {node_label(node)} node was put in the batch's {label} list")
                check_for_write(node)
                if (refusal := non_nfc_name(node)) and not self.has_node(label, node.key):
                    raise InvalidInputError(refusal)
        for o in batch.outcomes:
            if not isinstance(o, Outcome):
                raise InvalidInputError(f"outcomes must be Outcome records, got {type(o).__name__}")
            check_for_write(o)
        for p in batch.pending:
            if not isinstance(p, PendingOutcome):
                raise InvalidInputError(f"pending must be PendingOutcome records, got {type(p).__name__}")
            check_for_write(p)
        if change is not None:
            check_change(change)
        claimed = sorted({(node_label(n), n.key) for n in new})
        if claimed:
            written = {(label, n.key) for label in NODE_LABELS for n in batch.nodes(label)}
            if stray := [key for key in claimed if key not in written]:
                raise InvalidInputError(f"new names nodes the batch does not write: {stray[:5]}")
        if len(batch) or change is not None:
            self._write(batch, change, claimed)
        return {
            "tasks": len(batch.tasks),
            "queries": len(batch.queries),
            "llms": len(batch.llms),
            "agents": len(batch.agents),
            "outcomes": len(batch.outcomes),
        }

    def upsert(self, nodes: Iterable[NodeRecord]) -> int:
        """Insert or replace nodes of any types, atomically. Returns how many were written."""
        batch = GraphBatch()
        for node in nodes:
            try:
                batch.nodes(node_label(node)).append(node)
            except KeyError:
                raise InvalidInputError(f"not a node record: {node!r}") from None
        self.write(batch)
        return len(batch)

    def add_outcomes(self, outcomes: Iterable[Outcome]) -> int:
        """Add or update outcome edges in bulk, atomically. Returns how many were written."""
        batch = GraphBatch(outcomes=list(outcomes))
        self.write(batch)
        return len(batch.outcomes)

    def complete_pending(
        self,
        response_id: str,
        effect: float,
        observed_at: str | None = None,
        change: Callable[[Outcome], Change] | None = None,
    ) -> Outcome:
        """Turn the pending outcome of ``response_id`` into an outcome edge with ``effect`` (in [0, 1]), atomically:
        the edge is written and the pending record removed in one transaction, with the change record ``change``
        makes of the outcome, if given. Raises :class:`NodeNotFoundError` if there is no such pending outcome
        (unknown, already completed, or its query or candidate was deleted)."""
        pending = self.pending_outcome(response_id)
        outcome = pending.complete(effect, observed_at)  # validates the effect
        record = None if change is None else check_change(change(outcome))
        if not self._complete_pending(response_id, outcome, record):
            raise NodeNotFoundError(f"no pending outcome for response id {response_id!r} (it was completed meanwhile)")
        return outcome

    def delete_node(self, label: str, key: str, change: Change | None = None) -> int:
        """Delete a node and every edge touching it; returns how many outcome edges (ANSWERED_BY, HANDLED_BY) went
        with it, counted in the same transaction. Raises :class:`NodeNotFoundError` if absent.

        With a ``change``, its record is appended to the change log in the same transaction (not if absent)."""
        check_label(label)
        if change is not None:
            check_change(change)
        outcomes = self._delete_node(label, key, change)
        if outcomes is None:
            raise NodeNotFoundError(f"no {label} with {NODE_KEY[label]} {key!r}")
        return outcomes

    def clear(self) -> None:
        """Delete everything (used by re-imports with ``--replace`` and by tests), the change log included; the
        next change's version is still above every earlier one, and the log counts as pruned through the latest
        version (a follower behind it resyncs from the store)."""
        self._clear()

    # ---- the change log -----------------------------------------------------------------------------------
    def record_change(self, change: Change) -> None:
        """Append a change that comes with no graph write (e.g. a published checkpoint) to the change log."""
        self.write(GraphBatch(), change=change)

    def changes_since(self, version: int, limit: int = 1000) -> list[Change]:
        """Changes with a version above ``version``, oldest first, at most ``limit`` (1 to 10,000) of them.

        Raises :class:`ChangeLogTruncatedError` if ``version`` is below :meth:`pruned_through`: some changes after
        it were pruned, so the caller must resync from the store rather than read on."""
        _page_index(version, "version")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CHANGES_PER_READ:
            raise InvalidInputError(f"limit must be an integer from 1 to {MAX_CHANGES_PER_READ:,}, got {limit!r}")
        changes, pruned = self._changes_since(version, limit)
        if version < pruned:
            raise ChangeLogTruncatedError(version, pruned)
        return changes

    def latest_version(self) -> int:
        """The version of the newest change ever written (0 if none; a store from before the log says 0)."""
        return self._latest_version()

    def pruned_through(self) -> int:
        """The highest version dropped from the log by pruning or ``clear()`` (0 if none): every change above it
        that was written is still in the log."""
        return self._pruned_through()

    def prune_changes(self, keep_after_version: int, keep_since: str | None = None) -> int:
        """Drop the oldest changes: those with a version up to ``keep_after_version`` (capped at the latest
        version), but none written at or after ``keep_since`` (a time as in ``Change.at``, e.g. from
        :func:`graph_store.changes.now`) nor any after such a one, so what is dropped is always the log's old end.
        Returns how many change records were removed. Safe to run from several processes at once."""
        _page_index(keep_after_version, "keep_after_version")
        if keep_since is not None and not isinstance(keep_since, str):
            raise InvalidInputError(f"keep_since must be a time string or None, got {type(keep_since).__name__}")
        cut = min(keep_after_version, self._latest_version())
        if keep_since is not None:
            first_kept = self._first_version_since(keep_since)
            if first_kept is not None:
                cut = min(cut, first_kept - 1)
        return self._prune_changes(max(cut, 0))

    def prune_pending(self, observed_before: str) -> int:
        """Drop the pending outcomes (forwarded calls whose feedback never came) observed before
        ``observed_before``, a time as ``PendingOutcome.observed_at`` (e.g. from :func:`graph_store.changes.now`);
        one with no time is kept. Returns how many were removed. Safe to run from several processes at once."""
        if not isinstance(observed_before, str) or not UTC_SECOND.fullmatch(observed_before):
            raise InvalidInputError(
                f"observed_before must be a UTC time as YYYY-MM-DDTHH:MM:SSZ (graph_store.changes.now()), "
                f"got {observed_before!r}"
            )
        return self._prune_pending(observed_before)

    # ---- reads --------------------------------------------------------------------------------------------
    def get_node(self, label: str, key: str) -> NodeRecord:
        check_label(label)
        node = self._get_node(label, key)
        if node is None:
            raise NodeNotFoundError(f"no {label} with {NODE_KEY[label]} {key!r}")
        return node

    def has_node(self, label: str, key: str) -> bool:
        check_label(label)
        return self._get_node(label, key) is not None

    def get_nodes(self, label: str, keys: Iterable[str]) -> dict[str, NodeRecord]:
        """The nodes of one label with these keys, by key, in one read per :data:`GET_NODES_BATCH` keys (a key
        with no node is left out): what a loop of :meth:`get_node` calls would find, without a round trip each."""
        check_label(label)
        wanted = list(dict.fromkeys(keys))
        if not all(isinstance(k, str) for k in wanted):
            raise InvalidInputError(f"{label} keys must be strings")
        found: dict[str, NodeRecord] = {}
        for start in range(0, len(wanted), GET_NODES_BATCH):
            found.update(self._get_nodes(label, wanted[start : start + GET_NODES_BATCH]))
        return found

    def list_nodes(self, label: str, limit: int | None = None, offset: int = 0) -> list[NodeRecord]:
        """Nodes of one label ordered by key; ``limit=None`` means all.

        ``offset`` and ``limit`` are integers from 0 to ``MAX_PAGE_INDEX`` (10**9); others are an
        :class:`InvalidInputError`.
        """
        check_label(label)
        _page_index(limit, "limit", none_ok=True)
        _page_index(offset, "offset")
        return self._list_nodes(label, limit, offset)

    def pending_outcome(self, response_id: str) -> PendingOutcome:
        """The pending outcome of a forwarded call; :class:`NodeNotFoundError` if there is none."""
        if not isinstance(response_id, str):
            raise InvalidInputError(f"response_id must be a string, got {type(response_id).__name__}")
        found = self._get_pending(response_id)
        if found is None:
            raise NodeNotFoundError(f"no pending outcome for response id {response_id!r}")
        return found

    def outcomes(
        self,
        kind: str = LLM,
        target: str | None = None,
        query_id: str | None = None,
        observed_since: str | None = None,
    ) -> list[Outcome]:
        """Outcome edges to LLMs (``kind='LLM'``) or agents (``kind='Agent'``), optionally filtered: to one target,
        one query, or those observed at or after ``observed_since`` (a UTC time as ``Outcome.observed_at``; outcomes
        without a time are left out then)."""
        _outcome_kind(kind)
        timed = isinstance(observed_since, str) and UTC_SECOND.fullmatch(observed_since)
        if observed_since is not None and not timed:
            raise InvalidInputError(f"observed_since must be a UTC time as YYYY-MM-DDTHH:MM:SSZ: {observed_since!r}")
        return self._outcomes(kind, target, query_id, observed_since)

    def answered(self, kind: str, target: str) -> list[str]:
        """The ids of the queries ``target`` (an LLM or agent, as ``kind`` says) has an outcome on, sorted: the
        query ids of :meth:`outcomes` with that target, without reading (and building) the rows."""
        _outcome_kind(kind)
        if not isinstance(target, str):
            raise InvalidInputError(f"target must be a string, got {type(target).__name__}")
        return [str(q) for q in self._answered(kind, target)]

    def outcome_counts(self, kind: str = LLM, target: str | None = None) -> dict[str, int]:
        """How many outcome edges each LLM (``kind='LLM'``) or agent (``kind='Agent'``) has, by name (those with none
        are left out), or only ``target``'s: one aggregate read, not the rows."""
        _outcome_kind(kind)
        if target is not None and not isinstance(target, str):
            raise InvalidInputError(f"target must be a string or None, got {type(target).__name__}")
        return {str(t): int(n) for t, n in self._outcome_counts(kind, target).items() if n}

    def queries_in_task(self, task: str) -> int:
        """How many stored queries belong to ``task`` (0 if it has none or is not stored): one aggregate read over its
        ``OF_TASK`` edges, not the queries."""
        if not isinstance(task, str):
            raise InvalidInputError(f"task must be a string, got {type(task).__name__}")
        return int(self._queries_in_task(task))

    def count_nodes(self, label: str) -> int:
        """How many nodes of one label are stored: one count, not :meth:`counts`' every label and edge type."""
        check_label(label)
        return int(self._count_nodes(label))

    def counts(self) -> dict[str, int]:
        """Node counts by label and edge counts by relationship type (every type present, zeros included)."""
        got = self._counts()
        return {name: int(got.get(name, 0)) for name in (*NODE_LABELS, *(r for _, r, _ in EDGE_TYPES))}

    def snapshot(self) -> GraphSnapshot:
        """The whole graph as arrays: node keys and features per label, edge indices and attributes per type, and
        ``taken_at``, the time it began to be read (what is observed later is not in it)."""
        taken_at = now()
        node_rows, edge_rows = self._snapshot_rows()
        snap = build_snapshot(node_rows, edge_rows)
        snap.taken_at = taken_at
        return snap

    def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` if the store cannot be reached."""
        self._ping()

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; backends that hold none need not override it."""

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- what a backend implements ------------------------------------------------------------------------
    @abstractmethod
    def _write(self, batch: GraphBatch, change: Change | None, new: list[tuple[str, str]]) -> None:
        """Write the batch, and the change record if any, in one transaction; raise NodeNotFoundError (and roll
        back) on a dangling reference, ConflictError (and roll back) if a node of ``new`` (label, key) is stored
        when the transaction writes it (checked under the transaction's write lock, so race-free)."""

    @abstractmethod
    def _get_node(self, label: str, key: str) -> NodeRecord | None: ...

    @abstractmethod
    def _get_nodes(self, label: str, keys: list[str]) -> dict[str, NodeRecord]:
        """The nodes among ``keys`` (distinct, at most :data:`GET_NODES_BATCH`) that exist, by key."""

    @abstractmethod
    def _list_nodes(self, label: str, limit: int | None, offset: int) -> list[NodeRecord]: ...

    @abstractmethod
    def _delete_node(self, label: str, key: str, change: Change | None) -> int | None:
        """Delete the node and its edges, and write the change record if any, in one transaction; return how many
        outcome edges it had, or None (writing nothing) if it did not exist."""

    @abstractmethod
    def _outcomes(
        self, kind: str, target: str | None, query_id: str | None, observed_since: str | None = None
    ) -> list[Outcome]: ...

    @abstractmethod
    def _answered(self, kind: str, target: str) -> list[str]: ...

    @abstractmethod
    def _outcome_counts(self, kind: str, target: str | None) -> dict[str, int]: ...

    @abstractmethod
    def _queries_in_task(self, task: str) -> int: ...

    @abstractmethod
    def _count_nodes(self, label: str) -> int: ...

    @abstractmethod
    def _counts(self) -> dict[str, int]: ...

    @abstractmethod
    def _snapshot_rows(self) -> tuple[NodeRows, EdgeRows]:
        """Node property dicts per label (each with a ``key`` entry) and edges as (src keys, dst keys, attrs).

        Outcome edge types carry ``effect`` and ``cost`` attrs; OF_TASK and BACKED_BY carry none.
        """

    @abstractmethod
    def _get_pending(self, response_id: str) -> PendingOutcome | None: ...

    @abstractmethod
    def _complete_pending(self, response_id: str, outcome: Outcome, change: Change | None) -> bool:
        """In one transaction: write ``outcome`` and delete the pending record; False (nothing written) if the
        pending record is gone."""

    @abstractmethod
    def _prune_pending(self, before: str) -> int:
        """Delete the pending records whose ``observed_at`` is set and sorts before ``before``; return how many."""

    @abstractmethod
    def _clear(self) -> None: ...

    @abstractmethod
    def _ping(self) -> None: ...

    @abstractmethod
    def _changes_since(self, version: int, limit: int) -> tuple[list[Change], int]:
        """The changes above ``version`` (at most ``limit``), then ``pruned_through`` read *after* them (so a
        prune that removed some of them before they were read is seen)."""

    @abstractmethod
    def _latest_version(self) -> int: ...

    @abstractmethod
    def _pruned_through(self) -> int: ...

    @abstractmethod
    def _first_version_since(self, at: str) -> int | None:
        """The lowest version of a change written at or after ``at``; None if there is none."""

    @abstractmethod
    def _prune_changes(self, through: int) -> int:
        """Raise ``pruned_through`` to ``through`` if it is below (first, or in one transaction with the deletion),
        then delete every change record at or below ``pruned_through``; return how many were deleted."""


__all__ = ["GraphStore", "AGENT", "LLM", "MAX_PAGE_INDEX", "Change"]
