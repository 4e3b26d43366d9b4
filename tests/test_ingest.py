"""The one ingest path: outcome files in three formats, LLM catalogues, the dcrouter adapter, and their errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from graph_store import AGENT, LLM, QUERY, TASK, Agent, GraphBatch, GraphStore, query_id
from graph_store.backends.embedded import EmbeddedStore
from graphrouter.cost import usd_cost
from graphrouter.datasets.dcrouter import import_dcrouter
from graphrouter.errors import DataFileError
from graphrouter.ingest import import_llms, import_outcomes, parse_size_b, read_llm_catalogue
from graphrouter.tokens import count_tokens
from tests.data_paths import DCROUTER_DIR

CATALOGUE = {
    "big": {"feature": "A big model", "input_price": 0.9, "output_price": 0.9, "size": "70B"},
    "small": {"feature": "A small model", "input_price": 0.1, "output_price": 0.2, "size": "7B"},
}
ROWS = [
    {"query": "What is 2+2?", "task": "math", "llm": "big", "effect": 1.0, "cost": 0.001, "source": "unit"},
    {"query": "What is 2+2?", "task": "math", "llm": "small", "effect": 0.0, "input_tokens": 6, "output_tokens": 10},
    {"query": "Write a haiku", "task": "poetry", "llm": "small", "effect": 0.5, "cost": 0.0},
]


@pytest.fixture
def embedded(tmp_path: Path) -> EmbeddedStore:
    return EmbeddedStore(tmp_path / "graph.db")


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    path = tmp_path / "llms.json"
    path.write_text(json.dumps(CATALOGUE))
    return path


def write_rows(path: Path, rows: list[dict]) -> Path:
    fields = sorted({k for r in rows for k in r})
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in fields} for r in rows]), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_outcomes_import_in_every_format(embedded: GraphStore, catalogue: Path, tmp_path: Path, suffix: str) -> None:
    import_llms(embedded, catalogue)
    steps: list[str] = []  # the CLI's progress bar (MMLU-Pro's 369,624 rows take ~20 s)
    written = import_outcomes(embedded, write_rows(tmp_path / f"rows{suffix}", ROWS), progress=steps.append)
    assert written["outcomes"] == 3 and written["queries"] == 2
    assert steps == [
        f"reading rows{suffix}",
        "validating 3 rows",
        "comparing with the stored queries and LLMs",
        "writing 7 records (one transaction)",
    ]
    c = embedded.counts()
    assert (c["Task"], c["Query"], c["LLM"], c["ANSWERED_BY"], c["OF_TASK"]) == (2, 2, 2, 3, 2)
    q = query_id("What is 2+2?")
    edges = {o.target: o for o in embedded.outcomes(LLM, query_id=q)}
    assert edges["big"].cost == 0.001 and edges["big"].source == "unit"
    assert edges["small"].cost == pytest.approx(usd_cost(6, 10, 0.1, 0.2))
    assert embedded.get_node(QUERY, q).task == "math"


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_observed_at_is_stored_in_utc_to_the_second(
    embedded: GraphStore, catalogue: Path, tmp_path: Path, suffix: str
) -> None:
    import_llms(embedded, catalogue)
    at: object = "2026-11-30T13:30:00.25+01:00"
    if suffix == ".parquet":  # a Parquet timestamp column arrives as a datetime
        at = datetime(2026, 11, 30, 12, 30, 0, 250000, tzinfo=UTC)
    rows = [{**ROWS[0], "observed_at": at}, ROWS[2]]
    import_outcomes(embedded, write_rows(tmp_path / f"rows{suffix}", rows))
    got = {o.target: o.observed_at for o in embedded.outcomes(LLM)}
    assert got == {"big": "2026-11-30T12:30:00Z", "small": ""}  # "" where the row gives none


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"llm": "gpt-unknown"}, r"line 2: LLM 'gpt-unknown' is not in the catalogue"),
        ({"effect": 1.5}, r"line 2: effect must be in \[0, 1\], got 1.5"),
        ({"effect": "high"}, r"line 2: effect must be a number"),
        ({"query": ""}, r"line 2: 'query' \(the query text\) is missing or empty"),
        ({"agent": "bot"}, r"line 2: give exactly one of 'llm' or 'agent'"),
        ({"cost": None, "input_tokens": None}, r"line 2: 'cost' is missing"),
        ({"observed_at": "last week"}, r"line 2: observed_at must be an ISO-8601 time"),
        ({"input_tokens": -5}, r"line 2: input_tokens must be >= 0, got -5"),
    ],
)
def test_a_bad_row_is_rejected_with_its_line_and_nothing_is_written(
    embedded: GraphStore, catalogue: Path, tmp_path: Path, bad: dict, message: str
) -> None:
    import_llms(embedded, catalogue)
    rows = [dict(r) for r in ROWS]
    rows[1].update(bad)
    rows[1] = {k: v for k, v in rows[1].items() if v is not None}
    path = write_rows(tmp_path / "rows.jsonl", rows)
    before = embedded.counts()
    with pytest.raises(DataFileError, match=message) as err:
        import_outcomes(embedded, path)
    assert str(path) in str(err.value) and "nothing was imported" in str(err.value)
    assert embedded.counts() == before


def test_a_csv_error_names_the_first_line_of_a_record_that_spans_lines(
    embedded: GraphStore, catalogue: Path, tmp_path: Path
) -> None:
    import_llms(embedded, catalogue)
    path = tmp_path / "rows.csv"
    path.write_text('query,task,llm,effect,cost\nq1,math,big,1,0\n"a question\nover three\nlines",math,big,2,0\n')
    with pytest.raises(DataFileError, match="line 3: effect must be in"):  # where the record starts, not line 5
        import_outcomes(embedded, path)


def test_malformed_files_name_the_file_and_the_line(embedded: GraphStore, tmp_path: Path) -> None:
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"query": "ok"}\n{not json\n')
    with pytest.raises(DataFileError, match=r"rows.jsonl:2: malformed JSON"):
        import_outcomes(embedded, bad)
    with pytest.raises(DataFileError, match="file not found"):
        import_outcomes(embedded, tmp_path / "missing.csv")
    with pytest.raises(DataFileError, match="unsupported format '.txt'"):
        import_outcomes(embedded, tmp_path / "rows.txt")
    broken = tmp_path / "rows.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataFileError, match="malformed Parquet"):
        import_outcomes(embedded, broken)
    row = '{"query": "q", "task": "t", "llm": "m", "effect": 1, "cost": %s}\n'
    for text, problem in (  # beyond the JSON parser's limits: a clear error, not its traceback
        ('{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n", "rows.jsonl:1: malformed JSON: nested too deeply"),
        (row % ("9" * 5_001), "rows.jsonl:1: malformed JSON: Exceeds the limit"),
        (row % '1, "effect": 0', "rows.jsonl:1: malformed JSON: the key 'effect' appears twice"),
        (row % '1, "query_id": "%s"' % ("q" * 513), "line 1: query_id has 513 characters; the limit is 512"),
    ):
        bad.write_text(text)
        with pytest.raises(DataFileError, match=problem):
            import_outcomes(embedded, bad)
    table = tmp_path / "rows.csv"
    for text, problem in (
        ("query,task,llm,effect,cost,effect\nq,t,m,1,0.001,0\n", "the header names 'effect' more than once"),
        ("query,task,llm,effect,cost\nq,t,m,1,0.001,7\n", "rows.csv:2: 6 cell\\(s\\) where the header has 5"),
    ):
        table.write_text(text)
        with pytest.raises(DataFileError, match=problem):
            import_outcomes(embedded, table)
    assert set(embedded.counts().values()) == {0}


def test_csv_rows_may_leave_off_trailing_optional_cells(embedded: GraphStore, catalogue: Path, tmp_path: Path) -> None:
    """As spreadsheets write them: a row shorter than the header (its last cells empty), or with a trailing comma."""
    import_llms(embedded, catalogue)
    path = tmp_path / "rows.csv"
    header = "query,task,llm,effect,cost,source\n"
    path.write_text(header + "What is 2+2?,math,big,1,0.01\nWhat is 3+3?,math,big,1,0.01,s,\n")
    assert import_outcomes(embedded, path)["outcomes"] == 2
    assert sorted(o.source for o in embedded.outcomes(LLM)) == ["", "s"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_utf8_bom_is_skipped(embedded: GraphStore, catalogue: Path, tmp_path: Path, suffix: str) -> None:
    """Files saved by editors that write a byte-order mark import as without it (its first column name intact)."""
    import_llms(embedded, catalogue)
    path = write_rows(tmp_path / f"rows{suffix}", ROWS)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert import_outcomes(embedded, path)["outcomes"] == len(ROWS) and embedded.counts()["Task"] == 2


def test_llm_catalogues_in_both_formats(tmp_path: Path) -> None:
    jsonl = tmp_path / "llms.jsonl"
    jsonl.write_text(json.dumps({"name": "m", "description": "d", "input_price": 1, "output_price": 2}) + "\n")
    (m,) = read_llm_catalogue(jsonl)
    assert (m.name, m.input_price, m.output_price, m.size_b) == ("m", 1.0, 2.0, None)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"m": {"feature": "no prices"}}))
    with pytest.raises(DataFileError, match="LLM 'm': missing input_price"):
        read_llm_catalogue(bad)
    bad.write_text(json.dumps({"m": {"input_price": -1, "output_price": 1}}))
    with pytest.raises(DataFileError, match="input_price must be >= 0"):
        read_llm_catalogue(bad)
    assert [parse_size_b(s) for s in ("7B", "2.9b", "8x7B", "350M", 13, "?", None)] == [
        7,
        2.9,
        56,
        0.35,
        13,
        None,
        None,
    ]


def test_token_counts_use_the_fixed_offline_tokenizer() -> None:
    assert count_tokens(["hello world", ""]) == [2, 0]
    # what WordPiece cannot split ([UNK]: a word of over 100 characters, a run of emoji) counts by its bytes, not as 1
    assert count_tokens(["w" * 20_000, "\U0001f600" * 5_000, "hi " + "w" * 400]) == [5_000, 5_000, 101]


# ---- the real benchmark -----------------------------------------------------------------------------------
def test_dcrouter_imports_the_real_benchmark(embedded: GraphStore, caplog: pytest.LogCaptureFixture) -> None:
    written = import_dcrouter(embedded, DCROUTER_DIR)
    assert written == {"tasks": 14, "queries": 6108, "llms": 9, "agents": 0, "outcomes": 54972}
    c = embedded.counts()
    assert (c["Task"], c["Query"], c["LLM"], c["ANSWERED_BY"], c["OF_TASK"]) == (14, 6108, 9, 54972, 6108)
    items = json.loads((DCROUTER_DIR / "data/dcrouter_preprocessed/test.json").read_text())
    q = embedded.get_node(QUERY, "dcrouter:test:0")
    assert q.text == items[0]["question"]
    m = embedded.get_node(LLM, "gemma-2-9b-it")
    assert (m.input_price, m.output_price, m.size_b) == (0.1, 0.1, 9.0)
    (edge,) = embedded.outcomes(LLM, target="gemma-2-9b-it", query_id=q.id)
    assert edge.effect == items[0]["scores"]["gemma-2-9b-it"] and edge.source == "dcrouter:test"
    (n_tok,) = count_tokens([q.text])
    assert edge.cost == pytest.approx((n_tok * 0.1 + 512 * 0.1) / 1e6, rel=1e-12)
    # re-import is idempotent
    import_dcrouter(embedded, DCROUTER_DIR)
    assert embedded.counts() == c
    assert len(embedded.list_nodes(TASK)) == 14
    # an operator's price change survives importing again (make demo), and --update undoes it
    embedded.write(GraphBatch(llms=[dataclasses.replace(m, input_price=0.5)]))
    with caplog.at_level(logging.WARNING):
        written = import_dcrouter(embedded, DCROUTER_DIR)
    assert written["llms"] == 8 and embedded.get_node(LLM, "gemma-2-9b-it").input_price == 0.5
    assert "kept as stored" in caplog.text and "gemma-2-9b-it" in caplog.text and "--update" in caplog.text
    assert embedded.outcomes(LLM, target="gemma-2-9b-it", query_id=q.id) == [edge]  # as stored
    embedded.delete_node(LLM, "gemma-2-9b-it")  # another model of that name, registered with its own data
    embedded.write(GraphBatch(llms=[dataclasses.replace(m, description="another gemma")]))
    assert import_dcrouter(embedded, DCROUTER_DIR)["outcomes"] == 54972 - 6108  # not the dataset's gemma's outcomes
    assert embedded.outcomes(LLM, target="gemma-2-9b-it") == []
    assert import_dcrouter(embedded, DCROUTER_DIR, update=True)["llms"] == 9
    assert embedded.get_node(LLM, "gemma-2-9b-it").input_price == 0.1


def copy_dcrouter(tmp_path: Path) -> Path:
    dst = tmp_path / "LLMRouter"
    shutil.copytree(DCROUTER_DIR, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "data/dcrouter_preprocessed/test.json").unlink(), r"test.json: file not found"),
        (
            lambda d: (d / "data/dcrouter_preprocessed/train.json").write_text('[{"question": "q", "scores": '),
            r"train.json:1: malformed JSON",
        ),
        (
            lambda d: (d / "data/dcrouter_preprocessed/test.json").write_text(
                '[{"question": "never seen", "scores": {}}]'
            ),
            r"test.json: item 0: question not found",
        ),
        (
            lambda d: (d / "data/example_data/llm_candidates/default_llm.json").write_text("[1, 2]"),
            r"default_llm.json: 2 bad LLM\(s\), nothing was imported: entry 1: expected an object",
        ),
    ],
)
def test_dcrouter_damaged_files_give_one_clear_error_and_leave_the_store(
    embedded: GraphStore,
    tmp_path: Path,
    damage,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    data = copy_dcrouter(tmp_path)
    damage(data)
    with pytest.raises(DataFileError, match=message):
        import_dcrouter(embedded, data)
    assert set(embedded.counts().values()) == {0}


def test_dcrouter_out_of_range_score_is_rejected(embedded: GraphStore, tmp_path: Path) -> None:
    data = copy_dcrouter(tmp_path)
    path = data / "data/dcrouter_preprocessed/test.json"
    items = json.loads(path.read_text())
    items[7]["scores"]["gemma-2-9b-it"] = 3.0
    path.write_text(json.dumps(items))
    with pytest.raises(DataFileError, match=r"test.json item 7: effect must be in \[0, 1\], got 3.0"):
        import_dcrouter(embedded, data)
    assert set(embedded.counts().values()) == {0}


def test_csv_errors_count_the_header_line(embedded: GraphStore, catalogue: Path, tmp_path: Path) -> None:
    import_llms(embedded, catalogue)
    rows = [dict(r) for r in ROWS]
    rows[2]["effect"] = -0.5
    expected = r"rows.csv: 1 bad row\(s\), nothing was imported: line 4: effect must be in"
    with pytest.raises(DataFileError, match=expected):
        import_outcomes(embedded, write_rows(tmp_path / "rows.csv", rows))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_missing_column_is_one_header_error(
    embedded: GraphStore, catalogue: Path, tmp_path: Path, suffix: str
) -> None:
    import_llms(embedded, catalogue)
    rows = [{k: v for k, v in r.items() if k not in ("effect", "cost", "input_tokens")} for r in ROWS]
    with pytest.raises(DataFileError, match=r"no 'effect', 'cost or input_tokens' columns; the header has ") as err:
        import_outcomes(embedded, write_rows(tmp_path / f"rows{suffix}", rows))
    assert "bad row" not in str(err.value) and embedded.counts()["Query"] == 0


def test_a_header_error_says_what_is_wrong_with_the_header(embedded: GraphStore, tmp_path: Path) -> None:
    spaced, semis, catalogue = tmp_path / "spaced.csv", tmp_path / "semis.csv", tmp_path / "llms.csv"
    spaced.write_text("query, task, llm, effect, cost\nq,t,m,1,0.001\n")
    semis.write_text("query;task;llm;effect;cost\nq;t;m;1;0.001\n")
    catalogue.write_text("name,description,input_price,output_price\nm,x,1,1\n")
    with pytest.raises(DataFileError, match=r"the header has 'query', ' task'.*spaces around them: remove the spaces"):
        import_outcomes(embedded, spaced)
    with pytest.raises(DataFileError, match=r"looks separated by something other than commas"):
        import_outcomes(embedded, semis)
    with pytest.raises(DataFileError, match=r"an LLM catalogue is JSON \(an object or a list\) or JSONL, not .csv"):
        import_llms(embedded, catalogue)  # was "malformed JSON"


def test_each_import_leaves_one_change_record_and_a_refused_one_none(
    embedded: GraphStore, catalogue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graph_store import changes

    import_llms(embedded, catalogue)
    import_outcomes(embedded, write_rows(tmp_path / "rows.jsonl", ROWS))
    llms, outcomes = embedded.changes_since(0)
    assert llms.kind == outcomes.kind == changes.IMPORTED and llms.origin == "graphrouter-import"
    assert llms.payload == {
        "llms": ["big", "small"],
        "agents": [],
        "tasks": [],
        "outcomes": 0,
        "rows": [],
        "updated": [],
    }
    assert outcomes.payload["tasks"] == ["math", "poetry"] and outcomes.payload["outcomes"] == 3
    assert sorted(r[1] for r in outcomes.payload["rows"]) == ["big", "small", "small"]
    bad = [dict(r) for r in ROWS]
    bad[1]["effect"] = 2.0
    with pytest.raises(DataFileError):
        import_outcomes(embedded, write_rows(tmp_path / "bad.jsonl", bad))
    assert embedded.changes_since(outcomes.version) == []
    monkeypatch.setattr(changes, "MAX_LOGGED_IMPORT_ROWS", 2)  # a large import: counted, its rows not carried
    import_outcomes(embedded, write_rows(tmp_path / "again.jsonl", ROWS))
    (large,) = embedded.changes_since(outcomes.version)
    assert large.payload["outcomes"] == 3 and "rows" not in large.payload
    monkeypatch.undo()
    # rows within the count but long (query ids of up to 512 characters): counted, not carried, and the import is not
    # refused for its record's size (10,000 rows with long emoji ids made a 60 MB record that no store would take)
    long_ids = [{**r, "query_id": f"{i}-" + "😀" * 400} for i, r in enumerate(ROWS)]
    monkeypatch.setattr(changes, "MAX_LOGGED_IMPORT_BYTES", 4_000)
    monkeypatch.setattr(changes, "MAX_PAYLOAD_BYTES", 5_000)
    import_outcomes(embedded, write_rows(tmp_path / "long.jsonl", long_ids))
    (large,) = embedded.changes_since(large.version)
    assert large.payload["outcomes"] == 3 and "rows" not in large.payload
    assert embedded.counts()["Query"] == 5
    monkeypatch.undo()
    # the record names the stored LLMs whose data an --update import changed (replicas replace those only)
    import_llms(embedded, catalogue)
    assert embedded.changes_since(large.version)[-1].payload["updated"] == []
    changed = {**CATALOGUE, "small": {**CATALOGUE["small"], "input_price": 0.5}}
    catalogue.write_text(json.dumps(changed))
    import_llms(embedded, catalogue, update=True)
    assert embedded.changes_since(large.version)[-1].payload["updated"] == ["small"]


def test_an_import_that_would_change_stored_data_is_refused_unless_update(
    embedded: GraphStore, catalogue: Path, tmp_path: Path
) -> None:
    import_llms(embedded, catalogue)
    import_outcomes(embedded, write_rows(tmp_path / "rows.jsonl", ROWS))
    big = embedded.get_node(LLM, "big")
    embedded.upsert([dataclasses.replace(big, base_url="http://127.0.0.1:9/v1", api_key_env="BIG_KEY")])  # PATCH
    import_llms(embedded, catalogue)  # the same data again: harmless, and the upstream a catalogue lacks is kept
    assert embedded.get_node(LLM, "big").base_url == "http://127.0.0.1:9/v1"
    import_outcomes(embedded, write_rows(tmp_path / "again.jsonl", ROWS))
    before = embedded.counts()
    q = query_id("What is 2+2?")
    other_text = [{**ROWS[0], "query": "What is 3+3?", "query_id": q}]
    other_task = [{**ROWS[0], "task": "arithmetic"}]
    for name, rows, message in [
        ("text.jsonl", other_text, f"query '{q}' is stored with another text"),
        ("task.jsonl", other_task, f"query '{q}' is stored with another task"),
    ]:
        with pytest.raises(DataFileError, match=message + ".*nothing was imported|nothing was imported.*" + message):
            import_outcomes(embedded, write_rows(tmp_path / name, rows))
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({**CATALOGUE, "big": {**CATALOGUE["big"], "input_price": 99.0}}))
    with pytest.raises(DataFileError, match="LLM 'big' is stored with other data.*--update") as refused:
        import_llms(embedded, changed)
    assert "query_id" not in str(refused.value)  # that advice is for a query's rows
    assert embedded.counts() == before and embedded.get_node(QUERY, q).text == "What is 2+2?"
    assert embedded.get_node(LLM, "big").input_price == 0.9

    assert embedded.get_node(LLM, "big").priced_at == ""  # its prices never changed: every cost billed at them
    import_llms(embedded, changed, update=True)  # on purpose
    import_outcomes(embedded, write_rows(tmp_path / "text.jsonl", other_text), update=True)
    assert embedded.get_node(LLM, "big").input_price == 99.0 and embedded.get_node(QUERY, q).text == "What is 3+3?"
    # the change of prices is dated (training learns the cost multiplier from costs billed since); the upstream kept
    repriced = embedded.get_node(LLM, "big")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", repriced.priced_at), repriced
    assert repriced.base_url == "http://127.0.0.1:9/v1"
    described = tmp_path / "described.json"  # another description, the same prices: the date stays
    big_x = {**CATALOGUE["big"], "input_price": 99.0, "description": "x"}
    described.write_text(json.dumps({**CATALOGUE, "big": big_x}))
    import_llms(embedded, described, update=True)
    assert embedded.get_node(LLM, "big").priced_at == repriced.priced_at
    assert embedded.get_node(LLM, "big").description == "x"
    # outcomes imported with the catalogue that reprices: those of no given time were billed at the new prices, the
    # rows of an agent on it too
    cheaper = [dataclasses.replace(m, input_price=1.0) if m.name == "big" else m for m in read_llm_catalogue(catalogue)]
    timed = {**ROWS[0], "query": "What is 5+5?", "observed_at": "2026-01-01T00:00:00Z"}
    embedded.upsert([Agent("on-big", "big", "ReAct on big"), Agent("on-small", "small", "ReAct on small")])
    agents = [{**{k: v for k, v in ROWS[0].items() if k != "llm"}, "agent": a} for a in ("on-big", "on-small")]
    import_outcomes(
        embedded, write_rows(tmp_path / "cheaper.jsonl", [ROWS[0], timed, ROWS[1], *agents]), llms=cheaper, update=True
    )
    big, at = embedded.get_node(LLM, "big"), {o.query_id: o.observed_at for o in embedded.outcomes(LLM, target="big")}
    assert big.input_price == 1.0 and big.priced_at >= repriced.priced_at
    assert at[query_id("What is 2+2?")] == big.priced_at and at[query_id("What is 5+5?")] == "2026-01-01T00:00:00Z"
    on = {o.target: o.observed_at for o in embedded.outcomes(AGENT)}
    assert on == {"on-big": big.priced_at, "on-small": ""}
    small = {o.query_id: o.observed_at for o in embedded.outcomes(LLM, target="small")}
    assert small[query_id("What is 2+2?")] == ""  # not repriced: unknown stays unknown


def test_a_file_that_gives_the_same_thing_twice_is_refused(
    embedded: GraphStore, catalogue: Path, tmp_path: Path
) -> None:
    import_llms(embedded, catalogue)
    twice = [ROWS[0], ROWS[1], {**ROWS[0], "effect": 0.0}]
    with pytest.raises(DataFileError, match="line 3: the same query and LLM 'big' as line 1"):
        import_outcomes(embedded, write_rows(tmp_path / "twice.jsonl", twice))
    texts = [{**ROWS[0], "query_id": "q1"}, {**ROWS[1], "query_id": "q1", "query": "What is 3+3?"}]
    with pytest.raises(DataFileError, match="line 2: query q1 was given another text earlier"):
        import_outcomes(embedded, write_rows(tmp_path / "texts.jsonl", texts))
    named_twice = tmp_path / "llms.jsonl"
    named_twice.write_text("".join(json.dumps({"name": "m", **CATALOGUE["big"]}) + "\n" for _ in range(2)))
    with pytest.raises(DataFileError, match="LLM 'm': the catalogue names it twice"):
        import_llms(embedded, named_twice)
    two_bad = tmp_path / "two_bad.jsonl"
    two_bad.write_text(
        json.dumps({"name": "a", "input_price": 1})
        + "\n"
        + json.dumps({"name": "b", "input_price": -1, "output_price": 1})
        + "\n"
    )
    with pytest.raises(DataFileError, match=r"2 bad LLM\(s\).*line 1: LLM 'a': missing output_price.*line 2: LLM 'b'"):
        import_llms(embedded, two_bad)  # every bad line at once, as for outcome rows
    reserved = tmp_path / "reserved.jsonl"
    for name in ("graphrouter:balance", "big/probes"):  # the proxy's name for routing; a GET's probe set of big
        reserved.write_text(json.dumps({"name": name, **CATALOGUE["big"]}) + "\n")
        with pytest.raises(DataFileError, match=f"'{name}' is reserved"):
            import_llms(embedded, reserved)  # as POST /v1/llms refuses it
    keyed_twice = tmp_path / "default_llm.json"
    keyed_twice.write_text('{"m": {"input_price": 1, "output_price": 1}, "m": {"input_price": 2, "output_price": 2}}')
    with pytest.raises(DataFileError, match="the key 'm' appears twice"):
        import_llms(embedded, keyed_twice)
    assert embedded.counts()["ANSWERED_BY"] == 0 and {m.key for m in embedded.list_nodes(LLM)} == {"big", "small"}


def test_an_import_racing_another_writer_of_a_new_llm_is_refused_whole(
    embedded: GraphStore, catalogue: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two imports (or an import and a registration) of one new LLM with different data both succeeded, the last
    writer's kept, without --update: the comparison with the store came before the write."""
    from graph_store import ConflictError, LLMNode
    from graphrouter import ingest

    theirs = LLMNode("big", description="theirs", input_price=5.0, output_price=5.0)
    keep_stored = ingest.keep_stored

    def another_writer_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        embedded.write(GraphBatch(llms=[theirs]))  # after the import compared, before it writes
        return keep_stored(*args, **kwargs)

    monkeypatch.setattr(ingest, "keep_stored", another_writer_meanwhile)
    with pytest.raises(ConflictError, match="LLM 'big' was registered by another writer .*try again"):
        import_llms(embedded, catalogue)
    assert embedded.get_node(LLM, "big") == theirs and not embedded.has_node(LLM, "small")  # nothing of it written
    assert embedded.changes_since(0) == []
    monkeypatch.undo()
    with pytest.raises(DataFileError, match="'big'.*--update"):  # trying again: refused as any other data is
        import_llms(embedded, catalogue)


