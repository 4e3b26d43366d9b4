"""Where graphrouter keeps its files by default (one place; no heavy imports, so settings and the CLI can read it)."""

from __future__ import annotations

import tempfile
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
    # a file is really created beside it (the checkpoint is written to a temporary file, then renamed over it: the
    # old file's own mode does not count); os.access would say yes to root on a read-only or virtual file system
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".write-check"):
            pass
    except OSError as exc:
        raise GraphRouterError(f"cannot write {path}: {exc.strerror or exc} ({how})") from None
