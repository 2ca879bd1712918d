import textwrap

import pytest

from orchestrator.errors import SearchSpaceError
from orchestrator.search_space import load_search_space

BASE = """
name: tiny
dataset: {name: synthetic_signs, per_class: 10}
model: gtsrb_cnn
train: {epochs: 1, batch_size: 16}
attack: {source: 8, target: 14, trigger: [yellow_square, big_yellow_square], poison_pct: [4, 10]}
seeds: [0]
defenses:
  - none
  - ac: {cluster_analysis: [smaller, distance]}
"""


def write(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_quickstart_shape_expands_to_full_cross_product(tmp_path):
    space, trials = load_search_space(write(tmp_path, BASE))
    assert len(trials) == 2 * 2 * 3
    assert {t.pipeline for t in trials} == {"none", "ac(cluster_analysis=smaller)", "ac(cluster_analysis=distance)"}
    assert len({t.trial_id for t in trials}) == len(trials)
    assert {(t.attack.trigger, t.attack.poison_pct) for t in trials} == {
        (trigger, pct) for trigger in ("yellow_square", "big_yellow_square") for pct in (4, 10)
    }


def test_defense_chains_and_train_axes_multiply(tmp_path):
    text = BASE.replace("train: {epochs: 1, batch_size: 16}", "train: {epochs: [1, 2], batch_size: 16}")
    text = text.replace("  - none\n", "  - none\n  - [ac: {cluster_analysis: smaller}, ac: {cluster_analysis: [smaller, distance]}]\n")
    _, trials = load_search_space(write(tmp_path, text))
    assert len(trials) == 2 * 2 * 2 * (1 + 2 + 2)
    chains = {t.pipeline for t in trials if len(t.defenses) == 2}
    assert chains == {
        "ac(cluster_analysis=smaller)>ac(cluster_analysis=smaller)",
        "ac(cluster_analysis=smaller)>ac(cluster_analysis=distance)",
    }


def test_equal_recipes_are_one_trial(tmp_path):
    text = BASE.replace("  - none\n", "  - none\n  - ac\n  - ac: {cluster_analysis: smaller}\n")
    _, trials = load_search_space(write(tmp_path, text))
    # `ac` and `ac: {cluster_analysis: smaller}` spell the same recipe as the grid's smaller entry.
    assert len(trials) == 2 * 2 * 3


def test_class_names_resolve_at_load_time_to_the_same_trials(tmp_path):
    _, by_index = load_search_space(write(tmp_path, BASE))
    named = BASE.replace("source: 8, target: 14", "source: speed_limit_120, target: stop")
    _, by_name = load_search_space(write(tmp_path, named, "named.yaml"))
    assert [t.trial_id for t in by_name] == [t.trial_id for t in by_index]
    assert {(t.attack.source, t.attack.target) for t in by_name} == {(8, 14)}


def test_trial_id_ignores_resources_and_is_stable(tmp_path):
    _, first = load_search_space(write(tmp_path, BASE))
    _, second = load_search_space(write(tmp_path, BASE + "resources: {cpu: 2}\n", "other.yaml"))
    assert [t.trial_id for t in first] == [t.trial_id for t in second]


@pytest.mark.parametrize(
    "change, field, words",
    [
        (("seeds: [0]", "seeds: [0]\nepochs: 3"), "epochs", "unknown key"),
        (("attack: {", "attack: {colour: red, "), "attack.colour", "unknown key"),
        (("train: {epochs: 1,", "train: {epochs: many,"), "train.epochs[0]", "integer"),
        (("poison_pct: [4, 10]", "poison_pct: [4, 110]"), "attack.poison_pct[1]", "100"),
        (("trigger: [yellow_square, big_yellow_square]", "trigger: [yellow_square, purple_square]"), "attack.trigger[1]", "purple_square"),
        (("model: gtsrb_cnn", "model: resnet50"), "model[0]", "resnet50"),
        (("  - ac: {cluster_analysis: [smaller, distance]}", "  - strip: {}"), "defenses[1]", "unknown defense 'strip'"),
        (("cluster_analysis: [smaller, distance]", "cluster_analysis: [smaller, biggest]"), "defenses[1].ac.cluster_analysis[1]", "biggest"),
        (("cluster_analysis: [smaller, distance]", "clusters: 3"), "defenses[1].ac.clusters", "unknown key"),
        (("name: synthetic_signs", "name: mnist"), "dataset", "mnist"),
        (("per_class: 10", "per_class: ten"), "dataset.per_class", "integer"),
        (("target: 14", "target: 8"), "attack.target", "same class"),
        (("target: 14", "target: speed_limit_120"), "attack.target", "same class"),
        (("target: 14", "target: Tom_Hanks"), "attack.target[0]", "'Tom_Hanks' is not in the dataset"),
        (("source: 8", "source: 43"), "attack.source[0]", "outside [0, 43)"),
        (("  - none\n", "  - none\n  - {1: 2}\n"), "defenses[1]", "unknown defense 1"),
    ],
)
def test_bad_search_space_names_file_and_field(tmp_path, change, field, words):
    path = write(tmp_path, BASE.replace(*change))
    assert BASE.replace(*change) != BASE
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    assert info.value.source == str(path)
    assert info.value.field == field
    assert words in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(SearchSpaceError, match="file not found"):
        load_search_space(tmp_path / "absent.yaml")
    with pytest.raises(SearchSpaceError, match="not valid YAML"):
        load_search_space(write(tmp_path, "name: [unclosed"))
    with pytest.raises(SearchSpaceError, match="required key is missing") as info:
        load_search_space(write(tmp_path, "name: x\nmodel: gtsrb_cnn\n"))
    assert info.value.field == "dataset"


def test_shipped_search_spaces_are_valid():
    from pathlib import Path

    spaces = Path(__file__).resolve().parents[2] / "search_spaces"
    _, quickstart = load_search_space(spaces / "quickstart.yaml")
    assert len(quickstart) == 12
    _, bundled = load_search_space(spaces / "thesis_bundled.yaml")
    # 5 triggers x 4 poison percentages x (1 + 1 + 2 + 16 + 198 + 6 + 6 + 2 + 2 + 1) pipelines
    assert len(bundled) == 20 * 235
    assert {t.defenses[0].name for t in bundled if t.defenses} == {"perfect_filter", "random_filter", "ac", "ss", "dp", "fp"}
