"""Candidate changes do work proportional to the change: the incrementally updated serving state (observed
aggregates, candidate states and their message sums, ego path) equals one rebuilt from scratch, and a batch
registration equals one-by-one registrations."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from graphrouter.routers.base import NewCandidate
from graphrouter.routers.gnn import GnnRouter
from graphrouter.routers.gnn.candidate_state import candidate_rows
from graphrouter.routers.gnn.ego import EgoPath
from graphrouter.routers.gnn.graph import serving_graph
from graphrouter.routers.gnn.schema import ANSWERED_BY, CANDIDATE, QUERY
from tests.routing_world import make_world

TINY = {"seeds": (0,), "max_episodes": 2, "eval_every": 1, "hidden": 8}


@pytest.fixture(scope="module")
def fitted():  # type: ignore[no-untyped-def]
    world = make_world(per_task=30)
    return world, GnnRouter(**TINY).fit(world, np.arange(world.data.n_queries))


def _assert_rebuilt(gnn: GnnRouter) -> None:
    cache = gnn._cache
    with cache.lock:  # no background refresh installs meanwhile
        (obs, ego), states = cache.serving, cache.states
    _, fresh = serving_graph(cache.stored, cache.candidates)
    for name in ("visible", "effect", "count", "task_count", "mean", "task_mean", "rel", "task_rel"):
        np.testing.assert_allclose(getattr(obs, name), getattr(fresh, name), atol=1e-9, err_msg=name)
    for model, layers in zip(cache.models, states, strict=True):  # each candidate's rows, every message summed
        for c in range(len(cache.candidates.features)):
            h, sums = candidate_rows(model, cache.candidates, obs, layers, c)
            for i, layer in enumerate(layers):
                np.testing.assert_allclose(layer[CANDIDATE][c], h[i], atol=1e-5, err_msg=f"column {c}, layer {i}")
                if ANSWERED_BY in layer:  # (a state pickled before it kept them has none until a refresh)
                    np.testing.assert_allclose(layer[ANSWERED_BY][c], sums[i], atol=1e-4, err_msg=f"sum {c}, {i}")
    rebuilt = EgoPath(cache.models, states, cache.stored.k_sim)
    np.testing.assert_allclose(ego.dec_cand, rebuilt.dec_cand, atol=1e-5)
    np.testing.assert_allclose(ego.cand, rebuilt.cand, atol=1e-6)


def test_incremental_changes_equal_a_rebuild(fitted) -> None:  # type: ignore[no-untyped-def]
    world, gnn = fitted
    rng = np.random.default_rng(0)
    outcomes = {int(i): float(rng.random() < 0.5) for i in rng.choice(world.data.n_queries, 15, replace=False)}
    _assert_rebuilt(gnn)  # the exact state's message sums (kept from the forward pass)
    trained = gnn.candidates[0]
    flip = {q: 1.0 - float(gnn._cache.candidates.effect[q, 0]) for q in (4, 9)}  # outcomes it was trained with
    changes = [
        lambda: gnn.add_outcomes(trained, flip),  # changed on stored queries: their old messages leave the sums
        lambda: gnn.register_candidate("new-a", world.candidate_emb[0], 0.2, 0.3, None, outcomes),
        lambda: gnn.register_candidate("agent-a", world.candidate_emb[1], 0.2, 0.3, None, {0: 1.0}, backed_by="new-a"),
        lambda: gnn.add_outcomes("new-a", {1: 0.0, 2: 1.0, 3: 1.0}),
        lambda: gnn.remove_candidate("llm-2"),
        lambda: gnn.remove_candidate("agent-a"),
    ]
    for change in changes:
        with gnn._cache.lock:  # the patched state is checked before a background refresh can replace it
            change()
            assert not gnn._cache._exact.is_set()
            _assert_rebuilt(gnn)
    assert gnn.wait_exact(60)


@pytest.mark.parametrize("training", [False, True])
def test_the_models_layer_is_heteroconvs_op_for_op_and_keeps_a_relations_output(fitted, training: bool) -> None:  # type: ignore[no-untyped-def]
    """The model's layer loop (which keeps one relation's output for the serving cache's message sums, without a
    hook on shared modules: a hook made a checkpoint written during a background refresh unpicklable) gives
    HeteroConv's states bit for bit, dropout included."""
    _, gnn = fitted
    model = gnn._cache.models[0]
    graph, _ = serving_graph(gnn._cache.stored, gnn._cache.candidates)
    args = (graph.x_dict, graph.edge_index_dict, graph.edge_attr_dict)
    model.train(training)
    try:
        torch.manual_seed(0)
        hs = [model.encode(graph.x_dict)]
        for i, conv in enumerate(model.convs):  # the layer as HeteroConv computes it
            out = conv(hs[-1], graph.edge_index_dict, edge_attr_dict=graph.edge_attr_dict)
            hs.append({nt: model._post(i, nt, out[nt], h) for nt, h in hs[-1].items()})
        torch.manual_seed(0)
        mine, kept = model.forward_keeping(*args, ANSWERED_BY)
    finally:
        model.eval()
    for want, got in zip(hs, mine, strict=True):
        assert want.keys() == got.keys() and all(torch.equal(want[nt], got[nt]) for nt in want)
    edges = (graph.edge_index_dict[ANSWERED_BY], graph.edge_attr_dict[ANSWERED_BY])
    for i, out in enumerate(kept):  # the relation's own output at each layer (it has no dropout)
        assert torch.equal(out, model.convs[i].convs[ANSWERED_BY]((mine[i][QUERY], mine[i][CANDIDATE]), *edges))


