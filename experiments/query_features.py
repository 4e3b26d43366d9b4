"""Do hand-crafted query features (length, options, digits, math, LaTeX, ...) help per-query routing on MMLU-Pro?

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/query_features.py [--data PARQUET] [--folds 5] [--seeds 3]
        [--out experiments/results/mmlu_pro_query_features.md]

Performance First (the reward of the picked LLM's outcome), 5-fold CV over questions (folds: ``default_rng(0)``
permutation). Compared: the per-task table (each LLM's success rate per task, shrunk to its overall rate with prior
mass 2); an MLP on [MiniLM embedding, task one-hot] with the table's logit as an offset; the same with the
standardised query features in its input; the same plus per-LLM linear feature terms; the table plus per-LLM linear
feature terms alone. Each model's hyperparameters (grid below) and epoch count are chosen on an inner 15% validation
split of the training folds (``default_rng(100 + fold)``) by masked BCE with early stopping; the chosen recipe is
refitted on all training folds with ``--seeds`` seeds whose logits are averaged. Writes ``--out``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn as nn
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphrouter.embeddings import Embedder  # noqa: E402

DATA = "../shared/data/MMLU-Pro/outcomes.parquet"
OPTION = re.compile(r"^([A-Z])\. (.*)$")
NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
MATH = set("=+-*/^$\\{}")
GRID = [dict(h=h, wd=wd, offset=off) for off in (True, False) for h in (128, 512) for wd in (1e-3, 1e-1)]
MODELS = {  # name: (features in the MLP's input, per-LLM linear feature terms, MLP trunk)
    "MLP (embedding + task)": (False, False, True),
    "MLP + features": (True, False, True),
    "MLP + features + per-LLM linear": (True, True, True),
    "table + per-LLM linear features": (False, True, False),
}
TABLE = "per-task table"
PAIRS = [("MLP + features", "MLP (embedding + task)"), ("MLP + features + per-LLM linear", "MLP (embedding + task)")]
PAIRS += [("table + per-LLM linear features", TABLE)] + [(m, TABLE) for m in list(MODELS)[:3]]


def load(path: str) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(questions × LLMs) outcomes (NaN where missing), question texts, task ids, LLM names; sorted by id/name."""
    t = pq.read_table(path, columns=["query_id", "query", "task", "llm", "effect"]).to_pydict()
    uq, first, qi = np.unique(np.array(t["query_id"]), return_index=True, return_inverse=True)
    llms, li = np.unique(np.array(t["llm"]), return_inverse=True)
    y = np.full((len(uq), len(llms)), np.nan)
    y[qi, li] = np.array(t["effect"], dtype=np.float64)
    task = np.unique(np.array([t["task"][i] for i in first]), return_inverse=True)[1]
    return y, [t["query"][i] for i in first], task, llms


def query_features(s: str) -> list[float]:
    """Ten features of a question: sizes, its options (the trailing "X. ..." lines), digits, math, numbers."""
    s = re.sub(r"\nAnswer:\s*$", "", s)
    lines = s.split("\n")
    k = len(lines)
    while k > 0 and OPTION.match(lines[k - 1]):
        k -= 1
    stem, opts = "\n".join(lines[:k]), [OPTION.match(line).group(2) for line in lines[k:]]  # type: ignore[union-attr]
    n = max(len(s), 1)
    opt_len = np.mean([len(o) for o in opts]) if opts else 0.0
    numeric = [
        bool(re.fullmatch(r"[\s$\\(]*-?[\d.,/]+.*", o))
        and sum(c.isdigit() for c in o) >= 0.3 * max(len(o.replace(" ", "")), 1)
        for o in opts
    ]
    return [
        np.log1p(len(s.split())), np.log1p(len(s)), len(opts), sum(c.isdigit() for c in s) / n,
        sum(c in MATH for c in s) / n, float("$" in s or "\\" in s), len(NUMBER.findall(stem)), np.log1p(opt_len),
        float((np.mean(numeric) if opts else 0.0) > 0.5), np.log1p(len(stem)) - np.log1p(sum(len(o) for o in opts)),
    ]  # fmt: skip


def task_table(y: np.ndarray, task: np.ndarray, rows: np.ndarray, n_tasks: int) -> np.ndarray:
    """(tasks × LLMs) success rates on ``rows``, shrunk to each LLM's overall rate with prior mass 2."""
    seen, y0 = ~np.isnan(y[rows]), np.nan_to_num(y[rows])
    overall = y0.sum(0) / seen.sum(0)
    s, n = np.zeros((n_tasks, y.shape[1])), np.zeros((n_tasks, y.shape[1]))
    np.add.at(s, task[rows], y0)
    np.add.at(n, task[rows], seen)
    return (s + 2 * overall) / (n + 2)


