"""What a hostile or careless client may send gets a 4xx naming the problem, never a 500 (issue 12): texts that are
not valid Unicode, bodies over the size limit, more requests than the rate limit. In-process, on an embedded store
holding the synthetic world, the scorer loaded from its tiny GNN checkpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.limits import TokenBuckets
from graph_store import GraphStore
from graph_store.backends.embedded import EmbeddedStore
from graphrouter.world import World
from tests.routing_world import AUTH, KEY, make_api_app, populate

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def store(api_world: tuple[World, dict[str, Path]], tmp_path: Path) -> Iterator[GraphStore]:
    with EmbeddedStore(tmp_path / "graph.db") as s:
        populate(s, api_world[0])
        yield s


@pytest.fixture
def make_app(store: GraphStore, api_world: tuple[World, dict[str, Path]], tmp_path: Path) -> Callable[..., FastAPI]:
    world, paths = api_world
    return lambda **settings: make_api_app(store, world, tmp_path, **{"checkpoint": paths["gnn"], **settings})


def _post(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    """``body`` as JSON text the way a client may send it: json.dumps escapes a lone surrogate as ``\\ud800``."""
    return client.post(path, content=json.dumps(body), headers={**JSON, **headers})


def test_lone_surrogates_are_a_422_naming_the_field_on_every_text_entry(make_app: Callable[..., FastAPI]) -> None:
    bad = "abc \ud800 def"
    row = {"query": bad, "task": "task-0", "candidate": "llm-0", "effect": 1, "cost": 0.001}
    cases: list[tuple[str, Any, str]] = [
        ("/v1/route", {"query": bad}, "query: Value error, must be valid Unicode: it holds a lone surrogate"),
        ("/v1/route", {"query": "\udfff"}, "query: Value error, must be valid Unicode"),
        ("/v1/route", {"query": "q", "task": bad}, "task: Value error, must be valid Unicode"),
        ("/v1/route", {"query": "q", "candidates": ["llm-0", bad]}, "candidates[1]: Value error, must be valid"),
        ("/v1/route/batch", {"queries": [{"query": "q"}, {"query": bad}]}, "queries[1].query: Value error, must be"),
        ("/v1/outcomes", {"outcomes": [row]}, "outcomes[0].query: Value error, must be valid Unicode"),
        ("/v1/outcomes", {"outcomes": [{**row, "query": "q", "query_id": bad}]}, "outcomes[0].query_id: Value err"),
        ("/v1/tasks", {"name": "t", "description": bad}, "description: Value error, must be valid Unicode"),
        ("/v1/agents", {"name": "a", "llm": "llm-0", "strategy": bad}, "strategy: Value error, must be valid"),
    ]
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        for path, body, message in cases:
            r = _post(client, path, body, **AUTH)
            assert r.status_code == 422 and message in r.json()["detail"], (path, body, r.text)
            assert r.json()["errors"][0]["type"] == "value_error", r.text
        r = client.post("/v1/route", json={"query": "task-0 still fine"})  # the connection and the service go on
        assert r.status_code == 200, r.text


def test_strict_types_in_every_request_body(make_app: Callable[..., FastAPI]) -> None:
    cases: list[tuple[str, Any, str]] = [
        ("/v1/route", {"query": "q", "k": "3"}, "k: Input should be a valid integer"),
        ("/v1/route", {"query": "q", "k": True}, "k: Input should be a valid integer"),
        ("/v1/route", {"query": "q", "weights": {"w_effect": "1_0", "w_cost": 0}}, "weights.w_effect: Input should"),
        ("/v1/route/batch", {"queries": [{"query": "q", "k": "2"}]}, "queries[0].k: Input should be a valid integer"),
        ("/v1/llms", {"name": "x", "input_price": "0.1", "output_price": 0.1}, "input_price: Input should be a valid"),
        ("/v1/llms", {"name": "x", "input_price": 0.1, "output_price": False}, "output_price: Input should be a val"),
        ("/v1/llms", {"name": 5, "input_price": 0.1, "output_price": 0.1}, "name: Input should be a valid string"),
        ("/v1/outcomes", {"outcomes": [{"query_id": "q0", "candidate": "llm-0", "effect": "1", "cost": 0}]}, "effect"),
        (  # not stored, nor echoed back in a 404 of 100k characters
            "/v1/outcomes",
            {"outcomes": [{"query_id": "q" * 100_000, "candidate": "llm-0", "effect": 1, "cost": 0}]},
            "outcomes[0].query_id: String should have at most 512 characters",
        ),
    ]
    with TestClient(make_app()) as client:
        for path, body, message in cases:
            r = client.post(path, json=body, headers=AUTH)
            assert r.status_code == 422 and message in r.json()["detail"], (path, body, r.text)
        # an integer is a number: accepted where a float is expected
        r = client.post("/v1/route", json={"query": "task-1 q", "weights": {"w_effect": 1, "w_cost": 0}})
        assert r.status_code == 200, r.text


def _call(app: FastAPI, path: str, headers: dict[str, str], chunks: int, chunk: bytes) -> tuple[list[Any], int]:
    """One request straight through the ASGI interface (the test client reads a streamed body in full before
    sending it): the body is ``chunks`` times ``chunk``; gives the messages sent back and how many were read."""
    sent: list[dict[str, Any]] = []
    asked = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": chunk, "more_body": asked < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "scheme": "http",
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    return sent, asked


def test_a_body_over_the_limit_is_a_413_with_a_message(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(max_body_bytes=1_000)
    with TestClient(app) as client:
        r = client.post("/v1/route", json={"query": "task-0 " + "x" * 2_000})
        assert r.status_code == 413, r.text
        assert r.json()["detail"] == "request body too large: the limit is 1,000 bytes (GRAPHROUTER_MAX_BODY_BYTES)"
        r = client.post("/v1/llms", content=b"{" + b" " * 1_000 + b"}", headers={**JSON, **AUTH})
        assert r.status_code == 413, r.text
        r = client.post("/v1/route", json={"query": "task-0 small enough"})
        assert r.status_code == 200, r.text
        # no Content-Length (chunked): the body is counted as it streams in, and refused once over the limit
        sent, asked = _call(app, "/v1/route", JSON, chunks=1_000, chunk=b"x" * 100)
        assert sent[0]["status"] == 413 and b"GRAPHROUTER_MAX_BODY_BYTES" in sent[1]["body"], sent
        assert asked == 11  # 1,100 bytes read of 100,000
        sent, asked = _call(app, "/v1/outcomes", {**JSON, **AUTH}, chunks=1_000, chunk=b"x" * 100)
        assert sent[0]["status"] == 413 and asked == 11


def test_a_huge_declared_body_is_refused_without_reading_it(make_app: Callable[..., FastAPI]) -> None:
    """A 100 MB Content-Length is answered at once: not a byte of the body is read."""
    app = make_app()
    with TestClient(app):
        headers = {**JSON, "Content-Length": "100000000"}
        sent, asked = _call(app, "/v1/route", headers, chunks=1_526, chunk=b"x" * 65_536)
    assert sent[0]["status"] == 413 and asked == 0
    assert b"the limit is 2,097,152 bytes (GRAPHROUTER_MAX_BODY_BYTES)" in sent[1]["body"]


def test_token_buckets_refill_at_the_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3, max_clients=2)
    assert [buckets.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", now=0.0) == pytest.approx(0.5)  # one token comes back every 0.5 s
    assert buckets.take("a", now=0.5) == 0.0
    assert buckets.take("b", now=0.5) == 0.0  # another client has its own bucket
    buckets.take("c", now=0.5)  # at most max_clients buckets: the least recently seen (a) is dropped
    assert set(buckets._buckets) == {"b", "c"}


def test_rate_limit_per_client_with_retry_after(make_app: Callable[..., FastAPI]) -> None:
    with TestClient(make_app(rate_limit=0.5, rate_burst=2)) as client:
        route = {"query": "task-0 hi"}
        assert [client.post("/v1/route", json=route).status_code for _ in range(2)] == [200, 200]
        r = client.post("/v1/route", json=route)
        assert r.status_code == 429, r.text
        assert r.headers["Retry-After"] == "2"
        assert r.json()["detail"].startswith("rate limit: 0.5 requests per second per client (GRAPHROUTER_RATE_LIMIT)")
        assert client.get("/v1/llms").status_code == 429  # every operation of that client
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200  # probes are not
        # the key is its own client: a writer is not throttled by the open readers at the same address
        assert client.get("/v1/llms", headers=AUTH).status_code == 200
        # a made-up key does not buy a fresh bucket: it counts as its address
        assert client.get("/v1/llms", headers={"Authorization": "Bearer made-up"}).status_code == 429


def test_no_rate_limit_by_default(make_app: Callable[..., FastAPI]) -> None:
    with TestClient(make_app()) as client:
        assert {client.get("/v1/tasks").status_code for _ in range(30)} == {200}
    assert KEY  # the app above had writes open


def test_openapi_documents_the_error_bodies_and_statuses(make_app: Callable[..., FastAPI]) -> None:
    with TestClient(make_app()) as client:
        doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 body, which the service never sends
    assert set(schemas["ValidationErrorOut"]["properties"]) == {"detail", "errors"}
    assert schemas["ErrorOut"]["required"] == ["detail"]
    assert set(schemas["ProxyErrorOut"]["properties"]) == {"detail", "error"}
    invalid, error = "#/components/schemas/ValidationErrorOut", "#/components/schemas/ErrorOut"
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            for code, response in responses.items():
                if int(code) >= 400 and not (path == "/ready" and code == "503"):
                    want = invalid if code == "422" else error
                    if path in ("/v1/chat/completions", "/v1/models", "/v1/models/{model}"):  # OpenAI's error too
                        want = "#/components/schemas/ProxyErrorOut"
                    assert response["content"]["application/json"]["schema"]["$ref"] == want, (path, method, code)
            if "requestBody" in operation:
                assert {"400", "413", "415", "422"} <= set(responses), (path, method)
            if path.startswith("/v1/"):
                assert {"429", "503"} <= set(responses), (path, method)
                assert "Retry-After" in responses["429"]["headers"], (path, method)
    query = doc["components"]["schemas"]["RouteRequest"]["properties"]["query"]
    assert query["minLength"] == 1 and query["pattern"]  # {"query": ""} is invalid by the schema too
    name = doc["components"]["schemas"]["LLMIn"]["properties"]["name"]
    assert (name["minLength"], name["maxLength"]) == (1, 200) and name["pattern"]


def test_the_schema_patterns_say_what_validation_does() -> None:
    """The JSON Schema patterns agree with the validators on the edge cases of graph_store's rule."""
    import re

    from api.types import NAME_PATTERN, QUERY_ID_PATTERN, QUERY_PATTERN, TEXT_PATTERN

    def ok(pattern: str, value: str) -> bool:
        return re.search(pattern, value) is not None

    for name in ["a", "LLaMA-3 (8b)", "gpt-4o 2024", "名前", "a\u00a0b"]:
        assert ok(NAME_PATTERN, name), name
    for name in ["", " a", "a ", "a\nb", "a\tb", "\u3000a", "a\u2028b", "a\x7fb", "a\x85"]:
        assert not ok(NAME_PATTERN, name), name
    assert ok(QUERY_PATTERN, " a\n") and not ok(QUERY_PATTERN, " \n\t\u3000") and not ok(QUERY_PATTERN, "a\x00")
    assert ok(TEXT_PATTERN, "") and not ok(TEXT_PATTERN, "\x00")
    assert ok(QUERY_ID_PATTERN, "q 1") and not ok(QUERY_ID_PATTERN, "q\r1") and not ok(QUERY_ID_PATTERN, "")


def test_405_lists_every_method_the_path_takes(make_app: Callable[..., FastAPI]) -> None:
    with TestClient(make_app()) as client:
        for method, path, allowed in [
            ("PUT", "/v1/llms/llm-0", "DELETE, GET, PATCH"),  # three routes share /v1/llms/{name:path}
            ("POST", "/v1/agents/a/b", "DELETE, GET"),
            ("DELETE", "/v1/tasks", "GET, POST"),
            ("GET", "/v1/route", "POST"),
            ("PATCH", "/v1/train", "GET, POST"),
        ]:
            r = client.request(method, path)
            assert r.status_code == 405 and r.headers["Allow"] == allowed, (method, path, r.headers, r.text)
            assert r.json()["detail"] == f"method {method} not allowed on {path}; allowed: {allowed}"
