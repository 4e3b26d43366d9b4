"""The embedding cache (each text is embedded once, across runs, and memory stays bounded) and the two encoders
(the ONNX export agrees with sentence-transformers' own forward pass)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from graphrouter.embeddings import Embedder, onnx_file
from graphrouter.errors import GraphRouterError, InvalidTextError


class CountingModel:
    """Stands in for the encoder (not what is tested here): a vector per text, counted."""

    dim = 2

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        self.seen.extend(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def _embedder(path: Path, memory_size: int = 200_000) -> tuple[Embedder, CountingModel]:
    emb = Embedder(cache_path=path, memory_size=memory_size)
    emb._encoder = model = CountingModel()  # type: ignore[assignment]
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


def test_an_interrupted_embedding_keeps_the_chunks_it_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphrouter import embeddings

    monkeypatch.setattr(embeddings, "STORE_EVERY", 4)
    first, model = _embedder(tmp_path / "cache.sqlite")
    real = model.encode

    def stopped_in_the_third_chunk(texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        if len(model.seen) >= 8:
            raise KeyboardInterrupt  # Ctrl-C
        return real(texts, batch_size, progress)

    model.encode = stopped_in_the_third_chunk  # type: ignore[method-assign]
    texts = [f"text {i}" for i in range(10)]
    with pytest.raises(KeyboardInterrupt):
        first.embed(texts)
    first.close()
    second, model2 = _embedder(tmp_path / "cache.sqlite")
    second.embed(texts)
    assert model2.seen == texts[8:]  # the two chunks done before the interruption were kept


def test_onnx_encoder_agrees_with_sentence_transformers_and_exports_once(tmp_path: Path) -> None:
    texts = [
        "What is the capital of France?",
        "Solve for x: 3x + 7 = 22. Show your reasoning step by step.",
        "def add(a, b):\n    return a + b\n# what does this return for add(2, 3)?",
        "word " * 400,  # longer than the model's 256 tokens: truncated the same way
        "ü ñ 中文 emoji 🙂",
    ]
    torch_side = Embedder(cache_path=None, backend="torch").embed(texts)
    onnx_side = Embedder(cache_path=None, backend="onnx", onnx_dir=tmp_path, threads=1)
    batched = onnx_side.embed(texts)  # one padded batch
    one_by_one = np.stack([Embedder(cache_path=None, onnx_dir=tmp_path).embed([t])[0] for t in texts])
    assert batched.shape == torch_side.shape == (5, 384)
    np.testing.assert_allclose(batched, torch_side, atol=1e-5)
    np.testing.assert_allclose(one_by_one, torch_side, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    export = onnx_file(onnx_side._model_path, tmp_path)
    assert list(tmp_path.iterdir()) == [export]  # exported once, reused by the second embedder; no temporary left
    umask = os.umask(0o022)
    os.umask(umask)
    assert export.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by whoever runs the service next

    export.write_bytes(b"not an onnx model")
    with pytest.raises(GraphRouterError, match="could not load the ONNX export .* delete it to export again"):
        Embedder(cache_path=None, onnx_dir=tmp_path).embed(["x"])


def test_onnx_export_name_covers_every_model_file(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    before = onnx_file(str(model), tmp_path / "onnx")
    assert onnx_file(str(model), tmp_path / "onnx") == before
    (model / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert onnx_file(str(model), tmp_path / "onnx") != before  # a module's change is a new export


@pytest.mark.parametrize(
    ("args", "message"), [({"backend": "tensorflow"}, "unknown embedding backend"), ({"threads": 0}, "at least 1")]
)
def test_bad_embedder_settings_are_refused(args: dict, message: str) -> None:
    with pytest.raises(GraphRouterError, match=message):
        Embedder(cache_path=None, **args)


def test_a_text_that_is_not_valid_unicode_is_a_clear_error_not_a_crash_in_the_cache(tmp_path: Path) -> None:
    emb, model = _embedder(tmp_path / "cache.sqlite")
    with pytest.raises(InvalidTextError, match=r"text 1 must be valid Unicode: it holds a lone surrogate '\\ud800' at"):
        emb.embed(["fine", "abc \ud800 def"])
    assert model.seen == []  # refused before anything was embedded or cached
    assert emb.embed(["fine"]).shape == (1, 2)  # and the embedder goes on


def test_a_broken_cache_file_is_embedded_around_not_a_crash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.sqlite"
    emb, model = _embedder(path)
    emb.embed(["cached"])
    emb.close()
    with open(path, "r+b") as f:  # corrupt every page after the first
        size = f.seek(0, 2)
        for page in range(4096, size, 4096):
            f.seek(page)
            f.write(os.urandom(512))
    path.with_name("cache.sqlite-wal").unlink(missing_ok=True)
    emb, model = _embedder(path)  # opening may or may not notice; reading and writing will
    out = emb.embed(["cached", "new text"])
    assert out.shape == (2, 2) and set(model.seen) <= {"cached", "new text"}
    assert emb.embed(["new text"]).shape == (1, 2)  # kept in memory
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(8192))  # not a database at all: refused at open, embedded without it
    emb, model = _embedder(garbage)
    assert emb.embed(["a", "b"]).shape == (2, 2) and model.seen == ["a", "b"]
    assert "embedding cache failed" in caplog.text
