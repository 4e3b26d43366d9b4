"""Every router in the registry on a synthetic world with hidden skills, and the metrics they are judged by."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from graph_store import LLM, GraphBatch, LLMNode, Outcome
from graph_store.backends.embedded import EmbeddedStore
from graphrouter.cost import CostModel, usd_costs
from graphrouter.errors import GraphRouterError
from graphrouter.rewards import SCENARIOS, oracle_gap_closed, scenario_weights, score_choices
from graphrouter.routers import ROUTERS
from graphrouter.world import QueryFeatures, World, build_world
from tests.routing_world import HashEmbedder, make_world, populate, split


@pytest.fixture(scope="module")
def world_split():  # type: ignore[no-untyped-def]
    world = make_world()
    return world, *split(world)


@pytest.fixture(scope="module")
def rewards(world_split) -> dict[tuple[str, str, str], float]:  # type: ignore[no-untyped-def]
    world, train, test = world_split
    data, cn = world.data, world.data.cost_norm()
    out = {}
    for name, cls in ROUTERS.items():
        router = cls().fit(world, train)
        for mode in ("given", "inferred"):
            q = world.features(test, task_given=mode == "given")
            for scen, w in SCENARIOS.items():
                u = router.utility(q, w)
                assert u.shape == (len(test), data.n_candidates) and np.isfinite(u).all(), name
                ch = router.choose(q, w)
                out[(name, mode, scen)] = score_choices(ch, data.effect[test], data.cost[test], cn[test], w).reward
    return out


def test_baselines_that_learn_beat_random_and_none_beats_the_oracle(rewards) -> None:  # type: ignore[no-untyped-def]
    perf = {k[0]: v for k, v in rewards.items() if k[1:] == ("given", "performance_first")}
    for name in ("best_per_task", "knn", "knn_task", "mlp", "mf", "gnn"):
        assert perf[name] > perf["random"] + 0.1, (name, perf)
        assert perf[name] > perf["best_single"], (name, perf)
    assert (
        max(v for k, v in rewards.items() if k[0] != "oracle" and k[2] == "balance")
        <= rewards[("oracle", "given", "balance")]
    )


def test_inferring_the_task_works_when_tasks_are_separable(rewards) -> None:  # type: ignore[no-untyped-def]
    for scen in SCENARIOS:
        given, inferred = rewards[("best_per_task", "given", scen)], rewards[("best_per_task", "inferred", scen)]
        assert inferred >= given - 0.03, (scen, given, inferred)


def test_every_router_trains_and_routes_on_data_of_a_single_task() -> None:
    """A store whose queries are all of one task (a first import, say): training works and a query without its task
    is given that one (the task inferer's logistic regression needs two classes; it used to raise from sklearn)."""
    world = make_world(n_tasks=1, per_task=60)
    train, test = split(world)
    for name, cls in ROUTERS.items():
        if name == "gnn":
            router = cls(max_episodes=5, seeds=(0,)).fit(world, train)
        else:
            router = cls().fit(world, train)
        q = world.features(test, task_given=False)
        assert router.choose(q, SCENARIOS["balance"]).shape == (len(test),), name
    assert (router.task_inferer.fill(q).task == 0).all()


def test_cost_first_prefers_cheaper_models(world_split) -> None:  # type: ignore[no-untyped-def]
    world, train, test = world_split
    router = ROUTERS["mlp"]().fit(world, train)
    q = world.features(test)
    price = world.data.candidate_prices[:, 0]
    assert (
        price[router.choose(q, SCENARIOS["cost_first"])].mean()
        < price[router.choose(q, SCENARIOS["performance_first"])].mean()
    )


def test_cost_norm_is_within_each_task_range(world_split) -> None:  # type: ignore[no-untyped-def]
    world, *_ = world_split
    cn = world.data.cost_norm()
    assert np.nanmin(cn) == 0.0 and np.nanmax(cn) == 1.0
    for t in range(len(world.data.task_names)):
        block = cn[world.data.query_task == t]
        assert block.min() == 0.0 and block.max() == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario": "speed"}, "unknown scenario 'speed'"),
        ({"weights": (float("nan"), 0.5)}, "weights.w_effect: must be a number from 0 to 1000000"),
        ({"weights": (0.5, -1.0)}, "weights.w_cost: must be a number from 0 to 1000000"),
        ({"weights": (0.5, 1.7e308)}, "weights.w_cost: must be a number from 0 to 1000000"),
        ({"weights": (0.0, 0.0)}, "cannot both be 0"),
        ({"scenario": "balance", "weights": (1.0, 0.0)}, "not both"),
    ],
)
def test_bad_weights_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(GraphRouterError, match=message):
        scenario_weights(**kwargs)


