"""Kept fits are reused only by the code that made them: the experiments' fit caches (``experiments/evaluate.py
--cache``, ``experiments/online.py --fit-cache``, ``experiments/gnn_recipe.py --cache``) put this fingerprint in
their file names, so a fit kept by an earlier version never reports that version's figures as this one's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import graphrouter


def code_fingerprint() -> str:
    """The first 10 hex digits of the SHA-256 of the ``graphrouter`` package's source (its files' paths inside the
    package and their bytes): the same on every checkout of one commit, another after any change to the package."""
    digest, root = hashlib.sha256(), Path(graphrouter.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]
