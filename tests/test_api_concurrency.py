"""Concurrent routes while candidates are registered and deleted and the checkpoint is swapped: every answer is a
consistent one (200, k distinct candidates that exist, sorted by utility, from one of the checkpoints), and a
deleted candidate is never routed to once its DELETE returned."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from graph_store.backends.embedded import EmbeddedStore
from graphrouter.loading import load_scorer
from tests.routing_world import AUTH, HashEmbedder, fit_api_checkpoints, make_api_app, make_world, populate

SECONDS = 3.0


def test_routes_stay_consistent_while_candidates_and_checkpoints_change(tmp_path: Path) -> None:
    world = make_world(per_task=30)
    paths = fit_api_checkpoints(world, tmp_path)
    with EmbeddedStore(tmp_path / "graph.db") as store:
        populate(store, world)
        app = make_api_app(store, world, tmp_path, checkpoint=paths["gnn"])
        with TestClient(app) as client:
            base = set(world.data.candidates)
            versions = {client.get("/ready").json()["checkpoint"]}
            ever: set[str] = set()
            gone: set[str] = set()  # deleted, DELETE returned, not registered again
            bad: list[str] = []
            stop = threading.Event()
            answers = [0]

            def route(i: int) -> None:
                while not stop.is_set():
                    seen_gone = set(gone)
                    r = client.post("/v1/route", json={"query": f"task-{i % 4} q{i}", "k": 3})
                    answers[0] += 1
                    if r.status_code != 200:
                        bad.append(f"{r.status_code}: {r.text}")
                        continue
                    body = r.json()
                    names = [c["name"] for c in body["candidates"]]
                    utilities = [c["utility"] for c in body["candidates"]]
                    if (
                        len(names) != 3
                        or len(set(names)) != 3
                        or not set(names) <= base | ever
                        or set(names) & seen_gone
                        or utilities != sorted(utilities, reverse=True)
                        or not all(math.isfinite(c["cost"]) and 0 <= c["effect"] <= 1 for c in body["candidates"])
                        or body["checkpoint"] not in versions
                    ):
                        bad.append(str(body))

            threads = [threading.Thread(target=route, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            try:
                deadline, n = time.monotonic() + SECONDS, 0
                while time.monotonic() < deadline:
                    name = f"churn-{n}"
                    ever.add(name)
                    body = {"name": name, "description": f"model {n}", "input_price": 0.1, "output_price": 0.1}
                    assert client.post("/v1/llms", json=body, headers=AUTH).status_code == 201
                    gone.discard(name)
                    if n % 2:  # this one and the one before
                        for old in (name, f"churn-{n - 1}"):
                            assert client.delete(f"/v1/llms/{old}", headers=AUTH).status_code == 200
                            gone.add(old)
                    if n % 5 == 4:  # a checkpoint swap, as after a retrain
                        scorer = load_scorer(paths["gnn"], embedder=HashEmbedder(world))
                        versions.add(scorer.checkpoint.version)
                        app.state.registry.install(scorer, "the swapped checkpoint")
                    n += 1
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
            assert n >= 5 and answers[0] > 20, (n, answers)
            assert not bad, bad[:5]


def test_the_routing_lock_lets_its_writer_take_it_again_and_readers_wait_for_the_outer_release() -> None:
    """A change of several steps that each lock (a replica replacing a candidate: drop it, register it again) holds
    the write lock across them, so no route finds the candidate gone in between."""
    from api.state import RWLock

    lock, seen = RWLock(), []
    inner_done, reader_in = threading.Event(), threading.Event()

    def reader() -> None:
        with lock.read():
            seen.append(inner_done.is_set())
            reader_in.set()

    with lock.write():
        with lock.write():  # the same thread again: no deadlock
            thread = threading.Thread(target=reader)
            thread.start()
            assert not reader_in.wait(0.2)  # the reader waits
        assert not reader_in.wait(0.2)  # still: the outer write holds it
        inner_done.set()
    thread.join(10)
    assert seen == [True]
