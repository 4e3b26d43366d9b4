"""The scorer and checkpoints, on the synthetic world (with a deterministic stand-in embedder of its size)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from graphrouter.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from graphrouter.errors import GraphRouterError
from graphrouter.routers import ROUTERS
from graphrouter.scorer import Scorer
from tests.routing_world import HashEmbedder, make_world, split


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    world = make_world()
    train, _ = split(world)
    router = ROUTERS["knn_task"]().fit(world, train)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    ckpt = save_checkpoint(router, "hash-test", path)
    return world, ckpt, path


def test_save_load_round_trip_gives_identical_scores(fitted) -> None:  # type: ignore[no-untyped-def]
    world, ckpt, path = fitted
    loaded = load_checkpoint(path, "hash-test", world.data.task_names, world.data.candidates)
    assert loaded.version == ckpt.version
    a = Scorer(ckpt, HashEmbedder(world)).top_k("task-2 what is this", k=5, scenario="balance")
    b = Scorer(loaded, HashEmbedder(world)).top_k("task-2 what is this", k=5, scenario="balance")
    assert a == b
    assert a.task == "task-2" and a.task_inferred
    assert [r.utility for r in a.candidates] == sorted((r.utility for r in a.candidates), reverse=True)


def test_checkpoints_of_format_2_still_load(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A /2 checkpoint (a torch.save archive of the same blob) routes as its /3 rewrite does; /3 is not a zip."""
    import torch

    world, ckpt, path = fitted
    assert path.read_bytes()[:2] != b"PK" and path.read_bytes().startswith(b"graphrouter-checkpoint/3\n")
    old = tmp_path / "old.pt"
    torch.save(
        {
            "format": "graphrouter-checkpoint/2",
            "embedding_model": "hash-test",
            "created_at": ckpt.created_at,
            "version": "v2-file",
            "signature": ckpt.signature,
            "router": ckpt.router,
        },
        old,
    )
    loaded = load_checkpoint(old, "hash-test", world.data.task_names, world.data.candidates)
    assert loaded.version == "v2-file"
    a = Scorer(ckpt, HashEmbedder(world)).top_k("task-1 an old file", k=3, scenario="balance")
    b = Scorer(loaded, HashEmbedder(world)).top_k("task-1 an old file", k=3, scenario="balance")
    assert a.candidates == b.candidates


def test_routing_follows_the_hidden_skills(fitted) -> None:  # type: ignore[no-untyped-def]
    world, ckpt, _ = fitted
    scorer = Scorer(ckpt, HashEmbedder(world))
    data = world.data
    hits = 0
    for t in range(len(data.task_names)):
        best = data.candidates[int(np.nanmean(data.effect[data.query_task == t], axis=0).argmax())]
        top = scorer.top_k(f"task-{t} a question", k=1, scenario="performance_first").candidates[0].name
        hits += top == best
    assert hits >= len(data.task_names) - 1


def test_filters_budget_and_given_task(fitted) -> None:  # type: ignore[no-untyped-def]
    world, ckpt, _ = fitted
    scorer = Scorer(ckpt, HashEmbedder(world))
    res = scorer.top_k("task-1 q", task="task-3", k=2, candidates=["llm-0", "llm-4"], weights=(1.0, 0.0))
    assert {r.name for r in res.candidates} == {"llm-0", "llm-4"} and res.task == "task-3" and not res.task_inferred
    cheap = scorer.top_k("task-1 q", k=5, budget=0.0004)
    assert cheap.candidates and all(r.cost <= 0.0004 for r in cheap.candidates) and len(cheap.candidates) < 5
    # k is "at most k": a filter of one (or k above the candidates) answers what there is, not an error
    assert [r.name for r in scorer.top_k("task-1 q", candidates=["llm-2", "llm-2"]).candidates] == ["llm-2"]
    assert len(scorer.top_k("task-1 q", k=6).candidates) == 5