def test_scenarios_resolve() -> None:
    assert scenario_weights() == (0.5, 0.5)
    assert scenario_weights("Performance First") == (1.0, 0.0)
    assert scenario_weights("cost-first") == (0.2, 0.8)
    assert scenario_weights(weights=(2, 1)) == (2.0, 1.0)
    assert math.isclose(oracle_gap_closed(0.7, 0.6, 0.8), 0.5)


def test_cost_multiplier_is_learned_from_observed_costs() -> None:
    """A candidate whose observed costs are 3x its price-computed cost (an agent making three calls) is predicted
    at ~3x; candidates whose observed costs match their prices stay at 1x; one with no outcomes stays at 1x."""
    world = make_world(seed=4)
    data = world.data
    data.cost[:, 1] *= 3.0
    data.cost[:, 2] = np.nan
    data.effect[:, 2] = np.nan
    model = CostModel.from_world(world)
    n = np.isfinite(data.cost[:, 1]).sum()
    assert model.factors[1] == pytest.approx(3.0 ** (n / (n + 5)), rel=1e-6)
    np.testing.assert_allclose(model.factors[[0, 2, 3, 4]], 1.0)
    plain = model.cost(world.query_tokens, data.candidate_prices)
    np.testing.assert_allclose(model.cost(world.query_tokens)[:, 1], plain[:, 1] * model.factors[1, 0])


def test_the_cost_range_covers_every_candidate_where_the_outcomes_do_not() -> None:
    """The range a task would have if every candidate had answered it: a candidate with no outcome on a task, outside
    the range observed on the others, got a normalised cost of -3 (utilities of 2 to 3); with every observed cost 0
    the cost was divided by 1 USD (cost_first picked the dearest). Where the outcomes cover every candidate with a
    spread, nothing changes (the benchmarks' reward normalises so)."""
    world = make_world(seed=4)
    data = world.data
    full = CostModel.from_world(world)
    np.testing.assert_array_equal(full.task_range, data.task_cost_range())
    plain = full.normalise(full.cost(world.query_tokens), data.query_task)
    cheap, dearest = int(data.candidate_prices[:, 0].argmin()), int(data.candidate_prices[:, 0].argmax())

    sparse = make_world(seed=4)
    on_1 = sparse.data.query_task == 1
    sparse.data.cost[on_1, cheap] = sparse.data.effect[on_1, cheap] = np.nan  # the cheapest: none on task 1
    model = CostModel.from_world(sparse)
    predicted = model.cost(sparse.query_tokens)
    norm = model.normalise(predicted, sparse.data.query_task)
    assert model.task_range[1, 0] == predicted[on_1, cheap].min() < sparse.data.task_cost_range()[1, 0]
    assert norm[on_1, cheap].min() == 0.0  # was far below 0
    np.testing.assert_array_equal(norm[~on_1], plain[~on_1])  # the other tasks as before

    free = make_world(seed=4)
    free.data.cost[:] = 0.0  # costs not recorded
    model = CostModel.from_world(free)
    norm = model.normalise(model.cost(free.query_tokens), free.data.query_task)
    assert norm.min() >= -1e-9 and norm.max() <= 1 + 1e-9 and (norm[:, dearest] > norm[:, cheap]).all()


