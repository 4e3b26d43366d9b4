"""What both protocols of the benchmark runner (experiments/evaluate.py) share: loading a store (importing a data
set first, if asked), its splits, the GNN fitted on a split (or the same fit from a cache), and the reward of routing
a split's test queries."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

from experiments.cv import masked_choice
from experiments.fit_cache import FINGERPRINT
from graph_store import LLM, GraphStoreError, open_store
from graph_store.factory import NEO4J_SCHEMES
from graphrouter.embeddings import Embedder
from graphrouter.errors import GraphRouterError
from graphrouter.rewards import SCENARIOS, score_choices
from graphrouter.routers import ROUTERS, World
from graphrouter.world import build_world

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
MODES = ("given", "inferred")
# the GNN's settings that act at registration only: a cached fit takes today's defaults of them
REGISTRATION_CONSTANTS = (
    "uncertainty_margin",
    "uncertainty_power",
    "uncertainty_task_share",
    "fit_global_sd",
    "fit_task_sd",
    "fit_own",
    "fit_peers",
)


def store_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a study that reads one existing store: --dataset (names the results file), --store,
    --embedding-cache and --out; what :func:`load` reads (besides the runner's import options)."""
    parser.add_argument("--dataset", required=True, help="names the results file")
    parser.add_argument("--store", required=True)
    parser.add_argument("--embedding-cache", default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)


def fail(message: str) -> None:
    """End a benchmark run on a user's mistake: one ``error:`` line and exit status 2, as the graphrouter CLI does."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load(args: argparse.Namespace) -> tuple[World, dict, str]:
    """The world of the store (importing a data set into a fresh store first, if asked: the runner's
    ``import_outcomes``, ``import_llms`` and ``dcrouter`` options, absent for other callers), its LLM nodes, and
    where."""
    location = args.store
    import_outcomes, import_llms = getattr(args, "import_outcomes", None), getattr(args, "import_llms", None)
    dcrouter = getattr(args, "dcrouter", None)
    if import_outcomes or dcrouter:
        location = location or str(ROOT / ".graphrouter" / f"{args.dataset}.db")
        # an embedded store's file (None: a Neo4j server, whose import writes all or nothing and needs no cleanup)
        local = None if location.startswith(NEO4J_SCHEMES) else Path(location.removeprefix("embedded://"))
        if local is not None and local.exists():
            fail(f"{location} exists: pass --store {location} without an import, or remove it")
        from graphrouter import ingest

        try:
            with open_store(location) as store:
                if local is None and any(store.counts().values()):
                    fail(f"{location} holds a graph already: pass --store {location} without an import")
                if dcrouter:
                    from graphrouter.datasets.dcrouter import import_dcrouter

                    import_dcrouter(store, Path(dcrouter), lambda _: None)
                else:
                    llms = ingest.read_llm_catalogue(import_llms) if import_llms else None
                    ingest.import_outcomes(store, import_outcomes, llms=llms)
        except BaseException as exc:  # a bad file, or anything else (Ctrl-C): a rerun must not find a half store
            if local is not None:
                for part in ("", "-wal", "-shm"):
                    Path(f"{local}{part}").unlink(missing_ok=True)
            if isinstance(exc, GraphRouterError | GraphStoreError | OSError):
                fail(f"{exc} (nothing imported{'; the new store file was removed' if local is not None else ''})")
            raise
    with open_store(location, create=False) as store:
        snap = store.snapshot()
        nodes = {n.key: n for n in store.list_nodes(LLM)}
    if len(snap.nodes["Query"]) == 0:
        raise SystemExit("the store is empty: import a data set first (or pass --import-outcomes / --dcrouter)")
    cache = getattr(args, "embedding_cache", None)
    embedder = Embedder(cache_path=cache) if cache else Embedder()
    return build_world(snap, embedder, progress=sys.stderr.isatty()), nodes, location or "default store"


def splits(world: World, how: str, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    n = world.data.n_queries
    if how == "official":
        s = world.data.split
        if not ((s == "train").any() and (s == "test").any()):
            fail("the store has no official train/test split; use --split seeded or cv")
        return [(np.flatnonzero(s == "train"), np.flatnonzero(s == "test"))]
    perm = np.random.default_rng(seed).permutation(n)
    if how == "seeded":
        cut = int(0.8 * n)
        return [(np.sort(perm[:cut]), np.sort(perm[cut:]))]
    parts = np.array_split(perm, folds)
    return [(np.sort(np.concatenate(parts[:i] + parts[i + 1 :])), np.sort(parts[i])) for i in range(folds)]


def split_note(how: str, folds: int) -> str:
    return {
        "official": "the official train/test split",
        "seeded": "one fixed seeded 80/20 split (seed 0), not CV",
        "cv": f"{folds}-fold CV (mean ± std over folds)",
    }[how]


def rewards(world: World, router, test: np.ndarray, columns: np.ndarray, scenarios: list[str], utility=None) -> dict:  # type: ignore[no-untyped-def]
    """Reward per (mode, scenario) of routing ``test``; router column j is world candidate ``columns[j]``.
    ``utility(q, w)``: the (n, C) utility routed by (default: the router's, its effects and costs predicted once per
    mode, as :meth:`Router.score` does per request)."""
    data, cn = world.data, world.data.cost_norm()
    out = {}
    for mode in MODES:
        q = world.features(test, task_given=mode == "given")
        one = None
        if utility is None:
            q = router.task_inferer.fill(q)
            one = router.score(q, SCENARIOS["performance_first"])
        for scen in scenarios:
            w = SCENARIOS[scen]
            u = utility(q, w) if one is None else router.combine(q, one.effect, one.cost_norm, w)
            ch = columns[masked_choice(u, data.effect[test][:, columns])]
            out[(mode, scen)] = score_choices(ch, data.effect[test], data.cost[test], cn[test], w).reward
    return out


def fit_gnn(world: World, train: np.ndarray, args: argparse.Namespace, tag: str):  # type: ignore[no-untyped-def]
    """The GNN fitted on ``train`` (default recipe; ``--gnn-seeds`` members), or the same fit from ``--cache``: a
    fit depends only on the data, the split, the recipe and the code (:mod:`experiments.fit_cache`), not on the
    registration constants being compared."""
    kwargs: dict = {"seeds": tuple(int(s) for s in args.gnn_seeds.split(","))} if args.gnn_seeds else {}
    if args.gnn_max_episodes:
        kwargs["max_episodes"] = args.gnn_max_episodes
    path = None
    if args.cache:
        digest = hashlib.sha256(np.ascontiguousarray(train).tobytes()).hexdigest()[:10]
        recipe = f"{args.gnn_seeds or 'default'}{f'-e{args.gnn_max_episodes}' if args.gnn_max_episodes else ''}"
        path = Path(args.cache) / f"{args.dataset}-{digest}-{recipe}-{tag}-{FINGERPRINT}.pt"
        if path.exists():  # the registration constants are today's defaults, not the cached fit's
            router = torch.load(path, weights_only=False)
            defaults = ROUTERS["gnn"]()
            for name in REGISTRATION_CONSTANTS:
                setattr(router, name, getattr(defaults, name))
            return router
    router = ROUTERS["gnn"](**kwargs).fit(world, train)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(router, path)
    return router
