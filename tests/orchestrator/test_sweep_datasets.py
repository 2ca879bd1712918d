"""End to end on the bundled datasets other than synthetic_signs: a real sweep (Ray on 127.0.0.1) on digits."""

import textwrap

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.results import query

pytestmark = [pytest.mark.slow, pytest.mark.ray]

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
    space, storage = tmp_path / "space.yaml", tmp_path / "runs"
    space.write_text(textwrap.dedent(DIGITS))
    result = CliRunner().invoke(app, ["run", str(space), "--storage", str(storage)])
    assert result.exit_code == 0, result.output
    rows = query(storage, "SELECT * FROM results ORDER BY n_defenses")
    assert len(rows) == 2 and set(rows["dataset"]) == {"digits"}
    assert (rows["source"] == 7).all() and (rows["target"] == 1).all()
    # 10 % of the 7s in the 70 % training split (179 sevens in load_digits).
    assert (rows["n_poisoned"] == round(0.1 * round(0.7 * 179))).all()
    assert rows["clean_acc_before"].between(0.5, 1).all(), "one epoch already learns most digits"
    assert rows["asr_after"].between(0, 1).all()
    assert rows.loc[1, "d1_removed_total"] > 0 and rows["dataset_computed"].sum() == 1


def test_face_trigger_placement_is_recorded_in_rows(tmp_path):
    space, storage = tmp_path / "space.yaml", tmp_path / "runs"
    space.write_text(textwrap.dedent("""
        name: faces_e2e
        dataset: {name: synthetic_faces, n_identities: 4, per_identity: 30}
        model: deepid
        train: {epochs: 1}
        attack: {source: person_00, target: person_01, trigger: green_sunglasses, poison_pct: 20}
    """))
    result = CliRunner().invoke(app, ["run", str(space), "--storage", str(storage)])
    assert result.exit_code == 0, result.output
    row = query(storage, "SELECT * FROM results").iloc[0]
    placed = row.get("placement_haar", 0) + row.get("placement_prior", 0)
    assert row["n_poisoned"] > 0 and placed == row["n_poisoned"]
