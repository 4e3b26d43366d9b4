"""How well the cost model predicts what a call is billed, per candidate of a store: one multiplier for the whole
computed cost against the factors the model chooses (a factor each for the input and the output part where the
costs show they scale apart, :func:`graphrouter.cost.fit_factors`), fitted on 80% of each candidate's costs and
measured on the other 20% (median |log(predicted / billed)|), and the cost predicted for a 12,000-token prompt.

``--answer-tokens N`` re-bills every outcome as if the candidate had answered on the store's prompts in a number of
tokens drawn from a log-normal of median N and σ ``--answer-spread`` (input tokens × input price + answer tokens ×
output price, the prompt counted as the router counts it): what proxy traffic of short answers looks like, on the
store's real prompt lengths; a 12,000-token prompt's bill then counts the mean answer. Without it, the store's own
costs.

    python experiments/cost_factors.py --store .graphrouter/graph.db [--answer-tokens 60] [--name dcrouter]
    python experiments/cost_factors.py --simulate

Writes ``experiments/results/cost_factors_<name>.md``. ``--simulate``: how often the fit splits the factors on
simulated costs (100 draws each at 20, 200 and 2,000 costs) where it should (answers of 60 tokens) and where it
should not (costs proportional to the computed ones, noisy, or with a few outliers); writes
``experiments/results/cost_factors_simulated.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from graph_store import open_store
from graphrouter.cost import CostModel, usd_costs
from graphrouter.cost_factors import fit_factors, shrunk_multiplier
from graphrouter.routing_data import RoutingData
from graphrouter.tokens import count_tokens

RESULTS = Path(__file__).resolve().parent / "results"
LONG_PROMPT = 12_000.0


def predicted(factors: np.ndarray, prices: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """USD of ``tokens`` input tokens at one candidate's ``prices`` (2,) and ``factors`` (2,), as the cost model
    predicts it."""
    return CostModel(prices[None], np.zeros((1, 2)), factors=factors[None]).cost(tokens)[:, 0]


def one_multiplier(inputs: np.ndarray, outputs: np.ndarray, billed: np.ndarray) -> np.ndarray:
    """The last release's fit: the geometric mean of billed / computed, shrunk towards 1 with 5 outcomes (where a
    cost is computed), within the 1000x bound."""
    ok = inputs + outputs > 0
    logs = np.log(billed[ok] / (inputs + outputs)[ok])
    m = float(shrunk_multiplier(np.array(logs.sum()), np.array(ok.sum() + CostModel.prior_outcomes)))
    return np.array([m, m])


def rows(
    data: RoutingData, tokens: np.ndarray, answer_tokens: float | None, spread: float, seed: int
) -> list[list[str]]:
    rng, out = np.random.default_rng(seed), []
    mean_answer = answer_tokens * np.exp(spread**2 / 2) if answer_tokens else None
    for c, name in enumerate(data.candidates):
        prices = data.candidate_prices[c]
        billed = data.cost[:, c].copy()
        if answer_tokens is not None:
            answers = answer_tokens * np.exp(rng.normal(0.0, spread, len(tokens)))
            billed = np.where(np.isfinite(billed), usd_costs(tokens, prices[None], answers)[:, 0], np.nan)
        ok = np.flatnonzero(np.isfinite(billed) & (billed > 0))
        if len(ok) < 10:
            continue
        test = np.zeros(len(ok), bool)
        test[rng.permutation(len(ok))[: len(ok) // 5]] = True
        train, held = ok[~test], ok[test]
        inputs = usd_costs(tokens[train], prices[None] * [1, 0])[:, 0]
        outputs = usd_costs(tokens[train], prices[None] * [0, 1])[:, 0]
        fits = {
            "one": one_multiplier(inputs, outputs, billed[train]),
            "chosen": fit_factors(inputs, outputs, billed[train], CostModel.prior_outcomes),
        }
        errors = {
            k: np.median(np.abs(np.log(predicted(f, prices, tokens[held]) / billed[held]))) for k, f in fits.items()
        }
        truth = usd_costs(np.array([LONG_PROMPT]), prices[None], mean_answer)[0, 0] if mean_answer else None
        long = {k: predicted(f, prices, np.array([LONG_PROMPT]))[0] for k, f in fits.items()}
        chosen = fits["chosen"]
        out.append([
            name, f"{len(train):,}", "two" if chosen[0] != chosen[1] else "one", f"{chosen[0]:.3f} / {chosen[1]:.3f}",
            f"{errors['one']:.4f}", f"{errors['chosen']:.4f}",
            f"{long['one'] / truth:.2f}" if truth else "", f"{long['chosen'] / truth:.2f}" if truth else "",
        ])  # fmt: skip
    return out


SIMULATED = {  # name → (prompt tokens low, high, input and output USD per 1M tokens)
    "60-token answers (σ 0.7), prompts 20–2,000": (20, 2000, 2.5, 10.0),
    "the same, prompts 100–800, gpt-4o's prices": (100, 800, 5.0, 15.0),
    "the same, prompts 100–800, gemini-1.5-flash's prices": (100, 800, 0.075, 0.3),
    "an agent, 3x (σ 0.5)": (20, 2000, 2.5, 10.0),
    "an agent, 3x (σ 1)": (20, 2000, 2.5, 10.0),
    "an LLM as priced (σ 0.05), 2 costs 30x on its longest prompts": (20, 2000, 2.5, 10.0),
    "an LLM as priced (σ 0.05), 5 costs 10x on its shortest prompts": (20, 2000, 2.5, 10.0),
    "an agent, 3x, one cost 30x": (20, 2000, 2.5, 10.0),
}


def simulated_costs(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi, p_in, p_out = SIMULATED[name]
    tokens = rng.integers(lo, hi, n).astype(float)
    inputs, outputs = tokens * p_in / 1e6, np.full(n, 512 * p_out / 1e6)
    if name.startswith(("60-token", "the same")):
        return inputs, outputs, inputs + outputs * 60 / 512 * np.exp(rng.normal(0, 0.7, n))
    if name.startswith("an agent, 3x (σ"):
        sigma = 0.5 if "0.5" in name else 1.0
        return inputs, outputs, 3 * (inputs + outputs) * np.exp(rng.normal(0, sigma, n))
    billed = (inputs + outputs) * (3.0 if name.startswith("an agent") else np.exp(rng.normal(0, 0.05, n)))
    order = np.argsort(tokens)
    rows = {"2 costs": order[-2:], "5 costs": order[:5]}.get(name.split(", ")[-1][:7], rng.integers(n, size=1))
    billed[rows] *= 30 if "30x" in name else 10
    return inputs, outputs, billed


def simulate(seed: int) -> str:
    rng, sizes = np.random.default_rng(seed), (20, 200, 2000)
    lines = [
        "# Cost factors on simulated costs: how often the fit splits them (100 draws each)",
        "",
        f"`python experiments/cost_factors.py --simulate --seed {seed}`",
        "",
        "| costs | " + " | ".join(f"{n:,} costs" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name in SIMULATED:
        shares = []
        for n in sizes:
            fits = [fit_factors(*simulated_costs(name, n, rng), CostModel.prior_outcomes) for _ in range(100)]
            shares.append(f"{np.mean([f[0] != f[1] for f in fits]):.0%}")
        lines.append(f"| {name} | " + " | ".join(shares) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="the store (a file path or bolt:// URI)")
    parser.add_argument("--simulate", action="store_true", help="split rates on simulated costs instead")
    parser.add_argument("--answer-tokens", type=float, default=None, help="re-bill as answers of this many tokens")
    parser.add_argument("--answer-spread", type=float, default=0.7, help="σ of the answers' log-normal length")
    parser.add_argument("--name", default=None, help="results file suffix (default: the store file's stem)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.simulate:
        text = simulate(args.seed)
        print(text)
        (RESULTS / "cost_factors_simulated.md").write_text(text)
        return
    if not args.store:
        parser.error("give --store (or --simulate)")
    with open_store(args.store, create=False) as store:
        data = RoutingData.from_snapshot(store.snapshot())
    tokens = np.asarray(count_tokens(data.query_text), dtype=np.float64)
    table = rows(data, tokens, args.answer_tokens, args.answer_spread, args.seed)
    billed = (
        f"re-billed as answers of median {args.answer_tokens:g} tokens (σ {args.answer_spread:g})"
        if args.answer_tokens
        else "the store's own costs"
    )
    head = ["candidate", "costs fitted", "factors", "input / output factor", "error, one", "error, chosen",
            "12k prompt / bill, one", "12k prompt / bill, chosen"]  # fmt: skip
    lines = [
        f"# Cost factors: {args.name or Path(args.store).stem}, {billed}",
        "",
        "`python experiments/cost_factors.py --store <store> --name "
        f"{args.name or Path(args.store).stem} --seed {args.seed}"
        + (
            f" --answer-tokens {args.answer_tokens:g} --answer-spread {args.answer_spread:g}`"
            if args.answer_tokens
            else "`"
        ),
        "",
        "Median |log(predicted / billed)| on 20% of each candidate's costs held out (seed "
        f"{args.seed}); 'one': one multiplier for the whole computed cost; 'chosen': the cost model's fit.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in table),
        "",
        f"{sum(r[2] == 'two' for r in table)} of {len(table)} candidates get two factors.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    name = args.name or Path(args.store).stem
    suffix = f"_{args.answer_tokens:g}tok" if args.answer_tokens else ""
    (RESULTS / f"cost_factors_{name}{suffix}.md").write_text(text)


if __name__ == "__main__":
    main()
