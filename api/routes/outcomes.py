"""Observed outcomes: ``POST /v1/outcomes`` records how an LLM or agent did on a query. Writes need the API key.

Each row names a ``candidate`` (a registered LLM or agent) and a query: ``query_id`` of a stored query, or the
query's ``query`` text with its ``task`` (a registered task) to add a query the store does not have yet (its id is
``query_id`` if given, else the hash of the text, as in every import). Rows are checked in full first — a bad row is
a 422 naming its index and field (``outcomes[3].candidate: …``), the same query and candidate twice is a 422, a
``query_id`` stored with another text or task is a 409 — and then written in one atomic store write: all rows land
or none does. Writing an outcome for a (query, candidate) pair again updates it.

Then the serving scorer learns every effect of the candidates it routes to at once, without retraining
(:meth:`graphrouter.scorer.Scorer.add_outcomes`): on a stored query it was trained on the GNN also updates its graph,
and on any query — stored or new — the outcome corrects that candidate's predictions and the query becomes a
neighbour for later requests (:mod:`graphrouter.online`); the observed costs of candidates registered since training
set their cost multiplier. The answer says how many were applied now (``applied_to_scorer``) and how many wait for
the next training (``pending_retrain``: outcomes on candidates the scorer does not route to). Every written outcome
is in the store, so the next training uses all of them, and the retrained scorer keeps only the corrections of
outcomes posted after its snapshot.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, HTTPException, status

from api.deps import RegistryDep, SettingsDep, StoreDep, WriteAuth
from api.models import OutcomesIn, OutcomesWritten
from graph_store import AGENT, LLM, QUERY, TASK, GraphBatch, GraphStore, InvalidInputError, Outcome, Query

log = logging.getLogger("api")
router = APIRouter(prefix="/v1/outcomes", tags=["outcomes"])


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


class _Lookups:
    """Store lookups, each asked once per request."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store
        self.kinds: dict[str, str | None] = {}
        self.queries: dict[str, Query | None] = {}
        self.tasks: dict[str, bool] = {}

    def kind(self, name: str) -> str | None:
        if name not in self.kinds:
            found = LLM if self.store.has_node(LLM, name) else AGENT if self.store.has_node(AGENT, name) else None
            self.kinds[name] = found
        return self.kinds[name]

    def query(self, query_id: str) -> Query | None:
        if query_id not in self.queries:
            node = self.store.get_node(QUERY, query_id) if self.store.has_node(QUERY, query_id) else None
            self.queries[query_id] = node if isinstance(node, Query) else None
        return self.queries[query_id]

    def task(self, name: str) -> bool:
        if name not in self.tasks:
            self.tasks[name] = self.store.has_node(TASK, name)
        return self.tasks[name]


@router.post(
    "",
    response_model=OutcomesWritten,
    summary="record observed outcomes (all or nothing); the scorer uses those it can at once",
    responses={
        401: {"description": "missing or wrong API key, or no key configured"},
        409: {"description": "a row's query_id is stored with another text or task"},
        422: {"description": "a bad row: the message names its index and field"},
    },
)
def post_outcomes(
    body: OutcomesIn, registry: RegistryDep, settings: SettingsDep, store: StoreDep, _auth: WriteAuth
) -> OutcomesWritten:
    rows = body.outcomes
    if len(rows) > settings.max_outcomes:
        raise _unprocessable(
            f"outcomes: {len(rows):,} rows; the limit is {settings.max_outcomes:,} (GRAPHROUTER_MAX_OUTCOMES)"
        )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with registry.lock:  # candidates, queries and tasks cannot vanish between the checks and the write
        look = _Lookups(store)
        new_queries: dict[str, Query] = {}
        outcomes: list[Outcome] = []
        seen: dict[tuple[str, str], int] = {}
        for i, row in enumerate(rows):
            at = f"outcomes[{i}]"
            kind = look.kind(row.candidate)
            if kind is None:
                raise _unprocessable(f"{at}.candidate: no LLM or agent named {row.candidate!r}")
            if row.query is not None:
                assert row.task is not None  # the model requires it with query
                if len(row.query) > settings.max_query_chars:
                    raise _unprocessable(
                        f"{at}.query: {len(row.query):,} characters; the limit is {settings.max_query_chars:,}"
                    )
                if not look.task(row.task):
                    raise _unprocessable(f"{at}.task: no task named {row.task!r}; register it first (POST /v1/tasks)")
                try:
                    query = Query(row.query, row.task, id=row.query_id or "")
                except InvalidInputError as exc:
                    raise _unprocessable(f"{at}.query: {exc}") from None
                stored = new_queries.get(query.id) or look.query(query.id)
                if stored is None:
                    new_queries[query.id] = query
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
        applied = registry.record_outcomes(store, GraphBatch(queries=list(new_queries.values()), outcomes=outcomes))
    return OutcomesWritten(
        written=len(outcomes),
        queries_added=len(new_queries),
        applied_to_scorer=applied,
        pending_retrain=len(outcomes) - applied,
    )
