"""Issue 19 through the in-process harness: the new defenses in a sweep, their rows and the report."""

from __future__ import annotations

import pandas as pd
import pytest

from orchestrator.errors import SearchSpaceError
from tests.harness import load_trials, run_space

pytestmark = pytest.mark.slow

SPACE = """
    name: defenses
    dataset: {name: synthetic_signs, per_class: 30, test_per_class: 6, classes: [speed_limit_100, stop, yield, no_entry]}
    model: gtsrb_cnn
    train: {epochs: 2, batch_size: 16}
    attack: {source: all, target: 1, trigger: big_yellow_square, poison_pct: [0, 20]}
    defenses: [none, {strip: {n_overlays: 4}}, [fine_tune: {epochs: 1}, strip: {n_overlays: 4}],
               {spectre: {retrain: none}}, {neural_cleanse: {steps: 10, repair: [none, unlearn]}},
               {i_bau: {rounds: 1, k: 2}}]
"""


def test_strip_serves_apart_from_the_models_own_metrics_and_the_report_shows_its_table(tmp_path):
    sweep = run_space(SPACE, tmp_path)
    assert not sweep.errors, sweep.errors
    frame = sweep.frame().set_index(["poison_pct", "pipeline"])
    alone = frame.loc[(20.0, "strip(n_overlays=4)")]
    # The filter leaves the model alone: its own metrics are the undefended model's...
    undefended = frame.loc[(20.0, "none")]
    assert alone["clean_acc_after"] == undefended["clean_acc_before"] and alone["asr_after"] == alone["asr_before"]
    assert alone["der"] == 0.5
    # ...and what it serves is apart: a rejected input is neither correct nor the target.
    assert alone["served_clean_acc"] <= alone["clean_acc_after"] and alone["served_asr"] <= alone["asr_after"]
    assert alone["served_asr"] <= 1 - alone["d1_input_tpr"] and 0 <= alone["d1_input_frr"] <= 1
    assert 0 <= alone["d1_input_auroc"] <= 1 and alone["der_served"] >= 0
    assert alone["d1_kind"] == "input_filter" and alone["d1_overlays_used"] == 4
    from tasks.datasets import load_dataset

    n_tune = len(load_dataset(sweep.trials[0].dataset).y_tune)
    assert alone["d1_calibration_n"] == n_tune - 4  # the tuning images that are not overlays
    chained = frame.loc[(20.0, "fine_tune(epochs=1)>strip(n_overlays=4)")]
    assert chained["d2_kind"] == "input_filter" and pd.notna(chained["d2_threshold"])
    assert pd.isna(undefended.get("served_asr")) and pd.isna(undefended.get("d1_input_frr"))
    # Neural Cleanse: one reverse engineering per model, shared by its repair variants.
    inspect_only, unlearnt = frame.loc[(20.0, "neural_cleanse(repair=none,steps=10)")], frame.loc[(20.0, "neural_cleanse(steps=10)")]
    assert inspect_only["d1_kind"] == "model_inspection" and len(inspect_only["d1_mask_l1"]) == 4
    assert inspect_only["d1_reverse_triggers_computed"] != unlearnt["d1_reverse_triggers_computed"]
    assert inspect_only["asr_after"] == inspect_only["asr_before"] and not inspect_only["d1_repaired"]
    assert unlearnt["d1_repaired"] and unlearnt["d1_unlearned_images"] >= 0
    i_bau = frame.loc[(20.0, "i_bau(rounds=1,k=2)")]
    assert i_bau["d1_kind"] == "model_repair" and i_bau["d1_unlearning_steps"] >= 1 and i_bau["d1_n_tune"] > 0
    assert (frame.loc[20.0, "defense_seconds"].dropna() > 0).all() and pd.isna(undefended["defense_seconds"])
    spectre = frame.loc[(20.0, "spectre(retrain=none)")]
    assert spectre["d1_kind"] == "training_set_filter" and 0 <= spectre["d1_auroc"] <= 1
    assert spectre["d1_removed_total"] > 0 and spectre["d1_classes_skipped"] == 0 and spectre["d1_dimensions_mean"] >= 1

    from orchestrator.report.sweep_report import write_sweep_report

    write_sweep_report(sweep.storage, sweep.name, tmp_path / "report")
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Input filters: clean and triggered test inputs rejected" in html and "AUROC" in html
    assert "spectre" in html  # among the filters' detection rows, with no edit of the report
    # Its threshold was set on 8 clean images: the report says so. The benign (0 %) model is not
    # among the backdoored models its rates are averaged over.
    assert "set its threshold on 8 clean calibration images" in html
    from orchestrator.report.sections.detection import input_filter_rates
    from orchestrator.report.sweep_report import sweep_context

    with sweep_context(sweep.storage, sweep.name) as context:
        assert input_filter_rates(context)["input_frr_n"].tolist() == [1, 1]
        # The report reads a filter's served outcome as its 'after'; other pipelines keep theirs.
        after = context.frame("SELECT pipeline, poison_pct, asr_after, der FROM results").set_index(["poison_pct", "pipeline"])
        assert after.loc[(20.0, "strip(n_overlays=4)"), "asr_after"] == alone["served_asr"]
        assert after.loc[(20.0, "strip(n_overlays=4)"), "der"] == alone["der_served"]
        assert after.loc[(20.0, "spectre(retrain=none)"), "asr_after"] == spectre["asr_after"]
    assert "is what it serves: a rejected input counts" in html  # the master table says which 'after' it shows
    # Neural Cleanse's table and its reversed triggers, drawn from the store; the benign arm's false alarms.
    assert "Model inspections: was the target flagged" in html and "Reversed triggers beside the real one" in html
    assert "Defense compute (s)" in html
    assert "% of clean inputs rejected" in html and "classes flagged" in html


def test_strip_anywhere_but_last_is_refused_naming_the_entry(tmp_path):
    space = SPACE.replace("[fine_tune: {epochs: 1}, strip: {n_overlays: 4}]", "[strip, fine_tune]")
    with pytest.raises(SearchSpaceError, match=r"defenses\[2\]: strip is an input filter"):
        load_trials(space, tmp_path)
