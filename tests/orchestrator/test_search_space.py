import textwrap

import pytest

from orchestrator.errors import SearchSpaceError
from orchestrator.pipeline import stage_keys
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
    assert {t.pipeline for t in trials} == {"none", "ac", "ac(cluster_analysis=distance)"}
    assert len({t.trial_id for t in trials}) == len(trials)
    assert {(t.attack.label, t.attack.poison_pct) for t in trials} == {
        (trigger, pct) for trigger in ("yellow_square", "big_yellow_square") for pct in (4, 10)
    }


def test_defense_chains_and_train_axes_multiply(tmp_path):
    text = BASE.replace("train: {epochs: 1, batch_size: 16}", "train: {epochs: [1, 2], batch_size: 16}")
    text = text.replace("  - none\n", "  - none\n  - [ac: {cluster_analysis: smaller}, ac: {cluster_analysis: [smaller, distance]}]\n")
    _, trials = load_search_space(write(tmp_path, text))
    assert len(trials) == 2 * 2 * 2 * (1 + 2 + 2)
    chains = {t.pipeline for t in trials if len(t.defenses) == 2}
    assert chains == {
        "ac>ac",
        "ac>ac(cluster_analysis=distance)",
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


def test_fractional_gpus_may_cap_each_trials_gpu_memory(tmp_path):
    space, _ = load_search_space(write(tmp_path, BASE + "resources: {cpu: 2, gpu: 0.25, gpu_memory_mb: 4096}\n"))
    assert (space.resources.gpu, space.resources.gpu_memory_mb) == (0.25, 4096)
    with pytest.raises(SearchSpaceError, match=r"space.yaml: resources: .*set gpu > 0"):
        load_search_space(write(tmp_path, BASE + "resources: {cpu: 2, gpu_memory_mb: 4096}\n"))


@pytest.mark.parametrize(
    "change, field, words",
    [
        (("seeds: [0]", "seeds: [0]\nepochs: 3"), "epochs", "unknown key"),
        (("attack: {", "attack: {colour: red, "), "attack.colour", "unknown key"),
        (("train: {epochs: 1,", "train: {epochs: many,"), "train.epochs[0]", "integer"),
        (("train: {epochs: 1,", "train: {lr_schedule: step, epochs: 1,"), "train.lr_schedule[0]", "'constant' or 'cosine'"),
        (("poison_pct: [4, 10]", "poison_pct: [4, 110]"), "attack.poison_pct[1]", "100"),
        (("trigger: [yellow_square, big_yellow_square]", "trigger: [yellow_square, purple_square]"), "attack.trigger[1]", "purple_square"),
        (("model: gtsrb_cnn", "model: resnet50"), "model[0]", "resnet50"),
        (("  - ac: {cluster_analysis: [smaller, distance]}", "  - no_such_defense: {}"), "defenses[1]", "unknown defense 'no_such_defense'"),
        (("cluster_analysis: [smaller, distance]", "cluster_analysis: [smaller, biggest]"), "defenses[1].ac.cluster_analysis[1]", "biggest"),
        (("cluster_analysis: [smaller, distance]", "clusters: 3"), "defenses[1].ac.clusters", "unknown key"),
        (("name: synthetic_signs", "name: mnist"), "dataset", "mnist"),
        (("per_class: 10", "per_class: ten"), "dataset.per_class", "integer"),
        (("per_class: 10", "per_class: 10, classes: [speed_limit_120, stop, stopp]"), "dataset.classes", "'stopp'"),
        (("per_class: 10", "per_class: 10, classes: [stop, stop]"), "dataset.classes", "more than once"),
        (("per_class: 10", "per_class: 10, classes: [speed_limit_120, stop], class_sizes: {yield: 50}"), "dataset", "not in classes"),
        (("per_class: 10", "per_class: 10, class_sizes: {speed_limit_120: 1}"), "dataset.class_sizes.speed_limit_120", "greater than or equal to 2"),
        (("per_class: 10", "per_class: 10, classes: [speed_limit_120, yield]"), "attack.source[0]", "outside [0, 2)"),
        (("target: 14", "target: 8"), "attack.target", "same class"),
        (("target: 14", "target: speed_limit_120"), "attack.target", "same class"),
        (("target: 14", "target: Tom_Hanks"), "attack.target[0]", "'Tom_Hanks' is not in the dataset"),
        (("source: 8", "source: 43"), "attack.source[0]", "outside [0, 43)"),
        (("  - none\n", "  - none\n  - {1: 2}\n"), "defenses[1]", "unknown defense 1"),
        (("  - none\n", "  - none\n  - random_filter: {same_as: no_such_defense}\n"), "defenses[1].random_filter.same_as", "unknown defense 'no_such_defense'"),
        (("  - none\n", "  - none\n  - random_filter: {same_as: random_filter}\n"), "defenses[1].random_filter.same_as", "own removal count"),
        (("  - none\n", "  - none\n  - random_filter: {fraction: 0.2, same_as: ac}\n"), "defenses[1].random_filter.same_as", "not both"),
        (("  - none\n", "  - none\n  - [ac, random_filter: {same_as: {ss: {score: median}}}]\n"), "defenses[1][1].random_filter.same_as", "ss.score"),
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
    # 5 triggers x 4 poison percentages x (1 + 1 + 2 + 2 + 16 + 198 + 6 + 6 + 2 + 2 + 1) pipelines
    assert len(bundled) == 20 * 237
    assert {t.defenses[0].name for t in bundled if t.defenses} == {"perfect_filter", "random_filter", "ac", "ss", "dp", "fp"}


# --- pretrained weights and user trigger files ---------------------------------------------------

FACES = """
name: faces
dataset: {name: synthetic_faces, n_identities: 3, per_identity: 10}
model: vgg16_face
train: {epochs: 1, batch_size: 16, weights: weights/vgg_face.h5}
attack: {source: person_00, target: person_01, trigger: [green_sunglasses, png:glasses.png], poison_pct: 10}
"""


def write_faces_space(tmp_path, text=FACES):
    (tmp_path / "weights").mkdir(exist_ok=True)
    (tmp_path / "weights" / "vgg_face.h5").write_bytes(b"")  # only its existence is checked at load time
    from PIL import Image

    Image.new("RGBA", (40, 16), (0, 200, 0, 255)).save(tmp_path / "glasses.png")
    return write(tmp_path, text)


def test_relative_weights_and_png_paths_are_taken_from_the_space_file(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    _, trials = load_search_space(write_faces_space(tmp_path))
    assert {t.train.weights for t in trials} == {str((tmp_path / "weights" / "vgg_face.h5").resolve())}
    assert {t.attack.label for t in trials} == {"green_sunglasses", f"png:{(tmp_path / 'glasses.png').resolve()}"}


@pytest.mark.parametrize(
    "change, field, words",
    [
        (("weights: weights/vgg_face.h5", "random_init: false"), "train.weights", "set train.weights to a local"),
        (("weights: weights/vgg_face.h5", "weights: weights/other.h5"), "train.weights[0]", "weights file not found"),
        (("batch_size: 16,", "batch_size: 16, random_init: true,"), "train.random_init", "not both"),
        (("model: vgg16_face", "model: [deepid, vgg16_face]"), "train.weights", "deepid trains from scratch"),
        (("png:glasses.png", "png:sunglasses.png"), "attack.trigger[1]", "trigger image not found"),
        (("png:glasses.png", "png:glasses.jpg"), "attack.trigger[1]", "png:<path to a .png file>"),
    ],
)
def test_weights_and_trigger_files_are_checked_before_any_work(tmp_path, change, field, words):
    assert FACES.replace(*change) != FACES
    path = write_faces_space(tmp_path, FACES.replace(*change))
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    assert (info.value.source, info.value.field) == (str(path), field)
    assert words in str(info.value)


def test_random_init_replaces_the_weights_file(tmp_path):
    text = FACES.replace("weights: weights/vgg_face.h5", "random_init: true")
    _, trials = load_search_space(write_faces_space(tmp_path, text))
    assert {(t.train.weights, t.train.random_init) for t in trials} == {(None, True)}


# --- the thesis search spaces ---------------------------------------------------------------------

def tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 90, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


def thesis_space(tmp_path, name: str, root, weights=None):
    """The shipped thesis space ``name`` with its placeholder paths pointed at ``root`` and ``weights``."""
    import yaml
    from pathlib import Path

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "search_spaces" / f"{name}.yaml").read_text())
    raw["dataset"]["root"] = str(root)
    if weights is not None:
        assert raw["train"]["weights"] == "/path/to/vgg_face_weights.h5"  # the placeholder users must edit
        raw["train"]["weights"] = str(weights)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_thesis_gtsrb_space_is_the_thesis_grid(tmp_path):
    from tests.tasks.datasets.test_gtsrb import write_official

    write_official(tmp_path / "GTSRB", per_class=1)  # the root is listed when the space is loaded
    space, trials = load_search_space(thesis_space(tmp_path, "thesis_gtsrb", tmp_path / "GTSRB"))
    assert len(trials) == 5 * 9 * 237  # triggers x poison percentages x pipelines
    assert {(t.attack.source, t.attack.target) for t in trials} == {(8, 14)}
    assert {t.pipeline.split("(")[0].split(">")[0] for t in trials} == {
        "none", "perfect_filter", "random_filter", "ac", "ss", "dp", "fp"
    }
    assert {tuple(d.name for d in t.defenses) for t in trials if len(t.defenses) == 2} == {
        ("ac", "fp"), ("fp", "ac"), ("ss", "fp")
    }
    assert {(t.train.model, t.train.epochs, t.train.batch_size, t.train.optimizer, t.train.learning_rate) for t in trials} == {
        ("gtsrb_cnn", 10, 32, "adam", 0.001)
    }


# none, perfect, 2 random, 2 ac, 9 x 11 x 2 ss, 6 dp, 6 fp, 2 ac>fp, 2 fp>ac
FACE_PIPELINES = 1 + 1 + 2 + 2 + 198 + 6 + 6 + 2 + 2


def assert_every_thesis_defense(trials):
    """The thesis ran every defense on its face models too (Tables 4.5-4.9): FP on both layers, both orders, SS, DP."""
    chains = {tuple(d.name for d in t.defenses) for t in trials}
    assert {("fp",), ("ss",), ("dp",), ("ac",), ("ac", "fp"), ("fp", "ac")} <= chains
    fp = {(d.params["layer"], d.params["threshold"]) for t in trials for d in t.defenses if d.name == "fp"}
    assert fp >= {(layer, threshold) for layer in ("last_conv", "second_to_last_conv") for threshold in (0.02, 0.04, 0.06)}
    one_per_chain = {tuple(d.name for d in t.defenses): t for t in trials}.values()
    stages = {stage for trial in one_per_chain for stage, _ in stage_keys(trial).values()}
    assert {"pruning_curve", "fine_tune", "provenance_gains", "activations", "detection", "retrain"} <= stages


def test_thesis_youtube_faces_space_resolves_people_on_disk(tmp_path):
    root, jpeg = tmp_path / "aligned_images_DB", tiny_jpeg()
    for person in ("Sarah_Jessica_Parker", "Tom_Hanks"):
        video = root / person / "0"
        video.mkdir(parents=True)
        for frame in range(100):
            (video / f"aligned_detect_0.{frame}.jpg").write_bytes(jpeg)
    _, trials = load_search_space(thesis_space(tmp_path, "thesis_youtube_faces", root))
    assert len(trials) == 2 * 2 * FACE_PIPELINES
    assert_every_thesis_defense(trials)
    assert {(t.attack.source, t.attack.target) for t in trials} == {(0, 1)}  # sorted names
    assert {t.attack.label for t in trials} == {"green_sunglasses", "black_sunglasses"}
    assert {(t.train.model, t.train.optimizer, t.train.learning_rate, t.train.epochs) for t in trials} == {
        ("deepid", "adadelta", 0.1, 10)
    }


def test_thesis_lfw_space_needs_its_weights_file(tmp_path):
    root, jpeg = tmp_path / "lfw", tiny_jpeg()
    for person in ("Arnold_Schwarzenegger", "Donald_Rumsfeld"):
        (root / person).mkdir(parents=True)
        for index in range(1, 21):
            (root / person / f"{person}_{index:04d}.jpg").write_bytes(jpeg)
    with pytest.raises(SearchSpaceError, match="weights file not found: /path/to/vgg_face_weights.h5") as info:
        load_search_space(thesis_space(tmp_path, "thesis_lfw", root))
    assert info.value.field == "train.weights[0]"

    weights = tmp_path / "vgg_face.h5"
    weights.write_bytes(b"")
    _, trials = load_search_space(thesis_space(tmp_path, "thesis_lfw", root, weights))
    assert len(trials) == 2 * 4 * FACE_PIPELINES
    assert_every_thesis_defense(trials)
    assert {(t.attack.source, t.attack.target) for t in trials} == {(1, 0)}  # Rumsfeld -> Schwarzenegger
    assert {(t.train.model, t.train.epochs, t.train.weights) for t in trials} == {("vgg16_face", 50, str(weights))}


def test_people_are_named_in_a_space_over_data_on_disk(tmp_path):
    from tests.tasks.datasets.test_youtube_faces import write_database

    write_database(tmp_path)
    space = write(tmp_path, f"""
        name: faces
        dataset: {{name: youtube_faces, root: {tmp_path}, min_images: 10}}
        model: deepid
        attack: {{source: Sarah_Jessica_Parker, target: Tom_Hanks, trigger: green_sunglasses, poison_pct: 10}}
    """)
    _, trials = load_search_space(space)
    assert (trials[0].attack.source, trials[0].attack.target) == (1, 2)  # sorted names; Zed_Few has too few
    bad = write(tmp_path, space.read_text().replace("Tom_Hanks", "Tom_Cruise"), "bad.yaml")
    with pytest.raises(SearchSpaceError, match="'Tom_Cruise' is not in the dataset") as info:
        load_search_space(bad)
    assert info.value.field == "attack.target[0]"
    missing = write(tmp_path, space.read_text().replace(str(tmp_path), str(tmp_path / "nowhere")), "missing.yaml")
    with pytest.raises(SearchSpaceError, match="nowhere.*directory not found") as info:
        load_search_space(missing)  # a user error (exit 2), raised before any work
    assert info.value.field == "dataset.root"
