"""The OpenAI-compatible proxy against real HTTP upstreams on 127.0.0.1 (tests/proxy_upstream.py), with the service
itself under uvicorn on a free port: routing as /v1/route, fail-over, 4xx pass-through, streaming chunk by chunk,
costs from usage, feedback, missing upstreams, auth and limits, and no upstream key anywhere it should not be."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api.main import create_app
from api.settings import Settings
from graph_store import (
    LLM,
    QUERY,
    GraphStore,
    LLMNode,
    NodeNotFoundError,
    PendingOutcome,
    StoreUnavailableError,
    query_id,
)
from graph_store.backends.embedded import EmbeddedStore
from graphrouter.tokens import count_tokens
from graphrouter.world import World
from tests.proxy_upstream import USAGE, Upstream, running_upstream, serve_in_thread
from tests.test_api import fitted, populate  # noqa: F401 - the module-scoped checkpoint fixture
from tests.test_scorer import HashEmbedder

ADMIN = "admin-key"
PROXY = "proxy-key-1"
SECRET = "sk-upstream-SECRET-4242"
KEY_ENV = "TEST_UPSTREAM_API_KEY"
QUESTION = "task-2 what is the answer to this question?"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
PROXY_AUTH = {"Authorization": f"Bearer {PROXY}"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with running_upstream() as up:
        yield up


@pytest.fixture
def store(tmp_path: Path, fitted: tuple[World, dict[str, Path]]) -> Iterator[GraphStore]:  # noqa: F811
    with EmbeddedStore(tmp_path / "graph.db") as s:
        populate(s, fitted[0])
        yield s


Service = Callable[..., AbstractContextManager[httpx.Client]]


@pytest.fixture
def service(
    store: GraphStore,
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Service:
    """``with service(**settings) as client``: the app under uvicorn (knn_task checkpoint, the populated store), and
    an httpx client on it."""
    world, paths = fitted
    monkeypatch.setenv(KEY_ENV, SECRET)

    def make(**overrides: Any) -> AbstractContextManager[httpx.Client]:
        settings = Settings(
            **{
                "store": "unused",
                "checkpoint": paths["knn_task"],
                "embedding_cache": None,
                "api_key": ADMIN,
                "proxy_key": PROXY,
                "proxy_timeout": 1.5,  # (0.5 s timed a first call out once on a loaded machine)
                **overrides,
            }
        )
        app = create_app(settings, store=store, embedder=HashEmbedder(world))

        class _Running:
            def __enter__(self) -> httpx.Client:
                self._server = serve_in_thread(app)
                root = self._server.__enter__()
                self._client = httpx.Client(base_url=root, timeout=30)
                return self._client

            def __exit__(self, *exc: object) -> None:
                self._client.close()
                self._server.__exit__(*exc)

        return _Running()

    return make


def set_upstream(client: httpx.Client, name: str, base_url: str | None, **extra: Any) -> httpx.Response:
    body = {"upstream": None if base_url is None else {"base_url": base_url, **extra}}
    r = client.patch(f"/v1/llms/{name}", json=body, headers=ADMIN_AUTH)
    assert r.status_code == 200, r.text
    return r


def ranking(client: httpx.Client, query: str = QUESTION, **route: Any) -> list[dict[str, Any]]:
    k = len(route["candidates"]) if "candidates" in route else 5
    r = client.post("/v1/route", json={"query": query, "k": k, **route})
    assert r.status_code == 200, r.text
    return r.json()["candidates"]  # type: ignore[no-any-return]


def chat(client: httpx.Client, model: str = "graphrouter", text: str = QUESTION, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]}
    return client.post("/v1/chat/completions", json={**body, **extra}, headers=PROXY_AUTH)


def streamed(client: httpx.Client, model: str) -> tuple[int, str]:
    """A streamed chat call's status and whole body."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with client.stream("POST", "/v1/chat/completions", json=body, headers=PROXY_AUTH) as r:
        return r.status_code, r.read().decode()