def test_one_cost_far_off_its_prediction_does_not_rescale_its_tasks_costs(caplog: pytest.LogCaptureFixture) -> None:
    """A task's cost range was the raw min–max of its observed costs: one cost recorded in cents (100x) shrank every
    normalised cost of its task ~10x (Balance and Cost First then weighed cost a tenth as much there). A cost more
    than 10x off what its candidate's prices and factors predict is left out of the range, and named."""
    clean = CostModel.from_world(make_world(seed=4))
    world = make_world(seed=4)
    world.data.cost = world.data.cost.copy()
    world.data.cost[7, 2] *= 100  # one row of llm-2 in cents
    with caplog.at_level("WARNING", logger="graphrouter.cost"):
        model = CostModel.from_world(world)
    np.testing.assert_array_equal(model.task_range, clean.task_range)
    assert model.task_range[world.data.query_task[7], 1] < world.data.cost[7, 2] / 10
    assert "more than 10x off" in caplog.text and "llm-2 1; e.g. llm-2 on query q7" in caplog.text
    # costs that vary this much by nature are not outliers: an LLM's of a wide spread, an agent's (calls per query)
    caplog.clear()
    noise = np.exp(np.random.default_rng(1).normal(0, 1.0, (world.data.n_queries, 2)))
    world.data.cost[:, [3, 4]] *= noise
    world.data.candidate_kind = [*world.data.candidate_kind[:4], "Agent"]
    world.data.cost[:9, 4] *= 30
    with caplog.at_level("WARNING", logger="graphrouter.cost"):
        CostModel.from_world(world)
    assert "llm-2 1;" in caplog.text and "llm-3" not in caplog.text and "llm-4" not in caplog.text


def test_cost_multiplier_of_an_added_candidate_is_learned_at_once() -> None:
    """Observed costs teach a candidate added since fitting its multiplier (a query observed again replaces its
    cost); a fitted candidate's multiplier waits for the next fit; removing a column keeps the others' learning."""
    world = make_world(seed=4)
    model = CostModel.from_world(world)
    prices = world.data.candidate_prices[1]
    model.add_candidate(prices)
    new = len(model.prices) - 1
    plain = model.cost(world.query_tokens, prices.reshape(1, 2))[:, 0]
    assert model.observe(new, {i: 3 * plain[i] for i in range(10)} | {10: 0.0}, world.query_tokens) == 10
    assert model.factors[new] == pytest.approx(3 ** (10 / 15))
    model.observe(new, {i: 3 * plain[i] for i in range(10)}, world.query_tokens)  # the same queries again
    assert model.factors[new] == pytest.approx(3 ** (10 / 15))
    assert model.observe(0, {0: 100.0}, world.query_tokens) == 0 and model.factors[0] == pytest.approx(1.0)
    assert model.observe(new, {10**9: 1.0, -1: 1.0}, world.query_tokens) == 0  # not queries of this world
    keep = np.ones(len(model.prices), bool)
    keep[0] = False
    model.keep_candidates(keep)
    assert list(model.observed) == [new - 1] and model.factors[new - 1] == pytest.approx(3 ** (10 / 15))
    # absurd observed costs are capped at 1000x, not an infinite price
    model.add_candidate(prices)
    model.observe(len(model.prices) - 1, {i: 1e308 for i in range(400)}, world.query_tokens)
    assert model.factors[-1] == pytest.approx(1e3)


def test_costs_in_another_unit_are_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """An LLM's costs imported in cents (x100) were learned as a 100x cost multiplier without a word: the fit now
    names every LLM whose multiplier is beyond 10x (or under 1/10) its prices."""
    world = make_world(seed=4)
    world.data.cost = world.data.cost.copy()
    world.data.cost[:, 2] *= 100
    world.data.cost[:, 3] = 512 * world.data.candidate_prices[3, 1] / 1e6  # a flat fee: no unit error, not named
    world.data.cost[:, 4] = 100 * 512 * world.data.candidate_prices[4, 1] / 1e6  # a flat fee in cents: named
    with caplog.at_level("WARNING", logger="graphrouter.cost"):
        model = CostModel.from_world(world)
    assert (model.factors[2] > 10).all() and model.factors[3] == pytest.approx([1e-3, 1.0])
    assert model.factors[4] == pytest.approx([1e-3, 100.0])
    for i in (2, 4):
        assert f"{world.data.candidates[i]} " in caplog.text and "USD per query" in caplog.text
    assert "0.001x the input, 100x the output" in caplog.text
    assert all(f"{n} " not in caplog.text for i, n in enumerate(world.data.candidates) if i not in (2, 4))


