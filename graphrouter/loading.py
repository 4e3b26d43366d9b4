"""Loading a scorer to serve: the embedder, the checkpoint, and attaching it to the store (syncing its candidates).
One module used by the CLI (``graphrouter route``) and by the service (its start, and every retrain).

:func:`attach_scorer` makes a freshly loaded (or retrained) scorer agree with the store: its candidates that the
store no longer has are dropped (or excluded from routing, when the router cannot drop them), and the store's LLMs
and agents it does not know are registered without retraining where the router can do that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graph_store import AGENT, LLM, QUERY, TASK, Agent, GraphStore, LLMNode, Outcome, Task, billed_since
from graphrouter.embeddings import DEFAULT_CACHE, DEFAULT_THREADS, Embedder
from graphrouter.errors import CheckpointError, GraphRouterError
from graphrouter.paths import DEFAULT_CHECKPOINT
from graphrouter.route_request import MAX_QUERY_CHARS
from graphrouter.routing_data import RoutingData
from graphrouter.scorer import Scorer

log = logging.getLogger(__name__)

SYNC_CHUNK = 100  # candidates registered per change when syncing with the store
SHORTFALL_BATCH = 500  # query nodes read per batch to tell a candidate short of outcomes on stored queries
PER_TARGET_READS = 50  # new candidates whose outcomes a sync reads one by one; more: one read of every outcome


def make_embedder(
    model: str,
    cache_path: str | Path | None = DEFAULT_CACHE,
    backend: str = "onnx",
    threads: int = DEFAULT_THREADS,
) -> Embedder:
    """An embedder for ``model`` (offline; texts seen before come from the cache)."""
    return Embedder(model, cache_path=cache_path, backend=backend, threads=threads)


def load_scorer(
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    embedding_model: str | None = None,
    embedder: Any = None,
    *,
    strict_store: GraphStore | None = None,
    cache_path: str | Path | None = DEFAULT_CACHE,
    backend: str = "onnx",
    threads: int = DEFAULT_THREADS,
    max_query_chars: int = MAX_QUERY_CHARS,
) -> Scorer:
    """The scorer of a checkpoint, with its embedding model loaded now (not on the first request).

    ``strict_store`` (the CLI's choice) refuses a checkpoint whose tasks are partly gone from that store (the CLI
    has no service state to refuse requests for them); a deleted candidate is left out by :func:`attach_scorer`, as
    the service does (which passes none and also keeps serving a deleted task's other tasks).
    """
    from graphrouter.checkpoint import load_checkpoint

    tasks = None if strict_store is None else [t.key for t in strict_store.list_nodes(TASK)]
    ckpt = load_checkpoint(checkpoint, embedding_model, tasks)
    if embedder is None:
        embedder = make_embedder(ckpt.embedding_model, cache_path, backend, threads)
        embedder.dim  # noqa: B018 - load the model now, not on the first request
    return Scorer(ckpt, embedder, max_query_chars)


@dataclass
class Attached:
    """What :func:`attach_scorer` did: candidates excluded from routing (gone from the store, or changed there, but
    their router cannot drop them), trained candidates whose stored data changed since training, store candidates
    this router cannot add without retraining, and trained tasks no longer in the store as trained (deleted, or
    deleted and registered again with another description)."""

    excluded: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deleted_tasks: set[str] = field(default_factory=set)
    redescribed_tasks: set[str] = field(default_factory=set)  # of those, stored again with another description
    outcome_counts: dict[str, int] = field(default_factory=dict)  # the store's, per candidate (both kinds)


def attach_scorer(
    scorer: Scorer, store: GraphStore, source: str, progress: Callable[[int, int], None] | None = None
) -> Attached:
    """Make ``scorer`` agree with ``store`` (see the module docstring); ``source`` names it in errors;
    ``progress(done, total)`` follows the registration of the store's new candidates."""
    stored = {n.key for n in store.list_nodes(LLM)} | {n.key for n in store.list_nodes(AGENT)}
    missing = [c for c in scorer.candidates if c not in stored]
    if len(missing) == len(scorer.candidates):
        raise CheckpointError(f"none of the candidates of {source} is in the store; retrain")
    out = Attached()
    for name in reversed(missing):  # agents (after the LLMs) first: a router refuses to drop an LLM backing one
        if not scorer.exclude(name):
            out.excluded.append(name)
    out.outcome_counts = stored_outcome_counts(store)
    changed, undated = changed_since_training(scorer, store, out.outcome_counts)
    if changed and not can_replace(scorer):
        log.warning(
            "changed in the store since training, routed with the checkpoint's data until a retrain (the %r router "
            "cannot replace a candidate): %s",
            scorer.router.name,
            ", ".join(changed),
        )
    elif changed and not set(scorer.candidates) - set(changed):
        log.warning(
            "every candidate of %s is changed in the store since training (%s): routed with the checkpoint's data "
            "until a retrain, since replacing them all would leave nothing trained to route",
            source,
            ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else ""),
        )
    elif changed:
        out.changed = changed
        for name in reversed(changed):  # agents first; the store's data replaces the trained one, registered below
            scorer.remove_candidate(name)
    out.added, out.skipped = sync_with_store(scorer, store, progress, undated=undated)
    tasks = {t.name: t.description for t in store.list_nodes(TASK) if isinstance(t, Task)}
    out.redescribed_tasks = scorer.redescribed(tasks)
    out.deleted_tasks = (set(scorer.tasks) - set(tasks)) | out.redescribed_tasks
    if out.changed:
        log.warning(
            "changed in the store since training (prices, description, size, an agent's LLM, or deleted and "
            "registered again), routed as newly registered with the store's data and outcomes until a retrain: %s",
            ", ".join(out.changed),
        )
    if out.excluded:
        log.warning("not in the store as trained, not routed to until a retrain: %s", ", ".join(out.excluded))
    if out.skipped:
        log.warning("not routable by the %r router until retrained: %s", scorer.router.name, ", ".join(out.skipped))
    return out


