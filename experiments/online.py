"""DESIGN.md's online protocol (replay): queries arrive in a random order, the router sees only the outcome of the
candidate it picked, and a withheld LLM is registered mid-stream with its description only.

    python experiments/online.py --dataset dcrouter --store /path/graph.db [--seeds 0,1,2] [--stream 2300]
        [--register-at 300] [--scenarios performance_first,balance] [--gnn-seeds 0,1,2] [--threads 1]
        [--task-quiz 7] [--new-llm NAME | top:SCENARIO] [--name SUFFIX]

The store holds the dataset (``graphrouter import dcrouter``, or ``graphrouter import llms …/MMLU-Pro/llms.jsonl``
and ``graphrouter import outcomes …/MMLU-Pro/outcomes.parquet`` for ``--dataset mmlu-pro``). The queries are split
once: ``--train-frac`` to train on, ``--val-frac`` to choose the online learner's prior strengths on (full feedback,
known LLMs), the rest is the pool every seed draws its stream from. Compared on the same streams, every router
picking through :meth:`Scorer.top_k` and learning through :meth:`Scorer.add_outcomes` (the path of ``POST
/v1/route`` and ``POST /v1/outcomes``):

- ``static``: the GNN trained without the withheld LLM, which is registered from its description; no feedback;
- ``online``: the same with every picked outcome posted (online corrections, no exploration);
- ``online+explore``: the same, asking for exploration within a budget of ``--explore-share`` of the traffic;
- ``linucb``, ``epsilon_greedy``: the bandit routers (warm-started on the training queries, learning online);
- ``retrained``: the GNN trained with every LLM (no feedback): the reference of the new LLM's traffic share;
- the oracle (best utility among the LLMs available at that moment), the reference of regret.

The withheld LLM is the data set's default (:data:`NEW_LLM`: the best single LLM in Performance First), a name
(``--new-llm``), or ``top:<scenario>``: the LLM the per-task table of the training queries routes most of them to in
that scenario (chosen on the training split only, e.g. the newcomer Balance would route to).

Writes experiments/results/online_<dataset>.md and two PNGs (cumulative regret, the new LLM's traffic share).
"""

from __future__ import annotations

import argparse
import copy
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.fit_cache import FINGERPRINT  # noqa: E402
from graph_store import LLM, LLMNode, open_store  # noqa: E402
from graphrouter.checkpoint import Checkpoint  # noqa: E402
from graphrouter.exploration import TASK_QUIZ, Explorer  # noqa: E402
from graphrouter.online import OnlineLearner  # noqa: E402
from graphrouter.online_priors import Priors  # noqa: E402
from graphrouter.rewards import SCENARIOS, utility  # noqa: E402
from graphrouter.routers import ROUTERS, World  # noqa: E402
from graphrouter.routers.gnn import GnnRouter  # noqa: E402
from graphrouter.scorer import Scorer  # noqa: E402
from graphrouter.world import QueryFeatures, build_world, candidate_texts  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
NEW_LLM = {"dcrouter": "llama-3.1-nemotron-51b-instruct", "mmlu-pro": "gpt-4o-2024-05-13"}
METHODS = ("static", "online", "online+explore", "linucb", "epsilon_greedy", "retrained")
WINDOW = 250  # queries per window of the traffic share


