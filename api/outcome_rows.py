"""The rows of ``POST /v1/outcomes`` checked against the store and turned into one batch (api/routes/outcomes.py
answers with it; :meth:`~api.registry_outcomes.RegistryOutcomes.post_outcomes` calls this under the registry lock,
so candidates, queries and tasks cannot vanish between the checks and the write).

A bad row is a 422 naming its index and field (``outcomes[3].candidate: …``), the same query and candidate twice is a
422, a ``query_id`` stored with another text or task is a 409. A row's ``query`` text (with its ``task``) adds a
query the store does not have yet, its id ``query_id`` if given, else the hash of the text.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import HTTPException, status

from api.models import ObservedOutcome
from graph_store import AGENT, LLM, QUERY, TASK, GraphBatch, GraphStore, InvalidInputError, Outcome, Query
from graph_store.changes import now as utc_now


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


class _Lookups:
    """Store lookups, read for all rows at once (one call per label, not a round trip per row)."""

    def __init__(self, store: GraphStore, rows: Sequence[ObservedOutcome]) -> None:
        names = {row.candidate for row in rows}
        llms, agents = store.get_nodes(LLM, names), store.get_nodes(AGENT, names)
        self.kinds = {n: LLM if n in llms else AGENT if n in agents else None for n in names}
        self.tasks = set(store.get_nodes(TASK, {row.task for row in rows if row.task is not None}))
        found = store.get_nodes(QUERY, filter(None, (_query_id(row) for row in rows)))
        self.queries = {qid: node for qid, node in found.items() if isinstance(node, Query)}

    def kind(self, name: str) -> str | None:
        return self.kinds.get(name)

    def query(self, query_id: str) -> Query | None:
        return self.queries.get(query_id)

    def task(self, name: str) -> bool:
        return name in self.tasks


def _query_id(row: ObservedOutcome) -> str | None:
    """The id a row's query has (its ``query_id``, else the hash of its text); None where it is not valid (the
    row's check says why)."""
    if row.query is None or row.task is None or row.query_id:
        return row.query_id
    try:
        return Query(row.query, row.task).id
    except InvalidInputError:
        return None


def outcome_batch(rows: Sequence[ObservedOutcome], store: GraphStore, max_query_chars: int) -> GraphBatch:
    """The new queries and the outcomes of ``rows``, each row checked (raises the 4xx saying what is wrong)."""
    now = utc_now()
    look = _Lookups(store, rows)
    new_queries: dict[str, Query] = {}
    first_row: dict[str, int] = {}  # the row that brought each new query
    outcomes: list[Outcome] = []
    seen: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        at = f"outcomes[{i}]"
        kind = look.kind(row.candidate)
        if kind is None:
            raise _unprocessable(f"{at}.candidate: no LLM or agent named {row.candidate!r}")
        if row.query is not None:
            assert row.task is not None  # the model requires it with query
            if len(row.query) > max_query_chars:
                raise _unprocessable(f"{at}.query: {len(row.query):,} characters; the limit is {max_query_chars:,}")
            if not look.task(row.task):
                raise _unprocessable(f"{at}.task: no task named {row.task!r}; register it first (POST /v1/tasks)")
            try:
                query = Query(row.query, row.task, id=row.query_id or "")
            except InvalidInputError as exc:
                raise _unprocessable(f"{at}.query: {exc}") from None
            earlier = new_queries.get(query.id)
            if earlier is not None and (earlier.text, earlier.task) != (query.text, query.task):
                raise _unprocessable(
                    f"{at}.query: the same query id as outcomes[{first_row[query.id]}] ({query.id!r}) with another "
                    "text or task; give one of them its own query_id"
                )
            stored = earlier or look.query(query.id)
            if stored is None:
                new_queries[query.id] = query
                first_row[query.id] = i
            elif (stored.text, stored.task) != (query.text, query.task):
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"{at}.query: query {query.id!r} is already stored with another text or task",
                )
            qid = query.id
        else:
            assert row.query_id is not None
            qid = row.query_id
            if qid not in new_queries and look.query(qid) is None:
                raise _unprocessable(
                    f"{at}.query_id: no stored query {qid!r}; send its text as query (with task) to add it"
                )
        pair = (qid, row.candidate)
        if pair in seen:
            raise _unprocessable(f"{at}: the same query and candidate as outcomes[{seen[pair]}]")
        seen[pair] = i
        try:
            outcome = Outcome(
                qid,
                row.candidate,
                row.effect,
                row.cost,
                kind=kind,
                source=row.source,
                observed_at=row.observed_at or now,
            )
        except InvalidInputError as exc:
            raise _unprocessable(f"{at}: {exc}") from None
        outcomes.append(outcome)
    return GraphBatch(queries=list(new_queries.values()), outcomes=outcomes)
