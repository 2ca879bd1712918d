from pathlib import Path

import pytest

from orchestrator.errors import StorageError
from orchestrator.results import finished_trial_ids, query, write_row


def row(trial_id, **extra):
    return {"sweep": "s", "trial_id": trial_id, "dataset": "synthetic_signs", "model": "gtsrb_cnn",
            "trigger": "yellow_square", "clean_acc_after": 0.9, **extra}


def test_rows_are_hive_partitioned_files_named_by_trial(tmp_path):
    path = Path(write_row(tmp_path, "s", row("abc")))
    assert path == tmp_path / "s" / "results" / "dataset=synthetic_signs" / "model=gtsrb_cnn" / "abc.parquet"
    assert finished_trial_ids(tmp_path, "s") == {"abc"}
    assert not list(path.parent.glob(".*tmp")), "no temporary files are left"


def test_rewriting_a_trial_keeps_one_row(tmp_path):
    write_row(tmp_path, "s", row("abc", clean_acc_after=0.1))
    write_row(tmp_path, "s", row("abc", clean_acc_after=0.2))
    frame = query(tmp_path, "SELECT trial_id, clean_acc_after, dataset, model FROM results")
    assert frame.to_dict("records") == [
        {"trial_id": "abc", "clean_acc_after": 0.2, "dataset": "synthetic_signs", "model": "gtsrb_cnn"}
    ]


def test_query_spans_sweeps_and_rows_with_different_columns(tmp_path):
    write_row(tmp_path, "one", row("a"))
    write_row(tmp_path, "two", row("b", d1_tpr=0.5) | {"sweep": "two"})
    frame = query(tmp_path, "SELECT sweep, trial_id, d1_tpr FROM results ORDER BY trial_id")
    assert frame["trial_id"].tolist() == ["a", "b"]
    assert frame["d1_tpr"].isna().tolist() == [True, False]


def test_query_errors_are_user_errors(tmp_path):
    with pytest.raises(StorageError, match="no result files"):
        query(tmp_path, "SELECT 1 FROM results")
    write_row(tmp_path, "s", row("a"))
    with pytest.raises(StorageError, match="no_such_column"):
        query(tmp_path, "SELECT no_such_column FROM results")