def test_a_bandits_cost_multiplier_is_capped_as_the_cost_models_is() -> None:
    """The bandits learned an added arm's cost multiplier with their own formula, without the cost model's cap: an
    absurd observed cost (a cost in the wrong unit) made the arm's price infinite. Now capped at 1000x alike."""
    world = make_world(seed=4)
    bandit = ROUTERS["linucb"]().fit(world, np.arange(world.data.n_queries))
    col = bandit.register_candidate("new", world.candidate_emb[1], *world.data.candidate_prices[1])
    q = QueryFeatures(world.query_emb[:50], world.data.query_task[:50], world.query_tokens[:50])
    bandit.update(q, col, np.ones(50), np.full(50, 1e308))
    assert bandit.cost_model.factors[col] == pytest.approx(1e3)
    assert np.isfinite(bandit.score(q, (0.5, 0.5)).cost).all()


def _brief(world: World, col: int, answer: float = 60.0) -> np.ndarray:
    """The bills of an LLM answering in ``answer`` tokens (not 512) on the world's prompts."""
    prices = world.data.candidate_prices[col]
    return (world.query_tokens * prices[0] + answer * prices[1]) / 1e6


def test_an_llm_answering_briefly_is_priced_on_a_long_prompt_as_it_is_billed() -> None:
    """An LLM seen answering in ~60 tokens on prompts of every length (proxy traffic) was learned one multiplier
    for its whole computed cost (512 output tokens), so a long prompt was predicted at a fraction of its bill and a
    budget let it through: the input and the output part now get a factor each where the costs say they scale apart,
    while costs proportional to the computed ones (the benchmarks', or 3x for an agent) keep one multiplier."""
    world = make_world(seed=4)
    world.data.cost = world.data.cost.copy()
    world.data.cost[:, 1] = _brief(world, 1)
    world.data.cost[np.argsort(world.query_tokens)[-2:], 1] *= 30  # two outliers do not pull its factors
    rng = np.random.default_rng(0)
    answers = 60 * np.exp(rng.normal(0, 0.7, world.data.n_queries))  # answer lengths vary (mean 76.6 tokens)
    world.data.cost[:, 2] = usd_costs(world.query_tokens, world.data.candidate_prices[[2]], answers)[:, 0]
    world.data.cost[:, 3] *= np.exp(rng.normal(0, 0.05, world.data.n_queries))  # an LLM billed as priced, noisy
    world.data.cost[:, 4] *= 3 * np.exp(rng.normal(0, 0.5, world.data.n_queries))  # an agent: calls vary
    # LLMs billed as priced (noisy) but for a few outliers, a review's cases: 30x on the two longest prompts, 10x
    # on the five shortest (whole conversations billed); each split the factors before the median tests
    world.data.cost[:, 0] *= np.exp(rng.normal(0, 0.05, world.data.n_queries))
    order = np.argsort(world.query_tokens)
    world.data.cost[order[-2:], 0] *= 30
    world.data.cost[order[:5], 3] *= 10
    model = CostModel.from_world(world)
    np.testing.assert_allclose(model.factors[1], [1.0, 60 / 512], rtol=1e-6)
    np.testing.assert_allclose(model.factors[2], [1.0, 60 * np.exp(0.7**2 / 2) / 512], rtol=0.15)
    for col, level in ((0, 1.0), (3, 1.0), (4, 3.0)):  # one multiplier where the costs are proportional, however
        assert model.factors[col, 0] == model.factors[col, 1] == pytest.approx(level, rel=0.1)  # noisy
    long = np.array([12_000.0])
    billed = (12_000 * world.data.candidate_prices[1, 0] + 60 * world.data.candidate_prices[1, 1]) / 1e6
    assert model.cost(long)[0, 1] == pytest.approx(billed, rel=1e-6)
    one = np.exp(
        np.mean(np.log(world.data.cost[:, 1] / model.cost(world.query_tokens, world.data.candidate_prices)[:, 1]))
    )
    assert one * model.cost(long, world.data.candidate_prices)[0, 1] < 0.6 * billed  # what one multiplier predicted


