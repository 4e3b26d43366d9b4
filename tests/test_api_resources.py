"""Agents, tasks, outcomes and /metrics in-process (``with TestClient(app)``), against both store backends.

Same fixtures as tests/test_api.py: the synthetic world in the store, a checkpoint of knn_task (cannot change its
candidates) or of a small GNN (can), and the deterministic HashEmbedder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from graph_store import AGENT, LLM, GraphStore
from graphrouter.world import World
from tests import test_api
from tests.routing_world import AUTH, NEW_LLM
from tests.test_api import AppMaker

# the fixtures of tests/test_api.py (the world, its checkpoints, the populated store, the app maker)
fitted, store, make_app = test_api.fitted, test_api.store, test_api.make_app

AGENT_BODY = {"name": "coder", "llm": "llm-1", "description": "a ReAct agent for code", "strategy": "ReAct"}


def _names(r: object) -> list[str]:
    return [c["name"] for c in r.json()["candidates"]]  # type: ignore[attr-defined]


def test_agents_register_route_inspect_delete(
    make_app: AppMaker, store: GraphStore, fitted: tuple[World, dict[str, Path]]
) -> None:
    world = fitted[0]  # its observed costs equal the computed ones: every trained multiplier is 1
    with TestClient(make_app("gnn")) as client:
        assert client.post("/v1/agents", json=AGENT_BODY).status_code == 401
        r = client.post("/v1/agents", json={**AGENT_BODY, "llm": "gpt-9"}, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"].startswith("llm: no LLM named 'gpt-9'"), r.text
        r = client.post("/v1/agents", json={**AGENT_BODY, "name": "llm-0"}, headers=AUTH)
        assert r.status_code == 409 and "'llm-0' is an LLM" in r.json()["detail"], r.text
        r = client.post("/v1/agents", json={**AGENT_BODY, "strategy": "x" * 201}, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"].startswith("strategy: "), r.text
        bad_outcome = [{"query_id": "q-nope", "effect": 1, "cost": 0}]
        r = client.post("/v1/agents", json={**AGENT_BODY, "outcomes": bad_outcome}, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"].startswith("outcomes[0].query_id: no stored"), r.text
        assert store.counts()[AGENT] == 0  # nothing written by the refusals

        # the agent makes three calls of its LLM per query: it costs three times what its LLM did
        llm_cost = dict(zip(world.data.query_keys, world.data.cost[:, 1].tolist(), strict=True))  # as it was trained
        outcomes = [{"query_id": f"q{i}", "effect": 1.0, "cost": 3 * llm_cost[f"q{i}"]} for i in range(0, 120, 6)]
        r = client.post("/v1/agents", json={**AGENT_BODY, "outcomes": outcomes}, headers=AUTH)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["routable"] is True and body["created"] is True and body["outcomes_written"] == 20
        llm1 = client.get("/v1/llms/llm-1").json()
        assert (body["input_price"], body["output_price"]) == (llm1["input_price"], llm1["output_price"])
        assert store.counts()["BACKED_BY"] == 1 and len(store.outcomes(AGENT, target="coder")) == 20

        # routable in the very next request, as an Agent, priced as its LLM times a multiplier learned from its 20
        # observed costs at once (a geometric mean shrunk towards 1 by a prior of 5 outcomes)
        def cost_ratio() -> float:
            r = client.post("/v1/route", json={"query": "task-1 sort a list", "k": 6, "scenario": "balance"})
            assert r.status_code == 200, r.text
            by_name = {c["name"]: c for c in r.json()["candidates"]}
            assert by_name["coder"]["kind"] == "Agent" and by_name["llm-1"]["kind"] == "LLM"
            return by_name["coder"]["cost"] / by_name["llm-1"]["cost"]  # type: ignore[no-any-return]

        assert cost_ratio() == pytest.approx(3 ** (20 / 25), rel=1e-3)
        # more observed costs (posted as outcomes) move it further, at once; the same query again replaces its cost
        more = [
            {"candidate": "coder", "query_id": f"q{i}", "effect": 1.0, "cost": 3 * llm_cost[f"q{i}"]}
            for i in range(1, 120, 6)
        ]
        r = client.post("/v1/outcomes", json={"outcomes": more}, headers=AUTH)
        assert r.status_code == 200 and r.json()["applied_to_scorer"] == 20, r.text
        assert cost_ratio() == pytest.approx(3 ** (40 / 45), rel=1e-3)
        r = client.post("/v1/outcomes", json={"outcomes": more}, headers=AUTH)
        assert cost_ratio() == pytest.approx(3 ** (40 / 45), rel=1e-3)
        r = client.post("/v1/route", json={"query": "task-1 q", "k": 1, "candidates": ["coder"]})
        assert r.status_code == 200 and r.json()["candidates"][0]["kind"] == "Agent", r.text

        again = client.post("/v1/agents", json=AGENT_BODY, headers=AUTH)
        assert again.status_code == 200 and again.json()["created"] is False, again.text
        other = client.post("/v1/agents", json={**AGENT_BODY, "strategy": "CoT"}, headers=AUTH)
        assert other.status_code == 409 and "already registered with other data" in other.json()["detail"]
        r = client.post("/v1/llms", json={**NEW_LLM, "name": "coder"}, headers=AUTH)
        assert r.status_code == 409 and "'coder' is an agent" in r.json()["detail"], r.text

        detail = client.get("/v1/agents/coder").json()
        assert detail["outcomes"] == 40 and detail["llm"] == "llm-1" and detail["strategy"] == "ReAct"
        listed = client.get("/v1/agents").json()
        assert listed["count"] == 1 and listed["data"][0]["name"] == "coder" and listed["data"][0]["routable"]

        # its LLM cannot go first
        r = client.delete("/v1/llms/llm-1", headers=AUTH)
        assert r.status_code == 409 and "backs 1 agent(s) (coder)" in r.json()["detail"], r.text
        assert store.has_node(LLM, "llm-1")

        assert client.delete("/v1/agents/coder").status_code == 401
        r = client.delete("/v1/agents/coder", headers=AUTH)
        assert r.status_code == 200 and r.json() == {"name": "coder", "deleted": True, "outcomes_deleted": 40}, r.text
        assert not store.has_node(AGENT, "coder") and not store.outcomes(AGENT, target="coder")
        r = client.post("/v1/route", json={"query": "task-1 q", "k": 1, "candidates": ["coder"]})
        assert r.status_code == 400 and "unknown candidate(s) ['coder']" in r.json()["detail"], r.text
        assert client.get("/ready").json()["candidates"] == 5
        r = client.delete("/v1/agents/coder", headers=AUTH)
        assert r.status_code == 404 and "no Agent with name 'coder'" in r.json()["detail"], r.text
        assert client.get("/v1/agents/coder").status_code == 404
        assert client.delete("/v1/llms/llm-1", headers=AUTH).status_code == 200  # free now

        # an LLM with neither description nor outcomes is routable, and told what it lacks
        r = client.post("/v1/llms", json={"name": "bare", "input_price": 1, "output_price": 1}, headers=AUTH)
        assert r.status_code == 201 and r.json()["routable"] is True, r.text
        assert "no description and no outcomes" in r.json()["note"] and "/v1/llms/bare/probes" in r.json()["note"]
        described = {"name": "described", "description": "a model", "input_price": 1, "output_price": 1}
        r = client.post("/v1/llms", json=described, headers=AUTH)  # told that it ranks low until outcomes come
        assert r.status_code == 201 and "routable from its description only" in r.json()["note"], r.text

        # back with other data: routable again (the GNN dropped the old one)
        r = client.post("/v1/agents", json={**AGENT_BODY, "llm": "llm-2", "strategy": "CoT"}, headers=AUTH)
        assert r.status_code == 201 and r.json()["routable"] is True, r.text
    # after a restart the agent is registered again from the store
    with TestClient(make_app("gnn")) as client:
        r = client.post("/v1/route", json={"query": "task-1 q", "k": 1, "candidates": ["coder"]})
        assert r.status_code == 200 and r.json()["candidates"][0]["kind"] == "Agent", r.text


def test_agent_tasks_and_outcomes_with_a_router_that_needs_retraining(make_app: AppMaker, store: GraphStore) -> None:
    with TestClient(make_app("knn_task")) as client:
        r = client.post("/v1/agents", json=AGENT_BODY, headers=AUTH)
        assert r.status_code == 201 and r.json()["routable"] is False, r.text
        assert "cannot add a candidate without retraining" in r.json()["note"]
        assert store.has_node(AGENT, "coder")
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 1, "candidates": ["coder"]})
        assert r.status_code == 400 and "unknown candidate(s) ['coder']" in r.json()["detail"], r.text

        rows = [{"query_id": f"q{i}", "candidate": "llm-0", "effect": 0.5, "cost": 0.001} for i in range(5)]
        rows.append({"query_id": "q0", "candidate": "coder", "effect": 1, "cost": 0.002})
        r = client.post("/v1/outcomes", json={"outcomes": rows}, headers=AUTH)
        assert r.status_code == 200, r.text
        # a router that cannot change its candidates still learns llm-0's outcomes online; coder is not routable
        assert r.json() == {"written": 6, "queries_added": 0, "applied_to_scorer": 5, "pending_retrain": 1}
        assert store.outcomes(AGENT, target="coder", query_id="q0")[0].effect == 1.0
        assert store.outcomes(LLM, target="llm-0", query_id="q3")[0].effect == 0.5


def test_tasks(make_app: AppMaker, store: GraphStore) -> None:
    with TestClient(make_app()) as client:
        assert client.post("/v1/tasks", json={"name": "cooking"}).status_code == 401
        r = client.post("/v1/tasks", json={"name": " "}, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"].startswith("name: Value error"), r.text
        r = client.post("/v1/tasks", json={"name": "cooking", "description": "recipes"}, headers=AUTH)
        assert r.status_code == 201, r.text
        assert r.json()["trained"] is False and "after the next training" in r.json()["note"]
        assert store.has_node("Task", "cooking")
        again = client.post("/v1/tasks", json={"name": "cooking", "description": "recipes"}, headers=AUTH)
        assert again.status_code == 200 and again.json()["created"] is False, again.text
        other = client.post("/v1/tasks", json={"name": "cooking", "description": "food"}, headers=AUTH)
        assert other.status_code == 409 and "another description" in other.json()["detail"], other.text
        assert "DELETE /v1/tasks/cooking first" in other.json()["detail"]  # and how to go on
        for path in ("/v1/tasks", "/v1/llms", "/v1/agents"):  # with a trailing slash: the list, not "no … named ''"
            assert client.get(f"{path}/").json() == client.get(path).json(), path

        # a task the checkpoint was not trained with: a clear 400, not a silent inference
        r = client.post("/v1/route", json={"query": "how do I bake bread", "task": "cooking"})
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith("task: 'cooking' was registered after checkpoint ")
        assert "retrain (POST /v1/train)" in r.json()["detail"]
        assert client.post("/v1/route", json={"query": "how do I bake bread"}).status_code == 200

        listed = client.get("/v1/tasks").json()
        assert listed["count"] == 5
        assert {t["name"]: t["trained"] for t in listed["data"]} == {
            "cooking": False,
            "task-0": True,
            "task-1": True,
            "task-2": True,
            "task-3": True,
        }
        assert client.get("/v1/tasks/task-2").json()["queries"] == 30
        assert client.get("/v1/tasks/cooking").json()["queries"] == 0

        # queries belong to task-0: refused, nothing deleted
        r = client.delete("/v1/tasks/task-0", headers=AUTH)
        assert r.status_code == 409 and "task 'task-0' has 30 stored queries" in r.json()["detail"], r.text
        assert store.has_node("Task", "task-0") and store.counts()["OF_TASK"] == 120

        r = client.delete("/v1/tasks/cooking", headers=AUTH)
        assert r.status_code == 200 and r.json() == {"name": "cooking", "deleted": True}, r.text
        assert client.get("/v1/tasks/cooking").status_code == 404
        r = client.delete("/v1/tasks/cooking", headers=AUTH)
        assert r.status_code == 404 and "no Task with name 'cooking'" in r.json()["detail"], r.text
        r = client.post("/v1/route", json={"query": "bread", "task": "cooking"})
        assert r.status_code == 400 and "unknown task 'cooking'" in r.json()["detail"], r.text


def test_outcomes_are_validated_in_full_then_written_at_once(
    make_app: AppMaker, store: GraphStore, fitted: tuple[World, object]
) -> None:
    data = fitted[0].data
    data_task0 = [k for k, t in zip(data.query_keys, data.query_task, strict=True) if t == 0]
    with TestClient(make_app("gnn")) as client:
        before = store.counts()

        def post(rows: list[dict[str, object]], **kw: object) -> object:
            return client.post("/v1/outcomes", json={"outcomes": rows}, headers=AUTH, **kw)

        ok = {"query_id": "q1", "candidate": "llm-0", "effect": 1, "cost": 0.001}
        new_query = {"query": "how do I bake bread", "task": "task-0", "candidate": "llm-2", "effect": 1, "cost": 0}
        cases = [
            ([ok, {**ok, "query_id": "q2", "candidate": "gpt-9"}], 422, "outcomes[1].candidate: no LLM or agent named"),
            ([ok, {**ok, "effect": 1.5}], 422, "outcomes[1].effect: Input should be less than or equal to 1"),
            ([{**ok, "cost": -1}], 422, "outcomes[0].cost: Input should be greater than or equal to 0"),
            ([{k: v for k, v in ok.items() if k != "query_id"}], 422, "outcomes[0]: Value error, give query_id"),
            ([ok, {**ok, "query_id": "q-nope"}], 422, "outcomes[1].query_id: no stored query 'q-nope'"),
            ([ok, ok], 422, "outcomes[1]: the same query and candidate as outcomes[0]"),
            ([new_query, {**new_query, "task": "cooking"}], 422, "outcomes[1].task: no task named 'cooking'"),
            (
                [new_query, {**new_query, "task": "task-2", "candidate": "llm-1"}],
                422,
                "outcomes[1].query: the same query id as outcomes[0]",
            ),
            ([{**new_query, "task": None}], 422, "outcomes[0]: Value error, task is required with query"),
            ([{**ok, "task": "task-0"}], 422, "outcomes[0]: Value error, task is only taken with query"),
            ([{**new_query, "query_id": "q1"}], 409, "outcomes[0].query: query 'q1' is already stored with another"),
            ([{**ok, "observed_at": "yesterday"}], 422, "outcomes[0].observed_at: Value error, observed_at must be"),
            ([{**ok, "observed_at": "2999-01-01T00:00:00Z"}], 422, "observed_at is in the future: '2999-01-01T00"),
            ([{**ok, "effect": "high"}], 422, "outcomes[0].effect: Input should be a valid number"),
            ([], 422, "outcomes: List should have at least 1 item"),
        ]
        for rows, code, message in cases:
            r = post(rows)
            assert r.status_code == code and message in r.json()["detail"], (rows, r.text)  # type: ignore[attr-defined]
        r = client.post("/v1/outcomes", json={"outcomes": [ok]})
        assert r.status_code == 401, r.text
        assert store.counts() == before  # not one row of the refused batches was written

        # the GNN takes the new effects at once: the best LLM of task-0 fails all its queries → predicted lower
        best = data.candidates[int(data.effect[data.query_task == 0].mean(0).argmax())]
        query = {"query": "task-0 a question", "k": 5, "scenario": "performance_first"}
        was = {c["name"]: c["effect"] for c in client.post("/v1/route", json=query).json()["candidates"]}[best]
        rows = [{"query_id": q, "candidate": best, "effect": 0.0, "cost": 0.001} for q in data_task0]
        r = post([*rows, new_query])
        assert r.status_code == 200, r.text
        assert r.json() == {"written": 31, "queries_added": 1, "applied_to_scorer": 31, "pending_retrain": 0}
        now = {c["name"]: c["effect"] for c in client.post("/v1/route", json=query).json()["candidates"]}[best]
        assert now < was - 0.05, (best, was, now)
        assert all(o.effect == 0.0 for q in data_task0 for o in store.outcomes(LLM, target=best, query_id=q))
        counts = store.counts()
        # the 30 trained (query, LLM) pairs are replaced in place (the store holds the training outcomes): one more
        assert counts["Query"] == before["Query"] + 1 and counts["ANSWERED_BY"] == before["ANSWERED_BY"] + 1
        added = [o for o in store.outcomes(LLM, target="llm-2") if o.source == "api"]
        assert len(added) == 1 and added[0].source == "api" and added[0].observed_at and added[0].effect == 1.0
        assert store.get_node("Query", added[0].query_id).task == "task-0"  # type: ignore[union-attr]

        # the new query is stored with its task; posting it again by text updates its outcome in place
        r = post([{**new_query, "effect": 0.25}])
        assert r.status_code == 200 and r.json()["queries_added"] == 0 and r.json()["written"] == 1, r.text
        assert store.counts()["ANSWERED_BY"] == counts["ANSWERED_BY"]
        assert store.outcomes(LLM, target="llm-2")[0].effect == 0.25

        # observed_at is stored in UTC to the second, whatever ISO-8601 form it came in: sortable as text
        r = post([{**new_query, "observed_at": "2026-11-30T13:30:00.5+01:00"}])
        assert r.status_code == 200, r.text
        assert store.outcomes(LLM, target="llm-2")[0].observed_at == "2026-11-30T12:30:00Z"
        assert post([{**new_query, "observed_at": ""}]).status_code == 200  # empty: not given, stamped now
        assert store.outcomes(LLM, target="llm-2")[0].observed_at.startswith("20")


def test_metrics(make_app: AppMaker) -> None:
    first = make_app()
    with TestClient(first) as client:
        tops = [_names(client.post("/v1/route", json={"query": f"task-{t} q", "k": 1}))[0] for t in (0, 0, 3)]
        assert client.get("/v1/llms/nope").status_code == 404
        assert client.get("/v1/llms/also-nope").status_code == 404
        assert client.get("/no/such/path").status_code == 404
        assert client.get("/openapi.json").status_code == 200  # the app's own Starlette route: by its path
        for made_up in ("MADEUP1", "MADEUP2"):  # a method is any token: a label each would grow /metrics (audit)
            assert client.request(made_up, "/health").status_code == 405
        r = client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
        text = r.text
    assert 'graphrouter_http_requests_total{method="POST",route="/v1/route",status="200"} 3.0' in text
    assert 'graphrouter_http_requests_total{method="GET",route="/v1/llms/{name}",status="404"} 2.0' in text
    assert 'route="<unmatched>",status="404"} 1.0' in text
    assert 'graphrouter_http_requests_total{method="GET",route="/openapi.json",status="200"} 1.0' in text
    assert "nope" not in text and "/no/such/path" not in text  # templates, never raw paths
    assert 'graphrouter_http_requests_total{method="OTHER",route="/health",status="405"} 2.0' in text
    assert "MADEUP" not in text
    assert re.search(
        r'graphrouter_http_request_duration_seconds_bucket\{le="\+Inf",method="POST",route="/v1/route",status="200"\}'
        r" 3\.0",
        text,
    ), text
    decided = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'graphrouter_routing_decisions_total\{candidate="([^"]+)",kind="LLM"\} (\S+)', text)
    }
    assert decided == {name: float(tops.count(name)) for name in set(tops)}

    # a second app in the same process has its own registry: no clash, no counts from the first
    with TestClient(make_app()) as client:
        text = client.get("/metrics").text
    assert 'route="/v1/route"' not in text and 'route="/metrics"' not in text


def test_a_trained_task_without_queries_can_be_deleted_and_is_refused_from_then_on(
    make_app: AppMaker, store: GraphStore, fitted: tuple[World, object]
) -> None:
    data = fitted[0].data
    for key, t in zip(data.query_keys, data.query_task, strict=True):
        if t == 3:
            store.delete_node("Query", key)
    with TestClient(make_app()) as client:
        assert client.get("/v1/tasks/task-3").json() == {
            "name": "task-3",
            "description": "",
            "trained": True,
            "queries": 0,
        }
        r = client.delete("/v1/tasks/task-3", headers=AUTH)
        assert r.status_code == 200, r.text
        r = client.post("/v1/route", json={"query": "task-3 q", "task": "task-3"})
        assert r.status_code == 400, r.text
        assert r.json()["detail"] == "task: 'task-3' was deleted; omit task to have it inferred"
        assert client.post("/v1/route", json={"query": "task-3 q", "task": "task-2"}).status_code == 200
    # after a restart the checkpoint still loads (the CLI would refuse it), and the task stays refused
    with TestClient(make_app()) as client:
        assert client.get("/ready").status_code == 200
        r = client.post("/v1/route", json={"query": "task-3 q", "task": "task-3"})
        assert r.status_code == 400 and "was deleted" in r.json()["detail"], r.text
        # registered again: routable with it at once, since the checkpoint knows it
        assert client.post("/v1/tasks", json={"name": "task-3"}, headers=AUTH).json()["trained"] is True
        assert client.post("/v1/route", json={"query": "task-3 q", "task": "task-3"}).status_code == 200
        # registered again with another description: what the checkpoint learned of it is about another task
        assert client.delete("/v1/tasks/task-3", headers=AUTH).status_code == 200
        other = {"name": "task-3", "description": "recipes and cooking times"}
        assert client.post("/v1/tasks", json=other, headers=AUTH).json()["trained"] is False
        r = client.post("/v1/route", json={"query": "task-3 q", "task": "task-3"})
        assert r.status_code == 400 and "registered again with another description" in r.json()["detail"], r.text
    with TestClient(make_app()) as client:  # and after a restart
        assert client.get("/v1/tasks/task-3").json()["trained"] is False
        r = client.post("/v1/route", json={"query": "task-3 q", "task": "task-3"})
        assert r.status_code == 400 and "registered again with another description" in r.json()["detail"], r.text
        assert client.delete("/v1/tasks/task-3", headers=AUTH).status_code == 200  # as it was trained: routable
        assert client.post("/v1/tasks", json={"name": "task-3"}, headers=AUTH).json()["trained"] is True
        assert client.post("/v1/route", json={"query": "task-3 q", "task": "task-3"}).status_code == 200


def test_a_registration_the_scorer_fails_on_leaves_nothing_stored(make_app: AppMaker, store: GraphStore) -> None:
    app = make_app("gnn")
    with TestClient(app, raise_server_exceptions=False) as client:
        scorer = app.state.service.scorer

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("the embedder's disk failed")

        scorer.register_llm = broken  # type: ignore[method-assign]
        new = {"name": "llm-new", "description": "a model", "input_price": 0.1, "output_price": 0.1}
        assert client.post("/v1/llms", json=new, headers=AUTH).status_code == 500
        assert not store.has_node("LLM", "llm-new")  # undone: not stored but unroutable until a restart
        del scorer.register_llm
        assert client.post("/v1/llms", json=new, headers=AUTH).json()["routable"] is True


def test_a_name_in_another_unicode_spelling_is_refused_and_changes_nothing(
    make_app: AppMaker, store: GraphStore
) -> None:
    """Invalid input like any other name rule's: a 422 naming the field, with the spelling to use."""
    nfd = "cafe\u0301-7b"

    def refused(r: Any) -> bool:
        errors = r.json().get("errors", [])
        return r.status_code == 422 and [e["field"] for e in errors] == ["name"] and "'café-7b'" in r.text

    with TestClient(make_app("gnn")) as client:
        before = client.get("/v1/llms", params={"limit": 1000}).json()
        r = client.post("/v1/llms", json={"name": nfd, "input_price": 1, "output_price": 1}, headers=AUTH)
        assert refused(r) and "not in Unicode NFC form" in r.text, r.text
        assert client.get("/v1/llms", params={"limit": 1000}).json() == before
        r = client.post("/v1/route", json={"query": "q", "candidates": [nfd]})
        assert r.status_code == 400 and "unknown candidate" in r.json()["detail"], r.text
        r = client.post("/v1/tasks", json={"name": nfd}, headers=AUTH)
        assert refused(r), r.text
        agent = {"name": nfd, "llm": client.get("/v1/llms").json()["data"][0]["name"], "description": "an agent"}
        r = client.post("/v1/agents", json=agent, headers=AUTH)
        assert refused(r), r.text
        assert client.get("/ready").status_code == 200


