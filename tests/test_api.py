"""The REST service in-process (``with TestClient(app)``, so the lifespan runs), against both store backends.

The store holds the synthetic world's tasks, queries and LLMs; the scorer comes from a checkpoint of a router
fitted on that world (knn_task: fast; a small GNN where an LLM must be registered without retraining), with the
deterministic HashEmbedder standing in for the sentence embedder.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from api.state import ServiceState
from graph_store import GraphStore
from graph_store.backends.embedded import EmbeddedStore
from graphrouter.checkpoint import load_checkpoint
from graphrouter.routers.gnn import GnnRouter
from graphrouter.scorer import Scorer
from graphrouter.world import World
from tests.conftest import StoreOpener
from tests.routing_world import (
    AUTH,
    KEY,
    NEW_LLM,
    HashEmbedder,
    fit_api_checkpoints,
    make_api_app,
    make_world,
    populate,
)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, dict[str, Path]]:
    """The world (30 queries per task) and a checkpoint per router, fitted on every query."""
    world = make_world(per_task=30)
    return world, fit_api_checkpoints(world, tmp_path_factory.mktemp("checkpoints"))


AppMaker = Callable[..., FastAPI]


@pytest.fixture
def store(open_store_fn: StoreOpener, fitted: tuple[World, dict[str, Path]]) -> Iterator[GraphStore]:
    with open_store_fn() as s:
        populate(s, fitted[0])
        yield s


@pytest.fixture
def make_app(store: GraphStore, fitted: tuple[World, dict[str, Path]], tmp_path: Path) -> AppMaker:
    """An app on the populated store whose lifespan loads the scorer from the named router's checkpoint."""
    world, paths = fitted

    def make(router: str = "knn_task", **settings: Any) -> FastAPI:
        return make_api_app(store, world, tmp_path, **{"checkpoint": paths[router], **settings})

    return make


def test_health_and_ready(make_app: AppMaker) -> None:
    with TestClient(make_app()) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready" and body["router"] == "knn_task" and body["candidates"] == 5


