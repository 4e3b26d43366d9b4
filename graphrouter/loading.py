"""Loading a scorer to serve: the embedder, the checkpoint, and attaching it to the store. One module used by the
CLI (``graphrouter route``) and by the service (its start, and every retrain).

:func:`attach_scorer` makes a freshly loaded (or retrained) scorer agree with the store: its candidates that the
store no longer has are dropped (or excluded from routing, when the router cannot drop them), and the store's LLMs
and agents it does not know are registered without retraining where the router can do that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graph_store import AGENT, LLM, TASK, GraphStore
from graphrouter.embeddings import DEFAULT_CACHE, DEFAULT_THREADS, Embedder
from graphrouter.errors import CheckpointError
from graphrouter.paths import DEFAULT_CHECKPOINT
from graphrouter.scorer import MAX_QUERY_CHARS, Scorer

log = logging.getLogger(__name__)


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

    ``strict_store`` (the CLI's choice) refuses a checkpoint whose tasks or candidates are partly gone from that
    store; the service passes none and lets :func:`attach_scorer` drop them, so it keeps serving and can retrain.
    """
    from graphrouter.checkpoint import load_checkpoint

    tasks = candidates = None
    if strict_store is not None:
        tasks = [t.key for t in strict_store.list_nodes(TASK)]
        candidates = [n.key for n in strict_store.list_nodes(LLM)] + [n.key for n in strict_store.list_nodes(AGENT)]
    ckpt = load_checkpoint(checkpoint, embedding_model, tasks, candidates)
    if embedder is None:
        embedder = make_embedder(ckpt.embedding_model, cache_path, backend, threads)
        embedder.dim  # noqa: B018 - load the model now, not on the first request
    return Scorer(ckpt, embedder, max_query_chars)


@dataclass
class Attached:
    """What :func:`attach_scorer` did: candidates excluded from routing (gone from the store, but their router
    cannot drop them), store candidates this router cannot add without retraining, and trained tasks no longer in
    the store."""

    excluded: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deleted_tasks: set[str] = field(default_factory=set)


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
    out.added, out.skipped = scorer.sync_with_store(store, progress)
    out.deleted_tasks = set(scorer.tasks) - {t.key for t in store.list_nodes(TASK)}
    if out.excluded:
        log.warning("candidates no longer in the store, not routed to: %s", ", ".join(out.excluded))
    if out.skipped:
        log.warning("not routable by the %r router until retrained: %s", scorer.router.name, ", ".join(out.skipped))
    return out
