"""The contract every graph_store backend must honour, run unchanged against each of them (see conftest)."""

from __future__ import annotations

import re
import threading
from dataclasses import replace

import numpy as np
import pytest

from graph_store import (
    AGENT,
    ANSWERED_BY,
    HANDLED_BY,
    LLM,
    MAX_PAGE_INDEX,
    QUERY,
    TASK,
    Agent,
    ChangeLogTruncatedError,
    ConflictError,
    GraphBatch,
    GraphStore,
    InvalidInputError,
    LLMNode,
    NodeNotFoundError,
    Outcome,
    Query,
    Task,
)
from graph_store.backends.embedded import EmbeddedStore
from graph_store.changes import (
    AGENT_DELETED,
    CHECKPOINT,
    LLM_DELETED,
    LLM_REGISTERED,
    MAX_PAYLOAD_BYTES,
    OUTCOMES,
    TASK_REGISTERED,
    UTC_SECOND,
    Change,
    now,
)
from graph_store.schema import MAX_COST, MAX_NAME_CHARS, MAX_PRICE, MAX_TEXT_CHARS

NASTY = [
    "Ünïcödé — 日本語のクエリ 🚀",
    "quotes ' \" `back` and \\ backslashes \\n not a newline",
    'x"}) DETACH DELETE n //',
    "'; DROP TABLE query; --",
    "$param {name: 'x'} MATCH (n) RETURN n",
    "line one\nline two\ttabbed",
]


def small_world() -> GraphBatch:
    tasks = [Task("math", "Grade-school maths word problems", embedding=(0.1, 0.2, 0.3)), Task("code", "")]
    llms = [
        LLMNode("gpt-x", "A large model", input_price=0.1 + 0.2, output_price=1e-7, size_b=70.0),
        LLMNode("tiny", "A small model", input_price=0.0, output_price=0.25),
    ]
    queries = [
        Query(text, "math" if i % 2 else "code", embedding=(float(i), -1.5, 1 / 3)) for i, text in enumerate(NASTY)
    ]
    agents = [Agent("react-bot", llm="gpt-x", description="ReAct with search", strategy="ReAct")]
    outcomes = [
        Outcome(q.id, "gpt-x", effect=0.1 + 0.2, cost=1e-7 * (i + 1), source="test") for i, q in enumerate(queries)
    ]
    outcomes += [Outcome(q.id, "tiny", effect=i / 7, cost=3.3e-6) for i, q in enumerate(queries[:3])]
    outcomes += [
        Outcome(queries[0].id, "react-bot", kind=AGENT, effect=1.0, cost=0.5, observed_at="2026-01-02T03:04:05Z")
    ]
    return GraphBatch(tasks=tasks, queries=queries, llms=llms, agents=agents, outcomes=outcomes)


def test_round_trip_of_every_node_type_is_exact(store: GraphStore) -> None:
    batch = small_world()
    store.write(batch)
    for label in (TASK, QUERY, LLM, AGENT):
        for node in batch.nodes(label):
            assert store.get_node(label, node.key) == node
    assert store.get_node(LLM, "gpt-x").input_price == 0.1 + 0.2  # 0.30000000000000004, not 0.3
    assert store.get_node(LLM, "tiny").size_b is None
    for text in NASTY:
        q = store.get_node(QUERY, Query(text, "code").id)
        assert q.text == text


def test_outcome_edges_round_trip_exactly(store: GraphStore) -> None:
    batch = small_world()
    store.write(batch)
    got = {(o.query_id, o.target): o for o in store.outcomes(LLM)}
    want = {(o.query_id, o.target): o for o in batch.outcomes if o.kind == LLM}
    assert got == want
    (agent_edge,) = store.outcomes(AGENT)
    assert agent_edge == batch.outcomes[-1]
    assert store.outcomes(LLM, target="tiny") == sorted(
        (o for o in want.values() if o.target == "tiny"), key=lambda o: o.query_id
    )
    q0 = batch.queries[0].id
    assert {o.target for o in store.outcomes(LLM, query_id=q0)} == {"gpt-x", "tiny"}


def test_outcomes_observed_since_a_time(store: GraphStore) -> None:
    batch = small_world()
    times = ["2026-01-01T23:59:59Z", "2026-01-02T00:00:00Z", "2026-01-03T10:00:00Z"]
    timed = [replace(o, observed_at=at) for o, at in zip(batch.outcomes, times, strict=False)]
    store.write(replace(batch, outcomes=timed + batch.outcomes[3:]))  # the rest untimed, but the agent's
    since = store.outcomes(LLM, observed_since="2026-01-02T00:00:00Z")
    assert [(o.query_id, o.observed_at) for o in since] == sorted((o.query_id, o.observed_at) for o in timed[1:])
    assert store.outcomes(LLM, target="tiny", observed_since="2026-01-01T00:00:00Z") == []  # untimed: left out
    assert store.outcomes(LLM, query_id=timed[2].query_id, observed_since="2026-01-03T10:00:00Z") == [timed[2]]
    assert [o.target for o in store.outcomes(AGENT, observed_since="2026-01-02T03:04:05Z")] == ["react-bot"]
    assert store.outcomes(AGENT, observed_since="2026-01-02T03:04:06Z") == []
    with pytest.raises(InvalidInputError, match="observed_since"):
        store.outcomes(LLM, observed_since="yesterday")


def test_outcome_counts_per_candidate(store: GraphStore) -> None:
    assert store.outcome_counts(LLM) == {} and store.outcome_counts(AGENT) == {}
    batch = small_world()
    store.write(batch)
    for kind in (LLM, AGENT):
        want: dict[str, int] = {}
        for o in batch.outcomes:
            if o.kind == kind:
                want[o.target] = want.get(o.target, 0) + 1
        assert store.outcome_counts(kind) == want, kind
        for name, n in want.items():
            assert store.outcome_counts(kind, target=name) == {name: n}, (kind, name)
    assert store.outcome_counts(AGENT, target="gpt-x") == {}  # an LLM's name is not an agent's
    for kind, name in ((LLM, "gpt-x"), (LLM, "tiny"), (AGENT, "react-bot"), (AGENT, "gpt-x"), (LLM, "nobody")):
        want_ids = sorted(o.query_id for o in batch.outcomes if o.kind == kind and o.target == name)
        assert store.answered(kind, name) == want_ids == [o.query_id for o in store.outcomes(kind, target=name)]
    store.delete_node(LLM, "tiny")
    assert "tiny" not in store.outcome_counts(LLM)
    assert store.outcome_counts(LLM, target="tiny") == {}
    with pytest.raises(InvalidInputError, match="kind"):
        store.outcome_counts("Query")


