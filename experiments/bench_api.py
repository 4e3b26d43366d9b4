"""The REST service under load: latency, throughput, scaling with the stored graph, register-to-routable time, and
the ratio to re-running the GNN over the whole graph for each request (GraphRouter's own way).

    python experiments/bench_api.py [--store .graphrouter/graph.db] [--checkpoint .graphrouter/checkpoint.pt]
                                    [--sizes 1000,10000,100000] [--requests 300] [--concurrency 4]

For each size N of the stored graph, the checkpoint's GNN is reattached (no retraining) to a stored graph of N
queries: a random subset of its training queries when N is smaller, otherwise all of them plus perturbed copies
(each copy's embedding is a real query's plus Gaussian noise, cosine ≈ 0.9 to it, with that query's task and
outcomes). The bench then starts ``graphrouter serve`` as a subprocess on a copy of the store (the user's store is
never written), warms it, and measures from this process over loopback:

* ``/v1/route`` latency, one request at a time (p50, p99), each with a query text never seen before, so every
  request pays the text embedding (cache miss) — end to end, as a client sees it; every size gets the same texts
  (tagged with the size, so still unseen), so sizes differ only in the stored graph;
* throughput and latency with ``--concurrency`` client threads;
* register-to-routable: from sending ``POST /v1/llms`` to a ``/v1/route`` answer that contains the new LLM;
* in this process, on the same queries: the GNN's cached ego path vs inserting the query into the whole stored
  graph and re-running every layer (``GnnRouter.predict_effect_full_graph``), and their ratio.

Writes experiments/results/bench_api.md. Targets (issue 4): p50 ≤ 25 ms end to end including the embedding;
p50 at 100k stored queries within 1.5× of p50 at 1k; register-to-routable under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphrouter.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from graphrouter.routers.gnn import GnnRouter  # noqa: E402
from graphrouter.world import QueryFeatures, World  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "bench_api.md"
KEY = "bench-key"


# ---- stored graphs of a given size ----------------------------------------------------------------------------
def grow(world: World, n: int, seed: int = 0) -> World:
    """A stored graph of ``n`` queries from ``world``: a subset, or all of it plus perturbed copies."""
    rng = np.random.default_rng(seed)
    base = world.data.n_queries
    if n <= base:
        return world.select_queries(np.sort(rng.choice(base, size=n, replace=False)))
    src = np.r_[np.arange(base), rng.integers(0, base, size=n - base)]
    emb = world.query_emb[src].astype(np.float32).copy()
    d = emb.shape[1]
    noise = rng.standard_normal((n - base, d)).astype(np.float32) * np.sqrt(0.23 / d)  # cosine ≈ 1/√1.23 ≈ 0.9
    emb[base:] += noise
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    data = world.data.select_queries(src)
    data.query_keys = list(world.data.query_keys) + [f"synthetic:{i}" for i in range(n - base)]
    data.query_text = list(world.data.query_text) + [f"synthetic {i}" for i in range(n - base)]
    return World(data, emb, world.query_tokens[src], world.candidate_emb, world.task_emb)


# ---- the service ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """``graphrouter serve`` on a checkpoint and a store, as a subprocess."""

    def __init__(
        self,
        store: Path,
        checkpoint: Path,
        workdir: Path,
        settings: dict[str, object],
        extra_env: dict[str, str] | None = None,
        workers: int = 1,
    ) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            **(extra_env or {}),
            "GRAPHROUTER_API_KEY": KEY,
            "GRAPHROUTER_EMBEDDING_CACHE": str(workdir / "embeddings.sqlite"),
            "GRAPHROUTER_EMBEDDING_BACKEND": str(settings["embedding_backend"]),
        }
        for name in ("torch_threads", "embedding_threads"):  # unset: the service's default
            if settings.get(name) is not None:
                env[f"GRAPHROUTER_{name.upper()}"] = str(settings[name])
        cmd = [sys.executable, "-m", "api.cli", "--store", str(store), "serve", "--port", str(self.port)]
        cmd += ["--checkpoint", str(checkpoint), "--log-level", "warning", "--workers", str(workers)]
        env["PYTHONPATH"] = str(ROOT)
        self.log = workdir / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 600.0) -> float:
        import httpx

        t0 = time.perf_counter()
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while time.perf_counter() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise SystemExit(f"serve exited: {self.log.read_text()[-2000:]}")
                try:
                    if client.get("/ready").status_code == 200:
                        return time.perf_counter() - t0
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise SystemExit(f"serve not ready after {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the service and every process under it (Linux /proc): its workers too."""
        tree, stats = {self.proc.pid}, {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, utime+stime
        grew = True
        while grew:
            more = {pid for pid, (ppid, _) in stats.items() if ppid in tree} - tree
            tree |= more
            grew = bool(more)
        return sum(stats[pid][1] for pid in tree if pid in stats) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, timeout: float = 300.0, busy: float = 0.05) -> None:
        """After /ready: wait until the whole process tree uses under ``busy`` of a core over a second, so that a
        worker still loading (only one of several need be ready) or a background refresh is not measured."""
        t0, before = time.perf_counter(), self.cpu_seconds()
        while time.perf_counter() - t0 < timeout:
            time.sleep(1.0)
            now = self.cpu_seconds()
            if now - before < busy:
                return
            before = now
        print(f"warning: the service was still busy after {timeout:.0f} s; measuring anyway", file=sys.stderr)

    def rss_mb(self) -> float:
        """The service process's resident memory now (Linux), in MB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def route_body(text: str) -> dict:
    return {"query": text, "k": 3, "scenario": "balance"}


def sequential(url: str, texts: list[str]) -> list[float]:
    import httpx

    out = []
    with httpx.Client(base_url=url, timeout=60.0) as client:
        for text in texts:
            t = time.perf_counter()
            r = client.post("/v1/route", json=route_body(text))
            out.append(1000 * (time.perf_counter() - t))
            r.raise_for_status()
    return out


def concurrent(url: str, texts: list[str], threads: int) -> tuple[list[float], float]:
    import httpx

    chunks = [texts[i::threads] for i in range(threads)]
    lat: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []

    def run(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60.0) as client:
            for text in chunks[i]:
                t = time.perf_counter()
                r = client.post("/v1/route", json=route_body(text))
                lat[i].append(1000 * (time.perf_counter() - t))
                if r.status_code != 200:
                    errors.append(r.text)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} failed requests, e.g. {errors[0]}")
    return [x for part in lat for x in part], len(texts) / wall


def register_to_routable(url: str, tag: str, n: int = 5) -> list[float]:
    import httpx

    out = []
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, timeout=60.0) as client:
        for j in range(n):
            name = f"bench-llm-{tag}-{j}"
            body = {"name": name, "description": "a general model for reasoning and code", "input_price": 0.2}
            body["output_price"] = 0.4
            t = time.perf_counter()
            client.post("/v1/llms", json=body, headers=auth).raise_for_status()
            while True:
                r = client.post("/v1/route", json={"query": f"hello {tag} {j}", "k": 1, "candidates": [name]})
                if r.status_code == 200 and r.json()["candidates"][0]["name"] == name:
                    break
            out.append(1000 * (time.perf_counter() - t))
    return out


def copy_store(src: str, dst: Path) -> None:
    """A consistent copy of an embedded store file (SQLite backup), so the bench never writes the user's store."""
    if "://" in src:
        raise SystemExit("bench_api.py copies the store it serves; give an embedded store file (--store PATH)")
    with closing(sqlite3.connect(src)) as a, closing(sqlite3.connect(dst)) as b:  # (a connection's "with" only commits)
        a.backup(b)


