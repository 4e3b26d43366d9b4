"""The inductive heterogeneous GNN router: query / task / candidate nodes, no learned per-id embedding.

The package, one concern per module:

* :mod:`~graphrouter.routers.gnn.schema`: node and edge-type names, the pair-feature sizes;
* :mod:`~graphrouter.routers.gnn.model`: the message-passing layers and the model (encoders, layers, decoder);
* :mod:`~graphrouter.routers.gnn.observed`: aggregates of the observed outcomes, pair features, agent inheritance,
  candidate node features;
* :mod:`~graphrouter.routers.gnn.graph`: the pure graph builder and the query neighbours;
* :mod:`~graphrouter.routers.gnn.training`: episode sampling and the training loop of one ensemble member;
* :mod:`~graphrouter.routers.gnn.serving`: the serving cache, its lock and its background refresh;
* :mod:`~graphrouter.routers.gnn.ego`: the request path compiled to numpy;
* :mod:`~graphrouter.routers.gnn.reference`: reference predictors for tests and benchmarks;
* :mod:`~graphrouter.routers.gnn.fit`: the fast fit from outcomes (a candidate's offsets, fitted to its fresh ones);
* :mod:`~graphrouter.routers.gnn.correction`: the fitted offsets and model-average weights a serving state applies;
* :mod:`~graphrouter.routers.gnn.fallback`: the validation-selected per-task fallback to the per-task table;
* :mod:`~graphrouter.routers.gnn.candidate_list`: registering, removing and observing candidates without retraining;
* :mod:`~graphrouter.routers.gnn.router`: :class:`GnnRouter` itself (registered as ``"gnn"``).
"""

from graphrouter.routers.gnn.router import GnnRouter

__all__ = ["GnnRouter"]