def test_queries_in_task_counts_a_tasks_queries_and_follows_a_query_that_moves(store: GraphStore) -> None:
    assert store.queries_in_task("math") == 0
    batch = small_world()
    store.write(batch)
    by_task = {t.name: sum(q.task == t.name for q in batch.queries) for t in batch.tasks}
    assert by_task["math"] and by_task["code"]  # the test means something on both
    assert {t: store.queries_in_task(t) for t in by_task} == by_task
    moved = replace(batch.queries[0], task="math" if batch.queries[0].task == "code" else "code")
    store.write(GraphBatch(queries=[moved]))
    assert store.queries_in_task(moved.task) == by_task[moved.task] + 1
    assert store.queries_in_task(batch.queries[0].task) == by_task[batch.queries[0].task] - 1
    assert store.queries_in_task("no such task") == 0
    with pytest.raises(InvalidInputError, match="task must be a string"):
        store.queries_in_task(3)  # type: ignore[arg-type]


def test_counts_cover_every_type(store: GraphStore) -> None:
    assert store.counts() == dict.fromkeys(
        ["Task", "Query", "LLM", "Agent", "OF_TASK", "ANSWERED_BY", "HANDLED_BY", "BACKED_BY"], 0
    )
    assert [store.count_nodes(label) for label in (TASK, QUERY, LLM, AGENT)] == [0, 0, 0, 0]
    store.write(small_world())
    assert [store.count_nodes(label) for label in (TASK, QUERY, LLM, AGENT)] == [2, len(NASTY), 2, 1]
    with pytest.raises(InvalidInputError):
        store.count_nodes("Model")
    assert store.counts() == {
        "Task": 2,
        "Query": len(NASTY),
        "LLM": 2,
        "Agent": 1,
        "OF_TASK": len(NASTY),
        "ANSWERED_BY": len(NASTY) + 3,
        "HANDLED_BY": 1,
        "BACKED_BY": 1,
    }


def test_rewriting_is_idempotent_and_updates_in_place(store: GraphStore) -> None:
    batch = small_world()
    store.write(batch)
    before = store.counts()
    store.write(batch)
    assert store.counts() == before
    q = batch.queries[0]
    store.add_outcomes([Outcome(q.id, "gpt-x", effect=0.75, cost=0.125, source="again")])
    (edge,) = store.outcomes(LLM, target="gpt-x", query_id=q.id)
    assert (edge.effect, edge.cost, edge.source) == (0.75, 0.125, "again")
    store.upsert([LLMNode("gpt-x", "renamed description", input_price=2.0, output_price=3.0)])
    m = store.get_node(LLM, "gpt-x")
    assert (m.description, m.input_price, m.size_b) == ("renamed description", 2.0, None)
    assert store.counts() == before


def test_query_moving_to_another_task_moves_its_task_edge(store: GraphStore) -> None:
    store.write(small_world())
    q = store.get_node(QUERY, Query(NASTY[0], "code").id)
    store.upsert([Query(q.text, "math", id=q.id)])
    snap = store.snapshot()
    qi = snap.nodes[QUERY].index()[q.id]
    of_task = snap.edges[(QUERY, "OF_TASK", TASK)]
    assert [snap.nodes[TASK].keys[d] for s, d in zip(of_task.src, of_task.dst, strict=True) if s == qi] == ["math"]
    assert store.counts()["OF_TASK"] == len(NASTY)


def test_list_nodes_is_ordered_and_paged(store: GraphStore) -> None:
    store.write(small_world())
    keys = [q.key for q in store.list_nodes(QUERY)]
    assert keys == sorted(keys) and len(keys) == len(NASTY)
    assert [q.key for q in store.list_nodes(QUERY, limit=2, offset=1)] == keys[1:3]
    assert store.list_nodes(QUERY, limit=0) == []
    with pytest.raises(InvalidInputError, match="limit"):
        store.list_nodes(QUERY, limit=-1)
    with pytest.raises(InvalidInputError, match="unknown node label"):
        store.list_nodes("Person")


def test_get_nodes_finds_what_get_node_finds_in_one_call(store: GraphStore) -> None:
    store.write(small_world())
    ids = [Query(text, "math" if i % 2 else "code").id for i, text in enumerate(NASTY)]
    found = store.get_nodes(QUERY, [*ids, "no-such-query", ids[0]])  # a missing key is left out, a repeat once
    assert found == {qid: store.get_node(QUERY, qid) for qid in ids}
    assert store.get_nodes(LLM, ["tiny", "react-bot"]) == {"tiny": store.get_node(LLM, "tiny")}  # one label only
    assert store.get_nodes(TASK, []) == {}
    many = [Query(f"query {i}", "math") for i in range(1200)]  # over one read's batch of keys
    store.write(GraphBatch(queries=many))
    assert set(store.get_nodes(QUERY, (q.id for q in many))) == {q.id for q in many}
    with pytest.raises(InvalidInputError, match="unknown node label"):
        store.get_nodes("Person", ["x"])
    with pytest.raises(InvalidInputError, match="keys must be strings"):
        store.get_nodes(QUERY, [1])  # type: ignore[list-item]


def test_list_nodes_refuses_offsets_and_limits_out_of_range(store: GraphStore) -> None:
    store.write(small_world())
    assert store.list_nodes(QUERY, limit=MAX_PAGE_INDEX, offset=MAX_PAGE_INDEX) == []
    assert len(store.list_nodes(QUERY, limit=MAX_PAGE_INDEX)) == len(NASTY)
    for bad in (MAX_PAGE_INDEX + 1, 2**63, 2**64, -1, 1.0, True, "1"):
        with pytest.raises(InvalidInputError, match=r"offset must be an integer from 0 to 1,000,000,000"):
            store.list_nodes(QUERY, offset=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match=r"limit must be an integer from 0 to 1,000,000,000 or None"):
            store.list_nodes(QUERY, limit=bad)  # type: ignore[arg-type]


def test_delete_node_removes_its_edges(store: GraphStore) -> None:
    store.write(small_world())
    before = store.counts()["ANSWERED_BY"]
    assert store.delete_node(LLM, "gpt-x") == before - 3  # the outcome edges that went with it
    c = store.counts()
    assert (c["LLM"], c["ANSWERED_BY"], c["BACKED_BY"], c["Agent"]) == (1, 3, 0, 1)
    assert not store.has_node(LLM, "gpt-x")
    with pytest.raises(NodeNotFoundError, match="gpt-x"):
        store.get_node(LLM, "gpt-x")
    with pytest.raises(NodeNotFoundError, match="no LLM"):
        store.delete_node(LLM, "gpt-x")
    q0 = Query(NASTY[0], "code").id
    on_q0 = len(store.outcomes(LLM, query_id=q0)) + len(store.outcomes(AGENT, query_id=q0))
    assert on_q0 > 0 and store.delete_node(QUERY, q0) == on_q0
    c = store.counts()
    assert (c["Query"], c["OF_TASK"], c["ANSWERED_BY"], c["HANDLED_BY"]) == (len(NASTY) - 1, len(NASTY) - 1, 2, 0)


