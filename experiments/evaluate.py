"""The benchmark runner: DESIGN.md's protocols on whatever is in a store (or a data set imported first).

    python experiments/evaluate.py --dataset NAME [--store PATH | --import-llms F --import-outcomes F | --dcrouter DIR]
        cv       [--routers all] [--folds 5] [--split cv|official|seeded]
        new-llm  [--withhold a,b --withhold c] [--withhold-random N --repeats R] [--ks 0,5,20,50]
                 [--probes random,designed] [--probe-draws D] [--split official|seeded|cv] [--inner]

``cv``: every router of the registry on the same folds, task given and inferred, three scenarios; paired
differences against the GNN (mean ± std over folds) and the share of the best-single → oracle gap each closes; on
data with more than 10 LLMs also the oracle over the 5 LLMs of highest training mean; the Brier score and a
reliability table of every router's effect predictions; a cost–quality curve (15 weights from Performance First to
Cost First); which tasks the GNN's validation-selected fallback took per fold; the wall time of every fit
(experiments/cv.py). Writes ``experiments/results/<dataset>_cv.md``, ``<dataset>_reliability.png`` and
``<dataset>_cost_quality.png``. ``--embedding-cache`` (or $GRAPHROUTER_EMBEDDING_CACHE) keeps embeddings elsewhere.

``new-llm``: per split, the GNN is fitted once on all LLMs (the retrained reference, shared by every withheld set)
and once per withheld set without them (routing among the known LLMs only); each withheld LLM is then registered
through :meth:`Scorer.register_llm` (the API's code path) with its k outcomes on training queries — k random ones,
or the k its probe set (:meth:`Scorer.probes`, training queries only) proposes — read from the held data, without
retraining. ``--probe-draws D`` (default 3) registers every k > 0 cell D times (other random rows, or the
designed set's other seeds) and reports the mean reward: a single draw of 20 probes decides a recovered share by a
handful of test queries. Beside it, on the same random rows, issue 10's floor (``experiments/new_llm_floor.py``:
the new LLM's effect is the per-task mean of its k outcomes shrunk to their overall mean). Writes
``experiments/results/<dataset>_new_llm.json`` (one record per withheld set × k × probes × mode × scenario; with
several draws, each draw's reward under ``draws``), ``<dataset>_new_llm_floor.json`` (the floor's records) and
``.md``. ``--inner`` runs the protocol on a validation split of the training queries instead (for
choosing the fit's constants; the test queries are never read).

Splits: ``official`` (the store's train/test labels), ``seeded`` (one fixed 80/20 split, seed 0) or ``cv`` (k folds).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.cv import masked_choice, run_cv  # noqa: E402
from experiments.new_llm_floor import floor_utility  # noqa: E402
from experiments.new_llm_tables import MIN_GAP, variant_tables  # noqa: E402
from graph_store import LLM, open_store  # noqa: E402
from graphrouter.checkpoint import Checkpoint  # noqa: E402
from graphrouter.embeddings import Embedder  # noqa: E402
from graphrouter.probes import random_probes  # noqa: E402
from graphrouter.rewards import SCENARIOS, score_choices  # noqa: E402
from graphrouter.routers import ROUTERS, World  # noqa: E402
from graphrouter.routers.baselines import inner_split  # noqa: E402
from graphrouter.scorer import Scorer  # noqa: E402
from graphrouter.world import build_world  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
MODES = ("given", "inferred")
# the GNN's settings that act at registration only: a cached fit takes today's defaults of them
REGISTRATION_CONSTANTS = (
    "uncertainty_margin",
    "uncertainty_power",
    "fit_global_sd",
    "fit_task_sd",
    "fit_own",
    "fit_peers",
)


# ---- data -----------------------------------------------------------------------------------------------------------
def load(args: argparse.Namespace) -> tuple[World, dict, str]:
    """The world of the store (importing a data set into a fresh store first, if asked), its LLM nodes, and where."""
    location = args.store
    if args.import_outcomes or args.dcrouter:
        location = location or str(ROOT / ".graphrouter" / f"{args.dataset}.db")
        if Path(location).exists():
            raise SystemExit(f"{location} exists: pass --store {location} without an import, or remove it")
        from graphrouter import ingest

        with open_store(location) as store:
            if args.dcrouter:
                from graphrouter.datasets.dcrouter import import_dcrouter

                import_dcrouter(store, Path(args.dcrouter), lambda _: None)
            else:
                llms = ingest.read_llm_catalogue(args.import_llms) if args.import_llms else None
                ingest.import_outcomes(store, args.import_outcomes, llms=llms)
    with open_store(location, create=False) as store:
        snap = store.snapshot()
        nodes = {n.key: n for n in store.list_nodes(LLM)}
    if len(snap.nodes["Query"]) == 0:
        raise SystemExit("the store is empty: import a data set first (or pass --import-outcomes / --dcrouter)")
    embedder = Embedder(cache_path=args.embedding_cache) if args.embedding_cache else Embedder()
    return build_world(snap, embedder, progress=sys.stderr.isatty()), nodes, location or "default store"


def splits(world: World, how: str, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    n = world.data.n_queries
    if how == "official":
        s = world.data.split
        if not ((s == "train").any() and (s == "test").any()):
            raise SystemExit("the store has no official train/test split; use --split seeded or cv")
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
    ``utility(q, w)``: the (n, C) utility routed by (default: the router's)."""
    data, cn = world.data, world.data.cost_norm()
    utility = utility or router.utility
    out = {}
    for mode in MODES:
        q = world.features(test, task_given=mode == "given")
        for scen in scenarios:
            w = SCENARIOS[scen]
            ch = columns[masked_choice(utility(q, w), data.effect[test][:, columns])]
            out[(mode, scen)] = score_choices(ch, data.effect[test], data.cost[test], cn[test], w).reward
    return out


