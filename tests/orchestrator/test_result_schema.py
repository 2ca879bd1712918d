"""The result schema: one type per column in every row, parameters apart from metrics, the stages view,
new metrics (ra, der) and row files that cannot be read. On a local root and on S3."""

from __future__ import annotations

import json
import logging
import os
import time
import textwrap

import pyarrow as pa
import pytest

from orchestrator.pipeline import row_types, trial_row
from orchestrator.results import finished_trial_ids, open_results, query, read_row, scan_rows, write_row
from orchestrator.search_space import load_search_space
from orchestrator.storage import open_storage
from tests.fake_trials import fake_records

SPACE = """
name: typed
dataset: {name: synthetic_signs, per_class: 10}
model: gtsrb_cnn
attack: {source: 8, target: 14, trigger: yellow_square, poison_pct: 10}
defenses:
  - none
  - ac: {ex_re_threshold: [null, 1.0]}
  - random_filter: {fraction: 0.2}
  - random_filter: {same_as: ac}
  - fp: {layer: last_conv, threshold: 0.04}
  - [ac: {cluster_analysis: smaller}, fp: {layer: last_conv, threshold: 0.04}]
"""

def trials(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(SPACE))
    return load_search_space(path)[1]


def write_sweep(storage, tmp_path) -> dict:
    by_pipeline = {}
    for trial in trials(tmp_path):
        row = trial_row(trial, *fake_records(trial), "typed")
        write_row(storage, "typed", row, types=row_types(trial))
        by_pipeline[trial.pipeline] = trial
    return by_pipeline


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "runs")
    return request.getfixturevalue("s3_root")


def test_a_parameter_is_one_type_in_every_row_and_filters_by_value(root, tmp_path):
    write_sweep(root, tmp_path)
    types = dict(query(root, "SELECT column_name, column_type FROM (DESCRIBE results)").values.tolist())
    assert types["d1_ex_re_threshold"] == "DOUBLE" and types["d1_fraction"] == "DOUBLE"
    assert types["d1_layer"] == "VARCHAR" and types["d1_same_as"] == "VARCHAR" and types["d1_threshold"] == "DOUBLE"
    on = query(root, "SELECT pipeline FROM results WHERE d1_ex_re_threshold = 1.0")
    assert on.pipeline.tolist() == ["ac(ex_re_threshold=1.0)"]
    off = query(root, "SELECT count(*) AS n FROM results WHERE d1_name = 'ac' AND d1_ex_re_threshold IS NULL")
    assert off.n[0] == 2  # ac alone at its default, and ac first in the chain
    fraction = query(root, "SELECT d1_same_as FROM results WHERE d1_fraction = 0.2")
    assert len(fraction) == 1 and fraction.d1_same_as.isna().all()
    same_as = query(root, "SELECT d1_same_as FROM results WHERE d1_name = 'random_filter' AND d1_fraction IS NULL")
    assert len(same_as) == 1 and same_as.d1_same_as[0].startswith('{"ac": {"cluster_analysis": "smaller"')


def test_rows_of_two_sweeps_with_different_defaults_unify(tmp_path):
    root = tmp_path / "runs"
    write_sweep(root, tmp_path)
    only_null = [t for t in trials(tmp_path) if t.pipeline == "ac"]  # a sweep whose rows hold only NULL
    write_row(root, "other", trial_row(only_null[0], *fake_records(only_null[0]), "other") | {"trial_id": "x"},
              types=row_types(only_null[0]))
    schema = scan_rows(root).table.schema
    assert schema.field("d1_ex_re_threshold").type == pa.float64()


def test_parameters_and_metrics_never_share_a_name(tmp_path):
    fine_pruning = next(t for t in trials(tmp_path) if t.pipeline.startswith("fp"))
    row = trial_row(fine_pruning, *fake_records(fine_pruning), "typed")
    assert row["d1_layer"] == "last_conv" and row["d1_pruned_layer"] == "conv_5"
    records, positions = fake_records(fine_pruning)
    with pytest.raises(ValueError, match="threshold"):
        trial_row(fine_pruning, records, [{**positions[0], "threshold": 1}], "typed")


def test_ra_and_der_are_on_every_row(tmp_path):
    by_pipeline = {t.pipeline: t for t in trials(tmp_path)}
    undefended = trial_row(by_pipeline["none"], *fake_records(by_pipeline["none"]), "typed")
    assert undefended["ra_before"] == undefended["ra_after"] == 0.05 and undefended["der"] is None
    defended = trial_row(by_pipeline["ac"], *fake_records(by_pipeline["ac"]), "typed")
    assert defended["ra_after"] == 0.8
    assert defended["der"] == pytest.approx((0.9 - 0.1 - (0.95 - 0.93) + 1) / 2)