def test_dangling_reference_rolls_back_the_whole_batch(store: GraphStore) -> None:
    store.write(small_world())
    before = store.counts()
    bad = GraphBatch(
        tasks=[Task("new-task", "should not land")],
        llms=[LLMNode("new-llm", "should not land", 1.0, 1.0)],
        queries=[Query(f"new query {i}", "new-task") for i in range(50)],
    )
    bad.outcomes = [Outcome(q.id, "new-llm", effect=0.5, cost=0.1) for q in bad.queries]
    bad.outcomes.append(Outcome("no-such-query", "gpt-x", effect=0.5, cost=0.1))  # fails last
    with pytest.raises(NodeNotFoundError, match="no-such-query"):
        store.write(bad)
    assert store.counts() == before
    assert not store.has_node(TASK, "new-task") and not store.has_node(LLM, "new-llm")
    with pytest.raises(NodeNotFoundError, match="missing-task"):
        store.upsert([Query("orphan", "missing-task")])
    with pytest.raises(NodeNotFoundError, match="no-llm"):
        store.upsert([Agent("a", llm="no-llm")])
    assert store.counts() == before


def test_injection_shaped_strings_are_stored_verbatim(store: GraphStore) -> None:
    evil = 'gpt"}) MATCH (n) DETACH DELETE n //'
    store.write(GraphBatch(tasks=[Task(evil, evil)], llms=[LLMNode(evil, "'; DROP TABLE llm; --", 1, 1)]))
    store.write(GraphBatch(queries=[Query(evil, evil, id=evil)]))
    store.add_outcomes([Outcome(evil, evil, effect=0.5, cost=0.0, source=evil)])
    assert store.get_node(TASK, evil).description == evil
    assert store.get_node(LLM, evil).description == "'; DROP TABLE llm; --"
    assert store.outcomes(LLM, target=evil)[0].source == evil
    assert store.counts()["ANSWERED_BY"] == 1 and store.counts()["Task"] == 1


def test_snapshot_arrays_match_what_was_written(store: GraphStore) -> None:
    batch = small_world()
    store.write(batch)
    snap = store.snapshot()
    assert snap.counts() == store.counts()
    queries, llms = snap.nodes[QUERY], snap.nodes[LLM]
    assert queries.keys == sorted(q.id for q in batch.queries)
    assert queries.embedding is not None and queries.embedding.shape == (len(NASTY), 3)
    q_by_id = {q.id: q for q in batch.queries}
    for i, key in enumerate(queries.keys):
        assert queries.text["text"][i] == q_by_id[key].text
        np.testing.assert_array_equal(queries.embedding[i], np.float32(q_by_id[key].embedding))
    assert llms.numeric["input_price"][llms.index()["gpt-x"]] == 0.1 + 0.2
    assert np.isnan(llms.numeric["size_b"][llms.index()["tiny"]])
    assert snap.nodes[TASK].embedding is None  # only one of the two tasks has one
    edges = snap.edges[(QUERY, "ANSWERED_BY", LLM)]
    got = {
        (queries.keys[s], llms.keys[d]): (e, c)
        for s, d, e, c in zip(edges.src, edges.dst, edges.attrs["effect"], edges.attrs["cost"], strict=True)
    }
    assert got == {(o.query_id, o.target): (o.effect, o.cost) for o in batch.outcomes if o.kind == LLM}
    backed = snap.edges[(AGENT, "BACKED_BY", LLM)]
    assert llms.keys[int(backed.dst[0])] == "gpt-x"
    assert UTC_SECOND.fullmatch(snap.taken_at) and snap.taken_at <= now()  # when it began to be read


def test_bulk_import_of_100k_outcome_edges(store: GraphStore) -> None:
    n_queries, n_llms = 2_000, 50
    llms = [LLMNode(f"llm-{j:02d}", "", input_price=j / 10, output_price=j / 5) for j in range(n_llms)]
    queries = [Query(f"bulk query {i}", "bulk") for i in range(n_queries)]
    rng = np.random.default_rng(0)
    effects = rng.random((n_queries, n_llms))
    outcomes = [
        Outcome(q.id, m.name, effect=float(effects[i, j]), cost=1e-6 * j)
        for i, q in enumerate(queries)
        for j, m in enumerate(llms)
    ]
    store.write(GraphBatch(tasks=[Task("bulk")], llms=llms, queries=queries, outcomes=outcomes))
    assert store.counts()["ANSWERED_BY"] == 100_000
    snap = store.snapshot()
    e = snap.edges[(QUERY, "ANSWERED_BY", LLM)]
    assert len(e) == 100_000
    assert e.attrs["effect"].sum() == pytest.approx(effects.sum(), rel=1e-12)


def test_concurrent_writers_from_threads(store: GraphStore) -> None:
    store.write(GraphBatch(tasks=[Task("t")], llms=[LLMNode("m", "", 1, 1)]))
    n_threads, n_batches, per_batch = 4, 10, 20
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for b in range(n_batches):
                qs = [Query(f"w{w} b{b} q{i}", "t") for i in range(per_batch)]
                store.write(GraphBatch(queries=qs, outcomes=[Outcome(q.id, "m", effect=0.5, cost=0.1) for q in qs]))
                store.counts()
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    total = n_threads * n_batches * per_batch
    c = store.counts()
    assert (c["Query"], c["ANSWERED_BY"], c["OF_TASK"]) == (total, total, total)


def test_data_survives_reopening(open_store_fn) -> None:  # type: ignore[no-untyped-def]
    batch = small_world()
    with open_store_fn() as s:
        s.write(batch)
        before = s.counts()
    with open_store_fn() as s:
        assert s.counts() == before
        assert s.get_node(LLM, "gpt-x") == batch.llms[0]


def test_invalid_records_are_refused_before_reaching_the_store(store: GraphStore) -> None:
    with pytest.raises(InvalidInputError, match=r"effect must be <= 1.0"):
        Outcome("q", "m", effect=1.5, cost=0.0)
    with pytest.raises(InvalidInputError, match="finite"):
        Outcome("q", "m", effect=float("nan"), cost=0.0)
    with pytest.raises(InvalidInputError, match="cost must be >= 0"):
        Outcome("q", "m", effect=0.5, cost=-1)
    with pytest.raises(InvalidInputError, match="LLM.name must not be empty"):
        LLMNode("  ")
    with pytest.raises(InvalidInputError, match="GraphBatch"):
        store.write([Task("x")])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="a Task node was put in the batch's LLM list"):
        store.write(GraphBatch(llms=[Task("x")]))  # type: ignore[list-item]
    assert store.counts()["Task"] == 0


