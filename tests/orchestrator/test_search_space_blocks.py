"""Several grids in one search space: ``blocks`` share defaults, expand each, and run as their union."""

import textwrap

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.errors import SearchSpaceError
from orchestrator.search_space import load_search_space

SHARED = """
name: blocks
dataset: {name: synthetic_signs, per_class: 10}
model: gtsrb_cnn
train: {epochs: 1}
attack: {source: 8, target: 14, trigger: yellow_square, poison_pct: 10}
"""


def load(tmp_path, blocks: str):
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(SHARED) + "blocks:\n" + textwrap.indent(textwrap.dedent(blocks).strip(), "  "))
    return path, load_search_space(path)[1]


def test_the_space_is_the_union_of_its_blocks_and_a_shared_trial_is_one_trial(tmp_path):
    _, trials = load(tmp_path, """
        - defenses: [none, {ac: {cluster_analysis: smaller}}]
        - attack: {poison_pct: [10, 20]}
          defenses: [none]
        - model: deepid
          dataset: {name: synthetic_faces}
          attack: {trigger: green_sunglasses, source: 0, target: 1}
    """)
    seen = {(t.dataset.name, t.train.model, t.attack.label, t.attack.poison_pct, t.pipeline) for t in trials}
    assert seen == {
        ("synthetic_signs", "gtsrb_cnn", "yellow_square", 10.0, "none"),  # in blocks 0 and 1, once
        ("synthetic_signs", "gtsrb_cnn", "yellow_square", 10.0, "ac"),
        ("synthetic_signs", "gtsrb_cnn", "yellow_square", 20.0, "none"),
        ("synthetic_faces", "deepid", "green_sunglasses", 10.0, "none"),
    }
    assert len(trials) == 4 == len({t.trial_id for t in trials})
    # A block's train and attack are merged into the shared ones: epochs and source stay as shared.
    assert all(t.train.epochs == 1 for t in trials)
    assert {t.attack.source for t in trials if t.dataset.name == "synthetic_signs"} == {8}


def test_a_block_with_the_same_dataset_merges_its_settings(tmp_path):
    _, trials = load(tmp_path, """
        - dataset: {per_class: 12}
        - dataset: {name: synthetic_signs, test_per_class: 3}
    """)
    default = type(trials[0].dataset).model_fields["test_per_class"].default
    assert sorted((t.dataset.per_class, t.dataset.test_per_class) for t in trials) == [(10, 3), (12, default)]


@pytest.mark.parametrize("blocks, where, words", [
    ("- attack: {trigger: [yellow_square, nope]}", "blocks[0].attack.trigger[1]", "unknown attack 'nope'"),
    ("- defenses: [none]\n- defenses: [{ac: {cluster_analysis: biggest}}]", "blocks[1].defenses[0].ac.cluster_analysis[0]",
     "Input should be"),
    ("- attack: {target: 8}", "blocks[0].attack.target", "same class"),
    ("- resources: {cpu: 2}", "blocks[0].resources", "unknown key"),
    ("- 3", "blocks[0]", "a block is a mapping"),
    ("- model: resnet", "blocks[0].model[0]", "Input should be"),
])
def test_errors_name_the_block_and_field(tmp_path, blocks, where, words):
    with pytest.raises(SearchSpaceError) as raised:
        load(tmp_path, blocks)
    assert raised.value.field == where and words in raised.value.message, str(raised.value)
    assert raised.value.source.endswith("space.yaml")


def test_an_error_in_a_shared_field_names_the_shared_field(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(SHARED).replace("poison_pct: 10", "poison_pct: 120")
                    + "blocks:\n  - attack: {trigger: white_square}\n")
    with pytest.raises(SearchSpaceError) as raised:
        load_search_space(path)
    assert raised.value.field == "attack.poison_pct[0]"


def test_dry_run_counts_the_union(tmp_path):
    path, _ = load(tmp_path, """
        - defenses: [none, {ac: {cluster_analysis: smaller}}]
        - attack: {poison_pct: [10, 20]}
    """)
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "3 trials (3 to run, 0 already have results)" in result.output
    assert "train 2" in result.output  # poison 10 % is one model whichever block names it


