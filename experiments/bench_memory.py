"""Memory of serving a large stored graph (issue 14): peak RSS of reattaching a checkpoint's GNN to N stored queries
and of saving the resulting checkpoint, one size per child process (peaks do not mix).

    python experiments/bench_memory.py --checkpoint .graphrouter/checkpoint.pt --sizes 100000,300000

The stored graph of N queries is bench_api.py's ``grow``: the checkpoint's own queries plus perturbed copies. Peak
RSS is the child's ``ru_maxrss`` after each phase: load, grow, reattach (neighbour index, serving caches), save.
Writes experiments/results/bench_memory.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "bench_memory.md"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(checkpoint: str, n: int) -> None:
    """Measure one size; print one JSON line."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "experiments"))
    from bench_api import grow

    from graphrouter.checkpoint import load_checkpoint, save_checkpoint

    out: dict[str, float] = {}
    ckpt = load_checkpoint(checkpoint)
    out["load_mb"] = peak_mb()
    world = grow(ckpt.router.world, n)
    out["grow_mb"] = peak_mb()
    t = time.perf_counter()
    sized = copy.deepcopy(ckpt.router)
    sized.reattach(world)
    out["reattach_s"], out["reattach_mb"] = time.perf_counter() - t, peak_mb()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pt"
        t = time.perf_counter()
        save_checkpoint(sized, ckpt.embedding_model, path)
        out["save_s"], out["save_mb"], out["file_mb"] = time.perf_counter() - t, peak_mb(), path.stat().st_size / 1e6
    print(json.dumps(out), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=str(ROOT / ".graphrouter" / "checkpoint.pt"))
    p.add_argument("--sizes", default="100000,300000")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        child(args.checkpoint, args.child)
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--checkpoint", args.checkpoint, "--child", str(n)]
        run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if run.returncode != 0:  # e.g. killed by the kernel's OOM killer: say so, and go on
            rows.append(f"| {n:,} | failed (exit {run.returncode}) | | | | | | |")
        else:
            m = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append(
                f"| {n:,} | {m['load_mb']:,.0f} | {m['grow_mb']:,.0f} | {m['reattach_mb']:,.0f} "
                f"| {m['reattach_s']:.0f} | {m['save_mb']:,.0f} | {m['save_s']:.0f} | {m['file_mb']:,.0f} |"
            )
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# Memory of a large stored graph (issue 14)",
            "",
            f"`python experiments/bench_memory.py --checkpoint {args.checkpoint} --sizes {args.sizes}`, "
            f"{time.strftime('%Y-%m-%d')}, this 2-core 24 GB machine (shared with other jobs). Peak RSS in MB of a "
            "child process after each phase; the stored graph is bench_api.py's `grow` of the checkpoint's queries.",
            "",
            "| stored queries | after load | after grow | after reattach | reattach (s) | after save | save (s) "
            "| checkpoint file (MB) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
