"""Batched inference: ``Scorer.top_k_many`` gives each request what ``top_k`` gives it (the same ranking; values
equal up to float32 rounding of a batched matrix product, about 1e-7), and ``/v1/route`` through
the micro-batcher (``GRAPHROUTER_BATCH_WINDOW_MS`` > 0) answers concurrent requests exactly as without it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.batching import MicroBatcher
from graphrouter.checkpoint import load_checkpoint
from graphrouter.errors import GraphRouterError
from graphrouter.route_request import RouteRequest
from graphrouter.scorer import Scorer
from graphrouter.world import World
from tests.test_api import fitted, make_app, store  # noqa: F401 - fixtures
from tests.test_scorer import HashEmbedder

REQUESTS = [
    RouteRequest("task-2 what is this", k=3),
    RouteRequest("task-1 another question", k=5, scenario="balance"),
    RouteRequest("task-0 with weights", k=2, weights=(0.3, 0.7)),
    RouteRequest("task-3 given task", task="task-3", k=1, scenario="cost_first"),
    RouteRequest("task-2 filtered", k=2, candidates=["llm-0", "llm-3", "llm-4"]),
    RouteRequest("task-1 budget", k=1, budget=1e-9),  # nothing fits: its own error
    RouteRequest("task-1 too many", k=99),  # its own error
    RouteRequest("task-0 what is this", k=3),
]


@pytest.mark.parametrize("router", ["gnn", "knn_task"])
def test_top_k_many_equals_top_k_one_by_one(fitted: tuple[World, dict[str, Path]], router: str) -> None:  # noqa: F811
    world, paths = fitted
    scorer = Scorer(load_checkpoint(paths[router], "hash-test"), HashEmbedder(world))
    many = scorer.top_k_many(REQUESTS)
    for req, got in zip(REQUESTS, many, strict=True):
        try:
            want = scorer.top_k(req.query, req.task, req.k, req.scenario, req.weights, req.budget, req.candidates)
        except GraphRouterError as exc:
            assert isinstance(got, GraphRouterError) and str(got) == str(exc)
            continue
        assert not isinstance(got, Exception), got
        assert [c.name for c in got.candidates] == [c.name for c in want.candidates]
        assert (got.task, got.task_inferred, got.weights) == (want.task, want.task_inferred, want.weights)
        for a, b in zip(got.candidates, want.candidates, strict=True):
            assert (a.effect, a.cost, a.utility) == pytest.approx((b.effect, b.cost, b.utility), rel=1e-5, abs=1e-6)


def test_route_answers_are_the_same_with_the_batcher(make_app) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    bodies = [{"query": f"task-{i % 4} question number {i}", "k": 3, "scenario": "balance"} for i in range(24)]
    bodies += [{"query": "task-1 x", "k": 99}, {"query": "task-1 x", "k": 1, "task": "no-such-task"}]

    def answers(client: TestClient) -> list[tuple[int, object]]:
        with ThreadPoolExecutor(8) as pool:
            rs = list(pool.map(lambda b: client.post("/v1/route", json=b), bodies))
        return [(r.status_code, r.json()) for r in rs]

    with TestClient(make_app("gnn")) as plain:
        want = answers(plain)
    app = make_app("gnn", batch_window_ms=2, batch_max=8)
    with TestClient(app) as batched:
        got = answers(batched)
        batcher = app.state.batcher
        assert batcher.items == len(bodies) and batcher.batches < len(bodies)
    assert [s for s, _ in got] == [s for s, _ in want]
    for (_, g), (_, w) in zip(got, want, strict=True):
        if "candidates" in w:  # type: ignore[operator]
            assert [c["name"] for c in g["candidates"]] == [c["name"] for c in w["candidates"]]  # type: ignore[index]
            assert np.allclose(
                [c["utility"] for c in g["candidates"]],  # type: ignore[index]
                [c["utility"] for c in w["candidates"]],  # type: ignore[index]
                rtol=1e-5,
                atol=1e-6,
            )
        else:
            assert g == w


def test_a_lone_request_does_not_wait_for_the_window_and_batches_form_under_load() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def work(items: list[int]) -> list[object]:
        sizes.append(len(items))
        gate.wait(5)
        return [ValueError("odd") if i % 2 else i * 10 for i in items]

    batcher = MicroBatcher(work, window_s=5.0, max_batch=4)  # a long window: waiting for it would time out below
    try:
        gate.set()
        assert batcher.submit(2).result(2.5) == 20  # dispatched at once: a wait for the window would raise here
        gate.clear()
        first = batcher.submit(0)  # runs alone and holds the dispatcher
        deadline = time.monotonic() + 5
        while len(sizes) < 2 and time.monotonic() < deadline:  # until its batch has started (not a fixed sleep)
            time.sleep(0.01)
        rest = [batcher.submit(i) for i in range(1, 7)]
        gate.set()
        assert first.result(5) == 0
        with pytest.raises(ValueError, match="odd"):
            rest[0].result(5)
        assert [f.result(10) for f in rest[1::2]] == [20, 40, 60]  # the last 2 waited the window for stragglers
        assert sizes[-3:] == [1, 4, 2]  # the 6 queued while one ran: a full batch, then the rest
    finally:
        batcher.close()