def test_route_with_an_injected_scorer(store: GraphStore, fitted: tuple[World, dict[str, Path]]) -> None:
    world, paths = fitted
    ckpt = load_checkpoint(paths["knn_task"], "hash-test")
    app = create_app(Settings(store="unused", api_key=KEY), store=store, scorer=Scorer(ckpt, HashEmbedder(world)))
    with TestClient(app) as client:
        r = client.post("/v1/route", json={"query": "task-2 what is this", "k": 3, "scenario": "balance"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["task"] == "task-2" and body["task_inferred"] is True
        assert body["weights"] == {"w_effect": 0.5, "w_cost": 0.5} and body["checkpoint"] == ckpt.version
        assert len(body["candidates"]) == 3
        utilities = [c["utility"] for c in body["candidates"]]
        assert utilities == sorted(utilities, reverse=True)
        assert all(c["kind"] == "LLM" and 0 <= c["effect"] <= 1 and c["cost"] > 0 for c in body["candidates"])

        r = client.post(
            "/v1/route",
            json={
                "query": "task-1 q",
                "task": "task-3",
                "k": 2,
                "weights": {"w_effect": 1, "w_cost": 0},
                "candidates": ["llm-0", "llm-4"],
                "budget": 1.0,
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert {c["name"] for c in body["candidates"]} == {"llm-0", "llm-4"}
        assert body["task"] == "task-3" and body["task_inferred"] is False

        # a budget copied from an answer's cost (given to 12 significant digits) affords that candidate
        for query in ("What is 12 times 7?", "task-2 a longer question about something else entirely"):
            shown = client.post("/v1/route", json={"query": query, "k": 5}).json()["candidates"]
            for c in shown:
                r = client.post("/v1/route", json={"query": query, "k": 5, "budget": c["cost"]})
                assert r.status_code == 200 and c["name"] in {x["name"] for x in r.json()["candidates"]}, (c, r.text)


def test_batch(make_app: AppMaker) -> None:
    with TestClient(make_app(max_batch_size=3)) as client:
        items = [{"query": f"task-{t} question", "k": 2} for t in range(3)]
        r = client.post("/v1/route/batch", json={"queries": items})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [res["task"] for res in results] == ["task-0", "task-1", "task-2"]
        assert all(len(res["candidates"]) == 2 for res in results)

        r = client.post("/v1/route/batch", json={"queries": [items[0], {"query": "x", "task": "cooking"}]})
        assert r.status_code == 400 and r.json()["detail"].startswith("queries[1].task: unknown task 'cooking'"), r.text
        r = client.post("/v1/route/batch", json={"queries": items + items[:1]})
        assert r.status_code == 422 and "the limit is 3" in r.json()["detail"], r.text
        r = client.post("/v1/route/batch", json={"queries": []})
        assert r.status_code == 422 and r.json()["detail"].startswith("queries: "), r.text
        r = client.post("/v1/route/batch", json={"queries": [items[0], {"k": 1}]})
        assert r.status_code == 422 and "queries[1].query: Field required" in r.json()["detail"], r.text


# (body: a dict sent as JSON or a str sent raw as application/json, expected status, expected part of "detail")
BAD_ROUTES: list[tuple[dict[str, Any] | str, int, str]] = [
    ('{"query": "task-0 a",', 400, "malformed JSON in the request body"),
    ("NaN", 422, "body: Input should be a valid dictionary"),
    ({}, 422, "query: Field required"),
    ({"query": 5}, 422, "query: Input should be a valid string"),
    ({"query": "   "}, 422, "query: Value error, must not be empty or only whitespace"),
    ({"query": ""}, 422, "query: Value error, must not be empty or only whitespace"),
    ('{"query": "abc \\ud800 def"}', 422, "query: Value error, must be valid Unicode: it holds a lone surrogate"),
    ('{"query": "abc \\u0000 def"}', 422, "query: Value error, must not contain NUL characters (at character 4)"),
    ({"query": "x" * 20_001}, 422, "query: 20,001 characters; the limit is 20,000"),
    ({"query": "q", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ({"query": "q", "k": "three"}, 422, "k: Input should be a valid integer"),
    ({"query": "q", "k": "3"}, 422, "k: Input should be a valid integer"),  # strict: no string-to-number coercion
    ({"query": "q", "k": True}, 422, "k: Input should be a valid integer"),
    ({"query": "q", "k": 2.0}, 422, "k: Input should be a valid integer"),
    ({"query": "q", "weights": {"w_effect": "1_0", "w_cost": 1}}, 422, "weights.w_effect: Input should be a valid num"),
    ({"query": "q", "budget": "1"}, 422, "budget: Input should be a valid number"),
    ({"query": "q", "candidates": "llm-0"}, 422, "candidates: Input should be a valid list"),
    ('{"query": "q", "weights": {"w_effect": NaN, "w_cost": 1}}', 422, "weights.w_effect: Input should be a finite"),
    ({"query": "q", "weights": {"w_effect": 1, "w_cost": -0.5}}, 422, "weights.w_cost: Input should be greater"),
    ({"query": "q", "weights": {"w_effect": 1}}, 422, "weights.w_cost: Field required"),
    ({"query": "q", "weights": {"w_effect": 0, "w_cost": 0}}, 400, "weights: w_effect and w_cost cannot both be 0"),
    ({"query": "q", "weights": {"w_effect": 1.7e308, "w_cost": 1}}, 422, "weights.w_effect: Input should be less than"),
    ({"query": "q", "scenario": "fastest"}, 422, "scenario: Input should be 'performance_first', 'balance'"),
    (
        {"query": "q", "scenario": "balance", "weights": {"w_effect": 1, "w_cost": 0}},
        400,
        "scenario: give a scenario or explicit weights, not both",
    ),
    ({"query": "q", "candidates": ["llm-0", "gpt-9"]}, 400, "candidates: unknown candidate(s) ['gpt-9']"),
    ({"query": "q", "candidates": []}, 400, "candidates: the filter is empty; omit it"),
    ({"query": "q", "task": "cooking"}, 400, "task: unknown task 'cooking'"),
    ({"query": "q", "task": "task-0\n"}, 422, "task: Value error, holds the control character '\\n' at character 6"),
    ({"query": "q", "candidates": ["llm-0", " llm-1"]}, 422, "candidates[1]: Value error, has leading or trailing"),
    ({"query": "q", "budget": -1}, 422, "budget: Input should be greater than 0"),
    ({"query": "q", "budget": 1e-9}, 400, "no candidate fits the budget"),
    ({"query": "q", "top_k": 3}, 422, "top_k: Extra inputs are not permitted"),
]


def test_bad_route_requests_get_a_4xx_naming_the_problem(make_app: AppMaker) -> None:
    with TestClient(make_app()) as client:
        for body, code, message in BAD_ROUTES:
            if isinstance(body, str):
                r = client.post("/v1/route", content=body, headers={"Content-Type": "application/json"})
            else:
                r = client.post("/v1/route", json=body)
            shown = body if len(str(body)) < 80 else f"{str(body)[:60]}…"
            assert r.status_code == code, (shown, r.text)
            assert message in r.json()["detail"], (shown, r.text)
            assert "x" * 1000 not in r.text  # an oversized query is not echoed back
            if code == 422:  # every 422, raised by validation or by a handler, lists its fields
                field = message.split(":")[0]
                assert [e["field"] for e in r.json()["errors"]] == [field], (shown, r.text)
        assert client.get("/ready").status_code == 200  # nothing above broke the service


def test_query_parameters_are_as_strict_as_bodies(make_app: AppMaker) -> None:
    """An unknown query parameter was ignored: ?n=2 on the probes answered 20 probes, the default k (audit)."""
    with TestClient(make_app()) as client:
        for path, params, unknown, takes in [
            ("/v1/llms/llm-0/probes", {"n": 2}, ["n"], "k, seed"),
            ("/v1/llms", {"limit": 2, "ofset": 1, "x": 0}, ["ofset", "x"], "limit, offset"),
            ("/v1/tasks", {"page": 2}, ["page"], "limit, offset"),
            ("/v1/graph/stats", {"verbose": 1}, ["verbose"], "none"),
        ]:
            r = client.get(path, params=params, headers=AUTH)
            assert r.status_code == 422, (path, r.text)
            errors = r.json()["errors"]
            assert [e["field"] for e in errors] == [f"{name} (query parameter)" for name in unknown], r.text
            assert all(f"unknown query parameter; this operation takes {takes}" in e["problem"] for e in errors)
            assert r.json()["detail"].startswith(f"{unknown[0]} (query parameter): unknown query parameter")
        r = client.get(
            "/v1/llms/llm-0/probes", params={"k": 2, "seed": 1}, headers=AUTH
        )  # the parameters it takes still work
        assert r.status_code == 200 and r.json()["k"] == 2, r.text
        assert len(client.get("/v1/llms", params={"limit": 2}).json()["data"]) == 2
        # a write without the key is told so first, as without the parameter
        r = client.post("/v1/llms", params={"x": 1}, json=NEW_LLM)
        assert r.status_code == 401 and "missing 'Authorization: Bearer" in r.json()["detail"], r.text
        assert client.post("/v1/llms", params={"x": 1}, json=NEW_LLM, headers=AUTH).status_code == 422
        for path in ("/health", "/ready", "/metrics"):  # monitors may add their own
            assert client.get(path, params={"probe": "lb"}).status_code == 200, path
        # so may OpenAI clients (Azure's send api-version): the proxy's paths get to their own checks (here the key)
        r = client.get("/v1/models", params={"api-version": "2024-06-01"})
        assert r.status_code == 401, r.text


def test_a_body_json_cannot_parse_gets_a_400_naming_why(make_app: AppMaker) -> None:
    """Bodies FastAPI could not parse got its "There was an error parsing the body", naming no cause."""
    gzipped = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    cases: list[tuple[bytes, dict[str, str], str]] = [
        (b'{"query": "caf\xe9"}', {}, "the request body is not UTF-8 text (invalid continuation byte at byte 14)"),
        (b'{"query": "q", "k": ' + b"9" * 5_000 + b"}", {}, "an integer of more than 4,300 digits; no field takes one"),
        (b'{"query": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", {}, "the request body's JSON is nested too deeply"),
        (gzip.compress(b'{"query": "q"}'), gzipped, "Content-Encoding 'gzip' is not supported"),
    ]
    with TestClient(make_app()) as client:
        for body, headers, message in cases:
            for path in ("/v1/route", "/v1/llms"):
                r = client.post(path, content=body, headers={"Content-Type": "application/json", **headers, **AUTH})
                assert r.status_code == 400 and message in r.json()["detail"], (path, body[:40], r.text)
                assert "sys.set_int_max_str_digits" not in r.text  # advice only the server could follow


def test_writes_need_the_api_key(make_app: AppMaker, store: GraphStore) -> None:
    with TestClient(make_app()) as client:
        r = client.post("/v1/llms", json=NEW_LLM)
        assert r.status_code == 401 and "missing 'Authorization: Bearer" in r.json()["detail"], r.text
        assert r.headers["WWW-Authenticate"] == "Bearer"
        r = client.post("/v1/llms", json=NEW_LLM, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["detail"] == "wrong API key", r.text
        r = client.delete("/v1/llms/llm-0", headers={"Authorization": f"Basic {KEY}"})
        assert r.status_code == 401, r.text
    with TestClient(make_app(api_key=None)) as client:
        r = client.post("/v1/llms", json=NEW_LLM, headers=AUTH)
        assert r.status_code == 401 and "set GRAPHROUTER_API_KEY" in r.json()["detail"], r.text
    assert store.counts()["LLM"] == 5 and store.has_node("LLM", "llm-0")


def test_register_route_conflict_delete(make_app: AppMaker, store: GraphStore) -> None:
    with TestClient(make_app("gnn")) as client:
        outcomes = [{"query_id": f"q{i}", "effect": 1.0, "cost": 0.0001} for i in range(0, 120, 4)]
        r = client.post(
            "/v1/llms",
            json={**NEW_LLM, "outcomes": [*outcomes, {"query_id": "q-unknown", "effect": 1, "cost": 0}]},
            headers=AUTH,
        )
        assert r.status_code == 422 and r.json()["detail"].startswith(
            f"outcomes[{len(outcomes)}].query_id: no stored query 'q-unknown'"
        ), r.text
        r = client.post("/v1/llms", json={**NEW_LLM, "outcomes": [*outcomes, outcomes[2]]}, headers=AUTH)
        assert r.status_code == 422 and f"outcomes[{len(outcomes)}]: the same query as outcomes[2]" in r.text
        assert not store.has_node("LLM", "llm-new")  # nothing written

        r = client.post("/v1/llms", json={**NEW_LLM, "outcomes": outcomes}, headers=AUTH)
        assert r.status_code == 201, r.text
        assert r.json()["routable"] is True and r.json()["created"] is True and r.json()["outcomes_written"] == 30

        # routable in the very next request, without retraining
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 6})
        assert r.status_code == 200, r.text
        assert "llm-new" in [c["name"] for c in r.json()["candidates"]]
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 1, "candidates": ["llm-new"]})
        assert r.status_code == 200 and r.json()["candidates"][0]["name"] == "llm-new", r.text

        again = client.post("/v1/llms", json=NEW_LLM, headers=AUTH)
        assert again.status_code == 200 and again.json()["created"] is False, again.text
        # the same registration with more outcomes: they are learned at once and logged, as POST /v1/outcomes does
        ask = {"query": "task-1 hi", "task": "task-1", "k": 1, "candidates": ["llm-new"]}
        before = client.post("/v1/route", json=ask).json()["candidates"][0]["effect"]
        version = store.latest_version()
        worse = [{"query_id": f"q{i}", "effect": 0.0, "cost": 0.0001} for i in range(1, 120, 4)]
        again = client.post("/v1/llms", json={**NEW_LLM, "outcomes": worse}, headers=AUTH)
        assert again.status_code == 200 and again.json()["outcomes_written"] == 30, again.text
        assert client.post("/v1/route", json=ask).json()["candidates"][0]["effect"] < before
        assert [c.kind for c in store.changes_since(version)] == ["outcomes"]
        other = client.post("/v1/llms", json={**NEW_LLM, "input_price": 9.0}, headers=AUTH)
        assert other.status_code == 409 and "already registered with other data" in other.json()["detail"]

        r = client.get("/v1/llms/llm-new")
        assert r.status_code == 200 and r.json()["outcomes"] == 60 and r.json()["routable"] is True, r.text
        listed = client.get("/v1/llms").json()
        assert listed["count"] == 6 and [m["name"] for m in listed["data"]][-1] == "llm-new"

        r = client.delete("/v1/llms/llm-new", headers=AUTH)
        assert r.status_code == 200 and r.json() == {"name": "llm-new", "deleted": True, "outcomes_deleted": 60}, r.text
        assert not store.has_node("LLM", "llm-new") and not store.outcomes("LLM", target="llm-new")
        assert client.get("/v1/llms/llm-new").status_code == 404
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 6})  # at most k: the 5 left
        assert r.status_code == 200 and len(r.json()["candidates"]) == 5, r.text
        assert "llm-new" not in {c["name"] for c in r.json()["candidates"]}
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 1, "candidates": ["llm-new"]})
        assert r.status_code == 400 and "unknown candidate(s) ['llm-new']" in r.json()["detail"], r.text
        r = client.delete("/v1/llms/llm-new", headers=AUTH)
        assert r.status_code == 404 and "no LLM with name 'llm-new'" in r.json()["detail"], r.text

        # the GNN dropped it from the scorer, so it can come back with other data, routable at once
        r = client.post("/v1/llms", json={**NEW_LLM, "description": "changed"}, headers=AUTH)
        assert r.status_code == 201 and r.json()["routable"] is True, r.text
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 6})
        assert r.status_code == 200 and "llm-new" in [c["name"] for c in r.json()["candidates"]], r.text

        # a trained candidate can be deleted too
        assert client.delete("/v1/llms/llm-0", headers=AUTH).status_code == 200
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 5})
        assert r.status_code == 200 and "llm-0" not in [c["name"] for c in r.json()["candidates"]], r.text
        assert client.get("/ready").json()["candidates"] == 5
    # after a restart: the deleted trained candidate is left out, the registered one is added back from the store
    with TestClient(make_app("gnn")) as client:
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["candidates"] == 5, ready.text
        names = [c["name"] for c in client.post("/v1/route", json={"query": "task-0 hi", "k": 5}).json()["candidates"]]
        assert "llm-new" in names and "llm-0" not in names


