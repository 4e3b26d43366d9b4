"""Replicas in step through the store's change log, in-process: two apps (two replicas) on one store.

The followers' polling threads are off (``sync_interval=0``); each test calls ``poll()`` itself, so what a replica
has applied is exact. tests/test_replicas_e2e.py runs two real service processes on the Bolt store.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from graph_store import GraphBatch, GraphStore, Outcome
from graph_store.changes import IMPORTED, LLM_REGISTERED, OUTCOMES, TRAINING_ENDED, TRAINING_STARTED, Change
from graphrouter.world import World
from tests.test_api import AUTH, KEY, NEW_LLM, fitted, store  # noqa: F401 - fixtures
from tests.test_api_train import TINY_GNN, _store_outcomes, hold_world_build
from tests.test_scorer import HashEmbedder

QUERY = {"query": "task-1 a question"}


def _replica(store: GraphStore, world: World, checkpoint: Path, **settings: Any) -> FastAPI:  # noqa: F811
    config: dict[str, Any] = {"store": "unused", "checkpoint": checkpoint, "embedding_cache": None, "api_key": KEY}
    return create_app(Settings(**{**config, "sync_interval": 0, **settings}), store=store, embedder=HashEmbedder(world))


def _names(client: TestClient) -> list[str]:
    k = client.get("/ready").json()["candidates"]  # all of them
    r = client.post("/v1/route", json={**QUERY, "k": k})
    assert r.status_code == 200, r.text
    return [c["name"] for c in r.json()["candidates"]]


def test_replicas_follow_each_others_changes(store: GraphStore, fitted: tuple[World, dict[str, Path]]) -> None:  # noqa: F811
    world, paths = fitted
    a_app, b_app = _replica(store, world, paths["gnn"]), _replica(store, world, paths["gnn"])
    with TestClient(a_app) as a, TestClient(b_app) as b:
        follow_a, follow_b = a_app.state.follower, b_app.state.follower
        assert a_app.state.service.replica_id != b_app.state.service.replica_id

        r = a.post("/v1/llms", json={**NEW_LLM, "description": "a new model", "outcomes": []}, headers=AUTH)
        assert r.status_code == 201 and r.json()["routable"], r.text
        assert "llm-new" not in _names(b)
        assert follow_b.poll() == 1 and "llm-new" in _names(b)
        assert follow_a.poll() == 0  # its own change: applied when made, skipped here
        logged = store.changes_since(store.pruned_through())  # the log since the fixture cleared the store
        assert [c.kind for c in logged][-1] == LLM_REGISTERED and logged[-1].origin == a_app.state.service.replica_id

        # deleted through B: gone from A's answers after A's next poll
        assert b.delete("/v1/llms/llm-new", headers=AUTH).status_code == 200
        assert "llm-new" in _names(a)
        assert follow_a.poll() == 1 and "llm-new" not in _names(a)

        # outcomes posted to A reach B's scorer through the same method
        b_scorer = b_app.state.service.scorer
        seen: list[tuple[str, dict[str, float]]] = []
        real = b_scorer.add_outcomes
        b_scorer.add_outcomes = lambda name, effects, costs=None, queries=None, settle=True: (  # type: ignore[method-assign]
            seen.append((name, effects)) or real(name, effects, costs, queries=queries, settle=settle)
        )
        qid = world.data.query_keys[0]
        rows = [{"query_id": qid, "candidate": "llm-0", "effect": 0.25, "cost": 0.001}]
        r = a.post("/v1/outcomes", json={"outcomes": rows}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert store.changes_since(store.pruned_through())[-1].kind == OUTCOMES
        assert follow_b.poll() == 1 and seen == [("llm-0", {qid: 0.25})]

        # a task deleted through A is refused by B as a route's task; registered again, accepted again
        assert a.post("/v1/tasks", json={"name": "task-x"}, headers=AUTH).status_code == 201
        assert a.delete("/v1/tasks/task-x", headers=AUTH).status_code == 200
        assert follow_b.poll() == 2
        for _ in range(2):  # applying the same changes again changes nothing
            follow_b.version -= 3
            follow_b.poll()
            assert "llm-new" not in _names(b)


def test_a_trained_task_deleted_and_registered_again_through_a_replica(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
) -> None:
    world, paths = fitted
    data = world.data
    for key, t in zip(data.query_keys, data.query_task, strict=True):
        if t == 3:  # a trained task without stored queries can be deleted
            store.delete_node("Query", key)
    # (a router that replaces no candidate: the GNN's would take every LLM, now short of its trained outcomes, as
    # deleted and registered again)
    a_app, b_app = _replica(store, world, paths["knn_task"]), _replica(store, world, paths["knn_task"])
    routed = {"query": "task-3 q", "task": "task-3"}
    with TestClient(a_app) as a, TestClient(b_app) as b:
        follow_b = b_app.state.follower
        assert a.delete("/v1/tasks/task-3", headers=AUTH).status_code == 200
        assert follow_b.poll() == 1
        r = b.post("/v1/route", json=routed)
        assert r.status_code == 400 and "was deleted" in r.json()["detail"], r.text
        other = {"name": "task-3", "description": "recipes and cooking times"}
        assert a.post("/v1/tasks", json=other, headers=AUTH).json()["trained"] is False
        assert follow_b.poll() == 1 and b.get("/v1/tasks/task-3").json()["trained"] is False
        r = b.post("/v1/route", json=routed)
        assert r.status_code == 400 and "registered again with another description" in r.json()["detail"], r.text
        assert a.delete("/v1/tasks/task-3", headers=AUTH).status_code == 200
        assert a.post("/v1/tasks", json={"name": "task-3"}, headers=AUTH).json()["trained"] is True  # as trained
        assert follow_b.poll() == 2 and b.post("/v1/route", json=routed).status_code == 200


def test_a_replica_started_later_catches_up_from_the_store(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
) -> None:
    world, paths = fitted
    a_app = _replica(store, world, paths["gnn"])
    with TestClient(a_app) as a:
        assert a.post("/v1/llms", json=NEW_LLM, headers=AUTH).status_code == 201
        with TestClient(_replica(store, world, paths["gnn"])) as late:
            assert "llm-new" in _names(late)  # loading syncs with the store


def test_the_follower_thread_polls_at_the_interval(store: GraphStore, fitted: tuple[World, dict[str, Path]]) -> None:  # noqa: F811
    import time

    world, paths = fitted
    a_app = _replica(store, world, paths["gnn"])
    b_app = _replica(store, world, paths["gnn"], sync_interval=0.05)
    with TestClient(a_app) as a, TestClient(b_app) as b:
        assert a.post("/v1/llms", json=NEW_LLM, headers=AUTH).status_code == 201
        deadline = time.monotonic() + 30  # liveness only: followed every 0.05 s, so at once unless it is broken
        while "llm-new" not in _names(b):
            assert time.monotonic() < deadline, "not followed within 30 s"
            time.sleep(0.05)


# ---- imports are logged -----------------------------------------------------------------------------------------
def test_an_import_through_the_cli_reaches_a_running_replica(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
    tmp_path: Path,
) -> None:
    import argparse
    import json

    from graphrouter.cli import cmd_import

    world, paths = fitted
    app = _replica(store, world, paths["gnn"])
    with TestClient(app) as client:
        follower = app.state.follower
        catalogue = tmp_path / "llms.json"
        catalogue.write_text(json.dumps({"llm-imported": {"feature": "an imported model", **_PRICES}}))
        cmd_import(argparse.Namespace(what="llms", file=catalogue, update=False), store)
        (logged,) = store.changes_since(follower.version)
        assert logged.kind == IMPORTED and logged.payload["llms"] == ["llm-imported"]
        assert "llm-imported" not in _names(client)
        assert follower.poll() == 1 and "llm-imported" in _names(client)

        # an outcomes import: its rows reach the scorer (probe outcomes of a newly registered LLM, say)
        scorer = app.state.service.scorer
        seen: list[tuple[str, dict[str, float]]] = []
        real = scorer.add_outcomes
        scorer.add_outcomes = lambda name, effects, costs=None, queries=None, settle=True: (  # type: ignore[method-assign]
            seen.append((name, effects)) or real(name, effects, costs, queries=queries, settle=settle)
        )
        rows = tmp_path / "outcomes.jsonl"
        q = store.get_node("Query", world.data.query_keys[0])
        line = {"query": q.text, "query_id": q.key, "task": q.task, "llm": "llm-imported", "effect": 0.75, "cost": 0.01}  # type: ignore[attr-defined]
        rows.write_text(json.dumps(line) + "\n")
        cmd_import(argparse.Namespace(what="outcomes", file=rows, llms=None, source="probe", update=False), store)
        assert follower.poll() == 1 and seen == [("llm-imported", {q.key: 0.75})]

        # a catalogue import with --update that reprices a trained LLM: routed with the store's prices at once, and
        # so is the agent that runs on it (registered since training)
        billed = [  # llm-2's stored outcomes, billed at the price it had: they must not undo the new price
            Outcome(world.data.query_keys[i], "llm-2", float(world.data.effect[i, 2]), float(world.data.cost[i, 2]))
            for i in range(40)
        ]
        store.write(GraphBatch(outcomes=billed))
        agent = {"name": "ag", "llm": "llm-2", "description": "ReAct on llm-2"}
        assert client.post("/v1/agents", json=agent, headers=AUTH).status_code == 201
        body = {"query": "task-1 something", "k": 2, "candidates": ["llm-2", "ag"]}
        before = client.post("/v1/route", json=body, headers=AUTH).json()["candidates"][0]["cost"]
        catalogue.write_text(json.dumps({"llm-2": {"feature": "model 2", "input_price": 9.0, "output_price": 9.0}}))
        cmd_import(argparse.Namespace(what="llms", file=catalogue, update=True), store)
        assert follower.poll() == 1
        costs = {c["name"]: c["cost"] for c in client.post("/v1/route", json=body, headers=AUTH).json()["candidates"]}
        assert set(costs) == {"llm-2", "ag"} and min(costs.values()) > 5 * before, (before, costs)

        # and one registered since training; a re-import of the same data changes nothing there (what it learned
        # online from an outcome on a new query included)
        body = {"query": "task-1 something", "k": 1, "candidates": ["llm-imported"]}
        new_q = {"query": "task-1 a brand new question", "task": "task-1", "candidate": "llm-imported", "effect": 1.0}
        assert (
            client.post("/v1/outcomes", json={"outcomes": [{**new_q, "cost": 0.01}]}, headers=AUTH).status_code == 200
        )
        assert app.state.service.scorer.router.wait_exact(30)  # the GNN's exact state after the outcome, not between
        learned = client.post("/v1/route", json=body, headers=AUTH).json()["candidates"][0]
        catalogue.write_text(json.dumps({"llm-imported": {"feature": "an imported model", **_PRICES}}))
        cmd_import(argparse.Namespace(what="llms", file=catalogue, update=False), store)
        assert follower.poll() == 1
        assert app.state.service.scorer.router.wait_exact(30)
        again = client.post("/v1/route", json=body, headers=AUTH).json()["candidates"][0]
        assert again["effect"] == pytest.approx(learned["effect"], abs=1e-3)
        before = learned["cost"]
        catalogue.write_text(
            json.dumps({"llm-imported": {"feature": "an imported model", "input_price": 9.0, "output_price": 9.0}})
        )
        cmd_import(argparse.Namespace(what="llms", file=catalogue, update=True), store)
        assert follower.poll() == 1
        after = client.post("/v1/route", json=body, headers=AUTH).json()["candidates"][0]["cost"]
        assert after > 5 * before, (before, after)


_PRICES = {"input_price": 0.2, "output_price": 0.4}


def test_a_replica_applying_a_repricing_import_learns_the_cost_multiplier_a_restart_learns(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
    tmp_path: Path,
) -> None:
    """``import outcomes --llms … --update`` reprices two trained LLMs alike, with 20 rows for one billed at 3x
    what its new prices compute (stamped with the import's time): a running replica learns that multiplier from
    those rows, as a replica started afterwards does, and not from the costs billed at the old prices (it used
    to learn none, so the two disagreed until a retrain)."""
    import argparse
    import json

    import numpy as np

    from graphrouter.cli import cmd_import
    from graphrouter.cost import usd_costs

    world, paths = fitted
    data = world.data
    old = [Outcome(data.query_keys[i], "llm-3", 1.0, 100 * float(data.cost[i, 3])) for i in range(40)]
    store.write(GraphBatch(outcomes=old))  # billed at its old prices
    app = _replica(store, world, paths["gnn"])
    body = {"query": "task-1 something", "k": 2, "candidates": ["llm-2", "llm-3"], "scenario": "performance_first"}
    catalogue, rows = tmp_path / "llms.json", tmp_path / "outcomes.jsonl"
    prices = {"input_price": 9.0, "output_price": 9.0}
    catalogue.write_text(
        json.dumps({"llm-2": {"feature": "model 2", **prices}, "llm-3": {"feature": "model 3", **prices}})
    )
    computed = usd_costs(world.query_tokens[40:60], np.array([[9.0, 9.0]]))[:, 0]  # as the scorer computes them
    lines = []
    for i, c in zip(range(40, 60), computed, strict=True):
        q = store.get_node("Query", data.query_keys[i])
        lines.append(
            {"query": q.text, "query_id": q.key, "task": q.task, "llm": "llm-2", "effect": 1.0, "cost": 3 * float(c)}
        )  # type: ignore[attr-defined]
    rows.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with TestClient(app) as client:
        cmd_import(argparse.Namespace(what="outcomes", file=rows, llms=catalogue, source="probe", update=True), store)
        assert app.state.follower.poll() == 1
        running = {c["name"]: c["cost"] for c in client.post("/v1/route", json=body).json()["candidates"]}
    with TestClient(_replica(store, world, paths["gnn"])) as client:
        restarted = {c["name"]: c["cost"] for c in client.post("/v1/route", json=body).json()["candidates"]}
    # 20 costs at 3x and a prior of 5 for llm-2; none of llm-3's 40 old ones at 100x
    assert running["llm-2"] == pytest.approx(running["llm-3"] * 3 ** (20 / 25), rel=1e-6), running
    assert running == pytest.approx(restarted, rel=1e-6)


# ---- retention: pruning, and a replica that fell behind it ------------------------------------------------------
def test_a_replica_behind_the_pruned_log_resyncs_from_the_store(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
) -> None:
    world, paths = fitted
    a_app, b_app = _replica(store, world, paths["gnn"]), _replica(store, world, paths["gnn"])
    with TestClient(a_app) as a, TestClient(b_app) as b:
        follow_b = b_app.state.follower
        behind = follow_b.version
        assert a.post("/v1/llms", json=NEW_LLM, headers=AUTH).status_code == 201
        assert a.delete("/v1/llms/llm-1", headers=AUTH).status_code == 200
        store.prune_changes(store.latest_version())  # both changes gone from the log before B read them
        assert store.pruned_through() > behind
        follow_b.poll()
        assert follow_b.resyncs == 1 and follow_b.version == store.latest_version()
        names = _names(b)
        assert "llm-new" in names and "llm-1" not in names  # what a restart would have given
        assert names == _names(a) or set(names) == set(_names(a))
        # followed normally from there on
        assert a.delete("/v1/llms/llm-new", headers=AUTH).status_code == 200
        assert follow_b.poll() == 1 and "llm-new" not in _names(b) and follow_b.resyncs == 1


def test_a_resync_that_cannot_reload_the_checkpoint_syncs_the_serving_scorer_with_routing_held(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback changes the scorer that requests are reading: it does so under the routing lock, so no request
    pairs a candidate with another's row while candidates are dropped and registered."""
    import threading

    import api.registry_loading as registry_loading
    from graphrouter.errors import GraphRouterError

    world, paths = fitted
    a_app, b_app = _replica(store, world, paths["gnn"]), _replica(store, world, paths["gnn"])
    with TestClient(a_app) as a, TestClient(b_app) as b:
        follow_b, service_b = b_app.state.follower, b_app.state.service
        serving = service_b.scorer
        held: list[bool] = []
        real_attach = registry_loading.attach_scorer

        def attach(scorer: Any, *args: Any, **kwargs: Any) -> Any:
            lock = service_b.lock
            held.append(lock._writer and lock._owner == threading.get_ident())
            return real_attach(scorer, *args, **kwargs)

        def no_checkpoint() -> Any:
            raise GraphRouterError("no checkpoint to reload")

        monkeypatch.setattr(registry_loading, "attach_scorer", attach)
        monkeypatch.setattr(follow_b._apply, "_reload", no_checkpoint)
        assert a.post("/v1/llms", json=NEW_LLM, headers=AUTH).status_code == 201
        assert a.delete("/v1/llms/llm-1", headers=AUTH).status_code == 200
        store.prune_changes(store.latest_version())
        follow_b.poll()
        assert follow_b.resyncs == 1 and service_b.scorer is serving  # synced in place
        assert held == [True]
        names = _names(b)
        assert "llm-new" in names and "llm-1" not in names


def test_a_resync_learns_a_re_registered_llm_from_the_store_not_from_its_old_incarnation(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
) -> None:
    world, paths = fitted
    a_app, b_app = _replica(store, world, paths["gnn"]), _replica(store, world, paths["gnn"])
    task = world.data.task_names[0]

    def post(client: TestClient, text: str, effect: float) -> None:
        row = {"query": text, "task": task, "candidate": "llm-new", "effect": effect, "cost": 0.001}
        assert client.post("/v1/outcomes", json={"outcomes": [row]}, headers=AUTH).status_code == 200

    with TestClient(a_app) as a, TestClient(b_app) as b:
        follow_b = b_app.state.follower
        assert a.post("/v1/llms", json=NEW_LLM, headers=AUTH).status_code == 201
        post(a, "an old incarnation's query", 0.0)
        follow_b.poll()
        learned_b = lambda: b_app.state.service.scorer.online.counts(["llm-new"])[0]  # noqa: E731
        assert learned_b() == 1
        # while B does not follow: llm-new deleted and registered again as another model, with an outcome of its own
        assert a.delete("/v1/llms/llm-new", headers=AUTH).status_code == 200
        assert a.post("/v1/llms", json={**NEW_LLM, "description": "another model"}, headers=AUTH).status_code == 201
        post(a, "the new incarnation's query", 1.0)
        store.prune_changes(store.latest_version())
        follow_b.poll()
        assert follow_b.resyncs == 1
        assert learned_b() == 1 == a_app.state.service.scorer.online.counts(["llm-new"])[0]  # its own outcome only
        route = {"query": "the new incarnation's query", "task": task, "k": 10, "candidates": ["llm-new"]}
        effect = [c.post("/v1/route", json=route).json()["candidates"][0]["effect"] for c in (a, b)]
        assert effect[1] == pytest.approx(effect[0], abs=1e-4)  # the same refit (to its optimiser's tolerance)


def test_the_follower_prunes_by_the_retention_settings(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
) -> None:
    from graph_store.changes import CHECKPOINT, Change

    world, paths = fitted
    # following (the thread's first tick is an hour away: the test polls itself)
    app = _replica(store, world, paths["gnn"], changelog_keep=2, changelog_keep_seconds=0, sync_interval=3600)
    with TestClient(app):
        follower = app.state.follower
        base = store.latest_version()
        for i in range(5):
            store.record_change(Change(CHECKPOINT, f"not-a-file-{i}", origin=app.state.service.replica_id))
        assert follower.prune() == 0  # never past what this replica has applied
        follower.poll()
        assert follower.prune() >= 3 and store.pruned_through() == base + 3
        assert [c.key for c in store.changes_since(base + 3)] == ["not-a-file-3", "not-a-file-4"]
    young = _replica(store, world, paths["gnn"], changelog_keep=0, changelog_keep_seconds=3600)
    with TestClient(young):
        young.state.follower.poll()
        assert young.state.follower.prune() == 0  # every change is younger than an hour


def test_a_published_checkpoint_this_replica_cannot_see_is_logged_not_ignored(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    from graph_store.changes import CHECKPOINT, Change

    world, paths = fitted
    app = _replica(store, world, paths["gnn"])
    with TestClient(app) as client, caplog.at_level("WARNING", logger="api"):
        serving = client.get("/ready").json()["checkpoint"]
        # another replica published to its own path, not the one this replica reads
        store.record_change(Change(CHECKPOINT, "elsewhere-1", origin="another-replica"))
        assert app.state.follower.poll() == 1
        assert client.get("/ready").json()["checkpoint"] == serving
    assert "published checkpoint elsewhere-1, but" in caplog.text and "GRAPHROUTER_CHECKPOINT" in caplog.text


def test_the_follower_expires_pending_outcomes_whose_feedback_never_came(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
) -> None:
    import time

    from graph_store import PendingOutcome, Query
    from graph_store.changes import now

    world, paths = fitted
    query = Query("a proxied question", world.data.task_names[0])
    llm = world.data.candidates[0]
    old, fresh = now(time.time() - 3 * 3600), now(time.time() - 60)
    rows = [PendingOutcome("stale", query.id, llm, 0.0, observed_at=old)]
    rows.append(PendingOutcome("recent", query.id, llm, 0.0, observed_at=fresh))
    store.write(GraphBatch(queries=[query], pending=rows))
    keep_all = _replica(store, world, paths["gnn"], pending_ttl_seconds=0)
    with TestClient(keep_all):
        assert keep_all.state.follower.expire_pending() == 0  # 0: never
    app = _replica(store, world, paths["gnn"], pending_ttl_seconds=3600)
    with TestClient(app) as client:
        assert app.state.follower.expire_pending() == 1 and client.get("/ready").json()["pending_expired"] == 1
        metrics = client.get("/metrics").text  # the same figures for Prometheus
        assert "graphrouter_pending_expired_total 1.0" in metrics
        assert f"graphrouter_change_version {float(client.get('/ready').json()['change_version'])}" in metrics
        r = client.post("/v1/feedback", json={"id": "stale", "effect": 1.0}, headers=AUTH)
        assert r.status_code == 404 and "stale" in r.json()["detail"], r.text
        r = client.post("/v1/feedback", json={"id": "recent", "effect": 1.0}, headers=AUTH)
        assert r.status_code == 200, r.text
    # the follower's thread does it by itself at its pruning interval, even when its pruning of the log fails
    store.write(GraphBatch(pending=[PendingOutcome("stale-2", query.id, llm, 0.0, observed_at=old)]))
    ticking = _replica(store, world, paths["gnn"], pending_ttl_seconds=3600, changelog_prune_interval=0.05)
    with TestClient(ticking):
        follower = ticking.state.follower

        def broken() -> int:
            raise RuntimeError("the change log cannot be pruned")

        follower.prune = broken
        deadline = time.monotonic() + 10
        while follower.expired == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert follower.expired == 1


def test_replicas_train_one_at_a_time(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A training claims the store's change log; another replica's POST /v1/train is a 409 naming it until it ends,
    and then trains (tests/test_api_train.py holds the training at its world build, as there)."""
    world, paths = fitted
    _store_outcomes(store, world)
    started, release = hold_world_build(monkeypatch)
    tiny = {"train_router": "gnn", "train_params": TINY_GNN, "checkpoint": paths["gnn"].parent / "shared.pt"}
    shutil.copy(paths["gnn"], tiny["checkpoint"])  # both publish here
    ckpt = tiny.pop("checkpoint")
    a_app, b_app = _replica(store, world, ckpt, **tiny), _replica(store, world, ckpt, **tiny)
    with TestClient(a_app) as a, TestClient(b_app) as b:
        assert a.post("/v1/train", headers=AUTH).status_code == 202
        assert started.wait(60)
        r = b.post("/v1/train", headers=AUTH)  # B's follower has not polled: the claim is read back from the log
        a_id = a_app.state.service.replica_id
        assert r.status_code == 409 and f"replica {a_id} is training" in r.json()["detail"], r.text
        assert b_app.state.follower.poll() >= 1  # now it knows the claim from its follower too
        assert b.post("/v1/train", headers=AUTH).status_code == 409
        late_app = _replica(store, world, ckpt, **tiny)  # started while A trains: it reads A's claim back at start
        with TestClient(late_app) as late:
            r = late.post("/v1/train", headers=AUTH)
            assert r.status_code == 409 and f"replica {a_id} is training" in r.json()["detail"], r.text
        release.set()
        assert a_app.state.trainer.wait(120).status == "succeeded"
        b_app.state.follower.poll()  # A's checkpoint and the claim's end
        assert b.post("/v1/train", headers=AUTH).status_code == 202  # free again
        assert b_app.state.trainer.wait(120).status == "succeeded"
    kinds = [c.kind for c in store.changes_since(store.pruned_through(), limit=10_000)]
    assert kinds.count(TRAINING_STARTED) == kinds.count(TRAINING_ENDED) == 3  # B's withdrawn claim included

    # a replica killed while training left its claim open: its restart on that host is not blocked by it
    import subprocess
    import sys

    from api.training_lease import HOST

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {"host": HOST, "pid": int(gone.stdout), "process": "an earlier one"}
    store.record_change(Change(TRAINING_STARTED, "dead-training", dead, origin="a-killed-replica"))
    restarted = _replica(store, world, ckpt, **tiny)
    with TestClient(restarted) as client:
        assert client.post("/v1/train", headers=AUTH).status_code == 202
        assert restarted.state.trainer.wait(120).status == "succeeded"


def test_a_claims_end_an_outage_kept_out_is_written_once_the_store_answers(
    store: GraphStore,  # noqa: F811
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Else other replicas would take the training as running for the whole lease (an hour by default)."""
    from graph_store import StoreUnavailableError

    world, paths = fitted
    app = _replica(store, world, paths["gnn"])

    def ended() -> list[str]:
        return [c.key for c in store.changes_since(store.pruned_through(), limit=10_000) if c.kind == TRAINING_ENDED]

    with TestClient(app):
        lease = app.state.trainer.lease
        tid = lease.claim()
        real = store.record_change

        def down(change: Change) -> None:
            raise StoreUnavailableError("the store is down")

        monkeypatch.setattr(store, "record_change", down)
        lease.release(tid)  # logged, not raised: the training's outcome is reported all the same
        with pytest.raises(StoreUnavailableError):
            lease.retry_releases()  # still down: the follower's next tick tries again
        monkeypatch.setattr(store, "record_change", real)
        assert tid not in ended()
        assert lease.retry_releases() == 1 and tid in ended()
        assert lease.retry_releases() == 0
