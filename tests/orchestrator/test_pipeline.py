import textwrap

from orchestrator.pipeline import pipeline_steps, stage_keys
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


def test_every_threshold_reads_one_pruning_curve_per_layer(tmp_path):
    trials = trials_of(tmp_path, "- fp: {layer: [last_conv, second_to_last_conv], threshold: [0.02, 0.04, 0.06]}")
    assert len(trials) == 6
    assert len(unique(trials, "pruning_curve")) == 2
    assert len(unique(trials, "defense")) == 6
    assert len(unique(trials, "train")) == 1


def test_ac_and_ss_configurations_share_activations(tmp_path):
    trials = trials_of(tmp_path, """
        - ac: {cluster_analysis: [smaller, distance, relative-size]}
        - ss: {eps_multiplier: [1, 1.5]}
    """)
    assert len(unique(trials, "activations")) == 1 and len(unique(trials, "defense")) == 5


def test_chain_orders_label_their_steps(tmp_path):
    ac_fp, fp_ac = trials_of(tmp_path, """
        - [ac: {cluster_analysis: smaller}, fp: {threshold: 0.04}]
        - [fp: {threshold: 0.04}, ac: {cluster_analysis: smaller}]
    """)
    labels = lambda trial: [step.label for step in pipeline_steps(trial)]
    assert labels(ac_fp)[4:] == ["d1_activations", "d1", "d2_pruning_curve", "d2", "evaluate_after"]
    assert labels(fp_ac)[4:] == ["d1_pruning_curve", "d1", "d2_activations", "d2", "evaluate_after"]
    # The second step reads the first step's model, not the backdoored one.
    assert pipeline_steps(ac_fp)[6].parents[-1] == "d1"


def test_random_filter_same_as_shares_the_named_defenses_detection_stage(tmp_path):
    alone, control = trials_of(tmp_path, """
        - ac: {cluster_analysis: smaller, retrain: none}
        - random_filter: {same_as: {ac: {cluster_analysis: smaller}}}
    """)
    labels = [step.label for step in pipeline_steps(control)]
    assert labels[4:] == ["d1_activations", "d1_defense", "d1", "evaluate_after"]
    steps = {step.label: step for step in pipeline_steps(control)}
    assert steps["d1_defense"].parents[-1] == "d1_activations" and steps["d1"].parents[-1] == "d1_defense"
    assert steps["d1_defense"].config.train == control.train
    # The control's prepared ac is the very stage `ac` with retrain none computes: one key for both.
    assert stage_keys(control)["d1_defense"] == stage_keys(alone)["d1"]
    assert stage_keys(control)["d1_activations"] == stage_keys(alone)["d1_activations"]
    assert len(unique([alone, control], "defense")) == 2 and len(unique([alone, control], "activations")) == 1
