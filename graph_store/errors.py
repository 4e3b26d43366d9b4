"""One root exception type for the graph store, with specific subclasses.

Callers (the CLI, the API) catch :class:`GraphStoreError` and map the subclasses to exit codes or HTTP statuses.
"""


class GraphStoreError(Exception):
    """Root of every error the graph store raises on purpose."""


class InvalidInputError(GraphStoreError, ValueError):
    """A node, edge or argument is malformed; the message names the field and the problem."""


class NodeNotFoundError(GraphStoreError, KeyError):
    """A node that an operation needs does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "node not found"


class ConflictError(GraphStoreError):
    """A write would contradict what is stored (used by callers that forbid silent overwrites)."""


class StoreUnavailableError(GraphStoreError):
    """The backing database cannot be reached; the operation may be retried later."""