class WorldEmbedder:
    """The world's own embeddings by text (queries and candidate descriptions were embedded when it was built), so a
    replay routes by text through the scorer without running the embedding model again."""

    def __init__(self, world: World, model_name: str) -> None:
        self.model_name = model_name
        self._by_text = dict(zip(world.data.query_text, world.query_emb, strict=True))
        self._by_text.update(zip(candidate_texts(world.data), world.candidate_emb, strict=True))

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return np.stack([self._by_text[t] for t in texts]).astype(np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def load_world(store_path: str, cache: Path | None) -> tuple[World, dict[str, LLMNode]]:
    """The embedded world of the store (from ``cache``, a pickle of it, if it exists) and its LLM nodes."""
    with open_store(store_path, create=False) as store:
        nodes = {n.key: n for n in store.list_nodes(LLM)}
        if cache is not None and cache.exists():
            with cache.open("rb") as f:
                return pickle.load(f), nodes  # type: ignore[return-value]  # noqa: S301 - a file this script wrote
        from graphrouter.embeddings import Embedder

        world = build_world(store.snapshot(), Embedder())
    if cache is not None:
        with cache.open("wb") as f:
            pickle.dump(world, f)
    return world, nodes  # type: ignore[return-value]


def tune_priors(
    world: World, router: GnnRouter, val: np.ndarray, scenarios: list[str], seed: int = 0, z: float = 2.0
) -> tuple:
    """Prior strengths of the online learner for trained candidates, chosen on validation queries under the
    replay's own protocol: each query routed to the argmax of the corrected utility, and only that pick's outcome
    learned (so the winner's curse of partial feedback is part of the choice). Mean reward over ``scenarios`` and
    three random orders. The best point is taken only if it beats the '≈ no correction' point (κ = 1e4) by more
    than ``z`` standard errors of their paired difference (per validation query, averaged over scenarios and
    orders), the rule the GNN's per-task fallback uses: otherwise trained candidates are left uncorrected."""
    data = world.data
    q = router.task_inferer.fill(world.features(val))
    raw = router.predict_effect(q)
    cols = np.array([data.candidates.index(c) for c in router.candidates])
    cost_norm = data.cost_norm()[val][:, cols]
    effect = data.effect[val][:, cols]
    trained = router.trained_counts()
    orders = [np.random.default_rng(seed + r).permutation(len(val)) for r in range(3)]  # three orders: less noise
    grid = [Priors(candidate=1e4, task=1e4, neighbours=1e4)] + [  # ≈ no correction
        Priors(candidate=c, task=t, neighbours=n)
        for c in (30.0, 300.0)
        for t in (10.0, 30.0, 100.0)
        for n in (3.0, 10.0)
    ]
    results = []
    for priors in grid:
        per_query = np.zeros(len(val))  # reward per validation query, summed over scenarios and orders
        for scen, order in ((scen, order) for scen in scenarios for order in orders):
            w = SCENARIOS[scen]
            learner = OnlineLearner(priors)
            for step in order:
                one = QueryFeatures(q.embedding[step : step + 1], q.task[step : step + 1], q.tokens[step : step + 1])
                pred = learner.adjust(router.candidates, one, raw[step : step + 1], trained)[0]
                j = int(np.argmax(utility(pred, cost_norm[step], w)))
                per_query[step] += utility(effect[step, j], cost_norm[step, j], w)
                name = router.candidates[j]
                learner.observe(
                    name, [str(step)], one.embedding, one.task, effect[step, j : j + 1], raw[step, j : j + 1]
                )
        per_query /= len(scenarios) * len(orders)
        results.append((float(per_query.mean()), priors, per_query))
    none = results[0]
    results.sort(key=lambda r: -r[0])
    best = results[0]
    diff = best[2] - none[2]
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
    chosen = best[1] if diff.mean() > z * se else none[1]
    shown = [(e, p) for e, p, _ in results]  # every grid point, best first
    return chosen, shown, (float(diff.mean()), se)


def newcomer(world: World, train: np.ndarray, choice: str) -> str:
    """The withheld LLM: ``choice`` itself, or for ``top:<scenario>`` the LLM that routing the ``train`` queries by
    the per-task table of their utilities in that scenario picks most often (training queries only)."""
    data = world.data
    if not choice.startswith("top:"):
        if choice not in data.candidates:
            raise SystemExit(f"--new-llm: no LLM named {choice!r} in the store")
        return choice
    scenario = choice.removeprefix("top:")
    if scenario not in SCENARIOS:
        raise SystemExit(f"--new-llm top:<scenario>: unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    u = utility(data.effect[train], data.cost_norm()[train], SCENARIOS[scenario])
    task = data.query_task[train]
    picks = np.array([np.nanargmax(np.nanmean(u[task == t], axis=0)) if (task == t).any() else 0 for t in task])
    return data.candidates[int(np.bincount(picks, minlength=data.n_candidates).argmax())]


def split_queries(world: World, train_frac: float, val_frac: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The replay's one split of the queries with every outcome known (seed 12345): ``train_frac`` to train on,
    ``val_frac`` to choose the online learner's priors on, the rest the pool the streams are drawn from."""
    data = world.data
    complete = np.flatnonzero(np.isfinite(data.effect).all(1) & np.isfinite(data.cost).all(1))
    perm = np.random.default_rng(12345).permutation(complete)
    n_train, n_val = int(len(perm) * train_frac), int(len(perm) * val_frac)
    return np.sort(perm[:n_train]), np.sort(perm[n_train : n_train + n_val]), perm[n_train + n_val :]


def fitted_gnn(cache: Path | None, dataset: str, what: str, train_frac: float, gnn_seeds: str, fit):  # type: ignore[no-untyped-def]
    """``fit()``'s GNN and its seconds, or the one kept in folder ``cache`` for this data set, candidates
    (``what``), split, ensemble and code (:data:`~experiments.fit_cache.FINGERPRINT`) (seconds NaN), which a fresh
    fit is kept as."""
    name = f"{dataset}_{what}_{train_frac}_{gnn_seeds}_{FINGERPRINT}.pkl"
    path = None if cache is None else cache / name
    if path is not None and path.exists():
        with path.open("rb") as f:
            return pickle.load(f), float("nan")  # noqa: S301 - a file this script wrote
    t0 = time.perf_counter()
    router = fit()
    secs = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)  # a fresh --fit-cache folder: the fit is not lost
        with path.open("wb") as f:
            pickle.dump(router, f)
    return router, secs


def make_scorer(
    router: object, embedder: WorldEmbedder, priors: Priors, share: float, seed: int, task_quiz: int = TASK_QUIZ
) -> Scorer:
    scorer = Scorer(Checkpoint(copy.deepcopy(router), embedder.model_name, "", "replay"), embedder)  # type: ignore[arg-type]
    scorer.online.priors = priors
    scorer.explorer = Explorer(share=share, seed=seed, task_quiz=task_quiz)
    return scorer


def replay_static(
    scorer: Scorer, world: World, stream: np.ndarray, scenario: str, new: LLMNode | None, register_at: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`replay` for a router that takes no feedback: nothing it holds changes along the stream but the
    registration, so its picks are :meth:`Router.score`'s argmax (the pass ``top_k`` runs) in two batches."""
    data, router = world.data, scorer.router
    column = np.array([data.candidates.index(c) for c in router.candidates])
    picks = np.zeros(len(stream), int)
    t0 = time.perf_counter()
    cut = register_at if new is not None else len(stream)
    for part, rows in ((0, stream[:cut]), (1, stream[cut:])):
        if not len(rows):
            continue
        if part == 1 and new is not None:
            scorer.register_llm(new)
            router = scorer.router
            column = np.array([data.candidates.index(c) for c in router.candidates])
        u = router.utility(world.features(rows), SCENARIOS[scenario])
        picks[slice(0, cut) if part == 0 else slice(cut, None)] = column[np.argmax(u, axis=1)]
    secs = np.full(len(stream), (time.perf_counter() - t0) / len(stream))
    return picks, np.zeros(len(stream), bool), secs


def replay(
    scorer: Scorer,
    world: World,
    stream: np.ndarray,
    scenario: str,
    feedback: bool,
    explore: bool,
    new: LLMNode | None,
    register_at: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World columns picked per stream query, whether each was explored, and seconds per query."""
    data = world.data
    column = {c: i for i, c in enumerate(data.candidates)}
    picks, explored, secs = np.zeros(len(stream), int), np.zeros(len(stream), bool), np.zeros(len(stream))
    for t, i in enumerate(stream):
        if new is not None and t == register_at:
            scorer.register_llm(new)  # its description only
        t0 = time.perf_counter()
        text, task, qid = data.query_text[i], data.task_names[data.query_task[i]], data.query_keys[i]
        result = scorer.top_k(text, task=task, k=1, scenario=scenario, explore=explore)
        name = result.candidates[0].name
        picks[t], explored[t] = column[name], result.explored
        if feedback:  # the outcome of the pick only, through the path of POST /v1/outcomes
            j = column[name]
            scorer.add_outcomes(
                name, {qid: float(data.effect[i, j])}, {qid: float(data.cost[i, j])}, {qid: (text, task)}
            )
        secs[t] = time.perf_counter() - t0
    return picks, explored, secs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(NEW_LLM), required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--world-cache", type=Path, default=None, help="pickle of the embedded world (reused)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--stream", type=int, default=2300, help="queries per stream")
    parser.add_argument("--register-at", type=int, default=300, help="the new LLM arrives before this query")
    parser.add_argument("--scenarios", default="performance_first,balance")
    parser.add_argument("--train-frac", type=float, default=0.4)
    parser.add_argument("--val-frac", type=float, default=0.1)
    parser.add_argument("--gnn-seeds", default="0,1,2", help="ensemble members of the GNN")
    parser.add_argument("--explore-share", type=float, default=0.1)
    parser.add_argument(
        "--task-quiz", type=int, default=TASK_QUIZ, help="the per-task quiz (GRAPHROUTER_EXPLORE_TASK_QUIZ)"
    )
    parser.add_argument("--new-llm", default=None, help="the withheld LLM: a name, or top:<scenario> (see above)")
    parser.add_argument("--name", default="", help="suffix of the results files (online_<dataset><name>.md)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--fit-cache", type=Path, default=None, help="folder to keep fitted GNNs in (reused)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    scenarios = args.scenarios.split(",")
    methods = args.methods.split(",")
    t_start = time.perf_counter()
    world, nodes = load_world(args.store, args.world_cache)
    data = world.data
    train, val, pool = split_queries(world, args.train_frac, args.val_frac)
    new_name = newcomer(world, train, args.new_llm or NEW_LLM[args.dataset])
    new_col = data.candidates.index(new_name)
    known = np.array([c for c in range(data.n_candidates) if c != new_col])
    cost_norm = data.cost_norm()
    gnn_seeds = tuple(int(s) for s in args.gnn_seeds.split(","))
    log = print

    def fitted(what: str, fit):  # type: ignore[no-untyped-def]
        what = f"without-{new_name}" if what == "known" and new_name != NEW_LLM[args.dataset] else what
        return fitted_gnn(args.fit_cache, args.dataset, what, args.train_frac, args.gnn_seeds, fit)

    base, fit_base = fitted("known", lambda: GnnRouter(seeds=gnn_seeds).fit(world.select_candidates(known), train))
    log(f"GNN without {new_name}: fitted in {fit_base:.0f}s", flush=True)
    retrained = None
    if "retrained" in methods:
        retrained, secs = fitted("all", lambda: GnnRouter(seeds=gnn_seeds).fit(world, train))
        log(f"GNN with every LLM: fitted in {secs:.0f}s", flush=True)
    bandits = {
        name: ROUTERS[name]().fit(world.select_candidates(known), train)
        for name in ("linucb", "epsilon_greedy")
        if name in methods
    }
    priors, shown, gain = tune_priors(world, base, val, scenarios)
    tuning = (shown, gain)
    log(f"priors chosen on {len(val)} validation queries: {priors} ({tuning})", flush=True)
    embedder = WorldEmbedder(world, "replay")
    node = nodes[new_name]

    # runs[(scenario, method)] = list over seeds of (picks, explored, secs); oracle[(scenario)] = per seed utilities
    runs: dict[tuple[str, str], list] = {}
    best: dict[str, list] = {}
    for seed in seeds:
        stream = np.random.default_rng(seed).permutation(pool)[: args.stream]
        for scen in scenarios:
            w = SCENARIOS[scen]
            u_all = utility(data.effect[stream], cost_norm[stream], w)
            avail = np.where(
                np.arange(len(stream))[:, None] >= args.register_at,
                u_all,
                np.where(np.arange(data.n_candidates)[None, :] == new_col, -np.inf, u_all),
            )
            best.setdefault(scen, []).append(avail.max(1))
            for method in methods:
                t0 = time.perf_counter()
                if method in bandits:
                    router, feedback, explore = bandits[method], True, False
                elif method == "retrained":
                    router, feedback, explore = retrained, False, False
                else:
                    router, feedback, explore = base, method != "static", method == "online+explore"
                if method in bandits:  # each run starts from the same fitted bandit, with its own seed
                    router = copy.deepcopy(router)
                    router.rng = np.random.default_rng(seed)
                scorer = make_scorer(router, embedder, priors, args.explore_share, seed, args.task_quiz)
                arrives = None if method == "retrained" else node
                if feedback:
                    picks, explored, secs = replay(
                        scorer, world, stream, scen, feedback, explore, arrives, args.register_at
                    )
                else:
                    picks, explored, secs = replay_static(scorer, world, stream, scen, arrives, args.register_at)
                runs.setdefault((scen, method), []).append((u_all[np.arange(len(stream)), picks], picks, explored))
                reward = u_all[np.arange(len(stream)), picks].mean()
                log(
                    f"seed {seed} {scen:<17} {method:<15} reward {reward:.4f}  new-LLM share "
                    f"{(picks[args.register_at :] == new_col).mean():.3f}  explored {explored.mean():.3f}  "
                    f"{1000 * secs.mean():.1f} ms/query  ({time.perf_counter() - t0:.0f}s)",
                    flush=True,
                )
    write_report(
        args,
        runs,
        best,
        new_name,
        new_col,
        priors,
        tuning,
        fit_base,
        time.perf_counter() - t_start,
        len(train),
        len(val),
        len(pool),
    )


def _ms(values: list[float] | np.ndarray, digits: int = 4) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def write_report(args, runs, best, new_name, new_col, priors, tuning, fit_s, total_s, n_train, n_val, n_pool) -> None:  # type: ignore[no-untyped-def]
    shown, (gain, gain_se) = tuning
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(best)
    methods = [m for m in METHODS if (scenarios[0], m) in runs]
    reg = args.register_at
    tag, stem = args.dataset, f"online_{args.dataset}{args.name}"
    extra = "" if args.methods == ",".join(METHODS) else f" --methods {args.methods}"
    extra += "" if args.task_quiz == TASK_QUIZ else f" --task-quiz {args.task_quiz}"
    extra += f" --new-llm {args.new_llm}" if args.new_llm else ""
    extra += f" --name {args.name}" if args.name else ""
    lines = [
        f"# Online replay on {tag}: partial feedback, {new_name} registered mid-stream from its description",
        "",
        f"`python experiments/online.py --dataset {tag} --store <store> --seeds {args.seeds} --stream {args.stream} "
        f"--register-at {reg} --scenarios {args.scenarios} --gnn-seeds {args.gnn_seeds} "
        f"--explore-share {args.explore_share} --threads {args.threads}{extra}`",
        "",
        f"Queries with every outcome known, split once: {n_train} to train on, {n_val} to choose the online "
        f"learner's priors on, {n_pool} in the pool each seed draws a stream of {args.stream} from (random order); "
        f"{new_name} is absent from training and registered before query {reg} with its description only"
        + (
            f" (chosen on the training queries: the LLM their per-task table routes most of them to in "
            f"{args.new_llm.removeprefix('top:')})"
            if (args.new_llm or "").startswith("top:")
            else ""
        )
        + ". Reward = "
        "utility of the picked LLM's observed outcome (w_effect · effect − w_cost · cost_norm); regret against the "
        "oracle among the LLMs available at that moment. Mean ± std over seeds. GNN ensemble of "
        f"{len(args.gnn_seeds.split(','))} member(s), "
        + ("fitted by an earlier run (--fit-cache)" if fit_s != fit_s else f"fitted in {fit_s:.0f}s")
        + f"; total {total_s:.0f}s on 1 torch "
        "thread of a shared 2-core machine (modest settings: a subset of each pool per stream, few seeds).",
        "",
        f"Online learner priors for trained candidates (chosen on the validation queries by the mean reward of "
        f"routing them under the same partial-feedback protocol, known LLMs only; the best point only if it beats "
        f"the '≈ no correction' point by more than 2 standard errors: best − none = {gain:+.4f} ± {gain_se:.4f}): "
        f"`{priors}`; every grid point, best first (κ = 1e4: ≈ no correction; the service's default is "
        f"{Priors().candidate:g}/{Priors().task:g}/{Priors().neighbours:g}): "
        + "; ".join(
            f"{e:.4f} (candidate {p.candidate:g}, task {p.task:g}, neighbours {p.neighbours:g})" for e, p in shown
        ),
        "",
    ]
    fig, axes = plt.subplots(1, len(scenarios), figsize=(6 * len(scenarios), 4), squeeze=False)
    fig2, axes2 = plt.subplots(1, len(scenarios), figsize=(6 * len(scenarios), 4), squeeze=False)
    for s, scen in enumerate(scenarios):
        oracle = np.stack(best[scen])  # (seeds, T)
        ref_share = None
        if (scen, "retrained") in runs:
            ref_share = np.mean([(p[reg:] == new_col).mean() for _, p, _ in runs[(scen, "retrained")]])
        lines += [
            f"## {scen}",
            "",
            "| router | cumulative regret | mean reward | reward, last 500 | new-LLM share after registration | "
            "share, last 500 | first window ≥ 90% of retrained share | explored |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for method in methods:
            rs = runs[(scen, method)]
            u = np.stack([r[0] for r in rs])
            picks = np.stack([r[1] for r in rs])
            explored = np.stack([r[2] for r in rs])
            regret = np.cumsum(oracle - u, axis=1)
            new_share = (picks[:, reg:] == new_col).mean(1)
            last_share = (picks[:, -500:] == new_col).mean(1)
            reach = "—"
            if ref_share is not None and method != "retrained" and ref_share > 0:
                hits = []
                for p in picks:
                    after = p[reg:] == new_col
                    windows = [after[i : i + WINDOW].mean() for i in range(0, len(after) - WINDOW + 1, WINDOW)]
                    ok = [i for i, x in enumerate(windows) if x >= 0.9 * ref_share]
                    hits.append((ok[0] + 1) * WINDOW if ok else None)
                reach = ", ".join("never" if h is None else f"≤{h}" for h in hits)
            lines.append(
                f"| {method} | {_ms(regret[:, -1], 1)} | {_ms(u.mean(1))} | {_ms(u[:, -500:].mean(1))} | "
                f"{_ms(new_share, 3)} | {_ms(last_share, 3)} | {reach} | {_ms(explored.mean(1), 3)} |"
            )
            axes[0, s].plot(regret.mean(0), label=method)
            share_t = np.convolve((picks == new_col).mean(0), np.ones(WINDOW) / WINDOW, mode="valid")
            axes2[0, s].plot(np.arange(len(share_t)) + WINDOW, share_t, label=method)
        oracle_reward = oracle.mean(1)
        lines += [
            "",
            f"Oracle mean reward {_ms(oracle_reward)}; retrained router's share of {new_name} after registration: "
            + (f"{ref_share:.3f}" if ref_share is not None else "not run")
            + f". 'first window': the first window of {WINDOW} queries after registration (counted from it) where "
            "the new LLM's share reaches 90% of the retrained router's, per seed.",
            "",
        ]
        for ax, title in (
            (axes[0, s], "cumulative regret"),
            (axes2[0, s], f"share of {new_name} ({WINDOW}-query mean)"),
        ):
            ax.axvline(reg, color="grey", lw=0.5)
            ax.set_title(f"{tag} {scen}: {title}")
            ax.set_xlabel("query")
            ax.legend(fontsize=7)
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}_regret.png", dpi=110)
    fig2.tight_layout()
    fig2.savefig(RESULTS / f"{stem}_share.png", dpi=110)
    lines += [f"![regret]({stem}_regret.png)", "", f"![share]({stem}_share.png)", ""]
    text = "\n".join(lines)
    print(text)
    (RESULTS / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
