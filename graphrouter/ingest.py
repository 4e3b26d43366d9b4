"""One ingest path for routing data: LLM catalogues and outcome rows (JSONL, CSV or Parquet) into the store.

Everything is read and validated before anything is written, and then written as one atomic batch, so a bad file
leaves the store exactly as it was. Errors name the file, the line and the problem. Each import writes one change
record (kind ``import``, :func:`graph_store.changes.import_change`) in the batch's transaction, so running service
replicas follow it as they follow each other's changes (api/replication.py).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graph_store import AGENT, LLM, QUERY, TASK, Agent, GraphBatch, GraphStore, LLMNode, Outcome, Query, Task
from graph_store.changes import import_change, now, utc_second
from graph_store.errors import InvalidInputError
from graph_store.schema import MAX_QUERY_ID_CHARS, check_for_write, non_nfc_name
from graphrouter.cost import usd_cost
from graphrouter.data_files import Row, read_json, read_jsonl, read_rows
from graphrouter.errors import DataFileError
from graphrouter.model_names import reserved_name
from graphrouter.tokens import DEFAULT_OUTPUT_TOKENS

log = logging.getLogger(__name__)

IMPORT_STEPS = 4  # the steps import_outcomes tells its progress of (3 with update: nothing to compare)

MAX_REPORTED_ERRORS = 5


# ---- LLM catalogues ---------------------------------------------------------------------------------------
_SIZE = re.compile(r"^\s*(?:(\d+)\s*x\s*)?(\d+(?:\.\d+)?)\s*([bBmM])?\s*$")


def parse_size_b(value: Any) -> float | None:
    """Parameters in billions from ``7``, ``"7B"``, ``"2.9b"``, ``"8x7B"`` or ``"350M"``; None if unknown."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _SIZE.match(str(value))
    if not m:
        return None
    experts, number, unit = m.groups()
    size = float(number) * (int(experts) if experts else 1)
    return size / 1000 if unit and unit.lower() == "m" else size


def _llm_from_mapping(name: Any, d: dict[str, Any]) -> LLMNode:
    size = d.get("size_b", d.get("size"))
    node = LLMNode(
        name=name,
        description=d.get("description", d.get("feature", "")),
        input_price=d.get("input_price", 0.0),
        output_price=d.get("output_price", 0.0),
        size_b=parse_size_b(size),
    )
    check_for_write(node)  # (the store checks it too, naming no line)
    return node


def read_llm_catalogue(path: str | Path) -> list[LLMNode]:
    """LLMs from ``default_llm.json`` (a JSON object: name → {feature, input_price, output_price, size}), a JSON
    list of objects with ``name``, or JSONL rows with ``name``, ``description``, ``input_price``, ``output_price``
    and optional ``size_b``/``size``. Prices are USD per 1M tokens."""
    path = Path(path)
    entries: list[tuple[int | None, Any, dict[str, Any]]] = []
    if path.suffix.lower() in (".csv", ".parquet", ".tsv", ".xlsx"):
        raise DataFileError(path, f"an LLM catalogue is JSON (an object or a list) or JSONL, not {path.suffix}")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        entries = [(n, row.get("name"), row) for n, row in read_jsonl(path)]
    else:
        doc = read_json(path)
        if isinstance(doc, dict):
            entries = [(None, name, d) for name, d in doc.items()]
        elif isinstance(doc, list):
            entries = [(None, d.get("name") if isinstance(d, dict) else None, d) for d in doc]
        else:
            raise DataFileError(path, "expected a JSON object (name → LLM) or a list of LLM objects")
    llms: list[LLMNode] = []
    errors: list[str] = []
    for i, (line, name, d) in enumerate(entries):
        where = ("" if line is None else f"line {line}: ") + (f"LLM {name!r}" if name else f"entry {i + 1}")
        try:
            if not isinstance(d, dict):
                raise InvalidInputError(f"expected an object, got {type(d).__name__}")
            for price in ("input_price", "output_price"):
                if price not in d:
                    raise InvalidInputError(f"missing {price} (USD per 1M tokens)")
            if any(m.name == name for m in llms):
                raise InvalidInputError("the catalogue names it twice")
            if isinstance(name, str) and (why := reserved_name(name)):
                raise InvalidInputError(why)
            llms.append(_llm_from_mapping(name, d))
        except InvalidInputError as exc:
            errors.append(f"{where}: {exc}")
    if errors:  # every bad entry (the first few) at once, as for outcome rows
        raise DataFileError(path, f"{len(errors)} bad LLM(s), nothing was imported: {_first_few(errors)}")
    if not llms:
        raise DataFileError(path, "no LLMs in the catalogue")
    return llms


