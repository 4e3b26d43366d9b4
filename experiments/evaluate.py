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
choosing the fit's constants; the test queries are never read) (experiments/new_llm.py).

What both protocols share (loading, splits, the GNN's fit and its cache, rewards) is experiments/benchmark.py.

Splits: ``official`` (the store's train/test labels), ``seeded`` (one fixed 80/20 split, seed 0) or ``cv`` (k folds).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.benchmark import RESULTS, fail, fit_gnn, load, split_note, splits  # noqa: E402
from experiments.cv import run_cv  # noqa: E402
from experiments.new_llm import run_new_llm  # noqa: E402
from experiments.new_llm_tables import variant_tables  # noqa: E402
from graph_store import GraphStoreError  # noqa: E402
from graphrouter.errors import GraphRouterError  # noqa: E402
from graphrouter.rewards import SCENARIOS  # noqa: E402
from graphrouter.routers import ROUTERS  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="names the result files: <dataset>_cv.md, <dataset>_new_llm.*")
    p.add_argument("--store", default=None, help="graph store (default: as the graphrouter CLI)")
    p.add_argument("--import-llms", type=Path, help="an LLM catalogue to import first (with --import-outcomes)")
    p.add_argument("--import-outcomes", type=Path, help="outcomes to import into a fresh store first")
    p.add_argument("--dcrouter", type=Path, help="import the dcrouter data (LLMRouter folder) into a fresh store first")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    p.add_argument(
        "--split",
        choices=("official", "seeded", "cv"),
        default=None,
        help="official | seeded | cv (default: official if the store has it)",
    )
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
    p.add_argument(
        "--cache", default=None, help="keep fitted GNNs here and reuse them (same data, split, seeds and code)"
    )
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
    if args.folds < 2:
        p.error(f"--folds must be at least 2, got {args.folds}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.dataset):
        p.error(f"--dataset names the result files: letters, digits, '.', '_' and '-' only, got {args.dataset!r}")
    if args.import_llms and not args.import_outcomes:
        p.error("--import-llms is the catalogue of --import-outcomes: give both (or --store for an imported store)")
    if args.protocol == "cv" and args.routers != "all":
        unknown = [r for r in args.routers.split(",") if r not in ROUTERS]
        if unknown:
            p.error(f"--routers: unknown {', '.join(unknown)}; the registry has {', '.join(ROUTERS)}")
    try:
        run(args, argv)
    except (GraphRouterError, GraphStoreError) as exc:
        fail(str(exc))


def check_fold_sizes(routers: list[str], smallest: int) -> None:
    """Before any fitting: a one-line failure if a router needs more training queries than the smallest fold has."""
    short = [f"{r} needs {n}" for r in routers if (n := ROUTERS[r]().min_queries()) > smallest]
    if short:
        fail(
            f"the smallest training fold has {smallest} queries, and {', '.join(short)}: use fewer --folds, a store "
            "with more queries, or --routers without them"
        )


def run(args: argparse.Namespace, argv: list[str] | None) -> None:
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    world, nodes, location = load(args)
    if args.split is None:
        s = world.data.split
        args.split = "official" if (s == "train").any() and (s == "test").any() else "cv"
    if args.split == "cv" and world.data.n_queries < 10 * args.folds:
        fail(f"--folds {args.folds}: {world.data.n_queries} queries give fewer than 10 per fold; use fewer folds")
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
        check_fold_sizes(routers, min(len(train) for train, _ in folds))
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