def can_replace(scorer: Scorer) -> bool:
    """Whether ``scorer``'s router can drop a candidate and register it again without retraining."""
    from graphrouter.routers.base import Router

    router = type(scorer.router)
    adds = router.register_candidate is not Router.register_candidate
    return adds and router.remove_candidate is not Router.remove_candidate


def stored_outcome_counts(store: GraphStore) -> dict[str, int]:
    """How many outcomes the store holds of each LLM and agent (names are unique across both kinds): one aggregate
    per kind."""
    return {**store.outcome_counts(LLM), **store.outcome_counts(AGENT)}


def _lost_a_stored_outcome(store: GraphStore, data: RoutingData, c: int, absent: set[str]) -> bool:
    """Whether candidate ``c`` of the training ``data`` has no outcome now on some training query it had one on that
    the store still holds (deleted and registered again, or an older backup), not only on deleted queries. Reads the
    ids of the queries it answered, then the nodes of those it no longer answers, a batch at a time until one is
    still stored: a candidate deleted and registered again is told after one batch, and no start reads every query
    (with its embedding) of a large store. ``absent``: query ids known not stored (shared by the candidates read,
    so deleted queries are read once, not once per candidate)."""
    name = data.candidates[c]
    now = set(store.answered(data.candidate_kind[c], name))
    had = np.flatnonzero(np.isfinite(np.asarray(data.effect)[:, c]))
    missing = [key for key in (data.query_keys[i] for i in had) if key not in now and key not in absent]
    for lo in range(0, len(missing), SHORTFALL_BATCH):
        batch = missing[lo : lo + SHORTFALL_BATCH]
        if store.get_nodes(QUERY, batch):
            return True
        absent.update(batch)
    return False


