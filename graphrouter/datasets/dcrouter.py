"""The ``dcrouter`` benchmark of LLMRouter: 6,108 queries × 9 LLMs with measured scores, 14 tasks.

A thin adapter: it turns the published files into outcome rows and an LLM catalogue, and hands them to
:func:`graphrouter.ingest.build_outcome_batch`, the same path as ``graphrouter import outcomes``. Every row gets
``source = "dcrouter:train"`` or ``"dcrouter:test"`` so the official split can be recovered from the graph.
Cost follows GraphRouter: (input tokens × input price + 512 × output price) / 1e6, see :mod:`graphrouter.tokens`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graph_store import LLM, TASK, GraphBatch, GraphStore, LLMNode
from graphrouter.data_files import Row, read_json, read_jsonl
from graphrouter.errors import DataFileError
from graphrouter.ingest import build_outcome_batch, read_llm_catalogue, reregistered, write_logged
from graphrouter.tokens import DEFAULT_OUTPUT_TOKENS, count_tokens

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
SCORES = "data/dcrouter_preprocessed/{split}.json"
TASKS = "data/example_data/query_data/default_query_{split}.jsonl"
LLMS = "data/example_data/llm_candidates/default_llm.json"
SOURCE = "dcrouter:{split}"
# Ids by position, not by text: 119 test questions repeat a train question verbatim (often with other scores),
# and each is its own observation. Stable across re-imports, so re-importing is idempotent.
QUERY_ID = "dcrouter:{split}:{index}"
DEFAULT_DATA_DIR = Path("../shared/data/LLMRouter")


def _task_map(data_dir: Path) -> dict[str, str]:
    """Question text → task name, from both query files."""
    tasks: dict[str, str] = {}
    for split in SPLITS:
        path = data_dir / TASKS.format(split=split)
        for n, row in read_jsonl(path):
            if not isinstance(row.get("query"), str) or not isinstance(row.get("task_name"), str):
                raise DataFileError(path, "each row needs string fields 'query' and 'task_name'", line=n)
            tasks[row["query"]] = row["task_name"]
    return tasks


def _items(path: Path) -> list[dict[str, Any]]:
    doc = read_json(path)
    if not isinstance(doc, list):
        raise DataFileError(path, f"expected a JSON list of items, got {type(doc).__name__}")
    for i, item in enumerate(doc):
        if not (
            isinstance(item, dict) and isinstance(item.get("question"), str) and isinstance(item.get("scores"), dict)
        ):
            raise DataFileError(path, f"item {i}: expected an object with 'question' (text) and 'scores' (LLM → score)")
    return doc


def dcrouter_rows(
    data_dir: str | Path, progress: Callable[[str], None] | None = None
) -> tuple[list[LLMNode], list[Row]]:
    """The LLM catalogue (only the LLMs that have scores) and one outcome row per (question, LLM)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataFileError(data_dir, "data directory not found (expected the LLMRouter snapshot, see DESIGN.md)")
    say = progress or (lambda _msg: None)
    say("reading LLM catalogue")
    catalogue = {m.name: m for m in read_llm_catalogue(data_dir / LLMS)}
    say("reading task labels")
    task_of = _task_map(data_dir)
    rows: list[Row] = []
    used: set[str] = set()
    for split in SPLITS:
        path = data_dir / SCORES.format(split=split)
        say(f"reading {path.name} ({split})")
        items = _items(path)
        tokens = count_tokens([it["question"] for it in items])
        for i, (item, n_tok) in enumerate(zip(items, tokens, strict=True)):
            task = task_of.get(item["question"])
            if task is None:
                raise DataFileError(path, f"item {i}: question not found in {TASKS.format(split='{train,test}')}")
            for llm, score in item["scores"].items():
                if llm not in catalogue:
                    raise DataFileError(path, f"item {i}: LLM {llm!r} is not in {LLMS}")
                used.add(llm)
                rows.append(
                    (
                        f"{path.name} item {i}",
                        {
                            "query": item["question"],
                            "query_id": QUERY_ID.format(split=split, index=i),
                            "task": task,
                            "llm": llm,
                            "effect": score,
                            "input_tokens": n_tok,
                            "output_tokens": DEFAULT_OUTPUT_TOKENS,
                            "source": SOURCE.format(split=split),
                        },
                    )
                )
    return [catalogue[name] for name in sorted(used)], rows


def import_dcrouter(
    store: GraphStore,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    progress: Callable[[str], None] | None = None,
    update: bool = False,
) -> dict[str, int]:
    """Import dcrouter atomically: 14 tasks, 6,108 queries, 9 LLMs, 54,972 ANSWERED_BY edges. An LLM the store holds
    with other data (a price changed since, with ``register-llm --update`` or the API) is kept as stored, and named
    in a warning with its outcomes left as stored (it may be another model of that name, registered again), unless
    ``update`` (then the dataset's data and outcomes replace it): importing again (``make demo``) does not undo an
    operator's change. Outcome costs are the dataset's (computed with its prices)."""
    llms, rows = dcrouter_rows(data_dir, progress)
    stored = {m.key: m for m in store.list_nodes(LLM)}  # read once: for what is kept, the catalogue and the write
    kept = [] if update else reregistered(stored, GraphBatch(llms=llms))
    stored_tasks = {t.key for t in store.list_nodes(TASK)}
    catalogue = {**stored, **{m.name: m for m in llms}}
    if progress:
        progress(f"validating {len(rows):,} outcome rows")
    prepared = build_outcome_batch(rows, data_dir, catalogue, set(), stored_tasks)
    prepared.batch.llms = [m for m in llms if m.name not in kept]
    if kept:
        prepared.batch.outcomes = [o for o in prepared.batch.outcomes if o.target not in kept]
        log.warning(
            "kept as stored, with other data than dcrouter's: %s (graphrouter import dcrouter --update replaces them)",
            ", ".join(kept),
        )
    if progress:
        progress(f"writing {len(prepared.batch):,} records to the {store.backend} store")
    return write_logged(store, prepared.batch, stored)