def test_the_thesis_study_covers_what_its_four_questions_need():
    """search_spaces/thesis_study.yaml: bundled data, three seeds, every arm the Answers section judges."""
    from pathlib import Path

    from tasks.datasets import class_names

    _, trials = load_search_space(Path(__file__).resolve().parents[2] / "search_spaces" / "thesis_study.yaml")
    assert len(trials) == 324 and len({t.trial_id for t in trials}) == 324
    assert {t.dataset.name for t in trials} == {"synthetic_signs", "synthetic_faces"}  # nothing to download
    assert {t.train.seed for t in trials} == {0, 1, 2}
    signs = [t for t in trials if t.dataset.name == "synthetic_signs"]
    faces = [t for t in trials if t.dataset.name == "synthetic_faces"]
    # RQ1: the five sign triggers at a weak and a strong percentage, both sunglasses on DeepID.
    attacks = {(t.attack.label, t.attack.poison_pct) for t in signs}
    for trigger in ("yellow_square", "white_square", "big_yellow_square", "yellow_pattern", "white_pattern"):
        assert {(trigger, 2.0), (trigger, 6.0)} <= attacks
    assert ("white_square", 27.0) in attacks and ("yellow_square", 0.0) in attacks  # Table 4.1's, the benign arm
    assert {(t.train.model, t.attack.label) for t in faces} == {
        ("deepid", "green_sunglasses"), ("deepid", "black_sunglasses")}
    # The source class is GTSRB-sized, so 2 % poisons about as many images as the thesis's 14.
    dataset = signs[0].dataset
    source = class_names(dataset)[signs[0].attack.source]
    assert source == "speed_limit_120" and class_names(dataset)[signs[0].attack.target] == "stop"
    assert round(0.02 * dataset.class_sizes[source] * (1 - dataset.tune_fraction)) == 14

    def params(name, key, where=signs):
        return {defense.params[key] for t in where for defense in t.defenses if defense.name == name}

    assert params("ac", "cluster_analysis") == {"smaller", "distance"} and params("ac", "ex_re_threshold") == {None, 1.0}
    assert params("ss", "score") == {"centered", "art"} and params("dp", "mode") == {"trusted", "untrusted"}
    assert params("fp", "layer") == params("fp", "layer", faces) == {"last_conv", "second_to_last_conv"}
    assert params("fp", "threshold") == params("fp", "threshold", faces) == {0.02, 0.04, 0.06}
    chains = {tuple(d.name for d in t.defenses) for t in trials if len(t.defenses) == 2}
    assert chains == {("ac", "fp"), ("fp", "ac")}
    assert {"perfect_filter", "random_filter"} <= {d.name for t in signs for d in t.defenses}
    benign = {t.pipeline for t in signs if t.attack.poison_pct == 0}
    assert {name for name in ("ac", "ss", "dp", "fp") if any(p.startswith(name) for p in benign)} == {"ac", "ss", "dp", "fp"}


def test_the_leaderboard_crosses_every_attack_with_every_defense_on_both_datasets():
    """search_spaces/leaderboard.yaml (issue 20): all-to-one on bundled synthetic_signs and digits, the
    eight dirty-label settings at 10 % (the adaptive ones also at their paper's 0.3 %), the two
    clean-label attacks at 10 % of the target class, a 0 % benign arm; each against the ten defenses,
    one configuration each, at seeds 0, 1 and 2."""
    from pathlib import Path

    from orchestrator.studies.leaderboard.answers import ADAPTIVE

    _, trials = load_search_space(Path(__file__).resolve().parents[2] / "search_spaces" / "leaderboard.yaml")
    defenses = {"none", "ac", "ss", "spectre", "perfect_filter", "fp", "fine_tune", "neural_cleanse", "i_bau", "strip"}
    settings = {("white_pattern", 10.0), ("big_yellow_square", 10.0), ("blend", 10.0), ("wanet", 10.0),
                ("sig", 10.0), ("label_consistent", 10.0), ("white_pattern", 0.0)}
    settings |= {(attack, pct) for attack in ADAPTIVE for pct in (10.0, 0.3)}
    assert len(trials) == len({t.trial_id for t in trials}) == 2 * len(settings) * len(defenses) * 3
    for dataset in ("synthetic_signs", "digits"):
        cells = {(t.attack.label, t.attack.poison_pct, t.pipeline, t.train.seed) for t in trials if t.dataset.name == dataset}
        assert cells == {(a, p, d, s) for a, p in settings for d in defenses for s in (0, 1, 2)}
    assert all(t.attack.source is None or t.attack.source == "all" for t in trials), {t.attack.source for t in trials}
    assert {t.dataset.image_size for t in trials} == {24}
