import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from orchestrator import sweep
from orchestrator.cli import app

GOOD = """
name: tiny
dataset: {name: synthetic_signs, per_class: 10}
model: gtsrb_cnn
attack: {source: 8, target: 14, trigger: yellow_square, poison_pct: 10}
"""


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray must not start for a bad search space")

    monkeypatch.setattr(sweep, "start_ray", refuse)


@pytest.mark.parametrize(
    "bad, field",
    [
        (GOOD + "colour: red\n", "colour"),
        (GOOD.replace("poison_pct: 10", "poison_pct: lots"), "attack.poison_pct[0]"),
        (GOOD.replace("trigger: yellow_square", "trigger: purple_square"), "attack.trigger[0]"),
        (GOOD.replace("model: gtsrb_cnn", "model: resnet50"), "model[0]"),
        (GOOD + "defenses: [none, {no_such_defense: {}}]\n", "defenses[1]"),
    ],
)
def test_bad_space_exits_2_naming_file_and_field(tmp_path, no_ray, bad, field):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(bad))
    result = CliRunner().invoke(app, ["run", str(path), "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert f"{path}: {field}:" in result.output
    assert not (tmp_path / "runs").exists(), "nothing is written for a bad space"


def test_console_script_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD + "colour: red\n")
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(path)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 2
    assert f"{path}: colour: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_dry_run_counts_trials_and_stages(tmp_path, no_ray):
    path = tmp_path / "space.yaml"
    path.write_text(GOOD.replace("poison_pct: 10", "poison_pct: [4, 10]") + "defenses: [none, {ac: {cluster_analysis: [smaller, distance]}}]\n")
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "6 trials (6 to run, 0 already have results)" in result.output
    # 1 dataset, 2 poisoned sets, 2 models, 2 + 4 evaluations, 4 detections sharing 2 activations, and
    # at most a retraining per detection.
    assert ("unique stages: at most 21 (dataset 1, poison 2, train 2, evaluate 6, activations 2, detection 4, "
            "retrain 4)") in result.output
    assert "an upper bound" in result.output


def test_query_and_status_without_results_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["query", "SELECT * FROM results", "--storage", str(tmp_path)])
    assert result.exit_code == 2 and "no result files" in result.output
    result = CliRunner().invoke(app, ["status", "nothing", "--storage", str(tmp_path)])
    assert result.exit_code == 2 and "no sweep named 'nothing'" in result.output


def test_unknown_schemes_and_credentials_are_refused_and_file_uris_are_paths(tmp_path, no_ray):
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(GOOD))
    for storage, message in [
        ("ftp://host/runs", "ftp:// is not a filesystem pyarrow opens"),
        ("s3://bucket/runs?secret_key=abc", "credentials do not belong in the storage URI"),
        ("s3:///runs", "name a bucket"),
    ]:
        refused = CliRunner().invoke(app, ["run", str(path), "--storage", storage])
        words = " ".join(refused.output.replace("│", " ").split())  # the message is boxed and wrapped
        assert refused.exit_code == 2 and message in words, words
    assert not (tmp_path / "ftp:").exists()
    planned = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--storage", f"file://{tmp_path}/my%20runs"])
    assert planned.exit_code == 0 and "sweep 'tiny': 1 trials" in planned.output
    status = CliRunner().invoke(app, ["status", "tiny", "--storage", f"file://{tmp_path}/my%20runs"])
    assert f"{tmp_path}/my runs: no sweep named 'tiny'" in status.output
    relative = CliRunner().invoke(app, ["status", "tiny", "--storage", "file://runs"])
    assert relative.exit_code == 2 and "file:///absolute/path" in relative.output


def test_resume_of_an_unknown_sweep_exits_2(tmp_path, no_ray):
    result = CliRunner().invoke(app, ["resume", "nothing", "--storage", str(tmp_path)])
    assert result.exit_code == 2 and "no sweep named 'nothing'" in result.output


def test_the_cli_imports_no_ray_before_launching():
    # Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when it is imported: importing it before
    # keep_local_ray_on_loopback() would bind a local Ray to the machine's address.
    import subprocess
    import sys

    code = ("import sys, orchestrator.cli, orchestrator.sweep, orchestrator.results, orchestrator.search_space; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_report_that_cannot_be_written_fails_the_command_and_keeps_the_rows(tmp_path, no_ray):
    from orchestrator.results import query
    from tests.harness import run_space

    sweep = run_space("""
        name: unreported
        dataset: {name: synthetic_signs, per_class: 4, test_per_class: 1}
        model: gtsrb_cnn
        train: {epochs: 1}
        attack: {source: 8, target: 14, trigger: yellow_square, poison_pct: 50}
    """, tmp_path)
    assert len(sweep.rows) == 1 and not sweep.errors
    storage = tmp_path / "runs"
    # A file where the report's directory goes: writing the report fails as on a full or read-only disk.
    (storage / "unreported" / "report").write_text("in the way")

    # Every trial has its row: resume starts no Ray, prints the rows and writes the report.
    result = CliRunner().invoke(app, ["resume", "unreported", "--storage", str(storage)])
    assert result.exit_code == 1, result.output
    assert "1 result rows in" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("bdsweep: error: the report could not be written (") and "report: " not in result.output
    assert last.endswith("`bdsweep report unreported` tries again")
    assert len(query(storage, "SELECT * FROM results")) == 1
    assert (storage / "unreported" / "report").read_text() == "in the way"

    (storage / "unreported" / "report").unlink()
    again = CliRunner().invoke(app, ["report", "unreported", "--storage", str(storage)])
    assert again.exit_code == 0 and f"report: {storage / 'unreported' / 'report' / 'index.html'}" in again.output