def test_an_added_candidates_factors_follow_its_costs_at_once_and_a_bandits_arms_alike() -> None:
    """An LLM registered since fitting (or a bandit's new arm) answering briefly: one multiplier until 20 costs, then
    a factor each for its input and output part, learned at once; a repeated query replaces its earlier cost."""
    world = make_world(seed=4)
    model = CostModel.from_world(world)
    model.add_candidate(world.data.candidate_prices[1])
    new, brief = len(model.prices) - 1, _brief(world, 1)
    model.observe(new, {i: brief[i] for i in range(19)}, world.query_tokens)
    assert model.factors[new, 0] == model.factors[new, 1]
    model.observe(new, {i: brief[i] for i in range(19, 40)} | {0: brief[0]}, world.query_tokens)
    np.testing.assert_allclose(model.factors[new], [1.0, 60 / 512], rtol=1e-6)
    assert len(model.observed[new]) == 40

    bandit = ROUTERS["linucb"]().fit(world, np.arange(world.data.n_queries))
    col = bandit.register_candidate("new", world.candidate_emb[1], *world.data.candidate_prices[1])
    q = QueryFeatures(world.query_emb[:40], world.data.query_task[:40], world.query_tokens[:40])
    bandit.update(q, col, np.ones(40), brief[:40])
    np.testing.assert_allclose(bandit.cost_model.factors[col], [1.0, 60 / 512], rtol=1e-6)


