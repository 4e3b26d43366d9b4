"""The embedding cache: each text is embedded once, across runs (SQLite), and memory stays bounded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphrouter.embeddings import Embedder


class CountingModel:
    """Stands in for the sentence-transformers model (not what is tested here): a vector per text, counted."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        self.seen.extend(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    def get_embedding_dimension(self) -> int:
        return 2


def _embedder(path: Path, memory_size: int = 200_000) -> tuple[Embedder, CountingModel]:
    emb = Embedder(cache_path=path, memory_size=memory_size)
    emb._model = model = CountingModel()
    return emb, model


def test_each_text_is_embedded_once_across_runs_and_memory_is_bounded(tmp_path: Path) -> None:
    first, model = _embedder(tmp_path / "cache.sqlite", memory_size=3)
    texts = [f"query {i}" * (i + 1) for i in range(10)]
    out = first.embed(texts + texts[:2])
    assert model.seen == texts  # the repeats in the same call are not embedded again
    assert len(first._memory) == 3  # the most recent three stay in memory, the file keeps all
    np.testing.assert_array_equal(first.embed([texts[0]])[0], out[0])  # back from the file
    assert model.seen == texts
    first.close()

    second, model2 = _embedder(tmp_path / "cache.sqlite")
    np.testing.assert_array_equal(second.embed(texts), out[:10])
    assert model2.seen == []  # a new run embeds nothing it has seen
    second.embed(["something new"])
    assert model2.seen == ["something new"]