def changed_since_training(
    scorer: Scorer, store: GraphStore, counts: dict[str, int] | None = None
) -> tuple[list[str], set[str]]:
    """The scorer's trained candidates (still candidates, and still stored) that the store holds with other data than
    the checkpoint was trained on: an LLM's description, prices or size (``register-llm --update``, an import with
    ``--update``, or deleted and registered again), an agent's description or LLM, or fewer outcomes than it was
    trained with (deleted, which takes its outcomes, and registered again, even with the same data: the checkpoint
    would route it on the deleted ones); then every agent the scorer routes (trained or registered since) that runs
    on a changed LLM, since an LLM backing an agent cannot be dropped alone. LLMs first, then agents. ``counts``:
    :func:`stored_outcome_counts`, if read already; a candidate with fewer is short only if it lost an outcome on a
    training query still stored (a deleted query takes every candidate's outcomes on it). Also those of
    them whose stored costs may have been billed at other prices, from a time that is not known
    (:func:`costs_billed_now`): an LLM repriced without a ``priced_at`` (by a version from before it) and every
    stored agent on it, an agent moved to another LLM."""
    data = scorer.router.world.data
    candidates = set(scorer.candidates)
    trained = {name: c for c, name in enumerate(data.candidates) if name in candidates}
    stored = store.get_nodes(LLM, [n for n in trained if data.candidate_kind[trained[n]] == LLM])
    stored |= store.get_nodes(AGENT, [n for n in trained if data.candidate_kind[trained[n]] == AGENT])
    backing = data.backing() if len(data.candidate_backing) else None  # None: a checkpoint from before agents' LLMs
    changed: list[str] = []
    undated: set[str] = set()
    kept = stored_outcome_counts(store) if counts is None else counts
    trained_with = data.observed_counts()
    short = {name for name, c in trained.items() if name in stored and kept.get(name, 0) < trained_with[c]}
    # deleted queries take their outcomes too: short is short of an outcome on a training query still stored
    absent: set[str] = set()
    short = {name for name in short if _lost_a_stored_outcome(store, data, trained[name], absent)}
    for name, c in trained.items():
        node = stored.get(name)
        # deleted (its outcomes with it) and registered again, even with the same data: what the store holds now
        deleted = name in short
        if isinstance(node, LLMNode):
            was = _trained_llm(data, c)
            if was.registration != node.registration or deleted:
                changed.append(name)
            if (was.input_price, was.output_price) != (node.input_price, node.output_price) and not node.priced_at:
                undated.add(name)
        elif isinstance(node, Agent):
            llm = node.llm if backing is None else data.candidates[backing[c]] if c in backing else None
            if (data.candidate_text[c], llm) != (node.description, node.llm) or deleted:
                changed.append(name)
            if llm != node.llm:
                undated.add(name)
    changed = with_riders(scorer, store, changed)
    if undated:  # the agents on an undated LLM were billed as it, trained or not (read only then: at every start)
        undated |= {a.key for a in store.list_nodes(AGENT) if a.llm in undated}
    return changed, undated


def _trained_llm(data: RoutingData, c: int) -> LLMNode:
    """Candidate ``c`` of a checkpoint's data as the LLM it was trained on (its registration data)."""
    size = float(data.candidate_size_b[c])
    prices = map(float, data.candidate_prices[c])
    return LLMNode(data.candidates[c], data.candidate_text[c], *prices, None if size != size else size)  # type: ignore[misc]


def repriced_since_training(scorer: Scorer | None, node: LLMNode) -> bool:
    """Whether ``scorer``'s checkpoint was trained on an LLM of ``node``'s name at other prices (one deleted and
    registered again at new ones: its prices date from then)."""
    if scorer is None:
        return False
    data = scorer.router.world.data
    c = next((i for i, n in enumerate(data.candidates) if n == node.name and data.candidate_kind[i] == LLM), None)
    if c is None:
        return False
    was = _trained_llm(data, c)
    return (was.input_price, was.output_price) != (node.input_price, node.output_price)


def with_riders(scorer: Scorer, store: GraphStore, names: Iterable[str]) -> list[str]:
    """Those of ``names`` that ``scorer`` routes, and every agent it routes that runs on one of them (an LLM backing
    an agent cannot be dropped alone): LLMs first, then agents, each in candidate order."""
    candidates = set(scorer.candidates)
    named = {n for n in names if n in candidates}
    riders = {a.key for a in store.list_nodes(AGENT) if isinstance(a, Agent) and a.llm in named and a.key in candidates}
    kinds = dict(zip(scorer.candidates, scorer.kinds, strict=True))
    return sorted(named | riders, key=lambda n: (kinds[n] != LLM, scorer.candidates.index(n)))


