"""A thousand candidates (issue 12): register/delete time and route latency at 10, 100 and 1,000 candidates,
restart-to-ready with 1,000 candidates (and time to /health), RSS over register/delete cycles and retrains, and a
retrain idle vs under an 8-client routing load.

    HF_HUB_OFFLINE=1 python experiments/bench_candidates.py [--cycles 1000] [--retrains 10] [--sizes 10,100,1000]

The world is the synthetic one of tests/routing_world.py (4 tasks × 250 queries, 5 trained LLMs, a tiny GNN) in an
embedded store in a temp dir, and the embedder is its HashEmbedder: the real embedding model is not available
offline here, so route latencies exclude the text embedding. Register, delete, route, cycles and retrains run in
this process against the app (FastAPI TestClient, the whole request path); restart-to-ready starts the service as
a subprocess (``create_app`` + uvicorn, as ``serve`` does, background load on) on a store with 1,000 LLMs and polls
/health and /ready. Writes experiments/results/bench_candidates.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


AUTH = {"Authorization": "Bearer test-key"}
RESULTS = ROOT / "experiments" / "results" / "bench_candidates.md"
TINY = {"seeds": [0], "max_episodes": 20, "eval_every": 5, "hidden": 16}
PER_TASK = 250


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def llm(name: str) -> dict:
    return {"name": name, "description": f"model {name}", "input_price": 0.2, "output_price": 0.4}


def make_app(folder: Path, store, world, checkpoint: Path, **settings):  # type: ignore[no-untyped-def]
    from api.main import create_app
    from api.settings import Settings
    from tests.hash_embedder import HashEmbedder  # numpy only: the restart's child does not import torch for it

    config = {
        "store": str(folder / "unused.db"),
        "checkpoint": checkpoint,
        "embedding_cache": None,
        "api_key": "test-key",
        "train_router": "gnn",
        "train_params": TINY,
        **settings,
    }
    return create_app(Settings(**config), store=store, embedder=HashEmbedder(world))


def prepare(folder: Path):  # type: ignore[no-untyped-def]
    from graph_store import GraphBatch, Outcome
    from graph_store.backends.embedded import EmbeddedStore
    from graphrouter.checkpoint import save_checkpoint
    from graphrouter.routers.gnn import GnnRouter
    from tests.routing_world import make_world, populate

    world = make_world(per_task=PER_TASK)
    store = EmbeddedStore(folder / "graph.db")
    populate(store, world)
    d = world.data
    rows = [
        Outcome(d.query_keys[q], c, float(d.effect[q, j]), float(d.cost[q, j]))
        for q in range(d.n_queries)
        for j, c in enumerate(d.candidates)
    ]
    store.write(GraphBatch(outcomes=rows))
    router = GnnRouter(**{**TINY, "seeds": tuple(TINY["seeds"])}).fit(world, np.arange(d.n_queries))
    save_checkpoint(router, "hash-test", folder / "checkpoint.pt")
    return world, store


def route_latency(client, n: int = 60) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for i in range(n):
        t = time.perf_counter()
        r = client.post("/v1/route", json={"query": f"task-{i % 4} latency probe {i}", "k": 3})
        out.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    return out


def scale(client, sizes: list[int], lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    lines += [
        "## Register, delete, route by number of candidates",
        "",
        "| candidates | register p50 (ms) | register max | delete p50 (ms) | route p50 (ms) | route p99 (ms) |",  # noqa: E501
        "|---:|---:|---:|---:|---:|---:|",
    ]
    n, base = 0, 5
    for size in sizes:
        reg = []
        while base + n < size:
            t = time.perf_counter()
            r = client.post("/v1/llms", json=llm(f"bench-{n}"), headers=AUTH)
            reg.append(time.perf_counter() - t)
            assert r.status_code == 201, r.text
            n += 1
        dele = []
        for i in range(10):  # register and delete 10 more at this size
            client.post("/v1/llms", json=llm(f"probe-{size}-{i}"), headers=AUTH)
        for i in range(10):
            t = time.perf_counter()
            assert client.delete(f"/v1/llms/probe-{size}-{i}", headers=AUTH).status_code == 200
            dele.append(time.perf_counter() - t)
        probe_reg = []
        for i in range(10):
            t = time.perf_counter()
            assert client.post("/v1/llms", json=llm(f"probe2-{size}-{i}"), headers=AUTH).status_code == 201
            probe_reg.append(time.perf_counter() - t)
            client.delete(f"/v1/llms/probe2-{size}-{i}", headers=AUTH)
        client.app.state.service.scorer.router.wait_exact(600)  # steady state: no background refresh running
        lat = route_latency(client)
        lines.append(
            f"| {size:,} | {pct(probe_reg, 50):.1f} | {max(probe_reg) * 1000:.1f} | {pct(dele, 50):.1f} "
            f"| {pct(lat, 50):.1f} | {pct(lat, 99):.1f} |"
        )
        print(lines[-1], flush=True)


def cycles(client, count: int, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    before = rss_mb()
    t0 = time.perf_counter()
    for i in range(count):
        assert client.post("/v1/llms", json=llm(f"cycle-{i}"), headers=AUTH).status_code == 201
        assert client.delete(f"/v1/llms/cycle-{i}", headers=AUTH).status_code == 200
    after = rss_mb()
    lines += [
        "",
        f"RSS over {count:,} register/delete cycles: {before:.0f} → {after:.0f} MB "
        f"(×{after / before:.2f}; {time.perf_counter() - t0:.0f} s)",
    ]
    print(lines[-1], flush=True)


def retrain(client) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    r = client.post("/v1/train", headers=AUTH)
    assert r.status_code == 202, r.text
    while True:
        s = client.get("/v1/train").json()
        if s["status"] != "running":
            assert s["status"] == "succeeded", s
            return time.perf_counter() - t
        time.sleep(0.2)


def retrains(client, count: int, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    before = rss_mb()
    idle, series = [], []
    for _ in range(count):
        idle.append(retrain(client))
        series.append(rss_mb())
    after = series[-1]
    stop, routed = threading.Event(), [0]

    def load() -> None:
        i = 0
        while not stop.is_set():
            client.post("/v1/route", json={"query": f"task-{i % 4} load {i}", "k": 3})
            routed[0] += 1
            i += 1

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    loaded = retrain(client)
    stop.set()
    for t in threads:
        t.join()
    lines += [
        f"RSS over {count} retrains: {before:.0f} → {after:.0f} MB (×{after / before:.2f}); after each: "
        f"{', '.join(f'{x:.0f}' for x in series)} MB (after the first: ×{after / series[0]:.2f})",
        "",
        "## Retrain idle vs under 8 routing clients",
        "",
        f"idle median {statistics.median(idle):.1f} s (of {count}); under load {loaded:.1f} s "
        f"(×{loaded / statistics.median(idle):.2f}; {routed[0]:,} routes answered meanwhile)",
    ]
    print("\n".join(lines[-4:]), flush=True)


def restart(folder: Path, world, n_llms: int, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from graph_store import GraphBatch, LLMNode
    from graph_store.backends.embedded import EmbeddedStore
    from tests.routing_world import populate

    db = folder / "restart.db"
    np.savez(folder / "embedder.npz", query_emb=world.query_emb[:1], task_emb=world.task_emb)
    with EmbeddedStore(db) as store:
        populate(store, world)
        store.write(GraphBatch(llms=[LLMNode(f"many-{i}", f"model many {i}", 0.2, 0.4) for i in range(n_llms)]))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, __file__, "--child", str(db), str(folder / "checkpoint.pt"), str(port)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=(folder / "child.log").open("wb"))
    health = ready = None
    progress = set()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            while time.perf_counter() - t0 < 600:
                try:
                    if health is None and c.get("/health").status_code == 200:
                        health = time.perf_counter() - t0
                    r = c.get("/ready")
                    if r.status_code == 200:
                        ready = time.perf_counter() - t0
                        n = r.json()["candidates"]
                        break
                    progress.add(r.json()["scorer"][:70])
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
    lines += [
        "",
        f"## Restart with {n_llms + 5:,} LLMs ({n_llms:,} registered since training)",
        "",
        f"/health after {health:.1f} s; ready after {ready:.1f} s with {n} candidates; /ready said e.g. "
        + "; ".join(sorted(progress)[:3]),
    ]
    print("\n".join(lines[-3:]), flush=True)


def child(db: str, checkpoint: str, port: int) -> None:
    from types import SimpleNamespace

    import uvicorn

    from graph_store.backends.embedded import EmbeddedStore

    world = SimpleNamespace(**np.load(Path(db).parent / "embedder.npz"))
    store = EmbeddedStore(db)
    app = make_app(Path(db).parent, store, world, Path(checkpoint), load_in_background=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--retrains", type=int, default=10)
    p.add_argument("--restart-llms", type=int, default=1000)
    p.add_argument("--child", nargs=3)
    args = p.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    from fastapi.testclient import TestClient

    lines = [
        "# A thousand candidates (issue 12)",
        "",
        f"Command: `HF_HUB_OFFLINE=1 python experiments/bench_candidates.py --sizes {args.sizes} --cycles "
        f"{args.cycles} --retrains {args.retrains} --restart-llms {args.restart_llms}`; synthetic world "
        f"({4 * PER_TASK} stored queries, hash embedder: latencies exclude the text embedding), tiny GNN "
        f"{TINY}; load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        world, store = prepare(folder)
        restart(folder, world, args.restart_llms, lines)
        app = make_app(folder, store, world, folder / "checkpoint.pt")
        with TestClient(app) as client:
            lines.append("")
            scale(client, [int(s) for s in args.sizes.split(",")], lines)
            lines += ["", "## Memory"]
            cycles(client, args.cycles, lines)
            retrains(client, args.retrains, lines)
        store.close()
    lines += ["", f"Load average at the end: {os.getloadavg()[0]:.1f}."]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
