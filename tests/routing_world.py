"""A small synthetic routing world the tests generate: tasks, queries and LLMs with hidden skills.

Each task has a direction in embedding space; a query is its task's direction plus noise. Each LLM has a hidden
skill per task; an outcome is Bernoulli(sigmoid(skill)). Prices differ, so cost matters in the cost scenarios.
"""

from __future__ import annotations

import numpy as np

from graphrouter.routing_data import RoutingData
from graphrouter.world import World


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