# ---- outcome rows -----------------------------------------------------------------------------------------
@dataclass
class OutcomeRows:
    """Validated outcome rows ready to write, and what they need from the store."""

    batch: GraphBatch
    new_tasks: int
    new_queries: int


def _num(row: dict[str, Any], field: str) -> float | None:
    value = row.get(field)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidInputError(f"{field} must be a number, got {row[field]!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{field} must be a finite number, got {row[field]!r}")
    return float(value)


def _first_few(problems: list[str], noun: str = "") -> str:
    """The first :data:`MAX_REPORTED_ERRORS` problems, and how many more (``noun``: what they are, e.g. bad rows)."""
    more = len(problems) - MAX_REPORTED_ERRORS
    return "; ".join(problems[:MAX_REPORTED_ERRORS]) + (
        f" (and {more} more{' ' + noun if noun else ''})" if more > 0 else ""
    )


def _observed_at(value: Any) -> str:
    """A row's ``observed_at`` as stored (UTC to the second: ``graph_store.changes.utc_second``); "" if not given."""
    return "" if value is None or value == "" else utc_second(value)


def _where(line: Any) -> str:
    return f"line {line}" if isinstance(line, int) else str(line)


def build_outcome_batch(
    rows: Iterable[Row],
    path: str | Path,
    llms: dict[str, LLMNode],
    agents: set[str],
    stored_tasks: set[str],
    default_source: str = "",
) -> OutcomeRows:
    """Validate outcome rows and turn them into one batch of tasks, queries and outcome edges.

    Each row has ``query`` (text), ``task``, exactly one of ``llm`` / ``agent``, ``effect`` in [0, 1], and either
    ``cost`` (USD) or ``input_tokens`` (for an LLM; ``output_tokens`` defaults to 512) from which the cost is
    computed with the LLM's prices. Optional: ``query_id``, ``source``, ``observed_at``. All rows are checked
    before anything is returned; the error lists the first few bad lines.
    """
    errors: list[str] = []
    queries: dict[str, Query] = {}
    outcomes: dict[tuple[str, str, str], Outcome] = {}
    tasks: dict[str, Task] = {}
    first_line: dict[tuple[str, str, str], Any] = {}  # (query, kind, target) → the line that gave it
    for line, row in rows:
        try:
            text, task = row.get("query"), row.get("task")
            if not isinstance(text, str) or not text.strip():
                raise InvalidInputError("'query' (the query text) is missing or empty")
            if not isinstance(task, str) or not task.strip():
                raise InvalidInputError("'task' is missing or empty")
            given_id = str(row.get("query_id") or "")
            if len(given_id) > MAX_QUERY_ID_CHARS:
                raise InvalidInputError(f"query_id has {len(given_id):,} characters; the limit is {MAX_QUERY_ID_CHARS}")
            llm, agent = row.get("llm"), row.get("agent")
            if (llm is None) == (agent is None):
                raise InvalidInputError("give exactly one of 'llm' or 'agent'")
            kind, target = (LLM, str(llm)) if llm is not None else (AGENT, str(agent))
            if kind == LLM and target not in llms:
                raise InvalidInputError(
                    f"LLM {target!r} is not in the catalogue; import it first (graphrouter import llms FILE)"
                )
            if kind == AGENT and target not in agents:
                raise InvalidInputError(f"agent {target!r} is not registered")
            effect = _num(row, "effect")
            if effect is None:
                raise InvalidInputError("'effect' is missing")
            if not 0.0 <= effect <= 1.0:
                raise InvalidInputError(f"effect must be in [0, 1], got {effect!r}")
            cost = _num(row, "cost")
            if cost is None:
                in_tok = _num(row, "input_tokens")
                if in_tok is None or kind != LLM:
                    raise InvalidInputError("'cost' is missing (or give input_tokens for an LLM row)")
                out_tok = _num(row, "output_tokens")
                for name, n in (("input_tokens", in_tok), ("output_tokens", out_tok)):
                    if n is not None and n < 0:
                        raise InvalidInputError(f"{name} must be >= 0, got {n!r}")
                m = llms[target]
                cost = usd_cost(
                    in_tok, DEFAULT_OUTPUT_TOKENS if out_tok is None else out_tok, m.input_price, m.output_price
                )
            query = Query(text=text, task=task, id=given_id)
            check_for_write(query)  # (the store checks it too, naming no line)
            seen = queries.get(query.id)
            if seen is not None and seen.task != task:
                raise InvalidInputError(f"query {query.id} was given task {seen.task!r} earlier and {task!r} here")
            if seen is not None and seen.text != query.text:
                raise InvalidInputError(f"query {query.id} was given another text earlier")
            if (query.id, kind, target) in first_line:
                raise InvalidInputError(
                    f"the same query and {kind} {target!r} as {_where(first_line[(query.id, kind, target)])}"
                )
            first_line[(query.id, kind, target)] = line
            queries[query.id] = query
            if task not in stored_tasks and task not in tasks:
                new_task = Task(name=task)
                if why := non_nfc_name(new_task):  # (the store refuses it too, naming no line)
                    raise InvalidInputError(why)
                tasks[task] = new_task
            outcomes[(query.id, kind, target)] = Outcome(
                query_id=query.id,
                target=target,
                kind=kind,
                effect=effect,
                cost=cost,  # type: ignore[arg-type]
                source=str(row.get("source") or default_source),
                observed_at=_observed_at(row.get("observed_at")),
            )
        except InvalidInputError as exc:
            errors.append(f"{_where(line)}: {exc}")
    if errors:
        raise DataFileError(path, f"{len(errors)} bad row(s), nothing was imported: {_first_few(errors, 'bad rows')}")
    if not outcomes:
        raise DataFileError(path, "no outcome rows")
    batch = GraphBatch(tasks=list(tasks.values()), queries=list(queries.values()), outcomes=list(outcomes.values()))
    return OutcomeRows(batch=batch, new_tasks=len(tasks), new_queries=len(queries))


