"""Memory of serving a large stored graph (issue 14): peak RSS of reattaching a checkpoint's GNN to N stored queries,
of saving the resulting checkpoint and of loading it again, in child processes (peaks do not mix).

    python experiments/bench_memory.py --checkpoint .graphrouter/checkpoint.pt --sizes 100000,300000,1000000

The stored graph of N queries is bench_api.py's ``grow``: the checkpoint's own queries plus perturbed copies. Peak
RSS is the child's ``ru_maxrss`` after each phase: load, grow, reattach (neighbour index, serving caches), save in
this version's format (/3, streamed), then, up to ``--torch-save-max`` stored queries, the same router with
``torch.save`` as format /2 wrote it (side by side: /3 first, so each peak is its own). A second child loads the /3
file, as a service starting on it does. Writes experiments/results/bench_memory.md.
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


def child(checkpoint: str, n: int, out_path: str, torch_save: bool) -> None:
    """Grow, reattach and save one size; print one JSON line."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "experiments"))
    import torch
    from bench_api import grow

    from graphrouter.checkpoint import load_checkpoint, save_checkpoint
    from graphrouter.neighbours import NeighbourIndex

    torch.set_num_threads(1)
    out: dict[str, float] = {}
    ckpt = load_checkpoint(checkpoint)
    out["load_mb"] = peak_mb()
    world = grow(ckpt.router.world, n)
    out["grow_mb"] = peak_mb()
    build = NeighbourIndex._index
    index_s = []

    def timed(self):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return build(self)
        finally:
            index_s.append(time.perf_counter() - t)

    NeighbourIndex._index = timed  # type: ignore[method-assign]
    t = time.perf_counter()
    sized = copy.deepcopy(ckpt.router)
    sized.reattach(world)
    out["reattach_s"], out["reattach_mb"] = time.perf_counter() - t, peak_mb()
    out["index_s"] = sum(index_s)
    model = ckpt.embedding_model
    del world, ckpt
    path = Path(out_path)
    t = time.perf_counter()
    save_checkpoint(sized, model, path)
    out["save_s"], out["save_mb"], out["file_mb"] = time.perf_counter() - t, peak_mb(), path.stat().st_size / 1e6
    if torch_save:  # the /2 way, for comparison: torch.save builds the whole pickle in memory first
        old = path.with_suffix(".torch.pt")
        t = time.perf_counter()
        torch.save({"format": "graphrouter-checkpoint/2", "router": sized}, old)
        out["torch_save_s"], out["torch_save_mb"] = time.perf_counter() - t, peak_mb()
        out["torch_file_mb"] = old.stat().st_size / 1e6
        old.unlink()
    print(json.dumps(out), flush=True)


def load_child(path: str) -> None:
    """Load a checkpoint as a service does; print one JSON line."""
    sys.path.insert(0, str(ROOT))
    from graphrouter.checkpoint import load_checkpoint

    before = peak_mb()
    t = time.perf_counter()
    load_checkpoint(path)
    print(json.dumps({"load_s": time.perf_counter() - t, "load_mb": peak_mb(), "import_mb": before}), flush=True)


def run_child(*args: str) -> dict[str, float] | int:
    cmd = [sys.executable, __file__, *args]
    run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if run.returncode != 0:  # e.g. killed by the kernel's OOM killer: say so, and go on
        print(run.stderr[-2000:], file=sys.stderr)
        return run.returncode
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=str(ROOT / ".graphrouter" / "checkpoint.pt"))
    p.add_argument("--sizes", default="100000,300000")
    p.add_argument("--torch-save-max", type=int, default=300_000, help="compare with torch.save up to this size")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-torch-save", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--load-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        child(args.checkpoint, args.child, args.child_out, args.child_torch_save)
        return
    if args.load_child is not None:
        load_child(args.load_child)
        return
    rows, started = [], time.perf_counter()
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
            path = str(Path(tmp) / "checkpoint.pt")
            flags = ["--child-torch-save"] if n <= args.torch_save_max else []
            m = run_child("--checkpoint", args.checkpoint, "--child", str(n), "--child-out", path, *flags)
            if isinstance(m, int):
                rows.append(f"| {n:,} | failed (exit {m}) |" + " |" * 12)
                print(rows[-1], flush=True)
                continue
            loaded = run_child("--load-child", path)
        old = (
            f"{m['torch_save_mb']:,.0f} | {m['torch_save_s']:.0f} | {m['torch_file_mb']:,.0f}"
            if "torch_save_mb" in m
            else "— | — | —"
        )
        load = "failed | —" if isinstance(loaded, int) else f"{loaded['load_mb']:,.0f} | {loaded['load_s']:.0f}"
        rows.append(
            f"| {n:,} | {m['load_mb']:,.0f} | {m['grow_mb']:,.0f} | {m['reattach_mb']:,.0f} | {m['reattach_s']:.0f} "
            f"| {m['index_s']:.0f} | {m['save_mb']:,.0f} | {m['save_s']:.0f} | {m['file_mb']:,.0f} | {old} | {load} |"
        )
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# Memory of a large stored graph (issue 14)",
            "",
            f"`python experiments/bench_memory.py --checkpoint {args.checkpoint} --sizes {args.sizes}`, "
            f"{time.strftime('%Y-%m-%d')}, this 2-core 24 GB machine (1-minute load average {os.getloadavg()[0]:.1f} "
            f"at the end), {time.perf_counter() - started:.0f} s in all. Peak RSS in MB of a child process after each "
            "phase; the stored graph is bench_api.py's `grow` of the checkpoint's queries (a dcrouter checkpoint, "
            "with perturbed copies of its queries). torch runs on one thread; the neighbour index (faiss HNSW) is "
            "built on one thread.",
            "",
            "| stored queries | after load | after grow | after reattach | reattach (s) | of which index (s) "
            "| after save /3 | save /3 (s) | file /3 (MB) | after torch.save /2 | torch.save (s) | file /2 (MB) "
            "| loading /3: peak | load (s) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "after load … after save /3: the child that grows the stored graph, reattaches the trained GNN to it "
            "(neighbour index, one forward pass per member to cache every layer's states) and saves it; "
            "after torch.save /2: the same router saved as format /2 did (whole pickle built in memory first), in "
            "the same child after the /3 save. loading /3: a second child loading the /3 file, as a starting "
            "service does.",
            "",
        ]
    )
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
