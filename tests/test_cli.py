"""The ``graphrouter`` command line: import, stats, export, and errors as one line with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from graph_store.backends.embedded import EmbeddedStore
from graphrouter.cli import main
from tests.data_paths import DCROUTER_DIR


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("cli") / "graph.db"
    assert main(["--store", str(store), "import", "dcrouter", "--data-dir", str(DCROUTER_DIR)]) == 0
    return store


def test_stats_prints_counts_by_type(imported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store", str(imported), "stats", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "embedded"
    assert out["counts"] == {
        "Task": 14,
        "Query": 6108,
        "LLM": 9,
        "Agent": 0,
        "OF_TASK": 6108,
        "ANSWERED_BY": 54972,
        "HANDLED_BY": 0,
        "BACKED_BY": 0,
    }
    assert main(["--store", str(imported), "stats"]) == 0
    assert "ANSWERED_BY" in capsys.readouterr().out
    assert main(["stats", "--json", "--store", str(imported)]) == 0  # the global options after the command too
    assert json.loads(capsys.readouterr().out)["counts"]["Query"] == 6108


def test_the_global_options_go_before_or_after_the_command() -> None:
    from graphrouter.cli import build_parser

    parser = build_parser()
    for argv in (["--embedding-cache", "c.sqlite", "train"], ["train", "--embedding-cache", "c.sqlite"]):
        assert parser.parse_args(argv).embedding_cache == Path("c.sqlite"), argv
    after = parser.parse_args(["--store", "a.db", "import", "outcomes", "o.jsonl", "--store", "b.db"])
    assert after.store_location == "b.db"  # given after the command, it wins
    assert parser.parse_args(["import", "--store", "c.db", "outcomes", "o.jsonl"]).store_location == "c.db"
    assert parser.parse_args(["route", "q", "--embedding-backend", "torch"]).embedding_backend == "torch"
    assert parser.parse_args(["route", "q"]).embedding_backend in ("onnx", "torch")  # the default, not suppressed


def test_export_formats(imported: Path, tmp_path: Path) -> None:
    graphml = tmp_path / "g.graphml"
    assert (
        main(["--store", str(imported), "export", "--format", "graphml", "-o", str(graphml), "--max-queries", "30"])
        == 0
    )
    g = nx.read_graphml(graphml)
    labels = [a["label"] for _, a in g.nodes(data=True)]
    assert labels.count("Query") == 30 and labels.count("LLM") == 9 and labels.count("Task") == 14
    assert all(a["type"] in ("ANSWERED_BY", "OF_TASK") for *_, a in g.edges(data=True))
    assert sum(a["type"] == "ANSWERED_BY" for *_, a in g.edges(data=True)) == 30 * 9

    js = tmp_path / "g.json"
    assert main(["--store", str(imported), "export", "--format", "json", "-o", str(js), "--max-queries", "5"]) == 0
    doc = json.loads(js.read_text())
    assert len(doc["nodes"]) == 5 + 9 + 14 and len(doc["edges"]) == 5 * 9 + 5

    html = tmp_path / "g.html"
    assert main(["--store", str(imported), "export", "--format", "html", "-o", str(html), "--max-queries", "20"]) == 0
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "ANSWERED_BY" in page
    assert 'src="http' not in page  # self-contained: no script fetched from the network

    typo = tmp_path / "no-such-dir" / "g.json"  # a mistyped folder is refused, not created
    assert main(["--store", str(imported), "export", "--format", "json", "-o", str(typo)]) == 2
    assert not typo.parent.exists()


def test_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "graph.db"
    assert main(["--store", str(store), "import", "dcrouter", "--data-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope: data directory not found" in err and "Traceback" not in err
    bad = tmp_path / "rows.jsonl"
    bad.write_text(json.dumps({"query": "q", "task": "t", "llm": "ghost", "effect": 0.5, "cost": 0}) + "\n")
    assert main(["--store", str(store), "import", "outcomes", str(bad)]) == 2
    assert "line 1: LLM 'ghost' is not in the catalogue" in capsys.readouterr().err
    assert main(["--store", "ftp://somewhere", "stats"]) == 2
    assert "unsupported store location" in capsys.readouterr().err
    for typo in ("bolt//127.0.0.1:7687", "bolt:127.0.0.1:7687", "Neo4j:/db.example"):  # a writer made a file of it
        llms = tmp_path / "llms.jsonl"
        llms.write_text(json.dumps({"name": "m", "description": "d", "input_price": 1, "output_price": 1}) + "\n")
        assert main(["--store", typo, "import", "llms", str(llms)]) == 2
        assert "looks like a mistyped Neo4j URI: write bolt://HOST:PORT" in capsys.readouterr().err
    assert not any(p.name.lower().startswith(("bolt", "neo4j")) for p in Path.cwd().iterdir())
    monkeypatch.chdir(tmp_path)
    assert main(["--store", "neo4j/graph.db", "import", "llms", str(llms)]) == 0  # a folder of that name is fine
    assert (tmp_path / "neo4j" / "graph.db").exists()


def test_register_llm_takes_its_own_outcomes_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``register-llm --outcomes FILE`` imports the new LLM's rows; a file with another's is refused whole (it used
    to be imported, the other LLM's outcomes replaced, and counted as the new one's)."""
    store = tmp_path / "graph.db"
    rows = tmp_path / "rows.jsonl"
    row = {"query": "What is 2+2?", "task": "math", "llm": "new", "effect": 1.0, "cost": 0.001}
    rows.write_text(json.dumps(row) + "\n" + json.dumps({**row, "query": "What is 3+3?"}) + "\n")
    register = ["--store", str(store), "register-llm", "new", "--description", "a new model"]
    register += ["--input-price", "1", "--output-price", "2", "--outcomes", str(rows)]
    assert main(register) == 0
    assert "registered new (2 outcome(s))" in capsys.readouterr().out
    rows.write_text(json.dumps({**row, "agent": None}) + "\n")  # an agent column left empty: still its row
    assert main([*register, "--update"]) == 0, capsys.readouterr().err
    assert "registered new (1 outcome(s))" in capsys.readouterr().out
    other = {**row, "llm": "other", "query": "What is 3+3?"}
    rows.write_text(json.dumps({**row, "effect": 0.0}) + "\n" + json.dumps(other) + "\n")  # new's row, then its own
    assert main([*register[:3], "other", *register[4:]]) == 2
    err = capsys.readouterr().err
    assert "1 row(s) are not outcomes of 'other' (line 1: 'new')" in err and "Traceback" not in err
    with EmbeddedStore(store) as s:
        assert s.counts()["LLM"] == 1 and {o.effect for o in s.outcomes("LLM")} == {1.0}  # nothing written


