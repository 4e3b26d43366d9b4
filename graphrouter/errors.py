"""Errors raised by graphrouter on purpose; all derive from graph_store's root so one ``except`` catches both."""

from __future__ import annotations

from pathlib import Path

from graph_store.errors import GraphStoreError, InvalidInputError


class GraphRouterError(GraphStoreError):
    """Root of graphrouter's own errors."""


class DataFileError(GraphRouterError, InvalidInputError):
    """An input file is missing or malformed; the message names the file (and line) and what is wrong."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path, self.problem, self.line = Path(path), problem, line
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")
