"""Sweeps end to end: `bdsweep run` on real Ray (127.0.0.1), real Keras, real ART, real Parquet, on one
Ray instance shared by this module's Ray tests; what chained pipelines compute, in process (tests/harness.py)."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.results import query
from tests.harness import mixed_column_types
from tests.harness import run_space as run_in_process

pytestmark = pytest.mark.slow
REPOSITORY = Path(__file__).resolve().parents[2]

SPACE = """
name: e2e
dataset: {name: synthetic_signs, per_class: 12, test_per_class: 4}
model: gtsrb_cnn
train: {epochs: 1, batch_size: 32}
attack: {source: 8, target: 14, trigger: [yellow_square, big_yellow_square], poison_pct: 50}
seeds: [0]
defenses:
  - none
  - ac: {cluster_analysis: [smaller, distance]}
resources: {cpu: 1}
"""


def run_space(tmp_path, text: str, *options: str):
    """Write a search space and run it with the CLI (and ``options``) into ``tmp_path/runs``; returns the CLI result."""
    space = tmp_path / "space.yaml"
    space.write_text(textwrap.dedent(text))
    return CliRunner().invoke(app, ["run", str(space), "--storage", str(tmp_path / "runs"), *options])


def snapshot(directory):
    return {p.relative_to(directory): (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.glob("**/*.parquet")}


@pytest.mark.ray
def test_sweep_runs_every_trial_trains_each_model_once_and_writes_its_report(tmp_path, local_ray):
    space, storage = tmp_path / "space.yaml", tmp_path / "runs"
    space.write_text(textwrap.dedent(SPACE))
    runner = CliRunner()

    result = runner.invoke(app, ["run", str(space), "--storage", str(storage), "--max-concurrent", "2"])
    assert result.exit_code == 0, result.output
    assert "6 result rows in" in result.output and str((storage / "e2e" / "results").resolve()) in result.output
    # The sweep ends with its report, and says where it is.
    report = storage / "e2e" / "report"
    assert f"report: {(report / 'index.html').resolve()}" in result.output.splitlines()
    assert "partial" not in result.output
    html = (report / "index.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "ac(cluster_analysis=distance)" in html
    assert "ac(cluster_analysis=distance)" in (report / "report.md").read_text()
    assert list((report / "summary").glob("*.parquet")) and list((report / "figures").glob("*.svg"))

    rows = query(storage, "SELECT * FROM results")
    assert len(rows) == 6 and rows["trial_id"].is_unique
    # Each unique stage was computed by exactly one trial and reused by the others, two at a time.
    assert rows["train_computed"].sum() == 2  # one model per trigger
    assert rows["poison_computed"].sum() == 2
    assert rows["dataset_computed"].sum() == 1
    assert rows["evaluate_before_computed"].sum() == 2
    assert rows["d1_detection_computed"].sum() == 4  # and at most 4 retrainings: fewer where two keep alike
    retrained = rows[rows["d1_retrain_computed"].notna()]
    assert retrained["d1_retrain_computed"].sum() == retrained["d1_retrain_key"].nunique() <= 4
    assert rows["d1_activations_computed"].sum() == 2  # smaller and distance share each model's activations
    assert len(list((storage / "cache" / "train").glob("*/manifest.json"))) == 2
    assert set(rows["pipeline"]) == {"none", "ac", "ac(cluster_analysis=distance)"}
    ac = rows[rows["n_defenses"] == 1]
    assert (ac["d1_n_poisoned"] == ac["n_poisoned"]).all()
    assert (ac["d1_removed_poisoned"] <= ac["d1_removed_total"]).all()
    assert ac["d1_tpr"].between(0, 1).all() and ac["d1_fpr"].between(0, 1).all()
    assert rows["clean_acc_after"].between(0, 1).all() and rows["asr_after"].between(0, 1).all()
    assert rows["code_version"].str.len().min() >= 7 and (rows["node"] != "").all()
    assert set(rows["node_ip"]) == {"127.0.0.1"} and rows["node_id"].nunique() == 1

    # Starting it again under the same name is refused; resuming it computes nothing and leaves
    # exactly the same rows.
    before = snapshot(storage / "e2e" / "results")
    manifests = sorted((storage / "cache").glob("*/*/manifest.json"))
    refused = runner.invoke(app, ["run", str(space), "--storage", str(storage)])
    assert refused.exit_code == 2 and "already exists; continue it with `bdsweep resume e2e`" in refused.output
    for again in (
        runner.invoke(app, ["run", str(space), "--storage", str(storage), "--resume"]),
        runner.invoke(app, ["resume", "e2e", "--storage", str(storage)]),
    ):
        assert again.exit_code == 0, again.output
        assert "6 trials (0 to run, 6 already have results)" in again.output
    assert snapshot(storage / "e2e" / "results") == before
    assert sorted((storage / "cache").glob("*/*/manifest.json")) == manifests

    printed = runner.invoke(
        app, ["query", "SELECT trigger, poison_pct, pipeline, clean_acc_after, asr_after FROM results", "--storage", str(storage)]
    )
    assert printed.exit_code == 0, printed.output
    lines = printed.output.strip().splitlines()
    assert lines[0].split() == ["trigger", "poison_pct", "pipeline", "clean_acc_after", "asr_after"]
    assert len(lines) == 7

    status = runner.invoke(app, ["status", "e2e", "--storage", str(storage)])
    assert "6 trials: 6 done, 0 running, 0 errored, 0 pending" in status.output
    # Each unique stage computed once: 6 trials x 4 stages + 4 defended trials x 4 (activations, detection,
    # retrain, evaluate), less a retraining where a detection kept every sample.
    rows = query(storage, "SELECT * FROM results")
    computed, in_all = int(rows["n_stages_computed"].sum()), int(rows.filter(like="_computed").notna().sum().sum()) - 6
    assert computed <= 21 and 36 <= in_all <= 40
    assert f"stages: {computed} computed, {in_all - computed} reused" in status.output


@pytest.mark.ray
def test_a_no_cache_sweep_computes_each_trial_alone_and_a_failed_trial_is_reported_while_others_finish(
        tmp_path, local_ray):
    storage = tmp_path / "runs"
    result = run_space(tmp_path, """
        name: naive
        dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
        model: gtsrb_cnn
        train: {epochs: 1}
        attack: {source: 8, target: 14, trigger: big_yellow_square, poison_pct: 50}
        defenses: [none, {ss: {retrain: none}}, {ac: {layer: no_such_layer}}]
        resources: {cpu: 1}
    """, "--no-cache", "--max-failures", "0")
    assert result.exit_code == 1, result.output
    assert "FAILED big_yellow_square 50% seed=0 ac(layer=no_such_layer)" in result.output
    assert "no_such_layer" in result.output.split("FAILED", 1)[1].splitlines()[0]
    assert "1 trial(s) failed; `bdsweep resume naive` retries them" in result.output
    rows = query(storage, "SELECT * FROM results")
    # The two others finished; both trained the same model, each for itself, and kept nothing in the shared store.
    assert len(rows) == 2 and rows["train_computed"].all() and rows["dataset_computed"].all()
    assert not list((storage / "cache").glob("*/*/manifest.json"))
    status = CliRunner().invoke(app, ["status", "naive", "--storage", str(storage)])
    assert "3 trials: 2 done, 0 running, 1 errored, 0 pending" in status.output


@pytest.mark.ray
def test_new_attacks_and_new_defenses_run_on_ray_in_one_sweep_with_one_type_per_column(tmp_path, local_ray):
    """Issue 18: three attacks beyond patches crossed with none, ac and perfect_filter; issue 19: an
    input filter, a training-set filter and a model inspection (with its own shared stage) crossed
    with one attack and none. Under Tune like any other method, in one sweep of two blocks (one Ray
    start); every row of either block shares one schema."""
    storage = tmp_path / "runs"
    result = run_space(tmp_path, """
        name: new_methods
        dataset: {name: synthetic_signs, per_class: 10, test_per_class: 2, classes: [speed_limit_100, stop, yield, no_entry]}
        model: gtsrb_cnn
        train: {epochs: 1}
        attack: {source: all, target: 1, poison_pct: 25}
        resources: {cpu: 1}
        blocks:
          - attack: {trigger: [{blend: {alpha: 0.3}}, sig, wanet]}
            defenses: [none, {ac: {retrain: none}}, {perfect_filter: {retrain: none}}]
          - attack: {trigger: blend}
            defenses: [none, {strip: {n_overlays: 4}}, {spectre: {retrain: none}}, {neural_cleanse: {steps: 5}}]
    """, "--max-concurrent", "2")
    assert result.exit_code == 0, result.output
    rows = query(storage, "SELECT * FROM results")
    attacks = rows[rows["trigger"] != "blend"]
    assert len(attacks) == 9 and set(attacks["trigger"]) == {"blend(alpha=0.3)", "sig", "wanet"}
    by_attack = attacks.groupby("trigger").first()
    assert by_attack.loc["sig", "poison_base"] == "target" and by_attack.loc["wanet", "poison_base"] == "all"
    assert by_attack.loc["sig", "attack_label_mode"] == "clean" and by_attack.loc["wanet", "n_cover"] > 0
    assert attacks["attack_ssim_mean"].between(-1, 1).all() and attacks["attack_test_linf_max"].gt(0).all()
    perfect = attacks[attacks["pipeline"].str.startswith("perfect_filter")]
    assert (perfect["d1_tpr"] == 1).all() and (perfect["d1_removed_cover"] == 0).all()
    defended = rows[rows["trigger"] == "blend"].set_index("pipeline")
    assert len(defended) == 4
    assert defended.loc["strip(n_overlays=4)", "d1_kind"] == "input_filter"
    assert 0 <= defended.loc["strip(n_overlays=4)", "served_asr"] <= defended.loc["strip(n_overlays=4)", "asr_after"]
    assert defended.loc["spectre(retrain=none)", "d1_kind"] == "training_set_filter"
    assert defended.loc["neural_cleanse(steps=5)", "d1_kind"] == "model_inspection"
    assert len(defended.loc["neural_cleanse(steps=5)", "d1_mask_l1"]) == 4
    assert not mixed_column_types((storage / "new_methods" / "results").rglob("*.parquet"))


@pytest.mark.ray
def test_a_local_sweep_starts_its_own_ray_even_after_a_ray_start_on_this_machine(tmp_path):
    # `ray start` records its cluster in /tmp/ray/ray_current_cluster and a plain ray.init() joins it,
    # even once that cluster is gone; the driver's start_ray must not. In a fresh interpreter: this
    # one may hold the module's Ray already.
    from tests.ray_processes import ray_processes, session_processes, stop_session

    record = Path("/tmp/ray/ray_current_cluster")
    kept = record.read_text() if record.exists() else None
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("127.0.0.1:9\n")  # nothing listens there
    try:
        # In a session of its own: what it starts is told apart from another Ray running meanwhile.
        process = subprocess.Popen([sys.executable, "-c", (
            "from orchestrator.ray_runtime import keep_local_ray_on_loopback, start_ray\n"
            "keep_local_ray_on_loopback()\n"
            "import ray\n"
            "start_ray()\n"
            "print(ray.get_runtime_context().gcs_address, ray.util.get_node_ip_address())\n"
            "ray.shutdown()\n")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPOSITORY,
            start_new_session=True)
        output, _ = process.communicate(timeout=240)
    finally:
        record.write_text(kept) if kept is not None else record.unlink()
    assert process.returncode == 0, output
    gcs, node_ip = output.split()[-2:]
    assert gcs.startswith("127.0.0.1:") and gcs != "127.0.0.1:9" and node_ip == "127.0.0.1"
    deadline = time.monotonic() + 60
    while session_processes(process.pid) & ray_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    outlived = session_processes(process.pid) & ray_processes()
    stop_session(process.pid)
    assert not outlived, "the Ray it started outlived it"


# -- what chained pipelines compute: in process, no Ray --------------------------------------------

def test_chained_defenses_record_every_stage(tmp_path):
    sweep = run_in_process("""
        name: chain
        dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
        model: gtsrb_cnn
        train: {epochs: 1}
        attack: {source: 8, target: 14, trigger: big_yellow_square, poison_pct: 50}
        defenses:
          - [ss: {expected_pp_poison: 0.1, retrain: finetune}, ac: {retrain: none}]
          - [ss: {expected_pp_poison: 0.5, eps_multiplier: 2}, perfect_filter: {retrain: none}]
    """, tmp_path)
    assert not sweep.errors, sweep.errors
    rows = sweep.frame().sort_values("pipeline").to_dict("records")
    first, everything = rows  # ordered by pipeline: pp 0.1 sorts before pp 0.5
    assert first["pipeline"].startswith("ss(") and ">ac(" in first["pipeline"]
    n_train = 11 * 43
    assert first["d1_n_seen"] == n_train
    assert first["d2_n_seen"] == n_train - first["d1_removed_total"]
    assert first["d2_n_poisoned"] == first["d1_n_poisoned"] - first["d1_removed_poisoned"]
    assert first["d1_retrained"] and not first["d2_retrained"]
    # Both pipelines start with SS on the same model and data: one activations stage serves both.
    assert first["d1_activations_computed"] + everything["d1_activations_computed"] == 1
    assert first["d2_activations_computed"]
    # eps x pp = 1: SS flags everything, nothing is left to retrain on or to filter after it.
    assert everything["d1_removed_total"] == n_train and not everything["d1_retrained"]
    assert everything["d2_n_seen"] == 0


def test_ac_then_fp_and_fp_then_ac_both_run(tmp_path):
    sweep = run_in_process("""
        name: orders
        dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
        model: gtsrb_cnn
        train: {epochs: 1}
        attack: {source: 8, target: 14, trigger: big_yellow_square, poison_pct: 50}
        defenses:
          - [ac: {cluster_analysis: smaller, retrain: finetune}, fp: {threshold: 0.04, epochs: 1}]
          - [fp: {threshold: 0.04, epochs: 1}, ac: {cluster_analysis: smaller, retrain: finetune}]
    """, tmp_path)
    assert not sweep.errors, sweep.errors
    rows = sweep.frame().set_index("d1_name")
    assert set(rows.index) == {"ac", "fp"}
    assert rows.loc["ac", "d2_name"] == "fp" and rows.loc["fp", "d2_name"] == "ac"
    assert rows.loc["ac", "d2_layer_width"] == 128 and rows.loc["fp", "d1_layer_width"] == 128
    assert rows.loc["ac", "d1_removed_total"] > 0 and rows.loc["fp", "d2_removed_total"] > 0
    assert len(rows.loc["fp", "d1_tune_acc_curve"]) == 128
