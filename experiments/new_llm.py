"""The runner's new-LLM protocol (experiments/evaluate.py new-llm): withheld LLMs registered through the scorer
with k outcomes (random or their designed probe set, several draws), against the GNN retrained on all LLMs and
routing among the known ones only, beside issue 10's floor (experiments/new_llm_floor.py)."""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from experiments.benchmark import fit_gnn, rewards, splits
from experiments.new_llm_floor import floor_utility
from experiments.new_llm_tables import MIN_GAP
from graphrouter.checkpoint import Checkpoint
from graphrouter.embeddings import Embedder
from graphrouter.probes import random_probes
from graphrouter.routers import World
from graphrouter.routers.baselines import inner_split
from graphrouter.scorer import Scorer


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
