"""Learning from live traffic (issue 13): online corrections from every outcome, bounded exploration, bandit routers.

Unit tests on the synthetic world of tests/routing_world.py, and through the API with the fixtures of
tests/test_api.py (a tiny GNN checkpoint, the deterministic HashEmbedder).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.settings import Settings
from graph_store import LLM, GraphBatch, GraphStore, LLMNode, Outcome
from graph_store.changes import now
from graphrouter.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from graphrouter.exploration import Explorer, upper_level
from graphrouter.loading import load_scorer
from graphrouter.online import OnlineLearner
from graphrouter.outcome_feed import corrected, refitted, unlearned
from graphrouter.rewards import SCENARIOS
from graphrouter.routers import ROUTERS
from graphrouter.routers.gnn import GnnRouter
from graphrouter.scorer import Scorer
from graphrouter.world import QueryFeatures, World, build_world
from tests import test_api
from tests.routing_world import make_world, split
from tests.test_api import AUTH, AppMaker
from tests.test_scorer import HashEmbedder

fitted, store, make_app = test_api.fitted, test_api.store, test_api.make_app


@pytest.fixture(scope="module")
def gnn_world() -> tuple[World, GnnRouter]:
    world = make_world(per_task=30)
    return world, GnnRouter(seeds=(0,), max_episodes=2, eval_every=1, hidden=8).fit(world, np.arange(120))


def _scorer(world: World, router: object) -> Scorer:
    import copy

    return Scorer(Checkpoint(copy.deepcopy(router), "hash-test", "", "test"), HashEmbedder(world))  # type: ignore[arg-type]


# ---- corrections ------------------------------------------------------------------------------------------------
def test_a_learner_corrects_only_the_candidate_observed_and_nothing_before_it_learns() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    q = QueryFeatures(emb[:1], np.array([0]), np.array([10.0]))
    effect = np.full((1, 3), 0.5)
    learner = OnlineLearner()
    assert learner.adjust(("a", "b", "c"), q, effect) is effect  # exactly as before: the same array
    learner.observe("b", ["x"], emb[:1], np.array([0]), np.array([1.0]), np.array([0.5]))
    out = learner.adjust(("a", "b", "c"), q, effect)
    assert out[0, 0] == out[0, 2] == 0.5 and out[0, 1] > 0.5
    assert learner.counts(("c", "b")).tolist() == [0.0, 1.0] and learner.seq == 1
    # the same query and candidate again replaces the outcome (the store updates it in place too)
    learner.observe("b", ["x"], emb[:1], np.array([0]), np.array([0.0]), np.array([0.5]))
    assert len(learner) == 1 and learner.adjust(("b",), q, effect[:, :1])[0, 0] < 0.5
    # a near neighbour moves a query more than a far one (same task, same residual)
    far = OnlineLearner()
    far.observe("b", ["y"], emb[3:4], np.array([0]), np.array([1.0]), np.array([0.5]))
    near = OnlineLearner()
    near.observe("b", ["y"], emb[:1], np.array([0]), np.array([1.0]), np.array([0.5]))
    assert near.adjust(("b",), q, effect[:, :1])[0, 0] > far.adjust(("b",), q, effect[:, :1])[0, 0]
    learner.forget("b")
    assert learner.adjust(("a", "b", "c"), q, effect) is not None and learner.counts(("b",)).tolist() == [0.0]


def test_an_outcome_on_a_new_query_moves_that_candidate_and_becomes_a_neighbour(gnn_world) -> None:  # type: ignore[no-untyped-def]
    world, router = gnn_world
    scorer = _scorer(world, router)

    def effects(text: str) -> dict[str, float]:
        result = scorer.top_k(text, k=5, scenario="performance_first")
        return {c.name: c.effect for c in result.candidates}

    before = effects("task-1 how do I sort a list")
    taken = scorer.add_outcomes("llm-2", {"new-1": 0.0}, queries={"new-1": ("task-1 how do I sort a list", "task-1")})
    assert taken == 1
    after = effects("task-1 how do I sort a list")
    assert after["llm-2"] < before["llm-2"] - 0.01
    assert all(after[c] == before[c] for c in before if c != "llm-2")
    # the same query asked again is nearer to it than another query of the task: moved more
    other = effects("task-1 something else entirely")
    assert after["llm-2"] < other["llm-2"]


# ---- exploration ------------------------------------------------------------------------------------------------
def test_exploration_is_off_by_default_and_without_it_answers_are_exactly_as_before(gnn_world) -> None:  # type: ignore[no-untyped-def]
    world, router = gnn_world
    assert Settings(store="unused").explore_default is False
    plain, exploring = _scorer(world, router), _scorer(world, router)
    exploring.explorer = Explorer(share=1.0, seed=0)
    texts = [f"task-{i % 4} question {i}" for i in range(40)]
    for text in texts:
        a = plain.top_k(text, k=3, scenario="balance")
        b = exploring.top_k(text, k=3, scenario="balance")  # explore not asked
        assert a == b and not b.explored
    assert exploring.explorer.explorations == 0 and exploring.explorer.requests == len(texts)


@pytest.mark.parametrize(("share", "usd_per_1k"), [(0.1, None), (0.3, None), (1.0, 0.05), (0.0, None)])
def test_exploration_never_exceeds_its_budget(gnn_world, share: float, usd_per_1k: float | None) -> None:  # type: ignore[no-untyped-def]
    world, router = gnn_world
    scorer = _scorer(world, router)
    scorer.register_llm(LLMNode("llm-new", "an unknown model", 1.0, 1.0))  # mid-priced and uncertain: worth a try
    scorer.explorer = Explorer(share=share, usd_per_1k=usd_per_1k, seed=1)
    explored = 0
    for i in range(300):
        result = scorer.top_k(f"task-{i % 4} q{i}", k=2, scenario="balance", explore=True, candidates=None)
        explored += result.explored
        # only the candidate without outcomes is explored: the trained ones are known (never swapped for near-ties)
        assert not result.explored or result.candidates[0].name == "llm-new"
        ex = scorer.explorer
        assert ex.explorations == explored <= share * ex.requests
        if usd_per_1k is not None:
            assert ex.extra_usd <= usd_per_1k * ex.requests / 1000 + 1e-12
    if share >= 0.1:
        assert explored > 0  # it does explore when allowed
    # only among the candidates the request allows, and within its budget
    scorer.explorer = Explorer(share=1.0, seed=2)
    for i in range(50):
        result = scorer.top_k(f"task-2 r{i}", k=1, explore=True, candidates=["llm-0", "llm-1"])
        assert result.candidates[0].name in ("llm-0", "llm-1")
        result = scorer.top_k(f"task-2 r{i}", k=1, explore=True, budget=0.0005)
        assert result.candidates[0].cost <= 0.0005


def test_unused_exploration_allowance_is_saved_up_to_the_burst_only() -> None:
    explorer = Explorer(share=0.1, usd_per_1k=1.0, burst=100)
    for _ in range(10_000):  # a long run of plain routes
        explorer.count_request()
    in_a_row = 0
    while True:  # then every request explores
        explorer.count_request()
        if not explorer.try_spend(0.0001):
            break
        in_a_row += 1
    assert in_a_row == 11  # 100 requests' worth of a 0.1 share, and the 11 requests' own (1,111 without the cap)
    spent = sum(explorer.count_request() or explorer.try_spend(0.0001) for _ in range(1000))
    assert spent == 100  # then a tenth of the requests again
    assert not Explorer(share=1.0, usd_per_1k=1.0, burst=100).try_spend(0.0)  # nothing before a request
    dear = Explorer(share=1.0, usd_per_1k=1.0, burst=100)
    for _ in range(10_000):
        dear.count_request()
    assert not dear.try_spend(0.11) and dear.try_spend(0.1)  # at most 100 requests' worth of 1 USD per 1,000
    with pytest.raises(ValueError, match="burst"):
        Explorer(burst=0)
    with pytest.raises(ValidationError, match="explore_burst"):
        Settings(store="unused", explore_burst=0)
    legacy = Explorer(share=0.1)
    state = legacy.__getstate__()
    for key in ("burst", "_saved", "_saved_usd"):
        del state[key]
    state.update(requests=50_000, explorations=10)
    legacy.__setstate__(state)  # pickled before the burst bound
    assert legacy.burst == 1000 and legacy._saved == pytest.approx(100.0)


def test_the_api_explores_on_request_reports_it_and_counts_it(make_app: AppMaker) -> None:
    with TestClient(make_app("gnn", explore_share=1.0)) as client:
        r = client.post("/v1/llms", json={**test_api.NEW_LLM, "name": "llm-x"}, headers=AUTH)
        assert r.status_code == 201, r.text
        body = {"query": "task-0 hi", "k": 2, "scenario": "balance"}
        plain = client.post("/v1/route", json=body).json()
        assert not plain["explored"] and plain["explored_instead_of"] is None and plain["exploration_extra_cost"] == 0
        assert all(not client.post("/v1/route", json=body).json()["explored"] for _ in range(5))
        answers = [client.post("/v1/route", json={**body, "explore": True}).json() for _ in range(30)]
        explored = [a["explored"] for a in answers]
        assert any(explored)
        for a in answers:  # an explored answer names the argmax it replaced, which follows it, and the extra cost
            first, second = a["candidates"]
            if a["explored"]:
                assert (
                    first["name"] == "llm-x"
                    and a["explored_instead_of"] == second["name"] == plain["candidates"][0]["name"]
                )
                assert a["exploration_extra_cost"] == pytest.approx(first["cost"] - second["cost"])
            else:
                assert a["explored_instead_of"] is None and a["exploration_extra_cost"] == 0
        metrics = client.get("/metrics").text
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("graphrouter_explorations_total{")
        )
        assert counted == sum(explored) and "graphrouter_exploration_extra_cost_usd_total" in metrics
    with TestClient(make_app("gnn", explore_share=1.0, explore_default=True)) as client:
        assert client.post("/v1/route", json={"query": "task-0 hi", "k": 2}).status_code == 200
        r = client.post("/v1/route", json={"query": "task-0 hi", "k": 2, "explore": "maybe"})
        assert r.status_code == 422, r.text


# ---- through the API --------------------------------------------------------------------------------------------
def test_posting_one_outcome_changes_the_next_answer_for_that_candidate(make_app: AppMaker, store: GraphStore) -> None:
    with TestClient(make_app("gnn")) as client:
        query = {"query": "task-3 what is the capital of France", "k": 5, "scenario": "performance_first"}

        def effect_of(name: str) -> float:
            r = client.post("/v1/route", json=query)
            assert r.status_code == 200, r.text
            return {c["name"]: c["effect"] for c in r.json()["candidates"]}[name]

        for candidate, observed in (("llm-1", 0.0), ("llm-4", 1.0)):  # a new query, then the same one again
            was = effect_of(candidate)
            row = {"query": query["query"], "task": "task-3", "candidate": candidate, "effect": observed, "cost": 0.001}
            r = client.post("/v1/outcomes", json={"outcomes": [row]}, headers=AUTH)
            assert r.status_code == 200 and r.json()["applied_to_scorer"] == 1, r.text
            now = effect_of(candidate)
            assert (now < was - 0.01) if observed == 0.0 else (now > was + 0.01), (candidate, was, now)
        # an outcome on a stored query moves it too
        was = effect_of("llm-0")
        rows = [{"query_id": f"q{i}", "candidate": "llm-0", "effect": 0.0, "cost": 0.001} for i in range(90, 120, 3)]
        r = client.post("/v1/outcomes", json={"outcomes": rows}, headers=AUTH)
        assert r.status_code == 200 and r.json()["applied_to_scorer"] == 10, r.text
        assert effect_of("llm-0") < was


def test_an_outcome_on_a_stored_query_remeasures_corrections_while_routes_go_on(make_app: AppMaker) -> None:
    """An outcome on a stored training query refits its candidate; its online corrections are measured again, a pass
    over every one of them (17 s at 100,000), which held the routing lock's exclusive side: every route waited
    (scalability audit). Now it runs on the shared side, done before the POST answers."""
    with TestClient(make_app("gnn")) as client:
        state, scorer = client.app.state.service, client.app.state.service.scorer  # type: ignore[attr-defined]
        row = {"query": "task-1 a new question", "task": "task-1", "candidate": "llm-0", "effect": 1.0, "cost": 0.001}
        assert client.post("/v1/outcomes", json={"outcomes": [row]}, headers=AUTH).json()["applied_to_scorer"] == 1
        real, seen = scorer.online.repredict, []

        def repredict(name: str, router: object) -> int:  # can a route get in meanwhile?
            got_in = threading.Event()

            def route() -> None:
                with state.lock.read():
                    got_in.set()

            threading.Thread(target=route, daemon=True).start()
            seen.append((name, got_in.wait(10)))
            return real(name, router)  # type: ignore[arg-type]

        scorer.online.repredict = repredict
        rows = [{"query_id": "q90", "candidate": "llm-0", "effect": 0.0, "cost": 0.001}]
        r = client.post("/v1/outcomes", json={"outcomes": rows}, headers=AUTH)
        assert r.status_code == 200 and r.json()["applied_to_scorer"] == 1, r.text
        assert seen == [("llm-0", True)], seen  # measured again before the answer, with routes let in


def test_a_restarted_service_keeps_what_a_new_llm_learned_online(make_app: AppMaker, store: GraphStore) -> None:
    query = {"query": "task-3 which river flows through Paris", "k": 6, "scenario": "performance_first"}

    def effects(client: TestClient) -> dict[str, float]:
        r = client.post("/v1/route", json=query)
        assert r.status_code == 200, r.text
        return {c["name"]: c["effect"] for c in r.json()["candidates"]}

    new = {"name": "llm-new", "description": "a small model", "input_price": 0.1, "output_price": 0.1}
    with TestClient(make_app("gnn")) as client:
        assert client.post("/v1/llms", json=new, headers=AUTH).status_code == 201
        before = effects(client)
        rows = [{"query": f"task-3 question {i}", "task": "task-3", "candidate": "llm-new", "effect": 1.0,
                 "cost": 0.001} for i in range(6)]  # fmt: skip
        r = client.post("/v1/outcomes", json={"outcomes": rows}, headers=AUTH)
        assert r.status_code == 200 and r.json()["applied_to_scorer"] == 6, r.text
        learned = effects(client)
        assert learned["llm-new"] > before["llm-new"] + 0.01  # refitted on its outcomes
        factors = client.get("/v1/llms/llm-new").json()["learning"]
        assert factors["cost_input_factor"] == factors["cost_output_factor"] > 1.0  # its costs on new queries too
    for _ in range(2):  # restarted on the same store and checkpoint, twice
        with TestClient(make_app("gnn")) as client:
            again = effects(client)
            assert again == pytest.approx(learned, abs=1e-4), (again, learned)  # (float32 batches differ)
            # a start learns its costs on queries outside the checkpoint's world again, those billed at its prices
            assert client.get("/v1/llms/llm-new").json()["learning"] == pytest.approx(factors)
    node = store.get_node(LLM, "llm-new")
    assert isinstance(node, LLMNode)
    # repriced after those costs (dated ahead: a repricing within their second would count them as billed since)
    store.upsert([dataclasses.replace(node, input_price=0.2, priced_at=now(time.time() + 5))])
    with TestClient(make_app("gnn")) as client:
        learning = client.get("/v1/llms/llm-new").json()["learning"]
        assert learning["cost_input_factor"] == learning["cost_output_factor"] == 1.0


def test_a_restarted_service_keeps_a_trained_llms_corrections_from_outcomes_since_its_snapshot(
    make_app: AppMaker,
    store: GraphStore,
    fitted: tuple[World, dict[str, Path]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="graphrouter.outcome_feed")

    def read_whole() -> list[str]:  # the candidates a start (or swap) read whole, since the last call
        out = [str(r.args) for r in caplog.records if "read whole" in r.getMessage()]
        caplog.clear()
        return out

    ckpt = load_checkpoint(fitted[1]["gnn"], "hash-test")
    ckpt.router.world.data.snapshot_at = "2026-01-01T00:00:00Z"  # trained on a store snapshot taken then
    path = tmp_path / "snapshot.pt"
    save_checkpoint(ckpt.router, "hash-test", path)
    query = {"query": "task-1 how far is the moon", "k": 6, "scenario": "performance_first"}

    def effects(client: TestClient) -> dict[str, float]:
        r = client.post("/v1/route", json=query)
        assert r.status_code == 200, r.text
        return {c["name"]: c["effect"] for c in r.json()["candidates"]}

    with TestClient(make_app("gnn", checkpoint=path)) as client:
        before = effects(client)
        assert read_whole() == []  # a start with nothing new since the snapshot reads nothing whole
        rows = [{"query": f"task-1 live question {i}", "task": "task-1", "candidate": "llm-1", "effect": 0.0,
                 "cost": 0.001} for i in range(20)]  # fmt: skip
        old = [{**row, "candidate": "llm-2", "observed_at": "2025-12-31T23:00:00Z"} for row in rows]
        r = client.post("/v1/outcomes", json={"outcomes": rows + old}, headers=AUTH)
        assert r.status_code == 200 and r.json()["applied_to_scorer"] == 40, r.text
        learned = effects(client)
        assert learned["llm-1"] < before["llm-1"] - 0.01 and learned["llm-2"] < before["llm-2"] - 0.01
        # a checkpoint swapped in (as after a retrain whose snapshot took none of them: nothing carried over) learns
        # them again from the store too, as a start does
        app = client.app
        swapped = load_scorer(path, embedder=HashEmbedder(fitted[0]))
        app.state.registry.install(swapped, "a swapped checkpoint", outcomes_since=app.state.registry.outcome_mark())
        # llm-2's, posted late but observed (as its client says) an hour before the snapshot, too: the store holds
        # more of its outcomes than the snapshot did, so they are read whole
        assert effects(client) == pytest.approx(learned, abs=1e-4)
        assert read_whole() == ["(['llm-2'],)"]  # llm-1's were found by their time
    with TestClient(make_app("gnn", checkpoint=path)) as client:
        assert effects(client) == pytest.approx(learned, abs=1e-4)  # learned again from the store
    # imported while the service was down, without an observed_at (as `graphrouter import outcomes` stores rows
    # without one): a start cannot date them, but the store holds more of llm-3's outcomes than the snapshot did
    live = {o.query_id for o in store.outcomes("LLM", target="llm-1")} - set(fitted[0].data.query_keys)
    assert len(live) == 20
    store.write(GraphBatch(outcomes=[Outcome(q, "llm-3", 0.0, 0.001) for q in sorted(live)]))
    with TestClient(make_app("gnn", checkpoint=path)) as client:
        again = effects(client)
        assert again["llm-3"] < learned["llm-3"] - 0.01, (again, learned)
        assert read_whole()[-1] == "(['llm-2', 'llm-3'],)"
        assert {n: again[n] for n in again if n != "llm-3"} == pytest.approx(
            {n: learned[n] for n in learned if n != "llm-3"}, abs=1e-4
        )


def test_the_learner_drops_outcomes_its_router_took_and_keeps_the_others_addressable() -> None:
    learner = OnlineLearner()
    emb = np.eye(8, dtype=np.float32)[:4]
    ids = ["q0", "q1", "q2", "q3"]
    learner.observe("a", ids, emb, np.zeros(4, np.int64), np.array([1.0, 0.0, 1.0, 0.0]), np.full(4, 0.5))
    learner.observe("b", ids[:2], emb[:2], np.zeros(2, np.int64), np.array([1.0, 1.0]), np.full(2, 0.5))
    assert learner.drop("a", ["q0", "q2", "q9"]) == 2 and learner.drop("a", ["q0"]) == 0
    assert len(learner) == 4 and learner.tally(["a", "b"])[0].tolist() == [2.0, 2.0]
    assert learner.tally(["a", "b"])[1].tolist() == [0.0, 2.0]  # a's two failures are what is left of it
    learner.observe("b", ["q1"], emb[1:2], np.zeros(1, np.int64), np.array([0.0]), np.full(1, 0.5))  # replaced
    assert len(learner) == 4 and learner.tally(["a", "b"])[1].tolist() == [0.0, 1.0]
    # the same outcome again (a relearning, a replayed change) is no newer than a training mark taken after it
    mark = learner.seq
    learner.observe("b", ["q0"], emb[:1], np.zeros(1, np.int64), np.array([1.0]), np.full(1, 0.5))
    predictor = SimpleNamespace(
        candidates=("a", "b"), world=SimpleNamespace(data=SimpleNamespace(task_names=["t"])),
        task_inferer=SimpleNamespace(fill=lambda q: q), predict_effect=lambda q: np.full((len(q.embedding), 2), 0.5),
    )  # fmt: skip
    assert len(learner.rebased(predictor, mark, ["t"])) == 0  # nothing newer than the mark to carry over
    learner.observe("b", ["q0"], emb[:1], np.zeros(1, np.int64), np.array([0.0]), np.full(1, 0.5))  # a new value
    assert len(learner.rebased(predictor, mark, ["t"])) == 1


def test_the_learner_keeps_each_candidates_most_recent_outcomes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unbounded, every remembered outcome slowed every route (30 ms at 100,000, 229 ms and 2.6 GB at 1M) until a
    retrain (scalability audit): a candidate keeps its most recent MAX_ROWS_PER_CANDIDATE (a tenth more at most)."""
    from graphrouter import online_rows

    monkeypatch.setattr(online_rows, "MAX_ROWS_PER_CANDIDATE", 10)
    learner = OnlineLearner()
    emb = np.eye(32, dtype=np.float32)
    for start in range(0, 30, 5):  # a's outcomes 0..29, five at a time: 1.0 on the first 15, 0.0 after
        ids = [f"q{i}" for i in range(start, start + 5)]
        effect = np.array([1.0 if i < 15 else 0.0 for i in range(start, start + 5)])
        learner.observe("a", ids, emb[start : start + 5], np.zeros(5, np.int64), effect, np.full(5, 0.5))
    learner.observe("b", ["q0", "q1"], emb[:2], np.zeros(2, np.int64), np.array([1.0, 1.0]), np.full(2, 0.5))
    assert 12 <= len(learner) <= 13  # a's 10 or 11 most recent rows, b's 2
    # what it forgot is still counted (the quiz, the penalty and learned_online read the counts), per task too
    assert learner.tally(["a", "b"])[0].tolist() == [30.0, 2.0] and learner.tally(["a", "b"])[1].tolist() == [15.0, 2.0]
    assert learner.task_counts(["a", "b"], 1).tolist() == [[30.0, 2.0]] and learner.counts(["a"], task=0)[0] == 30
    assert learner.drop("a", ["q0", "q29"]) == 1  # q0 was forgotten as a row; q29 is still there, by its key
    learner.observe("a", ["q0"], emb[:1], np.zeros(1, np.int64), np.array([1.0]), np.full(1, 0.5))  # a row again
    assert learner.tally(["a", "b"])[0].tolist() == [30.0, 2.0]
    learner.forget("b")  # a candidate removed: its rows leave (every request compared its query with them)
    assert 10 <= len(learner) <= 12 and learner.tally(["a", "b"])[0].tolist() == [30.0, 0.0]
    q = QueryFeatures(emb[29:30], np.zeros(1, np.int64), np.zeros(1))
    assert learner.correction(["a", "b"], q)[0, 0] < 0  # its neighbour q28 (kept, 0.0) pulls it down
    learner.forget("a")  # every row gone: it learns again from empty arrays that kept their size
    learner.observe("c", ["q5"], emb[5:6], np.zeros(1, np.int64), np.array([1.0]), np.full(1, 0.5))
    assert len(learner) == 1 and learner.tally(["a", "c"])[0].tolist() == [0.0, 1.0]


