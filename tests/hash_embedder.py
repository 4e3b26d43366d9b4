"""``HashEmbedder``: a deterministic stand-in for the sentence embedder, importing numpy only (a benchmark's child
process that serves with it must not pay for importing torch where the service itself does not)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np


class HashEmbedder:
    """Deterministic unit vectors from the text; a query text "task-T ..." lands near task T's direction. ``world``:
    anything with ``query_emb`` (for the width) and ``task_emb``."""

    model_name = "hash-test"

    def __init__(self, world) -> None:  # type: ignore[no-untyped-def]
        self.world = world

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(len(texts), d) vectors; ``progress`` is accepted as the real embedder's (``build_world`` passes it)."""
        out = []
        for t in texts:
            if t.startswith("task-") and t[5:].isdigit() and int(t[5:]) < len(self.world.task_emb):
                out.append(self.world.task_emb[int(t[5:])] / np.linalg.norm(self.world.task_emb[int(t[5:])]))
                continue  # a task's own name (as build_world embeds it): its direction
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
            v = rng.normal(size=self.world.query_emb.shape[1]) * 0.3
            if m := re.match(r"task-(\d+)", t):
                v += self.world.task_emb[int(m.group(1))]
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
