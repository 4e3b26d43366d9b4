"""The graph of record: schema, one interface, an embedded backend (default) and a Neo4j backend.

Nothing in this package imports torch.
"""

from graph_store.base import MAX_PAGE_INDEX, GraphStore
from graph_store.errors import (
    ChangeLogTruncatedError,
    ConflictError,
    GraphStoreError,
    InvalidInputError,
    NodeNotFoundError,
    StoreUnavailableError,
)
from graph_store.factory import DEFAULT_STORE, open_store
from graph_store.schema import (
    AGENT,
    ANSWERED_BY,
    BACKED_BY,
    EDGE_TYPES,
    HANDLED_BY,
    LLM,
    NODE_LABELS,
    OF_TASK,
    QUERY,
    TASK,
    Agent,
    GraphBatch,
    LLMNode,
    Outcome,
    PendingOutcome,
    Query,
    Task,
    billed_since,
    query_id,
)
from graph_store.snapshot import EdgeTable, GraphSnapshot, NodeTable

__all__ = [
    "AGENT", "ANSWERED_BY", "BACKED_BY", "EDGE_TYPES", "HANDLED_BY", "LLM", "MAX_PAGE_INDEX", "NODE_LABELS",
    "OF_TASK", "QUERY", "TASK", "Agent", "ChangeLogTruncatedError", "ConflictError", "DEFAULT_STORE", "EdgeTable",
    "GraphBatch", "GraphSnapshot", "GraphStore", "GraphStoreError", "InvalidInputError", "LLMNode",
    "NodeNotFoundError", "NodeTable", "Outcome", "PendingOutcome", "Query", "StoreUnavailableError", "Task",
    "billed_since", "open_store", "query_id",
]  # fmt: skip