REAL_NAMES = ["LLaMA-3 (8b)", "Llama-3.1-Turbo (70b)", "gpt-4o-2024-05-13", "mmlu_pro_computer_science", "Ünï 日本"]


def test_names_follow_the_documented_rule_and_real_names_pass(store: GraphStore) -> None:
    long_name = "n" * MAX_NAME_CHARS
    store.write(GraphBatch(tasks=[Task(n) for n in REAL_NAMES], llms=[LLMNode(n) for n in [*REAL_NAMES, long_name]]))
    for name in [*REAL_NAMES, long_name]:
        assert store.get_node(LLM, name).name == name
    store.delete_node(LLM, long_name)
    bad_names = {
        "name\nwith\nnewlines": "control character '\\n'",
        "tab\there": "control character '\\t'",
        "bell\x07": "control character",
        "nel\x85": "control character",
        "line\u2028sep": "control character",
        " padded": "leading or trailing whitespace",
        "padded\u3000": "leading or trailing whitespace",
        "n" * (MAX_NAME_CHARS + 1): f"{MAX_NAME_CHARS + 1} characters long",
        "abc \ud800 def": "lone surrogate",
    }
    for bad, problem in bad_names.items():
        for make, field in (
            (lambda n: LLMNode(n), "LLM.name"),
            (lambda n: Task(n), "Task.name"),
            (lambda n: Agent(n, llm="m"), "Agent.name"),
            (lambda n: Agent("a", llm=n), "Agent.llm"),
            (lambda n: Query("text", n), "Query.task"),
            (lambda n: Outcome("q", n, effect=0.5, cost=0.0), "Outcome.target"),
        ):
            with pytest.raises(InvalidInputError, match=f"^{re.escape(field)} .*{re.escape(problem)}") as err:
                make(bad)
            if "surrogate" not in problem:
                assert "at most 200 characters, no leading/trailing whitespace, no control characters" in str(err.value)
    assert store.counts()["LLM"] == len(REAL_NAMES)


def test_query_ids_may_be_long_but_not_hold_control_characters(store: GraphStore) -> None:
    store.write(GraphBatch(tasks=[Task("t")], llms=[LLMNode("m")]))
    long_id = "sha512:" + "0123456789abcdef" * 40
    store.write(GraphBatch(queries=[Query("text", "t", id=long_id)]))
    store.add_outcomes([Outcome(long_id, "m", effect=1.0, cost=0.0)])
    assert store.get_node(QUERY, long_id).id == long_id
    for bad in ("id\nwith newline", "id\x1b[31m", "id \udfff"):
        with pytest.raises(InvalidInputError, match=r"^Query\.id .*(control character|lone surrogate)"):
            Query("text", "t", id=bad)
        with pytest.raises(InvalidInputError, match=r"^Outcome\.query_id .*(control character|lone surrogate)"):
            Outcome(bad, "m", effect=1.0, cost=0.0)


def test_texts_with_lone_surrogates_are_refused_naming_the_field(store: GraphStore) -> None:
    text = "abc \ud800 def"
    for make, field in (
        (lambda: Query(text, "t"), "Query.text"),
        (lambda: Task("t", text), "Task.description"),
        (lambda: LLMNode("m", text), "LLM.description"),
        (lambda: Agent("a", "m", description=text), "Agent.description"),
        (lambda: Agent("a", "m", strategy="\udc00"), "Agent.strategy"),
        (lambda: Outcome("q", "m", effect=1.0, cost=0.0, source=text), "Outcome.source"),
    ):
        with pytest.raises(InvalidInputError, match=f"^{re.escape(field)} must be valid Unicode: .*lone surrogate"):
            make()
    ok = "line one\nline two\ttabbed 🚀"  # texts (not names) may hold newlines, tabs and astral characters
    store.write(GraphBatch(tasks=[Task("t", ok)], queries=[Query(ok, "t")]))
    assert store.get_node(QUERY, Query(ok, "t").id).text == ok


