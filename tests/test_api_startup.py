"""Start-up in the background (GRAPHROUTER_LOAD_IN_BACKGROUND, on for ``serve``): the app answers at once, /ready
says how far the load got, routes answer 503 with Retry-After while it runs, and the store's candidates registered
since training are routable once it is done."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

import api.registry_loading
from graph_store import LLM, GraphBatch, LLMNode, Outcome
from graph_store.backends.embedded import EmbeddedStore
from graphrouter.cost import usd_costs
from tests.routing_world import AUTH, fit_api_checkpoints, make_api_app, make_world, populate


def test_the_port_opens_at_once_and_ready_reports_the_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(per_task=30)
    checkpoint = fit_api_checkpoints(world, tmp_path)["gnn"]
    release = threading.Event()
    real_load = api.registry_loading.load_scorer

    def held_load(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(60)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(api.registry_loading, "load_scorer", held_load)
    with EmbeddedStore(tmp_path / "graph.db") as store:
        populate(store, world)
        store.write(GraphBatch(llms=[LLMNode(f"late-{i}", f"model {i}", 0.1, 0.2) for i in range(30)]))
        app = make_api_app(store, world, tmp_path, checkpoint=checkpoint, load_in_background=True)
        with TestClient(app) as client:
            assert client.get("/health").status_code == 200
            ready = client.get("/ready")
            assert ready.status_code == 503 and "loading" in ready.json()["scorer"], ready.text
            r = client.post("/v1/route", json={"query": "task-1 something", "k": 1})
            assert r.status_code == 503 and r.headers["Retry-After"], r.text
            assert "loading" in r.json()["detail"]
            release.set()
            assert app.state.registry.wait_loaded(60)
            ready = client.get("/ready")
            assert ready.status_code == 200 and ready.json()["candidates"] == 5 + 30, ready.text
            r = client.post("/v1/route", json={"query": "task-1 something", "k": 3})
            assert r.status_code == 200, r.text


def test_a_sync_reads_few_new_candidates_outcomes_one_by_one_and_many_in_one_read(tmp_path: Path) -> None:
    """A replica installing a checkpoint with one LLM registered since read every outcome of the store (9 s at 1M,
    under the registry lock; scalability audit): a few new candidates' are read by name, many in one read, alike."""
    from graphrouter import loading

    world = make_world(per_task=30)
    with EmbeddedStore(tmp_path / "graph.db") as store:
        populate(store, world)
        names = ["llm-0", "llm-3", "nobody"]
        few = loading._outcomes_of(store, LLM, names)
        assert set(few) == set(names) and few["nobody"] == [] and len(few["llm-0"]) > 0
        assert few["llm-0"] == store.outcomes(LLM, target="llm-0")
        many = loading._outcomes_of(store, LLM, [f"x{i}" for i in range(loading.PER_TARGET_READS)] + names)
        assert all(many.get(n, []) == few[n] for n in names)
        # and a service that starts with two LLMs registered since training reads theirs by name
        store.write(GraphBatch(llms=[LLMNode(f"late-{i}", f"model {i}", 0.1, 0.2) for i in range(2)]))
        calls: list[dict[str, Any]] = []
        real = store.outcomes

        def outcomes(kind: str = LLM, **filters: Any) -> list[Outcome]:
            calls.append(filters)
            return real(kind, **filters)

        store.outcomes = outcomes  # type: ignore[method-assign]
        checkpoint = fit_api_checkpoints(world, tmp_path)["gnn"]
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=checkpoint)) as client:
            assert client.get("/ready").json()["candidates"] == 5 + 2
        assert {"target": "late-0"} in calls and not [c for c in calls if not any(c.values())], calls


