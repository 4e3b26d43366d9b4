"""Reading routing data files: JSON, JSON Lines, CSV and Parquet rows with the line (or row) each came from, and
errors that name the file, the line and the problem (:class:`~graphrouter.errors.DataFileError`). What the rows
mean is checked by :mod:`graphrouter.ingest`."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from graphrouter.errors import DataFileError

OUTCOME_FORMATS = (".jsonl", ".ndjson", ".csv", ".parquet")

Row = tuple[int | str, dict[str, Any]]  # (line number, or a location such as "train.json item 3"; fields)


# ---- reading files ----------------------------------------------------------------------------------------
def _check_file(path: Path) -> Path:
    if not path.exists():
        raise DataFileError(path, "file not found")
    if not path.is_file():
        raise DataFileError(path, "not a regular file")
    return path


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (``json`` would keep the last of a key given twice)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _parse_json(text: str, path: Path, line: int | None = None) -> Any:
    """One JSON document (objects with unique keys), with errors that name the file, the line and the problem."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        at = exc.lineno if line is None else line
        raise DataFileError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", line=at) from None
    except RecursionError:
        raise DataFileError(path, "malformed JSON: nested too deeply", line=line) from None
    except ValueError as exc:  # a key given twice; an integer of more than 4,300 digits
        raise DataFileError(path, f"malformed JSON: {exc}", line=line) from None


def read_json(path: str | Path) -> Any:
    """A whole JSON document, with errors that name the file and the position (a UTF-8 BOM is skipped)."""
    path = _check_file(Path(path))
    try:
        return _parse_json(path.read_text(encoding="utf-8-sig"), path)
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_jsonl(path: str | Path) -> Iterator[Row]:
    """Objects of a JSON Lines file with their line numbers; blank lines are skipped (a UTF-8 BOM too)."""
    path = _check_file(Path(path))
    try:
        with path.open(encoding="utf-8-sig") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                obj = _parse_json(line, path, n)
                if not isinstance(obj, dict):
                    raise DataFileError(path, f"expected a JSON object, got {type(obj).__name__}", line=n)
                yield n, obj
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_rows(path: str | Path) -> list[Row]:
    """Rows of a JSONL, CSV or Parquet file (by suffix) with the line (CSV, JSONL) or row (Parquet) number."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTCOME_FORMATS:
        raise DataFileError(path, f"unsupported format {suffix or '(none)'!r}; use one of {', '.join(OUTCOME_FORMATS)}")
    _check_file(path)
    if suffix in (".jsonl", ".ndjson"):
        return list(read_jsonl(path))
    if suffix == ".csv":
        try:
            with path.open(encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames:
                    raise DataFileError(path, "empty CSV file (no header row)")
                _check_columns(path, reader.fieldnames)
                rows, starts = [], reader.line_num + 1  # a quoted cell may span lines: a record's first line
                width = len(reader.fieldnames)
                for row in reader:
                    extra = [c for c in row.pop(None, None) or [] if c.strip()]  # short rows: the rest empty
                    if extra:  # not a trailing comma: values the header names no column for
                        cells = width + len(extra)
                        raise DataFileError(path, f"{cells} cell(s) where the header has {width}", line=starts)
                    rows.append((starts, _csv_values(row)))
                    starts = reader.line_num + 1
                return rows
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataFileError(path, f"malformed CSV: {exc}") from None
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataFileError(path, f"malformed Parquet: {exc}") from None
    _check_columns(path, table.column_names)
    return [(f"row {i}", _present(row)) for i, row in enumerate(table.to_pylist(), start=1)]


def _check_columns(path: Path, columns: Sequence[str]) -> None:
    """A table's header has the outcome columns (once, instead of the same error on every row)."""
    have = set(columns)
    if len(have) < len(columns):
        twice = sorted({c for c in columns if list(columns).count(c) > 1})
        raise DataFileError(path, f"the header names {', '.join(repr(c) for c in twice)} more than once")
    missing = [c for c in ("query", "task", "effect") if c not in have]
    missing += [" or ".join(alt) for alt in (("llm", "agent"), ("cost", "input_tokens")) if not have & set(alt)]
    if missing:
        hint = ""
        if any(c != c.strip() for c in columns):
            hint = " (column names with spaces around them: remove the spaces)"
        elif len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
            hint = " (one column: the file looks separated by something other than commas; CSV here is comma-separated)"
        raise DataFileError(
            path,
            f"no {', '.join(repr(m) for m in missing)} column{'s' if len(missing) > 1 else ''}; the header has "
            f"{', '.join(repr(c) for c in columns)}{hint}",
        )


def _present(row: dict[str, Any]) -> dict[str, Any]:
    """Parquet nulls are missing values."""
    return {k: v for k, v in row.items() if v is not None}


def _csv_values(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are strings; empty cells are missing values, numbers are parsed where a number is expected."""
    return {k: v for k, v in row.items() if v not in (None, "")}
