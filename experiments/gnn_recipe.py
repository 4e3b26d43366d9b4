"""The GNN's ensemble size and width, compared on an inner validation split of one CV fold's training queries (the
test fold is never read).

    python experiments/gnn_recipe.py --dataset NAME --store PATH [--embedding-cache F] [--cache DIR]
        [--variants '[{"seeds": [0, 1, 2, 3, 4]}, {"seeds": [0, 1, 2], "hidden": 64}]']

Fold 0 of the runner's 5-fold CV (``experiments/evaluate.py --split cv``); its training queries are split 80/20
(seed 1); each variant (keyword arguments of the GNN router) is fitted on the 80% and routes the 20%, task given
and inferred, three scenarios. For a variant of M members, the reward of every ensemble of m ≤ M of its members is
reported (mean ± std over the subsets of m): how much each member adds. Fits are kept in ``--cache``. Writes
``experiments/results/<dataset>_gnn_recipe.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.benchmark import load, rewards, splits, store_arguments  # noqa: E402
from experiments.fit_cache import FINGERPRINT  # noqa: E402
from graphrouter.rewards import SCENARIOS  # noqa: E402
from graphrouter.routers.baselines import inner_split  # noqa: E402
from graphrouter.routers.gnn import GnnRouter  # noqa: E402

DEFAULT_VARIANTS = '[{"seeds": [0, 1, 2, 3, 4]}, {"seeds": [0, 1, 2], "hidden": 64}]'


def fitted(world, fit_idx: np.ndarray, variant: dict, cache: Path | None, dataset: str) -> GnnRouter:  # type: ignore[no-untyped-def]
    """The GNN of ``variant`` fitted on ``fit_idx`` (or the same fit from ``cache``)."""
    key = hashlib.sha256(json.dumps(variant, sort_keys=True).encode() + fit_idx.tobytes()).hexdigest()[:10]
    path = cache / f"{dataset}-recipe-{key}-{FINGERPRINT}.pt" if cache else None
    if path is not None and path.exists():
        return torch.load(path, weights_only=False)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in variant.items()}
    router = GnnRouter(**kwargs).fit(world, fit_idx)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(router, path)
    return router


def subset_rewards(world, router: GnnRouter, val_idx: np.ndarray) -> dict[int, dict[tuple[str, str], list[float]]]:  # type: ignore[no-untyped-def]
    """Per ensemble size m, per (mode, scenario), the validation reward of every subset of m members."""
    every = np.arange(world.data.n_candidates)
    out: dict[int, dict[tuple[str, str], list[float]]] = {}
    for m in range(1, len(router.members) + 1):
        for keep in itertools.combinations(range(len(router.members)), m):
            got = rewards(world, router.sub_ensemble(list(keep)), val_idx, every, list(SCENARIOS))
            for cell, reward in got.items():
                out.setdefault(m, {}).setdefault(cell, []).append(reward)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    store_arguments(p)
    p.add_argument("--cache", type=Path, default=None, help="keep the fits here and reuse them")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help="a JSON list of the GNN's keyword arguments")
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    world, _, _ = load(args)
    train, _test = splits(world, "cv", 5)[0]
    fit_idx, val_idx = inner_split(train, 0.2, seed=1)
    lines = [
        f"# {args.dataset}: the GNN's ensemble size and width on an inner validation split",
        "",
        f"`python experiments/gnn_recipe.py --dataset {args.dataset} --store <store> --variants '{args.variants}'`",
        "",
        f"Fold 0 of the 5-fold CV: {len(fit_idx):,} of its training queries to fit on, {len(val_idx):,} to validate "
        "on (the test fold is never read). Reward of an ensemble of m members (mean ± std over the subsets of m of "
        "the variant's members).",
    ]
    for variant in json.loads(args.variants):
        router = fitted(world, fit_idx, variant, args.cache, args.dataset)
        res = subset_rewards(world, router, val_idx)
        print(f"{variant} done ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
        sizes = sorted(res)
        lines += ["", f"### {json.dumps(variant)}", "", "| task, scenario | " + " | ".join(f"m={m}" for m in sizes)]
        lines[-1] += " |"
        lines.append("|---|" + "---:|" * len(sizes))
        for mode, scen in res[1]:
            cells = [f"{np.mean(res[m][(mode, scen)]):.4f} ± {np.std(res[m][(mode, scen)]):.4f}" for m in sizes]
            lines.append(f"| {mode}, {scen} | " + " | ".join(cells) + " |")
    lines += ["", f"Wall time {time.perf_counter() - t0:.0f}s, 1 torch thread."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset}_gnn_recipe.md").write_text(text)


if __name__ == "__main__":
    main()
