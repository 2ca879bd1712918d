"""A researcher's own package plugs methods in: tests/plugins/example is installed with pip and swept on
a real local Ray (two workers); broken and clashing plugins are refused before anything runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.results import query

pytestmark = pytest.mark.slow
REPOSITORY = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).with_name("example")

SPACE = """
name: plugged
dataset: {name: synthetic_signs, per_class: 16, test_per_class: 4, classes: [speed_limit_120, stop, yield, no_entry]}
model: gtsrb_cnn
train: {epochs: 2, batch_size: 16}
attack: {source: speed_limit_120, target: stop, trigger: [yellow_square, {corner_checker: {size: [2, 3]}}], poison_pct: 50}
defenses:
  - none
  - corner_filter: {share: 0.3, retrain: none}
  - ac: {retrain: none}
  - [corner_filter: {share: 0.3}, fp]
resources: {cpu: 1}
"""


def install(target: Path, project: Path) -> None:
    """``pip install`` ``project`` into ``target`` (a folder put on PYTHONPATH), as a user installs a package."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(project)], check=True, capture_output=True)


def bdsweep(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in its own interpreter with ``site`` on its path; the Ray it starts passes the path to its workers."""
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPOSITORY}"}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=280)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    install(target, EXAMPLE)
    return target


def test_list_shows_the_plugins_methods_with_their_package(site, tmp_path):
    done = bdsweep(site, "list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "corner_checker  [attack, from bdsweep-example-plugin 0.1.0]" in done.stdout
    assert "corner_filter  [training_set_filter, from bdsweep-example-plugin 0.1.0]" in done.stdout
    assert "corner_threshold (float):" in done.stdout and "window: int = 4" in done.stdout


@pytest.mark.ray
def test_a_sweep_runs_the_plugins_attack_and_defense_beside_built_ins(site, tmp_path):
    space, storage = tmp_path / "space.yaml", tmp_path / "runs"
    space.write_text(textwrap.dedent(SPACE))
    done = bdsweep(site, "run", str(space), "--storage", str(storage), "--max-concurrent", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 result rows in" in done.stdout, done.stdout
    rows = query(storage, "SELECT * FROM results ORDER BY trial_id")
    # The row's trigger is the attack's canonical label (its non-default parameters shown).
    assert len(rows) == 12 and set(rows["trigger"]) == {"yellow_square", "corner_checker", "corner_checker(size=2)"}
    plugged = rows[rows["trigger"].str.startswith("corner_checker")]
    assert set(plugged["trigger_size"]) == {2, 3}
    assert (plugged["trigger_origin"] == "bdsweep-example-plugin==0.1.0").all()
    assert (plugged["attack_changed_pixels"] > 0).all() and (plugged["attack_test_changed_pixels"] > 0).all()
    filtered = rows[rows["d1_name"] == "corner_filter"]
    assert len(filtered) == 6 and (filtered["d1_kind"] == "training_set_filter").all()
    assert filtered["d1_corner_threshold"].notna().all() and (filtered["d1_n_poisoned"] > 0).all()
    # The declared types, whatever the values: one Parquet file per trial, each typed alike.
    schema: dict[str, set] = {}
    for path in (storage / "plugged" / "results").rglob("*.parquet"):
        for field in pq.read_schema(path):
            schema.setdefault(field.name, set()).add(field.type)
    assert schema["trigger_size"] == {pa.int64()} and schema["attack_changed_pixels"] == {pa.int64()}
    assert schema["d1_corner_threshold"] == {pa.float64()} and schema["d1_window"] == {pa.int64()}
    # The corner filter catches the corner trigger better than the centred one it was not built for.
    tpr = filtered.groupby(filtered["trigger"].str.startswith("corner_checker"))["d1_tpr"].mean()
    assert tpr[True] > tpr[False]

    report = (storage / "plugged" / "report" / "index.html")
    assert f"report: {report.resolve()}" in done.stdout.splitlines()
    sections = report_sections(report.read_text())
    # The report asks the registry, so the plugin's filter is in every section a defense belongs to (the
    # benign arm needs a 0 % poison arm, which this sweep has not: it is checked where it is shown).
    wanted = ["master", "tradeoff", "detection", "parameters", "guidelines"] + ["benign"] * ("benign" in sections)
    assert [name for name in wanted if "corner_filter" not in sections.get(name, "")] == [], list(sections)
    # Detection has its counts as a training-set filter's; parameters the metric it declares.
    assert "1: corner_filter" in sections["detection"] and "corner_threshold" in sections["parameters"]
    assert "corner_checker" in sections["attacks"]


def report_sections(html: str) -> dict[str, str]:
    """The text of each ``<section id=...>`` of a report's HTML by its id, tags and line-break hints
    (``<wbr>``) removed and non-breaking spaces made plain, so a label reads as it is written."""
    found = {}
    for match in re.finditer(r'<section id="([\w-]+)">(.*?)</section>', html, flags=re.S):
        text = re.sub(r"<[^>]+>", " ", match[2].replace("<wbr>", ""))
        found[match[1]] = re.sub(r"[ \t]+", " ", text.replace("&nbsp;", " ").replace("\u00a0", " "))
    return found


def fake_distribution(site: Path, name: str, group: str, entry: str, value: str, module: str, code: str) -> None:
    """An installed distribution as pip leaves one: a module and a .dist-info with entry_points.txt."""
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry} = {value}\n")


@pytest.mark.parametrize("name, group, entry, value, code, words", [
    ("broken-plugin", "bdsweep.defenses", "broken", "broken_plugin:Broken",
     "raise RuntimeError('no GPU driver found')\n",
     ["plugin 'broken' (broken_plugin:Broken) from broken-plugin 1.0", "failed to import: RuntimeError: no GPU driver found"]),
    ("clashing-plugin", "bdsweep.defenses", "ac", "clashing_plugin:MyAC",
     """
     from tasks.methods import TrainingSetFilter, Detected

     class MyAC(TrainingSetFilter):
         def detect(self, params, data, context):
             return Detected(data.y < 0)
     """,
     ["plugin 'ac' (clashing_plugin:MyAC) from clashing-plugin 1.0", "the name 'ac' in bdsweep.defenses is taken by bdsweep"]),
])
def test_a_plugin_that_cannot_load_is_refused_with_exit_2_naming_it(tmp_path, name, group, entry, value, code, words):
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, name, group, entry, value, name.replace("-", "_"), code)
    space = tmp_path / "space.yaml"
    space.write_text("name: x\ndataset: {name: synthetic_signs, per_class: 10}\nmodel: gtsrb_cnn\n"
                     "attack: {source: 8, target: 14, trigger: yellow_square, poison_pct: 10}\n")
    for args in (["list"], ["run", str(space), "--dry-run", "--storage", str(tmp_path / "runs")]):
        done = bdsweep(site, *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("bdsweep: error: ") and all(word in done.stderr for word in words), done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def plugged_in(site, monkeypatch):
    """This process with the example plugin installed (the registry loaded afresh, and again after)."""
    from tasks.registry import registry

    monkeypatch.syspath_prepend(str(site))
    registry.cache_clear()
    yield registry()
    registry.cache_clear()


def test_the_plugins_version_enters_its_stages_keys_and_another_version_is_refused(plugged_in):
    from orchestrator.pipeline import stage_keys
    from orchestrator.search_space import TrialSpec
    from orchestrator.store import ArtifactStore
    from tasks.defenses.filtering import DETECTION, DetectionConfig
    from tasks.datasets.synthetic_signs import Config
    from tasks.poison import AttackConfig
    from tasks.registry import DefenseSpec, PluginVersionError
    from tasks.train import TrainConfig

    spec = DefenseSpec(name="corner_filter", params={"share": 0.2})
    assert spec.origin == "bdsweep-example-plugin==0.1.0" and plugged_in.defenses["corner_filter"].version == "0.1.0"
    planned = spec.model_copy(update={"origin": "bdsweep-example-plugin==0.2.0"})

    def trial(defense):
        return TrialSpec(dataset=Config(per_class=10), attack=AttackConfig(source=8, target=14, trigger="yellow_square",
                         poison_pct=10), train=TrainConfig(model="gtsrb_cnn"), defenses=(defense,))

    # The origin is part of the plugin's stage configs, so of their keys and of the trial's id.
    config = DetectionConfig(name="corner_filter", params={"share": 0.2, "window": 4}, train=TrainConfig(model="gtsrb_cnn"),
                             origin=spec.origin)
    other = config.model_copy(update={"origin": planned.origin})
    assert config.model_dump()["origin"] == spec.origin
    assert ArtifactStore.key(DETECTION, config, ["d"]) != ArtifactStore.key(DETECTION, other, ["d"])
    assert trial(spec).trial_id != trial(planned).trial_id
    assert "d1_detection" in stage_keys(trial(spec))
    # A worker whose installed version differs from the driver's refuses the trial, naming both.
    with pytest.raises(PluginVersionError, match=r"planned with bdsweep-example-plugin==0\.2\.0.*has bdsweep-example-plugin==0\.1\.0"):
        stage_keys(trial(planned))
