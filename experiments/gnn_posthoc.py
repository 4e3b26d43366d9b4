"""Would a post-hoc step on top of the GNN route better? Measured on the GNN members' own validation splits of each
CV fold's training queries (the test folds are never read).

    python experiments/gnn_posthoc.py --dataset NAME --store PATH [--embedding-cache F] [--cache DIR] [--folds 5]

Every ensemble member holds out an inner validation split of its fold's training queries and keeps its cold-query
effect predictions there (:attr:`~graphrouter.routers.gnn.training.Member.val_prob`, what the per-task fallback is
chosen on). Two candidate steps, each scored by the reward of routing those validation queries (the router's own
predicted costs and penalty, three scenarios), minus routing by the member's prediction alone:

- **blend**: ``(1 − a) · GNN + a · simple``, the simple predictor fitted on the member's inner-training queries
  only: the MLP (query embedding + task), matrix factorisation, or the per-task table;
- **recalibration**: per-candidate and per-(task, candidate) logit offsets, the shrunk mean residual of the *other*
  members' validation predictions on rows this member did not hold out (so fitted and scored rows are disjoint).

Slightly in the GNN's favour: a member's validation rows also chose its early stopping. Slightly in
recalibration's: the other members' predictions were made with this member's validation rows among their stored
(visible) neighbours.

``--cache`` is the runner's (``experiments/evaluate.py --cache``): the CV's fitted GNNs are reused, not refitted, by the
same code (a fit kept by another version is refitted: experiments/fit_cache.py).
Writes ``experiments/results/<dataset>_gnn_posthoc.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.benchmark import fit_gnn, load, splits, store_arguments  # noqa: E402
from experiments.cv import masked_choice  # noqa: E402
from graphrouter.rewards import SCENARIOS, utility  # noqa: E402
from graphrouter.routers import ROUTERS  # noqa: E402
from graphrouter.routers.gnn.fallback import task_table  # noqa: E402

ALPHAS = (0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
SIMPLE = ("mlp", "mf", "table")
KAPPAS = ((1e9, 100.0), (1e9, 30.0), (300.0, 100.0), (100.0, 30.0), (30.0, 30.0), (10.0, 10.0))  # (task, candidate)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def offsets(z: np.ndarray, y: np.ndarray, task: np.ndarray, n_tasks: int, kappa: tuple[float, float]) -> np.ndarray:
    """(n_tasks, C) logit offsets: a per-candidate one-step shrunk residual (prior mass ``kappa[1]``), plus a
    per-task one on top of it (``kappa[0]``)."""
    p, seen = 1 / (1 + np.exp(-z)), np.isfinite(y)
    r, w = np.where(seen, y - p, 0.0), np.where(seen, p * (1 - p), 0.0)
    glob = r.sum(0) / (w.sum(0) + kappa[1])
    out = np.tile(glob, (n_tasks, 1))
    for t in range(n_tasks):
        m = task == t
        out[t] += (r[m] - w[m] * glob).sum(0) / (w[m].sum(0) + kappa[0])
    return out


def routed(pred: np.ndarray, eff: np.ndarray, cn: np.ndarray, pred_cn: np.ndarray, router) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Per scenario, the per-query reward of routing by ``pred`` (with the router's predicted costs and penalty)."""
    out, rows = {}, np.arange(len(eff))
    for scen, w in SCENARIOS.items():
        pen = router.penalty(w)
        ch = masked_choice(utility(pred, pred_cn, w) - (0.0 if pen is None else pen[None, :]), eff)
        out[scen] = utility(eff[rows, ch], np.nan_to_num(cn[rows, ch]), w)
    return out