def test_the_largest_text_and_change_record_allowed_are_stored_whole_and_larger_ones_refused(store: GraphStore) -> None:
    """Every row and change record the schema allows fits one Bolt message (ArcadeDB never answers a message over
    16 MiB: an 18 MB text, or a change record just under the old 16 MiB limit, hung the client)."""
    text = "🚀" * (MAX_TEXT_CHARS - 1) + "?"  # 4 MB of UTF-8
    store.write(GraphBatch(tasks=[Task("t")], queries=[Query(text, "t", id="big")]))
    assert store.get_node(QUERY, "big").text == text
    for batch, refusal in [
        (GraphBatch(queries=[Query(text + "!", "t", id="q2")]), "Query.text of 'q2' is 1,000,001 characters long"),
        (GraphBatch(llms=[LLMNode("m2", description=text + "!")]), "LLM.description of 'm2' is 1,000,001 characters"),
        (
            GraphBatch(llms=[LLMNode("m2")], outcomes=[Outcome("big", "m2", effect=1.0, cost=0.0, source=text + "!")]),
            "Outcome.source of 'big' is 1,000,001 characters long; the limit is 1,000,000",
        ),
    ]:
        with pytest.raises(InvalidInputError, match=re.escape(refusal)):
            store.write(batch)
    assert not store.has_node(LLM, "m2") and not store.has_node(QUERY, "q2")
    start = store.latest_version()
    envelope = len(Change(OUTCOMES, payload={"rows": ""}).payload_json().encode())
    filler = "🚀" * ((MAX_PAYLOAD_BYTES - envelope) // 4)  # the payload as UTF-8, just under the limit
    store.write(GraphBatch(llms=[LLMNode("m")]), change=Change(OUTCOMES, payload={"rows": filler}, origin="r"))
    (logged,) = store.changes_since(start)
    assert logged.payload == {"rows": filler}
    with pytest.raises(InvalidInputError, match="change payload is .* bytes; the limit is .*smaller batches"):
        store.write(GraphBatch(llms=[LLMNode("m2")]), change=Change(OUTCOMES, payload={"rows": filler + "🚀🚀"}))
    assert not store.has_node(LLM, "m2")
    # a checkpoint path of bytes that are not UTF-8 (Linux file names may be) holds lone surrogates: still recorded
    import os

    path = os.fsdecode(b"/srv/ckpt-\xff.pt")
    store.write(GraphBatch(), change=Change(CHECKPOINT, "v2", {"path": path}))
    assert store.changes_since(logged.version)[-1].payload == {"path": path}


def test_names_are_written_in_one_unicode_spelling(store: GraphStore) -> None:
    """ "café" typed and "cafe" + a combining accent (as some systems write file names) look the same and were two
    LLMs; a new name not in NFC form is refused, saying the form to use."""
    nfd = "cafe\u0301-7b"
    store.write(GraphBatch(llms=[LLMNode("m")]))
    for batch, field in [
        (GraphBatch(llms=[LLMNode(nfd)]), "LLM.name"),
        (GraphBatch(tasks=[Task(nfd)]), "Task.name"),
        (GraphBatch(agents=[Agent(nfd, "m")]), "Agent.name"),
    ]:
        with pytest.raises(InvalidInputError, match=f"^{re.escape(field)} 'cafe\\\\u0301-7b' is not in Unicode NFC"):
            store.write(batch)
    with pytest.raises(NodeNotFoundError):  # a reference in another spelling names no stored node
        store.write(GraphBatch(agents=[Agent("a", "m\u0301")]))
    store.write(GraphBatch(llms=[LLMNode("café-7b", description="cafe\u0301: texts keep their spelling")]))
    assert sorted(n.key for n in store.list_nodes(LLM)) == ["café-7b", "m"]


def test_a_new_node_stored_by_another_writer_meanwhile_is_a_conflict_and_nothing_is_written(store: GraphStore) -> None:
    """Two registrations of one name with different data both succeeded (each compared before it wrote, the last
    writer's data kept): a write says which nodes it found absent, and the store refuses it if one is there now."""
    store.write(GraphBatch(tasks=[Task("t")], queries=[Query("q", "t", id="q")]))
    mine = LLMNode("m", description="mine", input_price=1.0, output_price=1.0)
    theirs = LLMNode("m", description="theirs", input_price=2.0, output_price=2.0)
    start = store.latest_version()
    store.write(GraphBatch(llms=[theirs]), new=[theirs])  # the other writer, between this one's check and its write
    mine_batch = GraphBatch(llms=[mine], outcomes=[Outcome("q", "m", effect=1.0, cost=0.0)])
    with pytest.raises(ConflictError, match="LLM 'm' was registered by another writer .* nothing was written"):
        store.write(mine_batch, change=Change(LLM_REGISTERED, "m"), new=[mine])
    assert store.get_node(LLM, "m") == theirs and store.outcomes(LLM) == []
    assert store.changes_since(start) == []
    for label, node in ((TASK, Task("t")), (AGENT, Agent("a", "m"))):  # every label
        if label == AGENT:
            store.write(GraphBatch(agents=[node]))
        with pytest.raises(ConflictError, match=f"{label} .* was registered by another writer"):
            store.write(GraphBatch(**{"tasks" if label == TASK else "agents": [node]}), new=[node])
    fresh = LLMNode("n")  # absent: written as usual, and a plain write of a stored node still replaces it
    store.write(GraphBatch(llms=[fresh]), new=[fresh])
    store.write(GraphBatch(llms=[mine]))
    assert store.get_node(LLM, "n") == fresh and store.get_node(LLM, "m") == mine
    with pytest.raises(InvalidInputError, match="new names nodes the batch does not write"):
        store.write(GraphBatch(), new=[LLMNode("x")])


def test_a_negative_zero_is_stored_as_zero(store: GraphStore) -> None:
    """-0.0 came back as -0.0 over Bolt and as 0.0 from the embedded file."""
    store.write(GraphBatch(tasks=[Task("t")], llms=[LLMNode("m", input_price=-0.0)], queries=[Query("q", "t", id="q")]))
    store.add_outcomes([Outcome("q", "m", effect=-0.0, cost=-0.0)])
    (outcome,) = store.outcomes(LLM)
    for value in (outcome.effect, outcome.cost, store.get_node(LLM, "m").input_price):
        assert value == 0.0 and str(value) == "0.0"


def test_prices_and_costs_must_be_finite_and_sane(store: GraphStore) -> None:
    store.write(GraphBatch(tasks=[Task("t")], queries=[Query("q", "t", id="q")]))
    store.write(GraphBatch(llms=[LLMNode("dear", input_price=MAX_PRICE, output_price=MAX_PRICE)]))
    store.add_outcomes([Outcome("q", "dear", effect=1.0, cost=MAX_COST)])
    assert (store.get_node(LLM, "dear").input_price, store.outcomes(LLM)[0].cost) == (MAX_PRICE, MAX_COST)
    for field in ("input_price", "output_price"):
        for bad in (1e308, MAX_PRICE * 1.0001, 10**400):
            with pytest.raises(InvalidInputError, match=rf"LLM\.{field} must be .*10,000\.0 USD per 1M tokens"):
                LLMNode("m", **{field: bad})
        for bad in (float("inf"), float("nan"), -0.01):
            with pytest.raises(InvalidInputError, match=rf"LLM\.{field} must be"):
                LLMNode("m", **{field: bad})
    for bad in (1e300, MAX_COST + 0.01, float("inf"), 10**400):
        with pytest.raises(InvalidInputError, match=r"Outcome\.cost must be .*1,000\.0 USD per query"):
            Outcome("q", "dear", effect=1.0, cost=bad)
    assert store.counts()["LLM"] == 1 and store.outcomes(LLM)[0].cost == MAX_COST


def test_ping_and_clear(store: GraphStore) -> None:
    store.ping()
    store.write(small_world())
    store.clear()
    assert set(store.counts().values()) == {0}


# ---- upstreams and pending outcomes (the proxy) -----------------------------------------------------------------
def test_an_llm_upstream_round_trips_and_is_optional(store: GraphStore) -> None:
    store.write(small_world())
    with_upstream = LLMNode(
        "hosted", "called by the proxy", 0.5, 1.5, base_url="https://api.example.com/v1",
        upstream_model="org/model-7b", api_key_env="EXAMPLE_API_KEY",
    )  # fmt: skip
    store.upsert([with_upstream, LLMNode("local", base_url="http://127.0.0.1:8001/v1")])
    assert store.get_node(LLM, "hosted") == with_upstream
    local = store.get_node(LLM, "local")
    assert isinstance(local, LLMNode) and local.upstream_model is None and local.api_key_env is None
    tiny = store.get_node(LLM, "tiny")
    assert isinstance(tiny, LLMNode) and tiny.base_url is None  # no upstream: all three absent
    # replacing the node replaces its upstream (PATCH writes the node again)
    store.upsert([LLMNode("hosted", "called by the proxy", 0.5, 1.5)])
    assert store.get_node(LLM, "hosted").base_url is None  # type: ignore[union-attr]
    assert store.snapshot().nodes[LLM].keys == sorted(["gpt-x", "tiny", "hosted", "local"])


def test_costs_billed_before_an_llms_prices_changed_are_flagged_in_the_snapshot(store: GraphStore) -> None:
    """``LLMNode.priced_at`` round-trips, and each outcome edge's ``billed_now`` says whether its cost was observed
    at or after its LLM's (an agent's: its LLM's) prices last changed: what training learns a cost multiplier from."""
    batch = small_world()
    q = [x.id for x in batch.queries]
    batch.outcomes = [o for o in batch.outcomes if o.target != "gpt-x" or o.query_id not in q[:3]] + [
        Outcome(q[0], "gpt-x", 1.0, 1e-6, observed_at="2026-03-01T00:00:00Z"),  # before the price change
        Outcome(q[1], "gpt-x", 1.0, 1e-6, observed_at="2026-06-01T00:00:00Z"),  # at it: billed at the new prices
        Outcome(q[2], "gpt-x", 1.0, 1e-6),  # no time given: unknown, so not taken as billed at them
    ]
    store.write(batch)
    repriced = replace(batch.llms[0], input_price=0.01, priced_at="2026-06-01T00:00:00Z")
    store.upsert([repriced])
    assert store.get_node(LLM, "gpt-x") == repriced and store.get_node(LLM, "tiny").priced_at == ""  # type: ignore[union-attr]
    snap = store.snapshot()
    assert snap.nodes[LLM].text["priced_at"] == ["2026-06-01T00:00:00Z", ""]  # sorted by key: gpt-x, tiny
    answered = snap.edges[(QUERY, ANSWERED_BY, LLM)]
    billed = {
        (snap.nodes[QUERY].keys[s], snap.nodes[LLM].keys[d]): b
        for s, d, b in zip(answered.src, answered.dst, answered.attrs["billed_now"], strict=True)
    }
    assert [billed[(x, "gpt-x")] for x in q] == [0.0, 1.0] + [0.0] * (len(q) - 2)  # small_world's: no time either
    assert all(v == 1.0 for (_, llm), v in billed.items() if llm == "tiny")  # never repriced
    handled = snap.edges[(QUERY, HANDLED_BY, AGENT)]  # react-bot runs on gpt-x; observed 2026-01-02: before
    assert handled.attrs["billed_now"].tolist() == [0.0]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"base_url": "ftp://x/v1"}, "http:// or https://"),
        ({"base_url": "https://"}, "with a host"),
        ({"base_url": "https://user:sk-secret@x/v1"}, "must not hold credentials"),
        ({"base_url": " https://x/v1"}, "http(s) URL"),
        ({"api_key_env": "sk-abc123"}, "need a base_url"),
        ({"base_url": "https://x/v1", "api_key_env": "sk-abc123"}, "NAME of an environment variable"),
        ({"base_url": "https://x/v1", "api_key_env": "lower_case"}, "NAME of an environment variable"),
        ({"base_url": "https://x/v1", "upstream_model": ""}, "upstream_model must not be empty"),
    ],
)
def test_bad_upstreams_are_refused_naming_the_field(fields: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(problem)):
        LLMNode("x", **fields)  # type: ignore[arg-type]