# ---- new-llm --------------------------------------------------------------------------------------------------------
def withheld_sets(args: argparse.Namespace, names: list[str]) -> list[tuple[str, ...]]:
    sets = [tuple(s.split(",")) for s in args.withhold]
    rng = np.random.default_rng(args.seed)
    for _ in range(args.repeats if args.withhold_random else 0):
        sets.append(tuple(sorted(rng.choice(names, size=args.withhold_random, replace=False).tolist())))
    unknown = sorted({n for s in sets for n in s} - set(names))
    if unknown:
        raise SystemExit(f"unknown LLM(s) {unknown}; known: {', '.join(names)}")
    if not sets:
        raise SystemExit("nothing to withhold: give --withhold a,b or --withhold-random N")
    return sets


def fit_gnn(world: World, train: np.ndarray, args: argparse.Namespace, tag: str):  # type: ignore[no-untyped-def]
    """The GNN fitted on ``train`` (default recipe; ``--gnn-seeds`` members), or the same fit from ``--cache``: a
    fit depends only on the data, the split and the recipe, not on the registration constants being compared."""
    kwargs: dict = {"seeds": tuple(int(s) for s in args.gnn_seeds.split(","))} if args.gnn_seeds else {}
    if args.gnn_max_episodes:
        kwargs["max_episodes"] = args.gnn_max_episodes
    path = None
    if args.cache:
        digest = hashlib.sha256(np.ascontiguousarray(train).tobytes()).hexdigest()[:10]
        recipe = f"{args.gnn_seeds or 'default'}{f'-e{args.gnn_max_episodes}' if args.gnn_max_episodes else ''}"
        path = Path(args.cache) / f"{args.dataset}-{digest}-{recipe}-{tag}.pt"
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


def random_rows(world: World, train: np.ndarray, j: int, k: int, seed: int) -> np.ndarray:
    """The k random training queries (world rows) candidate ``j`` is registered with: seeded, among those it
    answered (a query it never answered cannot be probed)."""
    own = np.where(np.isfinite(world.data.effect[train, j]), np.nan, 0.0)
    return train[random_probes(len(train), k, own, seed=seed)]


def draw_seed(seed: int, split: int, draw: int) -> int:
    """The probe seed of one draw (``--probe-draws``) on one split; draw 0 is the single draw of earlier runs."""
    return seed + split + 100 * draw


