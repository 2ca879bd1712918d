import textwrap

from orchestrator.pipeline import stage_keys
from orchestrator.search_space import load_search_space


def trials_of(tmp_path, defenses: str):
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(f"""
        name: plan
        dataset: {{name: synthetic_signs, per_class: 10}}
        model: gtsrb_cnn
        attack: {{source: 8, target: 14, trigger: yellow_square, poison_pct: 10}}
        defenses:
        {textwrap.indent(defenses.strip(), '  ')}
    """))
    return load_search_space(path)[1]


def unique(trials, stage):
    return {key for trial in trials for name, key in stage_keys(trial).values() if name == stage}


def labels(trial):
    return list(stage_keys(trial))[4:]


def test_every_threshold_reads_one_pruning_curve_per_layer(tmp_path):
    trials = trials_of(tmp_path, "- fp: {layer: [last_conv, second_to_last_conv], threshold: [0.02, 0.04, 0.06]}")
    assert len(trials) == 6
    assert len(unique(trials, "pruning_curve")) == 2
    assert len(unique(trials, "pruning")) == 6 and len(unique(trials, "fine_tune")) == 6  # at most
    assert len(unique(trials, "train")) == 1


def test_ac_and_ss_configurations_share_activations(tmp_path):
    trials = trials_of(tmp_path, """
        - ac: {cluster_analysis: [smaller, distance, relative-size]}
        - ss: {eps_multiplier: [1, 1.5]}
    """)
    assert len(unique(trials, "activations")) == 1 and len(unique(trials, "detection")) == 5


def test_retrain_mode_is_not_part_of_the_detection(tmp_path):
    trials = trials_of(tmp_path, "- ss: {retrain: [full, finetune, none]}")
    assert len(unique(trials, "detection")) == 1 and len(unique(trials, "retrain")) == 2
    none = next(t for t in trials if "none" in t.pipeline)
    assert labels(none) == ["d1_activations", "d1_detection", "evaluate_after"]


def test_data_provenance_trains_its_judges_once_for_every_eps(tmp_path):
    trials = trials_of(tmp_path, "- dp: {mode: [trusted, untrusted], eps: [0.0, 0.01, 0.05]}")
    assert len(unique(trials, "provenance_gains")) == 2 and len(unique(trials, "detection")) == 6


def test_chain_orders_label_their_steps(tmp_path):
    ac_fp, fp_ac = trials_of(tmp_path, """
        - [ac: {cluster_analysis: smaller}, fp: {threshold: 0.04}]
        - [fp: {threshold: 0.04}, ac: {cluster_analysis: smaller}]
    """)
    assert labels(ac_fp) == ["d1_activations", "d1_detection", "d1_retrain",
                             "d2_pruning_curve", "d2_pruning", "d2_fine_tune", "evaluate_after"]
    assert labels(fp_ac) == ["d1_pruning_curve", "d1_pruning", "d1_fine_tune",
                             "d2_activations", "d2_detection", "d2_retrain", "evaluate_after"]
    # Fine-Pruning after AC reads AC's retrained model, not the backdoored one.
    ac_alone = stage_keys(ac_fp)
    fp_first = stage_keys(fp_ac)
    assert ac_alone["d2_pruning_curve"][1] != fp_first["d1_pruning_curve"][1]


def test_exclusionary_reclassification_judges_with_the_clusterings_retraining(tmp_path):
    plain, judged = trials_of(tmp_path, "- ac: {ex_re_threshold: [null, 1.0]}")
    assert labels(judged) == ["d1_activations", "d1_clustering_detection", "d1_judge_retrain",
                              "d1_detection", "d1_retrain", "evaluate_after"]
    # Same clustering, and the judge is the plain configuration's full retraining on what it kept.
    assert stage_keys(judged)["d1_clustering_detection"] == stage_keys(plain)["d1_detection"]
    assert stage_keys(judged)["d1_judge_retrain"] == stage_keys(plain)["d1_retrain"]


def test_random_filter_same_as_shares_the_named_defenses_detection_stage(tmp_path):
    alone, control = trials_of(tmp_path, """
        - ac: {cluster_analysis: smaller, retrain: none}
        - random_filter: {same_as: {ac: {cluster_analysis: smaller}}}
    """)
    assert labels(control) == ["d1_same_as_activations", "d1_same_as_detection", "d1_detection", "d1_retrain",
                               "evaluate_after"]
    # The control's named ac is the very detection `ac` computes, whatever its retrain mode.
    assert stage_keys(control)["d1_same_as_detection"] == stage_keys(alone)["d1_detection"]
    assert stage_keys(control)["d1_same_as_activations"] == stage_keys(alone)["d1_activations"]
    assert len(unique([alone, control], "detection")) == 2 and len(unique([alone, control], "activations")) == 1
