"""The new-LLM runner's own arithmetic: issue 10's floor (per-task means shrunk to the overall mean) and the records
of a cell averaged over probe draws."""

import numpy as np
import pytest

from experiments.new_llm import cell_records
from experiments.new_llm_floor import shrunk_task_means


def test_shrunk_task_means_pull_each_task_toward_the_overall_mean():
    y = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 1.0])  # overall mean 2/3
    task = np.array([0, 0, 1, 1, 1, 1])
    out = shrunk_task_means(y, task, 3, shrink=2.0)
    assert out[0] == pytest.approx((2 + 2 * 2 / 3) / 4)
    assert out[1] == pytest.approx((2 + 2 * 2 / 3) / 6)
    assert out[2] == pytest.approx(2 / 3)  # a task without outcomes takes the overall mean
    assert shrunk_task_means(y, task, 3, shrink=0.0)[0] == pytest.approx(1.0)


def test_cell_records_average_draws_and_recover_from_the_mean():
    key = ("given", "performance_first")
    small = ("given", "balance")
    draws = [{key: 0.70, small: 0.30}, {key: 0.74, small: 0.31}]
    known_only, retrained = {key: 0.70, small: 0.30}, {key: 0.74, small: 0.302}
    cell = {"withheld": ["x"], "k": 20, "split": 0, "variant": None, "probes": "random"}
    recs = {(r["mode"], r["scenario"]): r for r in cell_records(draws, known_only, retrained, cell)}
    assert recs[key]["reward"] == pytest.approx(0.72)
    assert recs[key]["recovered"] == pytest.approx(0.5)
    assert recs[key]["draws"] == [0.70, 0.74]
    assert recs[small]["recovered"] is None  # a gap under 0.005: the withheld LLM adds nothing
    assert "variant" not in recs[key]
    single = cell_records(draws[:1], known_only, retrained, cell)
    assert all("draws" not in r for r in single)


def test_the_runner_ends_a_bad_import_in_one_line_and_leaves_no_store(tmp_path, capsys):  # type: ignore[no-untyped-def]
    from experiments.evaluate import main

    llms = tmp_path / "llms.jsonl"
    llms.write_text('{"name": "a", "description": "x", "input_price": 1, "output_price": 1}\n')
    bad = tmp_path / "outcomes.csv"
    bad.write_text("query,task,llm,effect,cost\nhello,t,a,1.5,0.1\n")
    store = tmp_path / "mine.db"
    base = ["--dataset", "mine", "--store", str(store), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as end:
        main([*base, "--import-llms", str(llms), "--import-outcomes", str(bad), "cv"])
    assert end.value.code == 2 and not store.exists()  # a rerun with the fixed file is not refused
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "effect must be in [0, 1], got 1.5" in err and "Traceback" not in err
    for args in (["--import-llms", str(llms), "cv"], ["--store", str(store), "cv", "--routers", "gnn,nope"]):
        with pytest.raises(SystemExit) as end:
            main([*base, *args])
        assert end.value.code == 2
    assert "unknown nope" in capsys.readouterr().err
    for args, message in (
        (["--folds", "1", "cv"], "--folds must be at least 2, got 1"),
        (["--split", "bogus", "cv"], "argument --split: invalid choice: 'bogus'"),
    ):
        with pytest.raises(SystemExit) as end:
            main([*base, *args])
        assert end.value.code == 2 and message in capsys.readouterr().err


def test_the_runner_refuses_what_would_fail_late_before_any_fitting(tmp_path, capsys):  # type: ignore[no-untyped-def]
    """A --dataset with a '/' failed at the last write (every fit lost), and a fold too small for the GNN after ten
    routers were fitted."""
    from experiments.evaluate import main

    llms = tmp_path / "llms.jsonl"
    llms.write_text('{"name": "a", "description": "x", "input_price": 1, "output_price": 1}\n')
    rows = tmp_path / "outcomes.csv"
    rows.write_text("query,task,llm,effect,cost\n" + "".join(f"question {i},t,a,{i % 2},0.1\n" for i in range(20)))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as end:
        main(["--dataset", "my/set", "--store", str(tmp_path / "x.db"), "--out", str(out), "cv"])
    assert end.value.code == 2 and "--dataset names the result files" in capsys.readouterr().err
    base = ["--dataset", "mine", "--store", str(tmp_path / "mine.db"), "--out", str(out), "--folds", "2"]
    with pytest.raises(SystemExit) as end:
        main([*base, "--import-llms", str(llms), "--import-outcomes", str(rows), "cv"])
    err = capsys.readouterr().err
    assert end.value.code == 2 and "the smallest training fold has 10 queries, and" in err and "gnn needs 12" in err
    assert not out.exists() or not any(out.iterdir())