def test_pending_outcomes_are_kept_apart_and_completed_atomically(store: GraphStore) -> None:
    from graph_store import PendingOutcome

    batch = small_world()
    store.write(batch)
    query = Query("a forwarded question", "math")
    pending = PendingOutcome("chatcmpl-1", query.id, "tiny", cost=2.5e-5, observed_at="2026-01-02T03:04:05Z")
    written = store.write(GraphBatch(queries=[query], pending=[pending]))
    assert written["queries"] == 1 and "pending" not in written  # write()'s counts are the graph's, as before
    assert store.pending_outcome("chatcmpl-1") == pending
    # not an outcome: no edge, no count, nothing in the snapshot (training never sees an effect it does not have)
    assert store.outcomes(LLM, query_id=query.id) == []
    before = store.counts()
    assert before["ANSWERED_BY"] == len([o for o in batch.outcomes if o.kind == LLM])
    snap = store.snapshot()
    assert len(snap.edges[("Query", "ANSWERED_BY", "LLM")]) == before["ANSWERED_BY"]

    done = store.complete_pending("chatcmpl-1", 0.75)
    assert done == Outcome(query.id, "tiny", 0.75, 2.5e-5, source="proxy", observed_at="2026-01-02T03:04:05Z")
    assert store.outcomes(LLM, query_id=query.id) == [done]
    assert store.counts()["ANSWERED_BY"] == before["ANSWERED_BY"] + 1
    with pytest.raises(NodeNotFoundError, match="chatcmpl-1"):  # completed once only
        store.complete_pending("chatcmpl-1", 0.1)
    with pytest.raises(NodeNotFoundError, match="no pending outcome"):
        store.pending_outcome("never-seen")


def test_a_pending_outcome_completes_with_its_change_record_in_one_transaction(store: GraphStore) -> None:
    """The proxy's feedback: the edge and the change record replicas learn it from are written together (the record
    used to be a second write, which could fail after the edge was in, leaving a retry a 404)."""
    from graph_store import PendingOutcome

    store.write(small_world())
    query = Query("a question fed back", "math")
    store.write(GraphBatch(queries=[query], pending=[PendingOutcome("r-9", query.id, "tiny", 1e-4)]))
    start = store.latest_version()

    def record(o: Outcome) -> Change:
        return Change(OUTCOMES, payload={"rows": [[o.query_id, o.target, o.effect, o.cost]]}, origin="r")

    done = store.complete_pending("r-9", 0.5, change=record)
    logged = store.changes_since(start)
    assert [(c.kind, c.payload["rows"]) for c in logged] == [(OUTCOMES, [[query.id, "tiny", 0.5, 1e-4]])]
    assert store.outcomes(LLM, query_id=query.id) == [done]
    with pytest.raises(NodeNotFoundError):  # completed already: no second edge, no second record
        store.complete_pending("r-9", 0.5, change=record)
    assert store.changes_since(start) == logged


def test_pending_outcomes_refuse_bad_effects_and_dangling_ends_and_go_with_their_nodes(store: GraphStore) -> None:
    from graph_store import PendingOutcome

    store.write(small_world())
    query = Query("another forwarded question", "code")
    store.write(GraphBatch(queries=[query], pending=[PendingOutcome("r-1", query.id, "gpt-x", 0.0)]))
    with pytest.raises(InvalidInputError, match="effect"):
        store.complete_pending("r-1", 1.5)
    assert store.pending_outcome("r-1").target == "gpt-x"  # untouched by the refused completion
    with pytest.raises(NodeNotFoundError, match="nope"):
        store.write(GraphBatch(pending=[PendingOutcome("r-2", query.id, "nope", 0.0)]))
    with pytest.raises(NodeNotFoundError):
        store.pending_outcome("r-2")
    # the same response id written again replaces its record
    store.write(GraphBatch(pending=[PendingOutcome("r-1", query.id, "tiny", 0.25)]))
    assert store.pending_outcome("r-1").target == "tiny"
    store.delete_node(LLM, "tiny")
    with pytest.raises(NodeNotFoundError):
        store.pending_outcome("r-1")
    store.write(GraphBatch(pending=[PendingOutcome("r-3", query.id, "react-bot", 0.1, kind=AGENT)]))
    assert store.pending_outcome("r-3").kind == AGENT
    store.clear()
    with pytest.raises(NodeNotFoundError):
        store.pending_outcome("r-3")