def test_a_request_is_priced_on_its_input_tokens_when_given_also_in_a_batch(fitted) -> None:  # type: ignore[no-untyped-def]
    """``input_tokens`` prices a prompt that is more than the routed query (a chat's history): costs grow with it, the
    ranking's effects do not move, and in a batch each request is priced on its own (given or counted)."""
    from graphrouter.route_request import RouteRequest

    world, ckpt, _ = fitted
    scorer = Scorer(ckpt, HashEmbedder(world))
    own = {r.name: r for r in scorer.top_k("task-1 q", k=5).candidates}
    long = {r.name: r for r in scorer.top_k("task-1 q", k=5, input_tokens=100_000).candidates}
    assert all(long[n].cost > own[n].cost for n in own)
    assert all(long[n].effect == pytest.approx(own[n].effect) for n in own)
    wordy = {r.name: r for r in scorer.top_k("task-1 q " + "word " * 300, k=5).candidates}
    batch = scorer.top_k_many(
        [
            RouteRequest("task-1 q " + "word " * 300, k=5),  # counted rows of different lengths keep their order
            RouteRequest("task-1 q", k=5, input_tokens=100_000),
            RouteRequest("task-1 q", k=5),
        ]
    )
    for result, want in zip(batch, (wordy, long, own), strict=True):
        assert {r.name: r.cost for r in result.candidates} == pytest.approx({n: r.cost for n, r in want.items()})


def test_a_calls_max_output_tokens_caps_an_llms_predicted_cost_also_in_a_batch(fitted) -> None:  # type: ignore[no-untyped-def]
    """A call capped at ``max_output_tokens`` (its max_tokens) cannot be billed more than its input and that many
    output tokens: an LLM's predicted cost is at most that (a 16-token answer was priced as a full one), effects do not
    move, and in a batch each request is capped on its own."""
    from graphrouter.route_request import RouteRequest
    from graphrouter.tokens import count_tokens

    world, ckpt, _ = fitted
    scorer = Scorer(ckpt, HashEmbedder(world))
    prices = dict(zip(scorer.candidates, scorer.router.cost_model.prices, strict=True))
    own = {r.name: r for r in scorer.top_k("task-1 q", k=5).candidates}
    capped = {r.name: r for r in scorer.top_k("task-1 q", k=5, max_output_tokens=16).candidates}
    tokens = count_tokens(["task-1 q"])[0]
    for name, rec in own.items():
        ceiling = (tokens * prices[name][0] + 16 * prices[name][1]) / 1e6
        assert capped[name].cost == pytest.approx(min(rec.cost, ceiling))
        assert capped[name].effect == pytest.approx(rec.effect)
    assert all(capped[n].cost < 0.2 * own[n].cost for n in own)  # 16 of 512 output tokens
    roomy = {r.name: r.cost for r in scorer.top_k("task-1 q", k=5, max_output_tokens=100_000).candidates}
    assert roomy == pytest.approx({n: r.cost for n, r in own.items()})  # a cap above the answer binds nothing
    batch = scorer.top_k_many([RouteRequest("task-1 q", k=5), RouteRequest("task-1 q", k=5, max_output_tokens=16)])
    for result, want in zip(batch, (own, capped), strict=True):
        assert {r.name: r.cost for r in result.candidates} == pytest.approx({n: r.cost for n, r in want.items()})


