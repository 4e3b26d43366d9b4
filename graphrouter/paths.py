"""Where graphrouter keeps its files by default (one place; no heavy imports, so settings and the CLI can read it)."""

from __future__ import annotations

import os
from pathlib import Path

from graphrouter.errors import GraphRouterError

DEFAULT_DIR = Path(".graphrouter")
DEFAULT_CHECKPOINT = DEFAULT_DIR / "checkpoint.pt"


def check_writable(path: Path, how: str = "give --checkpoint, or GRAPHROUTER_CHECKPOINT") -> None:
    """A :class:`GraphRouterError` now if a file cannot be written at ``path`` (its folder is created if missing), so
    that a training does not find it out after fitting; ``how``: how the user names another path."""
    if path.is_dir():
        raise GraphRouterError(f"cannot write {path}: it is a directory; give a file, e.g. {path / 'checkpoint.pt'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GraphRouterError(f"cannot write {path}: {exc.strerror or exc} ({how})") from None
    if not os.access(path.parent, os.W_OK):  # (the file itself is replaced by a rename: its own mode does not count)
        raise GraphRouterError(f"cannot write {path}: permission denied ({how})")