def test_the_gnns_last_llm_deleted_can_come_back_with_other_data_once_another_is_registered(
    make_app: AppMaker,
) -> None:
    """The GNN keeps the last candidate it has when it is deleted (kept out of routes); once another LLM is
    registered it can drop it, so registering it again with other data is no longer the 409 "restart the service"."""
    with TestClient(make_app("gnn")) as client:
        for i in range(5):
            assert client.delete(f"/v1/llms/llm-{i}", headers=AUTH).status_code == 200
        assert client.post("/v1/llms", json=NEW_LLM, headers=AUTH).status_code == 201
        back = {"name": "llm-4", "description": "model 4, v2", "input_price": 0.3, "output_price": 0.3}
        r = client.post("/v1/llms", json=back, headers=AUTH)
        assert r.status_code == 201 and r.json()["routable"] is True, r.text
        names = [c["name"] for c in client.post("/v1/route", json={"query": "task-0 hi", "k": 5}).json()["candidates"]]
        assert sorted(names) == ["llm-4", "llm-new"]
        assert client.get("/v1/llms/llm-4").json()["learning"]["outcomes"] == 0  # not the deleted one's


def test_a_router_that_cannot_drop_candidates_filters_deleted_ones(
    make_app: AppMaker, store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot(self: GnnRouter, name: str) -> None:
        raise NotImplementedError("cannot drop")

    monkeypatch.setattr(GnnRouter, "remove_candidate", cannot)
    with TestClient(make_app("gnn")) as client:
        assert client.post("/v1/llms", json=NEW_LLM, headers=AUTH).status_code == 201
        assert client.delete("/v1/llms/llm-new", headers=AUTH).status_code == 200
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 1, "candidates": ["llm-new"]})
        assert r.status_code == 400 and "unknown candidate(s) ['llm-new']" in r.json()["detail"], r.text
        assert client.get("/ready").json()["candidates"] == 5
        # back with other data: the scorer would be stale, so 409; with the same data: routable again
        other = client.post("/v1/llms", json={**NEW_LLM, "description": "changed"}, headers=AUTH)
        assert other.status_code == 409 and "restart the service" in other.json()["detail"], other.text
        r = client.post("/v1/llms", json=NEW_LLM, headers=AUTH)
        assert r.status_code == 201 and r.json()["routable"] is True, r.text
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 6})
        assert r.status_code == 200 and "llm-new" in [c["name"] for c in r.json()["candidates"]], r.text


