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
    seen = {(t.dataset.name, t.train.model, t.attack.trigger, t.attack.poison_pct, t.pipeline) for t in trials}
    assert seen == {
        ("synthetic_signs", "gtsrb_cnn", "yellow_square", 10.0, "none"),  # in blocks 0 and 1, once
        ("synthetic_signs", "gtsrb_cnn", "yellow_square", 10.0, "ac(cluster_analysis=smaller)"),
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
    ("- attack: {trigger: [yellow_square, nope]}", "blocks[0].attack.trigger[1]", "unknown trigger 'nope'"),
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
