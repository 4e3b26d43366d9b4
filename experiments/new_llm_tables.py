"""The markdown tables of the runner's ``new-llm`` protocol (experiments/evaluate.py): reward by withheld set, k
and probes, the share of the retrained − known-only gap recovered, and the summary over sets."""

from __future__ import annotations

import argparse
import json

import numpy as np

MODES = ("given", "inferred")
MIN_GAP = 0.005  # below this (retrained − known-only) gap, "recovered" is null: the withheld LLMs add nothing


def new_llm_tables(records: list[dict], scenarios: list[str], floor: list[dict] | None = None) -> list[str]:
    """Per withheld set: reward by k and probes for each mode × scenario, with the share of the gap recovered; then
    the summary (mean recovered over sets, the worst set, k=0 against known-only). ``floor``: the records of issue
    10's floor (experiments/new_llm_floor.py), shown as 'per-task mean' rows."""
    floor = floor or []
    lines = []
    cols = [(m, s) for m in MODES for s in scenarios]

    def cell(rs: list[dict]) -> str:
        r = np.mean([x["reward"] for x in rs])
        rec = [x["recovered"] for x in rs if x["recovered"] is not None]
        return f"{r:.4f}" + (f" ({100 * np.mean(rec):.0f}%)" if rec else " (—)")

    sets = list(dict.fromkeys(tuple(x["withheld"]) for x in records))
    head = "| withheld | routing | " + " | ".join(f"{s} ({m})" for m, s in cols) + " |"
    lines += [head, "|---|---|" + "---:|" * len(cols)]
    for w in sets:
        rs = [x for x in records if tuple(x["withheld"]) == w]
        pick = {c: [x for x in rs if (x["mode"], x["scenario"]) == c] for c in cols}
        name = ", ".join(w)
        lines.append(
            f"| {name} | retrained on all | "
            + " | ".join(f"{np.mean([x['retrained'] for x in pick[c]]):.4f}" for c in cols)
            + " |"
        )
        lines.append(
            f"| {name} | known only | "
            + " | ".join(f"{np.mean([x['known_only'] for x in pick[c]]):.4f}" for c in cols)
            + " |"
        )
        for k in sorted({x["k"] for x in rs}):
            for how in ("random", "designed") if k else ("designed",):
                sel = [x for x in rs if x["k"] == k and x["probes"] == how]
                if sel:
                    lines.append(
                        f"| {name} | k={k} {how if k else '(description only)'} | "
                        + " | ".join(cell([x for x in sel if (x["mode"], x["scenario"]) == c]) for c in cols)
                        + " |"
                    )
            sel = [x for x in floor if tuple(x["withheld"]) == w and x["k"] == k]
            if sel:
                lines.append(
                    f"| {name} | k={k} per-task mean | "
                    + " | ".join(cell([x for x in sel if (x["mode"], x["scenario"]) == c]) for c in cols)
                    + " |"
                )
    lines += [
        "",
        "Summary: share of the (retrained − known-only) gap recovered, mean over withheld sets "
        f"(sets whose gap is under {MIN_GAP} left out), and the worst set:",
        "",
    ]
    lines += ["| k | probes | " + " | ".join(f"{s} ({m})" for m, s in cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for k in sorted({x["k"] for x in records}):
        for how, source in (("random", records), ("designed", records), ("per-task mean", floor)):
            pool = [x for x in source if x["k"] == k and (source is floor or x["probes"] == how)]
            if not pool:
                continue
            cells = []
            for c in cols:
                per_set = []
                for w in sets:
                    rec = [
                        x["recovered"]
                        for x in pool
                        if tuple(x["withheld"]) == w and (x["mode"], x["scenario"]) == c and x["recovered"] is not None
                    ]
                    if rec:
                        per_set.append(np.mean(rec))
                cells.append(f"{100 * np.mean(per_set):.0f}% (min {100 * min(per_set):.0f}%)" if per_set else "—")
            lines.append(f"| {k} | {how} | " + " | ".join(cells) + " |")
    zero = [x for x in records if x["k"] == 0]
    if zero:
        worst = min(x["reward"] - x["known_only"] for x in zero)
        lines += [
            "",
            f"k=0 (description only): worst reward − known-only over every set, mode and scenario: {worst:+.4f}",
        ]
    return lines


def variant_tables(records: list[dict], args: argparse.Namespace, floor: list[dict] | None = None) -> list[str]:
    if not args.variants:
        return new_llm_tables(records, args.scenarios.split(","), floor)
    lines = []
    for v, variant in enumerate(json.loads(args.variants)):
        lines += [f"### variant {v}: {json.dumps(variant)}", ""]
        lines += new_llm_tables([x for x in records if x.get("variant") == v], args.scenarios.split(","))
        lines.append("")
    return lines
