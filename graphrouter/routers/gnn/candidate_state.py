"""A candidate's node state in the GNN's serving cache, from the cached states of the nodes that send to it.

A candidate receives messages from the stored queries with an outcome for it (``answered_by``) and from every task
(``task_candidate``). A message reads its sender's state and the edge's effect only, not the candidate's own state,
so each layer's aggregate is a mean of messages that do not change while the senders' cached states do not: the
cache keeps every candidate's *sum* of them per layer (:data:`LayerState`, filled by :func:`keep_message_sums` from
the forward pass), and an outcome changes its candidate's sum by the messages of the rows it changes only
(:func:`candidate_rows`): the work follows the rows that change, not the candidate's number of outcomes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch_geometric.typing import EdgeType

from graphrouter.routers.gnn.graph import Candidates
from graphrouter.routers.gnn.model import EdgeMLPConv, HeteroRouterGNN
from graphrouter.routers.gnn.observed import Observed
from graphrouter.routers.gnn.schema import ANSWERED_BY, CANDIDATE, QUERY, TASK_CANDIDATE

# one layer of the serving cache: each node type's states and, at the layers a convolution reads (all but the last),
# ANSWERED_BY: every candidate's sum of that relation's messages (float64, candidates × hidden)
LayerState = dict[str | EdgeType, Tensor]


def keep_message_sums(
    model: HeteroRouterGNN, hs: list[LayerState], kept: list[Tensor | None], visible: np.ndarray
) -> list[LayerState]:
    """``hs`` (a forward pass's layers, changed in place and returned) with each layer's ANSWERED_BY message sums
    (as precise as the float32 mean they are rebuilt from), from that relation's outputs
    ``kept`` (:meth:`HeteroRouterGNN.forward_keeping`: root(h_candidate) + the mean of its messages) and the
    ``visible`` outcomes (N, C) that are its edges."""
    count = torch.as_tensor(visible.sum(0), dtype=torch.float64)[:, None]
    for i, out in enumerate(kept):
        h = hs[i][CANDIDATE]
        mean = torch.zeros_like(h) if out is None else out - model.convs[i].convs[ANSWERED_BY].root(h)
        hs[i][ANSWERED_BY] = mean.double() * count
    return hs


def _messages(conv: EdgeMLPConv, query_states: Tensor, rows: np.ndarray, effect: np.ndarray) -> Tensor:
    """The float64 sum of ``conv``'s messages from stored queries ``rows`` with their ``effect`` (one per row)."""
    if not len(rows):
        return torch.zeros(query_states.shape[1], dtype=torch.float64)
    attr = torch.as_tensor(effect[rows], dtype=torch.float32)[:, None]
    return conv.message(query_states[torch.as_tensor(rows)], attr).double().sum(0)


@torch.no_grad()
def candidate_rows(
    model: HeteroRouterGNN,
    cands: Candidates,
    obs: Observed,
    states: list[LayerState],
    c: int,
    was: tuple[Observed, int] | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Candidate ``c``'s state at every layer, and its sum of ANSWERED_BY messages at every layer a convolution
    reads, from the cached states of the nodes that send to it: the queries with a visible outcome for it
    (``answered_by``, the effect as attribute; a message reads its query's state and the effect only) and every
    task (``task_candidate``), the same edges :func:`~graphrouter.routers.gnn.graph.build_graph` gives it. With
    ``was`` (the observed aggregates ``states`` were computed with, and its column there): its sums in ``states``
    with the messages of the rows whose outcome changed taken out and put back, work that follows the change, not
    the number of its outcomes (one outcome of a candidate with 100k); otherwise every message is summed."""
    visible, effect = obs.visible[:, c], obs.effect[:, c]
    incremental = was is not None and ANSWERED_BY in states[0]
    plus, minus, was_effect = np.flatnonzero(visible), np.zeros(0, np.int64), effect  # every message, or:
    if incremental:  # the messages of the rows whose outcome changed, taken out (minus) and put back (plus)
        obs_was, old_column = was
        was_visible, was_effect = obs_was.visible[:, old_column], obs_was.effect[:, old_column]
        diff = (was_visible != visible) | (visible & (was_effect != effect))
        plus, minus = np.flatnonzero(diff & visible), np.flatnonzero(diff & was_visible)
    count = max(int(visible.sum()), 1)  # mean aggregation: a candidate without outcomes gets 0
    task_attr = np.stack([obs.task_mean[:, c], np.log1p(obs.task_count[:, c]) / 5], 1).astype(np.float32)
    h = [model.enc[CANDIDATE](torch.as_tensor(cands.features[c : c + 1]))]
    sums = []
    for i in range(len(states) - 1):
        out = 0
        for et, conv in model.convs[i].convs.items():
            if et[2] != CANDIDATE:
                continue
            if et == ANSWERED_BY:
                total = states[i][ANSWERED_BY][old_column] if incremental else 0
                total = (
                    total
                    + _messages(conv, states[i][QUERY], plus, effect)
                    - _messages(conv, states[i][QUERY], minus, was_effect)
                )
                sums.append(total)
                out = out + conv.root(h[i]) + (total / count).float()[None]
            elif et == TASK_CANDIDATE:  # every task sends to every candidate
                local = torch.stack([torch.arange(len(task_attr)), torch.zeros(len(task_attr), dtype=torch.long)])
                out = out + conv((states[i][et[0]], h[i]), local, torch.as_tensor(task_attr))
            else:
                raise NotImplementedError(f"a candidate's state cannot be patched with relation {et} yet")
        h.append(model._post(i, CANDIDATE, out, h[i]))
    return [x[0] for x in h], sums