def recalibrated(member, others: list, effect: np.ndarray, task: np.ndarray, n_tasks: int) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Per prior (KAPPAS), ``member``'s validation predictions with logit offsets fitted on the ``others``'
    validation rows that ``member`` did not hold out (``effect``, ``task``: the fold's training queries, by
    position); none without others."""
    own = set(member.val_rows.tolist())
    keeps = [np.array([r not in own for r in o.val_rows], dtype=bool) for o in others]
    rows = [o.val_rows[k] for o, k in zip(others, keeps, strict=True)]
    if not sum(len(r) for r in rows):
        return {}
    fr = np.concatenate(rows)
    fz = logit(np.concatenate([o.val_prob[k] for o, k in zip(others, keeps, strict=True)]))
    out = {}
    for kappa in KAPPAS:
        off = offsets(fz, effect[fr], task[fr], n_tasks, kappa)
        z = logit(member.val_prob) + off[task[member.val_rows]]
        out[f"recalibrate κ_task={kappa[0]:g} κ_cand={kappa[1]:g}"] = 1 / (1 + np.exp(-z))
    return out


def fold_rewards(world, train: np.ndarray, router) -> dict[tuple[str, str], list[np.ndarray]]:  # type: ignore[no-untyped-def]
    """Per (variant, scenario), the per-query rewards over every member's validation rows of one fold."""
    data, n_tasks = world.data, len(world.data.task_names)
    task = data.query_task[train].astype(np.int64)
    pred_cn = router.cost_model.normalise(router.cost_model.cost(world.query_tokens[train]), task)
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    members = [m for m in router.members if m.val_rows is not None]
    for m in members:
        rows, inner = m.val_rows, np.setdiff1d(np.arange(len(train)), m.val_rows)
        eff, cn, pc = data.effect[train[rows]], data.cost_norm()[train[rows]], pred_cn[rows]
        q = world.features(train[rows], task_given=True)
        simple = {s: ROUTERS[s]().fit(world, train[inner]).predict_effect(q) for s in ("mlp", "mf")}
        tab = task_table(data.effect[train[inner]], task[inner], n_tasks)[task[rows]]
        simple["table"] = np.where(np.isfinite(tab), tab, m.val_prob)
        variants = {"gnn": m.val_prob}
        variants |= {f"blend {s} a={a:g}": (1 - a) * m.val_prob + a * simple[s] for s in SIMPLE for a in ALPHAS}
        variants |= recalibrated(m, [o for o in members if o is not m], data.effect[train], task, n_tasks)
        for name, pred in variants.items():
            for scen, r in routed(pred, eff, cn, pc, router).items():
                out.setdefault((name, scen), []).append(r)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    store_arguments(p)
    p.add_argument("--cache", default=None, help="the runner's cache of fitted GNNs (experiments/evaluate.py)")
    p.add_argument("--folds", type=int, default=5)
    args = p.parse_args()
    args.gnn_seeds = args.gnn_max_episodes = None  # the runner's default recipe (the CV's fits)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    world, _, _ = load(args)
    per_fold = []
    for f, (train, _test) in enumerate(splits(world, "cv", args.folds)):
        per_fold.append(fold_rewards(world, train, fit_gnn(world, train, args, "all")))
        print(f"fold {f} done ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    names = list(dict.fromkeys(k[0] for k in per_fold[0]))
    lines = [
        f"# {args.dataset}: post-hoc steps on the GNN, on its members' validation splits",
        "",
        f"`python experiments/gnn_posthoc.py --dataset {args.dataset} --store <store> --cache <fits> "
        f"--folds {args.folds}` ({time.perf_counter() - t0:.0f}s).",
        "",
        "Each CV fold's GNN members hold out inner validation splits of the fold's training queries (the test folds "
        "are never read); on those rows, the reward of routing by a member's prediction after a post-hoc step, "
        "minus routing by the member's prediction alone (first row: that reward itself). Mean over folds [per fold], "
        "task given, the router's predicted costs and uncertainty penalty.",
        "",
        "- blend a: (1 − a) · GNN + a · a simple predictor fitted on the member's inner-training queries only (the "
        "MLP on the query embedding and task, matrix factorisation, the per-task table);",
        "- recalibrate: per-candidate (prior mass κ_cand) and per-(task, candidate) (κ_task) logit offsets, the "
        "shrunk mean residual of the other members' validation predictions on rows this member did not hold out.",
        "",
        "Slightly in the GNN's favour: a member's validation rows also chose its early stopping. Slightly in "
        "recalibration's: the other members predicted with this member's validation rows as visible neighbours.",
        "",
        "| variant | " + " | ".join(SCENARIOS) + " |",
        "|---|" + "---:|" * len(SCENARIOS),
    ]
    for name in names:
        cells = []
        for scen in SCENARIOS:
            d = [np.concatenate(r[(name, scen)]).mean() - np.concatenate(r[("gnn", scen)]).mean() for r in per_fold]
            cells.append(f"{np.mean(d):+.4f} [{' '.join(f'{x:+.4f}' for x in d)}]")
        if name == "gnn":
            cells = [f"{np.mean([np.concatenate(r[(name, s)]).mean() for r in per_fold]):.4f}" for s in SCENARIOS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset}_gnn_posthoc.md").write_text(text)


if __name__ == "__main__":
    main()