def test_pending_outcomes_whose_feedback_never_came_expire(store: GraphStore) -> None:
    from graph_store import PendingOutcome

    store.write(small_world())
    query = Query("a forwarded question nobody rated", "math")
    rows = [
        PendingOutcome("old-llm", query.id, "tiny", 0.1, observed_at="2026-01-01T00:00:00Z"),
        PendingOutcome("old-agent", query.id, "react-bot", 0.1, kind=AGENT, observed_at="2026-01-01T23:59:59Z"),
        PendingOutcome("new", query.id, "tiny", 0.1, observed_at="2026-01-02T00:00:00Z"),
        PendingOutcome("untimed", query.id, "tiny", 0.1),
    ]
    rated = Outcome(query.id, "tiny", 1.0, 0.1, observed_at="2025-06-01T00:00:00Z")  # an outcome, not pending
    store.write(GraphBatch(queries=[query], outcomes=[rated], pending=rows))
    assert store.prune_pending("2026-01-02T00:00:00Z") == 2  # both kinds; strictly before the time
    assert store.outcomes(LLM, query_id=query.id) == [rated]  # outcomes are never expired
    for gone in ("old-llm", "old-agent"):
        with pytest.raises(NodeNotFoundError):
            store.pending_outcome(gone)
    assert store.pending_outcome("new").observed_at == "2026-01-02T00:00:00Z"
    assert store.pending_outcome("untimed").observed_at == ""  # no time: never expired
    assert store.prune_pending("2026-01-02T00:00:00Z") == 0  # again: nothing left to drop
    assert store.complete_pending("new", 1.0).effect == 1.0  # what is kept still completes
    for bad in ("", "tomorrow", "2026-01-02", "2026-01-02t00:00:00z", "2026-01-02T00:00:00+00:00", None):
        with pytest.raises(InvalidInputError, match="observed_before must be a UTC time as YYYY-MM-DDTHH:MM:SSZ"):
            store.prune_pending(bad)  # type: ignore[arg-type]