def test_a_registration_racing_another_writer_is_a_409_not_two_winners(
    make_app: AppMaker, store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica (or a CLI import) registered the name between this registration's check and its write: both
    succeeded, the last writer's data kept, and each replica routed with its own. Now the later write is a 409."""
    from api.registry import CandidateRegistry
    from graph_store import LLM, GraphBatch, LLMNode

    theirs = LLMNode("raced", description="theirs", input_price=2.0, output_price=2.0)
    refuse_stale = CandidateRegistry._refuse_stale

    def another_writer_meanwhile(self, scorer, node, kind):  # type: ignore[no-untyped-def]
        store.write(GraphBatch(llms=[theirs]))  # after the check found no 'raced', before the write
        return refuse_stale(self, scorer, node, kind)

    monkeypatch.setattr(CandidateRegistry, "_refuse_stale", another_writer_meanwhile)
    with TestClient(make_app("gnn")) as client:
        body = {"name": "raced", "description": "mine", "input_price": 1, "output_price": 1}
        r = client.post("/v1/llms", json=body, headers=AUTH)  # refused as for a name stored before the request
        assert r.status_code == 409 and "'raced' is already registered with other data" in r.json()["detail"], r.text
        assert store.get_node(LLM, "raced") == theirs


def test_a_registration_racing_another_writer_with_the_same_data_is_the_idempotent_answer(
    make_app: AppMaker, store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment that registers one LLM (or task) through several replicas at once: the one that loses the race
    to the same data answers as a repeated registration does (200, created false), not a 409."""
    from api.registry import CandidateRegistry
    from api.registry_tasks import RegistryTasks
    from graph_store import GraphBatch, LLMNode, Task

    same = LLMNode("twin", description="the same", input_price=1.0, output_price=1.0)
    refuse_stale, redescribed = CandidateRegistry._refuse_stale, RegistryTasks._redescribed

    def llm_meanwhile(self, scorer, node, kind):  # type: ignore[no-untyped-def]
        store.write(GraphBatch(llms=[same]))
        return refuse_stale(self, scorer, node, kind)

    def task_meanwhile(self, name, description):  # type: ignore[no-untyped-def]
        store.write(GraphBatch(tasks=[Task(name, description)]))
        return redescribed(self, name, description)

    monkeypatch.setattr(CandidateRegistry, "_refuse_stale", llm_meanwhile)
    monkeypatch.setattr(RegistryTasks, "_redescribed", task_meanwhile)
    with TestClient(make_app("gnn")) as client:
        body = {"name": "twin", "description": "the same", "input_price": 1, "output_price": 1}
        r = client.post("/v1/llms", json=body, headers=AUTH)
        assert r.status_code == 200 and r.json()["created"] is False, r.text
        r = client.post("/v1/tasks", json={"name": "baking", "description": "bread"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["created"] is False, r.text
