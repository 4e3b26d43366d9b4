"""Reference predictors of the GNN router, for tests and benchmarks only (serving uses the compiled ego path).

* :func:`predict_effect_reference`: the cold queries' ego-graph through the PyTorch modules, over the cached
  states (what :class:`~graphrouter.routers.gnn.ego.EgoPath` compiles to numpy);
* :func:`predict_effect_full_graph`: the way GraphRouter itself answers: the new queries inserted into the whole
  stored graph and every member run over all of it.

Both compute the same function as :meth:`GnnRouter.predict_effect` (the tests check it to float32 precision).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from graphrouter.routers.gnn.graph import Candidates, build_graph
from graphrouter.routers.gnn.schema import CANDIDATE, QUERY, REV_ANSWERED_BY, REV_OF_TASK, SIMILAR_TO, TASK
from graphrouter.routers.gnn.serving import ServingCache
from graphrouter.routers.gnn.training import Member
from graphrouter.world import QueryFeatures


class FittedGnn(Protocol):
    """What these predictors read of a fitted :class:`graphrouter.routers.gnn.router.GnnRouter` (no import of it:
    the router imports this module)."""

    k_sim: int
    num_layers: int
    members: list[Member]
    _cache: ServingCache

    def _ego_inputs(self, q: QueryFeatures) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...

    def apply_fallback(self, effect: np.ndarray, task: np.ndarray) -> np.ndarray: ...


@torch.no_grad()
def predict_effect_reference(router: FittedGnn, q: QueryFeatures) -> np.ndarray:
    """(n, C) effect probabilities of ``router`` for ``q`` on their ego-graphs, through the PyTorch modules."""
    emb, task, nb, sim, pair_np = router._ego_inputs(q)
    b, k = len(emb), router.k_sim
    pair = torch.as_tensor(pair_np)
    src = torch.as_tensor(nb[:, :k].ravel(), dtype=torch.long)
    ei_sim = torch.stack([torch.arange(b * k), torch.arange(b).repeat_interleave(k)])
    ea_sim = torch.as_tensor(sim[:, :k].reshape(-1, 1), dtype=torch.float32)
    ei_task = torch.arange(b).repeat(2, 1)
    task_t = torch.as_tensor(task)
    no_edges, no_attr = torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 1)
    probs = []
    for m, states in zip(router.members, router._cache.states, strict=True):
        h = m.model.encode({QUERY: torch.as_tensor(emb)})[QUERY]
        for i in range(router.num_layers):
            s = states[i]
            ego = {
                SIMILAR_TO: (s[QUERY][src], ei_sim, ea_sim),
                REV_OF_TASK: (s[TASK][task_t], ei_task, None),
                REV_ANSWERED_BY: (s[CANDIDATE], no_edges, no_attr),  # cold queries have no outcome edges
            }
            h = m.model.ego_query_layer(i, h, ego)
        probs.append(torch.sigmoid(_corrected(router, m.model.decode(h, states[-1][CANDIDATE], pair), task)))
    return router.apply_fallback(torch.stack(probs).mean(0).numpy().astype(np.float64), task)


def _corrected(router: FittedGnn, logits: torch.Tensor, task: np.ndarray) -> torch.Tensor:
    """(B, C) one member's logits with the installed serving state's fitted correction applied (see
    :mod:`~graphrouter.routers.gnn.fit`): the same :meth:`~graphrouter.routers.gnn.correction.Correction.apply`
    as the ego path."""
    correction = router._cache.serving[1].correction
    if correction is None:
        return logits
    return torch.as_tensor(correction.apply(logits.numpy()[None], task)[0])


@torch.no_grad()
def predict_effect_full_graph(router: FittedGnn, q: QueryFeatures) -> np.ndarray:
    """(n, C) effect probabilities of ``router`` for ``q``, the new queries inserted into the whole stored graph
    (cold: no outgoing edges) and every member run over all of it. Slow by design; compares against exact caches
    (refreshed first if a background refresh is due)."""
    cache = router._cache
    with cache.lock:
        cache.ensure_exact()
        emb, task, nb, sim, pair = router._ego_inputs(q)
        stored, cands = cache.stored, cache.candidates
        n, b = len(stored.nodes), len(emb)
        nodes = stored.nodes.extended(emb, task)
        effect = np.r_[cands.effect, np.full((b, cands.effect.shape[1]), np.nan)]
        cold = np.arange(n, n + b)
        graph, _, _ = build_graph(
            nodes,
            Candidates(cands.features, effect, cands.backing),
            np.isfinite(effect),
            np.arange(n),
            cold,
            task,
            (stored.nb, stored.sim, nb, sim),
            router.k_sim,
        )
        probs = []
        for m in router.members:
            hs = m.model(graph.x_dict, graph.edge_index_dict, graph.edge_attr_dict)
            logits = m.model.decode(hs[-1][QUERY][torch.as_tensor(cold)], hs[-1][CANDIDATE], torch.as_tensor(pair))
            probs.append(torch.sigmoid(_corrected(router, logits, task)))
        return router.apply_fallback(torch.stack(probs).mean(0).numpy().astype(np.float64), task)
