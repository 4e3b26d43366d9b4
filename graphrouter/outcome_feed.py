"""Stored or posted outcomes fed to a scorer, per routable candidate: the one path the service (every outcome it
takes, and a start's relearning) and the CLI (``graphrouter route`` relearns as a starting service does) share.

Each candidate's rows (query id → effect, → cost) go to :meth:`Scorer.add_outcomes` with the text and task of the
queries its router was not trained on (from the batch just written, else from the store), so it learns them at once.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from graph_store import (
    LLM,
    QUERY,
    GraphStore,
    GraphStoreError,
    LLMNode,
    Outcome,
    Query,
    StoreUnavailableError,
)
from graph_store.changes import UTC_SECOND, now
from graphrouter.errors import GraphRouterError
from graphrouter.loading import costs_billed_now, stored_outcome_counts
from graphrouter.online import REFIT_ROWS, in_snapshot
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


def give(scorer: Scorer, by_candidate: ByCandidate, queries: dict[str, tuple[str, str]], settle: bool = True) -> int:
    """Pass :func:`gather`'s outcomes to ``scorer`` (the caller holds the serving lock if it serves); how many
    effects it took. ``settle=False``: see :meth:`Scorer.add_outcomes` (the caller runs :meth:`Scorer.settle`)."""
    applied = 0
    for name, (effects, costs) in by_candidate.items():
        try:
            applied += scorer.add_outcomes(name, effects, costs, queries=queries, settle=settle)
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


def refitted(scorer: Scorer) -> dict[str, str]:
    """The candidates (name → kind) all of whose stored outcomes a freshly loaded ``scorer`` learns again
    (:func:`unlearned`): those registered since its training, or trained without a single outcome (the online
    learner refits both on what they are observed to do). None for a router that learns online itself (a bandit: it
    would count twice the outcomes the replicas' log replays after a start; what it learned online waits for the next
    training)."""
    router = scorer.router
    if router.learns_online:
        return {}
    trained, counts = router.trained_names(), router.trained_counts()
    return {
        name: kind
        for name, kind, n in zip(scorer.candidates, scorer.kinds, counts, strict=True)
        if name not in trained or n <= 0
    }


def corrected(scorer: Scorer) -> tuple[dict[str, str], str]:
    """The trained candidates (name → kind) whose stored outcomes observed since the router's training snapshot a
    freshly loaded ``scorer`` learns again (:func:`unlearned`: the corrections a running service made from them), and
    the snapshot's time (UTC, to the second; "" for a checkpoint from before it was kept: none then). None for a
    router that learns online itself (see :func:`refitted`)."""
    router = scorer.router
    since = router.world.data.snapshot_at
    if router.learns_online or not UTC_SECOND.fullmatch(since or ""):
        return {}, ""
    names = refitted(scorer)
    return {n: k for n, k in zip(scorer.candidates, scorer.kinds, strict=True) if n not in names}, since


def unlearned(scorer: Scorer, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Those of the stored ``outcomes`` a running service learned online and a freshly loaded ``scorer`` has not: the
    :func:`refitted` candidates' outcomes on queries its router was not trained on (their registration takes those
    on training queries), and the :func:`corrected` candidates' outcomes that are not in its training snapshot (on a
    query it was not trained on, one whose outcome of theirs it had not seen, or one posted again with another value
    since)."""
    router = scorer.router
    names, (trained, _) = refitted(scorer), corrected(scorer)
    mine = [o for o in outcomes if o.target in names]
    rows = router.query_rows()
    (training,) = router.training_rows({o.query_id: o.effect for o in mine}) if mine else ({},)
    theirs = [o for o in outcomes if o.target in trained]
    seen = in_snapshot(router, [(o.query_id, o.target) for o in theirs], [o.effect for o in theirs])
    return [o for o in mine if rows.get(o.query_id) not in training] + [
        o for o, old in zip(theirs, seen, strict=True) if not old
    ]