def picks(score: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(y), -np.inf, score).argmax(1)


def reward(score: np.ndarray, y: np.ndarray) -> float:
    """Mean outcome of the LLM with the highest score among those with an outcome."""
    return float(np.nan_to_num(y[np.arange(len(y)), picks(score, y)]).mean())


class Net(nn.Module):
    def __init__(self, din: int, h: int, n_llms: int, n_feat: int, perllm: bool, trunk: bool) -> None:
        super().__init__()
        self.trunk = None  # built only if used: its initialisation draws from torch's generator
        if trunk:
            self.trunk = nn.Sequential(nn.Linear(din, h), nn.ReLU(), nn.Dropout(0.2), nn.Linear(h, n_llms))
        self.lin = nn.Linear(n_feat, n_llms) if perllm else None
        self.bias = None if trunk else nn.Parameter(torch.zeros(n_llms))

    def forward(self, x: torch.Tensor, f: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
        o = off + (self.trunk(x) if self.trunk is not None else self.bias)
        return o + self.lin(f) if self.lin is not None else o


def fit(d: dict, tr: np.ndarray, va: np.ndarray | None, inp: np.ndarray, cfg: dict, epochs: int = 60, seed: int = 0):  # type: ignore[no-untyped-def]
    """Fit on ``tr`` (early stopping on ``va``'s masked BCE, patience 6, if given); (predict logits, epoch, BCE)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    prob = np.clip(task_table(d["y"], d["task"], tr, d["n_tasks"]), 1e-3, 1 - 1e-3)
    off = torch.tensor(np.log(prob / (1 - prob))[d["task"]] if cfg["offset"] else np.zeros(d["y"].shape)).float()
    x, f = torch.tensor(inp, dtype=torch.float32), torch.tensor(d["fz"], dtype=torch.float32)
    y, m = torch.tensor(np.nan_to_num(d["y"]), dtype=torch.float32), torch.tensor(~np.isnan(d["y"])).float()
    net = Net(inp.shape[1], cfg["h"], y.shape[1], f.shape[1], cfg["perllm"], cfg["trunk"])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.get("lr", 1e-3), weight_decay=cfg["wd"])
    bce = nn.BCEWithLogitsLoss(reduction="none")

    def evaluate(i: np.ndarray) -> tuple[float, np.ndarray]:
        net.eval()
        with torch.no_grad():
            o = net(x[i], f[i], off[i])
            return ((bce(o, y[i]) * m[i]).sum() / m[i].sum()).item(), o.numpy()

    best: tuple[float, int, dict | None] = (np.inf, 0, None)
    for ep in range(1, epochs + 1):
        net.train()
        p = rng.permutation(tr)
        for b in range(0, len(p), 256):
            i = p[b : b + 256]
            loss = (bce(net(x[i], f[i], off[i]), y[i]) * m[i]).sum() / m[i].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if va is not None:
            vl = evaluate(va)[0]
            if vl < best[0]:
                best = (vl, ep, {k: v.clone() for k, v in net.state_dict().items()})
            elif ep - best[1] >= 6:
                break
    if best[2] is not None:
        net.load_state_dict(best[2])
    return (lambda i: evaluate(i)[1]), best[1], best[0]


def run_fold(d: dict, te: np.ndarray, trall: np.ndarray, k: int, seeds: int, bar: tqdm) -> dict[str, dict]:
    """Per model: test reward, the inner-validation choice and the share of test picks that differ from the table."""
    r = np.random.default_rng(100 + k).permutation(trall)
    nv = int(0.15 * len(trall))
    va, tr = r[:nv], r[nv:]
    d["fz"] = (d["F"] - d["F"][trall].mean(0)) / (d["F"][trall].std(0) + 1e-9)
    y_te, table = d["y"][te], task_table(d["y"], d["task"], trall, d["n_tasks"])[d["task"][te]]
    overall = np.nan_to_num(d["y"][trall]).sum(0) / (~np.isnan(d["y"][trall])).sum(0)
    out = {"single best LLM": dict(reward=reward(np.tile(overall, (len(te), 1)), y_te))}
    out[TABLE] = dict(reward=reward(table, y_te))
    for name, (use_f, perllm, trunk) in MODELS.items():
        inp = np.hstack([d["X"], d["toh"]] + ([d["fz"]] if use_f else [])).astype(np.float32)
        grid = [dict(g, perllm=perllm, trunk=trunk) for g in GRID] if trunk else [
            dict(h=0, wd=wd, offset=True, perllm=True, trunk=False, lr=1e-2) for wd in (1e-3, 1e-1)
        ]  # fmt: skip
        best = None
        for cfg in grid:
            _, ep, vl = fit(d, tr, va, inp, cfg)
            bar.update()
            if best is None or vl < best[0]:
                best = (vl, cfg, ep)
        score = np.mean([fit(d, trall, None, inp, best[1], best[2], s)[0](te) for s in range(seeds)], 0)
        bar.update(seeds)
        differ = float(np.mean(picks(score, y_te) != picks(table, y_te)))
        out[name] = dict(reward=reward(score, y_te), choice=dict(best[1], epochs=best[2], bce=best[0]), differ=differ)
    return out


def joined(values: list[float] | np.ndarray, fmt: str) -> str:
    return " ".join(format(v, fmt) for v in values)


def described(c: dict) -> str:
    """An inner-validation choice: the recipe, its epoch count and its validation BCE."""
    recipe = f"h={c['h']} wd={c['wd']:g}{' offset' if c['offset'] else ''}" if c["trunk"] else f"wd={c['wd']:g}"
    return f"{recipe}; {c['epochs']} ep; {c['bce']:.4f}"


def report(res: list[dict[str, dict]], command: str, wall: float) -> list[str]:
    """The results file's lines: rewards, paired differences, choices, pick shares, wall time."""
    lines = [command, "", "# mmlu_pro: hand-crafted query features for per-query routing (Performance First)", ""]
    lines += ["| model | test reward (mean ± std over folds) | per fold |", "|---|---:|---|"]
    for m in res[0]:
        v = [r[m]["reward"] for r in res]
        lines.append(f"| {m} | {np.mean(v):.4f} ± {np.std(v, ddof=1):.4f} | {joined(v, '.4f')} |")
    lines += ["", "### Paired differences per fold", "", "| difference | mean ± std | per fold |", "|---|---:|---|"]
    for a, b in PAIRS:
        v = np.array([r[a]["reward"] - r[b]["reward"] for r in res])
        lines.append(f"| {a} − {b} | {v.mean():+.4f} ± {v.std(ddof=1):.4f} | {joined(v, '+.4f')} |")
    lines += ["", "### Inner-validation choices (hidden width h, weight decay, table offset; epochs; val BCE)", ""]
    lines += ["| model | " + " | ".join(f"fold {k}" for k in range(len(res))) + " |", "|---|" + "---|" * len(res)]
    lines += [f"| {m} | " + " | ".join(described(r[m]["choice"]) for r in res) + " |" for m in MODELS]
    lines += ["", "### Share of test questions whose pick differs from the per-task table's", ""]
    lines += ["| model | mean | per fold |", "|---|---:|---|"]
    for m in MODELS:
        v = [r[m]["differ"] for r in res]
        lines.append(f"| {m} | {np.mean(v):.3f} | {joined(v, '.3f')} |")
    return lines + ["", f"Wall time {wall:.0f}s, 2 torch threads."]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=DATA, help="the outcomes parquet (query_id, query, task, llm, effect)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3, help="seeds averaged on each final refit")
    p.add_argument("--out", type=Path, default=Path("experiments/results/mmlu_pro_query_features.md"))
    args = p.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    y, texts, task, llms = load(args.data)
    embedder = Embedder()
    try:
        x = embedder.embed(texts, progress=True)
    finally:
        embedder.close()
    n_tasks = int(task.max()) + 1
    d = dict(y=y, task=task, n_tasks=n_tasks, X=x, toh=np.eye(n_tasks, dtype=np.float32)[task])
    d["F"] = np.array([query_features(s) for s in texts], dtype=np.float64)
    folds = np.array_split(np.random.default_rng(0).permutation(len(y)), args.folds)
    per_fold = (len(GRID) + args.seeds) * 3 + 2 + args.seeds
    bar = tqdm(total=per_fold * args.folds, desc="query-features", unit="fit", file=sys.stderr)
    res = []
    for k, te in enumerate(folds):
        res.append(run_fold(d, te, np.concatenate(folds[:k] + folds[k + 1 :]), k, args.seeds, bar))
        bar.write(f"fold {k}: " + ", ".join(f"{m} {r['reward']:.4f}" for m, r in res[-1].items()), file=sys.stderr)
    bar.close()
    command = f"`HF_HUB_OFFLINE=1 .venv/bin/python experiments/query_features.py --folds {args.folds}"
    command += f" --seeds {args.seeds}`" if args.data == DATA else f" --seeds {args.seeds} --data {args.data}`"
    text = "\n".join(report(res, command, time.perf_counter() - t0)) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