def test_a_router_that_needs_retraining_stores_the_llm_but_says_so(make_app: AppMaker, store: GraphStore) -> None:
    with TestClient(make_app("knn_task")) as client:
        r = client.post("/v1/llms", json=NEW_LLM, headers=AUTH)
        assert r.status_code == 201 and r.json()["routable"] is False, r.text
        assert "cannot add a candidate without retraining" in r.json()["note"]
        assert store.has_node("LLM", "llm-new")
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 1, "candidates": ["llm-new"]})
        assert r.status_code == 400 and "unknown candidate(s)" in r.json()["detail"], r.text


def test_route_answers_give_12_significant_digits() -> None:
    from api.models import Candidate

    c = Candidate(name="a", kind="LLM", effect=0.1 + 0.2, cost=0.00010330000000000002, utility=-1e-300)
    assert c.model_dump() == {"name": "a", "kind": "LLM", "effect": 0.3, "cost": 0.0001033, "utility": -1e-300}


@pytest.mark.parametrize("router", ["knn_task", "gnn"])
def test_with_every_candidate_deleted_routes_are_a_400(make_app: AppMaker, router: str) -> None:
    with TestClient(make_app(router)) as client:
        for llm in client.get("/v1/llms").json()["data"]:
            assert client.delete(f"/v1/llms/{llm['name']}", headers=AUTH).status_code == 200
        for path, body in (("/v1/route", {"query": "task-0 hi"}), ("/v1/route/batch", {"queries": [{"query": "x"}]})):
            r = client.post(path, json=body)
            assert r.status_code == 400 and "no candidate to route to" in r.json()["detail"], (path, r.text)