def test_an_added_candidates_factors_split_once_not_back_and_forth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refitted at every cost it gets, a candidate near the split's bars flipped between one and two factors (a
    review saw one → two → one → … between 20 and 80 costs, its price of a long prompt jumping 2.5x each time): a
    split candidate now stays split while its evidence reaches half of both bars."""
    from graphrouter import cost_factors

    def transitions() -> int:
        rng = np.random.default_rng(0)
        tokens = rng.integers(100, 800, 200).astype(float)
        prices = np.array([0.075, 0.3])  # short prompts, dear answers: the split's evidence comes slowly
        billed = (tokens * prices[0] + 60 * np.exp(rng.normal(0, 0.7, 200)) * prices[1]) / 1e6
        model = CostModel(np.zeros((0, 2)), np.zeros((1, 2)))
        model.add_candidate(prices)
        split = []
        for i in range(200):
            model.observe(0, {i: billed[i]}, tokens)
            split.append(bool(cost_factors.is_split(model.factors[0])))
        assert split[-1]
        return int(np.count_nonzero(np.diff(split)))

    assert transitions() == 1
    monkeypatch.setattr(cost_factors, "SPLIT_KEEP", 1.0)  # without the lower bar to stay split
    assert transitions() > 1


def test_an_added_candidates_costs_on_new_queries_are_the_most_recent_few_thousand() -> None:
    """Costs on queries outside the world (the proxy's) are kept per query, the most recent NEW_QUERY_COSTS of them:
    they grew without bound, each post refitting over all of them under the serving lock (42 ms at 100k)."""
    from graphrouter import cost

    model = CostModel(np.zeros((0, 2)), np.zeros((1, 2)))
    model.add_candidate(np.array([2.5, 10.0]))
    world_tokens = np.zeros(0)
    model.observe_new(0, {f"q{i}": (100.0 + i, 0.001) for i in range(cost.NEW_QUERY_COSTS)}, world_tokens)
    model.observe_new(0, {"q0": (100.0, 0.002)}, world_tokens)  # posted again: replaced, and now the most recent
    assert model.observe_new(0, {"late": (50.0, 0.001), "free": (50.0, 0.0)}, world_tokens) == 1
    rows = model.observed[0]
    assert len(rows) == cost.NEW_QUERY_COSTS and "q1" not in rows and rows["q0"] == (100.0, 0.002)
    assert list(rows)[-2:] == ["q0", "late"]


def test_a_cost_model_pickled_with_one_multiplier_loads_as_two_equal_factors() -> None:
    """Checkpoints of the last release hold ``multiplier`` (C,) and an added candidate's costs as log ratios: they
    load as equal factors (the same predictions), and the added candidate's next cost is learned with its earlier
    ones (read back in USD); a post without a usable cost changes nothing (a review saw both reset it to 1)."""
    world = make_world(seed=4)
    model = CostModel.from_world(world)
    state = {k: v for k, v in model.__dict__.items() if k not in ("factors", "legacy_logs")}
    state |= {"multiplier": np.array([1.0, 3.0, 1.0, 1.0, 1.0, 3.0]), "observed": {5: {i: np.log(3) for i in range(9)}}}
    state["prices"] = np.r_[model.prices, model.prices[:1]]
    old = CostModel.__new__(CostModel)
    old.__setstate__(dict(state))
    np.testing.assert_array_equal(old.factors[:, 0], old.factors[:, 1])
    assert old.factors[1, 0] == 3.0 and old.observed == {5: {}}
    plain = old.cost(world.query_tokens, old.prices)
    np.testing.assert_allclose(old.cost(world.query_tokens), plain * state["multiplier"])
    assert old.observe(5, {20: 0.0, 21: float("nan")}, world.query_tokens) == 0 and old.factors[5, 0] == 3.0
    kept = CostModel.__new__(CostModel)  # a cost on a query outside the world is learned with the legacy costs
    kept.__setstate__(dict(state))
    kept.observe_new(5, {"elsewhere": (float(world.query_tokens[9]), 3 * plain[9, 5])}, world.query_tokens)
    assert kept.legacy_logs == {} and len(kept.observed[5]) == 10
    assert kept.factors[5] == pytest.approx(3 ** (10 / 15))
    assert old.observe(5, {9: 3 * plain[9, 5]}, world.query_tokens) == 1
    assert old.factors[5] == pytest.approx(3 ** (10 / 15)) and len(old.observed[5]) == 10

    between = CostModel.__new__(CostModel)  # pickled by this change's first commits: factors, no legacy_logs
    between.__setstate__({k: v for k, v in old.__dict__.items() if k != "legacy_logs"})
    assert between.observe(5, {30: 3 * plain[30, 5]}, world.query_tokens) == 1
    between.keep_candidates(np.arange(6) != 0)

    bandit = ROUTERS["linucb"]().fit(world, np.arange(world.data.n_queries))
    col = bandit.register_candidate("new", world.candidate_emb[0], *world.data.candidate_prices[0])
    legacy = {k: v for k, v in bandit.__dict__.items() if k not in ("_cost_rows", "_unplaced_logs")}
    legacy["_cost_logs"] = {col: [np.log(3)] * 9}
    again = type(bandit).__new__(type(bandit))
    again.__setstate__(legacy)
    q = QueryFeatures(world.query_emb[:2], world.data.query_task[:2], world.query_tokens[:2])
    again.update(q, col, np.ones(2), np.array([np.nan, 3 * plain[1, 0]]))  # one cost posted, one not
    assert again.cost_model.factors[col] == pytest.approx(3 ** (10 / 15))


def test_costs_billed_before_a_price_change_do_not_teach_the_multiplier(tmp_path: Path) -> None:
    """An LLM's price is cut to a quarter (an import with --update dates it: ``LLMNode.priced_at``). Its costs
    observed before were billed at the old prices, 4x what the new ones compute: training must not learn a 4x
    multiplier from them (a retrain would cancel the cut). Costs observed since teach it as before."""
    world = make_world(seed=4)
    data = world.data
    with EmbeddedStore(tmp_path / "graph.db") as store:
        populate(store, world)
        old = [
            Outcome(k, c, float(data.effect[i, j]), float(data.cost[i, j]), observed_at="2026-01-01T00:00:00Z")
            for i, k in enumerate(data.query_keys)
            for j, c in enumerate(data.candidates)
            if np.isfinite(data.cost[i, j])
        ]
        store.write(GraphBatch(outcomes=old))
        cut = store.get_node(LLM, "llm-1")
        assert isinstance(cut, LLMNode)
        store.upsert([replace(cut, input_price=cut.input_price / 4, output_price=cut.output_price / 4,
                              priced_at="2026-06-01T00:00:00Z")])  # fmt: skip
        repriced = build_world(store.snapshot(), HashEmbedder(world))
        stale = CostModel.from_world(repriced)
        # its 4x costs ignored (the others' reflect this world's token counts)
        assert stale.factors[1] == pytest.approx(1.0)
        # costs billed at the new prices since (2x what they compute, say): those teach it
        computed = stale.cost(repriced.query_tokens)[:, 1]
        keys = [k for i, k in enumerate(data.query_keys) if np.isfinite(data.cost[i, 1])][:20]
        since = [
            Outcome(k, "llm-1", 1.0, 2 * float(computed[repriced.data.query_keys.index(k)]),
                    observed_at="2026-07-01T00:00:00Z")
            for k in keys
        ]  # fmt: skip
        store.write(GraphBatch(outcomes=since))
        model = CostModel.from_world(build_world(store.snapshot(), HashEmbedder(world)))
        assert model.factors[1] == pytest.approx(2.0 ** (20 / 25), rel=1e-6)
        np.testing.assert_allclose(np.delete(model.factors, 1, axis=0), np.delete(stale.factors, 1, axis=0))


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_every_router_learns_from_as_few_queries_as_it_says_and_refuses_fewer_clearly(world_split, name: str) -> None:  # type: ignore[no-untyped-def]
    """A small store gave tracebacks (the GNN's neighbour count, the MLP's empty validation split): now each router
    says how many training queries it needs, trainers ask it before embedding, and fit refuses fewer in one line."""
    world, train, test = world_split
    router = ROUTERS[name]()
    need = router.min_queries()
    assert need >= 1
    fitted = router.fit(world, train[:need])
    q = world.features(test[:5], task_given=False)
    assert np.isfinite(fitted.utility(q, SCENARIOS["balance"])).all()
    if need > 1:
        refused = rf"the '{name}' router needs at least {need} training queries with outcomes, got {need - 1}"
        with pytest.raises(GraphRouterError, match=refused):
            ROUTERS[name]().fit(world, train[: need - 1])
        pending = replace(world, data=replace(world.data, effect=world.data.effect.copy()))
        pending.data.effect[train[0]] = np.nan  # a query stored with no outcome (the proxy's, pending) is not one
        with pytest.raises(GraphRouterError, match=refused):
            ROUTERS[name]().fit(pending, train[:need])


@pytest.mark.parametrize("name", ["best_single", "best_per_task", "knn", "knn_task", "mlp", "mf"])
def test_a_candidate_without_outcomes_is_ranked_last_by_the_baselines_not_nan(name: str) -> None:
    """best_per_task gave NaN (which argmax picks, and JSON cannot hold), mlp/mf an untrained guess that ranked it
    above candidates with outcomes, and an effect of 0 alone still let a cheap one win where cost counts, or tie
    where every other candidate fails. The GNN routes such a candidate from its description instead
    (tests/test_gnn.py), and the bandits (linucb, epsilon_greedy) try an arm they know nothing of on purpose."""
    world = make_world(per_task=40)
    data = world.data
    cheap = int(data.candidate_prices[:, 0].argmin())
    data.effect[:, cheap] = data.cost[:, cheap] = np.nan  # the cheapest LLM: no outcome at all
    data.effect[data.query_task == 0] = np.where(np.isnan(data.effect[data.query_task == 0]), np.nan, 0.0)
    train, test = split(world)  # (on task 0 every other LLM fails: a tie with "no outcome" would be a coin toss)
    router = ROUTERS[name]().fit(world, train)
    q = world.features(test, task_given=True)
    for scenario, weights in SCENARIOS.items():
        u = router.utility(q, weights)
        assert np.isfinite(u).all(), (name, scenario)
        assert (router.choose(q, weights) != cheap).all(), (name, scenario)
        assert (u[:, cheap] < np.delete(u, cheap, axis=1).min(axis=1)).all(), (name, scenario)  # strictly last
    assert np.isfinite(router.predict_effect(router.task_inferer.fill(q))).all()
