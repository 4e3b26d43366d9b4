# temporary review repro; not part of the change
from __future__ import annotations
import argparse, json
from pathlib import Path
from fastapi.testclient import TestClient
from graph_store import GraphStore
from graphrouter.world import World
from tests.test_api import AUTH, KEY, NEW_LLM, fitted, store  # noqa: F401
from tests.test_replication import _replica, _names, _PRICES


def test_repro_import_llm_backing_registered_agent(store: GraphStore, fitted: tuple[World, dict[str, Path]], tmp_path: Path) -> None:  # noqa: F811
    from graphrouter.cli import cmd_import
    world, paths = fitted
    app = _replica(store, world, paths["gnn"])
    with TestClient(app) as client:
        follower = app.state.follower
        r = client.post("/v1/agents", json={"name": "ag", "llm": "llm-2", "description": "an agent"}, headers=AUTH)
        assert r.status_code == 201, r.text
        assert follower.poll() == 0
        catalogue = tmp_path / "llms.json"
        catalogue.write_text(json.dumps({"llm-2": {"feature": "model 2", "input_price": 9.0, "output_price": 9.0}}))
        cmd_import(argparse.Namespace(what="llms", file=catalogue, update=True), store)
        follower.poll()
        print("names", _names(client))
        print("excluded", app.state.service.scorer.excluded)
        body = {"query": "task-1 something", "k": 2, "candidates": ["llm-2", "ag"]}
        r = client.post("/v1/route", json=body, headers=AUTH)
        print(r.status_code, r.text)
        assert "llm-2" in _names(client)


def test_repro_reimport_same_forgets(store: GraphStore, fitted: tuple[World, dict[str, Path]], tmp_path: Path) -> None:  # noqa: F811
    from graphrouter.cli import cmd_import
    world, paths = fitted
    app = _replica(store, world, paths["gnn"])
    with TestClient(app) as client:
        follower = app.state.follower
        catalogue = tmp_path / "llms.json"
        catalogue.write_text(json.dumps({"llm-imported": {"feature": "an imported model", **_PRICES}}))
        cmd_import(argparse.Namespace(what="llms", file=catalogue, update=False), store)
        assert follower.poll() == 1
        # outcomes on NEW queries (text given) learned online
        rows = [{"query": f"task-1 brand new question {i}", "task": "task-1", "llm": "llm-imported", "effect": 1.0, "cost": 0.01} for i in range(20)]
        r = client.post("/v1/outcomes", json={"outcomes": rows}, headers=AUTH)
        print("post", r.status_code, r.text[:300])
        sc = app.state.service.scorer
        n_before = sc.online.counts(sc.candidates)[sc.candidates.index("llm-imported")]
        body = {"query": "task-1 brand new question 3", "k": 1, "candidates": ["llm-imported"]}
        before = client.post("/v1/route", json=body).json()["candidates"][0]
        cmd_import(argparse.Namespace(what="llms", file=catalogue, update=False), store)  # same data
        assert follower.poll() == 1
        sc = app.state.service.scorer
        n_after = sc.online.counts(sc.candidates)[sc.candidates.index("llm-imported")]
        after = client.post("/v1/route", json=body).json()["candidates"][0]
        print("online counts", n_before, n_after)
        print("before", before); print("after", after)
        assert n_after == n_before
