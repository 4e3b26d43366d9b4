"""graphrouter's errors: one root, :class:`GraphRouterError`, separate from the store's ``GraphStoreError``.

Callers (the CLI, the API) catch both roots and map the subclasses to exit codes or HTTP statuses.
"""

from __future__ import annotations

from pathlib import Path


class GraphRouterError(Exception):
    """Root of graphrouter's own errors: a request or an input the router cannot use (the message says why)."""


class DataFileError(GraphRouterError, ValueError):
    """An input file is missing or malformed; the message names the file (and line) and what is wrong."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path, self.problem, self.line = Path(path), problem, line
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


class CheckpointError(GraphRouterError):
    """A checkpoint is missing, corrupt, or does not fit the graph or the embedding model."""


class ScorerUnavailableError(GraphRouterError):
    """No scorer is loaded (no checkpoint yet, or the store was down when it was loaded)."""


class CandidateExistsError(GraphRouterError, ValueError):
    """A candidate of that name is already routable (raised by the router, the one owner of the candidate list)."""


class UnknownCandidateError(GraphRouterError, ValueError):
    """A name that is not a candidate of the router."""


class QueryTooLongError(GraphRouterError):
    """A query text over the configured limit (the message says both lengths)."""


class InvalidTextError(GraphRouterError, ValueError):
    """A text that cannot be embedded: not a string, or not valid Unicode (a lone surrogate such as ``"\\ud800"``)."""
