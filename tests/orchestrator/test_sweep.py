"""End to end: a small sweep on real Ray (127.0.0.1), real Keras, real ART, real Parquet."""

import textwrap

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.results import query

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SPACE = """
name: e2e
dataset: {name: synthetic_signs, per_class: 12, test_per_class: 4}
model: gtsrb_cnn
train: {epochs: 1, batch_size: 32}
attack: {source: 8, target: 14, trigger: [yellow_square, big_yellow_square], poison_pct: [10, 50]}
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


def test_sweep_runs_every_trial_and_trains_each_model_once(tmp_path):
    space, storage = tmp_path / "space.yaml", tmp_path / "runs"
    space.write_text(textwrap.dedent(SPACE))
    runner = CliRunner()

    result = runner.invoke(app, ["run", str(space), "--storage", str(storage), "--max-concurrent", "2"])
    assert result.exit_code == 0, result.output
    assert "12 result rows in" in result.output and str((storage / "e2e" / "results").resolve()) in result.output

    rows = query(storage, "SELECT * FROM results")
    assert len(rows) == 12 and rows["trial_id"].is_unique
    # Each unique stage was computed by exactly one trial and reused by the others.
    assert rows["train_computed"].sum() == 4  # 2 triggers x 2 poison percentages
    assert rows["poison_computed"].sum() == 4
    assert rows["dataset_computed"].sum() == 1
    assert rows["evaluate_before_computed"].sum() == 4
    assert rows["d1_detection_computed"].sum() == 8  # and at most 8 retrainings: fewer where two keep alike
    retrained = rows[rows["d1_retrain_computed"].notna()]
    assert retrained["d1_retrain_computed"].sum() == retrained["d1_retrain_key"].nunique() <= 8
    assert rows["d1_activations_computed"].sum() == 4  # smaller and distance share each model's activations
    assert len(list((storage / "cache" / "train").glob("*/manifest.json"))) == 4
    assert set(rows["pipeline"]) == {"none", "ac(cluster_analysis=smaller)", "ac(cluster_analysis=distance)"}
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
        assert "12 trials (0 to run, 12 already have results)" in again.output
    assert snapshot(storage / "e2e" / "results") == before
    assert sorted((storage / "cache").glob("*/*/manifest.json")) == manifests

    printed = runner.invoke(
        app, ["query", "SELECT trigger, poison_pct, pipeline, clean_acc_after, asr_after FROM results", "--storage", str(storage)]
    )
    assert printed.exit_code == 0, printed.output
    lines = printed.output.strip().splitlines()
    assert lines[0].split() == ["trigger", "poison_pct", "pipeline", "clean_acc_after", "asr_after"]
    assert len(lines) == 13

    status = runner.invoke(app, ["status", "e2e", "--storage", str(storage)])
    assert "12 trials: 12 done, 0 running, 0 errored, 0 pending" in status.output
    # Each unique stage computed once: 12 trials x 4 stages + 8 defended trials x 4 (activations, detection,
    # retrain, evaluate), less a retraining where a detection kept every sample.
    rows = query(storage, "SELECT * FROM results")
    computed, in_all = int(rows["n_stages_computed"].sum()), int(rows.filter(like="_computed").notna().sum().sum()) - 12
    assert computed <= 41 and 72 <= in_all <= 80
    assert f"stages: {computed} computed, {in_all - computed} reused" in status.output


def test_failed_trial_is_reported_with_its_error_and_others_still_finish(tmp_path):
    result = run_space(tmp_path, """
        name: failing
        dataset: {name: synthetic_signs, per_class: 12, test_per_class: 1}
        model: gtsrb_cnn
        train: {epochs: 1}
        attack: {source: 8, target: 14, trigger: yellow_square, poison_pct: 50}
        defenses: [none, {ac: {layer: no_such_layer}}]
    """)
    assert result.exit_code == 1, result.output
    assert "FAILED yellow_square 50% seed=0 ac(layer=no_such_layer)" in result.output
    assert "no_such_layer" in result.output.split("FAILED", 1)[1].splitlines()[0]
    assert "1 trial(s) failed; `bdsweep resume failing` retries them" in result.output
    assert len(query(tmp_path / "runs", "SELECT * FROM results")) == 1
    status = CliRunner().invoke(app, ["status", "failing", "--storage", str(tmp_path / "runs")])
    assert "2 trials: 1 done, 0 running, 1 errored, 0 pending" in status.output


def test_chained_defenses_record_every_stage(tmp_path):
    result = run_space(tmp_path, """
        name: chain
        dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
        model: gtsrb_cnn
        train: {epochs: 1}
        attack: {source: 8, target: 14, trigger: big_yellow_square, poison_pct: 50}
        defenses:
          - [ss: {expected_pp_poison: 0.1, retrain: finetune}, ac: {retrain: none}]
          - [ss: {expected_pp_poison: 0.5, eps_multiplier: 2}, perfect_filter: {retrain: none}]
    """)
    assert result.exit_code == 0, result.output
    rows = query(tmp_path / "runs", "SELECT * FROM results ORDER BY pipeline").to_dict("records")
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
    result = run_space(tmp_path, """
        name: orders
        dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
        model: gtsrb_cnn
        train: {epochs: 1}
        attack: {source: 8, target: 14, trigger: big_yellow_square, poison_pct: 50}
        defenses:
          - [ac: {cluster_analysis: smaller, retrain: finetune}, fp: {threshold: 0.04, epochs: 1}]
          - [fp: {threshold: 0.04, epochs: 1}, ac: {cluster_analysis: smaller, retrain: finetune}]
    """)
    assert result.exit_code == 0, result.output
    rows = query(tmp_path / "runs", "SELECT * FROM results").set_index("d1_name")
    assert set(rows.index) == {"ac", "fp"}
    assert rows.loc["ac", "d2_name"] == "fp" and rows.loc["fp", "d2_name"] == "ac"
    assert rows.loc["ac", "d2_layer_width"] == 128 and rows.loc["fp", "d1_layer_width"] == 128
    assert rows.loc["ac", "d1_removed_total"] > 0 and rows.loc["fp", "d2_removed_total"] > 0
    assert len(rows.loc["fp", "d1_tune_acc_curve"]) == 128


def test_local_sweep_starts_its_own_ray_even_after_a_ray_start_on_this_machine(tmp_path):
    # `ray start` records its cluster in /tmp/ray/ray_current_cluster and a plain ray.init() joins it,
    # even once that cluster is gone; a local sweep must not.
    from pathlib import Path

    record = Path("/tmp/ray/ray_current_cluster")
    kept = record.read_text() if record.exists() else None
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("127.0.0.1:9\n")  # nothing listens there
    try:
        result = run_space(tmp_path, """
            name: own_ray
            dataset: {name: synthetic_signs, per_class: 4, test_per_class: 1}
            model: gtsrb_cnn
            train: {epochs: 1}
            attack: {source: 8, target: 14, trigger: yellow_square, poison_pct: 50}
        """)
    finally:
        record.write_text(kept) if kept is not None else record.unlink()
    assert result.exit_code == 0, result.output
    assert "1 result rows in" in result.output


def test_no_cache_computes_every_trials_whole_pipeline_alone(tmp_path):
    storage = tmp_path / "runs"
    result = run_space(tmp_path, """
        name: naive
        dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
        model: gtsrb_cnn
        train: {epochs: 1}
        attack: {source: 8, target: 14, trigger: big_yellow_square, poison_pct: 50}
        defenses: [none, {ss: {retrain: none}}]
        resources: {cpu: 1}
    """, "--no-cache")
    assert result.exit_code == 0, result.output
    rows = query(storage, "SELECT * FROM results")
    # Both trials trained the same model, each for itself, and kept nothing in the shared store.
    assert len(rows) == 2 and rows["train_computed"].all() and rows["dataset_computed"].all()
    assert not list((storage / "cache").glob("*/*/manifest.json"))
