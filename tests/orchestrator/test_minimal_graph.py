"""The minimal stage graph (issue 11): a retraining per distinct kept set, the train artifact where
nothing was removed, and a full retraining that keeps the pruned architecture."""

import json
import textwrap

import numpy as np
import pytest

from orchestrator.pipeline import execute_trial, stage_keys
from orchestrator.search_space import load_search_space
from orchestrator.store import ArtifactStore

pytestmark = pytest.mark.slow

HEAD = """
name: graph
dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
model: gtsrb_cnn
train: {epochs: 1}
attack: {source: 8, target: 14, trigger: big_yellow_square, poison_pct: 50}
"""


def run(tmp_path, defenses: str):
    """Every trial of a space with these ``defenses``, run in this process on one local store."""
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(HEAD) + "defenses:\n" + textwrap.indent(textwrap.dedent(defenses).strip(), "  "))
    trials = load_search_space(path)[1]
    store = ArtifactStore(tmp_path / "cache")
    return trials, [execute_trial(trial, store, "graph") for trial in trials], store


def manifests(store: ArtifactStore, stage: str) -> list[dict]:
    return [json.loads(path.read_text()) for path in (store.root / stage).glob("*/manifest.json")]


def test_an_ss_grid_retrains_once_per_distinct_kept_set_and_nothing_removed_is_the_trained_model(tmp_path):
    # pp x eps: 0.05 x 2 = 0.1 x 1 = 0.1, and 0.1 x 2 = 0.2: four configurations, three shares.
    trials, rows, store = run(tmp_path, """
        - ss: {expected_pp_poison: [0.05, 0.1], eps_multiplier: [1, 2], retrain: full}
        - random_filter: {fraction: 0.0, retrain: full}
    """)
    ss = [row for row in rows if row["d1_name"] == "ss"]
    kept_sets = {m["metrics"]["kept_digest"] for m in manifests(store, "detection")
                 if m["config"]["name"] == "ss"}
    retrainings = manifests(store, "retrain")
    assert len(ss) == 4 and len(kept_sets) == 3
    # Counted from the manifests: one retraining per distinct kept set, none for the control.
    assert len(retrainings) == len(kept_sets)
    assert {row["d1_retrain_key"] for row in ss} == {m["key"] for m in retrainings}
    assert sum(row["d1_retrain_computed"] for row in ss) == 3
    # The planned graph could not know the two shares are equal: it counts four, an upper bound.
    planned = {stage_keys(trial)["d1_retrain"][1] for trial in trials if trial.defenses[0].name == "ss"}
    assert len(planned) == 4
    # A filter that flags nothing hands on the trained model itself: no retraining, same evaluation.
    (control,) = [row for row in rows if row["d1_name"] == "random_filter"]
    (undefended_train,) = manifests(store, "train")
    assert control["d1_removed_total"] == 0 and control["d1_retrained"]
    assert control["d1_retrain_key"] == undefended_train["key"] and "d1_retrain_computed" not in control
    assert not control["evaluate_after_computed"]
    assert (control["clean_acc_after"], control["asr_after"]) == (control["clean_acc_before"], control["asr_before"])


def test_fp_then_ac_retrains_the_pruned_network(tmp_path):
    import keras

    _, (row,), store = run(tmp_path, "- [fp: {threshold: 0.2}, ac: {retrain: full}]")
    width, pruned = row["d1_layer_width"], row["d1_pruned_channels"]
    assert 0 < pruned < width
    retrained = keras.models.load_model(store.root / "retrain" / row["d2_retrain_key"] / "model.keras", compile=False)
    assert retrained.get_layer(row["d1_pruned_layer"]).filters == width - pruned
    # Re-initialised, not the fine-pruned weights carried on.
    tuned = keras.models.load_model(store.root / "fine_tune" / row["d1_fine_tune_key"] / "model.keras", compile=False)
    assert not np.allclose(retrained.get_layer("fc_1").get_weights()[0], tuned.get_layer("fc_1").get_weights()[0])
