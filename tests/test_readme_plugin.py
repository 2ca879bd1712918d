"""README's "Write your own attack or defense" is complete: its files, taken from README as they are,
install with pip as a plugin and sweep (in process), each kind of method doing its part."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import SearchSpaceError
from tests.harness import load_trials, run_space

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[1] / "README.md"


def readme_files() -> dict[str, str]:
    """``{path: text}`` of every code block README marks ``<!-- plugin-example: PATH -->``."""
    blocks = re.findall(r"<!-- plugin-example: (\S+) -->\n```\w*\n(.*?)```", README.read_text(), flags=re.S)
    return dict(blocks)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """README's package installed with pip into a folder on this process's path; the registry reloaded."""
    from tasks.registry import registry

    files = readme_files()
    assert {"pyproject.toml", "my_methods/attacks.py", "my_methods/defenses.py", "space.yaml"} <= set(files)
    project = tmp_path_factory.mktemp("project")
    for path, text in files.items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(project)], check=True, capture_output=True)
    sys.path.insert(0, str(site))
    registry.cache_clear()
    try:
        yield files
    finally:
        sys.path.remove(str(site))
        registry.cache_clear()


def test_the_readme_plugin_registers_every_method_with_its_kind(plugin):
    from tasks.registry import registry

    kinds = {name: method.kind for name, method in registry().defenses.items()}
    assert registry().attacks["noise_blend"].package == "my-backdoor-methods"
    assert {name: kinds[name] for name in ("distance_filter", "noisy_fine_tune", "confidence_bias",
                                           "confidence_filter")} == {
        "distance_filter": "training_set_filter", "noisy_fine_tune": "model_repair",
        "confidence_bias": "model_inspection", "confidence_filter": "input_filter"}


def test_the_readme_space_sweeps_every_kind(plugin, tmp_path):
    sweep = run_space(plugin["space.yaml"], tmp_path)
    assert not sweep.errors, sweep.errors
    rows = sweep.frame()
    assert len(rows) == 3 * 6  # triggers x pipelines
    assert set(rows["trigger"]) == {"yellow_square", "noise_blend", "noise_blend(alpha=0.2)"}
    blended = rows[rows["trigger"].str.startswith("noise_blend")]
    assert (blended["attack_mean_change"] > 0).all() and set(blended["trigger_alpha"]) == {0.1, 0.2}
    # At alpha 0.1 the test inputs (test_alpha 0.2) change about twice as much as the poisons.
    weak = blended[blended["trigger_alpha"] == 0.1]
    assert (weak["attack_test_mean_change"] > 1.5 * weak["attack_mean_change"]).all()
    by_name = {name: group for name, group in rows.groupby("d1_name")}
    filtered = by_name["distance_filter"]
    assert (filtered["d1_kind"] == "training_set_filter").all() and (filtered["d1_mean_distance"] > 0).all()
    assert set(filtered["d1_n_seen"] - filtered["d1_n_kept"]) == set(filtered["d1_removed_total"])
    repaired = by_name["noisy_fine_tune"]
    assert (repaired["d1_n_tune"] > 0).all() and (repaired["d1_kind"] == "model_repair").all()
    inspected = by_name["confidence_bias"]
    assert inspected["d1_max_z"].notna().all() and inspected["d1_target_flagged"].notna().all()
    # An inspection leaves the model alone: what is measured after equals what was before.
    assert (inspected["asr_after"] == inspected["asr_before"]).all()
    chained = rows[rows["d2_name"] == "confidence_filter"]
    assert len(chained) == 3 and (chained["d2_kind"] == "input_filter").all()
    assert chained["d2_threshold"].between(0, 1).all()
    assert chained["d2_input_frr"].between(0, 1).all() and chained["d2_input_tpr"].notna().all()
    assert chained["d2_input_auroc"].isna().all()  # a filter without a score
    # The filter leaves the model alone: its own metrics are unchanged; what it serves is apart.
    assert (chained["served_clean_acc"] <= chained["clean_acc_after"]).all() and chained["der_served"].notna().all()


def test_an_input_filter_anywhere_but_last_is_refused_naming_the_entry(plugin, tmp_path):
    space = plugin["space.yaml"].replace("[distance_filter: {share: 0.2}, confidence_filter]",
                                         "[confidence_filter, distance_filter: {share: 0.2}]")
    with pytest.raises(SearchSpaceError, match="defenses\\[4\\]: confidence_filter is an input filter") as info:
        load_trials(space, tmp_path)
    assert info.value.field == "defenses[4]"