def register(
    base,
    world: World,
    nodes: dict,
    withheld: tuple[str, ...],
    k: int,
    how: str,
    train: np.ndarray,  # type: ignore[no-untyped-def]
    seed: int,
    embedder: Embedder,
    variant: dict | None = None,
):
    """A copy of ``base`` with the withheld LLMs registered through the scorer, k outcomes each (held data);
    ``variant``: router attributes set first (registration constants compared with ``--variants``)."""
    data = world.data
    router = copy.deepcopy(base)
    for key, value in (variant or {}).items():
        setattr(router, key, value)
    scorer = Scorer(Checkpoint(router, embedder.model_name, "", "experiment"), embedder)
    pos = {q: i for i, q in enumerate(router.train_idx.tolist())}
    for n, name in enumerate(withheld):
        j = data.candidates.index(name)
        observed = np.isfinite(data.effect[train, j])
        if k == 0:
            idx = np.zeros(0, np.int64)
        elif how == "random":
            idx = random_rows(world, train, j, k, seed + 1000 * n)
        else:
            ids = {p.id for p in scorer.probes(name, k, seed, answered=[data.query_keys[q] for q in train[~observed]])}
            idx = np.array([q for q in train if data.query_keys[q] in ids], dtype=np.int64)
        assert all(q in pos for q in idx.tolist())  # training queries only
        outcomes = {data.query_keys[q]: float(data.effect[q, j]) for q in idx}
        costs = {data.query_keys[q]: float(data.cost[q, j]) for q in idx}
        scorer.register_llm(nodes[name], outcomes, costs)
    router.wait_exact(600)  # the exact serving caches (and offsets fitted on them): reproducible numbers
    return router


def cell_records(draws: list[dict], known_only: dict, retrained: dict, cell: dict) -> list[dict]:
    """One record per (mode, scenario) of a cell: the reward averaged over the probe draws (each draw's listed
    under ``draws`` when there are several), and the share of the retrained − known-only gap that mean recovers."""
    out = []
    for key in draws[0]:
        mode, scen = key
        rs = [d[key] for d in draws]
        r, gap = float(np.mean(rs)), retrained[key] - known_only[key]
        rec = (r - known_only[key]) / gap if gap >= MIN_GAP else None
        record = {
            "withheld": cell["withheld"],
            "k": cell["k"],
            "probes": cell["probes"],
            "mode": mode,
            "scenario": scen,
            "reward": round(r, 6),
            "known_only": round(known_only[key], 6),
            "retrained": round(retrained[key], 6),
            "recovered": None if rec is None else round(rec, 4),
            "split": cell["split"],
        }
        if len(rs) > 1:
            record["draws"] = [round(x, 6) for x in rs]
        if cell["variant"] is not None:
            record["variant"] = cell["variant"]
        out.append(record)
    return out


