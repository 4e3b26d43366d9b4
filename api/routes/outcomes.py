"""Observed outcomes: ``POST /v1/outcomes`` records how an LLM or agent did on a query. Writes need the API key.

Each row names a ``candidate`` (a registered LLM or agent) and a query: ``query_id`` of a stored query, or the
query's ``query`` text with its ``task`` (a registered task) to add a query the store does not have yet (its id is
``query_id`` if given, else the hash of the text, as in every import). Rows are checked in full first
(api/outcome_rows.py: a bad row is a 422 naming its index and field, ``outcomes[3].candidate: …``; a ``query_id``
stored with another text or task is a 409) and then written in one atomic store write: all rows land or none does.
Writing an outcome for a (query, candidate) pair again updates it.

Then the serving scorer learns every effect of the candidates it routes to at once, without retraining
(:meth:`graphrouter.scorer.Scorer.add_outcomes`): on a stored query it was trained on, the GNN updates its graph and
refits that candidate's offsets (graphrouter/routers/gnn/fit.py); on any other query — stored or new — the outcome
corrects that candidate's predictions and the query becomes a neighbour for later requests
(:mod:`graphrouter.online`); the observed costs of candidates registered since training
set their cost factors (one multiplier, or one for the prompt and one for the answer). The answer says how many were
applied now (``applied_to_scorer``) and how many wait for the next training (``pending_retrain``: outcomes on
candidates the scorer does not route to). Every written outcome is in the store, so the next training uses all of
them, and the retrained scorer keeps only the corrections of outcomes posted after its snapshot.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.deps import RegistryDep, SettingsDep, WriteAuth
from api.models import OutcomesIn, OutcomesWritten

router = APIRouter(prefix="/v1/outcomes", tags=["outcomes"])


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
def post_outcomes(body: OutcomesIn, registry: RegistryDep, settings: SettingsDep, _auth: WriteAuth) -> OutcomesWritten:
    rows = body.outcomes
    if len(rows) > settings.max_outcomes:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"outcomes: {len(rows):,} rows; the limit is {settings.max_outcomes:,} (GRAPHROUTER_MAX_OUTCOMES)",
        )
    batch, applied = registry.post_outcomes(rows, settings.max_query_chars)
    return OutcomesWritten(
        written=len(batch.outcomes),
        queries_added=len(batch.queries),
        applied_to_scorer=applied,
        pending_retrain=len(batch.outcomes) - applied,
    )
