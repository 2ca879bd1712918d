"""Issue 18 through the in-process harness: new attacks crossed with defenses, their rows and errors."""

from __future__ import annotations

import pandas as pd
import pytest

from orchestrator.errors import SearchSpaceError
from tests.harness import load_trials, mixed_column_types, run_space

pytestmark = pytest.mark.slow

SPACE = """
    name: attacks
    dataset: {name: synthetic_signs, per_class: 8, test_per_class: 3, classes: [speed_limit_100, speed_limit_120, stop, yield, no_entry, priority_road]}
    model: gtsrb_cnn
    train: {epochs: 1, batch_size: 16}
    attack:
      source: all
      target: 2
      trigger: [blend, {blend: {alpha: [0.1, 0.3]}}, sig, {wanet: {s: 1.0}}, yellow_square]
      poison_pct: [10]
    # The filter's detection is what is checked here; the retraining after it is the Ray sweep's
    # (tests/orchestrator/test_sweep.py), so none here.
    defenses: [none, {perfect_filter: {retrain: none}}, {perfect_filter: {remove_cover: true, retrain: none}}]
"""


def test_new_attacks_run_beside_a_patch_and_rows_carry_their_columns_with_one_type_each(tmp_path):
    sweep = run_space(SPACE, tmp_path)
    assert not sweep.errors, sweep.errors
    frame = sweep.frame()
    assert len(frame) == 6 * 3
    assert set(frame["trigger"]) == {"blend", "blend(alpha=0.1)", "blend(alpha=0.3)", "sig", "wanet(s=1.0)", "yellow_square"}
    by = frame.set_index(["trigger", "pipeline"])
    assert by.loc[("sig", "none"), "poison_base"] == "target" and by.loc[("sig", "none"), "attack_label_mode"] == "clean"
    assert by.loc[("blend", "none"), "poison_base"] == "all" and by.loc[("blend", "none"), "attack_label_mode"] == "dirty"
    assert by.loc[("blend(alpha=0.3)", "none"), "trigger_alpha"] == 0.3
    assert by.loc[("blend(alpha=0.3)", "none"), "attack"] == "blend" and by.loc[("wanet(s=1.0)", "none"), "attack"] == "wanet"
    assert frame.loc[frame["trigger"] == "sig", "trigger_alpha"].isna().all()  # NULL where an attack lacks it
    wanet = by.loc[("wanet(s=1.0)", "perfect_filter(retrain=none)")]
    assert wanet["n_cover"] == 2 * wanet["n_poisoned"] and wanet["d1_removed_cover"] == 0 and wanet["d1_tpr"] == 1
    covers_too = by.loc[("wanet(s=1.0)", "perfect_filter(remove_cover=True,retrain=none)")]
    assert covers_too["d1_removed_cover"] == wanet["n_cover"] and covers_too["d1_tpr"] == 1
    assert (frame["source"].isna()).all()  # all-to-one: no source class
    assert (frame["attack_psnr_min"] < float("inf")).all() and frame["attack_test_ssim_min"].between(-1, 1).all()
    # One Parquet type per column across every attack's rows.
    row_files = sorted(sweep.storage.local_path().rglob("*.parquet"))
    assert len(row_files) >= len(frame)
    assert not mixed_column_types(row_files)
    # The report groups by attack and parameters and shows visibility against ASR, with no edit for them.
    from orchestrator.report.sweep_report import write_sweep_report

    report = write_sweep_report(sweep.storage, sweep.name, tmp_path / "report")
    assert "visibility" in {path.stem for path in report.files.figures}
    attacks = pd.read_parquet(tmp_path / "report" / "summary" / "attacks.parquet")
    assert {"blend(alpha=0.1)", "blend(alpha=0.3)", "wanet(s=1.0)", "sig"} <= set(attacks["trigger"])


@pytest.mark.parametrize(("attack", "field", "needle"), [
    ({"trigger": {"blend": {"gamma": 1}}}, "attack.trigger[0].blend.gamma", "unknown key"),
    ({"trigger": {"blend": {"alpha": 1.5}}}, "attack.trigger[0].blend.alpha[0]", "less than or equal to 1"),
    ({"trigger": "sig", "source": 0}, "attack.source", "clean-label"),
    ({"trigger": {"adaptive_blend": {"cover_pct": 95}}, "poison_pct": [10]}, "attack.poison_pct", "cover samples need more"),
    ({"trigger": "blend", "poison_pct": ["default"]}, "attack.poison_pct", "no default poison rate"),
    ({"trigger": "adaptive_blend", "source": 0, "poison_pct": ["default"]}, "attack.poison_pct", "needs source: all"),
    ({"trigger": "blend", "poison_pct": [95]}, "attack.poison_pct", "poisons (all base) need more"),
])
def test_bad_attack_settings_name_the_file_field_and_reason_before_anything_runs(tmp_path, attack, field, needle):
    import yaml

    space = {"name": "bad", "model": "gtsrb_cnn",
             "dataset": {"name": "synthetic_signs", "per_class": 8, "classes": ["speed_limit_100", "stop", "yield"]},
             "attack": {"source": "all", "target": 1, "poison_pct": [5], **attack}}
    with pytest.raises(SearchSpaceError) as raised:
        load_trials(yaml.safe_dump(space), tmp_path)
    assert raised.value.field == field and needle in raised.value.message, raised.value
    assert str(tmp_path / "space.yaml") in str(raised.value)


def test_default_poison_rates_are_the_papers_shares_of_the_whole_training_set(tmp_path):
    _, trials = load_trials("""
        name: rates
        dataset: {name: synthetic_signs, per_class: 20, classes: [speed_limit_100, speed_limit_120, stop, yield, no_entry, priority_road]}
        model: gtsrb_cnn
        attack: {source: all, target: 2, trigger: [adaptive_blend, adaptive_patch], poison_pct: [default, 10]}
    """, tmp_path)
    assert sorted((t.attack.trigger.name, t.attack.poison_pct) for t in trials) == [
        ("adaptive_blend", 0.3), ("adaptive_blend", 10.0), ("adaptive_patch", 0.5), ("adaptive_patch", 10.0)]