def sync_with_store(
    scorer: Scorer,
    store: GraphStore,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = SYNC_CHUNK,
    undated: set[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Register every LLM, then every agent, in the store that ``scorer``'s checkpoint does not know: their
    outcomes read by name, or in one store call per kind when they are many (:func:`_outcomes_of`), their
    descriptions embedded in one call, registered ``chunk`` at a
    time (one change of the router each). ``progress(done, total)`` is called after each chunk. Only the costs
    billed at a candidate's current prices set its cost multiplier (:func:`costs_billed_now`); ``undated``: those
    whose stored costs may have been billed at other prices from a time that is not known (none of theirs do).

    Returns (registered names, names skipped because this router cannot add candidates without retraining, or
    because an agent's backing LLM is not a candidate).
    """
    from graphrouter.routers.base import NewCandidate  # the routers (torch): loaded with the checkpoint already

    known = set(scorer.candidates)
    llms = [n for n in store.list_nodes(LLM) if n.key not in known]
    agents = [a for a in store.list_nodes(AGENT) if a.key not in known]
    skipped: list[str] = []
    llm_names = known | {n.key for n in llms}
    ready_agents = []
    for agent in agents:
        assert isinstance(agent, Agent)
        if agent.llm in llm_names and store.has_node(LLM, agent.llm):
            ready_agents.append(agent)
        else:
            skipped.append(agent.key)
    todo: list[tuple[LLMNode | Agent, LLMNode | None]] = [(n, None) for n in llms]  # type: ignore[misc]
    by_llm = {n.key: n for n in llms}
    for agent in ready_agents:
        backing = by_llm.get(agent.llm) or store.get_node(LLM, agent.llm)
        assert isinstance(backing, LLMNode)
        todo.append((agent, backing))
    total = len(todo)
    if progress is not None:
        progress(0, total)
    if not todo:
        return [], skipped
    observed = {
        LLM: _outcomes_of(store, LLM, [n.key for n in llms]),
        AGENT: _outcomes_of(store, AGENT, [a.key for a in ready_agents]),
    }
    added: list[str] = []
    for at in range(0, total, chunk):
        part = todo[at : at + chunk]
        embs = scorer.embedder.embed([f"{node.name}: {node.description}" for node, _ in part])
        specs = []
        for (node, backing), emb in zip(part, embs, strict=True):
            rows = observed[AGENT if backing is not None else LLM].get(node.key, [])
            price = node if backing is None else backing
            assert isinstance(price, LLMNode)
            billed = costs_billed_now(rows, price, undated=node.key in (undated or set()))
            effects, costs = scorer.router.training_rows({o.query_id: o.effect for o in rows}, billed)
            specs.append(
                NewCandidate(
                    node.name,
                    emb,
                    price.input_price,  # type: ignore[union-attr]
                    price.output_price,  # type: ignore[union-attr]
                    price.size_b,  # type: ignore[union-attr]
                    effects,
                    backing.name if backing is not None else None,
                    costs,
                )
            )
        try:
            scorer.router.register_candidates(specs)
        except NotImplementedError:
            return added, skipped + [node.key for node, _ in todo[at:]]
        except GraphRouterError:
            raise
        except ValueError as exc:
            raise GraphRouterError(f"cannot register {', '.join(s.name for s in specs[:5])}…: {exc}") from None
        added.extend(s.name for s in specs)
        if progress is not None:
            progress(len(added), total)
    return added, skipped


def costs_billed_now(outcomes: list[Outcome], price: LLMNode, undated: bool = False) -> dict[str, float]:
    """The costs of a candidate's stored ``outcomes`` (by query id) billed at the prices it has now, those that may
    set its cost multiplier: ``price`` is its LLM (an agent's: the one it runs on); those observed since its prices
    last changed (``priced_at``). ``undated``: its costs may have been billed at other prices until a time that is
    not known (an LLM repriced without a date, an agent moved to another LLM): none."""
    if undated:
        return {}
    return {o.query_id: o.cost for o in outcomes if billed_since(o.observed_at, price.priced_at)}


def _outcomes_of(store: GraphStore, kind: str, names: list[str]) -> dict[str, list[Outcome]]:
    """The stored outcomes of candidates ``names`` of one kind, by name: one read per name when they are few (a
    replica installing a checkpoint while one LLM was registered since read every outcome of the store, 9 s at 1M),
    one read of them all when they are many (a round trip each would cost more)."""
    if len(names) > PER_TARGET_READS:
        return _by_target(store.outcomes(kind))
    return {name: store.outcomes(kind, target=name) for name in names}


def _by_target(outcomes: list[Outcome]) -> dict[str, list[Outcome]]:
    grouped: dict[str, list[Outcome]] = {}
    for o in outcomes:
        grouped.setdefault(o.target, []).append(o)
    return grouped