def test_an_import_racing_a_registration_of_one_of_its_new_tasks_is_refused(
    embedded: GraphStore, catalogue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task the import found absent and the API registered (with a description) before the import wrote: the
    import's empty-description upsert replaced it (review)."""
    from graph_store import ConflictError, Task
    from graphrouter import ingest

    import_llms(embedded, catalogue)
    keep_stored = ingest.keep_stored

    def registered_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        embedded.write(GraphBatch(tasks=[Task("math", "arithmetic, registered through the API")]))
        return keep_stored(*args, **kwargs)

    monkeypatch.setattr(ingest, "keep_stored", registered_meanwhile)
    with pytest.raises(ConflictError, match="Task 'math' was registered by another writer"):
        import_outcomes(embedded, write_rows(tmp_path / "rows.jsonl", ROWS))
    assert embedded.get_node(TASK, "math").description == "arithmetic, registered through the API"
    assert embedded.counts()["Query"] == 0


def test_import_errors_name_the_line_of_a_name_in_another_unicode_spelling(
    embedded: GraphStore, catalogue: Path, tmp_path: Path
) -> None:
    import_llms(embedded, catalogue)
    rows = [dict(r) for r in ROWS]
    rows[2]["task"] = "poe\u0301m"
    with pytest.raises(DataFileError, match=r"line 3: Task.name 'poe\\u0301m' is not in Unicode NFC form"):
        import_outcomes(embedded, write_rows(tmp_path / "rows.jsonl", rows))
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"huge": {**CATALOGUE["big"], "feature": "x" * 1_000_001}}))
    with pytest.raises(DataFileError, match=r"LLM 'huge': LLM.description of 'huge' is 1,000,001 characters long"):
        import_llms(embedded, big)
