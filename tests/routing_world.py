"""A small synthetic routing world the tests generate: tasks, queries and LLMs with hidden skills.

Each task has a direction in embedding space; a query is its task's direction plus noise. Each LLM has a hidden
skill per task; an outcome is Bernoulli(sigmoid(skill)). Prices differ, so cost matters in the cost scenarios.

Also what the API tests share: ``HashEmbedder`` (a deterministic stand-in for the sentence embedder),
``populate`` (the world into a store), ``fit_api_checkpoints`` (a knn_task and a tiny GNN checkpoint) and
``make_api_app`` (the app on a given store, its scorer loaded from one of them), with the API key and a new LLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI

from api.main import create_app
from api.settings import Settings
from graph_store import GraphBatch, GraphStore, LLMNode, Outcome, Query, Task
from graphrouter.checkpoint import save_checkpoint
from graphrouter.routers import ROUTERS
from graphrouter.routers.gnn import GnnRouter
from graphrouter.routing_data import RoutingData
from graphrouter.world import World
from tests.hash_embedder import HashEmbedder

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
NEW_LLM = {"name": "llm-new", "description": "a new model", "input_price": 0.1, "output_price": 0.1}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_world(n_tasks: int = 4, n_llms: int = 5, per_task: int = 120, dim: int = 32, seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(n_tasks, dim))
    task = np.repeat(np.arange(n_tasks), per_task)
    emb = _unit(centroids[task] + 0.6 * rng.normal(size=(len(task), dim)))
    skill = rng.normal(0.0, 2.0, size=(n_llms, n_tasks))  # hidden: which LLM is good at which task
    effect = (rng.random((len(task), n_llms)) < 1 / (1 + np.exp(-skill[:, task].T))).astype(float)
    prices = np.stack([np.linspace(0.1, 2.0, n_llms), np.linspace(0.1, 2.0, n_llms)], 1)
    tokens = rng.integers(20, 400, size=len(task)).astype(float)
    cost = (tokens[:, None] * prices[None, :, 0] + 512 * prices[None, :, 1]) / 1e6
    data = RoutingData(
        query_keys=[f"q{i}" for i in range(len(task))],
        query_text=[f"synthetic query {i}" for i in range(len(task))],
        query_task=task,
        task_names=[f"task-{t}" for t in range(n_tasks)],
        candidates=[f"llm-{j}" for j in range(n_llms)],
        candidate_kind=["LLM"] * n_llms,
        candidate_text=[f"model {j}" for j in range(n_llms)],
        candidate_prices=prices,
        candidate_size_b=np.full(n_llms, np.nan),
        effect=effect,
        cost=cost,
        split=np.array(["train"] * len(task), dtype=object),
    )
    return World(
        data=data,
        query_emb=emb,
        query_tokens=tokens,
        candidate_emb=_unit(rng.normal(size=(n_llms, dim))),
        task_emb=_unit(centroids),
    )


def split(world: World, test_frac: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(world.data.n_queries)
    n_test = int(len(perm) * test_frac)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def populate(store: GraphStore, world: World, base_url: str | None = None, outcomes: bool = True) -> None:
    """The world's tasks, queries, LLMs and (``outcomes``) outcomes into ``store``, as a store a checkpoint was
    trained on holds them; ``base_url``: every LLM's upstream."""
    data = world.data
    rows, cols = np.nonzero(~np.isnan(data.effect)) if outcomes else (np.zeros(0, int), np.zeros(0, int))
    store.write(
        GraphBatch(
            tasks=[Task(t) for t in data.task_names],
            queries=[
                Query(text, data.task_names[t], id=key)
                for key, text, t in zip(data.query_keys, data.query_text, data.query_task, strict=True)
            ],
            llms=[
                LLMNode(name, text, float(p[0]), float(p[1]), base_url=base_url)
                for name, text, p in zip(data.candidates, data.candidate_text, data.candidate_prices, strict=True)
            ],
            outcomes=[
                Outcome(data.query_keys[i], data.candidates[c], float(data.effect[i, c]), float(data.cost[i, c]))
                for i, c in zip(rows.tolist(), cols.tolist(), strict=True)
            ],
        )
    )


def fit_api_checkpoints(world: World, folder: Path) -> dict[str, Path]:
    """A checkpoint per router fitted on every query of ``world``: knn_task (fast) and a tiny GNN (can register
    candidates without retraining)."""
    everything = np.arange(world.data.n_queries)
    routers = {
        "knn_task": ROUTERS["knn_task"]().fit(world, everything),
        "gnn": GnnRouter(seeds=(0,), max_episodes=2, eval_every=1, hidden=8).fit(world, everything),
    }
    for name, router in routers.items():
        save_checkpoint(router, "hash-test", folder / f"{name}.pt")
    return {name: folder / f"{name}.pt" for name in routers}


def make_api_app(store: GraphStore, world: World, folder: Path, **settings: Any) -> FastAPI:
    """The app on ``store`` (injected, not closed by it), its scorer loaded from the ``checkpoint`` setting with the
    HashEmbedder, writes open with ``KEY``; ``settings`` are any others (``folder``: for the unused store file)."""
    config = {"store": str(folder / "unused.db"), "embedding_cache": None, "api_key": KEY}
    return create_app(Settings(**{**config, **settings}), store=store, embedder=HashEmbedder(world))