def stats(ms: list[float]) -> tuple[float, float]:
    return statistics.median(ms), float(np.percentile(ms, 99))


FULL_GRAPH_MAX = 200_000  # above this many stored queries the whole-graph re-run is skipped (minutes per query)


def ego_vs_full(router: GnnRouter, q: list[QueryFeatures], reps: int, full_too: bool = True) -> tuple[float, float]:
    """Median ms of the cached ego path and of the full-graph re-run (NaN if not ``full_too``), on the same queries
    (tasks filled in)."""
    ego, full = [], []
    for x in q[:reps]:
        t = time.perf_counter()
        router.predict_effect(x)
        ego.append(1000 * (time.perf_counter() - t))
        if full_too:
            t = time.perf_counter()
            router.predict_effect_full_graph(x)
            full.append(1000 * (time.perf_counter() - t))
    return statistics.median(ego), statistics.median(full) if full else float("nan")


def fill_store(store: Path, world: World, base: int, batch: int = 20_000) -> None:
    """Write the grown graph's copies (queries ``base`` on) and their outcomes into ``store``, so that it holds
    what the reattached GNN serves: a start takes a trained LLM with fewer stored outcomes than it was trained with
    for deleted and registered again, and routes it as new (with a store of dcrouter alone, every LLM but one)."""
    from graph_store import GraphBatch, Outcome, Query
    from graph_store.backends.embedded import EmbeddedStore

    data = world.data
    kinds = data.candidate_kind
    with EmbeddedStore(store) as db:
        for lo in range(base, data.n_queries, batch):
            hi = min(lo + batch, data.n_queries)
            queries = [
                Query(data.query_text[i], data.task_names[data.query_task[i]], data.query_keys[i])
                for i in range(lo, hi)
            ]
            rows, cols = np.nonzero(np.isfinite(data.effect[lo:hi]))
            outcomes = [
                Outcome(
                    data.query_keys[lo + i],
                    data.candidates[j],
                    float(data.effect[lo + i, j]),
                    float(np.nan_to_num(data.cost[lo + i, j])),
                    kinds[j],
                )
                for i, j in zip(rows.tolist(), cols.tolist(), strict=True)
            ]
            db.write(GraphBatch(queries=queries, outcomes=outcomes))