def test_a_trained_llm_changed_in_the_store_is_routed_with_the_store_data_after_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``register-llm --update`` (or delete and register again) on a trained LLM: a service started afterwards prices
    and fits it from the store, not from the checkpoint's copy (it used to keep the trained prices and outcomes)."""
    world = make_world(per_task=30)
    checkpoint = fit_api_checkpoints(world, tmp_path)["gnn"]
    body = {"query": "task-1 something", "k": 1, "candidates": ["llm-1"], "scenario": "performance_first"}
    with EmbeddedStore(tmp_path / "graph.db") as store:
        populate(store, world)
        billed = [  # its stored outcomes, billed at the price it had: they must not undo the new price
            Outcome(world.data.query_keys[i], "llm-1", float(world.data.effect[i, 1]), float(world.data.cost[i, 1]))
            for i in range(40)
        ]
        store.write(GraphBatch(outcomes=billed))
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=checkpoint)) as client:
            before = client.post("/v1/route", json=body).json()["candidates"][0]
            agent = {"name": "ag", "llm": "llm-1", "description": "ReAct on llm-1"}
            assert client.post("/v1/agents", json=agent, headers=AUTH).status_code == 201
        store.upsert([LLMNode("llm-1", "model 1, upgraded", 5.0, 5.0)])  # what register-llm --update writes
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=checkpoint)) as client:
            after = client.post("/v1/route", json=body).json()["candidates"][0]
            assert client.get("/ready").json()["candidates"] == 6
            on_it = client.post("/v1/route", json={**body, "candidates": ["ag"]}).json()["candidates"][0]
            assert on_it["cost"] == after["cost"]  # the agent runs on the repriced LLM
            untouched = client.post("/v1/route", json={**body, "candidates": ["llm-2"]}).json()["candidates"][0]
    assert after["cost"] > 5 * before["cost"], (before, after)  # 0.575 → 5.0 USD per 1M tokens
    # routed as newly registered, fitted on its stored outcomes, and the agent on it with it; the others as trained
    changed = [r.getMessage() for r in caplog.records if "routed as newly registered" in r.getMessage()]
    assert len(changed) == 1 and changed[0].endswith(": llm-1"), changed  # ag, registered since, is new anyway
    assert untouched["cost"] < after["cost"]


def test_a_repriced_llm_learns_its_cost_multiplier_from_the_costs_billed_since(tmp_path: Path) -> None:
    """A trained LLM repriced with a date (``priced_at``, what ``import llms --update`` writes): a service started
    afterwards ignores its costs billed before the change and learns its multiplier from those billed since (3x
    what its new prices compute: an upgraded model that answers at length)."""
    world = make_world(per_task=30)
    checkpoint = fit_api_checkpoints(world, tmp_path)["gnn"]
    body = {"query": "task-1 something", "k": 1, "candidates": ["llm-1"], "scenario": "performance_first"}
    data = world.data
    with EmbeddedStore(tmp_path / "graph.db") as store:
        populate(store, world)
        old = [Outcome(data.query_keys[i], "llm-1", 1.0, 100 * float(data.cost[i, 1])) for i in range(40)]
        store.write(GraphBatch(outcomes=old))  # billed at its old prices (no time given: before any change)
        store.upsert([LLMNode("llm-1", "model 1, upgraded", 5.0, 5.0, priced_at="2026-01-01T00:00:00Z")])
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=checkpoint)) as client:
            plain = client.post("/v1/route", json=body).json()["candidates"][0]
        computed = usd_costs(world.query_tokens[40:60], np.array([[5.0, 5.0]]))[:, 0]  # as the scorer computes them
        since = [
            Outcome(data.query_keys[i], "llm-1", 1.0, 3 * float(c), observed_at="2026-02-01T00:00:00Z")
            for i, c in zip(range(40, 60), computed, strict=True)
        ]
        store.write(GraphBatch(outcomes=since))
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=checkpoint)) as client:
            learned = client.post("/v1/route", json=body).json()["candidates"][0]
    # 20 costs at 3x, a prior of 5; the 40 old ones at 100x would have made it ~60x before and ~9x after
    assert learned["cost"] == pytest.approx(plain["cost"] * 3 ** (20 / 25), rel=1e-6)