def test_a_retrained_checkpoint_swapped_in_counts_an_outcome_posted_during_training_once(
    make_app: AppMaker, store: GraphStore, fitted: tuple[World, dict[str, Path]], tmp_path: Path
) -> None:
    """An outcome posted while a training runs, on a query the training's snapshot holds (another candidate's
    outcome put it there), was learned online by the serving scorer and carried over; the retrained GNN takes it into
    its graph when it is learned again from the store, and then does not also correct for it online."""
    world = fitted[0]
    data = world.data
    store.write(GraphBatch(outcomes=[
        Outcome(data.query_keys[i], c, float(data.effect[i, j]), 0.001)
        for i in range(data.n_queries) for j, c in enumerate(data.candidates) if np.isfinite(data.effect[i, j])
    ]))  # fmt: skip
    live = {"query": "task-1 a brand new live question", "task": "task-1", "cost": 0.001}
    routed = {"query": live["query"], "task": "task-1", "k": 5, "scenario": "performance_first"}
    retrained = tmp_path / "retrained.pt"
    app = make_app("gnn")
    with TestClient(app) as client:
        registry = app.state.registry
        r = client.post(
            "/v1/outcomes", json={"outcomes": [{**live, "candidate": "llm-2", "effect": 1.0}]}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        mark, snap = registry.outcome_mark(), store.snapshot()  # a training's snapshot holds the live query now
        new_world = build_world(snap, HashEmbedder(world))
        router = GnnRouter(seeds=(0,), max_episodes=2, eval_every=1, hidden=8)
        save_checkpoint(router.fit(new_world, np.arange(new_world.data.n_queries)), "hash-test", retrained)
        r = client.post(
            "/v1/outcomes", json={"outcomes": [{**live, "candidate": "llm-1", "effect": 0.0}]}, headers=AUTH
        )
        assert r.status_code == 200, r.text  # during the training: learned online (not in the serving world)
        registry.install(load_scorer(retrained, embedder=HashEmbedder(world)), "retrained", outcomes_since=mark)
        scorer = registry.state.scorer
        assert scorer.online.counts(["llm-1", "llm-2"]).tolist() == [0.0, 0.0]  # in its graph, not corrected again
        swapped = {c["name"]: c["effect"] for c in client.post("/v1/route", json=routed).json()["candidates"]}
    with TestClient(make_app("gnn", checkpoint=retrained)) as client:  # what a restart on it answers
        restarted = {c["name"]: c["effect"] for c in client.post("/v1/route", json=routed).json()["candidates"]}
        assert restarted == pytest.approx(swapped, abs=1e-4)


def test_graphrouter_route_answers_as_a_service_started_now(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The CLI relearns a new LLM's stored outcomes as a starting service does, so both give the same answer (it
    routed the new LLM from its description alone)."""
    import json

    from graph_store.backends.embedded import EmbeddedStore
    from graphrouter import cli, loading
    from tests.routing_world import fit_api_checkpoints, make_api_app, populate

    world = make_world(per_task=30)
    ckpt = fit_api_checkpoints(world, tmp_path)["gnn"]
    path, text = tmp_path / "graph.db", "task-3 which river flows through Paris"
    new = {"name": "llm-new", "description": "a small model", "input_price": 0.1, "output_price": 0.1}
    rows = [{"query": f"task-3 question {i}", "task": "task-3", "candidate": "llm-new", "effect": 1.0, "cost": 0.001}
            for i in range(6)]  # fmt: skip
    with EmbeddedStore(path) as store:
        populate(store, world)
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=ckpt)) as client:
            assert client.post("/v1/llms", json=new, headers=AUTH).status_code == 201
            assert client.post("/v1/outcomes", json={"outcomes": rows}, headers=AUTH).status_code == 200
        with TestClient(make_api_app(store, world, tmp_path, checkpoint=ckpt)) as client:  # a service started now
            r = client.post("/v1/route", json={"query": text, "k": 6, "scenario": "performance_first"})
            served = {c["name"]: c["effect"] for c in r.json()["candidates"]}
    embedder = HashEmbedder(world)
    embedder.dim = 0  # type: ignore[attr-defined] # what load_scorer touches to load a real model at once
    monkeypatch.setattr(loading, "make_embedder", lambda *args, **kw: embedder)
    args = ["--store", str(path), "route", text, "--k", "6", "--scenario", "performance_first", "--checkpoint"]
    assert cli.main([*args, str(ckpt), "--json"]) == 0
    routed = {c["name"]: c["effect"] for c in json.loads(capsys.readouterr().out)["candidates"]}
    assert routed == pytest.approx(served, abs=1e-4)


def test_a_scorer_knows_what_a_running_service_had_learned_online(gnn_world) -> None:  # type: ignore[no-untyped-def]
    world, router = gnn_world
    scorer = _scorer(world, router)
    scorer.register_llm(LLMNode("llm-new", "an unknown model", 0.0, 0.0))
    data = router.world.data
    trained_q = data.query_keys[int(router.train_idx[0])]
    outcomes = [
        Outcome("brand-new", "llm-new", 1.0, 0.001),  # learned online by a running service: kept
        Outcome(trained_q, "llm-new", 1.0, 0.001),  # given to its registration with its training-query outcomes
        Outcome("brand-new", data.candidates[0], 1.0, 0.001),  # a trained one's: its world has no snapshot time
        Outcome("brand-new", "not-a-candidate", 1.0, 0.001),
    ]
    assert refitted(scorer) == {"llm-new": "LLM"}  # the one the online learner refits (no outcome behind it)
    import copy

    replaced = copy.deepcopy(scorer)  # a trained LLM registered again (repriced): new, so its outcomes are relearned
    llm0 = LLMNode(data.candidates[0], "repriced", 5.0, 5.0)
    replaced.remove_candidate(llm0.name)
    replaced.register_llm(llm0, {trained_q: 1.0})  # with outcomes behind it, as a replacement has
    assert refitted(replaced) == {"llm-new": "LLM", llm0.name: "LLM"}
    assert [(o.query_id, o.target) for o in unlearned(scorer, outcomes)] == [("brand-new", "llm-new")]
    snapped = copy.deepcopy(scorer)  # trained on a snapshot whose time it knows: its trained candidates' are relearned
    snapped.router.world.data.snapshot_at = "2026-01-01T00:00:00Z"
    assert corrected(snapped) == ({c: "LLM" for c in data.candidates}, "2026-01-01T00:00:00Z")
    was = float(data.effect[int(router.train_idx[0]), 0])
    in_it = Outcome(trained_q, data.candidates[0], was, 0.001)  # a cell its world observed: in the snapshot
    changed = Outcome(trained_q, data.candidates[0], 1.0 - was, 0.001)  # posted again with another value: not
    got = unlearned(snapped, [*outcomes, in_it])
    assert [(o.query_id, o.target) for o in got] == [("brand-new", "llm-new"), ("brand-new", data.candidates[0])]
    got = unlearned(snapped, [*outcomes, changed])
    assert [(o.query_id, o.target) for o in got][-1] == (trained_q, data.candidates[0])
    bandit = _scorer(world, ROUTERS["linucb"]().fit(world, np.arange(world.data.n_queries)))
    bandit.register_llm(LLMNode("llm-new", "an unknown model", 0.0, 0.0))
    assert refitted(bandit) == {} and unlearned(bandit, outcomes) == []  # a bandit learns online itself


def test_a_new_llms_prediction_does_not_depend_on_the_order_its_outcomes_came_in(gnn_world) -> None:  # type: ignore[no-untyped-def]
    """Outcomes on new queries (online corrections) and on stored training queries (the GNN refits the candidate
    from them): the corrections were measured against the prediction before the refit and kept, so the first order
    gave another answer than the second, which is also what a restart replays (audit: 0.737 against 0.663)."""
    world, router = gnn_world
    data = router.world.data
    trained = {data.query_keys[int(i)]: 1.0 for i in router.train_idx[:8]}
    new = {f"fresh-{i}": 1.0 for i in range(8)}
    texts = {q: (f"task-{i % 4} a fresh question {i}", f"task-{i % 4}") for i, q in enumerate(new)}
    answers = []
    for order in ((new, trained), (trained, new)):
        scorer = _scorer(world, router)
        scorer.register_llm(LLMNode("llm-new", "an unknown model", 0.1, 0.1))
        for outcomes in order:
            scorer.add_outcomes("llm-new", outcomes, queries=texts)
        top = scorer.top_k("task-1 how is this routed", k=6, scenario="performance_first")
        answers.append({c.name: c.effect for c in top.candidates}["llm-new"])
    assert answers[0] == pytest.approx(answers[1], abs=1e-4), answers  # 1.0 against 0.927 before


def test_corrections_of_outcomes_in_the_training_snapshot_are_dropped_on_install(gnn_world) -> None:  # type: ignore[no-untyped-def]
    world, router = gnn_world
    serving = _scorer(world, router)
    serving.add_outcomes("llm-1", {"a": 1.0}, queries={"a": ("task-0 old", "task-0")})
    mark = serving.online.seq  # the retraining's snapshot holds the outcome above
    serving.add_outcomes("llm-2", {"b": 0.0}, queries={"b": ("task-0 new", "task-0")})
    retrained = _scorer(world, router)
    retrained.carry_over(serving, mark)
    assert len(retrained.online) == 1 and retrained.online.counts(("llm-1", "llm-2")).tolist() == [0.0, 1.0]
    assert retrained.router.online is retrained.online
    assert retrained.online.seq == serving.online.seq  # later marks keep counting from there


def test_rebasing_maps_remembered_tasks_by_name_onto_the_retrained_router() -> None:
    from types import SimpleNamespace

    class Retrained:  # what rebasing reads of a router: its candidates, tasks, task inference and predictions
        def __init__(self, tasks: list[str]) -> None:
            self.candidates = ("llm-a",)
            self.world = SimpleNamespace(
                data=SimpleNamespace(task_names=tasks, query_keys=["q1", "q9"], candidates=["llm-a"],
                                     effect=np.array([[np.nan], [1.0]]))  # q9 observed for llm-a at its snapshot
            )  # fmt: skip
            self.task_inferer = SimpleNamespace(
                fill=lambda q: QueryFeatures(q.embedding, np.where(q.task >= 0, q.task, 0), q.tokens)
            )

        def predict_effect(self, q: QueryFeatures) -> np.ndarray:
            return np.full((len(q.embedding), 1), 0.5)

    emb = np.eye(8, dtype=np.float32)[:2]
    learner = OnlineLearner()
    learner.observe("llm-a", ["q0", "q1"], emb, np.array([0, 1]), np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    # learned under tasks ["b", "c"]; the retrained router has a task "a" that sorts before them
    moved = learner.rebased(Retrained(["a", "b", "c"]), -1, ["b", "c"])
    assert [moved.counts(["llm-a"], t)[0] for t in range(3)] == [0.0, 1.0, 1.0]
    # a task the retrained router lacks is inferred again (here: into its first task)
    fewer = learner.rebased(Retrained(["c"]), -1, ["b", "c"])
    assert fewer.counts(["llm-a"], 0)[0] == 2.0
    # an outcome the retrained router's snapshot observed is dropped even without a mark (another replica trained it)
    learner.observe("llm-a", ["q9"], np.eye(8, dtype=np.float32)[2:3], np.array([0]), np.array([1.0]), np.array([0.5]))
    assert len(learner.rebased(Retrained(["b", "c"]), -1, ["b", "c"])) == 2


# ---- bandits ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["linucb", "epsilon_greedy"])
def test_bandit_routers_learn_from_partial_feedback_and_take_a_new_arm_mid_stream(name: str) -> None:
    world = make_world(per_task=200, n_llms=4, seed=3)
    train, stream = split(world, test_frac=0.9, seed=0)
    data, w = world.data, SCENARIOS["performance_first"]
    router = ROUTERS[name](warm_start=False, seed=0).fit(world.select_candidates(np.arange(3)), train)
    rng = np.random.default_rng(0)
    order = rng.permutation(stream)
    rewards, new_picks = [], []
    for t, i in enumerate(order):
        if t == 200:  # the 4th LLM arrives mid-stream, from nothing
            router.register_candidate("llm-3", world.candidate_emb[3], *data.candidate_prices[3])
        q = router.task_inferer.fill(world.features(np.array([i])))
        col = int(router.choose(q, w)[0])
        effect = data.effect[i, col]
        router.update(q, col, np.array([effect]), np.array([data.cost[i, col]]))
        rewards.append(effect)
        new_picks.append(col == 3)
    best_per_task = np.array([data.effect[data.query_task == t].mean(0).max() for t in range(4)])
    late = order[-300:]
    assert np.mean(rewards[-300:]) > np.mean(data.effect[late]) + 0.05  # far better than a random pick
    assert np.mean(rewards[-300:]) > 0.8 * best_per_task[data.query_task[late]].mean()
    assert any(new_picks[200:]) and router.candidates[-1] == "llm-3"


def test_exploration_never_picks_a_candidate_that_even_a_perfect_answer_could_not_pay_for() -> None:
    # candidate 0 well known (effect 0.8, free, 5,000 outcomes, sampled all the same: trained=None); candidate 1 new
    # (no outcomes) but so expensive that at effect 1 its Balance utility 0.5 · 1 − 0.5 · 0.9 = 0.05 is below 0.4: a
    # sample above 1 (σ = 0.5) would still pick it
    explorer = Explorer(share=1.0, seed=0)
    effect, cost_norm = np.array([0.8, 0.5]), np.array([0.0, 0.9])
    picks = [
        explorer.sample(effect, cost_norm, SCENARIOS["balance"], np.array([5000.0, 0.0]), np.array([0, 1]), None)
        for _ in range(3000)
    ]
    assert picks.count(1) == 0
    # a new candidate that could pay for itself is still explored
    cheap = np.array([0.0, 0.0])
    picks = [
        explorer.sample(effect, cheap, SCENARIOS["balance"], np.array([5000.0, 0.0]), np.array([0, 1]), None)
        for _ in range(300)
    ]
    assert picks.count(1) > 0


def test_a_candidate_registered_since_training_is_refitted_on_the_trained_candidates_it_answers_like() -> None:
    # trained "a" is right on easy queries (0.9) and wrong on hard ones (0.1); "b" the other way round; new "n" is
    # predicted 0.3 everywhere (its description says little) but answers like "a". Its outcomes come from hard
    # queries and easy ones alike: refitted, it follows a's shape; the residual levels would move it by one amount
    rng = np.random.default_rng(0)
    n_rows = 60
    easy = np.arange(n_rows) % 2 == 0
    emb = rng.normal(size=(n_rows + 2, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pa, pb = np.where(easy, 0.9, 0.1), np.where(easy, 0.1, 0.9)
    y = (rng.random(n_rows) < pa).astype(float)
    task = np.zeros(n_rows, np.int64)
    learner = OnlineLearner()
    ids = [f"q{i}" for i in range(n_rows)]
    learner.observe("n", ids, emb[:n_rows], task, y, np.full(n_rows, 0.3), {"a": pa, "b": pb})
    q = QueryFeatures(emb[n_rows:], np.array([0, 0]), np.array([10.0, 10.0]))
    effect = np.array([[0.9, 0.1, 0.3], [0.1, 0.9, 0.3]])  # an easy query, a hard one
    trained = np.array([5000.0, 5000.0, 0.0])
    out = learner.adjust(("a", "b", "n"), q, effect, trained)
    assert out[0, 2] > 0.75 and out[1, 2] < 0.25
    assert np.allclose(out[:, :2], effect[:, :2])  # the trained ones: uncorrected (they were not observed)
    residual = learner.adjust(("a", "b", "n"), q, effect)  # without the trained counts: residual levels only
    assert abs(residual[0, 2] - residual[1, 2]) < 0.1  # about one level for both
    # a new outcome refits it (the fit is kept only while its rows are unchanged)
    learner.observe("n", ["extra"], emb[n_rows : n_rows + 1], np.array([0]), np.array([0.0]), np.array([0.3]),
                    {"a": np.array([0.9]), "b": np.array([0.1])})  # fmt: skip
    again = learner.adjust(("a", "b", "n"), q, effect, trained)
    assert again[0, 2] != out[0, 2]


def test_exploration_quizzes_a_new_candidate_on_random_queries_until_it_has_enough_outcomes() -> None:
    explorer = Explorer(share=1.0, seed=0, quiz=50)
    effect, cost_norm, pool = np.array([0.9, 0.2]), np.array([0.0, 0.0]), np.array([0, 1])
    trained = np.array([5000.0, 0.0])  # candidate 1 is new and predicted far below: a sample rarely picks it
    args = (effect, cost_norm, SCENARIOS["performance_first"], trained, pool, trained)
    assert all(explorer.sample(*args, np.array([5000.0, 10.0])) == 1 for _ in range(50))  # quizzed
    after = [explorer.sample(*args, np.array([5000.0, 50.0])) for _ in range(500)]  # quiz over: the sample decides
    assert after.count(1) < 100
    # never where even a perfect answer could not pay for its cost (Balance: 0.5 · 1 − 0.5 · 0.9 < 0.45)
    dear = (effect, np.array([0.0, 0.9]), SCENARIOS["balance"], trained, pool, trained)
    assert all(explorer.sample(*dear, np.array([5000.0, 0.0])) in (None, 0) for _ in range(200))
    # a known candidate is never quizzed; quiz=0 turns quizzes off
    assert explorer.sample(effect, cost_norm, SCENARIOS["performance_first"], trained, pool,
                           np.array([5000.0, 5000.0]), np.array([5000.0, 0.0])) is None  # fmt: skip
    off = Explorer(share=1.0, seed=0, quiz=0)
    assert [off.sample(*args, np.array([5000.0, 0.0])) for _ in range(500)].count(1) < 100
    with pytest.raises(ValueError, match="quiz"):
        Explorer(quiz=-1)


def test_exploration_quizzes_a_new_candidate_on_a_task_where_it_has_few_outcomes() -> None:
    explorer = Explorer(share=1.0, seed=0, quiz=50, task_quiz=7)
    effect, cost_norm, pool = np.array([0.9, 0.2]), np.array([0.0, 0.0]), np.array([0, 1])
    trained = np.array([5000.0, 0.0])  # candidate 1 is new and predicted far below: a sample rarely picks it
    args = (effect, cost_norm, SCENARIOS["performance_first"], trained, pool, trained, np.array([5000.0, 60.0]))
    # 60 outcomes in all, 2 of them on this query's task: quizzed here
    assert all(explorer.sample(*args, np.array([0.0, 2.0])) == 1 for _ in range(50))
    # 7 on this task: the sample decides
    assert [explorer.sample(*args, np.array([0.0, 7.0])) for _ in range(500)].count(1) < 100
    # only one with no outcome behind its prediction (the online learner refits it): not one registered with 20
    registered = (effect, cost_norm, SCENARIOS["performance_first"], trained, pool, np.array([5000.0, 20.0]))
    assert [explorer.sample(*registered, np.array([5000.0, 60.0]), np.array([0.0, 2.0])) for _ in range(500)].count(
        1
    ) < 100
    # a known candidate is never quizzed, nor one a perfect answer could not pay for, nor with task_quiz=0
    known = np.array([5000.0, 5000.0])
    assert explorer.sample(effect, cost_norm, SCENARIOS["performance_first"], trained, pool, known,
                           np.array([5000.0, 5000.0]), np.array([0.0, 0.0])) is None  # fmt: skip
    dear = (effect, np.array([0.0, 0.9]), SCENARIOS["balance"], trained, pool, trained, np.array([5000.0, 60.0]))
    assert all(explorer.sample(*dear, np.array([0.0, 0.0])) in (None, 0) for _ in range(200))
    for off in (Explorer(share=1.0, seed=0, quiz=50, task_quiz=0), Explorer(share=1.0, seed=0, quiz=0)):
        assert [off.sample(*args, np.array([0.0, 2.0])) for _ in range(500)].count(1) < 100
    with pytest.raises(ValueError, match="task_quiz"):
        Explorer(task_quiz=-1)


def test_only_a_candidate_registered_from_its_description_is_refitted_and_old_learners_still_load() -> None:
    import pickle

    rng = np.random.default_rng(1)
    emb = rng.normal(size=(21, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pa = np.where(np.arange(20) % 2 == 0, 0.9, 0.1)
    learner = OnlineLearner()
    learner.observe("n", [f"q{i}" for i in range(20)], emb[:20], np.zeros(20, np.int64), (pa > 0.5).astype(float),
                    np.full(20, 0.3), {"a": pa})  # fmt: skip
    q = QueryFeatures(emb[20:], np.array([0]), np.array([10.0]))
    effect = np.array([[0.9, 0.3]])
    refit_effect = learner.adjust(("a", "n"), q, effect, np.array([5000.0, 0.0]))[0, 1]
    registered = learner.adjust(("a", "n"), q, effect, np.array([5000.0, 20.0]))[0, 1]  # 20 outcomes behind it
    # the latter: residual levels, as before the refit (moved from 0.3 toward the outcomes' mean 0.5, by a prior
    # between the untrained one and a trained candidate's)
    assert refit_effect > 0.75 and 0.35 < registered < 0.55
    # a learner pickled before the refit (no predictions of the others kept) loads and falls back to its own logit
    state = learner.__getstate__()
    for key in ("_others", "_other_names", "_version", "_refits"):
        state.pop(key)
    old = OnlineLearner.__new__(OnlineLearner)
    old.__setstate__(state)
    out = old.adjust(("a", "n"), q, effect, np.array([5000.0, 0.0]))
    assert 0.0 <= out[0, 1] <= 1.0 and pickle.loads(pickle.dumps(old)).adjust(("a", "n"), q, effect) is not None
    explorer = Explorer(seed=0)
    explorer_state = explorer.__getstate__()
    explorer_state.pop("quiz")
    explorer_state.pop("task_quiz")
    old_explorer = Explorer.__new__(Explorer)
    old_explorer.__setstate__(explorer_state)
    assert old_explorer.quiz == 0 and old_explorer.task_quiz == 0  # pickled before quizzes: exploring as it did


def test_a_quiz_on_a_task_stops_once_the_outcomes_there_show_the_candidate_cannot_win() -> None:
    explorer = Explorer(share=1.0, seed=0, quiz=50, task_quiz=7)
    effect, cost_norm, pool = np.array([0.8, 0.2]), np.array([0.0, 0.0]), np.array([0, 1])
    trained = np.array([5000.0, 0.0])  # candidate 1 is new and predicted far below: a sample rarely picks it
    args = (effect, cost_norm, SCENARIOS["performance_first"], trained, pool, trained, np.array([5000.0, 40.0]))
    on_task = np.array([0.0, 30.0])  # 40 outcomes in all (its quiz is not over), 30 of them on this query's task
    # all 30 failed: even its 99.9% bound there (0.21) cannot beat 0.8, so it is not quizzed; the sample decides
    failed = [explorer.sample(*args, on_task, np.array([0.0, 0.0])) for _ in range(500)]
    assert failed.count(1) < 100
    # 25 of 30 right: it could still win here, so it is quizzed
    assert all(explorer.sample(*args, on_task, np.array([0.0, 25.0])) == 1 for _ in range(50))
    # without outcomes on the task, or without their sum, a perfect answer is its top: quizzed
    assert all(explorer.sample(*args, np.array([0.0, 0.0]), np.array([0.0, 0.0])) == 1 for _ in range(50))
    assert all(explorer.sample(*args, on_task) == 1 for _ in range(50))
    # a dear candidate in Balance must be right 80% of the time to beat 0.15: 5 of 15 rule it out (bound 0.74)
    dear_costs, seen = np.array([0.0, 0.5]), np.array([5000.0, 40.0])
    dear = (np.array([0.3, 0.2]), dear_costs, SCENARIOS["balance"], trained, pool, trained, seen)
    assert [explorer.sample(*dear, np.array([0.0, 15.0]), np.array([0.0, 5.0])) for _ in range(500)].count(1) < 100
    assert all(explorer.sample(*dear, np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 1 for _ in range(50))
    # the exact bound: one failure says little (0.999; Wilson's 0.905 ended quizzes after one unlucky outcome)
    bounds = upper_level(np.array([0.0, 0.0, 0.0, 30.0, 15.0]), np.array([0.0, 1.0, 30.0, 30.0, 30.0]))
    assert np.allclose(bounds, [1.0, 0.999, 0.206, 1.0, 0.772], atol=1e-3)
    assert all(explorer.sample(*args, np.array([0.0, 1.0]), np.array([0.0, 0.0])) == 1 for _ in range(50))


def test_the_scorer_quizzes_a_new_llm_until_its_outcomes_arrive(gnn_world) -> None:  # type: ignore[no-untyped-def]
    world, router = gnn_world
    scorer = _scorer(world, router)
    scorer.register_llm(LLMNode("llm-new", "an unknown model", 0.0, 0.0))  # free: it could win anywhere
    scorer.explorer = Explorer(share=1.0, seed=0, quiz=5)
    picks = []
    for i in range(12):
        text = f"task-{i % 4} quiz {i}"
        result = scorer.top_k(text, task=f"task-{i % 4}", k=1, scenario="performance_first", explore=True)
        top = result.candidates[0].name
        picks.append(top)
        scorer.add_outcomes(top, {f"quiz-{i}": 1.0}, None, {f"quiz-{i}": (text, f"task-{i % 4}")})
    assert picks[:5] == ["llm-new"] * 5  # quizzed until it has 5 outcomes (each arrives at once here)
    assert scorer.online.counts(["llm-new"])[0] >= 5
    assert scorer.explorer.explorations <= scorer.explorer.requests


def test_the_scorer_ends_a_quiz_on_a_task_where_the_posted_outcomes_rule_the_new_llm_out(gnn_world) -> None:  # type: ignore[no-untyped-def]
    world, router = gnn_world
    scorer = _scorer(world, router)
    scorer.register_llm(LLMNode("llm-new", "an unknown model", 0.0, 0.0))
    scorer.explorer = Explorer(share=1.0, seed=0, quiz=50, task_quiz=0)  # the quiz in all only: 50 outcomes
    texts = {f"bad-{i}": (f"task-0 question {i}", "task-0") for i in range(30)}
    scorer.add_outcomes("llm-new", dict.fromkeys(texts, 0.0), None, texts)  # 30 failures, all on task-0
    t0 = scorer.router.world.data.task_names.index("task-0")
    assert scorer.online.tally(["llm-new"], t0)[0].tolist() == [30.0]
    assert scorer.online.tally(["llm-new"], t0)[1].tolist() == [0.0]
    per_task = scorer.online.task_counts(["gone", "llm-new"], len(scorer.router.world.data.task_names))
    assert per_task[t0].tolist() == [0.0, 30.0] and per_task.sum() == 30.0

    def picks(task: str) -> list[str]:
        return [
            scorer.top_k(f"{task} another {i}", task=task, k=1, scenario="performance_first", explore=True)
            .candidates[0]
            .name
            for i in range(20)
        ]

    assert picks("task-1") == ["llm-new"] * 20  # 30 outcomes in all (< 50): quizzed where it has none
    assert picks("task-0").count("llm-new") < 10  # its 30 failures there (bound 0.21) end its quiz on task-0


def test_the_scorer_quizzes_a_new_llm_on_a_task_it_has_no_outcomes_on(gnn_world) -> None:  # type: ignore[no-untyped-def]
    world, router = gnn_world
    scorer = _scorer(world, router)
    scorer.register_llm(LLMNode("llm-new", "an unknown model", 0.0, 0.0))
    scorer.explorer = Explorer(share=1.0, seed=0, quiz=3, task_quiz=2)
    texts = {f"bad-{i}": (f"task-0 question {i}", "task-0") for i in range(6)}
    scorer.add_outcomes("llm-new", dict.fromkeys(texts, 0.0), None, texts)  # 6 failures, all on task-0
    tasks = scorer.router.world.data.task_names
    t0, t1 = tasks.index("task-0"), tasks.index("task-1")
    assert scorer.online.counts(["llm-new"], t0).tolist() == [6.0] and scorer.online.counts(["llm-new"], t1)[0] == 0
    other = scorer.top_k("task-1 a new question", task="task-1", k=1, scenario="performance_first", explore=True)
    assert other.explored and other.candidates[0].name == "llm-new"  # quizzed on the task it has no outcome on
    same = [scorer.top_k(f"task-0 another {i}", task="task-0", k=1, scenario="performance_first", explore=True)
            for i in range(20)]  # fmt: skip
    assert all(r.candidates[0].name != "llm-new" for r in same)  # 6 outcomes there (>= 2), all failures: no quiz