def test_an_import_that_adds_a_task_beside_stored_ones_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API refuses an outcome on an unknown task; an import adds it (a data set brings its tasks), so a misspelt
    task became a new one without a word (audit)."""
    store = tmp_path / "graph.db"
    rows = tmp_path / "rows.jsonl"
    row = {"query": "What is 2+2?", "task": "math", "llm": "m", "effect": 1.0, "cost": 0.001}
    rows.write_text(json.dumps(row) + "\n")
    register = [
        "--store",
        str(store),
        "register-llm",
        "m",
        "--description",
        "d",
        "--input-price",
        "1",
        "--output-price",
        "2",
    ]
    assert main([*register, "--outcomes", str(rows)]) == 0
    assert "new task" not in capsys.readouterr().err  # the first tasks of an empty store are no surprise
    rows.write_text(json.dumps({**row, "query": "What is 3+3?", "task": "mathz"}) + "\n")
    assert main(["--store", str(store), "import", "outcomes", str(rows)]) == 0
    assert "note: 1 new task(s), beside the 1 stored: 'mathz' (a misspelt task" in capsys.readouterr().err


def test_console_script_runs(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("graphrouter")
    typo = tmp_path / "typo.db"  # a command that only reads does not leave an empty store behind a mistyped --store
    proc = subprocess.run([str(exe), "--store", str(typo), "stats"], capture_output=True, text=True)
    assert proc.returncode == 2 and f"error: no store at {typo}; import data first" in proc.stderr, proc.stderr
    assert not typo.exists()
    EmbeddedStore(tmp_path / "g.db").close()
    proc = subprocess.run([str(exe), "--store", str(tmp_path / "g.db"), "stats"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Query" in proc.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRAPHROUTER_PORT": "-5"}, "error: GRAPHROUTER_PORT: Input should be greater than or equal to 1 (got '-5')"),
        ({"GRAPHROUTER_TRAIN_PARAMS": "{bad"}, "error: GRAPHROUTER_TRAIN_PARAMS is not valid JSON: "),
        ({"GRAPHROUTER_WORKERS": "abc"}, "error: GRAPHROUTER_WORKERS must be a whole number"),
        ({"GRAPHROUTER_TRAIN_ROUTER": "nosuch"}, "error: GRAPHROUTER_TRAIN_ROUTER: unknown router 'nosuch'"),
        ({"GRAPHROUTER_TRAIN_PARAMS": '{"max_episodes": -3}'}, "max_episodes=-3 (must be at least 1"),
        ({"GRAPHROUTER_TRAIN_PARAMS": '{"layers": 3}'}, "do not fit the 'gnn' router: "),
        ({"GRAPHROUTER_STORE_TIMEOUT": "-1"}, "error: the store timeout must be a number of seconds in (0, 600]"),
        ({"GRAPHROUTER_WORKERS": "0"}, "error: GRAPHROUTER_WORKERS must be at least 1, got 0"),
        ({"GRAPHROUTER_SYNC_INTERVAL": "inf"}, "error: GRAPHROUTER_SYNC_INTERVAL: Input should be a finite number"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict, message: str
) -> None:
    """A bad GRAPHROUTER_* value stops `serve` before it opens a port: one error line, exit 2, no traceback (a
    training setting too: it would otherwise fail, or train nothing, at the first POST /v1/train)."""
    from api import cli as api_cli

    for key in ("GRAPHROUTER_STORE", "GRAPHROUTER_EMBEDDING_BACKEND", "GRAPHROUTER_LOAD_IN_BACKGROUND"):
        monkeypatch.setenv(key, "")  # serve sets these: recorded here so that they are restored after the test
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("api.server.run_server", lambda *a, **k: pytest.fail("the server was started"))
    with pytest.raises(SystemExit) as end:
        api_cli.main(["--store", str(tmp_path / "g.db"), "serve"])
    err = capsys.readouterr().err
    assert end.value.code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://localhost:7474", "error: unsupported store location 'http://localhost:7474'"),
        ("bolt://127.0.0.1:99999", "Port out of range"),
        ("bolt://u:secret@h:7687?tmeout=5", "unknown parameter(s) tmeout; a bolt:// location takes only ?timeout="),
    ],
)
def test_serve_refuses_a_store_location_no_open_could_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], location: str, message: str
) -> None:
    from api import cli as api_cli

    for key in ("GRAPHROUTER_STORE", "GRAPHROUTER_EMBEDDING_BACKEND", "GRAPHROUTER_LOAD_IN_BACKGROUND"):
        monkeypatch.setenv(key, "")  # serve sets these: recorded here so that they are restored after the test
        monkeypatch.delenv(key)
    monkeypatch.setattr("api.server.run_server", lambda *a, **k: pytest.fail("the server was started"))
    with pytest.raises(SystemExit) as end:
        api_cli.main(["--store", location, "serve"])
    err = capsys.readouterr().err
    assert end.value.code == 2 and message in err and "secret" not in err, err


def test_a_text_with_characters_xml_cannot_hold_still_exports_readable_graphml(tmp_path: Path) -> None:
    from graph_store import GraphBatch, Query, Task

    db, out = tmp_path / "g.db", tmp_path / "g.graphml"
    text = "line two \x01 ctrl \ufffe x"
    with EmbeddedStore(db) as store:
        store.write(
            GraphBatch(tasks=[Task("t", "a \x02 task")], queries=[Query(text, "t", "q"), Query("x", "t", "q\ufffe")])
        )
    assert main(["--store", str(db), "export", "--format", "graphml", "-o", str(out)]) == 0
    g = nx.read_graphml(out)  # was: not well-formed (invalid token)
    assert g.nodes["Query:q"]["text"] == "line two \ufffd ctrl \ufffd x"
    assert g.nodes["Task:t"]["description"] == "a \ufffd task" and g.has_edge("Query:q", "Task:t")
    assert g.nodes["Query:q\ufffd"]["text"] == "x"  # a key may hold U+FFFE


def test_serve_refuses_a_checkpoint_without_its_store_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --store would otherwise start an empty store beside the checkpoint and route nothing; with no
    checkpoint, an empty store is how a service starts from nothing (register, import, POST /v1/train)."""
    from api import cli as api_cli

    for key in ("GRAPHROUTER_STORE", "GRAPHROUTER_EMBEDDING_BACKEND", "GRAPHROUTER_LOAD_IN_BACKGROUND"):
        monkeypatch.setenv(key, "")  # serve sets these: recorded here so that they are restored after the test
        monkeypatch.delenv(key)
    monkeypatch.setenv("GRAPHROUTER_CHECKPOINT", "")
    served: list[str] = []
    monkeypatch.setattr("api.server.run_server", lambda *a, **k: served.append(os.environ["GRAPHROUTER_STORE"]))
    checkpoint, store = tmp_path / "checkpoint.pt", tmp_path / "typo.db"
    checkpoint.write_bytes(b"a checkpoint")
    with pytest.raises(SystemExit) as end:
        api_cli.main(["--store", str(store), "serve", "--checkpoint", str(checkpoint)])
    err = capsys.readouterr().err
    assert end.value.code == 2 and f"error: no store at {store}, and the checkpoint {checkpoint}" in err, err
    assert not store.exists() and not served
    api_cli.main(["--store", f"embedded://{store}", "serve", "--checkpoint", str(tmp_path / "none.pt")])
    assert served == [f"embedded://{store}"]
    store.touch()
    api_cli.main(["--store", str(store), "serve", "--checkpoint", str(checkpoint)])
    assert served[-1] == str(store)