def test_the_stages_view_has_a_row_per_trial_and_position(root, tmp_path):
    write_sweep(root, tmp_path)
    ac = query(root, "SELECT pipeline, position, cluster_analysis, ex_re_threshold, tpr, detection_seconds, "
                     "activations_seconds FROM stages WHERE defense = 'ac' ORDER BY pipeline")
    assert ac.pipeline.tolist() == ["ac", "ac(ex_re_threshold=1.0)", "ac>fp"]  # canonical: as written or not
    assert ac.position.tolist() == [1, 1, 1] and (ac.tpr == 0.75).all() and (ac.detection_seconds == 1.5).all()
    assert (ac.activations_seconds == 1.5).all()
    fp = query(root, "SELECT pipeline, position, layer, pruned_layer, pruned_channels FROM stages "
                     "WHERE defense = 'fp' ORDER BY position")
    assert fp.position.tolist() == [1, 2] and fp.pruned_channels.tolist() == [90, 90]
    assert set(fp.layer) == {"last_conv"} and set(fp.pruned_layer) == {"conv_5"}
    counts = query(root, "SELECT count(*) AS n, count(DISTINCT trial_id) AS trials FROM stages")
    assert (counts.n[0], counts.trials[0]) == (7, 6), "none has no stage row; the chain has two"


def test_only_undefended_rows_still_have_a_stages_view(tmp_path):
    root = tmp_path / "runs"
    undefended = next(t for t in trials(tmp_path) if t.pipeline == "none")
    write_row(root, "typed", trial_row(undefended, *fake_records(undefended), "typed"), types=row_types(undefended))
    assert query(root, "SELECT count(*) AS n FROM stages").n[0] == 0


