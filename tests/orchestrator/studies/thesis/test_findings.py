"""`bdsweep findings`: the README's findings block and its two figures, from a sweep's rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.studies.findings import markers
from orchestrator.studies.thesis.findings import defense_effects, findings_markdown, short_pipeline
from orchestrator.report.model import ReportContext, SweepFacts
from tests.orchestrator.report.test_sweep_report import recorded, write_rows
from tests.report_rows import connect_rows, synthetic_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
START, END = markers("thesis")
README = f"# Project\n\nIntro stays.\n\n## Findings\n\n{START}\nstale text\n{END}\n\n## After\n\nStays too.\n"


def test_findings_replace_only_the_marked_block_and_write_two_png_figures(tmp_path):
    root = str(tmp_path / "runs")
    write_rows(root, recorded(root, tmp_path))
    readme, figures = tmp_path / "README.md", tmp_path / "docs" / "findings"
    readme.write_text(README)
    arguments = ["findings", "paper", "--storage", root, "--readme", str(readme), "--figures", str(figures)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert text.startswith("# Project\n\nIntro stays.\n\n## Findings\n\n" + START + "\n")
    assert text.endswith(END + "\n\n## After\n\nStays too.\n") and "stale text" not in text
    block = text.split(START)[1].split(END)[0]
    assert "From the `paper` sweep (16 trials, 2 seeds;" in block
    assert "are judged, each at 95 %:" in block and "Holm" in block
    # The Answers table: a header, its rule and one line per claim of the report's Answers section.
    assert sum(line.startswith("| RQ") for line in block.splitlines()) == 11
    for name in ("thesis_asr_by_trigger.png", "thesis_defenses.png"):
        assert (figures / name).read_bytes().startswith(PNG_MAGIC)
        assert f"](docs/findings/{name})" in block
    # Written again from the same rows, the README and the figures are byte for byte the same.
    pngs = {name: (figures / name).read_bytes() for name in ("thesis_asr_by_trigger.png", "thesis_defenses.png")}
    assert CliRunner().invoke(app, arguments).exit_code == 0
    assert readme.read_text() == text
    assert {name: (figures / name).read_bytes() for name in pngs} == pngs


def test_a_sweep_without_defenses_gets_no_defense_figure_and_loses_a_stale_one(tmp_path):
    root = str(tmp_path / "runs")
    trials = recorded(root, tmp_path)
    write_rows(root, [t for t in trials if t.pipeline == "none"])  # the defended trials have no row yet
    readme, figures = tmp_path / "README.md", tmp_path / "figures"
    readme.write_text(README)
    figures.mkdir()
    (figures / "thesis_defenses.png").write_bytes(PNG_MAGIC)  # from an earlier sweep
    result = CliRunner().invoke(app, ["findings", "paper", "--storage", root, "--readme", str(readme),
                                      "--figures", str(figures)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in figures.iterdir()) == ["thesis_asr_by_trigger.png"]
    block = readme.read_text().split(START)[1]
    assert block.startswith("\n**Partial: 8 of 16 trials done.** From the `paper` sweep") and "defenses.png" not in block


@pytest.mark.parametrize("readme_text", [None, "# No markers here\n", f"{END}\n{START}\n", f"{START}\n{START}\n{END}\n"])
def test_a_readme_without_one_pair_of_markers_is_named_and_left_alone(tmp_path, readme_text):
    root = str(tmp_path / "runs")
    write_rows(root, recorded(root, tmp_path))
    readme = tmp_path / "README.md"
    if readme_text is not None:
        readme.write_text(readme_text)
    result = CliRunner().invoke(app, ["findings", "paper", "--storage", root, "--readme", str(readme),
                                      "--figures", str(tmp_path / "figures")])
    assert result.exit_code == 2
    assert str(readme) in result.output
    assert ("file not found" if readme_text is None else "findings:thesis:start") in result.output
    assert (readme.read_text() if readme_text is not None else None) == readme_text
    assert not (tmp_path / "figures").exists()


def test_an_unknown_sweep_is_named(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    result = CliRunner().invoke(app, ["findings", "nothing", "--storage", str(tmp_path / "runs"),
                                      "--readme", str(readme)])
    assert result.exit_code == 2 and "no sweep named 'nothing'" in result.output
    assert readme.read_text() == README


def test_defense_effects_are_paired_per_backdoored_model():
    ac = "ac(cluster_analysis=smaller)"
    rows = synthetic_rows(["yellow_square"], [6.0, 0.0], [0, 1, 2], ["none", ac])
    planted = {0: (0.9, 0.3, 0.95, 0.94), 1: (0.8, 0.4, 0.96, 0.90), 2: (1.0, 0.1, 0.97, 0.97)}
    for row in rows:
        if row["poison_pct"] > 0:
            asr_before, asr_after, clean_before, clean_after = planted[row["seed"]]
            row.update(asr_before=asr_before, clean_acc_before=clean_before)
            if row["pipeline"] == ac:
                row.update(asr_after=asr_after, clean_acc_after=clean_after)
    context = ReportContext(connect_rows(rows), SweepFacts("demo", "name: demo\n", {"done": len(rows)}))
    effects = defense_effects(context)
    # 'none' is no defense, and the 0 % rows have no backdoor to remove: one line, three models.
    assert effects["pipeline"].tolist() == [ac] and effects["asr_drop_n"].tolist() == [3]
    drops = np.array([60.0, 40.0, 90.0])  # pp, written out from the planted values
    half = stats.t.ppf(0.975, 2) * drops.std(ddof=1) / np.sqrt(3)
    line = effects.iloc[0]
    assert line["asr_drop_mean"] == pytest.approx(drops.mean())
    assert (line["asr_drop_lo"], line["asr_drop_hi"]) == pytest.approx((drops.mean() - half, drops.mean() + half))
    assert line["clean_cost_mean"] == pytest.approx(np.mean([1.0, 6.0, 0.0]))
    assert line["label"] == "ac(smaller)"


@pytest.mark.parametrize("pipeline, label", [
    ("ac(cluster_analysis=smaller,ex_re_threshold=None)", "ac(smaller)"),
    ("ac(cluster_analysis=distance,ex_re_threshold=1.0)", "ac(distance, ex_re=1.0)"),
    ("dp(detection_epochs=2,mode=untrusted)", "dp(detection_epochs=2, untrusted)"),
    ("ac(cluster_analysis=smaller)>fp(layer=last_conv,threshold=0.04)", "ac(smaller) → fp(last_conv, threshold=0.04)"),
    ("random_filter(same_as={'ac': {'cluster_analysis': 'smaller'}})", "random_filter(as many as ac(smaller))"),
    ("perfect_filter", "perfect_filter"),
])
def test_short_pipeline_labels(pipeline, label):
    assert short_pipeline(pipeline) == label


def test_the_findings_count_verdicts_at_95_percent_each_and_after_holm():
    # The planted family of section Answers' tests: a strong, a weak (p ≈ 0.041) and a null claim.
    from tests.orchestrator.studies.thesis.test_answers import family_rows, judged

    table = judged(family_rows()).reset_index()
    block = findings_markdown(table, "planted", 36, 3, [])
    assert ("Of 11 claims, 3 are judged, each at 95 %: 2 AGREES, 0 DISAGREES, 1 INCONCLUSIVE; after Holm's "
            "adjustment over the 3 with a test (family-wise 5 %): 1 AGREES, 0 DISAGREES, 2 INCONCLUSIVE.") in block
    header = next(line for line in block.splitlines() if line.startswith("| Question"))
    assert "| p (Holm-adjusted) | Verdict (95 % each) | After Holm (family-wise 5 %, m = 3) |" in header
    assert "| 0.041 (0.082) | AGREES | INCONCLUSIVE |" in block