def test_a_budget_keeps_out_an_llm_whose_long_prompt_costs_more_though_it_answers_briefly(tmp_path: Path) -> None:
    """An LLM seen answering in 60 tokens (on prompts of 20 to 400) was priced at a fraction of a 12,000-token
    prompt's bill, so a budget below that bill let it through: now it is priced as billed, and kept out."""
    world = make_world()
    prices = world.data.candidate_prices[1]
    world.data.cost = world.data.cost.copy()
    world.data.cost[:, 1] = (world.query_tokens * prices[0] + 60 * prices[1]) / 1e6
    train, _ = split(world)
    router = ROUTERS["knn_task"]().fit(world, train)
    scorer = Scorer(save_checkpoint(router, "hash-test", tmp_path / "c.pt"), HashEmbedder(world))
    billed = (12_000 * prices[0] + 60 * prices[1]) / 1e6
    priced = {r.name: r.cost for r in scorer.top_k("task-1 q", k=5, input_tokens=12_000).candidates}
    assert priced["llm-1"] == pytest.approx(billed, rel=1e-6)
    within = scorer.top_k("task-1 q", k=5, input_tokens=12_000, budget=0.9 * billed)
    assert "llm-1" not in {r.name for r in within.candidates}


def test_an_output_cap_bounds_one_calls_cost_not_an_agents() -> None:
    """An agent may make several calls per query: one call's max_tokens does not bound its cost."""
    from graphrouter.cost import CostModel

    model = CostModel.from_world(make_world())
    tokens = np.array([100.0, 100.0])
    cap = np.array([16.0, np.nan])  # the second call has no cap
    llm_only = np.array([True, False, True, True, True])
    plain, capped = model.cost(tokens), model.cost(tokens, max_output=cap, capped=llm_only)
    ceiling = (100 * model.prices[:, 0] + 16 * model.prices[:, 1]) / 1e6
    np.testing.assert_allclose(capped[0, llm_only], np.minimum(plain[0, llm_only], ceiling[llm_only]))
    assert capped[0, 1] == plain[0, 1] and (capped[1] == plain[1]).all()
    # an LLM whose costs gave its prompt a factor of its own (its tokenizer counts 1.5x WordPiece's) is capped at
    # that input, not at the input as computed, which is less than its bill
    model.factors = np.array([[1.5, 0.1], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    capped = model.cost(np.array([100.0]), max_output=np.array([16.0]), capped=llm_only)
    assert capped[0, 0] == pytest.approx((100 * 1.5 * model.prices[0, 0] + 16 * model.prices[0, 1]) / 1e6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_text": "  "}, "query: must be a non-empty string"),
        ({"query_text": "abc \ud800 def"}, r"query must be valid Unicode: it holds a lone surrogate '\\ud800'"),
        ({"k": 0}, "k: must be a positive integer"),
        ({"weights": (float("nan"), 1.0)}, "weights.w_effect: must be a number from 0 to 1000000, got nan"),
        ({"weights": (-1.0, 1.0)}, "weights.w_effect: must be a number from 0 to 1000000"),
        ({"scenario": "fastest"}, "unknown scenario"),
        ({"candidates": ["llm-0", "gpt-9"]}, r"unknown candidate\(s\) \['gpt-9'\]"),
        ({"task": "cooking"}, "unknown task 'cooking'"),
        ({"budget": 1e-9}, "no candidate fits the budget"),
        ({"budget": -1}, "budget: must be a positive number"),
        ({"input_tokens": -1}, "input_tokens: must be an integer from 0 to 10,000,000"),
        ({"input_tokens": 2.5}, "input_tokens: must be an integer"),
        ({"max_output_tokens": 0}, "max_output_tokens: must be an integer from 1 to 10,000,000"),
        ({"max_output_tokens": True}, "max_output_tokens: must be an integer"),
    ],
)
def test_bad_inputs_raise_clear_errors(fitted, kwargs: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    world, ckpt, _ = fitted
    args = {"query_text": "task-0 hello", **kwargs}
    with pytest.raises(GraphRouterError, match=message):
        Scorer(ckpt, HashEmbedder(world)).top_k(**args)


def test_incompatible_checkpoints_are_refused(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    world, _, path = fitted
    with pytest.raises(CheckpointError, match="embedding model 'hash-test'"):
        load_checkpoint(path, "all-MiniLM-L6-v2")
    with pytest.raises(CheckpointError, match="no longer has: \\['llm-4'\\]"):
        load_checkpoint(path, "hash-test", world.data.task_names, world.data.candidates[:4])
    with pytest.raises(CheckpointError, match="tasks the graph no longer has"):
        load_checkpoint(path, "hash-test", world.data.task_names[1:], world.data.candidates)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    future = tmp_path / "future.pt"
    future.write_bytes(b"graphrouter-checkpoint/4\nwhatever comes next")
    with pytest.raises(CheckpointError, match="is a graphrouter-checkpoint/4 checkpoint.*upgrade graphrouter"):
        load_checkpoint(future)
    # the header is checked before the router is read: a mismatch is reported even when the rest is damaged
    import pickle

    with open(path, "rb") as f:
        f.readline()  # the format line
        pickle.load(f)  # the header
        end_of_header = f.tell()
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(path.read_bytes()[:end_of_header] + b"damaged")
    with pytest.raises(CheckpointError, match="embedding model 'hash-test'"):
        load_checkpoint(damaged, "all-MiniLM-L6-v2")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(damaged, "hash-test")


def test_checkpoints_of_an_earlier_version_must_be_retrained(tmp_path: Path) -> None:
    """A /1 checkpoint is refused with a clear message, also when its pickled classes are gone (unpickling fails
    before the format can be read)."""
    import torch

    old = tmp_path / "old.pt"
    torch.save({"format": "graphrouter-checkpoint/1", "router": None}, old)
    with pytest.raises(CheckpointError, match="earlier version of graphrouter and must be retrained") as err:
        load_checkpoint(old)
    assert "graphrouter train" in str(err.value) and "POST /v1/train" in str(err.value)

    gone = types.ModuleType("graphrouter.routers.gnn_ego")  # the module the ego path lived in before /2
    gone.EgoPath = type("EgoPath", (), {"__module__": gone.__name__})  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, gone.__name__, gone)
        torch.save({"format": "graphrouter-checkpoint/1", "router": gone.EgoPath()}, old)
    with pytest.raises(CheckpointError, match="earlier version of graphrouter and must be retrained") as err:
        load_checkpoint(old)
    assert "graphrouter train" in str(err.value) and "POST /v1/train" in str(err.value)


def test_a_registered_llms_costs_on_new_queries_teach_its_cost_factors_at_once(tmp_path: Path) -> None:
    """A new LLM's costs were learned at once only on stored queries; on new ones (the proxy's traffic, outcomes
    posted with their text) they waited for the next retrain, so it was priced with a 512-token answer until then.
    Now they teach its factors as they come (a trained LLM's still wait for training)."""
    from graph_store import LLMNode
    from graphrouter.routers.gnn import GnnRouter
    from graphrouter.tokens import count_tokens

    world = make_world(per_task=30)
    router = GnnRouter(seeds=(0,), max_episodes=2, eval_every=1, hidden=8).fit(world, np.arange(world.data.n_queries))
    scorer = Scorer(save_checkpoint(router, "hash-test", tmp_path / "gnn.pt"), HashEmbedder(world))
    prices = (2.5, 10.0)
    scorer.register_llm(LLMNode("llm-brief", "answers briefly", *prices))
    texts = {f"new-{i}": f"task-1 question {i} " + "word " * (40 * i) for i in range(30)}
    tokens = dict(zip(texts, count_tokens(list(texts.values())), strict=True))
    bills = {i: (tokens[i] * prices[0] + 60 * prices[1]) / 1e6 for i in texts}
    queries = {i: (text, "task-1") for i, text in texts.items()}
    assert scorer.add_outcomes("llm-brief", dict.fromkeys(texts, 1.0), bills, queries) == 30
    assert scorer.cost_factors("llm-brief") == pytest.approx((1.0, 60 / 512))
    long = {r.name: r.cost for r in scorer.top_k("task-1 q", k=6, input_tokens=12_000).candidates}
    assert long["llm-brief"] == pytest.approx((12_000 * prices[0] + 60 * prices[1]) / 1e6)
    before = scorer.cost_factors("llm-0")  # a trained LLM's factors move at its next training only
    scorer.add_outcomes("llm-0", {"new-0": 1.0}, {"new-0": 1.0}, queries)
    assert scorer.cost_factors("llm-0") == before


def test_scorer_registers_agents_drops_candidates_and_takes_outcomes(tmp_path: Path) -> None:
    from graph_store import Agent, LLMNode
    from graphrouter.routers.gnn import GnnRouter

    world = make_world(per_task=30)
    router = GnnRouter(seeds=(0,), max_episodes=2, eval_every=1, hidden=8).fit(world, np.arange(world.data.n_queries))
    scorer = Scorer(save_checkpoint(router, "hash-test", tmp_path / "gnn.pt"), HashEmbedder(world))
    backing = LLMNode("llm-1", "model 1", *world.data.candidate_prices[1])
    agent = Agent("coder", "llm-1", "a ReAct agent", "ReAct")
    scorer.register_agent(agent, backing, {"q0": 1.0, "q1": 0.0, "not-stored": 1.0})
    assert scorer.candidates[-1] == "coder" and scorer.kinds[-1] == "Agent"
    res = scorer.top_k("task-0 q", k=6, scenario="balance")
    cost = {r.name: r.cost for r in res.candidates}
    assert cost["coder"] == pytest.approx(cost["llm-1"])  # priced as its LLM
    with pytest.raises(GraphRouterError, match="already a candidate"):
        scorer.register_agent(agent, backing)
    with pytest.raises(GraphRouterError, match="not a candidate of this router"):
        scorer.register_agent(Agent("a2", "llm-9"), LLMNode("llm-9"))

    # a checkpoint of the router as it is now loads with the registered agent as an agent
    again = Scorer(save_checkpoint(scorer.router, "hash-test", tmp_path / "gnn2.pt"), HashEmbedder(world))
    assert (again.candidates, again.kinds) == (scorer.candidates, scorer.kinds)
    assert list(again.kinds) == ["LLM"] * 5 + ["Agent"]
    state = scorer.router.__getstate__()  # a checkpoint from before the router kept kinds: derived on load
    del state["_kinds"]
    old = type(scorer.router).__new__(type(scorer.router))
    old.__setstate__(state)
    assert old.candidate_kinds() == list(zip(scorer.candidates, scorer.kinds, strict=True))

    # outcomes on training queries are applied; others only with their text (to be learned online)
    assert scorer.add_outcomes("llm-0", {"q0": 0.0, "q1": 0.0, "nope": 1.0}) == 2
    assert scorer.add_outcomes("llm-0", {"nope": 1.0}) == 0

    scorer.remove_candidate("coder")
    assert "coder" not in scorer.candidates and len(scorer.kinds) == len(scorer.candidates) == 5
    assert "coder" not in {r.name for r in scorer.top_k("task-0 q", k=5).candidates}
    with pytest.raises(GraphRouterError, match="not a candidate"):
        scorer.remove_candidate("coder")

    # a router that cannot change its candidates says so
    knn_router = ROUTERS["knn_task"]().fit(world, np.arange(world.data.n_queries))
    knn = Scorer(save_checkpoint(knn_router, "hash-test", tmp_path / "knn.pt"), HashEmbedder(world))
    with pytest.raises(NotImplementedError):
        knn.remove_candidate("llm-0")
    # … but learns outcomes online all the same (a correction on top of its predictions), on any query
    assert knn.add_outcomes("llm-0", {"q0": 1.0}) == 1
    assert knn.add_outcomes("llm-0", {"n1": 1.0}, queries={"n1": ("task-0 new", "task-0")}) == 1
    with pytest.raises(NotImplementedError):
        knn.register_agent(agent, backing)
    assert list(knn.candidates) == world.data.candidates
