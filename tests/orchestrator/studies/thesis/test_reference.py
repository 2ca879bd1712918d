from pathlib import Path

import pandas as pd
import pytest

from orchestrator.studies.thesis.reference import REFERENCE_TABLES, load_reference, reference_file, thesis_settings

# shared/ stands beside the repository root, wherever the repository was cloned.
SHARED_REFERENCE = Path(__file__).resolve().parents[4].parent / "shared" / "reference"


@pytest.mark.parametrize("name", sorted(REFERENCE_TABLES))
def test_every_table_loads_with_rows(name):
    table = load_reference(name)
    assert len(table) > 0
    assert not table.columns.duplicated().any()


@pytest.mark.skipif(not SHARED_REFERENCE.is_dir(), reason="the project's shared reference folder is absent")
@pytest.mark.parametrize("name", sorted(REFERENCE_TABLES))
def test_shipped_tables_equal_the_shared_ones(name):
    shared = SHARED_REFERENCE / REFERENCE_TABLES[name][0]
    assert reference_file(name).read_text(encoding="utf-8") == shared.read_text(encoding="utf-8")
    pd.testing.assert_frame_equal(load_reference(name), pd.read_csv(shared))


def test_every_shared_table_is_shipped():
    if not SHARED_REFERENCE.is_dir():
        pytest.skip("the project's shared reference folder is absent")
    shipped = {file for file, _ in REFERENCE_TABLES.values()}
    assert {path.name for path in SHARED_REFERENCE.glob("thesis_*.csv")} == shipped


def test_thesis_numbers_as_printed():
    models = load_reference("models").set_index("model_id")
    # Table 4.1: GTSRB-yellowSquare-smaller, 2 % poisoned, 94.67 % clean accuracy, 51.48 % backdoor success
    assert models.loc["GTSRB-yellowSquare-smaller", "clean_acc"] == 94.67
    assert models.loc["GTSRB-yellowSquare-smaller", "backdoor_success"] == 51.48
    pruning = load_reference("fine_pruning").set_index(["model_id", "layer"])
    # Table 4.6 (last_conv): LFW-blackGlasses loses 11.11 points of clean accuracy
    assert pruning.loc[("LFW-blackGlasses", "last_conv"), "clean_acc_change"] == -11.11


def test_settings_map_every_model_id_of_the_other_tables():
    settings = thesis_settings()
    assert settings["model_id"].is_unique
    assert settings.set_index("model_id").loc["GTSRB-bigYellowSquare"].to_dict() == {
        "dataset": "gtsrb", "model": "gtsrb_cnn", "trigger": "big_yellow_square", "poison_pct": 4.0}
    for name in ("activation_clustering", "fine_pruning", "combinations"):
        assert set(load_reference(name)["model_id"]) <= set(settings["model_id"])


def test_unknown_table_is_refused():
    with pytest.raises(KeyError, match="thesis_models|no thesis table"):
        load_reference("thesis_models")
