"""The embedded store's promise: a write that was acknowledged survives ``kill -9`` of the writing process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from graph_store import LLM
from graph_store.backends.embedded import EmbeddedStore

WRITER = textwrap.dedent(
    """
    import sys
    from graph_store import GraphBatch, LLMNode, Outcome, Query, Task
    from graph_store.backends.embedded import EmbeddedStore

    store = EmbeddedStore(sys.argv[1])
    store.write(GraphBatch(tasks=[Task("t")], llms=[LLMNode("m", "", 1, 1)]))
    i = 0
    while True:
        qs = [Query(f"q {i} {j}", "t") for j in range(10)]
        store.write(GraphBatch(queries=qs, outcomes=[Outcome(q.id, "m", effect=0.5, cost=0.1) for q in qs]))
        i += 1
        print(i * 10, flush=True)  # acknowledged: the write returned
    """
)


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "graph.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    acknowledged = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acknowledged >= 300
    with EmbeddedStore(path) as store:
        counts = store.counts()
        assert counts["Query"] >= acknowledged
        assert counts["Query"] == counts["ANSWERED_BY"] == counts["OF_TASK"]  # whole batches only
        assert counts["Query"] % 10 == 0
        assert store.get_node(LLM, "m").name == "m"


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    import pytest

    from graph_store import InvalidInputError

    with pytest.raises(InvalidInputError, match="is a directory"):
        EmbeddedStore(tmp_path)


def test_a_reader_does_not_create_a_missing_store(tmp_path: Path) -> None:
    from graph_store import StoreUnavailableError, open_store

    missing = tmp_path / "nothing-here.db"
    with pytest.raises(StoreUnavailableError, match="no store at .*nothing-here.db; import data first"):
        open_store(missing, create=False)
    assert not missing.exists()
    with open_store(missing) as store:  # the default still creates it (imports, the service)
        assert store.counts()
    assert missing.exists()


def test_a_store_from_before_the_change_log_opens_and_starts_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from graph_store import GraphBatch, Task
    from graph_store.backends.embedded import EmbeddedStore
    from graph_store.changes import TASK_REGISTERED, Change

    path = tmp_path / "old.db"
    EmbeddedStore(path).close()
    with sqlite3.connect(path) as db:  # as written by the code before the change log
        db.execute("DROP TABLE change_log")
        db.execute("DELETE FROM sqlite_sequence")
    with EmbeddedStore(path) as store:
        assert store.latest_version() == 0 and store.changes_since(0) == []
        store.write(GraphBatch(tasks=[Task("t", "")]), change=Change(TASK_REGISTERED, "t"))
        assert [c.key for c in store.changes_since(0)] == ["t"] and store.latest_version() == 1


def test_deletes_cascade_to_pending_outcomes_by_index_also_in_a_file_from_before_the_indexes(tmp_path: Path) -> None:
    """Deleting a query, LLM or agent cascades to its pending outcomes: without an index on each column, every such
    delete scanned the whole pending table (46 ms with 200,000 rows; 0.7 ms with the index)."""
    import sqlite3

    from graph_store.backends.embedded import EmbeddedStore

    path = tmp_path / "old.db"
    EmbeddedStore(path).close()
    names = ("pending_outcome_query", "pending_outcome_llm", "pending_outcome_agent")
    with sqlite3.connect(path) as db:  # as written by the code before them
        for name in names:
            db.execute(f"DROP INDEX {name}")
    with EmbeddedStore(path):
        pass
    with sqlite3.connect(path) as db:
        for column, name in zip(("query_id", "llm", "agent"), names, strict=True):
            plan = " ".join(
                row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN SELECT 1 FROM pending_outcome WHERE {column} = 'x'")
            )
            assert name in plan, plan


def test_a_text_longer_than_writes_take_that_an_earlier_version_stored_is_still_read(tmp_path: Path) -> None:
    """The 1,000,000-character limit is on writes (a row must fit one Bolt message): a store holding a longer text,
    which earlier versions accepted, still opens, lists and snapshots."""
    import sqlite3

    from graph_store import QUERY, GraphBatch, Query, Task
    from graph_store.schema import MAX_TEXT_CHARS

    path = tmp_path / "old.db"
    with EmbeddedStore(path) as store:
        store.write(GraphBatch(tasks=[Task("t")], queries=[Query("short", "t", id="q")]))
    long = "x" * (MAX_TEXT_CHARS + 1)
    with sqlite3.connect(path) as db:  # as an earlier version wrote it
        db.execute("UPDATE query SET text = ? WHERE id = 'q'", (long,))
    with EmbeddedStore(path) as store:
        assert store.get_node(QUERY, "q").text == long
        assert [n.key for n in store.list_nodes(QUERY)] == ["q"] and len(store.snapshot().nodes[QUERY].keys) == 1


def test_a_name_an_earlier_version_stored_in_another_unicode_spelling_can_still_be_written_to(tmp_path: Path) -> None:
    """New names are written in NFC; one stored before that rule (decomposed) keeps working: updated, answered."""
    import sqlite3

    from graph_store import GraphBatch, LLMNode, Outcome, Query, Task

    nfd = "cafe\u0301-7b"
    path = tmp_path / "old.db"
    with EmbeddedStore(path) as store:
        store.write(GraphBatch(tasks=[Task("t")], queries=[Query("q", "t", id="q")], llms=[LLMNode("x")]))
    with sqlite3.connect(path) as db:  # as an earlier version wrote it
        db.execute("UPDATE llm SET name = ? WHERE name = 'x'", (nfd,))
    with EmbeddedStore(path) as store:
        store.write(GraphBatch(llms=[LLMNode(nfd, description="updated")]))
        store.add_outcomes([Outcome("q", nfd, effect=1.0, cost=0.0)])
        assert store.get_node(LLM, nfd).description == "updated" and len(store.outcomes(LLM, target=nfd)) == 1


def test_a_store_that_cannot_write_is_unavailable_for_every_write_not_a_crash(tmp_path: Path) -> None:
    import sqlite3

    from graph_store import GraphBatch, LLMNode, StoreUnavailableError

    path = tmp_path / "graph.db"
    with EmbeddedStore(path) as store:
        store.write(GraphBatch(llms=[LLMNode("m", "a model", 1.0, 1.0)]))
        store._conn.execute("PRAGMA busy_timeout=50")  # (30 s otherwise)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            with pytest.raises(StoreUnavailableError, match="database is locked"):
                store.delete_node(LLM, "m")  # was a raw sqlite3.OperationalError (a 500 in the API)
            with pytest.raises(StoreUnavailableError, match="database is locked"):
                store.write(GraphBatch(llms=[LLMNode("n", "another", 1.0, 1.0)]))
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.has_node(LLM, "m") and not store.has_node(LLM, "n")
        assert store.delete_node(LLM, "m") >= 0 and not store.has_node(LLM, "m")  # works again once it is free


def test_a_store_file_removed_or_replaced_while_open_is_unavailable_not_written_blind(tmp_path: Path) -> None:
    from graph_store import GraphBatch, LLMNode, StoreUnavailableError

    path = tmp_path / "graph.db"
    with EmbeddedStore(path) as store:
        store.write(GraphBatch(llms=[LLMNode("m", "a model", 1.0, 1.0)]))
        path.rename(tmp_path / "moved.db")  # (an operator's rm, or a backup restored over it by mv)
        with pytest.raises(StoreUnavailableError, match="removed or replaced since it was opened"):
            store.write(GraphBatch(llms=[LLMNode("n", "another", 1.0, 1.0)]))  # was acknowledged, then lost
        with pytest.raises(StoreUnavailableError, match="removed or replaced"):
            store.ping()  # /ready says so
        (tmp_path / "moved.db").rename(path)  # put back: the same file, usable again
        assert store.has_node(LLM, "m") and not store.has_node(LLM, "n")