def test_serve_refuses_a_bad_timeout_in_the_bolt_location(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from api import cli as api_cli

    for key in ("GRAPHROUTER_STORE", "GRAPHROUTER_EMBEDDING_BACKEND", "GRAPHROUTER_LOAD_IN_BACKGROUND"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setattr("api.server.run_server", lambda *a, **k: pytest.fail("the server was started"))
    with pytest.raises(SystemExit) as end:
        api_cli.main(["--store", "bolt://127.0.0.1:1?timeout=-1", "serve"])
    assert end.value.code == 2 and "the store timeout must be a number of seconds" in capsys.readouterr().err


def test_train_checks_its_params_before_the_long_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "c.pt"
    EmbeddedStore(tmp_path / "g.db").close()
    store = ["--store", str(tmp_path / "g.db")]
    for params, message in (
        ('{"max_episodes": 0}', "max_episodes=0 (must be at least 1"),
        ("[1]", "not a JSON object"),
        ('{"layers": 3}', "unexpected keyword argument 'layers'"),
    ):
        assert main([*store, "train", "--checkpoint", str(ckpt), "--params", params]) == 2
        assert "error: --params do not fit the 'gnn' router: " in (err := capsys.readouterr().err) and message in err
    assert not ckpt.exists()
    # where the checkpoint cannot be written: said before the training, not as a traceback after it
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([*store, "train", "--checkpoint", str(blocker / "c.pt")]) == 2
    assert f"error: cannot write {blocker / 'c.pt'}" in capsys.readouterr().err
    assert main([*store, "train", "--checkpoint", str(tmp_path)]) == 2  # a directory: said before, no .tmp left
    assert f"error: cannot write {tmp_path}: it is a directory" in capsys.readouterr().err
    # a folder that is there but takes no new file (a virtual file system): os.access said yes to root (CI) and the
    # training ran, to fail at its end
    if Path("/proc").is_dir():
        assert main([*store, "train", "--checkpoint", "/proc/c.pt"]) == 2
        assert "error: cannot write /proc/c.pt: " in capsys.readouterr().err
    assert not list(tmp_path.glob("**/*.write-check"))  # the probe file is removed


def test_train_says_when_a_store_is_too_small_to_learn_from(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before embedding anything, in one line: a store with no outcome, or fewer queries than the router needs
    (the GNN's neighbour count and the MLP's validation split gave tracebacks)."""
    from graph_store import GraphBatch, LLMNode, Outcome, Query, Task

    ckpt, db = tmp_path / "c.pt", tmp_path / "g.db"
    queries = [Query(f"question {i}", "math", f"q{i}") for i in range(5)]
    with EmbeddedStore(db) as store:
        store.write(GraphBatch(tasks=[Task("math")], queries=queries, llms=[LLMNode("a", "an LLM", 1.0, 1.0)]))
    args = ["--store", str(db), "train", "--checkpoint", str(ckpt)]
    assert main(args) == 2
    assert "error: the store has no outcomes to learn from; import some" in capsys.readouterr().err
    with EmbeddedStore(db) as store:
        store.write(GraphBatch(outcomes=[Outcome(q.id, "a", 1.0, 0.001) for q in queries]))
    for router, need in (("gnn", 12), ("mlp", 7)):
        assert main([*args, "--router", router]) == 2
        err = capsys.readouterr().err
        assert f"error: the '{router}' router needs at least {need} training queries with outcomes, got 5" in err, err
    assert not ckpt.exists()


def test_a_checkpoint_that_cannot_be_renamed_into_place_leaves_no_temp_file(tmp_path: Path) -> None:
    from graphrouter.checkpoint import save_checkpoint
    from graphrouter.routers import ROUTERS
    from tests.routing_world import make_world, split

    world = make_world(per_task=20)
    router = ROUTERS["best_per_task"]().fit(world, split(world)[0])
    (tmp_path / "c.pt").mkdir()
    with pytest.raises(OSError):
        save_checkpoint(router, "model", tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_the_checkpoint_setting_is_the_cli_default_as_for_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    EmbeddedStore(tmp_path / "g.db").close()
    monkeypatch.setenv("GRAPHROUTER_CHECKPOINT", str(tmp_path / "set" / "ckpt.pt"))
    assert main(["--store", str(tmp_path / "g.db"), "route", "a question"]) == 2
    assert f"no checkpoint at {tmp_path / 'set' / 'ckpt.pt'}" in capsys.readouterr().err
