"""End to end: ``graphrouter serve`` as a subprocess on a free loopback port, talked to over HTTP.

The store is a small embedded file (the synthetic world of tests/routing_world.py) and the checkpoint a tiny GNN
trained on it with the real embedding model (all-MiniLM-L6-v2, offline), as ``graphrouter train`` would, so the
service starts exactly as in production: settings from the environment, store and scorer built in the lifespan.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from graph_store.backends.embedded import EmbeddedStore
from graphrouter.checkpoint import save_checkpoint
from graphrouter.embeddings import DEFAULT_MODEL, Embedder
from graphrouter.routers.gnn import GnnRouter
from graphrouter.world import build_world
from tests.proxy_upstream import free_port
from tests.routing_world import KEY, NEW_LLM, make_world, populate

START_TIMEOUT_S = 60.0


def prepare_served(folder: Path) -> tuple[Path, Path, Path]:
    """An embedded store of the synthetic world and a tiny GNN checkpoint fitted on it with the real embedder, in
    ``folder``: the store, the checkpoint and the embedding cache (what ``graphrouter serve`` is started on)."""
    db, checkpoint, cache = folder / "graph.db", folder / "checkpoint.pt", folder / "embeddings.sqlite"
    with EmbeddedStore(db) as store:
        populate(store, make_world(per_task=30))
        snap = store.snapshot()
    embedder = Embedder(DEFAULT_MODEL, cache_path=cache)
    world = build_world(snap, embedder)
    assert world.data.snapshot_at == snap.taken_at != ""  # what a restart learns again is observed since then
    assert world.data.select_queries(np.arange(3)).snapshot_at == snap.taken_at
    router = GnnRouter(seeds=(0,), max_episodes=2, eval_every=1, hidden=8).fit(world, np.arange(world.data.n_queries))
    save_checkpoint(router, embedder.model_name, checkpoint)
    embedder.close()
    return db, checkpoint, cache


@pytest.fixture
def served(tmp_path: Path) -> Iterator[httpx.Client]:
    """A running ``graphrouter serve`` on a prepared store and checkpoint; an HTTP client pointed at it."""
    db, checkpoint, cache = prepare_served(tmp_path)

    port = free_port()
    env = {
        **os.environ,
        "GRAPHROUTER_API_KEY": KEY,
        "GRAPHROUTER_EMBEDDING_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "api.cli", "--store", str(db), "serve", "--port", str(port)]
    cmd += ["--checkpoint", str(checkpoint), "--log-level", "warning"]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                output = (tmp_path / "serve.log").read_text
                assert proc.poll() is None, f"serve exited with {proc.returncode}: {output()}"
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"not ready in {START_TIMEOUT_S:.0f} s"
                time.sleep(0.2)
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def test_serve_routes_registers_and_refuses_unauthenticated_writes(served: httpx.Client) -> None:
    ready = served.get("/ready").json()
    assert ready["status"] == "ready" and ready["router"] == "gnn" and ready["candidates"] == 5

    r = served.post("/v1/route", json={"query": "Write a python function that reverses a list", "k": 3})
    assert r.status_code == 200, r.text
    assert len(r.json()["candidates"]) == 3 and r.json()["checkpoint"] == ready["checkpoint"]

    r = served.post("/v1/llms", json=NEW_LLM)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    r = served.post("/v1/llms", json=NEW_LLM, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401, r.text
    assert served.get("/v1/llms/llm-new").status_code == 404  # nothing was written

    r = served.post("/v1/llms", json=NEW_LLM, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 201 and r.json()["routable"] is True, r.text
    r = served.post("/v1/route", json={"query": "Write a python function that reverses a list", "k": 6})
    assert r.status_code == 200, r.text
    assert "llm-new" in [c["name"] for c in r.json()["candidates"]]

    r = served.post("/v1/route", content=b'{"query": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["detail"], r.text
    metrics = served.get("/metrics").text
    assert 'graphrouter_http_requests_total{method="POST",route="/v1/route",status="200"} 2.0' in metrics
    assert 'graphrouter_http_requests_total{method="POST",route="/v1/llms",status="401"} 2.0' in metrics