def before(at: str, seconds: float = SNAPSHOT_SLACK) -> str:
    """The UTC time (as ``Outcome.observed_at``) ``seconds`` before ``at``."""
    return now(calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ")) - seconds)


def _uncounted(scorer: Scorer, trained: dict[str, str], recent: list[Outcome], counts: dict[str, int]) -> list[str]:
    """Those of the ``trained`` candidates (name → kind) the store holds more outcomes of than their training
    snapshot and the ``recent`` ones (observed since it, not in it) account for: outcomes imported without an
    ``observed_at``, or dated well before the snapshot but written after it (a backfill), which the read by time
    cannot find. ``counts``: the store's outcomes per candidate (``loading.stored_outcome_counts``), so a start reads
    a candidate's outcomes whole only then."""
    data = scorer.router.world.data
    column = {name: j for j, name in enumerate(data.candidates)}
    in_world = data.observed_counts()
    seen = in_snapshot(scorer.router, [(o.query_id, o.target) for o in recent])
    new = Counter(o.target for o, old in zip(recent, seen, strict=True) if not old)
    return [n for n in trained if n in column and counts.get(n, 0) > in_world[column[n]] + new[n]]


def learn_stored(
    scorer: Scorer,
    store: GraphStore,
    only: set[str] | None = None,
    trained_only: bool = False,
    counts: dict[str, int] | None = None,
) -> int:
    """Give a freshly loaded scorer (not yet serving) what a running service had learned online, from the stored
    outcomes (:func:`unlearned`; the most recent :data:`RELEARN_ROWS` of each candidate, by ``observed_at``):
    of the candidates it refits (:func:`refitted`: registered since training, or trained without outcomes),
    all of theirs; of its trained candidates (:func:`corrected`), those observed since its training snapshot.
    A restart used to forget a new LLM's refit and its quiz's counts, and every trained LLM's corrections from live
    outcomes, until the next training. An unavailable store raises; other failures are logged, and 0 is returned.
    ``only``: these candidates only (others replaced while serving: the rest have learned theirs already);
    ``trained_only``: the trained candidates' only (a retrained scorer, which takes the others over); ``counts``: the
    store's outcomes per candidate, if read already (``Attached.outcome_counts``).

    The read starts :data:`SNAPSHOT_SLACK` seconds before the snapshot's time, for outcomes stamped just before it
    but written after it was read (by another replica, whose clock may also differ a little): those the snapshot
    holds are skipped (:func:`unlearned`). A trained candidate the store holds outcomes of that this read cannot find
    (imported without a time, or backfilled with an older one: :func:`_uncounted`) has its outcomes read whole."""
    names = {n: kind for n, kind in refitted(scorer).items() if not trained_only and (only is None or n in only)}
    trained, since = corrected(scorer)
    trained = {n: kind for n, kind in trained.items() if only is None or n in only}
    if not names and not trained:
        return 0
    try:
        stored = [o for name, kind in names.items() for o in store.outcomes(kind, target=name)]
        recent: list[Outcome] = []
        for kind in sorted(set(trained.values())):  # one read per kind, of what changed since the snapshot
            recent += [o for o in store.outcomes(kind, observed_since=before(since)) if o.target in trained]
        if counts is None and trained:
            counts = stored_outcome_counts(store)
        whole = _uncounted(scorer, trained, recent, counts or {})
        if whole:
            log.info("outcomes of %s read whole: the store holds more than their snapshot and recent ones", whole)
        stored += [o for o in recent if o.target not in whole]
        stored += [o for name in whole for o in store.outcomes(trained[name], target=name)]
        per: dict[str, list[Outcome]] = {}
        for o in sorted(unlearned(scorer, stored), key=lambda o: o.observed_at):
            per.setdefault(o.target, []).append(o)
        todo = [o for mine in per.values() for o in mine[-RELEARN_ROWS:]]  # its refit reads its most recent
        if not todo:
            return 0
        by_candidate, queries = gather(scorer, outcome_rows(todo), {}, store)
        # of the costs on queries outside the router's world (the cost model learns them as they come), those an
        # LLM was billed at the prices it has now, as a registration's; an agent's (its LLM may have changed) wait
        # for the next training
        llms = store.get_nodes(LLM, list(by_candidate))
        billed = {n: costs_billed_now(per[n], node) for n, node in llms.items() if isinstance(node, LLMNode)}
        by_candidate = {
            n: (e, {q: c for q, c in cost.items() if q not in queries or q in billed.get(n, {})})
            for n, (e, cost) in by_candidate.items()
        }
        applied = give(scorer, by_candidate, queries)
    except StoreUnavailableError:
        raise  # the load fails and is retried, as without outcomes to learn
    except (GraphStoreError, GraphRouterError) as exc:
        log.warning("stored outcomes not learned again at start: %s", exc)
        return 0
    log.info("learned %d stored outcome(s) again, of %d candidate(s)", applied, len(per))
    return applied