def damage(storage, trial, how):
    storage = open_storage(storage)
    parts = ("typed", "results", f"dataset={trial.dataset.name}", f"model={trial.train.model}", f"{trial.trial_id}.parquet")
    data = storage.read_bytes(*parts)
    if how == "truncated":
        data = data[: len(data) // 2]
    else:  # one byte of the first data page flipped
        data = data[:60] + bytes([data[60] ^ 0xFF]) + data[61:]
    storage.write_bytes(*parts, data=data)
    return storage.display(*parts)


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_a_row_file_that_cannot_be_read_is_named_counted_as_not_done_and_nothing_else_is_lost(root, tmp_path, how, caplog):
    by_pipeline = write_sweep(root, tmp_path)
    broken = by_pipeline["ac"]
    path = damage(root, broken, how)
    with caplog.at_level(logging.WARNING, logger="bdsweep.results"):
        frame = query(root, "SELECT trial_id FROM results")
    assert len(frame) == len(by_pipeline) - 1 and broken.trial_id not in set(frame.trial_id)
    assert "1 row file(s) cannot be read" in caplog.text and path in caplog.text
    assert open_results(root, "typed").damaged == [path]
    assert finished_trial_ids(root, "typed") == {t.trial_id for t in by_pipeline.values()} - {broken.trial_id}
    assert read_row(root, "typed", broken.dataset.name, broken.train.model, broken.trial_id) is None
    # The trial is run again: its new row replaces the damaged file.
    write_row(root, "typed", trial_row(broken, *fake_records(broken), "typed"), types=row_types(broken))
    assert len(query(root, "SELECT trial_id FROM results")) == len(by_pipeline)


def test_a_scan_reads_only_new_or_changed_row_files_and_follows_every_change(tmp_path, monkeypatch):
    import orchestrator.results as results

    root = tmp_path / "runs"
    by_pipeline = write_sweep(root, tmp_path)
    files = sorted((root / "typed" / "results").rglob("*.parquet"))
    for age, path in enumerate(reversed(files)):  # written a minute apart, the last one 10 s ago
        os.utime(path, (time.time() - 10 - 60 * age,) * 2)
    assert len(scan_rows(root, ["typed"]).table) == len(by_pipeline)  # writes the snapshot
    reads = []
    real_read = results._read_table
    monkeypatch.setattr(results, "_read_table", lambda data: reads.append(1) or real_read(data))
    assert len(scan_rows(root, ["typed"]).table) == len(by_pipeline)
    # Only the snapshot and the newest row: a file of the snapshot's last second could have been
    # rewritten since with the same size and (on an object store) the same whole-second time.
    assert len(reads) == 2

    changed = by_pipeline["ac(ex_re_threshold=1.0)"]
    write_row(root, "typed", trial_row(changed, *fake_records(changed, asr_after=0.42), "typed"), types=row_types(changed))
    gone = by_pipeline["none"]
    (root / "typed" / "results" / "dataset=synthetic_signs" / "model=gtsrb_cnn" / f"{gone.trial_id}.parquet").unlink()
    reads.clear()
    frame = scan_rows(root, ["typed"]).table.to_pandas().set_index("trial_id")
    assert len(reads) == 3, "the snapshot, the rewritten row and the newest of the others"
    assert frame.loc[changed.trial_id, "asr_after"] == 0.42 and gone.trial_id not in frame.index

    (root / "typed" / "snapshot" / "rows.parquet").write_bytes(b"not parquet")
    assert finished_trial_ids(root, "typed") == {t.trial_id for t in by_pipeline.values()} - {gone.trial_id}


def test_rows_of_an_older_version_with_text_placeholders_are_read_and_leave_no_trace_once_rewritten(tmp_path):
    root = tmp_path / "runs"
    by_pipeline = write_sweep(root, tmp_path)
    old = by_pipeline["ac"]
    write_row(root, "typed", trial_row(old, *fake_records(old), "typed") | {"d1_ex_re_threshold": "default"})
    assert scan_rows(root, ["typed"]).table.schema.field("d1_ex_re_threshold").type == pa.string()
    write_row(root, "typed", trial_row(old, *fake_records(old), "typed"), types=row_types(old))  # run again
    assert scan_rows(root, ["typed"]).table.schema.field("d1_ex_re_threshold").type == pa.float64()


def test_a_storage_error_while_reading_rows_is_raised_never_taken_for_damage(tmp_path, monkeypatch):
    from orchestrator.storage import StorageRoot

    root = tmp_path / "runs"
    write_sweep(root, tmp_path)
    real = StorageRoot.read_bytes

    def throttled(self, *parts):
        if parts[-1].endswith(".parquet") and "results" in parts[-1]:
            raise OSError("SlowDown: please reduce your request rate")
        return real(self, *parts)

    monkeypatch.setattr(StorageRoot, "read_bytes", throttled)
    with pytest.raises(OSError, match="SlowDown"):
        scan_rows(root, ["typed"])


def test_a_notebook_loads_a_sweeps_rows_and_stages_as_dataframes(root, tmp_path):
    from orchestrator.results import load_sweep

    by_pipeline = write_sweep(root, tmp_path)
    frames = load_sweep(root, "typed")
    assert len(frames.rows) == len(by_pipeline) and frames.damaged == []
    assert set(frames.rows.pipeline) == set(by_pipeline)
    ac = frames.stages.query("defense == 'ac'")
    assert len(ac) == 3 and set(ac.columns) >= {"trial_id", "position", "cluster_analysis", "tpr", "fpr", "train_epochs"}


def test_a_subset_datasets_classes_and_class_sizes_are_columns(tmp_path):
    root = str(tmp_path / "runs")
    space = SPACE.replace("per_class: 10}", "per_class: 10, classes: [speed_limit_120, stop, yield], "
                                            "class_sizes: {speed_limit_120: 40}}").replace("source: 8, target: 14",
                                                                                         "source: 0, target: 1")
    path = tmp_path / "subset.yaml"
    path.write_text(textwrap.dedent(space))
    subset = load_search_space(path)[1][0]
    write_row(root, "typed", trial_row(subset, *fake_records(subset), "typed"), types=row_types(subset))
    whole = trials(tmp_path)[0]  # the same sweep may hold rows of a dataset with all 43 classes
    write_row(root, "typed", trial_row(whole, *fake_records(whole), "typed"), types=row_types(whole))
    frame = query(root, "SELECT dataset_classes, dataset_class_sizes FROM results ORDER BY dataset_class_sizes")
    assert list(frame.iloc[0, 0]) == ["speed_limit_120", "stop", "yield"]
    assert json.loads(frame.iloc[0, 1]) == {"speed_limit_120": 40}
    assert frame.iloc[1].isna().all()


def test_every_dataset_gives_a_shared_column_name_one_type():
    """Two datasets of one sweep write their options into the same ``dataset_*`` columns: a name two
    configs declare with different types (digits' ``classes`` as numbers beside the signs' names once)
    would make the sweep's rows unreadable together."""
    from tasks.columns import field_types
    from tasks.datasets import DATASETS

    declared: dict[str, set] = {}
    for name, module in DATASETS.items():
        for field, column_type in field_types(module.Config).items():
            declared.setdefault(field, set()).add((str(column_type), name))
    clashes = {field: kinds for field, kinds in declared.items() if len({kind for kind, _ in kinds}) > 1}
    assert not clashes


def test_rows_that_type_a_list_column_two_ways_are_read_as_text_not_refused(tmp_path):
    """Rows written before a column's type was settled (a list of numbers beside a list of names)."""
    root = tmp_path / "runs"
    by_pipeline = write_sweep(root, tmp_path)
    first, second = list(by_pipeline.values())[:2]
    write_row(root, "typed", trial_row(first, *fake_records(first), "typed") | {"dataset_classes": [0, 1]})
    write_row(root, "typed", trial_row(second, *fake_records(second), "typed") | {"dataset_classes": ["0", "1"]})
    scan = scan_rows(root, ["typed"])
    assert scan.table.schema.field("dataset_classes").type == pa.string()
    assert set(scan.table.column("dataset_classes").to_pylist()) >= {"[0, 1]", '["0", "1"]'}
    assert finished_trial_ids(root, "typed") == {t.trial_id for t in by_pipeline.values()}
