"""The chat proxy's added latency: the same chat completion sent to a local upstream directly and through
``POST /v1/chat/completions`` (routed, ``model: "graphrouter"``, and passed through, ``model: <an LLM>``).

    python experiments/bench_proxy.py [--requests 300]
    python experiments/bench_proxy.py --store .graphrouter/graph.db --checkpoint .graphrouter/checkpoint.pt

With ``--store`` and ``--checkpoint`` (e.g. what ``make demo`` wrote), it measures the real thing: a copy of that
store (the original is never written), the checkpoint's own sentence encoder (onnx MiniLM, no embedding cache, so
every text is embedded on its request), and the texts of stored queries, each made new by a numbered prefix; every
LLM of the copy gets the local upstream with a PATCH.

Without them it is self-contained: it builds a small store and checkpoint inside a temp folder (the synthetic world of
tests/routing_world.py: 4 tasks, 5 LLMs, 120 stored queries; a small GNN, the default router) with the tests'
deterministic hash embedder standing in for the sentence encoder, so the routing decision here excludes the text
embedding (bench_api.md measures that: about 11 ms with the onnx encoder on this machine). The upstream is
tests/proxy_upstream.py's ``fast`` mode (a fixed answer with usage, no pause) under uvicorn; the service runs
under uvicorn too, each in a thread of this process, with the client in the main thread (one process: they share
the GIL, which counts against the proxy). Requests alternate direct / routed / pass-through, one at a time, each
with a text never sent before; every proxied call is recorded (a Query node and a pending outcome in the embedded
store, fsync'd) as in production: after its answer is sent, though the next request's store lookups may wait on
it. Writes experiments/results/bench_proxy.md (bench_proxy_real.md with --store).
Target (issue 15): under 20 ms p50 added, including the routing
decision.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from api.main import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from graph_store import LLM, QUERY  # noqa: E402
from graph_store.backends.embedded import EmbeddedStore  # noqa: E402
from graphrouter.checkpoint import save_checkpoint  # noqa: E402
from graphrouter.routers.gnn import GnnRouter  # noqa: E402
from tests.hash_embedder import HashEmbedder  # noqa: E402
from tests.proxy_upstream import free_port, running_upstream, serve_in_thread  # noqa: E402
from tests.routing_world import make_world, populate  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "bench_proxy.md"
RESULTS_REAL = ROOT / "experiments" / "results" / "bench_proxy_real.md"
PROXY_KEY = "bench-proxy-key"
ADMIN_KEY = "bench-admin-key"


def pct(ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(ms), q))


def run_paths(service: str, upstream_url: str, candidate: str, texts: list[str], n: int) -> dict[str, list[float]]:
    """Milliseconds per request of each path (direct, routed, pass-through), alternating, after 30 warm-up rounds;
    round i sends ``texts[i]`` (with the path's name, so each text is new to the service)."""
    auth = {"Authorization": f"Bearer {PROXY_KEY}"}
    proxy_url = f"{service}/v1/chat/completions"
    paths = {
        "direct": (f"{upstream_url}/chat/completions", "upstream-model", {}),
        "routed": (proxy_url, "graphrouter", auth),
        "pass-through": (proxy_url, candidate, auth),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    with httpx.Client(timeout=30) as client:
        for i in range(30 + n):
            for name, (url, model, headers) in paths.items():
                body = {"model": model, "messages": [{"role": "user", "content": f"[{name} {i}] {texts[i]}"}]}
                t0 = time.perf_counter()
                r = client.post(url, json=body, headers=headers)
                ms = (time.perf_counter() - t0) * 1000
                assert r.status_code == 200, r.text
                if i >= 30:
                    times[name].append(ms)
    return times


def table(times: dict[str, list[float]]) -> tuple[list[str], float]:
    """The markdown rows, and the routed path's added p50."""
    base50, base99 = pct(times["direct"], 50), pct(times["direct"], 99)
    rows = []
    for name, ms in times.items():
        p50, p99 = pct(ms, 50), pct(ms, 99)
        paired = [a - b for a, b in zip(ms, times["direct"], strict=True)]
        rows.append((name, p50, p99, p50 - base50, p99 - base99, statistics.median(paired)))
    lines = [
        "| path | p50 (ms) | p99 (ms) | added p50 (ms) | added p99 (ms) | median paired difference (ms) |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {n} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} | {e:.2f} |" for n, a, b, c, d, e in rows),
    ]
    return lines, rows[1][3]


@contextmanager
def server(argv: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run a server process until ``ready_url`` answers (any HTTP status for ``ready_url`` ending in '/', else 200);
    stop it after."""
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
            try:
                code = httpx.get(ready_url, timeout=2).status_code
                if code == 200 or ready_url.endswith("/"):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} did not answer within 300 s")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def measure_real(args: argparse.Namespace) -> None:
    """The proxy as deployed: ``graphrouter serve`` on a copy of a real store, in its own process, with the
    checkpoint's sentence encoder; the upstream in a second process; the client in this one."""
    up_port, port = free_port(), free_port()
    upstream_cmd = (
        "import uvicorn; from tests.proxy_upstream import Upstream, upstream_app; "
        f"uvicorn.run(upstream_app(Upstream(root='')), host='127.0.0.1', port={up_port}, log_level='warning')"
    )
    upstream_url = f"http://127.0.0.1:{up_port}/fast/v1"
    service = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "graph.db"
        with sqlite3.connect(args.store) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
        store = EmbeddedStore(copy)
        stored = [r.text for r in store.list_nodes(QUERY, limit=30 + args.requests)]
        candidates = [r.key for r in store.list_nodes(LLM)]
        store.close()
        env = {
            "GRAPHROUTER_STORE": str(copy),
            "GRAPHROUTER_API_KEY": ADMIN_KEY,
            "GRAPHROUTER_PROXY_KEY": PROXY_KEY,
            "GRAPHROUTER_PROXY_RATE_LIMIT": "0",
            "GRAPHROUTER_EMBEDDING_CACHE": str(Path(tmp) / "embeddings.sqlite"),
            "HF_HUB_OFFLINE": "1",
        }
        serve = [str(Path(sys.executable).parent / "graphrouter"), "serve", "--port", str(port)]
        serve += ["--checkpoint", str(args.checkpoint.resolve())]
        with (
            server([sys.executable, "-c", upstream_cmd], f"http://127.0.0.1:{up_port}/"),
            server(serve, f"{service}/ready", env),
            httpx.Client(timeout=30) as client,
        ):
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            for name in candidates:
                r = client.patch(f"{service}/v1/llms/{name}", json={"upstream": {"base_url": upstream_url}},
                                 headers=admin)  # fmt: skip
                assert r.status_code == 200, r.text
            times = run_paths(service, upstream_url, candidates[0], stored, args.requests)
    words = statistics.median(len(t.split()) for t in stored)
    lines, added = table(times)
    write(
        [
            f"`python experiments/bench_proxy.py --requests {args.requests} --store {args.store} --checkpoint "
            f"{args.checkpoint}`, one run, {time.strftime('%Y-%m-%d')}, this 2-core machine, loopback.",
            "",
            f"As deployed: `graphrouter serve` in its own process on a copy of the store ({len(candidates)} LLMs, "
            "each given the local upstream by PATCH), with the checkpoint's own sentence encoder (onnx MiniLM, one "
            "thread) and an empty embedding cache: **every request embeds its text**. Texts: the store's first "
            f"{len(stored)} query texts (median {words:.0f} words), each with a prefix that makes it new. Upstream: "
            "tests/proxy_upstream.py's `fast` mode under uvicorn in a second process; the client in a third. "
            f"Requests one at a time, the three paths alternating, {args.requests} each after 30 warm-up rounds; "
            "every proxied call recorded in the store (a Query node and a pending outcome).",
            "",
            *lines,
            "",
            "Added p50 of the routed path (text embedding, routing decision, upstream lookup, the forward): "
            f"**{added:.2f} ms** — {'meets' if added < 20 else 'misses'} the target of < 20 ms (issue 15). "
            f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        ],
        RESULTS_REAL,
    )


def measure_synthetic(args: argparse.Namespace) -> None:
    """The proxy over the synthetic world with the hash embedder (no text embedding in the numbers)."""
    world = make_world(per_task=30)
    started = time.monotonic()
    router = GnnRouter(seeds=(0,), max_episodes=2, eval_every=1, hidden=8).fit(world, np.arange(world.data.n_queries))
    fit_s = time.monotonic() - started
    data = world.data
    with tempfile.TemporaryDirectory() as tmp, running_upstream() as upstream:
        folder = Path(tmp)
        save_checkpoint(router, "hash-test", folder / "checkpoint.pt")
        store = EmbeddedStore(folder / "graph.db")
        populate(store, world, base_url=upstream.url("fast"))
        settings = Settings(
            store="unused",
            checkpoint=folder / "checkpoint.pt",
            embedding_cache=None,
            proxy_key=PROXY_KEY,
            proxy_rate_limit=0,
        )
        app = create_app(settings, store=store, embedder=HashEmbedder(world))
        texts = [f"task-{i % 4} bench question {i}" for i in range(30 + args.requests)]
        with serve_in_thread(app) as service:
            times = run_paths(service, upstream.url("fast"), data.candidates[0], texts, args.requests)
        counts = store.counts()
        store.close()
    lines, added = table(times)
    write(
        [
            f"`python experiments/bench_proxy.py --requests {args.requests}`, one run, "
            f"{time.strftime('%Y-%m-%d')}, this 2-core machine, loopback.",
            "",
            "Checkpoint: built inside the bench: the synthetic world of tests/routing_world.py (4 tasks, 5 LLMs, "
            f"120 stored queries), a GNN (hidden 8, 2 episodes, fitted in {fit_s:.1f} s), the tests' hash embedder "
            "instead of the sentence encoder, so **the text embedding is not in these numbers** "
            "(bench_proxy_real.md has them, with `--store` and `--checkpoint`). Upstream: tests/proxy_upstream.py's "
            "`fast` mode under uvicorn. Service under uvicorn, upstream and client all in one process (shared GIL). "
            f"Requests one at a time, the three paths alternating, {args.requests} each after 30 warm-up rounds; "
            "every text new; every proxied call recorded (a Query node and a pending outcome, fsync'd to the "
            "embedded store: written after the answer is sent, but the next request's upstream lookup may wait on "
            "the store's lock meanwhile).",
            "",
            *lines,
            "",
            f"Added p50 of the routed path (routing decision, upstream lookup, the forward; no text embedding): "
            f"**{added:.2f} ms**.",
            "",
            f"Store after the run: {counts['Query']:,} queries ({counts['Query'] - data.n_queries:,} recorded by the "
            "proxy).",
        ],
        RESULTS,
    )


def write(lines: list[str], path: Path) -> None:
    text = "\n".join(["# Chat proxy benchmark", "", *lines, ""])
    path.write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per path (after 30 warm-up ones)")
    parser.add_argument("--store", type=Path, help="an embedded store to copy (with --checkpoint): the real encoder")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint trained on --store")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if (args.store is None) != (args.checkpoint is None):
        parser.error("--store and --checkpoint go together")
    if args.store is None:
        measure_synthetic(args)
        return
    for path in (args.store, args.checkpoint):
        if not path.is_file():
            parser.error(f"{path} does not exist (make demo writes .graphrouter/graph.db and checkpoint.pt)")
    measure_real(args)


if __name__ == "__main__":
    main()
