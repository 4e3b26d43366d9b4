"""Checkpoints: a fitted router with everything it needs to serve, in one file.

A checkpoint stores the router (model weights and hyper-parameters inside it), the training world it learned
from (embeddings, outcome matrices and the cost normalisation), the embedding model name, and a signature of the
graph. Loading refuses, with a clear error, a file of another format, a different embedding model, or a graph
that no longer holds the checkpoint's tasks or candidates.

The file (format /3) is a magic line, a small header (a pickle of format, versions and signature: readable without
unpickling the router) and the router, pickled with protocol 5 straight into the file. Streaming matters at scale:
the router carries the stored graph, its neighbour index and serving caches (about 10 KB per stored query), and
``torch.save`` first builds the whole pickle in memory, so saving peaked at ~4x the file (11 GB for 300k stored
queries). Protocol 5 writes each array's buffer without a copy. Files of format /2 (``torch.save``) still load.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from graphrouter.errors import CheckpointError
from graphrouter.paths import DEFAULT_CHECKPOINT
from graphrouter.routers.base import Router

# /2: the GNN router as the graphrouter.routers.gnn package. Extended compatibly since: the GNN router carries its
# per-task fallback (``router.fallback``; a /2 file written before loads with none) and the blob names the tasks
# that fall back under "fallback_tasks" (absent in earlier /2 files), for a reader that does not unpickle the router
FORMAT = "graphrouter-checkpoint/3"
_MAGIC = FORMAT.encode() + b"\n"
_PREFIX = b"graphrouter-checkpoint/"  # what every format from /3 on starts with
_HEADER_KEYS = ("format", "embedding_model", "created_at", "version", "signature")
_TORCH_FORMAT = "graphrouter-checkpoint/2"  # a torch.save zip archive of the same blob; still read
_EARLIER_FORMATS = ("graphrouter-checkpoint/1",)
_EARLIER = (
    "was written by an earlier version of graphrouter and must be retrained "
    "(graphrouter train, or POST /v1/train on a running service)"
)


@dataclass
class Checkpoint:
    router: Router
    embedding_model: str
    created_at: str
    version: str  # a short id of this checkpoint, reported with every routing answer

    @property
    def signature(self) -> dict[str, Any]:
        data = self.router.world.data
        return {"tasks": list(data.task_names), "candidates": list(data.candidates)}


def save_checkpoint(router: Router, embedding_model: str, path: str | Path = DEFAULT_CHECKPOINT) -> Checkpoint:
    """Write atomically (a temp file renamed over the target), so a reader never sees half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    version = hashlib.sha256(f"{router.name}{created}{time.perf_counter_ns()}".encode()).hexdigest()[:12]
    ckpt = Checkpoint(router=router, embedding_model=embedding_model, created_at=created, version=version)
    # a name of its own: two replicas publishing to one path at once must not write into each other's file
    tmp = path.with_name(f"{path.name}.{version}.tmp")
    header = {
        "format": FORMAT,
        "router_name": router.name,
        "embedding_model": embedding_model,
        "created_at": created,
        "version": version,
        "signature": ckpt.signature,
        "fallback_tasks": fallback.fired if (fallback := getattr(router, "fallback", None)) is not None else [],
    }
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC)
            pickle.dump(header, f, protocol=5)
            pickle.dump(router, f, protocol=5)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a crash then leaves the old file or the new, whole
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # gigabytes at scale: not left behind (a failed rename neither)
        raise
    return ckpt


def load_checkpoint(
    path: str | Path = DEFAULT_CHECKPOINT,
    embedding_model: str | None = None,
    graph_tasks: list[str] | None = None,
    graph_candidates: list[str] | None = None,
) -> Checkpoint:
    """Load and check a checkpoint against the embedding model and the graph it will serve. A /3 file's header is
    checked before its router (gigabytes at scale) is read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train one first (graphrouter train)")
    try:
        with open(path, "rb") as f:
            if f.read(len(_PREFIX)) == _PREFIX:  # format /3 or later
                fmt = (_PREFIX + f.readline()).decode("utf-8", "replace").strip()
                if fmt != FORMAT:
                    raise CheckpointError(
                        f"{path} is a {fmt} checkpoint; this version of graphrouter reads {FORMAT} (and /2): "
                        "upgrade graphrouter, or retrain with this version (graphrouter train)"
                    )
                header = _checked(path, pickle.load(f), embedding_model, graph_tasks, graph_candidates)
                blob = {**header, "router": pickle.load(f)}
            else:
                f.close()
                blob = torch.load(path, weights_only=False, map_location="cpu")
                blob = _checked(path, blob, embedding_model, graph_tasks, graph_candidates)
    except CheckpointError:
        raise
    except (ModuleNotFoundError, AttributeError) as exc:  # it pickles classes this version no longer has
        raise CheckpointError(f"{path} holds classes that are gone: it {_EARLIER} ({exc})") from None
    except Exception as exc:  # torch and pickle raise many types for a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    return Checkpoint(
        router=blob["router"],
        embedding_model=blob["embedding_model"],
        created_at=blob["created_at"],
        version=blob["version"],
    )


def _checked(
    path: Path,
    blob: Any,
    embedding_model: str | None,
    graph_tasks: list[str] | None,
    graph_candidates: list[str] | None,
) -> dict[str, Any]:
    """``blob`` (a /3 header, or a whole /2 blob) if it is of a readable format and fits the embedding model and the
    graph; a :class:`CheckpointError` saying what to do otherwise."""
    fmt = blob.get("format") if isinstance(blob, dict) else None
    if fmt in _EARLIER_FORMATS:
        raise CheckpointError(f"{path} is a {fmt} checkpoint: it {_EARLIER}")
    if fmt not in (FORMAT, _TORCH_FORMAT):
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint; retrain with this version (graphrouter train)")
    missing = [k for k in _HEADER_KEYS if k not in blob]
    sig = blob.get("signature")
    if missing or not isinstance(sig, dict) or not {"tasks", "candidates"} <= set(sig):
        raise CheckpointError(f"{path} is not a readable checkpoint (its header lacks {missing or ['signature']})")
    if embedding_model is not None and blob["embedding_model"] != embedding_model:
        raise CheckpointError(
            f"{path} was trained with embedding model {blob['embedding_model']!r}, but {embedding_model!r} is "
            "configured; use the same model or retrain"
        )
    if graph_tasks is not None:
        gone = sorted(set(sig["tasks"]) - set(graph_tasks))
        if gone:
            raise CheckpointError(f"{path} was trained on tasks the graph no longer has: {gone[:5]}; retrain")
    if graph_candidates is not None:
        gone = sorted(set(sig["candidates"]) - set(graph_candidates))
        if gone:
            raise CheckpointError(f"{path} routes to candidates the graph no longer has: {gone[:5]}; retrain")
    return blob