def test_bad_llm_bodies(make_app: AppMaker) -> None:
    with TestClient(make_app()) as client:
        cases = [
            ({**NEW_LLM, "name": " "}, "name: Value error, must not be empty or only whitespace"),
            ({**NEW_LLM, "input_price": -1}, "input_price: Input should be greater than or equal to 0"),
            ({k: v for k, v in NEW_LLM.items() if k != "output_price"}, "output_price: Field required"),
            ({**NEW_LLM, "outcomes": [{"query_id": "q0", "effect": 2, "cost": 0}]}, "outcomes[0].effect"),
        ]
        for body, message in cases:
            r = client.post("/v1/llms", json=body, headers=AUTH)
            assert r.status_code == 422 and message in r.json()["detail"], (body, r.text)
        r = client.get("/v1/llms", params={"limit": 0})
        assert r.status_code == 422 and r.json()["detail"].startswith("limit (query parameter): "), r.text
        r = client.post("/v1/route", content='{"query": "q"}', headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and "Content-Type: application/json" in r.json()["detail"], r.text


def test_huge_offsets_and_limits_are_a_422_naming_the_parameter(make_app: AppMaker) -> None:
    with TestClient(make_app()) as client:
        for path in ("/v1/llms", "/v1/agents", "/v1/tasks"):
            for params in ({"offset": 9223372036854775808}, {"offset": 10**9 + 1}, {"limit": 2**63}):
                r = client.get(path, params=params)
                (name,) = params
                assert r.status_code == 422, (path, params, r.text)
                assert r.json()["detail"].startswith(f"{name} (query parameter): "), (path, params, r.text)
            r = client.get(path, params={"offset": 10**9})  # the bound itself is fine: an empty page
            assert r.status_code == 200 and r.json()["data"] == [], (path, r.text)


def test_unstorable_names_texts_and_prices_are_a_422_naming_the_field(make_app: AppMaker, store: GraphStore) -> None:
    """The request models refuse what the store would refuse, with the store's rule in the message (422, not 400)."""
    cases = [
        ({**NEW_LLM, "name": "name\nwith\nnewlines"}, "name: Value error, holds the control character '\\n' at"),
        ({**NEW_LLM, "name": "tab\there"}, "allowed: at most 200 characters, no leading/trailing whitespace"),
        ({**NEW_LLM, "name": "padded "}, "name: Value error, has leading or trailing whitespace"),
        ({**NEW_LLM, "name": "x" * 201}, "name: String should have at most 200 characters"),
        ({**NEW_LLM, "description": "abc \ud800 def"}, "description: Value error, must be valid Unicode"),
        ({**NEW_LLM, "description": "nul \x00"}, "description: Value error, must not contain NUL characters"),
        ({**NEW_LLM, "input_price": 1e308}, "input_price: Input should be less than or equal to 10000"),
        ({**NEW_LLM, "output_price": 10_001}, "output_price: Input should be less than or equal to 10000"),
        ({**NEW_LLM, "input_price": "1"}, "input_price: Input should be a valid number"),
        ({**NEW_LLM, "outcomes": [{"query_id": "q0", "effect": 1, "cost": 1e300}]}, "outcomes[0].cost: Input should"),
        ({**NEW_LLM, "outcomes": [{"query_id": "q\r0", "effect": 1, "cost": 0}]}, "outcomes[0].query_id: Value error"),
    ]
    with TestClient(make_app()) as client:
        for body, message in cases:  # json.dumps escapes a lone surrogate as \\ud800, as a JSON client may send it
            r = client.post("/v1/llms", content=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"})
            assert r.status_code == 422 and message in r.json()["detail"], (body, r.text)
        agent = {"name": "a\u2028b", "llm": "llm-0"}
        r = client.post("/v1/agents", json=agent, headers=AUTH)
        assert r.status_code == 422 and "name: Value error, holds the control character" in r.text, r.text
        r = client.post("/v1/tasks", json={"name": "task\x7f"}, headers=AUTH)
        assert r.status_code == 422 and "name: Value error, holds the control character" in r.text, r.text
        assert client.get("/ready").status_code == 200
    assert not store.has_node("LLM", "llm-new")


def test_stats(make_app: AppMaker, store: GraphStore) -> None:
    with TestClient(make_app()) as client:
        r = client.get("/v1/graph/stats")
        assert r.status_code == 200, r.text
        assert r.json()["backend"] == store.backend
        counts = r.json()["counts"]
        assert (counts["Task"], counts["Query"], counts["LLM"], counts["OF_TASK"]) == (4, 120, 5, 120)


def test_not_ready_without_a_checkpoint(make_app: AppMaker, tmp_path: Path) -> None:
    with TestClient(make_app(checkpoint=tmp_path / "missing.pt")) as client:
        assert client.get("/health").status_code == 200
        r = client.get("/ready")
        assert r.status_code == 503 and "no checkpoint at" in r.json()["scorer"] and r.json()["store"] == "ok"
        r = client.post("/v1/route", json={"query": "task-0 hi"})
        assert r.status_code == 503 and "no checkpoint at" in r.json()["detail"], r.text
        assert r.headers["Retry-After"]
        assert client.get("/v1/graph/stats").status_code == 200  # the store is fine


def test_store_going_down_gives_503_and_routing_goes_on(make_app: AppMaker, store: GraphStore) -> None:
    with TestClient(make_app()) as client:
        store.close()
        for method, path in [("GET", "/v1/graph/stats"), ("GET", "/v1/llms"), ("GET", "/v1/llms/llm-0")]:
            r = client.request(method, path)
            assert r.status_code == 503 and "closed" in r.json()["detail"], (path, r.text)
        r = client.post("/v1/llms", json=NEW_LLM, headers=AUTH)
        assert r.status_code == 503, r.text
        r = client.get("/ready")
        assert r.status_code == 503 and "closed" in r.json()["store"], r.text
        r = client.post("/v1/route", json={"query": "task-0 hi"})
        assert r.status_code == 200, r.text  # the scorer serves from memory


def test_recovers_when_the_store_comes_back(
    fitted: tuple[World, dict[str, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An owned embedded store that cannot be opened at start (a damaged file) is retried on later requests."""
    world, paths = fitted
    monkeypatch.setattr(ServiceState, "retry_interval", 0.0)
    path = tmp_path / "graph.db"
    path.write_bytes(b"this is not a database" * 100)
    settings = Settings(store=str(path), checkpoint=paths["knn_task"], embedding_cache=None, api_key=KEY)
    with TestClient(create_app(settings, embedder=HashEmbedder(world))) as client:
        r = client.get("/ready")
        assert r.status_code == 503 and "cannot open the graph store" in r.json()["store"], r.text
        assert client.post("/v1/route", json={"query": "task-0 hi"}).status_code == 503
        path.unlink()
        with EmbeddedStore(path) as s:
            populate(s, world)
        assert client.get("/ready").status_code == 200
        r = client.post("/v1/route", json={"query": "task-0 hi"})
        assert r.status_code == 200 and len(r.json()["candidates"]) == 3, r.text


def test_a_missing_store_file_beside_a_checkpoint_is_not_served_empty(
    fitted: tuple[World, dict[str, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped GRAPHROUTER_STORE (uvicorn run directly: `graphrouter serve` refuses it at once) created an empty
    store and routed nothing; now /ready says there is none, and the service takes the file once it is there."""
    world, paths = fitted
    monkeypatch.setattr(ServiceState, "retry_interval", 0.0)
    path = tmp_path / "graph.db"
    settings = Settings(store=str(path), checkpoint=paths["knn_task"], embedding_cache=None, api_key=KEY)
    with TestClient(create_app(settings, embedder=HashEmbedder(world))) as client:
        r = client.get("/ready")
        assert r.status_code == 503 and f"no store at {path}" in r.json()["store"], r.text
        assert not path.exists()
        with EmbeddedStore(path) as s:
            populate(s, world)
        assert client.get("/ready").status_code == 200


def test_openapi_lists_the_routes(make_app: AppMaker) -> None:
    with TestClient(make_app()) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/health",
        "/ready",
        "/v1/route",
        "/v1/route/batch",
        "/v1/llms",
        "/v1/llms/{name}",
        "/v1/agents",
        "/v1/agents/{name}",
        "/v1/tasks",
        "/v1/tasks/{name}",
        "/v1/outcomes",
        "/v1/train",
        "/v1/graph/stats",
        "/metrics",
    } <= set(paths)
    for path, method in [("/v1/llms", "post"), ("/v1/agents", "post"), ("/v1/tasks", "delete"), ("/v1/train", "post")]:
        operation = paths[path if method == "post" else f"{path}/{{name}}"][method]
        assert "401" in operation["responses"], (path, method)
        assert operation.get("security"), (path, method)  # the bearer scheme is documented on writes
    assert not paths["/v1/route"]["post"].get("security")  # reads are open


def test_a_bug_is_a_json_500_without_a_trace(store: GraphStore, fitted: tuple[World, dict[str, Path]]) -> None:
    world, paths = fitted
    scorer = Scorer(load_checkpoint(paths["knn_task"], "hash-test"), HashEmbedder(world))

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    scorer.top_k = broken  # type: ignore[method-assign]
    app = create_app(Settings(store="unused", api_key=KEY), store=store, scorer=scorer)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/route", json={"query": "task-2 what is this", "k": 3})
        assert r.status_code == 500
        assert r.json()["detail"].startswith("internal error (RuntimeError)")
        assert "secret internals" not in r.text and "Traceback" not in r.text


def test_probe_sets_of_llms_and_agents(make_app: AppMaker, store: GraphStore) -> None:
    """GET /v1/llms/{name}/probes (and agents): k stored queries, deterministic, answered ones skipped (the loop:
    register, fetch probes, post outcomes); the catch-all GET /v1/llms/{name} does not swallow it; unknown name 404,
    k out of range 422."""
    with TestClient(make_app("gnn")) as client:
        assert client.post("/v1/llms", json=NEW_LLM, headers=AUTH).status_code == 201
        # stored queries include the texts of proxied calls: an open read must not give them away (security audit)
        for headers in ({}, {"Authorization": "Bearer not-the-key"}):
            r = client.get("/v1/llms/llm-new/probes", params={"k": 7}, headers=headers)
            assert r.status_code == 401 and "probes" not in r.json(), r.text
            assert client.get("/v1/agents/llm-new/probes", headers=headers).status_code == 401
        r = client.get("/v1/llms/llm-new/probes", params={"k": 7}, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["name"] == "llm-new" and body["k"] == 7 and len(body["probes"]) == 7
        assert set(body["probes"][0]) == {"id", "text", "task"}
        assert client.get("/v1/llms/llm-new/probes", params={"k": 7}, headers=AUTH).json() == body  # deterministic
        assert len({p["task"] for p in body["probes"]}) > 1  # spread over tasks

        # what the scorer has learned of it: nothing yet, so its quiz is whole; a trained LLM is known (no quiz)
        learning = {"outcomes": 0, "learned_online": 0, "quiz_outcomes_left": 50}
        learning |= {"cost_input_factor": 1.0, "cost_output_factor": 1.0}  # (none of its costs seen yet)
        assert client.get("/v1/llms/llm-new").json()["learning"] == learning
        assert client.get("/v1/llms/llm-0").json()["learning"]["quiz_outcomes_left"] == 0
        # its outcomes on three of them posted: those are never proposed again
        rows = [{"query_id": p["id"], "candidate": "llm-new", "effect": 1.0, "cost": 1e-4} for p in body["probes"][:3]]
        r = client.post("/v1/outcomes", json={"outcomes": rows}, headers=AUTH)
        assert r.status_code in (200, 201) and r.json()["applied_to_scorer"] == 3, r.text
        learned = client.get("/v1/llms/llm-new").json()["learning"]
        assert learned["outcomes"] + learned["learned_online"] == 3 and learned["quiz_outcomes_left"] == 47, learned
        assert learned["cost_input_factor"] == learned["cost_output_factor"] != 1.0  # its 3 costs: one multiplier
        again = client.get("/v1/llms/llm-new/probes", params={"k": 20}, headers=AUTH).json()["probes"]
        assert len(again) == 20 and not {o["query_id"] for o in rows} & {p["id"] for p in again}

        agent = {"name": "agent-x", "description": "ReAct on llm-1", "llm": "llm-1", "strategy": "ReAct"}
        assert client.post("/v1/agents", json=agent, headers=AUTH).status_code == 201
        assert client.get("/v1/agents/agent-x").json()["learning"]["outcomes"] > 0  # it inherits its LLM's
        r = client.get("/v1/agents/agent-x/probes", params={"k": 3}, headers=AUTH)
        assert r.status_code == 200 and len(r.json()["probes"]) == 3, r.text
        # a trained LLM answered every stored query: nothing left to probe
        assert client.get("/v1/llms/llm-0/probes", headers=AUTH).json()["probes"] == []

        for url in ("/v1/llms/ghost/probes", "/v1/agents/ghost/probes", "/v1/agents/llm-0/probes"):
            assert client.get(url, headers=AUTH).status_code == 404, url
        r = client.get("/v1/agents/llm-0/probes", headers=AUTH)  # the other kind's path is named
        assert r.json()["detail"].endswith("it is an LLM: GET /v1/llms/llm-0/probes"), r.text
        for k in (0, 501, "x"):
            assert client.get("/v1/llms/llm-new/probes", params={"k": k}, headers=AUTH).status_code == 422, k
        assert client.get("/v1/llms/llm-new").json()["name"] == "llm-new"  # the detail route still works


def test_probe_sets_need_a_scorer(store: GraphStore, tmp_path: Path) -> None:
    app = create_app(Settings(store="unused", checkpoint=tmp_path / "none.pt", api_key=KEY), store=store)
    with TestClient(app) as client:
        assert client.get("/v1/llms/llm-0/probes", headers=AUTH).status_code == 503