def test_an_llm_deleted_and_registered_again_at_other_prices_keeps_its_costs_at_a_restart(tmp_path: Path) -> None:
    """DELETE then POST /v1/llms at other prices: every stored cost of it is billed at the new ones, so the
    registration dates its prices and a restart learns its cost multiplier from them as the running service did
    (undated, a restart used none of them)."""
    world = make_world(per_task=30)
    checkpoint = fit_api_checkpoints(world, tmp_path)["gnn"]
    body = {"query": "task-1 something", "k": 1, "candidates": ["llm-1"], "scenario": "performance_first"}
    computed = usd_costs(world.query_tokens[:20], np.array([[5.0, 5.0]]))[:, 0]  # as the scorer computes them
    rows = [
        {"query_id": world.data.query_keys[i], "effect": 1.0, "cost": 3 * float(c)}
        for i, c in zip(range(20), computed, strict=True)
    ]
    llm = {"name": "llm-1", "description": "model 1, upgraded", "input_price": 5.0, "output_price": 5.0}
    with EmbeddedStore(tmp_path / "graph.db") as store:
        populate(store, world)
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=checkpoint)) as client:
            assert client.delete("/v1/llms/llm-1", headers=AUTH).status_code == 200
            r = client.post("/v1/llms", json={**llm, "outcomes": rows}, headers=AUTH)
            assert r.status_code == 201, r.text
            running = client.post("/v1/route", json=body).json()["candidates"][0]
        stored = store.get_node("LLM", "llm-1")
        assert isinstance(stored, LLMNode) and stored.priced_at
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=checkpoint)) as client:
            restarted = client.post("/v1/route", json=body).json()["candidates"][0]
            plain = {**llm, "name": "llm-plain"}  # the same prices, no outcomes: no multiplier learned
            assert client.post("/v1/llms", json=plain, headers=AUTH).status_code == 201
            unlearned = client.post("/v1/route", json={**body, "candidates": ["llm-plain"]}).json()["candidates"][0]
    assert running["cost"] == pytest.approx(unlearned["cost"] * 3 ** (20 / 25), rel=1e-6)
    assert restarted["cost"] == pytest.approx(running["cost"], rel=1e-6)


def test_an_llm_deleted_and_registered_again_with_the_same_data_is_routed_on_its_new_outcomes_after_a_restart(
    tmp_path: Path,
) -> None:
    """DELETE takes a trained LLM's outcomes; registered again with the same data and shown by 30 outcomes to fail
    on task-1, a restart used the checkpoint's copy of it, trained on the deleted outcomes (its registration data
    had not changed), until a retrain. It now sees that the store holds fewer outcomes than it was trained with."""
    world = make_world(per_task=30)
    checkpoint = fit_api_checkpoints(world, tmp_path)["gnn"]
    data = world.data
    body = {"query": "task-1 something", "k": 1, "candidates": ["llm-1"], "scenario": "performance_first"}
    llm = {"name": "llm-1", "description": data.candidate_text[1]}
    llm |= dict(zip(("input_price", "output_price"), map(float, data.candidate_prices[1]), strict=True))
    on_task_1 = [k for k, t in zip(data.query_keys, data.query_task, strict=True) if t == 1][:30]
    rows = [{"query_id": q, "effect": 0.0, "cost": 0.0001} for q in on_task_1]
    with EmbeddedStore(tmp_path / "graph.db") as store:
        populate(store, world)
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=checkpoint)) as client:
            trained = client.post("/v1/route", json=body).json()["candidates"][0]
            assert client.delete("/v1/llms/llm-1", headers=AUTH).json()["outcomes_deleted"] == 120
            assert client.post("/v1/llms", json={**llm, "outcomes": rows}, headers=AUTH).status_code == 201
            running = client.post("/v1/route", json=body).json()["candidates"][0]
            running_learning = client.get("/v1/llms/llm-1").json()["learning"]
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=checkpoint)) as client:
            restarted = client.post("/v1/route", json=body).json()["candidates"][0]
            restarted_learning = client.get("/v1/llms/llm-1").json()["learning"]
    assert running["effect"] < trained["effect"] - 0.2, (trained, running)  # 30 failures on the task
    assert restarted["effect"] == pytest.approx(running["effect"], abs=0.02), (running, restarted)
    assert restarted_learning["outcomes"] == running_learning["outcomes"] == 30


