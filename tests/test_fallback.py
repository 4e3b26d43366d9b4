"""The GNN's validation-selected per-task fallback to the per-task table (graphrouter/routers/gnn/fallback.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphrouter.checkpoint import load_checkpoint, save_checkpoint
from graphrouter.routers.baselines import inner_split
from graphrouter.routers.gnn import GnnRouter
from graphrouter.routers.gnn.fallback import Fallback, select_fallback, task_table
from tests.routing_world import make_world, split


def _truth(n_tasks: int, n_llms: int, per_task: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A world's outcomes, tasks, and each query's true effect probability (the best any predictor can do)."""
    world = make_world(n_tasks=n_tasks, n_llms=n_llms, per_task=per_task, seed=seed)
    task = world.data.query_task
    rng = np.random.default_rng(seed)  # make_world's own draws, replayed: the hidden skills
    rng.normal(size=(n_tasks, 32))
    rng.normal(size=(len(task), 32))
    skill = rng.normal(0.0, 2.0, size=(n_llms, n_tasks))
    return world.data.effect, task, 1 / (1 + np.exp(-skill[:, task].T))


def _held_out(prob: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three "members", each with its own validation split (as fit_member draws them) and predictions there."""
    out = []
    for seed in range(3):
        _, val = inner_split(np.arange(n), 0.15, seed)
        out.append((val, prob[val]))
    return out


def _select(effect: np.ndarray, task: np.ndarray, gnn_prob: np.ndarray) -> Fallback:
    n, c = effect.shape
    zeros = np.zeros((n, c))
    names = [f"task-{t}" for t in range(task.max() + 1)]
    return select_fallback(_held_out(gnn_prob, n), effect, zeros, zeros, task, names, [f"llm-{j}" for j in range(c)])


def test_fires_on_the_task_where_the_gnn_is_worse_than_the_table() -> None:
    effect, task, truth = _truth(4, 5, 400, seed=1)
    gnn = truth.copy()
    gnn[task == 2] = 1.0 - gnn[task == 2]  # on task 2 the "GNN" ranks the LLMs backwards
    fb = _select(effect, task, gnn)
    assert fb.fired == ["task-2"], fb.describe()
    assert fb.verdicts[2].gain > 2 * fb.verdicts[2].se
    assert "1 of 4 tasks fall back" in fb.describe()


def test_does_not_fire_where_the_gnn_is_as_good_or_better() -> None:
    effect, task, truth = _truth(4, 5, 400, seed=1)
    fb = _select(effect, task, truth)  # the true probabilities: no table can route better than these
    assert fb.fired == [], fb.describe()
    assert not fb.tasks.any()


def test_apply_replaces_only_falling_back_tasks_and_trained_candidates_without_fresh_outcomes() -> None:
    table = np.array([[0.1, 0.2], [0.3, np.nan]])
    fb = Fallback(np.array([False, True]), ("a", "b"), table, ())
    pred = np.full((3, 3), 0.5)
    task = np.array([0, 1, 1])
    out = fb.apply(pred, task, ("b", "a", "new"), frozenset())
    np.testing.assert_array_equal(out[0], [0.5, 0.5, 0.5])  # task 0 does not fall back
    np.testing.assert_array_equal(out[1], [0.5, 0.3, 0.5])  # b has no outcome in task 1; "new" is not trained
    out = fb.apply(pred, task, ("b", "a", "new"), frozenset({"a"}))  # a has outcomes since training: its fit
    assert out is pred or np.array_equal(out, pred)
    assert task_table(np.array([[1.0, np.nan], [0.0, np.nan]]), np.array([0, 0]), 1).tolist()[0][0] == 0.5
    # an agent registered since training (not in the table) runs on "a": routed like it, as it takes a's outcomes
    pred4 = np.full((3, 4), 0.5)
    out = fb.apply(pred4, task, ("b", "a", "new", "agent-on-a"), frozenset(), backing={3: 1})
    np.testing.assert_array_equal(out[1], [0.5, 0.3, 0.5, 0.3])
    out = fb.apply(pred4, task, ("b", "a", "new", "agent-on-a"), frozenset({"agent-on-a"}), backing={3: 1})
    assert out[1, 3] == 0.5  # with outcomes of its own: its own prediction
    # a trained candidate's fit from outcomes since training moves its table values as it moves its predictions
    shift = np.zeros((3, 2))
    shift[1, 1] = np.log(0.6 / 0.4) - np.log(0.3 / 0.7)  # a: logit(0.3) → logit(0.6) on task 1
    out = fb.apply(pred, task, ("b", "a", "new"), frozenset(), shift=shift)
    np.testing.assert_allclose(out[1], [0.5, 0.6, 0.5])
    sure = Fallback(np.array([False, True]), ("a", "b"), np.array([[0.1, 0.2], [1.0, 0.99]]), ())
    shift[1, 1] = 1e-3  # a tiny shift leaves a table value of 1 where it is (clipping it moved it below b's 0.99)
    out = sure.apply(pred, task, ("b", "a", "new"), frozenset(), shift=shift)
    assert out[1, 1] > 0.9999 and out[1, 0] == 0.99


def test_the_router_serves_its_fallback_on_every_path_and_in_the_checkpoint(tmp_path: Path) -> None:
    world = make_world(per_task=60)
    train, test = split(world)
    gnn = GnnRouter(seeds=(0, 1), max_episodes=20).fit(world, train)
    assert gnn.fallback is not None and len(gnn.fallback.verdicts) == 4  # chosen at fit, reported per task
    forced = Fallback(np.array([True, False, True, False]), gnn.fallback.candidates, gnn.fallback.table, ())
    gnn.fallback = forced
    q = world.features(test)
    fast = gnn.predict_effect(q)
    np.testing.assert_allclose(fast, gnn.predict_effect_reference(q), atol=1e-5)
    np.testing.assert_allclose(fast, gnn.predict_effect_full_graph(q), atol=1e-5)
    on = np.isin(q.task, [0, 2])
    np.testing.assert_allclose(fast[on], forced.table[q.task[on]])
    gnn.fallback = None
    plain = gnn.predict_effect(q)
    np.testing.assert_allclose(fast[~on], plain[~on])
    assert not np.allclose(fast[on], plain[on])
    gnn.fallback = forced
    # one outcome since training does not switch a trained candidate's fallback off (it moved a dcrouter LLM's
    # share by 8 to 11 points, all on the one falling-back task): its table values move only by its fit
    name, row = world.data.candidates[1], int(train[0])
    gnn.add_outcomes(name, {row: 1.0 - float(world.data.effect[row, 1])})
    assert gnn.wait_exact(60)
    moved = gnn.predict_effect(q)
    assert np.abs(moved[on, 1] - fast[on, 1]).max() < 0.05 < np.abs(plain[on, 1] - fast[on, 1]).max()
    np.testing.assert_allclose(moved, gnn.predict_effect_reference(q), atol=1e-5)
    gnn.add_outcomes(name, {row: float(world.data.effect[row, 1])})  # back as trained
    assert gnn.wait_exact(60)
    save_checkpoint(gnn, "hash-test", tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt").router
    assert loaded.fallback.fired == [] and loaded.fallback.tasks.tolist() == [True, False, True, False]
    np.testing.assert_allclose(loaded.predict_effect(q), fast, atol=1e-6)
    unfit = GnnRouter(seeds=(0,), max_episodes=2, eval_every=1, fallback_z=None).fit(world, train)
    assert unfit.fallback is None