def prune_store(store: Path, keys: set[str]) -> None:
    """Delete the queries ``keys`` (and their outcomes) from ``store``, so that it holds the subset the reattached GNN
    serves: a start learns the outcomes of stored queries its checkpoint does not hold online (embedding each text),
    which a store of every query beside a checkpoint of a few would make the service's start and routes measure."""
    from graph_store import QUERY
    from graph_store.backends.embedded import EmbeddedStore

    with EmbeddedStore(store) as db:
        for key in sorted(keys):
            db.delete_node(QUERY, key)


def prepare(checkpoint: Path, n: int, out: Path, full_graph_reps: int, store: Path | None = None) -> dict[str, float]:
    """The checkpoint's GNN reattached to a stored graph of ``n`` queries and saved to ``out``; the reattach time and
    the GNN's ego path against the whole-graph re-run on a few stored queries (as new ones, task inferred). ``store``:
    an embedded store (a copy of the one trained on) that the copies beyond its queries are written into, or the
    queries outside a smaller subset deleted from."""
    import torch

    torch.set_num_threads(1)
    ckpt = load_checkpoint(checkpoint)
    router, world = ckpt.router, ckpt.router.world
    rng = np.random.default_rng(2)
    sample = rng.choice(world.data.n_queries, size=full_graph_reps, replace=False)
    q = [
        router.task_inferer.fill(QueryFeatures(world.query_emb[[i]], np.array([-1]), world.query_tokens[[i]]))
        for i in sample
    ]
    t = time.perf_counter()
    grown = grow(world, n)
    router.reattach(grown)
    attach_s = time.perf_counter() - t
    if store is not None and n > world.data.n_queries:
        fill_store(store, grown, world.data.n_queries)
    elif store is not None and n < world.data.n_queries:
        prune_store(store, set(world.data.query_keys) - set(grown.data.query_keys))
    reps = full_graph_reps if n <= 20_000 else 3
    ego_ms, full_ms = ego_vs_full(router, q, reps, full_too=n <= FULL_GRAPH_MAX)
    save_checkpoint(router, ckpt.embedding_model, out)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"attach_s": attach_s, "ego_ms": ego_ms, "full_ms": full_ms, "peak_mb": peak}