def test_an_older_embedded_file_gains_the_new_columns_and_tables(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from graph_store.backends.embedded import EmbeddedStore

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE llm (name TEXT PRIMARY KEY, description TEXT NOT NULL, input_price REAL NOT NULL,
            output_price REAL NOT NULL, size_b REAL, embedding BLOB);
        INSERT INTO llm VALUES ('old-llm', 'stored before upstreams', 1.0, 2.0, NULL, NULL);"""
    )
    db.commit()
    db.close()
    with EmbeddedStore(path) as store:
        assert store.get_node(LLM, "old-llm") == LLMNode("old-llm", "stored before upstreams", 1.0, 2.0)
        store.upsert([LLMNode("old-llm", "now with one", 1.0, 2.0, base_url="http://127.0.0.1:9/v1")])
        assert store.get_node(LLM, "old-llm").base_url == "http://127.0.0.1:9/v1"  # type: ignore[union-attr]


# ---- the change log ---------------------------------------------------------------------------------------------
def test_changes_are_logged_with_the_write_and_versions_increase(store: GraphStore) -> None:
    base = store.latest_version()
    assert store.changes_since(base) == []
    batch = small_world()
    store.write(batch, change=Change(LLM_REGISTERED, "gpt-x", {"note": NASTY[2]}, origin="replica-a"))
    store.delete_node(AGENT, "react-bot", change=Change(AGENT_DELETED, "react-bot", origin="replica-b"))
    store.record_change(Change(CHECKPOINT, "v-123", {"path": "/shared/ckpt.pt"}, origin="replica-a"))
    store.write(GraphBatch(tasks=[Task("plain", "")]))  # a write without a change logs nothing
    got = store.changes_since(base)
    assert [(c.kind, c.key, c.origin) for c in got] == [
        (LLM_REGISTERED, "gpt-x", "replica-a"),
        (AGENT_DELETED, "react-bot", "replica-b"),
        (CHECKPOINT, "v-123", "replica-a"),
    ]
    assert got[0].payload == {"note": NASTY[2]} and got[2].payload == {"path": "/shared/ckpt.pt"}
    versions = [c.version for c in got]
    assert versions == sorted(versions) and len(set(versions)) == 3 and versions[0] > base
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", c.at) for c in got)
    assert store.latest_version() == versions[-1]
    assert [c.version for c in store.changes_since(versions[0])] == versions[1:]
    assert [c.version for c in store.changes_since(base, limit=2)] == versions[:2]


def test_a_failed_change_leaves_no_record(store: GraphStore) -> None:
    store.write(small_world())
    before = store.latest_version()
    bad = GraphBatch(outcomes=[Outcome("no-such-query", "gpt-x", effect=1.0, cost=0.0)])
    with pytest.raises(NodeNotFoundError):
        store.write(bad, change=Change(OUTCOMES, "", {"rows": []}))
    with pytest.raises(NodeNotFoundError):
        store.delete_node(LLM, "no-such-llm", change=Change(LLM_DELETED, "no-such-llm"))
    assert store.changes_since(before) == [] and store.latest_version() == before


def test_change_arguments_are_checked(store: GraphStore) -> None:
    with pytest.raises(InvalidInputError, match="change kind"):
        store.record_change(Change("dropped.everything"))
    with pytest.raises(InvalidInputError, match="JSON"):
        store.record_change(Change(OUTCOMES, payload={"x": object()}))
    with pytest.raises(InvalidInputError, match="version"):
        store.changes_since(-1)
    with pytest.raises(InvalidInputError, match="limit"):
        store.changes_since(0, limit=0)


def test_versions_are_never_reused_after_clear(store: GraphStore) -> None:
    store.record_change(Change(CHECKPOINT, "a"))
    before = store.latest_version()
    store.clear()
    with pytest.raises(ChangeLogTruncatedError):  # the log was emptied: a follower behind it must resync
        store.changes_since(0)
    assert store.pruned_through() == before and store.changes_since(before) == []
    store.record_change(Change(CHECKPOINT, "b"))
    (after,) = store.changes_since(before)
    assert after.version > before and store.latest_version() == after.version


def _checkpoints(store: GraphStore, n: int) -> list[int]:
    base = store.latest_version()
    for i in range(n):
        store.record_change(Change(CHECKPOINT, f"v{i}"))
    return [c.version for c in store.changes_since(base)]


def test_pruning_drops_the_old_end_and_a_follower_behind_it_is_told(store: GraphStore) -> None:
    base = store.latest_version()
    versions = _checkpoints(store, 6)
    assert store.prune_changes(versions[2]) == 3
    assert store.pruned_through() == versions[2]
    assert [c.version for c in store.changes_since(versions[2])] == versions[3:]  # caught up to the cut: reads on
    for behind in (base, versions[0], versions[1]):
        with pytest.raises(ChangeLogTruncatedError) as caught:
            store.changes_since(behind)
        assert caught.value.version == behind and caught.value.pruned_through == versions[2]
    assert store.prune_changes(versions[1]) == 0 and store.pruned_through() == versions[2]  # never lowered
    assert store.prune_changes(versions[2]) == 0  # idempotent
    # the cut is capped at the latest version: a follower at the latest version is never told it is behind
    assert store.prune_changes(versions[-1] + 1000) == 3
    assert store.pruned_through() == versions[-1] == store.latest_version()
    assert store.changes_since(versions[-1]) == []
    (after,) = _checkpoints(store, 1)
    assert after == versions[-1] + 1 and store.changes_since(versions[-1])[0].key == "v0"


def test_pruning_keeps_changes_written_since_the_given_time(store: GraphStore) -> None:
    versions = _checkpoints(store, 4)
    assert store.prune_changes(versions[-1], keep_since=now(0)) == 0  # all written after 1970: all kept
    assert store.pruned_through() < versions[0]
    assert store.prune_changes(versions[1], keep_since=now(4_102_444_800)) == 2  # 2100: only the version cut holds
    assert [c.version for c in store.changes_since(versions[1])] == versions[2:]


def test_pruning_arguments_are_checked(store: GraphStore) -> None:
    with pytest.raises(InvalidInputError, match="keep_after_version"):
        store.prune_changes(-1)
    with pytest.raises(InvalidInputError, match="keep_since"):
        store.prune_changes(0, keep_since=12)  # type: ignore[arg-type]
    assert store.prune_changes(0) == 0


def test_pruning_through_another_handle_is_seen_by_a_reader(open_store_fn) -> None:  # type: ignore[no-untyped-def]
    with open_store_fn() as writer, open_store_fn() as reader:
        versions = _checkpoints(writer, 3)
        assert [c.version for c in reader.changes_since(versions[0])] == versions[1:]
        writer.prune_changes(versions[1])
        with pytest.raises(ChangeLogTruncatedError):
            reader.changes_since(versions[0])
        assert reader.pruned_through() == versions[1]


def _each_in_a_thread(stores: list[GraphStore], work) -> list[BaseException]:  # type: ignore[no-untyped-def]
    """Run ``work(store, i)`` for each store in a thread of its own, all at once; the errors they raised."""
    errors: list[BaseException] = []

    def run(s: GraphStore, i: int) -> None:
        try:
            work(s, i)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_changes_get_distinct_versions(open_store_fn) -> None:  # type: ignore[no-untyped-def]
    stores = [open_store_fn() for _ in range(3)]  # separate handles, as separate replicas would have
    base = stores[0].latest_version()

    def writer(s: GraphStore, w: int) -> None:
        for i in range(8):
            s.write(GraphBatch(tasks=[Task(f"t{w}-{i}", "")]), change=Change(TASK_REGISTERED, f"t{w}-{i}"))

    errors = _each_in_a_thread(stores, writer)
    try:
        assert not errors, errors
        got = stores[0].changes_since(base)
        assert len(got) == 24 and len({c.version for c in got}) == 24
        assert {c.key for c in got} == {f"t{w}-{i}" for w in range(3) for i in range(8)}
        assert {n.key for n in stores[0].list_nodes(TASK)} == {c.key for c in got}
    finally:
        for s in stores:
            s.close()


@pytest.mark.parametrize("backend", ["embedded", "neo4j"])
def test_fresh_clients_racing_to_their_first_write_share_one_change_log(backend: str, request, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # a store no client has written yet (a new database): each client sets the change log up on its first write
    if backend == "embedded":
        opener = lambda: EmbeddedStore(tmp_path / "fresh.db")  # noqa: E731
    else:
        import uuid

        import neo4j

        from graph_store.backends.neo4j_store import Neo4jStore

        server = request.getfixturevalue("bolt_server")
        database = f"fresh{uuid.uuid4().hex[:8]}"
        _arcadedb_command(server, f"create database {database}")

        def opener() -> GraphStore:
            driver = neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password))
            return Neo4jStore(driver, database=database, owns_driver=True)

    stores = [opener() for _ in range(6)]
    barrier = threading.Barrier(6)

    def first_write(s: GraphStore, w: int) -> None:
        barrier.wait()
        s.write(GraphBatch(tasks=[Task(f"t{w}", "")]), change=Change(TASK_REGISTERED, f"t{w}"))

    errors = _each_in_a_thread(stores, first_write)
    try:
        assert not errors, errors
        got = stores[0].changes_since(0)
        assert sorted(c.version for c in got) == list(range(1, 7)), [c.version for c in got]  # each change once
        assert {c.key for c in got} == {f"t{w}" for w in range(6)}
    finally:
        for s in stores:
            s.close()
        if backend == "neo4j":
            _arcadedb_command(server, f"drop database {database}")


def test_a_neo4j_log_with_duplicates_from_before_its_constraints_stays_writable(request, caplog) -> None:  # type: ignore[no-untyped-def]
    import uuid

    import neo4j

    from graph_store.backends.neo4j_store import Neo4jStore

    server = request.getfixturevalue("bolt_server")
    database = f"dup{uuid.uuid4().hex[:8]}"
    _arcadedb_command(server, f"create database {database}")
    driver = neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password))
    # what the race left before the constraints existed: two counters, a version logged twice
    driver.execute_query(
        "CREATE (:ChangeCounter {name: 'changes', value: 1}), (:ChangeCounter {name: 'changes', value: 1}), "
        "(:Change {version: 1, kind: 'task.registered', key: 'a', payload: '{}', origin: 'r1', at: ''}), "
        "(:Change {version: 1, kind: 'task.registered', key: 'b', payload: '{}', origin: 'r2', at: ''})",
        database_=database,
    )
    try:
        store = Neo4jStore(driver, database=database, owns_driver=True)
        with caplog.at_level("WARNING", logger="graph_store"), store:
            store.write(GraphBatch(tasks=[Task("t", "")]), change=Change(TASK_REGISTERED, "t"))  # not refused
            assert store.has_node(TASK, "t")
        assert "the change log's constraint could not be created" in caplog.text
    finally:
        _arcadedb_command(server, f"drop database {database}")


def _arcadedb_command(server, command: str) -> None:  # type: ignore[no-untyped-def]
    """An ArcadeDB server command (create or drop a database), over its HTTP port."""
    import httpx

    r = httpx.post(
        f"http://127.0.0.1:{server.http_port}/api/v1/server",
        json={"command": command},
        auth=(server.user, server.password),
        timeout=30,
    )
    assert r.status_code == 200, r.text
