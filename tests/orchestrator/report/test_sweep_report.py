"""`bdsweep report` on a storage root: a finished sweep, a partial one, an unknown one; local and S3."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.pipeline import row_types, trial_row
from orchestrator.results import write_row
from orchestrator.search_space import load_search_space
from orchestrator.storage import open_storage
from orchestrator.sweep import plan_sweep, record_sweep
from orchestrator.trainable import write_error
from tests.fake_trials import fake_records

SPACE = """
name: paper
dataset: {name: synthetic_signs, per_class: 10}
model: gtsrb_cnn
attack: {source: 8, target: 14, trigger: [yellow_square, big_yellow_square], poison_pct: [4, 10]}
seeds: [0, 1]
defenses: [none, {ac: {cluster_analysis: smaller}}]
"""


def recorded(root, tmp_path):
    """The space's sweep recorded under ``root``, as ``run`` records it; returns its trials."""
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(SPACE))
    _, trials = load_search_space(path)
    record_sweep(plan_sweep(trials, root, "paper"), path)
    return trials


def write_rows(root, trials):
    for index, trial in enumerate(trials):
        records = fake_records(trial, asr_after=0.1 + 0.01 * index, clean_acc_after=0.93 - 0.001 * index)
        write_row(root, "paper", trial_row(trial, *records, "paper"), types=row_types(trial))


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    return str(tmp_path / "runs") if request.param == "local" else request.getfixturevalue("s3_root")


def test_a_finished_sweeps_report_is_written_beside_its_rows(root, tmp_path):
    trials = recorded(root, tmp_path)
    write_rows(root, trials)
    result = CliRunner().invoke(app, ["report", "paper", "--storage", root])
    assert result.exit_code == 0, result.output
    storage = open_storage(root)
    assert result.output.strip() == f"report: {storage.display('paper', 'report', 'index.html')}"
    html = storage.read_text("paper", "report", "index.html")
    assert "Partial report" not in html and "bdsweep report paper --storage" in html
    assert storage.exists("paper", "report", "report.md")
    assert storage.files("paper", "report", "summary", suffix=".parquet")


def test_an_errored_trial_and_a_damaged_row_file_give_a_partial_report_naming_both(root, tmp_path):
    trials = recorded(root, tmp_path)
    done, errored, damaged = trials[:-2], trials[-2], trials[-1]
    write_rows(root, done + [damaged])
    storage = open_storage(root)
    parts = ("paper", "results", "dataset=synthetic_signs", "model=gtsrb_cnn", f"{damaged.trial_id}.parquet")
    storage.write_bytes(*parts, data=storage.read_bytes(*parts)[:100])
    write_error(root, "paper", errored.trial_id, "Traceback (most recent call last):\nValueError: the GPU caught fire")

    result = CliRunner().invoke(app, ["report", "paper", "--storage", root])
    assert result.exit_code == 0, result.output
    assert f"report (partial: {len(done)} of {len(trials)} trials done, 1 row file(s) unreadable)" in result.stdout
    assert "1 row file(s) cannot be read" in result.stderr and storage.display(*parts) in result.stderr
    html = storage.read_text("paper", "report", "index.html")
    assert "Partial report" in html
    assert storage.display(*parts) in html, "the damaged row file is named"
    assert "ValueError: the GPU caught fire" in html and errored.trial_id in html, "the errored trial is named"


def test_report_of_an_unknown_sweep_exits_2_naming_it(tmp_path):
    result = CliRunner().invoke(app, ["report", "nothing", "--storage", str(tmp_path)])
    assert result.exit_code == 2 and "no sweep named 'nothing'" in result.stderr


def test_report_to_another_directory_with_budgets(tmp_path):
    root = str(tmp_path / "runs")
    write_rows(root, recorded(root, tmp_path))
    out = tmp_path / "elsewhere"
    result = CliRunner().invoke(app, ["report", "paper", "--storage", root, "--out", str(out), "--budget", "0.5",
                                      "--budget", "3"])
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text()
    assert f"--out {out} --budget 0.5 --budget 3" in html
    assert not (tmp_path / "runs" / "paper" / "report").exists()


def test_status_and_query_name_a_damaged_row_file(tmp_path):
    root = str(tmp_path / "runs")
    trials = recorded(root, tmp_path)
    write_rows(root, trials)
    storage = open_storage(root)
    parts = ("paper", "results", "dataset=synthetic_signs", "model=gtsrb_cnn", f"{trials[0].trial_id}.parquet")
    storage.write_bytes(*parts, data=b"PAR1 and then nothing")
    status = CliRunner().invoke(app, ["status", "paper", "--storage", root])
    assert status.exit_code == 0, status.output
    assert f"{len(trials) - 1} done" in status.stdout and "1 pending" in status.stdout
    assert "1 row file(s) cannot be read" in status.stdout and storage.display(*parts) in status.stdout
    query = CliRunner().invoke(app, ["query", "SELECT count(*) AS n FROM results", "--storage", root])
    assert query.exit_code == 0 and f"{len(trials) - 1}" in query.stdout
    assert "bdsweep: warning: 1 row file(s) cannot be read" in query.stderr and storage.display(*parts) in query.stderr