def prepare_in_child(
    checkpoint: Path, n: int, out: Path, full_graph_reps: int, store: Path | None = None
) -> dict[str, float]:
    """:func:`prepare` in a child process, so that its memory (GBs at a million stored queries) is given back before
    the service loads the checkpoint."""
    cmd = [sys.executable, __file__, "--checkpoint", str(checkpoint), "--prepare", str(n), "--prepare-out", str(out)]
    cmd += ["--full-graph-reps", str(full_graph_reps)] + (["--prepare-store", str(store)] if store else [])
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"preparing {n:,} stored queries failed (exit {run.returncode}): {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


SCALE_RESULTS = ROOT / "experiments" / "results" / "bench_api_scale.md"


def scale_out(args: argparse.Namespace) -> None:
    """Issue 14, side by side in one run: requests/s and p50/p99 at 1, 4, 16 and 64 concurrent clients, batching on
    and off, 1 and 2 workers; and register on one replica -> routable on another (two processes, one store)."""
    ckpt = load_checkpoint(args.checkpoint)
    texts_all = list(ckpt.router.world.data.query_text)
    # a random sample of the store's texts, as the main bench takes: in store order the first ones are one task's
    # (long) prompts, which made every level pay more per embedding than the store's typical query
    np.random.default_rng(1).shuffle(texts_all)
    levels = [int(c) for c in args.clients.split(",")]
    per_level = {c: max(args.requests_per_client * c, args.min_requests) for c in levels}
    settings = {"embedding_backend": args.embedding_backend, "torch_threads": args.torch_threads}
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        store = work / "graph.db"
        copy_store(args.store, store)
        for workers in (1, 2):
            for window in (0.0, args.batch_window_ms):
                env = {"GRAPHROUTER_BATCH_WINDOW_MS": str(window), "GRAPHROUTER_BATCH_MAX": str(args.batch_max)}
                svc = Service(store, args.checkpoint, work, settings, env, workers=workers)
                try:
                    svc.wait_ready()
                    svc.wait_idle()  # every worker loaded, not only the first to answer /ready
                    nonce = time.time_ns()
                    warm = [f"warm {nonce} {i}" for i in range(20)]
                    concurrent(svc.url, warm, 4)
                    for c in levels:
                        n = per_level[c]
                        texts = [f"{texts_all[i % len(texts_all)]} [scale {nonce} {c} #{i}]" for i in range(n)]
                        lat, rps = concurrent(svc.url, texts, c)
                        p50, p99 = stats(lat)
                        rows.append((workers, window, c, n, rps, p50, p99))
                        print(
                            f"workers={workers} window={window} ms clients={c}: {rps:.1f} req/s, p50 {p50:.1f}"
                            f" ms, p99 {p99:.1f} ms",
                            flush=True,
                        )
                finally:
                    svc.stop()
        # register on replica A -> routable on replica B (two processes on one store, following its change log)
        env = {"GRAPHROUTER_SYNC_INTERVAL": str(args.sync_interval)}
        a = Service(store, args.checkpoint, work, settings, env)
        b = Service(store, args.checkpoint, work, settings, env)
        try:
            a.wait_ready()
            b.wait_ready()
            a.wait_idle()
            b.wait_idle()
            cross = register_on_a_routable_on_b(
                a.url, b.url, str(time.time_ns()), args.cross_samples, args.sync_interval
            )
        finally:
            a.stop()
            b.stop()
    cm50, cm99 = stats(cross)
    load_after = os.getloadavg()
    cpu = batched_cpu(args.checkpoint, args.embedding_backend)
    lone = lone_request_overhead()
    lines = [
        "# Scale-out: concurrency, micro-batching, workers, replicas (issue 14)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')}, `python experiments/bench_api.py --scale-out`, on this 2-core"
        f" machine: 1-minute load average {load_before[0]:.1f} before the run, {load_after[0]:.1f} at its end (the"
        " bench's own services and clients; a load well above 2 at the start means other jobs shared the machine and"
        " absolute numbers are pessimistic). Each service is measured once /ready answers and its process tree"
        " is idle (every worker loaded)."
        " Store: an embedded copy of the dcrouter store (6,108 queries,"
        " 9 LLMs); every request's text is new (each pays its embedding). 2 workers run on the embedded store"
        " (SQLite WAL; the store is not on the route path); they were not measured on ArcadeDB.",
        f"Batching window {args.batch_window_ms} ms, at most {args.batch_max} requests per batch;"
        f" requests per level: {', '.join(f'{c} clients: {n}' for c, n in per_level.items())}.",
        "",
        "| workers | batching | clients | requests | requests/s | p50 ms | p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for workers, window, c, n, rps, p50, p99 in rows:
        batching = f"on ({window:g} ms)" if window else "off"
        lines.append(f"| {workers} | {batching} | {c} | {n} | {rps:.1f} | {p50:.1f} | {p99:.1f} |")
    lines += [
        "",
        f"Register on replica A → routable on replica B (two `graphrouter serve` processes on one embedded store,"
        f" GRAPHROUTER_SYNC_INTERVAL={args.sync_interval} s, {len(cross)} LLMs): median {cm50:.0f} ms,"
        f" p99 {cm99:.0f} ms.",
        "",
        "CPU time per request in one process (thread CPU time, so less sensitive to the other jobs than wall time;"
        " new texts each time, real embedding model, one onnxruntime thread, one torch thread):",
        "",
        "| requests per call | embedding ms/request | router pass ms/request | total ms/request |",
        "|---:|---:|---:|---:|",
        *(f"| {n} | {e:.1f} | {r:.2f} | {e + r:.1f} |" for n, e, r in cpu),
        "",
        f"Micro-batcher overhead for a lone request (idle batcher, trivial work): median {lone[0]:.3f} ms, p99"
        f" {lone[1]:.3f} ms — it is dispatched at once, not after the window.",
        "",
    ]
    out = args.out if args.out != RESULTS else SCALE_RESULTS
    out.write_text("\n".join(lines))
    print("\n".join(lines))


def batched_cpu(checkpoint: Path, backend: str, n_texts: int = 64) -> list[tuple[int, float, float]]:
    """(requests per call, embedding CPU ms per request, router-pass CPU ms per request) over the same ``n_texts``
    random stored texts (made new, so never cached) in calls of 1, 8 and 32 requests."""
    import torch

    from graphrouter.embeddings import Embedder
    from graphrouter.tokens import count_tokens

    torch.set_num_threads(1)
    ckpt = load_checkpoint(checkpoint)
    embedder = Embedder(ckpt.embedding_model, cache_path=None, backend=backend, threads=1)
    embedder.embed(["warm up"])
    router = ckpt.router
    texts = list(router.world.data.query_text)
    picks = np.random.default_rng(3).choice(len(texts), size=n_texts, replace=False)
    out = []
    for n in (1, 8, 32):
        batch_texts = [f"{texts[i]} [cpu {time.time_ns()}]" for i in picks]
        spent_e = spent_r = 0.0
        for start in range(0, n_texts, n):
            batch = batch_texts[start : start + n]
            t0 = time.thread_time()
            emb = embedder.embed(batch)
            t1 = time.thread_time()
            q = QueryFeatures(emb, np.full(len(batch), -1), np.asarray(count_tokens(batch), dtype=np.float64))
            router.score(q, (0.5, 0.5))
            t2 = time.thread_time()
            spent_e, spent_r = spent_e + t1 - t0, spent_r + t2 - t1
        out.append((n, 1000 * spent_e / n_texts, 1000 * spent_r / n_texts))
    embedder.close()
    return out


def lone_request_overhead(n: int = 200) -> tuple[float, float]:
    """Submit-to-result time of one request at a time through an idle MicroBatcher with a 2 ms window."""
    from api.batching import MicroBatcher

    batcher = MicroBatcher(lambda items: list(items), window_s=0.002, max_batch=32)
    lat = []
    try:
        for i in range(n):
            t = time.perf_counter()
            batcher.submit(i).result(5)
            lat.append(1000 * (time.perf_counter() - t))
    finally:
        batcher.close()
    return stats(lat)


def register_on_a_routable_on_b(a_url: str, b_url: str, tag: str, n: int, interval: float) -> list[float]:
    """Register on A, then route on B until it answers with the new LLM. Each registration starts after a random
    pause of up to one sync interval: back to back, each would start just after B's poll and wait a whole one."""
    import httpx

    rng = np.random.default_rng(5)
    out = []
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=a_url, timeout=60.0) as a, httpx.Client(base_url=b_url, timeout=60.0) as b:
        for j in range(n):
            name = f"bench-x-{tag}-{j}"
            body = {"name": name, "description": "a general model", "input_price": 0.2, "output_price": 0.4}
            time.sleep(rng.uniform(0, interval))
            t = time.perf_counter()
            a.post("/v1/llms", json=body, headers=auth).raise_for_status()
            while True:
                r = b.post("/v1/route", json={"query": f"hello {tag} {j}", "k": 1, "candidates": [name]})
                if r.status_code == 200:
                    break
                time.sleep(0.01)
            out.append(1000 * (time.perf_counter() - t))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale-out", action="store_true", help="run the scale-out table (issue 14) instead")
    parser.add_argument("--clients", default="1,4,16,64", help="--scale-out: concurrent clients")
    parser.add_argument("--requests-per-client", type=int, default=8, help="--scale-out: requests per client")
    parser.add_argument("--min-requests", type=int, default=60, help="--scale-out: at least this many per level")
    parser.add_argument("--batch-window-ms", type=float, default=2.0, help="--scale-out: the batching window")
    parser.add_argument("--batch-max", type=int, default=32, help="--scale-out: the largest batch")
    parser.add_argument("--sync-interval", type=float, default=1.0, help="--scale-out: replicas' change-log poll")
    parser.add_argument("--cross-samples", type=int, default=20, help="--scale-out: LLMs registered across")
    parser.add_argument("--store", default=str(ROOT / ".graphrouter" / "graph.db"))
    parser.add_argument("--checkpoint", type=Path, default=ROOT / ".graphrouter" / "checkpoint.pt")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--full-graph-reps", type=int, default=10, help="requests re-run over the whole graph")
    parser.add_argument("--torch-threads", type=int, default=None, help="the service's GRAPHROUTER_TORCH_THREADS")
    parser.add_argument("--embedding-backend", choices=("onnx", "torch"), default="onnx")
    parser.add_argument(
        "--embedding-threads", type=int, default=None, help="the service's GRAPHROUTER_EMBEDDING_THREADS (onnx)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the table")
    parser.add_argument("--prepare", type=int, default=None, help=argparse.SUPPRESS)  # the child of prepare_in_child
    parser.add_argument("--prepare-out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prepare-store", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare is not None:
        print(
            json.dumps(
                prepare(args.checkpoint, args.prepare, args.prepare_out, args.full_graph_reps, args.prepare_store)
            ),
            flush=True,
        )
        return
    if args.scale_out:
        scale_out(args)
        return
    import torch

    torch.set_num_threads(1)
    if not Path(args.store).is_file():
        raise SystemExit(f"no store at {args.store}; run `make demo` (or graphrouter import dcrouter) first")
    ckpt = load_checkpoint(args.checkpoint)
    router = ckpt.router
    if not isinstance(router, GnnRouter):
        raise SystemExit(f"{args.checkpoint} holds the {router.name!r} router; this bench measures the GNN")
    world = router.world
    sizes = [int(s) for s in args.sizes.split(",")]
    nonce = time.time_ns()
    texts = [f"{t} [bench {nonce} #{i}]" for i, t in enumerate(world.data.query_text)]  # never embedded before
    rng = np.random.default_rng(1)
    rng.shuffle(texts)
    per_size = args.requests

    from graphrouter.embeddings import DEFAULT_THREADS, Embedder

    threads = args.torch_threads or 1
    embedding_threads = args.embedding_threads or DEFAULT_THREADS
    torch.set_num_threads(threads)
    embedders = {  # both encoders, alternating on the same texts: their ratio is measured side by side
        f"torch, {threads} torch thread(s)": Embedder(ckpt.embedding_model, cache_path=None, backend="torch"),
        f"onnx, {embedding_threads} onnxruntime thread(s)": Embedder(
            ckpt.embedding_model, cache_path=None, backend="onnx", threads=embedding_threads
        ),
    }
    embed_times: dict[str, list[float]] = {name: [] for name in embedders}
    for embedder in embedders.values():
        embedder.embed(["warm up"])
    for text in texts[-100:]:
        for name, embedder in embedders.items():
            t0 = time.perf_counter()
            embedder.embed([f"{text} (alone, {name})"])
            embed_times[name].append(1000 * (time.perf_counter() - t0))
    embed_ms = {name: statistics.median(times) for name, times in embed_times.items()}
    del embedders
    torch.set_num_threads(1)
    service_settings = {
        "embedding_backend": args.embedding_backend,
        "embedding_threads": args.embedding_threads,
        "torch_threads": args.torch_threads,
    }

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        work = Path(tmp)
        for n in sizes:
            path = work / f"checkpoint-{n}.pt"
            store = work / f"graph-{n}.db"
            copy_store(args.store, store)
            prepared = prepare_in_child(args.checkpoint, n, path, args.full_graph_reps, store)
            attach_s, ego_ms, full_ms = prepared["attach_s"], prepared["ego_ms"], prepared["full_ms"]
            file_mb = path.stat().st_size / 1e6
            service = Service(store, path, work, service_settings)
            try:
                ready_s = service.wait_ready()
                if "changed in the store since training" in service.log.read_text():  # replaced: routed as new
                    raise SystemExit(
                        f"at {n:,} stored queries the service's start took trained LLMs for changed in the store: "
                        f"{service.log.read_text()[-1500:]}"
                    )
                # the same texts at every size, tagged with the size so that none is in the embedding cache: sizes
                # differ only in the stored graph, not in the lengths of the queries they embed
                chunk = [f"{t} [{n}]" for t in texts[: 2 * per_size + 20]]
                sequential(service.url, chunk[:20])  # warm-up
                seq = sequential(service.url, chunk[20 : 20 + per_size])
                conc, rps = concurrent(service.url, chunk[per_size + 20 : 2 * per_size + 20], args.concurrency)
                reg = register_to_routable(service.url, str(n))
                rss = service.rss_mb()
            finally:
                service.stop()
            rows.append(
                (
                    n,
                    attach_s,
                    ready_s,
                    stats(seq),
                    stats(conc),
                    rps,
                    statistics.median(reg),
                    ego_ms,
                    full_ms,
                    rss,
                    prepared["peak_mb"],
                    file_mb,
                )
            )
            print(rows[-1], flush=True)

    p50 = {r[0]: r[3][0] for r in rows}
    lines = [
        "# REST service benchmark",
        "",
        f"`python experiments/bench_api.py --sizes {args.sizes} --requests {args.requests} "
        f"--concurrency {args.concurrency}"
        + (f" --torch-threads {args.torch_threads}" if args.torch_threads else "")
        + (f" --embedding-backend {args.embedding_backend}" if args.embedding_backend != "onnx" else "")
        + (f" --embedding-threads {args.embedding_threads}" if args.embedding_threads else "")
        + (f" --out {args.out}" if args.out.resolve() != RESULTS else "")
        + f"`, one run, {time.strftime('%Y-%m-%d')}, this 2-core machine, "
        f"client and service on loopback; checkpoint {ckpt.version} ({len(router.members)}-member GNN, "
        f"{len(router.candidates)} candidates); the service embeds with the {args.embedding_backend} encoder "
        f"({embedding_threads if args.embedding_backend == 'onnx' else threads} thread(s)) and runs torch on "
        f"{threads} thread(s). Every request carries a query text never seen before, so each pays "
        "the text embedding. Latencies in ms, as the client measures them.",
        "",
        (
            "| stored queries | reattach (s) | ready (s) | p50 | p99 | p50 ×{c} clients | p99 ×{c} | req/s ×{c} "
            "| register→routable (ms) | GNN ego path (ms) | GNN over the whole graph (ms) | ratio "
            "| service RSS (MB) | reattach peak RSS (MB) | checkpoint (MB) |"
        ).replace("{c}", str(args.concurrency)),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, attach_s, ready_s, (s50, s99), (c50, c99), rps, reg, ego_ms, full_ms, rss, peak, file_mb in rows:
        full = "—" if np.isnan(full_ms) else f"{full_ms:.0f}"
        ratio = "—" if np.isnan(full_ms) else f"{full_ms / ego_ms:,.0f}×"
        lines.append(
            f"| {n:,} | {attach_s:.1f} | {ready_s:.1f} | {s50:.1f} | {s99:.1f} | {c50:.1f} | {c99:.1f} | {rps:.0f} "
            f"| {reg:.0f} | {ego_ms:.2f} | {full} | {ratio} | {rss:,.0f} | {peak:,.0f} | {file_mb:,.0f} |"
        )
    if len(p50) > 1:
        lo, hi = min(p50), max(p50)
        lines += ["", f"p50 at {hi:,} stored queries / p50 at {lo:,}: **{p50[hi] / p50[lo]:.2f}×** (target ≤ 1.5×)."]
    lines += [
        "",
        "For scale, embedding one unseen query text alone in this process (median of 100, the two encoders "
        "alternating on the same texts): "
        + "; ".join(f"{name}: {ms:.1f} ms" for name, ms in embed_ms.items())
        + f" (ratio {list(embed_ms.values())[0] / list(embed_ms.values())[1]:.2f}×).",
        "",
        "reattach: the trained GNN serving over a stored graph of that size without retraining (neighbour index, "
        "one forward pass to cache every layer's states). ready: from starting `graphrouter serve` to `/ready`. "
        "register→routable: median of 5, from sending `POST /v1/llms` to a `/v1/route` answer naming the new LLM. "
        "GNN columns: the effect prediction alone for one query (embedding excluded), median over "
        f"{args.full_graph_reps} queries (3 above 20k), cached ego path vs inserting the query into the whole stored "
        f"graph and re-running every layer of every member (not run above {FULL_GRAPH_MAX:,}: minutes per query). "
        "service RSS: the `graphrouter serve` process after the measurements at that size. reattach peak RSS: the "
        "child process that reattached the GNN to that many stored queries and saved the checkpoint (its own "
        "process, so that the service loading it does not share the machine's memory with it).",
        "",
        "Targets (issue 4): p50 ≤ 25 ms end to end; p50 at 100k within 1.5× of 1k; register→routable < 1 s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