def test_a_state_pickled_without_message_sums_sums_every_message_until_a_refresh() -> None:
    """A checkpoint written before the cache kept its candidates' message sums loads as it is (no pass over the
    graph in the load); a change then sums every message of its candidate, and the refresh after it brings the sums."""
    world = make_world(per_task=30)
    gnn = GnnRouter(**TINY).fit(world, np.arange(world.data.n_queries))
    cache = gnn._cache
    cache.states = [[{k: v for k, v in layer.items() if k != ANSWERED_BY} for layer in m] for m in cache.states]
    old = pickle.loads(pickle.dumps(gnn))  # noqa: S301 - the test's own
    assert all(ANSWERED_BY not in layer for m in old._cache.states for layer in m)  # not recomputed in the load
    with old._cache.lock:
        old.add_outcomes(old.candidates[1], {3: 1.0 - float(old._cache.candidates.effect[3, 1])})
        _assert_rebuilt(old)
    assert old.wait_exact(60)
    assert all(ANSWERED_BY in layer for m in old._cache.states for layer in m[:-1])
    _assert_rebuilt(old)


def test_a_batch_registration_equals_one_by_one() -> None:
    world = make_world(per_task=30)
    everything = np.arange(world.data.n_queries)
    one, batch = (GnnRouter(**TINY).fit(world, everything) for _ in range(2))
    specs = [
        NewCandidate("b-0", world.candidate_emb[0], 0.1, 0.2, None, {0: 1.0, 5: 0.0}),
        NewCandidate("b-1", world.candidate_emb[1], 0.3, 0.4, 7.0, {}, None, {0: 0.01}),
        NewCandidate("b-agent", world.candidate_emb[2], 0.1, 0.2, None, {}, "b-0"),
    ]
    for spec in specs:
        one.register_candidate(**vars(spec))
    assert batch.register_candidates(specs) == [5, 6, 7]
    assert one.candidates == batch.candidates and one.kinds == batch.kinds
    assert one.wait_exact(60) and batch.wait_exact(60)
    q = world.features(everything[:20])
    np.testing.assert_allclose(one.utility(q, (1.0, 0.5)), batch.utility(q, (1.0, 0.5)), atol=1e-6)
    np.testing.assert_allclose(one.cost_model.factors, batch.cost_model.factors)
