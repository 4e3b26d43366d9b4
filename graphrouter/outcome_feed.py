"""Stored or posted outcomes fed to a scorer, per routable candidate: the one path the service (every outcome it
takes, and a start's relearning) and the CLI (``graphrouter route`` relearns as a starting service does) share.

Each candidate's rows (query id → effect, → cost) go to :meth:`Scorer.add_outcomes` with the text and task of the
queries its router was not trained on (from the batch just written, else from the store), so it learns them at once.
"""

from __future__ import annotations

import calendar
import logging
import time
from typing import Any

from graph_store import QUERY, GraphStore, GraphStoreError, Outcome, Query, StoreUnavailableError
from graph_store.changes import now
from graphrouter.errors import GraphRouterError
from graphrouter.online import REFIT_ROWS
from graphrouter.scorer import Scorer

log = logging.getLogger(__name__)

RELEARN_ROWS = REFIT_ROWS  # per candidate, the most recent stored outcomes a start learns again
SNAPSHOT_SLACK = 300  # seconds before a training snapshot's time from which a start reads trained candidates' outcomes

ByCandidate = dict[str, tuple[dict[str, float], dict[str, float]]]


def outcome_rows(outcomes: list[Outcome]) -> list[list[Any]]:
    """Outcomes as a change's payload rows: [query_id, target, effect, cost]."""
    return [[o.query_id, o.target, o.effect, o.cost] for o in outcomes]


def gather(
    scorer: Scorer, rows: list[list[Any]], new_queries: dict[str, tuple[str, str]], store: GraphStore
) -> tuple[ByCandidate, dict[str, tuple[str, str]]]:
    """Outcome rows per routable candidate of ``scorer`` (query id → effect, → cost), and the (text, task) of
    their queries its router was not trained on (from ``new_queries``, else ``store``)."""
    by_candidate: ByCandidate = {}
    for query, target, effect, cost in rows:
        if scorer.routable(target):
            effects, costs = by_candidate.setdefault(target, ({}, {}))
            effects[query], costs[query] = effect, cost
    ids = list(dict.fromkeys(q for effects, _ in by_candidate.values() for q in effects))
    return by_candidate, query_texts(store, scorer, new_queries, ids)


def give(scorer: Scorer, by_candidate: ByCandidate, queries: dict[str, tuple[str, str]]) -> int:
    """Pass :func:`gather`'s outcomes to ``scorer`` (the caller holds the serving lock if it serves); how many
    effects it took."""
    applied = 0
    for name, (effects, costs) in by_candidate.items():
        try:
            applied += scorer.add_outcomes(name, effects, costs, queries=queries)
        except NotImplementedError:  # this router learns outcomes only by retraining
            return 0
        except GraphRouterError as exc:  # stored all the same; the next training uses them
            log.warning("outcomes of %s not passed to the scorer: %s", name, exc)
    return applied


def query_texts(
    store: GraphStore, scorer: Scorer, new: dict[str, tuple[str, str]], ids: list[str]
) -> dict[str, tuple[str, str]]:
    """(text, task) of those queries ``ids`` that the scorer's router was not trained on: from ``new`` (the batch
    just written), else from the store (a query added by an earlier post or by another replica)."""
    unknown = scorer.unknown_queries(ids)
    stored = store.get_nodes(QUERY, [qid for qid in unknown if qid not in new])  # one read, not one per query
    out = {qid: new[qid] for qid in unknown if qid in new}
    out.update({qid: (node.text, node.task) for qid, node in stored.items() if isinstance(node, Query)})
    return out


def before(at: str, seconds: float = SNAPSHOT_SLACK) -> str:
    """The UTC time (as ``Outcome.observed_at``) ``seconds`` before ``at``."""
    return now(calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ")) - seconds)


def learn_stored(scorer: Scorer, store: GraphStore, only: set[str] | None = None, refitted: bool = True) -> int:
    """Give a freshly loaded scorer (not yet serving) what a running service had learned online, from the stored
    outcomes (:meth:`Scorer.unlearned`; the most recent :data:`RELEARN_ROWS` of each candidate, by ``observed_at``):
    of the candidates it refits (:meth:`Scorer.relearned`: registered since training, or trained without outcomes),
    all of theirs; of its trained candidates (:meth:`Scorer.corrected`), those observed since its training snapshot.
    A restart used to forget a new LLM's refit and its quiz's counts, and every trained LLM's corrections from live
    outcomes, until the next training. An unavailable store raises; other failures are logged, and 0 is returned.
    ``only``: these candidates only (others replaced while serving: the rest have learned theirs already);
    ``refitted``: False for the trained candidates' only (a retrained scorer, which takes the others over).

    The read starts :data:`SNAPSHOT_SLACK` seconds before the snapshot's time, for outcomes stamped just before it
    but written after it was read (by another replica, whose clock may also differ a little): those the snapshot
    holds are skipped (:meth:`Scorer.unlearned`)."""
    names = {n: kind for n, kind in scorer.relearned().items() if refitted and (only is None or n in only)}
    trained, since = scorer.corrected()
    trained = {n: kind for n, kind in trained.items() if only is None or n in only}
    if not names and not trained:
        return 0
    try:
        stored = [o for name, kind in names.items() for o in store.outcomes(kind, target=name)]
        for kind in sorted(set(trained.values())):  # one read per kind, of what changed since the snapshot
            stored += [o for o in store.outcomes(kind, observed_since=before(since)) if o.target in trained]
        per: dict[str, list[Outcome]] = {}
        for o in sorted(scorer.unlearned(stored), key=lambda o: o.observed_at):
            per.setdefault(o.target, []).append(o)
        todo = [o for mine in per.values() for o in mine[-RELEARN_ROWS:]]  # its refit reads its most recent
        if not todo:
            return 0
        applied = give(scorer, *gather(scorer, outcome_rows(todo), {}, store))
    except StoreUnavailableError:
        raise  # the load fails and is retried, as without outcomes to learn
    except (GraphStoreError, GraphRouterError) as exc:
        log.warning("stored outcomes not learned again at start: %s", exc)
        return 0
    log.info("learned %d stored outcome(s) again, of %d candidate(s)", applied, len(per))
    return applied