def test_a_deleted_stored_query_leaves_the_trained_llms_trained_and_replacing_every_one_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored query deleted takes its outcomes: every LLM that answered it held fewer stored outcomes than the
    checkpoint was trained with, read as deleted and registered again, so every one was to be replaced and the start
    failed on the last ("a router needs at least one"): no scorer, /ready 503 for good. The shortfall is now counted
    on the training queries still stored. And where every trained LLM really was deleted and registered again (no
    outcomes), they are routed with the checkpoint's data, with a warning, instead of failing the start. Neither
    start reads every stored query's node (with its embedding): only those a candidate no longer answers, a batch at
    a time until one is still stored."""
    from graphrouter import loading

    monkeypatch.setattr(loading, "SHORTFALL_BATCH", 10)
    world = make_world(per_task=30)
    checkpoint = fit_api_checkpoints(world, tmp_path)["gnn"]
    n = len(world.data.candidates)
    body = {"query": "task-1 something", "k": n, "scenario": "performance_first"}

    def start(store: EmbeddedStore) -> tuple[httpx.Response, list[dict[str, Any]]]:
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=checkpoint)) as client:
            return client.get("/ready"), client.post("/v1/route", json=body).json()["candidates"]

    def effects(ranked: list[dict[str, Any]]) -> dict[str, float]:
        return {x["name"]: x["effect"] for x in ranked}

    with EmbeddedStore(tmp_path / "graph.db") as store:
        populate(store, world)
        _, before = start(store)
        read: list[int] = []
        get_nodes = store.get_nodes

        def counted(label: str, keys: Any) -> Any:
            keys = list(keys)
            read.extend([len(keys)] if label == "Query" else [])
            return get_nodes(label, keys)

        monkeypatch.setattr(store, "get_nodes", counted)
        store.delete_node("Query", world.data.query_keys[0])  # its outcomes with it, one of every LLM
        with caplog.at_level("WARNING"):
            ready, after = start(store)
        assert read == [1]  # the LLMs' one lost outcome: on a deleted query (read once for all)
        assert ready.status_code == 200, ready.text
        assert effects(after) == pytest.approx(effects(before), abs=0.02)
        assert "changed in the store since training" not in caplog.text
        llms = [store.get_node("LLM", name) for name in world.data.candidates]
        for name in world.data.candidates:  # every one deleted and registered again with the same data
            store.delete_node("LLM", name)
        store.write(GraphBatch(llms=llms))  # type: ignore[arg-type]
        caplog.clear()
        read.clear()
        with caplog.at_level("WARNING"):
            ready, again = start(store)
        assert read == [10] * n  # each LLM's first batch of lost outcomes holds a stored query
    assert ready.status_code == 200 and ready.json()["candidates"] == n, ready.text
    assert effects(again) == pytest.approx(effects(before), abs=0.02)
    assert "replacing them all would leave nothing trained to route" in caplog.text


class _Capture:
    """What :func:`sync_with_store` asks of a scorer, keeping the candidates it registers (the router is not what
    is tested here)."""

    candidates: list[str] = []

    def __init__(self) -> None:
        self.specs: list[Any] = []
        self.embedder = self
        self.router = self

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 4), dtype=np.float32)

    def training_rows(self, effects: dict[str, float], costs: dict[str, float]) -> tuple[Any, Any]:
        return effects, costs

    def register_candidates(self, specs: list[Any]) -> None:
        self.specs.extend(specs)


def test_a_start_keeps_the_costs_billed_at_a_candidates_current_prices(tmp_path: Path) -> None:
    """Which stored costs set a changed trained candidate's cost multiplier at a start: those billed since its
    (LLM's) prices changed; none where that time is not known, i.e. an LLM repriced without a date (a version from
    before ``priced_at``) and every agent on it, and an agent moved to another LLM (its costs do not say on which they
    were billed). An agent replaced only because its LLM changed, or with a new description, keeps those since its
    LLM's date."""
    from types import SimpleNamespace

    from graph_store import Agent, Query, Task
    from graphrouter.loading import changed_since_training, sync_with_store
    from graphrouter.routing_data import RoutingData

    date, before, after = "2026-01-01T00:00:00Z", "2025-06-01T00:00:00Z", "2026-02-01T00:00:00Z"
    agents = [Agent("ag", "a", "ReAct on a"), Agent("ag2", "a", "ReAct on a, again"), Agent("ag3", "b", "ReAct on b")]
    agents.append(Agent("ag5", "c", "ReAct on c"))
    names = ["a", "b", "c"] + [g.name for g in agents]
    with EmbeddedStore(tmp_path / "graph.db") as store:
        store.write(
            GraphBatch(
                tasks=[Task("t")],
                queries=[Query("old", "t", id="q-old"), Query("new", "t", id="q-new")],
                llms=[LLMNode(n, f"model {n}", 1.0, 2.0) for n in "abc"],
                agents=agents,
                outcomes=[
                    Outcome(q, name, 1.0, cost, kind="Agent" if name.startswith("ag") else "LLM", observed_at=at)
                    for name in names
                    for q, cost, at in (("q-old", 9.0, before), ("q-new", 1.0, after))
                ],
            )
        )
        data = RoutingData.from_snapshot(store.snapshot())  # what a checkpoint trained on this store holds
        trained = SimpleNamespace(router=SimpleNamespace(world=SimpleNamespace(data=data)))
        trained.candidates, trained.kinds = list(data.candidates), list(data.candidate_kind)
        store.upsert(
            [
                LLMNode("a", "model a", 3.0, 4.0),  # repriced by an older version: no date
                LLMNode("b", "model b, upgraded", 1.0, 2.0),  # its description only
                LLMNode("c", "model c", 3.0, 4.0, priced_at=date),
                Agent("ag", "c", "ReAct on a"),  # moved to c
                Agent("ag3", "b", "ReAct on b, improved"),
                Agent("ag2", "a", "ReAct on a, improved"),  # on a: billed at a's prices, changed when is not known
                Agent("ag4", "a", "registered since training, on a"),
            ]
        )
        store.write(GraphBatch(outcomes=[Outcome("q-old", "ag4", 1.0, 9.0, kind="Agent", observed_at=before)]))
        changed, undated = changed_since_training(trained, store)  # type: ignore[arg-type]
        assert (changed, undated) == (names, {"a", "ag", "ag2", "ag4"})  # ag5 is replaced as c is, and dated by it
        scorer = _Capture()
        added, skipped = sync_with_store(scorer, store, undated=undated)  # type: ignore[arg-type]
    assert (sorted(added), skipped) == (sorted([*names, "ag4"]), [])
    costs = {s.name: s.costs for s in scorer.specs}
    effects = {s.name: s.outcomes for s in scorer.specs}
    both, since = {"q-old": 9.0, "q-new": 1.0}, {"q-new": 1.0}
    assert costs == {"a": {}, "b": both, "c": since, "ag": {}, "ag2": {}, "ag3": both, "ag4": {}, "ag5": since}
    assert effects.pop("ag4") == {"q-old": 1.0}
    assert all(e == {"q-old": 1.0, "q-new": 1.0} for e in effects.values())  # its effects are kept, whatever changed
