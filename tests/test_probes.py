"""Probe sets: spread over tasks by traffic × uncertainty, a seeded random sample within a task, answered queries
skipped, deterministic; the scorer and the ``graphrouter probes`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graph_store import GraphBatch, LLMNode, Task
from graph_store.backends.embedded import EmbeddedStore
from graphrouter import cli, cli_checkpoint
from graphrouter.checkpoint import Checkpoint
from graphrouter.errors import GraphRouterError
from graphrouter.probes import design_probes, random_probes, task_quota
from graphrouter.routers import ROUTERS
from graphrouter.scorer import Scorer
from tests.routing_world import make_world
from tests.test_api import populate
from tests.test_scorer import HashEmbedder


def test_task_quota_follows_traffic_times_uncertainty_and_what_is_left() -> None:
    q = task_quota(np.array([0.5, 0.25, 0.25]), np.ones(3), np.array([100, 100, 100]), 8)
    assert q.tolist() == [4, 2, 2]
    q = task_quota(np.array([0.5, 0.25, 0.25]), np.array([1.0, 1.0, 0.0]), np.array([100, 100, 100]), 6)
    assert q.tolist() == [4, 2, 0]
    q = task_quota(np.array([0.8, 0.1, 0.1]), np.ones(3), np.array([2, 100, 100]), 10)  # task 0 runs out
    assert q.sum() == 10 and q[0] == 2
    assert task_quota(np.array([0.5, 0.5]), np.ones(2), np.array([1, 1]), 5).tolist() == [1, 1]


def test_within_a_task_probes_are_a_seeded_random_sample() -> None:
    task = np.zeros(1000, np.int64)
    a, b = design_probes(task, 1, 50, seed=1), design_probes(task, 1, 50, seed=2)
    assert len(set(a.tolist()) & set(b.tolist())) < 15  # other seeds, other samples
    assert 300 < a.mean() < 700  # spread over the task, not its first rows


def test_design_probes_skips_answered_is_deterministic_and_spreads_over_tasks() -> None:
    task = np.repeat(np.arange(3), 100)
    own = np.full(300, np.nan)
    own[:50] = 1.0  # answered in task 0: it is less uncertain there
    a = design_probes(task, 3, 20, own, seed=1)
    assert len(a) == 20 and len(set(a.tolist())) == 20 and not (a < 50).any()
    assert np.bincount(task[a], minlength=3)[0] < np.bincount(task[a], minlength=3)[1]
    np.testing.assert_array_equal(a, design_probes(task, 3, 20, own, seed=1))
    r = random_probes(300, 20, own, seed=3)
    assert len(r) == 20 and not (r < 50).any()
    np.testing.assert_array_equal(r, random_probes(300, 20, own, seed=3))


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    world = make_world(per_task=30)
    router = ROUTERS["knn_task"]().fit(world, np.arange(world.data.n_queries))
    return Scorer(Checkpoint(router, "hash-test", "", "test"), HashEmbedder(world))


def test_scorer_probes(scorer: Scorer) -> None:
    # a name the router does not know yet (about to be registered) gets probes; a trained LLM answered everything
    probes = scorer.probes("not-yet-registered", 10)
    assert len(probes) == 10 and len({p.id for p in probes}) == 10
    assert probes == scorer.probes("not-yet-registered", 10)
    assert {p.id for p in probes} <= set(scorer.router.world.data.query_keys)
    assert scorer.probes("llm-0", 10) == []
    fresh = scorer.probes("not-yet-registered", 5, answered=[probes[0].id])
    assert len(fresh) == 5 and probes[0].id not in {p.id for p in fresh}
    with pytest.raises(GraphRouterError, match="positive integer"):
        scorer.probes("llm-0", 0)


def test_cli_probes(scorer: Scorer, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "graph.db"
    with EmbeddedStore(path) as store:
        populate(store, scorer.router.world)
        store.write(GraphBatch(llms=[LLMNode("llm-new", "a new model", 0.1, 0.1)]))
    monkeypatch.setattr(cli_checkpoint, "_load_scorer", lambda args, store: scorer)
    assert cli.main(["--store", str(path), "probes", "llm-new", "--k", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 4 and set(out[0]) == {"id", "text", "task"}
    assert cli.main(["--store", str(path), "probes", "llm-new", "--k", "3"]) == 0
    assert "3 probe(s) for llm-new" in capsys.readouterr().out
    assert cli.main(["--store", str(path), "probes", "ghost"]) == 2
    assert "no LLM or agent named 'ghost'" in capsys.readouterr().err
    assert cli.main(["--store", str(path), "probes", "llm-new", "--k", "0"]) == 2
    capsys.readouterr()
    assert cli.main(["--store", str(path), "probes", "llm-new", "--seed", "-1"]) == 2  # was a numpy traceback
    assert "--seed must be from 0 to 2147483647, got -1" in capsys.readouterr().err
    assert cli.main(["--store", str(path), "probes", "llm-0", "--k", "3"]) == 0  # it answered every stored query
    assert "no probes for llm-0: it has an outcome on every stored query" in capsys.readouterr().out  # was "0 probe(s)"

    def closed_pipe(*args: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_probes", closed_pipe)
    monkeypatch.setattr(cli.sys, "stdout", open(tmp_path / "out.txt", "w"))  # noqa: SIM115 - closed by the test
    try:
        assert cli.main(["--store", str(path), "probes", "llm-new"]) == 141  # `… | head`: not "error: Broken pipe"
    finally:
        cli.sys.stdout.close()
    assert capsys.readouterr().err == ""
    with pytest.raises(GraphRouterError, match="seed: must be an integer from 0"):
        scorer.probes("llm-new", 3, seed=2**40)


def test_cli_route_json_has_the_api_shape(scorer: Scorer, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "graph.db"
    with EmbeddedStore(path) as store:
        populate(store, scorer.router.world)
    monkeypatch.setattr(cli_checkpoint, "_load_scorer", lambda args, store: scorer)
    args = ["--store", str(path), "route", "task-1 a question", "--w-effect", "0.8", "--w-cost", "0.2", "--json"]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weights"] == {"w_effect": 0.8, "w_cost": 0.2}
    # the same fields as POST /v1/route's answer (the CLI said "instead_of" and left out the exploration's cost)
    from api.models import RouteResponse

    assert set(out) == set(RouteResponse.model_fields)
    assert RouteResponse.model_validate(out).model_dump(mode="json") == out
    assert len(out["candidates"]) == 3 and out["explored"] is False
    assert cli.main([*args, "--input-tokens", "100000"]) == 0  # a prompt of 100,000 tokens to price
    priced = {c["name"]: c["cost"] for c in json.loads(capsys.readouterr().out)["candidates"]}
    assert all(priced[c["name"]] > c["cost"] for c in out["candidates"] if c["name"] in priced)
    assert cli.main([*args, "--input-tokens", "-1"]) == 2
    assert "error: --input-tokens must be from 0 to 10,000,000, got -1" in capsys.readouterr().err
    assert cli.main([*args, "--max-output-tokens", "16"]) == 0  # a call capped at 16 output tokens
    capped = {c["name"]: c["cost"] for c in json.loads(capsys.readouterr().out)["candidates"]}
    assert all(capped[c["name"]] < c["cost"] for c in out["candidates"] if c["name"] in capped)
    assert cli.main([*args, "--max-output-tokens", "0"]) == 2
    assert "error: --max-output-tokens must be from 1 to 10,000,000, got 0" in capsys.readouterr().err
    assert cli.main(["--store", str(path), "route", "q", "--w-effect", "1"]) == 2
    assert "give both --w-effect and --w-cost" in capsys.readouterr().err
    for flags, said in [  # named by the CLI's flags, not the API's fields
        (["--w-effect", "-1", "--w-cost", "1"], "error: --w-effect: must be a number from 0 to 1000000, got -1"),
        (["--w-effect", "0", "--w-cost", "0"], "error: --w-effect/--w-cost: w_effect and w_cost cannot both be 0"),
        (["--scenario", "fastest"], "error: --scenario: unknown scenario 'fastest'; use one of"),
        (
            ["--scenario", "balance", "--w-effect", "1", "--w-cost", "0"],
            "error: --scenario: give a scenario or explicit",
        ),
    ]:
        assert cli.main(["--store", str(path), "route", "q", *flags]) == 2
        assert said in capsys.readouterr().err

    # as the API answers: an empty filter, and a task registered after training (not "unknown task")
    assert cli.main(["--store", str(path), "route", "q", "--candidates", ""]) == 2
    assert "--candidates is empty" in capsys.readouterr().err
    with EmbeddedStore(path) as store:
        store.write(GraphBatch(tasks=[Task("late-task")]))
    assert cli.main(["--store", str(path), "route", "q", "--task", "late-task"]) == 2
    assert "'late-task' was registered after the checkpoint was trained" in capsys.readouterr().err
    with EmbeddedStore(path) as store:  # as if deleted and registered again with another description
        store.write(GraphBatch(tasks=[Task("task-0", "recipes and cooking times")]))
    assert cli.main(["--store", str(path), "route", "q", "--task", "task-0"]) == 2
    assert "'task-0' was registered again with another description since the checkpoint" in capsys.readouterr().err
    assert cli.main(["--store", str(path), "route", "q", "--task", "task-1"]) == 0  # as trained
    monkeypatch.setattr(cli_checkpoint, "_load_scorer", lambda args, store: pytest.fail("loaded for a bad argument"))
    both = ["--scenario", "balance", "--w-effect", "1", "--w-cost", "0"]
    for bad in (["--k", "0"], ["--budget", "0"], ["--w-effect", "1", "--w-cost", "-1"], ["--scenario", "fast"], both):
        assert cli.main(["--store", str(path), "route", "q", *bad]) == 2, bad
    assert cli.main(["--store", str(path), "route", "  "]) == 2
    assert "the query is empty" in capsys.readouterr().err


def test_cli_routes_around_an_llm_deleted_since_training(scorer: Scorer, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from graph_store import LLM
    from graphrouter import loading
    from graphrouter.checkpoint import save_checkpoint

    world = scorer.router.world
    path, ckpt = tmp_path / "graph.db", tmp_path / "c.pt"
    with EmbeddedStore(path) as store:
        populate(store, world)
        store.delete_node(LLM, "llm-0")  # as DELETE /v1/llms/llm-0 does; the service routes around it
    save_checkpoint(scorer.router, "hash-test", ckpt)
    embedder = HashEmbedder(world)
    embedder.dim = 0  # type: ignore[attr-defined] # what load_scorer touches to load a real model at once
    monkeypatch.setattr(loading, "make_embedder", lambda *args, **kw: embedder)
    args = ["--store", str(path), "route", "task-0 a question", "--k", "10", "--checkpoint", str(ckpt), "--json"]
    assert cli.main(args) == 0
    out = capsys.readouterr()
    names = [c["name"] for c in json.loads(out.out)["candidates"]]
    assert "llm-0" not in names and len(names) == world.data.n_candidates - 1
    assert out.err.count("llm-0") == 1  # once, not by both the loader and the CLI
    assert "note: not in the store as trained, not routed to until a retrain: llm-0" in out.err
