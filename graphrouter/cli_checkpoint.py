"""The ``graphrouter`` commands that work with a checkpoint: ``train`` writes one, ``route`` and ``probes`` load one
and answer as a service started now would (:mod:`graphrouter.cli` parses the command line and runs them)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from graph_store import GraphStore
from graphrouter.paths import check_writable

if TYPE_CHECKING:
    from graphrouter.scorer import Scorer


def default_router() -> str:
    from graphrouter.routers import ROUTERS

    return "gnn" if "gnn" in ROUTERS else "best_per_task"


def cmd_train(args: argparse.Namespace, store: GraphStore) -> None:
    import time

    import numpy as np
    import torch

    from graphrouter.checkpoint import save_checkpoint
    from graphrouter.embeddings import Embedder
    from graphrouter.errors import GraphRouterError
    from graphrouter.routers import build_router
    from graphrouter.world import build_world, check_learnable

    if args.threads < 1:
        raise GraphRouterError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    name = args.router or default_router()
    try:
        params = json.loads(args.params)
    except ValueError as exc:
        raise GraphRouterError(f"--params do not fit the {name!r} router: {exc}") from None
    unfitted = build_router(name, params, params_setting="--params")  # checked before the (long) embedding
    check_writable(args.checkpoint)  # and where the checkpoint goes: not found out after the training
    snap = store.snapshot()
    unfitted.check_enough(check_learnable(snap))
    t0 = time.perf_counter()
    embedder = Embedder(args.embedding_model, cache_path=args.embedding_cache, backend=args.embedding_backend)
    world = build_world(snap, embedder, progress=sys.stderr.isatty())
    print(
        f"world: {world.data.n_queries:,} queries, {world.data.n_candidates} candidates "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    t1 = time.perf_counter()
    router = unfitted.fit(world, np.arange(world.data.n_queries))
    seen = np.isfinite(world.data.effect).any(axis=0)
    if unseen := [c for c, s in zip(world.data.candidates, seen, strict=True) if not s]:
        how = (
            "routes them from their descriptions"
            if name == "gnn"
            else "ranks them last"
            if router.unseen is not None
            else "has nothing of theirs to learn from"
        )
        print(f"note: no outcomes of {', '.join(unseen)}: the {name!r} router {how}", file=sys.stderr)
    ckpt = save_checkpoint(router, embedder.model_name, args.checkpoint)
    print(f"trained {name} in {time.perf_counter() - t1:.0f} s; checkpoint {ckpt.version} → {args.checkpoint}")


def _load_scorer(args: argparse.Namespace, store: GraphStore) -> Scorer:
    from graphrouter.loading import attach_scorer, load_scorer
    from graphrouter.outcome_feed import learn_stored

    scorer = load_scorer(
        args.checkpoint,
        args.embedding_model,
        strict_store=store,
        cache_path=args.embedding_cache,
        backend=args.embedding_backend,
    )
    trained = set(scorer.candidates)
    attached = attach_scorer(scorer, store, str(args.checkpoint))
    learn_stored(scorer, store, counts=attached.outcome_counts)  # as a service started now would: the same answers
    gone = sorted(trained - set(scorer.candidates))  # dropped (those kept out of routing: the loader's note)
    if gone:
        print(f"note: {', '.join(gone)} deleted from the store since training, not routed to", file=sys.stderr)
    return scorer  # (candidates the router cannot add are logged by attach_scorer: a warning on stderr)


def cmd_route(args: argparse.Namespace, store: GraphStore) -> None:
    from graph_store import TASK, Task
    from graphrouter.errors import GraphRouterError
    from graphrouter.rewards import CLI_FLAGS, scenario_weights
    from graphrouter.route_request import MAX_INPUT_TOKENS

    # what needs no model is checked before loading it (seconds)
    weights = (args.w_effect, args.w_cost) if args.w_effect is not None or args.w_cost is not None else None
    if weights is not None and None in weights:
        raise GraphRouterError("give both --w-effect and --w-cost")
    scenario_weights(args.scenario, weights, names=CLI_FLAGS)  # both given, or bad ones: refused as the API does
    if not args.query.strip():
        raise GraphRouterError("the query is empty")
    if args.k < 1:
        raise GraphRouterError(f"--k must be at least 1, got {args.k}")
    if args.budget is not None and not args.budget > 0:
        raise GraphRouterError(f"--budget must be > 0 USD, got {args.budget}")
    if args.input_tokens is not None and not 0 <= args.input_tokens <= MAX_INPUT_TOKENS:
        raise GraphRouterError(f"--input-tokens must be from 0 to {MAX_INPUT_TOKENS:,}, got {args.input_tokens}")
    if args.max_output_tokens is not None and not 1 <= args.max_output_tokens <= MAX_INPUT_TOKENS:
        raise GraphRouterError(
            f"--max-output-tokens must be from 1 to {MAX_INPUT_TOKENS:,}, got {args.max_output_tokens}"
        )
    candidates = None if args.candidates is None else [c.strip() for c in args.candidates.split(",") if c.strip()]
    if candidates == []:
        raise GraphRouterError("--candidates is empty; give comma-separated names, or leave it out")
    scorer = _load_scorer(args, store)
    stored = store.get_nodes(TASK, [args.task]).get(args.task) if args.task is not None else None
    if isinstance(stored, Task) and (
        args.task not in scorer.tasks or scorer.redescribed({stored.name: stored.description})
    ):
        when = (
            "registered after" if args.task not in scorer.tasks else "registered again with another description since"
        )
        raise GraphRouterError(
            f"task {args.task!r} was {when} the checkpoint was trained; retrain (graphrouter train) to "
            "route with it, or leave out --task to have it inferred"
        )
    result = scorer.top_k(
        args.query,
        task=args.task,
        k=args.k,
        scenario=None if weights else args.scenario,
        weights=weights,
        budget=args.budget,
        candidates=candidates,
        input_tokens=args.input_tokens,
        max_output_tokens=args.max_output_tokens,
    )
    if args.json:
        print(json.dumps(result.answer(), indent=2))  # POST /v1/route's answer
        return
    how = "inferred" if result.task_inferred else "given"
    print(
        f"task: {result.task} ({how}); weights effect={result.weights[0]:g} cost={result.weights[1]:g}; "
        f"checkpoint {result.checkpoint}"
    )
    print(f"  {'#':>2}  {'candidate':<34} {'effect':>7} {'cost (USD)':>12} {'utility':>8}")
    for i, r in enumerate(result.candidates, 1):
        print(f"  {i:>2}  {r.name:<34} {r.effect:>7.3f} {r.cost:>12.3g} {r.utility:>8.3f}")


def cmd_probes(args: argparse.Namespace, store: GraphStore) -> None:
    from graph_store import AGENT, LLM
    from graphrouter.errors import GraphRouterError
    from graphrouter.probes import MAX_PROBES, MAX_SEED

    kind = LLM if store.has_node(LLM, args.name) else AGENT if store.has_node(AGENT, args.name) else None
    if kind is None:
        raise GraphRouterError(f"no LLM or agent named {args.name!r} in the store; register it first")
    if not 1 <= args.k <= MAX_PROBES:
        raise GraphRouterError(f"--k must be between 1 and {MAX_PROBES}, got {args.k}")
    if not 0 <= args.seed <= MAX_SEED:
        raise GraphRouterError(f"--seed must be from 0 to {MAX_SEED}, got {args.seed}")
    scorer = _load_scorer(args, store)
    answered = store.answered(kind, args.name)
    probes = scorer.probes(args.name, args.k, args.seed, answered)
    if args.json:
        print(json.dumps([{"id": p.id, "text": p.text, "task": p.task} for p in probes], indent=2))
        return
    if not probes:
        print(f"no probes for {args.name}: it has an outcome on every stored query the router holds")
        return
    print(f"{len(probes)} probe(s) for {args.name}: run it on these, then import its outcomes on them")
    for p in probes:
        text = " ".join(p.text.split())
        print(f"  {p.id:<24} {p.task:<28} {text[:70] + ('…' if len(text) > 70 else '')}")
