"""Background retraining (``POST/GET /v1/train``) in-process, against both store backends.

The training is a tiny GNN (one seed, two episodes) so the test stays fast; ``build_world`` is wrapped so the test
can hold the training after its snapshot, and so see what happens meanwhile, deterministically.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import graphrouter.world
from api.main import create_app
from api.settings import Settings
from graph_store import GraphBatch, GraphStore, Outcome
from graphrouter.checkpoint import load_checkpoint
from graphrouter.world import World
from tests import test_api
from tests.conftest import StoreOpener
from tests.routing_world import AUTH, KEY, NEW_LLM, HashEmbedder, populate

fitted = test_api.fitted  # a fixture of tests/test_api.py


@pytest.fixture
def store(open_store_fn: StoreOpener, fitted: tuple[World, dict[str, Path]]) -> Iterator[GraphStore]:
    """tests/test_api.py's store without its outcomes: each test writes what its trainings learn from."""
    with open_store_fn() as s:
        populate(s, fitted[0], outcomes=False)
        yield s


TINY_GNN = {"seeds": [0], "max_episodes": 2, "eval_every": 1, "hidden": 8}


def hold_call(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> tuple[threading.Event, threading.Event]:
    """Calls of ``module.name`` wait until ``release`` is set: (the moment one starts, release)."""
    started, release = threading.Event(), threading.Event()
    real = getattr(module, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        started.set()
        assert release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, held)
    return started, release


def hold_world_build(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Trainings stop at their world build (the store's snapshot is taken) until ``release`` is set."""
    return hold_call(monkeypatch, graphrouter.world, "build_world")


def _store_outcomes(store: GraphStore, world: World) -> None:
    """The world's observed outcomes, which this file's store does not hold: what a training learns from."""
    data = world.data
    rows, cols = np.nonzero(np.isfinite(data.effect))
    store.write(
        GraphBatch(
            outcomes=[
                Outcome(data.query_keys[i], data.candidates[j], float(data.effect[i, j]), float(data.cost[i, j]))
                for i, j in zip(rows, cols, strict=True)
            ]
        )
    )


def _app(store: GraphStore, world: World, checkpoint: Path, **settings: Any) -> FastAPI:
    config: dict[str, Any] = {"store": "unused", "checkpoint": checkpoint, "embedding_cache": None, "api_key": KEY}
    return create_app(Settings(**{**config, **settings}), store=store, embedder=HashEmbedder(world))


def test_background_training_swaps_the_new_checkpoint_in(
    store: GraphStore, fitted: tuple[World, dict[str, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, paths = fitted
    checkpoint = tmp_path / "serving.pt"
    shutil.copy(paths["gnn"], checkpoint)
    snapshot_taken, release = hold_world_build(monkeypatch)
    _store_outcomes(store, world)
    app = _app(store, world, checkpoint, train_router="gnn", train_params=TINY_GNN)
    with TestClient(app) as client:
        old = client.get("/ready").json()["checkpoint"]
        idle = client.get("/v1/train").json()
        assert idle["status"] == "idle" and idle["router"] == "gnn" and idle["params"] == TINY_GNN
        assert idle["serving"] == old and idle["checkpoint"] is None

        # a task and a query the checkpoint does not know
        assert client.post("/v1/tasks", json={"name": "cooking"}, headers=AUTH).status_code == 201
        row = {"query": "how do I bake bread", "task": "cooking", "candidate": "llm-0", "effect": 1, "cost": 0.001}
        r = client.post("/v1/outcomes", json={"outcomes": [row]}, headers=AUTH)
        # learned at once (its task unknown to the checkpoint: inferred), and in the store for the next training
        assert r.status_code == 200 and r.json()["applied_to_scorer"] == 1, r.text
        assert len(app.state.service.scorer.online) == 1
        bread = {"query": "how do I bake bread", "task": "cooking", "k": 2}
        r = client.post("/v1/route", json=bread)
        assert r.status_code == 400 and "retrain (POST /v1/train)" in r.json()["detail"], r.text

        assert client.post("/v1/train").status_code == 401
        r = client.post("/v1/train", json={"params": {"seeds": [0]}}, headers=AUTH)  # the server's, not a body's
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "params", r.text
        assert client.post("/v1/train", json={}, headers=AUTH).status_code == 202  # an empty body is no body
        assert snapshot_taken.wait(60)
        r = client.get("/v1/train")
        assert r.json()["status"] == "running" and r.json()["started_at"], r.text
        r = client.post("/v1/train", headers=AUTH)
        assert r.status_code == 409 and "already running" in r.json()["detail"], r.text
        assert client.get("/v1/train").json()["status"] == "running"

        # while it trains: routing goes on, and an LLM registered after the snapshot must survive the swap
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 2})
        assert r.status_code == 200 and r.json()["checkpoint"] == old, r.text
        r = client.post("/v1/llms", json=NEW_LLM, headers=AUTH)
        assert r.status_code == 201 and r.json()["routable"] is True, r.text
        # an outcome posted after the snapshot: not in the new checkpoint, so its correction must survive the swap
        late = {"query": "task-0 a late question", "task": "task-0", "candidate": "llm-1", "effect": 1, "cost": 0.001}
        r = client.post("/v1/outcomes", json={"outcomes": [late]}, headers=AUTH)
        assert r.status_code == 200 and r.json()["applied_to_scorer"] == 1, r.text
        assert len(app.state.service.scorer.online) == 2
        # and one posted again with another value on a trained query: the snapshot holds the old one
        flipped = 1.0 - float(world.data.effect[0, 0])
        again = {"query_id": "q0", "candidate": "llm-0", "effect": flipped, "cost": 0.001}
        assert client.post("/v1/outcomes", json={"outcomes": [again]}, headers=AUTH).status_code == 200

        release.set()
        app.state.trainer.wait(120)
        done = client.get("/v1/train").json()
        assert done["status"] == "succeeded", done
        new = done["checkpoint"]
        assert new and new != old and done["serving"] == new and done["error"] is None
        assert done["queries"] == 121 and done["candidates"] == 6 and done["finished_at"] >= done["started_at"]
        assert client.get("/ready").json()["checkpoint"] == new
        assert load_checkpoint(checkpoint).version == new  # written where a restart will read it
        # the bread outcome is in the training snapshot: its correction is dropped (never counted twice); the late
        # one is kept, re-based on the new router's predictions
        scorer = app.state.service.scorer
        learned = scorer.online
        assert len(learned) == 1 and learned.counts(["llm-0", "llm-1"]).tolist() == [0.0, 1.0]
        # the one posted again with another value goes into the new router's graph as it went into the old one's:
        # it serves the store's value, not the snapshot's (which the swap used to bring back until the next training)
        served = scorer.router.observed_effects()[scorer.router.query_rows()["q0"], scorer.candidates.index("llm-0")]
        assert served == flipped
        # one exploration budget for the service, whichever scorer serves (its counts go on across the swap)
        assert app.state.service.scorer.explorer is app.state.service.explorer

        r = client.post("/v1/route", json=bread)
        assert r.status_code == 200 and r.json()["task"] == "cooking" and r.json()["checkpoint"] == new, r.text
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 6})
        assert r.status_code == 200 and "llm-new" in [c["name"] for c in r.json()["candidates"]], r.text
        assert 'graphrouter_training_runs_total{result="succeeded"} 1.0' in client.get("/metrics").text


def test_training_failures_are_reported_and_change_nothing(
    store: GraphStore, fitted: tuple[World, dict[str, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, paths = fitted
    checkpoint = tmp_path / "serving.pt"
    shutil.copy(paths["knn_task"], checkpoint)
    before = checkpoint.read_bytes()

    def broken(*args: Any, **kwargs: Any) -> World:
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(graphrouter.world, "build_world", broken)
    _store_outcomes(store, world)
    app = _app(store, world, checkpoint, train_router="knn_task")
    with TestClient(app) as client:
        old = client.get("/ready").json()["checkpoint"]
        assert client.post("/v1/train", headers=AUTH).status_code == 202
        app.state.trainer.wait(60)
        r = client.get("/v1/train").json()
        assert r["status"] == "failed" and r["error"] == "RuntimeError: out of memory, say" and r["serving"] == old
        assert client.post("/v1/route", json={"query": "task-0 hi"}).json()["checkpoint"] == old
        assert 'graphrouter_training_runs_total{result="failed"} 1.0' in client.get("/metrics").text
    assert checkpoint.read_bytes() == before

    for settings, message in [
        ({"train_router": "nope"}, "GRAPHROUTER_TRAIN_ROUTER: unknown router 'nope'"),
        ({"train_router": "gnn", "train_params": {"layers": 3}}, "GRAPHROUTER_TRAIN_PARAMS do not fit the 'gnn'"),
    ]:
        with TestClient(_app(store, world, checkpoint, **settings)) as client:
            r = client.post("/v1/train", headers=AUTH)
            assert r.status_code == 500 and message in r.json()["detail"], r.text
            assert client.get("/v1/train").json()["status"] == "idle"


def test_a_service_without_a_checkpoint_trains_one_and_becomes_ready(
    store: GraphStore, fitted: tuple[World, dict[str, Path]], tmp_path: Path
) -> None:
    world, _ = fitted
    checkpoint = tmp_path / "first.pt"
    app = _app(store, world, checkpoint, train_router="knn_task", embedding_model="hash-test")
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 503
        assert client.post("/v1/route", json={"query": "task-0 hi"}).status_code == 503
        # nothing to learn from yet: a clear failure
        assert client.post("/v1/train", headers=AUTH).status_code == 202
        app.state.trainer.wait(60)
        failed = client.get("/v1/train").json()
        assert failed["status"] == "failed" and "no outcomes to learn from" in failed["error"], failed

        _store_outcomes(store, world)
        assert client.post("/v1/train", headers=AUTH).status_code == 202
        app.state.trainer.wait(60)
        done = client.get("/v1/train").json()
        assert done["status"] == "succeeded" and done["candidates"] == 5, done
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["checkpoint"] == done["checkpoint"], ready.text
        r = client.post("/v1/route", json={"query": "task-2 hi", "k": 2})
        assert r.status_code == 200 and r.json()["task"] == "task-2", r.text
    assert load_checkpoint(checkpoint, "hash-test").version == done["checkpoint"]


def test_a_training_running_when_the_service_stops_is_abandoned_and_its_claim_ended(
    store: GraphStore, fitted: tuple[World, dict[str, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else other replicas would take it as running for the whole lease (an hour by default), and it would publish
    into a store the service has closed (SIGTERM during a training)."""
    from graph_store.changes import CHECKPOINT, TRAINING_ENDED, TRAINING_STARTED

    world, paths = fitted
    checkpoint = tmp_path / "serving.pt"
    shutil.copy(paths["gnn"], checkpoint)
    before = checkpoint.read_bytes()
    started, release = hold_world_build(monkeypatch)
    _store_outcomes(store, world)
    app = _app(store, world, checkpoint, train_router="gnn", train_params=TINY_GNN)

    def logged(kind: str) -> list[str]:
        return [c.key for c in store.changes_since(store.pruned_through(), limit=10_000) if c.kind == kind]

    with TestClient(app) as client:
        assert client.post("/v1/train", headers=AUTH).status_code == 202
        assert started.wait(60)
        assert logged(TRAINING_STARTED) and not logged(TRAINING_ENDED)
    trainer = app.state.trainer
    assert trainer.status.status == "failed" and trainer.status.error == "abandoned: the service shut down"
    assert logged(TRAINING_ENDED) == logged(TRAINING_STARTED)  # ended at the shutdown, the training still held
    release.set()  # it goes on to its end: nothing published, its claim not ended twice
    trainer.wait(120)
    assert trainer.status.error == "abandoned: the service shut down"
    assert checkpoint.read_bytes() == before and not logged(CHECKPOINT)
    assert len(logged(TRAINING_ENDED)) == 1


def test_a_training_whose_checkpoint_cannot_be_written_is_refused_before_it_fits(
    store: GraphStore, fitted: tuple[World, dict[str, Path]], tmp_path: Path
) -> None:
    world, _ = fitted
    _store_outcomes(store, world)
    folder = tmp_path / "ckpt"
    folder.write_text("a file where the checkpoint's folder should be")  # (chmod does not stop root: CI runs as it)
    checkpoint = folder / "serving.pt"
    app = _app(store, world, checkpoint, train_router="knn_task", embedding_model="hash-test")
    with TestClient(app) as client:
        r = client.post("/v1/train", headers=AUTH)
        assert r.status_code == 500 and f"cannot write {checkpoint}: " in r.json()["detail"], r.text
        assert "GRAPHROUTER_CHECKPOINT" in r.json()["detail"] and client.get("/v1/train").json()["status"] == "idle"
        folder.unlink()
        assert client.post("/v1/train", headers=AUTH).status_code == 202
        assert app.state.trainer.wait(60).status == "succeeded"
    assert checkpoint.is_file()


def test_a_training_publishing_when_the_service_stops_is_waited_for_not_cut_off(
    store: GraphStore, fitted: tuple[World, dict[str, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fitted and writing its checkpoint when the service stops: abandoning it then would leave the shared file
    replaced with no change record for the other replicas (or published after its claim ended)."""
    import graphrouter.checkpoint
    from graph_store.changes import CHECKPOINT, TRAINING_ENDED

    world, paths = fitted
    checkpoint = tmp_path / "serving.pt"
    shutil.copy(paths["knn_task"], checkpoint)
    saving, release = hold_call(monkeypatch, graphrouter.checkpoint, "save_checkpoint")
    _store_outcomes(store, world)
    app = _app(store, world, checkpoint, train_router="knn_task")
    with TestClient(app) as client:
        assert client.post("/v1/train", headers=AUTH).status_code == 202
        assert saving.wait(60)
        threading.Timer(0.5, release.set).start()  # the save ends while the lifespan's shutdown waits for it
    status = app.state.trainer.status
    assert status.status == "succeeded" and status.error is None, status
    logged = store.changes_since(store.pruned_through(), limit=10_000)
    assert [c.key for c in logged if c.kind == CHECKPOINT] == [status.checkpoint]
    assert len([c for c in logged if c.kind == TRAINING_ENDED]) == 1
    assert load_checkpoint(checkpoint, "hash-test").version == status.checkpoint
