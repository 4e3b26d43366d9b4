"""The GNN router's graph schema: node types, edge types and the size of the pair features.

Graph (a :class:`~torch_geometric.data.HeteroData`, built by :func:`~graphrouter.routers.gnn.graph.build_graph`):

* ``query -answered_by-> candidate`` and its reverse: the *visible* observed outcomes of *stored* queries
  (edge attribute: effect);
* ``query -of_task-> task`` (stored queries only) and ``task -rev_of_task-> query`` (stored and cold queries);
* ``query -similar_to-> query``: the ``k_sim`` nearest stored queries by cosine (edge attribute: similarity);
* ``task -task_candidate-> candidate`` and its reverse: the shrunk observed mean effect of the candidate on the
  task and log(1 + count).
"""

from __future__ import annotations

QUERY, TASK, CANDIDATE = "query", "task", "candidate"
ANSWERED_BY = (QUERY, "answered_by", CANDIDATE)
REV_ANSWERED_BY = (CANDIDATE, "rev_answered_by", QUERY)
OF_TASK = (QUERY, "of_task", TASK)
REV_OF_TASK = (TASK, "rev_of_task", QUERY)
SIMILAR_TO = (QUERY, "similar_to", QUERY)
TASK_CANDIDATE = (TASK, "task_candidate", CANDIDATE)
REV_TASK_CANDIDATE = (CANDIDATE, "rev_task_candidate", TASK)

PAIR_KS = (5, 20, 40)  # neighbour scales of the pair features; the largest is k_pair
N_PAIR = 14  # pair features per (query, candidate): see Observed.pair_features