def import_outcomes(
    store: GraphStore,
    path: str | Path,
    llms: list[LLMNode] | None = None,
    default_source: str = "",
    update: bool = False,
    of: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Import an outcomes file (and optionally a catalogue of LLMs in the same atomic batch). A stored query or LLM
    that it would change is refused unless ``update`` (:func:`refuse_changes`). ``of``: the file holds this LLM's
    outcomes only (``register-llm --outcomes``); a row of another is refused. ``progress``: told each of its
    :data:`IMPORT_STEPS` steps as it starts."""
    say = progress or (lambda _message: None)
    say(f"reading {Path(path).name}")
    rows = read_rows(path)
    if of is not None and (others := [(n, r) for n, r in rows if r.get("agent") is not None or r.get("llm") != of]):
        line, row = others[0]
        raise DataFileError(
            path,
            f"{len(others)} row(s) are not outcomes of {of!r} (line {line}: {row.get('llm', row.get('agent'))!r}); "
            "give this LLM's rows only, or import the others with `graphrouter import outcomes`",
        )
    say(f"validating {len(rows):,} rows")
    stored = {m.name: m for m in store.list_nodes(LLM) if isinstance(m, LLMNode)}
    catalogue = {**stored, **{m.name: m for m in llms or []}}
    agents = {a.key: a.llm for a in store.list_nodes(AGENT) if isinstance(a, Agent)}
    stored_tasks = {t.key for t in store.list_nodes(TASK)}
    prepared = build_outcome_batch(rows, path, catalogue, set(agents), stored_tasks, default_source)
    prepared.batch.llms = list(llms or [])
    if not update:
        say("comparing with the stored queries and LLMs")
        refuse_changes(store, prepared.batch, path, stored)
    say(f"writing {len(prepared.batch):,} records (one transaction)")
    written = write_logged(store, prepared.batch, stored, agents)
    if stored_tasks and prepared.batch.tasks:  # the API refuses an unknown task; a file brings its own, or a typo
        new = sorted(t.name for t in prepared.batch.tasks)
        log.warning(
            "%d new task(s), beside the %d stored: %s%s (a misspelt task is a new one: check the file if you did not "
            "mean to add it)",
            len(new),
            len(stored_tasks),
            ", ".join(map(repr, new[:MAX_REPORTED_ERRORS])),
            " …" if len(new) > MAX_REPORTED_ERRORS else "",
        )
    return written


def import_llms(store: GraphStore, path: str | Path, update: bool = False) -> dict[str, int]:
    """Import a catalogue of LLMs: new ones are added, those stored with the same data left as they are; one stored
    with other data is refused unless ``update`` (then replaced)."""
    llms = read_llm_catalogue(path)
    stored = store.get_nodes(LLM, (m.name for m in llms))
    batch = GraphBatch(llms=llms)
    if not update:
        refuse_changes(store, batch, path, stored)
    return write_logged(store, batch, stored)


UPSTREAM = ("base_url", "upstream_model", "api_key_env")  # how the proxy calls an LLM: kept by a catalogue without it


def keep_stored(stored: dict[str, Any], batch: GraphBatch, at: str, agent_llms: dict[str, str] | None = None) -> None:
    """Give the batch's LLMs what a catalogue does not from the stored LLM of their name: the upstream (how the
    proxy calls it) and when its prices last changed (``priced_at``: ``at`` if the batch changes them; its outcome
    rows of no given time, and those of the agents on it (``agent_llms``: agent → LLM), are then taken as observed
    ``at``, billed at the new prices, as the API stamps them)."""
    for i, m in enumerate(batch.llms):
        if isinstance(old := stored.get(m.name), LLMNode):
            priced = at if (old.input_price, old.output_price) != (m.input_price, m.output_price) else old.priced_at
            upstream = (old.base_url, old.upstream_model, old.api_key_env) if m.base_url is None else (m.base_url,)
            batch.llms[i] = dataclasses.replace(m, priced_at=priced, **dict(zip(UPSTREAM, upstream, strict=False)))
    new, on = {m.name for m in batch.llms if m.priced_at == at}, agent_llms or {}
    rows = batch.outcomes
    stamp = [not o.observed_at and (o.target if o.kind == LLM else on.get(o.target)) in new for o in rows]
    batch.outcomes = [dataclasses.replace(o, observed_at=at) if s else o for o, s in zip(rows, stamp, strict=True)]


def refuse_changes(store: GraphStore, batch: GraphBatch, path: str | Path, stored_llms: dict[str, Any]) -> None:
    """A :class:`DataFileError` if the batch would replace stored data with other data: an LLM's description, prices
    or size (``stored_llms``: the stored LLMs of the batch's names), or a query's text or task (other LLMs' outcomes
    on that query would then be about another question). Importing the same data again is harmless; ``--update``
    replaces on purpose."""
    changed = [
        f"LLM {n!r} is stored with other data (description, prices or size)" for n in reregistered(stored_llms, batch)
    ]
    stored_queries = store.get_nodes(QUERY, (q.id for q in batch.queries))
    for q in batch.queries:
        old = stored_queries.get(q.id)
        if isinstance(old, Query) and (old.text, old.task) != (q.text, q.task):
            what = "task" if old.text == q.text else "text"
            changed.append(f"query {q.id!r} is stored with another {what}")
    if changed:
        queries = any(c.startswith("query") for c in changed)  # the query_id advice is for those only
        raise DataFileError(
            path,
            f"{len(changed)} stored node(s) would change, nothing was imported: {_first_few(changed)}. "
            + ("Give the rows their own query_id, or import" if queries else "Import")
            + " with --update to replace what is stored",
        )


def reregistered(stored: dict[str, Any], batch: GraphBatch) -> list[str]:
    """The LLMs and agents of ``batch`` that ``stored`` (name → stored node) holds with other registration data."""
    return [
        n.name
        for n in (*batch.llms, *batch.agents)
        if (old := stored.get(n.name)) is not None and type(old) is type(n) and old.registration != n.registration
    ]


def write_logged(
    store: GraphStore, batch: GraphBatch, stored: dict[str, Any] | None = None, agents: dict[str, str] | None = None
) -> dict[str, int]:
    """Write an imported batch atomically with its one change record, for running replicas to follow. The record
    names the stored LLMs and agents whose data the batch changes (``--update``): replicas replace those only. Stored
    LLMs keep their upstreams (:func:`keep_stored`). ``stored``: the stored nodes of the batch's names, if read;
    ``agents``: the stored agents' LLMs (name → LLM), needed if the batch has agent outcome rows (import_outcomes)."""
    if stored is None:
        stored = store.get_nodes(LLM, [m.name for m in batch.llms])
        stored |= store.get_nodes(AGENT, [a.name for a in batch.agents])
    keep_stored(stored, batch, now(), {**(agents or {}), **{a.name: a.llm for a in batch.agents}})
    # those it found absent: if another writer registers one meanwhile (perhaps with other data), this one is refused
    # (its tasks are new by construction: a stored one is never in it, so its description is kept)
    new = [*batch.tasks, *(n for n in (*batch.llms, *batch.agents) if n.name not in stored)]
    return store.write(batch, change=import_change(batch, updated=reregistered(stored, batch)), new=new)
