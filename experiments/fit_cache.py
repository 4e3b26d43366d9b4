"""Kept fits are reused only by the code that made them: the experiments' fit caches (``experiments/evaluate.py
--cache``, ``experiments/online.py --fit-cache``, ``experiments/gnn_recipe.py --cache``) put :data:`FINGERPRINT` in
their file names, so a fit kept by an earlier version never reports that version's figures as this one's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import graph_store
import graphrouter


def _fingerprint() -> str:
    """The first 10 hex digits of the SHA-256 of the ``graphrouter`` and ``graph_store`` packages' source (each file's
    path inside its package and its bytes; graph_store's snapshot is the training's data): the same on every checkout
    of one commit, another after any change to either."""
    digest = hashlib.sha256()
    for package in (graphrouter, graph_store):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


FINGERPRINT = _fingerprint()
"""Taken once, when an experiment starts: the code it runs is the code it loaded then (a file edited during a long
run must not key the old code's fits as the new code's)."""