def run_new_llm(
    args: argparse.Namespace,
    world: World,
    nodes: dict,
    on_set=None,  # type: ignore[no-untyped-def]
) -> tuple[list[dict], list[dict], list[str]]:
    """The new-LLM protocol: the GNN's records, the floor's records (experiments/new_llm_floor.py), timings."""
    data = world.data
    scenarios = args.scenarios.split(",")
    ks = [int(k) for k in args.ks.split(",")]
    strategies = args.probes.split(",")
    sets = withheld_sets(args, list(data.candidates))
    variants = json.loads(args.variants) if args.variants else [{}]
    embedder = Embedder()
    records, floor, timings = [], [], []
    folds = splits(world, args.split, args.folds)
    if args.inner:  # validation split of the training queries: the test queries are never read
        folds = [inner_split(train, 0.2, 0) for train, _ in folds]
    everyone = np.arange(data.n_candidates)
    total = len(folds) * (1 + len(sets) * (1 + sum(1 if k == 0 else len(strategies) for k in ks)))
    bar = tqdm(total=total, desc="new-llm", unit="step", file=sys.stderr)
    for f, (train, test) in enumerate(folds):
        t0 = time.perf_counter()
        bar.set_postfix_str(f"split {f}: retrained on all")
        retrained = rewards(world, fit_gnn(world, train, args, "all"), test, everyone, scenarios)
        timings.append(f"split {f}: retrained on all {data.n_candidates} LLMs in {time.perf_counter() - t0:.0f} s")
        bar.update()
        for withheld in sets:
            out_idx = np.array([data.candidates.index(n) for n in withheld])
            known = np.array([i for i in everyone if i not in out_idx])
            t1 = time.perf_counter()
            bar.set_postfix_str(f"split {f}: without {','.join(withheld)[:40]}")
            tag = hashlib.sha256(",".join(withheld).encode()).hexdigest()[:10]
            base = fit_gnn(world.select_candidates(known), train, args, f"without-{tag}")
            known_only = rewards(world, base, test, known, scenarios)
            timings.append(f"split {f}: without {', '.join(withheld)}: fit {time.perf_counter() - t1:.0f} s")
            bar.update()
            for k in ks:
                draws = range(args.probe_draws if k else 1)  # k = 0 has no probes to draw
                for how, (v, variant) in itertools.product(strategies if k else ["random"], enumerate(variants)):
                    t2 = time.perf_counter()
                    got_draws, floor_draws = [], []
                    for d in draws:
                        seed = draw_seed(args.seed, f, d)
                        router = register(base, world, nodes, withheld, k, how, train, seed, embedder, variant)
                        got_draws.append(rewards(world, router, test, np.r_[known, out_idx], scenarios))
                        if how == "random" and k and v == 0:  # the floor, on the same random rows
                            rows = {
                                int(j): random_rows(world, train, int(j), k, seed + 1000 * n)
                                for n, j in enumerate(out_idx)
                            }
                            by_table = floor_utility(world, router, rows, np.r_[known, out_idx])
                            floor_draws.append(rewards(world, router, test, np.r_[known, out_idx], scenarios, by_table))
                    timings.append(
                        f"  k={k} {how} {variant or ''}: register + evaluate {time.perf_counter() - t2:.1f} s"
                        + (f" ({len(draws)} draws)" if len(draws) > 1 else "")
                    )
                    if v == len(variants) - 1:
                        bar.update()
                    cell = dict(withheld=list(withheld), k=k, split=f, variant=v if len(variants) > 1 else None)
                    for probes in strategies if k == 0 else [how]:
                        records += cell_records(got_draws, known_only, retrained, dict(cell, probes=probes))
                    if floor_draws:
                        floor += cell_records(floor_draws, known_only, retrained, dict(cell, probes="random"))
            if on_set is not None:
                on_set(records, floor, timings)  # results so far, written after every withheld set
    bar.close()
    return records, floor, timings