def pending(store: GraphStore, rid: str) -> PendingOutcome:
    """The call's pending outcome, once written (the proxy records after the answer is sent)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return store.pending_outcome(rid)
        except NodeNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def expected_cost(node: LLMNode, share: float = 1.0) -> float:
    """A call's recorded cost: its routed query's share of the billed input, and the billed output."""
    return (share * USAGE["prompt_tokens"] * node.input_price + USAGE["completion_tokens"] * node.output_price) / 1e6


# what a chat() call's question is of its prompt ("be brief" and the question): the recorded input cost's share
CHAT_SHARE = count_tokens([QUESTION])[0] / count_tokens(["be brief\n" + QUESTION])[0]


# ---- routing, recording, feedback -----------------------------------------------------------------------------
def test_the_router_picks_as_route_would_forwards_and_records_the_cost(
    service: Service, upstream: Upstream, store: GraphStore
) -> None:
    with service() as client:
        for i in range(5):
            set_upstream(client, f"llm-{i}", upstream.url(f"ok-{i}"), model=f"vendor/model-{i}", api_key_env=KEY_ENV)
        prompt = sum(count_tokens(["be brief", QUESTION]))  # the call is priced on its whole prompt
        for scenario in (None, "cost_first", "performance_first"):
            top = ranking(client, input_tokens=prompt, **({"scenario": scenario} if scenario else {}))[0]
            model = "graphrouter" + (f":{scenario}" if scenario else "")
            r = chat(client, model)
            assert r.status_code == 200, r.text
            assert r.headers["x-graphrouter-model"] == top["name"]
            assert float(r.headers["x-graphrouter-effect"]) == pytest.approx(top["effect"], abs=1e-4)
            assert float(r.headers["x-graphrouter-cost"]) == pytest.approx(top["cost"], rel=1e-6)
            assert r.headers["x-graphrouter-fallbacks"] == "0" and r.headers["x-graphrouter-task"] == "task-2"
            body = r.json()
            i = top["name"].split("-")[1]
            assert body["model"] == top["name"]  # the only change to the upstream's answer
            assert body["choices"][0]["message"]["content"] == f"answer from ok-{i}"
            assert body["usage"] == USAGE and body["id"] == r.headers["x-graphrouter-response-id"]
            mode, headers, sent = upstream.seen[-1]
            assert mode == f"ok-{i}" and sent["model"] == f"vendor/model-{i}"
            assert headers["authorization"] == f"Bearer {SECRET}"
            assert not set(sent) & {"task", "weights", "budget", "candidates", "scenario"}

        # the call is a pending outcome priced from usage (its question's share of the input), on a new Query node of
        # the task used
        node = store.get_node(LLM, body["model"])
        assert isinstance(node, LLMNode)
        record = pending(store, body["id"])
        assert (record.target, record.source) == (node.name, "proxy")
        assert record.cost == pytest.approx(expected_cost(node, CHAT_SHARE)) and CHAT_SHARE < 1
        query = store.get_node(QUERY, query_id(QUESTION))
        assert (query.text, query.task) == (QUESTION, "task-2")  # type: ignore[union-attr]
        assert store.outcomes(LLM, query_id=query.key) == []  # no effect yet: no outcome edge

        # feedback whose change record cannot be written (the store gone at that moment) writes nothing, so it can be
        # sent again (the edge used to be written first, on its own, and the retry got a 404)
        start = store.latest_version()

        def down(*args: Any) -> None:
            raise StoreUnavailableError("the store is down for a moment")

        store._log = down  # type: ignore[attr-defined]
        try:
            r = client.post("/v1/feedback", json={"id": body["id"], "effect": 0.9}, headers=PROXY_AUTH)
        finally:
            del store._log  # type: ignore[attr-defined]
        assert r.status_code == 503 and store.pending_outcome(body["id"]) == record, r.text
        assert store.outcomes(LLM, query_id=query.key) == []
        # feedback completes it (a proxy key will do; the admin key too), with the change record for the replicas
        r = client.post("/v1/feedback", json={"id": body["id"], "effect": 0.9}, headers=PROXY_AUTH)
        assert [c.kind for c in store.changes_since(start)] == ["outcomes"]
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["candidate"] == node.name and done["effect"] == 0.9
        assert done["cost"] == pytest.approx(expected_cost(node, CHAT_SHARE))
        [outcome] = store.outcomes(LLM, query_id=query.key)
        assert (outcome.target, outcome.effect, outcome.source) == (node.name, 0.9, "proxy")
        with pytest.raises(NodeNotFoundError):
            store.pending_outcome(body["id"])
        again = client.post("/v1/feedback", json={"id": body["id"], "effect": 0.1}, headers=ADMIN_AUTH)
        assert again.status_code == 404 and body["id"] in again.json()["detail"]
        bad = client.post("/v1/feedback", json={"id": "x", "effect": 1.5}, headers=PROXY_AUTH)
        assert bad.status_code == 422


def test_a_call_is_priced_on_its_whole_prompt_and_a_long_last_message_is_routed_on_its_head(
    service: Service, upstream: Upstream, store: GraphStore
) -> None:
    """A chat's cost is its whole prompt's (system prompt, history, tool calls and schemas), not its last user
    message's: priced on the last message alone, a long conversation looked as cheap as its last line, to Cost First
    and to a budget. Its recorded outcome is its question's: the billed input cost times the question's share of the
    prompt (a retrain prices that query on its own tokens; the whole bill taught it a multiplier ~10x too high here).
    A last user message longer than GRAPHROUTER_MAX_QUERY_CHARS was a 422 from the router; it is routed on its first
    that many characters from its first word (the encoder reads far fewer) and sent whole."""
    history = [
        {"role": "user" if i % 2 else "assistant", "content": f"turn {i}: " + "details " * 400} for i in range(6)
    ]
    messages = [{"role": "system", "content": "be brief"}, *history, {"role": "user", "content": QUESTION}]
    whole = sum(count_tokens([m["content"] for m in messages]))
    with service(max_query_chars=200) as client:
        for i in range(5):
            set_upstream(client, f"llm-{i}", upstream.url(f"ok-{i}"), api_key_env=KEY_ENV)
        body = {"model": "graphrouter:cost_first", "messages": messages}
        r = client.post("/v1/chat/completions", json=body, headers=PROXY_AUTH)
        assert r.status_code == 200, r.text
        top = ranking(client, input_tokens=whole, scenario="cost_first")[0]
        alone = ranking(client, scenario="cost_first")[0]
        assert r.headers["x-graphrouter-model"] == top["name"]
        assert float(r.headers["x-graphrouter-cost"]) == pytest.approx(top["cost"], rel=1e-6)
        assert top["cost"] > 5 * alone["cost"]  # 2,400 words of history against a one-line question
        node = store.get_node(LLM, top["name"])
        share = count_tokens([QUESTION])[0] / whole
        assert pending(store, r.json()["id"]).cost == pytest.approx(expected_cost(node, share))  # type: ignore[arg-type]
        # tool calls' arguments and the tools' schemas are input too
        tools = [{"type": "function", "function": {"name": "lookup", "description": "look it up " * 200}}]
        call = {"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": "{}" + " q" * 300}}]}
        r = client.post(
            "/v1/chat/completions", json={**body, "messages": [call, *messages], "tools": tools}, headers=PROXY_AUTH
        )
        assert r.status_code == 200, r.text
        more = ranking(client, input_tokens=whole + 300 + 600, scenario="cost_first")
        assert float(r.headers["x-graphrouter-cost"]) == pytest.approx(
            {c["name"]: c["cost"] for c in more}[r.headers["x-graphrouter-model"]], rel=0.02
        )
        # a last message over the limit: routed on its head, stored as that, the whole body sent on
        long = QUESTION + " " + "x" * 500
        r = chat(client, "graphrouter", long)
        assert r.status_code == 200, r.text
        assert upstream.seen[-1][2]["messages"][-1]["content"] == long
        assert pending(store, r.json()["id"]).query_id == query_id(long[:200])
        assert store.has_node(QUERY, query_id(long[:200]))
        r = chat(client, "graphrouter", " " * 300 + long)  # a head of blanks is not what it is routed on
        assert r.status_code == 200 and pending(store, r.json()["id"]).query_id == query_id(long[:200]), r.text
        r = client.post("/v1/route", json={"query": QUESTION, "input_tokens": -1})
        assert r.status_code == 422 and "input_tokens" in r.text, r.text
    with service(store_query_texts=False) as client:  # the stored text is a placeholder: its share, as a retrain's
        r = client.post("/v1/chat/completions", json={**body, "model": "llm-2"}, headers=PROXY_AUTH)
        assert r.status_code == 200, r.text
        placeholder = f"[text not stored] {query_id(QUESTION)}"
        share = count_tokens([placeholder])[0] / whole
        node = store.get_node(LLM, "llm-2")
        assert pending(store, r.json()["id"]).cost == pytest.approx(expected_cost(node, share))  # type: ignore[arg-type]


def test_a_calls_max_tokens_caps_its_predicted_cost(service: Service, upstream: Upstream) -> None:
    """A chat call's ``max_completion_tokens`` (else ``max_tokens``) bounds what it can be billed: it is priced,
    routed and budgeted as ``/v1/route`` prices a request with that ``max_output_tokens`` (its cost was predicted
    with a full answer's output: a 16-token cap was priced 5-13x too dear)."""
    from api.upstream import prompt_tokens

    body = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": QUESTION}]}
    whole = max(prompt_tokens(body), count_tokens([QUESTION])[0])
    with service() as client:
        for i in range(5):
            set_upstream(client, f"llm-{i}", upstream.url(f"ok-{i}"), api_key_env=KEY_ENV)
        capped = ranking(client, input_tokens=whole, max_output_tokens=16, scenario="cost_first")
        full = {c["name"]: c["cost"] for c in ranking(client, input_tokens=whole, scenario="cost_first")}
        assert capped[0]["cost"] < 0.5 * full[capped[0]["name"]]
        for extra in ({"max_tokens": 16}, {"max_tokens": 4000, "max_completion_tokens": 16}):  # the newer name first
            r = chat(client, "graphrouter:cost_first", **extra)
            assert r.status_code == 200, r.text
            assert r.headers["x-graphrouter-model"] == capped[0]["name"]
            assert float(r.headers["x-graphrouter-cost"]) == pytest.approx(capped[0]["cost"], rel=1e-6)
        r = chat(client, "graphrouter:cost_first", max_tokens=8, n=2)  # two choices of up to 8 tokens each
        assert float(r.headers["x-graphrouter-cost"]) == pytest.approx(capped[0]["cost"], rel=1e-6)
        r = chat(client, "llm-4", max_tokens=16)  # a named LLM is priced the same way
        assert r.status_code == 200, r.text
        named = ranking(client, input_tokens=whole, max_output_tokens=16, candidates=["llm-4"])[0]
        assert float(r.headers["x-graphrouter-cost"]) == pytest.approx(named["cost"], rel=1e-6)
        r = chat(client, "llm-4", max_tokens=0)  # not a cap: the upstream's to refuse, priced as without one
        assert float(r.headers["x-graphrouter-cost"]) == pytest.approx(full["llm-4"], rel=1e-6)
        r = client.post("/v1/route", json={"query": QUESTION, "max_output_tokens": 0})
        assert r.status_code == 422 and "max_output_tokens" in r.text, r.text


def test_proxied_calls_answered_briefly_teach_a_retrain_to_price_a_long_prompt_as_billed(
    service: Service,
    upstream: Upstream,
    store: GraphStore,
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
) -> None:
    """The cost model learns from what the proxy records: an LLM answering in 60 tokens on prompts of every length
    was learned one multiplier of ~0.16 for its whole computed cost (512 output tokens) at the next training, so a
    12,000-token prompt was predicted at a fraction of its bill; the world a retrain builds from the proxy's outcomes
    now gives its prompt and its answers a factor each, and it is priced as billed."""
    from graphrouter.cost import CostModel
    from graphrouter.world import build_world

    world, _ = fitted
    new = {"name": "llm-brief", "description": "brief", "input_price": 2.5, "output_price": 10.0}
    with service() as client:
        r = client.post("/v1/llms", json={**new, "upstream": {"base_url": upstream.url("brief")}}, headers=ADMIN_AUTH)
        assert r.status_code == 201, r.text
        for i in range(30):
            r = chat(client, "llm-brief", f"task-1 question {i} " + "word " * (50 * i), task="task-1")
            assert r.status_code == 200, r.text
            pending(store, r.json()["id"])
            r = client.post("/v1/feedback", json={"id": r.json()["id"], "effect": 1.0}, headers=PROXY_AUTH)
            assert r.status_code == 200, r.text
    retrained = build_world(store.snapshot(), HashEmbedder(world))
    col = retrained.data.candidates.index("llm-brief")
    assert np.isfinite(retrained.data.cost[:, col]).sum() == 30
    model = CostModel.from_world(retrained)
    assert model.factors[col] == pytest.approx([1.0, 60 / 512], rel=0.05)
    billed = (12_000 * 2.5 + 60 * 10.0) / 1e6
    assert model.cost(np.array([12_000.0]))[0, col] == pytest.approx(billed, rel=0.05)


def test_a_long_prompt_is_counted_on_its_head_scaled() -> None:
    """Counting a 1 MB prompt's tokens took up to 2 s of CPU per call: past PROMPT_COUNT_CHARS characters the first
    ones are counted and scaled to the whole, close to the exact count on a prompt of one kind of text."""
    from api.upstream import PROMPT_COUNT_CHARS, prompt_tokens

    words = " ".join(f"word{i % 997} and some more text" for i in range(60_000))
    assert len(words) > 10 * PROMPT_COUNT_CHARS
    body = {"messages": [{"role": "user", "content": words}]}
    assert prompt_tokens(body) == pytest.approx(count_tokens([words])[0], rel=0.02)
    short = {"messages": [{"role": "user", "content": "hello there"}], "tools": "not a list"}
    assert prompt_tokens(short) == count_tokens(["hello there"])[0]


def test_extra_body_routing_fields_and_pass_through(service: Service, upstream: Upstream, store: GraphStore) -> None:
    with service() as client:
        for i in range(5):
            set_upstream(client, f"llm-{i}", upstream.url(f"ok-{i}"))
        only = ["llm-1", "llm-3"]
        top = ranking(client, task="task-1", candidates=only, weights={"w_effect": 1, "w_cost": 0})[0]
        r = chat(client, task="task-1", candidates=only, weights={"w_effect": 1, "w_cost": 0})
        assert r.status_code == 200, r.text
        assert r.headers["x-graphrouter-model"] == top["name"] and r.headers["x-graphrouter-task"] == "task-1"

        r = chat(client, "llm-4", text="a pass-through question")
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "llm-4" and upstream.seen[-1][2]["model"] == "llm-4"  # default: its name
        assert r.headers["x-graphrouter-model"] == "llm-4" and "x-graphrouter-effect" in r.headers
        assert pending(store, r.json()["id"]).target == "llm-4"

        # to an LLM the scorer does not route (knn_task cannot add one), no route request checks the task: a NUL in
        # it dropped the connection once the upstream had answered (security audit); now refused before the call
        new = {"name": "llm-new", "description": "new", "input_price": 1.0, "output_price": 2.0}
        r = client.post("/v1/llms", json={**new, "upstream": {"base_url": upstream.url("ok-n")}}, headers=ADMIN_AUTH)
        assert r.status_code == 201 and r.json()["routable"] is False, r.text
        calls = len(upstream.seen)
        for bad in ("x\x00y", " padded", 3):
            r = chat(client, "llm-new", task=bad)
            assert r.status_code == 422 and r.json()["detail"].startswith("task: "), (bad, r.text)
        assert len(upstream.seen) == calls
        r = chat(client, "llm-new", task="task-1")
        assert r.status_code == 200 and r.headers["x-graphrouter-task"] == "task-1", r.text


def test_the_router_reads_ranked_candidates_nodes_a_few_at_a_time_until_one_can_be_called(
    service: Service, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nodes of the ranked candidates are read NODE_READ at a time (one store read each, not two per
    candidate); the only one with an upstream ranks fourth, in the second read of two."""
    monkeypatch.setattr("api.proxy_plan.NODE_READ", 2)
    with service() as client:
        order = [c["name"] for c in ranking(client)]
        set_upstream(client, order[3], upstream.url("ok-d"))
        r = chat(client)
        assert r.status_code == 200 and r.headers["x-graphrouter-model"] == order[3], r.text


def test_fail_over_on_connection_error_5xx_and_timeout_then_502(
    service: Service, upstream: Upstream, store: GraphStore
) -> None:
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens, connection refused
    with service(proxy_max_attempts=4) as client:
        order = [c["name"] for c in ranking(client)]
        urls = [dead, upstream.url("fail500"), upstream.url("slow"), upstream.url("ok-x")]
        for name, url in zip(order, urls, strict=False):
            set_upstream(client, name, url)
        r = chat(client)
        assert r.status_code == 200, r.text
        assert r.headers["x-graphrouter-model"] == order[3] and r.headers["x-graphrouter-fallbacks"] == "3"
        failed = r.headers["x-graphrouter-failed"]
        assert f"{order[0]} (ConnectError)" in failed and f"{order[1]} (HTTP 500)" in failed
        assert f"{order[2]} (timed out)" in failed  # given up after proxy_timeout (1.5 s), not awaited (2 s)
        assert pending(store, r.json()["id"]).target == order[3]

    with service(proxy_max_attempts=2) as client:
        r = chat(client)
        assert r.status_code == 502 and order[0] in r.json()["detail"] and order[1] in r.json()["detail"]
        assert r.headers["x-graphrouter-fallbacks"] == "2" and order[1] in r.headers["x-graphrouter-failed"]


def test_an_upstream_4xx_is_returned_as_it_is(service: Service, upstream: Upstream) -> None:
    with service() as client:
        order = [c["name"] for c in ranking(client)]
        set_upstream(client, order[0], upstream.url("bad400"))
        set_upstream(client, order[1], upstream.url("ok-second"))
        before = len(upstream.seen)
        r = chat(client)
        assert r.status_code == 400
        assert r.json() == {
            "error": {"message": "max_tokens is too large", "type": "invalid_request_error", "code": None}
        }
        assert r.headers["x-graphrouter-model"] == order[0]
        assert upstream.modes()[before:] == ["bad400"]  # no fall-back on the client's own error


def test_missing_upstream_config_is_a_clear_4xx_naming_the_candidates(
    service: Service,
    upstream: Upstream,
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
) -> None:
    with service() as client:
        r = chat(client, "llm-2")
        assert r.status_code == 400 and "'llm-2'" in r.json()["detail"] and "PATCH /v1/llms/llm-2" in r.json()["detail"]
        r = chat(client)
        assert r.status_code == 400
        assert all(f"llm-{i} (no upstream configured" in r.json()["detail"] for i in range(5))
        r = chat(client, "no-such-model")
        assert r.status_code == 404 and "no-such-model" in r.json()["detail"]
        r = chat(client, "graphrouter:fastest")  # was a 422 about the body's "scenario"
        assert r.status_code == 400 and r.json()["detail"].startswith("model: unknown 'graphrouter:fastest'; use")

        # the router skips what it cannot call: no upstream, or a key variable unset on the server
        order = [c["name"] for c in ranking(client)]
        set_upstream(client, order[0], upstream.url("ok-a"), api_key_env="TEST_UNSET_API_KEY")
        set_upstream(client, order[2], upstream.url("ok-c"))
        r = chat(client)
        assert r.status_code == 200 and r.headers["x-graphrouter-model"] == order[2]
        r = chat(client, order[0])
        assert r.status_code == 503 and "TEST_UNSET_API_KEY is not set" in r.json()["detail"]

        # routed, with every candidate's key unset: the server's to fix, as for a named LLM
        for name in order:
            set_upstream(client, name, upstream.url("ok-a"), api_key_env="TEST_UNSET_API_KEY")
        r = chat(client)
        assert r.status_code == 503 and r.json()["detail"].startswith("no candidate the router ranked can be called")
        assert all(f"{name} (its key's environment variable" in r.json()["detail"] for name in order), r.text
        r = chat(client, explore=True)  # exploring: the same answer, not one naming no candidate
        assert r.status_code == 503 and all(name in r.json()["detail"] for name in order), r.text
        set_upstream(client, order[1], None)  # one without an upstream: the caller's to configure
        assert chat(client).status_code == 400 and chat(client, explore=True).status_code == 400

    with service(checkpoint=fitted[1]["gnn"]) as client:  # a router that adds an agent at once
        set_upstream(client, order[1], upstream.url("ok-b"), api_key_env="TEST_UNSET_API_KEY")
        agent = {"name": "agent-x", "llm": order[0], "description": "an agent"}
        r = client.post("/v1/agents", json=agent, headers=ADMIN_AUTH)
        assert r.status_code == 201 and r.json()["routable"], r.text
        r = chat(client)  # an agent ranked among them changes nothing: the proxy never calls agents
        assert r.status_code == 503 and "agent-x (an agent" in r.json()["detail"], r.text


# ---- streaming and the official client ---------------------------------------------------------------------
def test_streaming_passes_chunks_through_as_they_come_and_records_usage(
    service: Service, upstream: Upstream, store: GraphStore
) -> None:
    with service() as client:
        for i in range(5):
            set_upstream(client, f"llm-{i}", upstream.url(f"gated-{i}"))
        top = ranking(client)[0]["name"]
        body = {"model": "graphrouter", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
        data: list[str] = []
        upstream.gate.clear()
        with client.stream("POST", "/v1/chat/completions", json=body, headers=PROXY_AUTH) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["x-graphrouter-model"] == top
            streamed_id = r.headers["x-graphrouter-response-id"]  # known before the first chunk
            for line in r.iter_lines():
                if line.startswith("data: "):
                    data.append(line[6:])
                    upstream.gate.set()  # the upstream holds its next chunks until the first one got here
        import json

        # chunk by chunk: the first arrived while the upstream was still holding the next ones back
        assert upstream.gate_opened == [True]
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert len(chunks) == 3  # the usage-only chunk the proxy asked for is not passed on
        assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == f"Hello from gated-{top.split('-')[1]}"
        assert all(c["model"] == top for c in chunks) and {c["id"] for c in chunks} == {streamed_id}
        assert upstream.seen[-1][2]["stream_options"] == {"include_usage": True}
        node = store.get_node(LLM, top)
        assert pending(store, chunks[0]["id"]).cost == pytest.approx(expected_cost(node))  # type: ignore[arg-type]

        body["stream_options"] = {"include_usage": True}  # asked for: the usage chunk is passed on
        with client.stream("POST", "/v1/chat/completions", json=body, headers=PROXY_AUTH) as r:
            lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert json.loads(lines[-2])["usage"] == USAGE and json.loads(lines[-2])["choices"] == []


def test_the_official_openai_client_works_plain_and_streamed(
    service: Service, upstream: Upstream, store: GraphStore
) -> None:
    import openai

    with service() as client:
        for i in range(5):
            set_upstream(client, f"llm-{i}", upstream.url(f"ok-{i}"))
        top = ranking(client)[0]["name"]
        v1 = f"{str(client.base_url).rstrip('/')}/v1"
        oai = openai.OpenAI(base_url=v1, api_key=PROXY, max_retries=0)
        messages = [{"role": "user", "content": QUESTION}]
        done = oai.chat.completions.create(model="graphrouter", messages=messages)  # type: ignore[arg-type]
        assert done.model == top and done.choices[0].message.content == f"answer from ok-{top.split('-')[1]}"
        assert done.usage is not None and done.usage.completion_tokens == 50
        raw = oai.chat.completions.with_raw_response.create(model="graphrouter:cost_first", messages=messages)  # type: ignore[arg-type]
        assert raw.headers["x-graphrouter-model"] == ranking(client, scenario="cost_first")[0]["name"]

        stream = oai.chat.completions.create(
            model="graphrouter",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            extra_body={"task": "task-2"},
        )
        pieces = [chunk.choices[0].delta.content or "" for chunk in stream]  # no empty-choices chunk to trip on
        assert "".join(pieces) == f"Hello from ok-{top.split('-')[1]}"

        with pytest.raises(openai.AuthenticationError) as denied:
            openai.OpenAI(base_url=v1, api_key="wrong", max_retries=0).chat.completions.create(
                model="graphrouter",
                messages=messages,  # type: ignore[arg-type]
            )
        assert denied.value.message.endswith(" - wrong proxy key")  # from OpenAI's error shape, not the whole body
        assert isinstance(denied.value.body, dict) and denied.value.body["type"] == "authentication_error"
        with pytest.raises(openai.NotFoundError) as missing:
            oai.chat.completions.create(model="no-such-model", messages=messages)  # type: ignore[arg-type]
        assert "no LLM named 'no-such-model'" in missing.value.message
        r = client.post("/v1/feedback", json={"id": done.id, "effect": 1.0}, headers=PROXY_AUTH)
        assert r.status_code == 200 and r.json()["candidate"] == top

        # the model list an OpenAI client asks for: the router, its scenarios, then the LLMs it can call
        set_upstream(client, "llm-4", None)
        ids = [m.id for m in oai.models.list()]
        assert ids[:4] == [
            "graphrouter",
            "graphrouter:performance_first",
            "graphrouter:balance",
            "graphrouter:cost_first",
        ]
        assert sorted(ids[4:]) == [f"llm-{i}" for i in range(4)]  # llm-4 has no upstream now
        assert oai.models.retrieve("llm-0").owned_by == "upstream"
        with pytest.raises(openai.NotFoundError) as no_upstream:
            oai.models.retrieve("llm-4")
        assert "'llm-4' cannot be called: no upstream configured" in no_upstream.value.message
        with pytest.raises(openai.NotFoundError, match="no LLM named 'gpt-9'"):
            oai.models.retrieve("gpt-9")
        assert client.get("/v1/models").status_code == 401
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=v1, api_key="wrong", max_retries=0).models.list()


# ---- auth, limits, secrets ----------------------------------------------------------------------------------
def test_each_call_gets_its_own_response_id_whatever_ids_the_upstream_reuses(
    service: Service, upstream: Upstream, store: GraphStore
) -> None:
    with service() as client:
        set_upstream(client, "llm-0", upstream.url("sameid"))
        ids = []
        for text in ("first question", "second question"):
            body = {"model": "llm-0", "messages": [{"role": "user", "content": text}], "task": "task-0"}
            r = client.post("/v1/chat/completions", json=body, headers=PROXY_AUTH)
            assert r.status_code == 200 and r.json()["id"] == r.headers["x-graphrouter-response-id"] != "chatcmpl-1"
            ids.append(r.json()["id"])
        assert ids[0] != ids[1]
        first, second = (pending(store, i) for i in ids)  # two pending outcomes, each on its own query
        assert first.query_id != second.query_id


def test_a_body_no_upstream_could_read_is_a_400_before_any_call(service: Service, upstream: Upstream) -> None:
    with service() as client:
        set_upstream(client, "llm-0", upstream.url("ok-0"))
        head = '{"model": "llm-0", "messages": [{"role": "user", "content": "hi"}]'
        cases = [
            (head + ', "temperature": NaN}', 400, "NaN is not a JSON number"),
            (head + ', "temperature": -Infinity}', 400, "-Infinity is not a JSON number"),
            (head + ', "max_tokens": 1e999}', 400, "1e999 is out of range for a JSON number"),
            (head + ', "stream": "yes"}', 400, "stream: must be true or false, got 'yes'"),
            (head + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}", 400, "nested too deeply"),
            (head + ', "max_tokens": ' + "9" * 5_000 + "}", 400, "an integer of more than 4,300 digits"),
            # named by the chat body's own field, not by /v1/route's
            ('{"model": "llm-0", "messages": [{"role": "user", "content": "a \\u0000 b"}]}', 422, "messages (the last"),
            # a lone surrogate anywhere (not only in the routed text) could not be forwarded as UTF-8
            (head[:-1] + ', {"role": "user", "content": "x"}], "user": "\\udc00"}', 400, "not valid Unicode"),
            (
                '{"model": "llm-0", "messages": [{"role": "system", "content": "s \\ud800"}, '
                '{"role": "user", "content": "hi"}]}',
                400,
                "not valid Unicode",
            ),
            # nothing to route on: said as it is
            ('{"model": "llm-0", "messages": [{"role": "system", "content": "s"}]}', 400, "no user message"),
            (head[:-1] + ', {"role": "user", "content": " "}]}', 400, "the last user message has no text"),
        ]
        before = len(upstream.modes())
        for raw, code, message in cases:
            r = client.post(
                "/v1/chat/completions", content=raw, headers={**PROXY_AUTH, "content-type": "application/json"}
            )
            assert r.status_code == code and message in r.json()["detail"], (raw[:80], r.text[:300])
        assert len(upstream.modes()) == before  # no upstream was called


def test_auth_body_size_and_rate_limit(service: Service, upstream: Upstream) -> None:
    with service(proxy_rate_limit=3, proxy_max_body_bytes=2_000) as client:
        set_upstream(client, "llm-0", upstream.url("ok-0"))
        body = {"model": "llm-0", "messages": [{"role": "user", "content": "hi"}]}
        assert client.post("/v1/chat/completions", json=body).status_code == 401
        admin = client.post("/v1/chat/completions", json=body, headers=ADMIN_AUTH)
        assert admin.status_code == 401 and admin.json()["detail"] == "wrong proxy key"
        big = {**body, "messages": [{"role": "user", "content": "x" * 3_000}]}
        assert client.post("/v1/chat/completions", json=big, headers=PROXY_AUTH).status_code == 413
        codes = [client.post("/v1/chat/completions", json=body, headers=PROXY_AUTH).status_code for _ in range(3)]
        assert codes == [200, 200, 429]  # the 413 took a token too
        limited = client.post("/v1/chat/completions", json=body, headers=PROXY_AUTH)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # the proxy key does not open the admin's writes
        r = client.patch("/v1/llms/llm-0", json={"upstream": None}, headers=PROXY_AUTH)
        assert r.status_code == 401

    with service(proxy_key=None) as client:
        r = client.post("/v1/chat/completions", json=body, headers=PROXY_AUTH)
        assert r.status_code == 401 and "GRAPHROUTER_PROXY_KEY" in r.json()["detail"]
        # feedback still takes the admin key; any other key is told so, not just "wrong proxy key"
        r = client.post("/v1/feedback", json={"id": "x", "effect": 1.0}, headers=PROXY_AUTH)
        assert r.status_code == 401 and "the proxy is disabled" in r.json()["detail"], r.text
        assert "GRAPHROUTER_API_KEY" in r.json()["detail"]
        r = client.post("/v1/feedback", json={"id": "x", "effect": 1.0}, headers=ADMIN_AUTH)
        assert r.status_code == 404, r.text


def test_the_upstream_key_never_shows_in_answers_logs_or_metrics(
    service: Service, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with service(proxy_max_attempts=5) as client:
        order = [c["name"] for c in ranking(client)]
        modes = ["fail500", "slow", "ok-a"]
        for name, mode in zip(order, modes, strict=False):
            set_upstream(client, name, upstream.url(mode), api_key_env=KEY_ENV)
        seen.append(chat(client).text)
        stream = {"model": "graphrouter", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=stream, headers=PROXY_AUTH) as r:
            seen.append(r.read().decode())
        set_upstream(client, order[3], upstream.url("echo400"), api_key_env=KEY_ENV)
        echoed = chat(client, order[3])
        assert echoed.status_code == 401 and "***" in echoed.text  # a careless upstream echoing it: masked
        seen.append(echoed.text)
        assert upstream.seen[-1][1]["authorization"] == f"Bearer {SECRET}"  # it was sent, upstream only
        # in a successful answer too, plain and streamed (security audit: only error answers were masked)
        set_upstream(client, order[3], upstream.url("echo200"), api_key_env=KEY_ENV)
        echoed = chat(client, order[3])
        assert echoed.status_code == 200 and echoed.json()["choices"][0]["message"]["content"] == "you sent Bearer ***"
        seen.append(echoed.text)
        with client.stream("POST", "/v1/chat/completions", json={**stream, "model": order[3]}, headers=PROXY_AUTH) as r:
            streamed = r.read().decode()
        assert r.status_code == 200 and "Bearer ***" in streamed, streamed
        seen.append(streamed)
        listing = client.get("/v1/llms", headers=ADMIN_AUTH).json()["data"]
        seen.append(str(listing))
        shown = next(x for x in listing if x["name"] == order[0])["upstream"]
        assert shown["api_key_env"] == KEY_ENV and shown["api_key_set"] is True
        seen.append(client.get(f"/v1/llms/{order[0]}", headers=ADMIN_AUTH).text)
        seen.append(client.get("/metrics").text)
        seen.append(client.get("/openapi.json").text)
    assert 'graphrouter_proxy_calls_total{candidate="' in seen[-2]
    for text in [*seen, caplog.text]:
        assert SECRET not in text


def test_routed_calls_explore_as_route_does(
    service: Service,
    upstream: Upstream,
    fitted: tuple[World, dict[str, Path]],  # noqa: F811
) -> None:
    """The service's exploration default (or the body's ``explore``) applies to routed chat calls too: a new LLM
    known from its description only is quizzed, and the exploration is counted."""
    with service(checkpoint=fitted[1]["gnn"], explore_share=1.0, explore_default=True) as client:
        for i in range(5):
            set_upstream(client, f"llm-{i}", upstream.url(f"ok-{i}"))
        new = {"name": "llm-new", "description": "a new model", "input_price": 0.01, "output_price": 0.01}
        r = client.post("/v1/llms", json={**new, "upstream": {"base_url": upstream.url("ok-new")}}, headers=ADMIN_AUTH)
        assert r.status_code == 201 and r.json()["routable"] is True, r.text
        # another new one the proxy cannot call (no upstream): exploring it would spend the budget on a skipped pick
        dark = {**new, "name": "llm-dark"}
        assert client.post("/v1/llms", json=dark, headers=ADMIN_AUTH).json()["routable"] is True
        answers = [chat(client) for _ in range(10)]
        models = [a.headers["x-graphrouter-model"] for a in answers]
        assert all(a.headers["x-graphrouter-explored"] == "true" for a in answers)
        explored = sum(
            float(line.rsplit(" ", 1)[1])
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("graphrouter_explorations_total{")
        )
        assert models == ["llm-new"] * 10 and explored == 10, (models, explored)  # quizzed, every call
        calm = [chat(client, explore=False) for _ in range(5)]
        quiet = [a.headers["x-graphrouter-model"] for a in calm]
        assert all(r == quiet[0] for r in quiet)  # no exploration asked: the argmax every time
        assert not any("x-graphrouter-explored" in a.headers for a in calm)
        for odd in ([{"a": 1}], [["llm-0"]], [3]):  # not names: the route's own 422, exploring or not
            for explore in (True, False):
                r = chat(client, explore=explore, candidates=odd)
                assert r.status_code == 422 and "candidates[0]" in r.json()["detail"], (odd, explore, r.text)


# ---- upstream configuration on the LLMs ----------------------------------------------------------------------
def test_upstreams_at_registration_patch_and_idempotency(service: Service, store: GraphStore) -> None:
    with service() as client:
        new = {"name": "llm-new", "description": "new", "input_price": 1.0, "output_price": 2.0}
        up = {"base_url": "https://api.example.com/v1", "model": "ex-1", "api_key_env": "EXAMPLE_UNSET_API_KEY"}
        r = client.post("/v1/llms", json={**new, "upstream": up}, headers=ADMIN_AUTH)
        assert r.status_code == 201, r.text
        unset = "its key's environment variable EXAMPLE_UNSET_API_KEY is not set on the server"
        assert r.json()["upstream"] == {**up, "api_key_set": False, "problem": unset}
        # same routing data, another upstream: idempotent, the upstream unchanged, a note saying how to change it
        other = {"base_url": "http://127.0.0.1:1/v1"}
        r = client.post("/v1/llms", json={**new, "upstream": other}, headers=ADMIN_AUTH)
        assert r.status_code == 200 and r.json()["upstream"]["base_url"] == up["base_url"]
        assert "PATCH /v1/llms/llm-new" in r.json()["note"]
        for reserved in ("graphrouter", "graphrouter:balance", "x/probes"):  # the proxy's names for routing; a GET's
            r = client.post("/v1/llms", json={**new, "name": reserved}, headers=ADMIN_AUTH)
            assert r.status_code == 422 and f"'{reserved}' is reserved" in r.json()["detail"], r.text
            agent = {"name": reserved, "llm": "llm-new"}  # agents share the candidates' names
            r = client.post("/v1/agents", json=agent, headers=ADMIN_AUTH)
            assert r.status_code == 422 and f"'{reserved}' is reserved" in r.json()["detail"], r.text
        r = client.patch("/v1/llms/llm-new", json={"upstream": other}, headers=ADMIN_AUTH)
        assert r.status_code == 200
        assert r.json()["upstream"] == {
            **other,
            "model": "llm-new",
            "api_key_env": None,
            "api_key_set": None,
            "problem": None,
        }
        got = client.get("/v1/llms/llm-new", headers=ADMIN_AUTH).json()
        assert got["upstream"]["base_url"] == other["base_url"] and got["proxied"] is True
        assert got["routable"] is False  # knn_task: upstream changes nothing
        # an upstream's address and key variable are the operator's (security audit): an open read, or one with
        # another bearer (a proxy key), sees only that there is one
        for headers in ({}, PROXY_AUTH):
            for got in (
                client.get("/v1/llms/llm-new", headers=headers).json(),
                client.get("/v1/llms").json()["data"][-1],
            ):
                assert got["name"] == "llm-new" and got["proxied"] is True and got["upstream"] is None, got
        r = client.patch("/v1/llms/llm-new", json={"upstream": None}, headers=ADMIN_AUTH)
        assert r.status_code == 200 and r.json()["upstream"] is None and r.json()["proxied"] is False
        for bad, field in (
            ({"base_url": "ftp://x"}, "base_url"),
            ({"base_url": "http://x/v1", "api_key_env": "sk-live-abc"}, "api_key_env"),
            ({"base_url": "http://127.0.0.1:99999/v1"}, "base_url"),  # refused here, not a 500 at the first call
            ({"base_url": "http://127.0.0.1:0/v1"}, "base_url"),
        ):
            for r in (
                client.patch("/v1/llms/llm-new", json={"upstream": bad}, headers=ADMIN_AUTH),
                client.post("/v1/llms", json={**new, "name": "llm-bad", "upstream": bad}, headers=ADMIN_AUTH),
            ):  # a 422 naming this body's field (upstream.…), not the store's LLM.…
                assert r.status_code == 422 and f"upstream: Value error, {field}" in r.json()["detail"], r.text
                assert "LLM." not in r.json()["detail"]
        assert client.get("/v1/llms/llm-bad").status_code == 404
        assert client.patch("/v1/llms/nope", json={"upstream": None}, headers=ADMIN_AUTH).status_code == 404
        # one stored before ports were checked still reads (the store is not broken by it); the proxy skips it
        store.upsert([LLMNode("llm-old", "old", 1.0, 1.0, base_url="http://127.0.0.1:99999/v1")])
        assert client.get("/v1/llms/llm-old").status_code == 200
        r = chat(client, "llm-old")
        assert r.status_code == 400 and "its port is not valid" in r.json()["detail"], r.text


def test_an_upstream_may_name_only_the_key_variables_the_operator_allows(
    service: Service, upstream: Upstream, store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever holds the API key chose an upstream's address and the variable whose value the proxy sends it:
    NEO4J_PASSWORD or GRAPHROUTER_PROXY_KEY went to a capture server (security audit). Upstreams may name only the
    variables GRAPHROUTER_UPSTREAM_KEY_ENVS allows (default *_API_KEY), never the service's own."""
    monkeypatch.setenv("NEO4J_PASSWORD", "db-secret")
    monkeypatch.setenv("MY_TOKEN", "token-secret")
    new = {"name": "llm-new", "description": "new", "input_price": 1.0, "output_price": 2.0}
    with service() as client:
        for env, why in (
            ("NEO4J_PASSWORD", "one of the service's own settings"),
            ("GRAPHROUTER_API_KEY", "one of the service's own settings"),  # though it ends in _API_KEY
            ("MY_TOKEN", "not among the variables upstreams may use (GRAPHROUTER_UPSTREAM_KEY_ENVS='*_API_KEY')"),
        ):
            up = {"base_url": upstream.url("ok-1"), "api_key_env": env}
            for r in (
                client.patch("/v1/llms/llm-1", json={"upstream": up}, headers=ADMIN_AUTH),
                client.post("/v1/llms", json={**new, "upstream": up}, headers=ADMIN_AUTH),
            ):
                assert r.status_code == 422, r.text
                assert r.json()["detail"].startswith(f"upstream.api_key_env: {env} is") and why in r.text, r.text
        assert client.get("/v1/llms/llm-new").status_code == 404  # nothing stored
        # one stored anyway (an import, or before the rule): never called, and said why
        store.upsert(
            [
                dataclasses.replace(
                    store.get_node(LLM, "llm-1"), base_url=upstream.url("ok-1"), api_key_env="NEO4J_PASSWORD"
                )
            ]
        )
        calls = len(upstream.seen)
        r = chat(client, "llm-1")
        assert r.status_code == 503 and "may not be sent upstream" in r.json()["detail"], r.text  # the server's to fix
        assert "llm-1" not in [m["id"] for m in client.get("/v1/models", headers=PROXY_AUTH).json()["data"]]
        shown = client.get("/v1/llms/llm-1", headers=ADMIN_AUTH).json()["upstream"]  # the operator sees why
        assert shown["api_key_set"] is True and "may not be sent upstream" in shown["problem"], shown
        assert len(upstream.seen) == calls
    with service(upstream_key_envs="*_API_KEY, MY_TOKEN") as client:  # the operator allows it
        up = {"base_url": upstream.url("ok-1"), "api_key_env": "MY_TOKEN"}
        assert client.patch("/v1/llms/llm-1", json={"upstream": up}, headers=ADMIN_AUTH).status_code == 200
        assert chat(client, "llm-1").status_code == 200
        assert upstream.seen[-1][1]["authorization"] == "Bearer token-secret"
    for bad in ("lower_case", "A B", "*;rm"):
        with pytest.raises(ValueError, match="not an environment variable name or pattern"):
            Settings(upstream_key_envs=bad)
    with pytest.raises(ValueError, match="never sent upstream"):
        Settings(upstream_key_envs="*_API_KEY,GRAPHROUTER_API_KEY")


def test_an_answer_too_slow_in_whole_or_too_large_is_that_upstream_failing(
    service: Service, upstream: Upstream, store: GraphStore
) -> None:
    """An upstream sending a byte now and then held a call for ever (the timeout bounds silence only), and a 315 MB
    answer was read whole into memory (security audit): both now fail over to the next candidate."""
    with service(proxy_deadline=1.0, proxy_max_answer_bytes=10_000, proxy_max_attempts=3) as client:
        order = [c["name"] for c in ranking(client)]
        for name, mode in zip(order, ["trickle", "huge", "ok-c"], strict=False):
            set_upstream(client, name, upstream.url(mode))
        r = chat(client)
        assert r.status_code == 200 and r.headers["x-graphrouter-model"] == order[2], r.text
        failed = r.headers["x-graphrouter-failed"]
        assert f"{order[0]} (no whole answer within 1 s (GRAPHROUTER_PROXY_DEADLINE))" in failed, failed
        assert f"{order[1]} (an answer larger than 10,000 bytes" in failed, failed
        assert chat(client, order[1]).status_code == 502  # as a pass-through too
        code, body = streamed(client, order[2])
        assert code == 200 and "[DONE]" in body  # streams are not held to the deadline's rule
        code, body = streamed(client, order[1])  # an event over the limit ends the stream with an error event
        assert code == 200 and "larger than 10,000 bytes" in body and "x" * 10_000 not in body, body[:300]


def test_a_short_dummy_key_is_not_masked_out_of_the_answer(
    service: Service, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local servers take dummy keys ("1", "ollama"): masking "1" in a successful answer turned "created":1712…
    into invalid JSON and every call to that LLM into a failure (review)."""
    monkeypatch.setenv("LOCAL_API_KEY", "1")
    with service() as client:
        set_upstream(client, "llm-1", upstream.url("ok-1"), api_key_env="LOCAL_API_KEY")
        r = chat(client, "llm-1")
        assert r.status_code == 200 and isinstance(r.json()["created"], int), r.text
        assert r.json()["usage"]["prompt_tokens"] == 100  # the 1 in 100 is not masked either
        assert upstream.seen[-1][1]["authorization"] == "Bearer 1"


def test_the_start_warns_of_stored_llms_whose_key_variable_is_refused(
    service: Service, store: GraphStore, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgrade's LLMs whose key variable the rule now refuses stop getting proxied calls: said at the start."""
    old = store.get_node(LLM, "llm-2")
    store.upsert([dataclasses.replace(old, base_url="http://127.0.0.1:9/v1", api_key_env="OPENAI_KEY")])
    with caplog.at_level(logging.WARNING, logger="api.proxy"), service():
        pass
    assert "the proxy will not call 1 LLM(s)" in caplog.text, caplog.text
    assert "llm-2: OPENAI_KEY is not among the variables upstreams may use" in caplog.text, caplog.text


def test_every_upstream_connection_in_use_is_a_503_not_a_failure_of_the_upstream(
    service: Service, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 slow calls on one proxy key made another key's call to a healthy upstream fail as "timed out", counted
    against that LLM (security audit): waiting for a connection is the proxy's limit, answered 503 at once."""
    monkeypatch.setattr("api.upstream.MAX_UPSTREAM_CONNECTIONS", 1)
    monkeypatch.setattr("api.upstream.POOL_WAIT_S", 0.2)
    with service(proxy_timeout=15.0) as client:
        order = [c["name"] for c in ranking(client)]
        upstream.gate.clear()  # the fake upstream is shared: another test may have opened its gate
        set_upstream(client, order[0], upstream.url("held"))
        set_upstream(client, order[1], upstream.url("ok-b"))
        first: list[httpx.Response] = []
        holder = threading.Thread(target=lambda: first.append(chat(client, order[0])))
        holder.start()
        deadline = time.monotonic() + 10
        while "held" not in upstream.modes() and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            r = chat(client, order[1])  # the one connection is held until the gate opens
        finally:
            upstream.gate.set()
            holder.join(15)
        assert r.status_code == 503, r.text
        assert r.json()["detail"].startswith("the proxy has 1 upstream calls in flight, its limit"), r.text
        assert r.headers["retry-after"] and "ok-b" not in upstream.modes()
        assert first and first[0].status_code == 200, first
        assert chat(client, order[1]).status_code == 200  # free again
        metrics = client.get("/metrics").text
    assert f'graphrouter_proxy_calls_total{{candidate="{order[1]}",result="ok"}} 1.0' in metrics  # the name is right
    assert f'graphrouter_proxy_calls_total{{candidate="{order[1]}",result="failed"}}' not in metrics


def test_with_query_texts_off_the_query_node_holds_a_placeholder(
    service: Service, upstream: Upstream, store: GraphStore
) -> None:
    with service(store_query_texts=False) as client:
        set_upstream(client, "llm-1", upstream.url("ok-1"))
        r = chat(client, "llm-1", text="a private question about task-3")
        assert r.status_code == 200, r.text
        qid = query_id("a private question about task-3")
        assert pending(store, r.json()["id"]).query_id == qid
        node = store.get_node(QUERY, qid)
        assert node.text == f"[text not stored] {qid}" and "private" not in node.text  # type: ignore[union-attr]
        assert pending(store, r.json()["id"]).query_id == qid
