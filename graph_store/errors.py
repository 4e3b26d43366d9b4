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


class ChangeLogTruncatedError(GraphStoreError):
    """The change log no longer holds every change after the version asked for: the changes up to ``pruned_through``
    were pruned (or the store was cleared). A follower that gets this has missed changes it can no longer read and
    must rebuild what it holds from the store (a full resync), then follow the log from the latest version."""

    def __init__(self, version: int, pruned_through: int) -> None:
        super().__init__(
            f"the change log was pruned through version {pruned_through}; the changes after version {version} are "
            "no longer all in it: resync from the store"
        )
        self.version = version
        self.pruned_through = pruned_through
