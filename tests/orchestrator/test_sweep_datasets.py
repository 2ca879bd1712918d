"""End to end on the bundled datasets other than synthetic_signs: what their pipelines compute, in
process (tests/harness.py, the code a Tune worker runs); Ray's part is tested with synthetic_signs."""

import pytest

from tests.harness import run_space

pytestmark = pytest.mark.slow

DIGITS = """
name: digits_e2e
dataset: {name: digits}
model: gtsrb_cnn
train: {epochs: 1, batch_size: 32}
attack: {source: "7", target: "1", trigger: big_yellow_square, poison_pct: 10}
seeds: [0]
defenses:
  - none
  - ac: {cluster_analysis: smaller}
resources: {cpu: 1}
"""


def test_a_digits_sweep_runs_end_to_end(tmp_path):
    sweep = run_space(DIGITS, tmp_path)
    assert not sweep.errors, sweep.errors
    rows = sweep.frame().sort_values("n_defenses").reset_index(drop=True)
    assert len(rows) == 2 and set(rows["dataset"]) == {"digits"}
    assert (rows["source"] == 7).all() and (rows["target"] == 1).all()
    # 10 % of the 7s in the 70 % training split (179 sevens in load_digits).
    assert (rows["n_poisoned"] == round(0.1 * round(0.7 * 179))).all()
    assert rows["clean_acc_before"].between(0.5, 1).all(), "one epoch already learns most digits"
    assert rows["asr_after"].between(0, 1).all()
    assert rows.loc[1, "d1_removed_total"] > 0 and rows["dataset_computed"].sum() == 1


def test_face_trigger_placement_is_recorded_in_rows(tmp_path):
    sweep = run_space("""
        name: faces_e2e
        dataset: {name: synthetic_faces, n_identities: 4, per_identity: 30}
        model: deepid
        train: {epochs: 1}
        attack: {source: person_00, target: person_01, trigger: green_sunglasses, poison_pct: 20}
    """, tmp_path)
    assert not sweep.errors, sweep.errors
    row = sweep.frame().iloc[0]
    placed = row.get("attack_placement_haar", 0) + row.get("attack_placement_prior", 0)
    assert row["n_poisoned"] > 0 and placed == row["n_poisoned"]


@pytest.mark.parametrize("model, train", [
    ("deepid", "{epochs: 1}"),
    # A small VGG16 (32 x 32 faces) from random weights: only its last layer trains.
    ("vgg16_face", "{epochs: 1, random_init: true}"),
])
def test_fine_pruning_and_both_orders_run_on_the_face_models(tmp_path, model, train):
    sweep = run_space(f"""
        name: faces_fp
        dataset: {{name: synthetic_faces, n_identities: 4, per_identity: 30, image_height: 32, image_width: 32}}
        model: {model}
        train: {train}
        attack: {{source: person_00, target: person_01, trigger: black_sunglasses, poison_pct: 20}}
        defenses:
          - fp: {{layer: [last_conv, second_to_last_conv], threshold: 0.04, epochs: 1}}
          - [ac: {{cluster_analysis: smaller}}, fp: {{layer: second_to_last_conv, threshold: 0.04, epochs: 1}}]
          - [fp: {{layer: second_to_last_conv, threshold: 0.04, epochs: 1}}, ac: {{cluster_analysis: smaller}}]
        resources: {{cpu: 1}}
    """, tmp_path)
    assert not sweep.errors, sweep.errors
    rows = sweep.frame().set_index("pipeline")
    widths = {"deepid": {"last_conv": 80, "second_to_last_conv": 60},
              "vgg16_face": {"last_conv": 512, "second_to_last_conv": 512}}[model]
    for layer, width in widths.items():
        alone = rows.loc["fp(epochs=1)" if layer == "last_conv" else f"fp(layer={layer},epochs=1)"]
        assert alone["d1_layer_width"] == width and 0 <= alone["d1_pruned_channels"] < width
    ac_fp = rows.loc["ac>fp(layer=second_to_last_conv,epochs=1)"]
    fp_ac = rows.loc["fp(layer=second_to_last_conv,epochs=1)>ac"]
    assert ac_fp["d2_layer_width"] == fp_ac["d1_layer_width"] == widths["second_to_last_conv"]
    assert fp_ac["d2_n_seen"] == ac_fp["d1_n_seen"] > 0
    for row in (ac_fp, fp_ac):
        assert 0 <= row["asr_after"] <= 1 and 0 <= row["clean_acc_after"] <= 1