# ---- main -----------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="names the result files: <dataset>_cv.md, <dataset>_new_llm.*")
    p.add_argument("--store", default=None, help="graph store (default: as the graphrouter CLI)")
    p.add_argument("--import-llms", type=Path, help="an LLM catalogue to import first (with --import-outcomes)")
    p.add_argument("--import-outcomes", type=Path, help="outcomes to import into a fresh store first")
    p.add_argument("--dcrouter", type=Path, help="import the dcrouter data (LLMRouter folder) into a fresh store first")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    p.add_argument("--split", default=None, help="official | seeded | cv (default: official if the store has it)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--gnn-seeds", default=None, help="the GNN's ensemble seeds (default: the router's, 0,1,2)")
    p.add_argument(
        "--gnn-max-episodes", type=int, default=None, help="cap on training episodes (default: the router's)"
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--embedding-cache",
        default=os.environ.get("GRAPHROUTER_EMBEDDING_CACHE"),
        help="the embedding cache file (default: $GRAPHROUTER_EMBEDDING_CACHE, else .graphrouter/embeddings.sqlite)",
    )
    p.add_argument("--cache", default=None, help="keep fitted GNNs here and reuse them (same data, split, seeds)")
    sub = p.add_subparsers(dest="protocol", required=True)
    cv = sub.add_parser("cv", help="every router of the registry, paired on the same folds")
    cv.add_argument("--routers", default="all")
    nl = sub.add_parser("new-llm", help="withheld LLMs registered without retraining")
    nl.add_argument("--withhold", action="append", default=[], help="a comma-separated set (repeatable)")
    nl.add_argument("--withhold-random", type=int, default=0, help="random sets of N LLMs")
    nl.add_argument("--repeats", type=int, default=1, help="how many random sets")
    nl.add_argument("--seed", type=int, default=0)
    nl.add_argument("--ks", default="0,5,20,50")
    nl.add_argument("--probes", default="random,designed")
    nl.add_argument("--scenarios", default=",".join(SCENARIOS))
    nl.add_argument("--inner", action="store_true", help="evaluate on a validation split of the training queries")
    nl.add_argument(
        "--probe-draws",
        type=int,
        default=3,
        help="draws of each k > 0 cell's probes (random rows, or the designed set's seed); rewards are averaged",
    )
    nl.add_argument(
        "--variants", default=None, help='JSON list of router settings to compare, e.g. [{"uncertainty_power": 1}]'
    )
    args = p.parse_args(argv)
    if args.protocol == "new-llm" and not 1 <= args.probe_draws <= 10:
        p.error("--probe-draws must be 1 to 10 (draw seeds are 100 apart, each withheld LLM's 1000 apart)")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    world, nodes, location = load(args)
    if args.split is None:
        s = world.data.split
        args.split = "official" if (s == "train").any() and (s == "test").any() else "cv"
    command = "python experiments/evaluate.py " + " ".join(argv if argv is not None else sys.argv[1:])
    head = [
        f"`{command}`",
        "",
        f"Store {location}: {world.data.n_queries:,} queries × {world.data.n_candidates} LLMs; "
        f"{split_note(args.split, args.folds)}.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    load_s = time.perf_counter() - t0
    if args.protocol == "cv":
        routers = list(ROUTERS) if args.routers == "all" else args.routers.split(",")
        folds = splits(world, args.split, args.folds)
        label = f"cv{args.folds}" if args.split == "cv" else args.split
        lines = run_cv(
            args.dataset, world, folds, routers, label, lambda train: fit_gnn(world, train, args, "all"), args.out
        )
        text = "\n".join(
            [
                f"# {args.dataset}: every router",
                "",
                *head,
                "",
                *lines,
                "",
                f"Wall time of the whole run {time.perf_counter() - t0:.0f} s (loading the store and embedding "
                f"{load_s:.0f} s); 1 torch thread, on a 2-core machine shared with other work.",
                "",
            ]
        )
        path = args.out / f"{args.dataset}_cv.md"
    else:
        suffix = "_inner" if args.inner else ""
        path = args.out / f"{args.dataset}_new_llm{suffix}.md"

        def write(records: list[dict], floor: list[dict], timings: list[str], done: bool = False) -> str:
            (args.out / f"{args.dataset}_new_llm{suffix}.json").write_text(json.dumps(records, indent=1) + "\n")
            (args.out / f"{args.dataset}_new_llm{suffix}_floor.json").write_text(json.dumps(floor, indent=1) + "\n")
            text = "\n".join(
                [
                    f"# {args.dataset}: new LLMs registered without retraining"
                    + (" (inner validation split)" if args.inner else "")
                    + ("" if done else " (PARTIAL: still running)"),
                    "",
                    *head,
                    "",
                    "Each withheld LLM is absent from training, then registered through `Scorer.register_llm` with "
                    "its description and k outcomes on training queries (random, or its designed probe set). Cells: "
                    "reward (share of the retrained − known-only gap recovered)"
                    + (f", each the mean over {args.probe_draws} draws of the probes." if args.probe_draws > 1 else ".")
                    + " Rows 'per-task mean': issue 10's floor on the same random probes (the LLM's effect is the"
                    " per-task mean of its k outcomes shrunk to their overall mean, no penalty;"
                    " experiments/new_llm_floor.py).",
                    "",
                    *variant_tables(records, args, floor),
                    "",
                    f"Wall time {time.perf_counter() - t0:.0f} s.",
                    "",
                    "<details><summary>timings</summary>",
                    "",
                    *[f"- {t}" for t in timings],
                    "",
                    "</details>",
                    "",
                ]
            )
            path.write_text(text)
            return text

        records, floor, timings = run_new_llm(args, world, nodes, write)
        text = write(records, floor, timings, done=True)
        print(text)
        print(f"wrote {path} ({time.perf_counter() - t0:.0f} s)")
        return
    path.write_text(text)
    print(text)
    print(f"wrote {path} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
