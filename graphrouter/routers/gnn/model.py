"""The GNN router's model: per-type encoders, ``num_layers`` heterogeneous message-passing layers and a pair
decoder.

The decoder scores a (query, candidate) pair from ``[h_q, h_c, h_q ⊙ h_c, pair]``, where ``pair`` are metapath
aggregates of the same graph (:meth:`~graphrouter.routers.gnn.observed.Observed.pair_features`: similarity-weighted
neighbour effects at several k, the task mean, the candidate's global mean and relative skill), plus a linear skip
path from the pair features. There is no learned per-id embedding: the model is inductive in new queries and new
candidates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import HeteroConv, MessagePassing
from torch_geometric.typing import EdgeType, Metadata, NodeType

from graphrouter.routers.gnn.schema import N_PAIR, QUERY


class EdgeMLPConv(MessagePassing):
    """``out = W h_dst + mean_j MLP([h_j, e_ji])``; without edge attributes the message is ``MLP(h_j)``."""

    def __init__(self, hidden: int, edge_dim: int) -> None:
        super().__init__(aggr="mean")
        self.edge_dim = edge_dim
        self.msg = nn.Sequential(nn.Linear(hidden + edge_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.root = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x: Tensor | tuple[Tensor, Tensor], edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        x_src, x_dst = x if isinstance(x, tuple) else (x, x)
        aggr = self.propagate(edge_index, x=(x_src, x_dst), edge_attr=edge_attr, size=(len(x_src), len(x_dst)))
        return self.root(x_dst) + aggr

    def message(self, x_j: Tensor, edge_attr: Tensor | None) -> Tensor:
        return self.msg(x_j if self.edge_dim == 0 else torch.cat([x_j, edge_attr], -1))


class HeteroRouterGNN(nn.Module):
    """Per-type encoders → ``num_layers`` × HeteroConv (sum over relations; run by :meth:`forward_keeping` op for
    op, which can also return one relation's output) with LayerNorm, ReLU, dropout and a residual → a pair decoder.
    Built from a graph's ``metadata()`` and its feature/edge-attribute sizes."""

    def __init__(
        self,
        metadata: Metadata,
        in_dims: dict[NodeType, int],
        edge_dims: dict[EdgeType, int],
        hidden: int = 32,
        num_layers: int = 2,
        dropout: float = 0.3,
        in_drop: float = 0.7,
    ) -> None:
        super().__init__()
        node_types, edge_types = metadata
        self.in_drop = nn.Dropout(in_drop)  # on query text embeddings: the main guard against memorising queries
        self.enc = nn.ModuleDict(
            {
                nt: nn.Sequential(nn.Linear(in_dims[nt], hidden), nn.ReLU(), nn.Linear(hidden, hidden))
                for nt in node_types
            }
        )
        self.convs = nn.ModuleList(
            HeteroConv({et: EdgeMLPConv(hidden, edge_dims[et]) for et in edge_types}, aggr="sum")
            for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(
            nn.ModuleDict({nt: nn.LayerNorm(hidden) for nt in node_types}) for _ in range(num_layers)
        )
        self.drop = nn.Dropout(dropout)
        self.dec = nn.Sequential(
            nn.Linear(3 * hidden + N_PAIR, 2 * hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )
        self.skip = nn.Linear(N_PAIR, 1)  # the pair features' direct path: the MLP only learns a correction

    def encode(self, x_dict: dict[NodeType, Tensor]) -> dict[NodeType, Tensor]:
        return {nt: self.enc[nt](self.in_drop(x) if nt == QUERY else x) for nt, x in x_dict.items()}

    def _post(self, i: int, nt: NodeType, out: Tensor, h: Tensor) -> Tensor:
        return self.drop(F.relu(self.norms[i][nt](out))) + h

    def forward(
        self,
        x_dict: dict[NodeType, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        edge_attr_dict: dict[EdgeType, Tensor],
    ) -> list[dict[NodeType, Tensor]]:
        """Every layer's node states ``[h0, h1, ..., hL]`` (the serving cache keeps them all)."""
        return self.forward_keeping(x_dict, edge_index_dict, edge_attr_dict)[0]

    def forward_keeping(
        self,
        x_dict: dict[NodeType, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        edge_attr_dict: dict[EdgeType, Tensor],
        relation: EdgeType | None = None,
    ) -> tuple[list[dict[NodeType, Tensor]], list[Tensor | None]]:
        """:meth:`forward`, and each layer's output of ``relation``'s convolution alone (before the sum over
        relations; None at a layer the graph gives none of its edges). A layer is :class:`HeteroConv`'s, op for op:
        every relation with edges in ``edge_index_dict`` (with its ``edge_attr_dict`` entry, if any), summed per
        destination type in the order of its ``convs``."""
        hs = [self.encode(x_dict)]
        kept: list[Tensor | None] = []
        for i, conv in enumerate(self.convs):
            h, outs = hs[-1], {}
            kept.append(None)
            for et, sub in conv.convs.items():
                if et not in edge_index_dict:
                    continue
                src, _, dst = et
                attr = {"edge_attr": edge_attr_dict[et]} if et in edge_attr_dict else {}
                out = sub(h[src] if src == dst else (h[src], h[dst]), edge_index_dict[et], **attr)
                outs.setdefault(dst, []).append(out)
                if et == relation:
                    kept[-1] = out
            summed = {nt: xs[0] if len(xs) == 1 else torch.stack(xs).sum(0) for nt, xs in outs.items()}
            hs.append({nt: self._post(i, nt, summed[nt], x) for nt, x in h.items()})
        return hs, kept

    def ego_query_layer(
        self, i: int, h_query: Tensor, ego: dict[EdgeType, tuple[Tensor, Tensor, Tensor | None]]
    ) -> Tensor:
        """Layer ``i`` for cold queries only, from their ego-graph: ``ego[edge_type] = (source states, edge_index
        (source row, query row), edge_attr)`` for every relation ending at a query (as in :meth:`forward`)."""
        conv = self.convs[i]
        out = 0
        for et, sub in conv.convs.items():
            if et[2] == QUERY:
                x_src, edge_index, edge_attr = ego[et]
                out = out + sub((x_src, h_query), edge_index, edge_attr)
        return self._post(i, QUERY, out, h_query)

    def decode(self, h_query: Tensor, h_candidate: Tensor, pair: Tensor) -> Tensor:
        """Effect logits (B, C) from query states (B, h), candidate states (C, h) and pair features (B, C, N_PAIR)."""
        b, c = pair.shape[:2]
        hq = h_query[:, None, :].expand(b, c, -1)
        hc = h_candidate[None, :, :].expand(b, c, -1)
        return self.dec(torch.cat([hq, hc, hq * hc, pair], -1)).squeeze(-1) + self.skip(pair).squeeze(-1)
