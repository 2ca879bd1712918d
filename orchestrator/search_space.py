"""Search spaces: a YAML file validated into a grid, expanded into the full cross product of trials.

Any list in the grid positions (attack fields, ``model``, ``train`` fields, ``seeds``, defense
parameters) is an axis; the sweep is the product of all axes and of the ``defenses`` entries.
Every error is a :class:`SearchSpaceError` naming the file and the field, raised before any work.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, model_validator

from orchestrator.errors import SearchSpaceError
from orchestrator.hashing import content_hash
from tasks.config import StageConfig
from tasks.datasets import DATASETS, DatasetConfig, class_names, with_root_listing
from tasks.errors import DatasetError, TriggerError
from tasks.file_identity import file_sha256
from tasks.models import MODELS, weights_problem
from tasks.poison import ALL, AttackConfig, attack_spec, plan_poisoning, resolve_class
from tasks.registry import AttackSpec, DefenseSpec, MethodSpec, check_pipeline, registry
from tasks.train import TrainConfig
from tasks.triggers import PNG_PREFIX, check_trigger_name, get_trigger, trigger_file_digest

NO_DEFENSE = "none"


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def axis(item_type: Any) -> Any:
    """A grid axis of ``item_type``: a scalar in YAML is an axis of one value."""
    return Annotated[list[item_type], BeforeValidator(_as_list), Field(min_length=1)]


def grid_of(config: type[StageConfig], exclude: tuple[str, ...] = ()) -> type[BaseModel]:
    """A model accepting, for each field of ``config``, one value or a list of values.

    Types, constraints and defaults come from ``config`` itself, so a stage's parameters are
    declared once.
    """
    fields = {}
    for name, info in config.model_fields.items():
        if name in exclude:
            continue
        item_type = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        default = [info.default] if not info.is_required() else ...
        fields[name] = (axis(item_type), default)
    return create_model(f"{config.__name__}Grid", __config__=ConfigDict(extra="forbid"), **fields)


def expand_grid(grid: BaseModel) -> list[dict[str, Any]]:
    """Every combination of a grid model's axes, as dicts, in field order (last field fastest)."""
    names = list(type(grid).model_fields)
    return [dict(zip(names, values)) for values in itertools.product(*(getattr(grid, n) for n in names))]


ClassRef = Annotated[int, Field(ge=0)] | str


def _trigger_entry(entry: Any) -> Any:
    # A png: trigger's file name is checked here (it ends in .png); the file is read later, once.
    if isinstance(entry, str) and entry.startswith(PNG_PREFIX):
        check_trigger_name(entry)
    return entry


def _poison_pct(value: float | str) -> float | str:
    # A number in [0, 100], or "default": each attack's own rate (see _attack_amounts).
    if isinstance(value, str):
        if value != "default":
            raise ValueError(f"a percentage in [0, 100] or 'default' (the attack's own rate), got {value!r}")
        return value
    if not 0 <= value <= 100:
        raise ValueError(f"a percentage must be between 0 and 100, got {value}")
    return float(value)


class AttackGrid(BaseModel):
    """``attack``: classes, attacks and amounts; each ``trigger`` entry is an attack (see :func:`parse_methods`)."""

    model_config = ConfigDict(extra="forbid")

    source: axis(ClassRef)
    target: axis(ClassRef)
    trigger: axis(Annotated[str | dict[str, Any], AfterValidator(_trigger_entry)])
    poison_pct: axis(Annotated[float | str, AfterValidator(_poison_pct)])


TrainGrid = grid_of(TrainConfig, exclude=("model", "seed", "weights_sha256"))  # the digest: see file_digests


def method_grids(kind: str) -> dict[str, type[BaseModel]]:
    """``{name: grid model}`` of every registered method of ``kind`` (``attacks`` or ``defenses``)."""
    return {name: grid_of(method.Params) for name, method in getattr(registry(), kind).items()}


class Resources(BaseModel):
    """What Ray reserves for each trial."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: float = Field(1, gt=0)
    gpu: float = Field(0, ge=0)
    gpu_memory_mb: int | None = Field(
        None, gt=0, description="GPU memory (MiB) a trial may take, for fractional GPUs; default: memory growth"
    )

    @model_validator(mode="after")
    def _memory_needs_a_gpu(self) -> "Resources":
        if self.gpu_memory_mb is not None and self.gpu == 0:
            raise ValueError("gpu_memory_mb limits a GPU's memory: set gpu > 0 (e.g. 0.25 for four trials per GPU)")
        return self


class SearchSpace(BaseModel):
    """A validated search-space file (``defenses`` is checked separately, see :func:`parse_defenses`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    dataset: DatasetConfig
    model: axis(Literal[tuple(MODELS)])  # type: ignore[valid-type]
    train: TrainGrid = Field(default_factory=TrainGrid)  # type: ignore[valid-type]
    attack: AttackGrid
    seeds: axis(Annotated[int, Field(ge=0)]) = [0]
    defenses: list[Any] = Field([NO_DEFENSE], min_length=1)
    resources: Resources = Field(default_factory=Resources)


class TrialSpec(StageConfig):
    """One point of the cross product: everything a trial computes, nothing about where it runs."""

    dataset: DatasetConfig
    attack: AttackConfig
    train: TrainConfig
    defenses: tuple[DefenseSpec, ...] = ()
    pipeline: str = Field(NO_DEFENSE, description="readable label of the defenses; not part of the identity")

    @property
    def trial_id(self) -> str:
        """Hash of the trial's recipe; names its result file and survives resumes and restarts."""
        return content_hash(self.model_dump(mode="json", exclude={"pipeline"}))


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _raise_first(error: ValidationError, source: str, prefix: tuple = (), drop: tuple = ()) -> None:
    detail = error.errors()[0]
    loc = prefix + tuple(part for part in detail["loc"] if part not in drop)
    # A discriminated union puts the tag in the path (dataset.synthetic_signs.per_class): drop it.
    if len(loc) > 1 and loc[0] == "dataset" and loc[1] in DATASETS:
        loc = loc[:1] + loc[2:]
    message = detail["msg"]
    if detail["type"] == "extra_forbidden":
        message = "unknown key"
    elif detail["type"] == "missing":
        message = "required key is missing"
    elif "input" in detail and not isinstance(detail["input"], (dict, list)):
        message = f"{message} (got {detail['input']!r})"
    raise SearchSpaceError(source, _field_path(loc) or None, message) from None


def _parse_method(entry: Any, spec_class: type[MethodSpec], source: str, loc: tuple) -> list[MethodSpec]:
    """Every configuration of one method entry such as ``{ac: {cluster_analysis: [a, b]}}``.

    An entry is a name or a one-key mapping ``{name: {param: value or list of values}}``; lists are
    axes. Returns one validated spec per combination, in grid order.
    """
    noun = spec_class._noun
    if isinstance(entry, str):
        name, given = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        name, given = next(iter(entry.items()))
        given = {} if given is None else given
    else:
        raise SearchSpaceError(source, _field_path(loc), f"{noun}: a name or a one-key mapping {{name: {{param: value}}}}")
    grids = method_grids(spec_class._group)
    if name not in grids:
        known = ", ".join(sorted(grids))
        extra = " (or none alone)" if spec_class is DefenseSpec else ""
        raise SearchSpaceError(source, _field_path(loc), f"unknown {noun} {name!r}; known: {known}{extra}")
    if not isinstance(given, dict):
        raise SearchSpaceError(source, _field_path(loc + (name,)), f"{noun} parameters must be a mapping")
    try:
        grid = grids[name].model_validate(given)
    except ValidationError as error:
        _raise_first(error, source, loc + (name,))
    specs = []
    params_class = getattr(registry(), spec_class._group)[name].Params
    for params in expand_grid(grid):
        params = _with_file_digests(params_class, params, source, loc + (name,))
        try:  # what one field's type cannot say: rules across fields, a defense named inside another
            specs.append(spec_class(name=name, params=params))
        except ValidationError as error:
            _raise_first(error, source, loc + (name,), drop=("params",))
    return specs


def _with_file_digests(params_class: type[BaseModel], params: dict, source: str, loc: tuple) -> dict:
    """``params`` with every file parameter (:func:`tasks.methods.file_param`) that names a file made
    absolute from the space file's folder and its SHA-256 written into its digest parameter.

    Raises SearchSpaceError naming the field when the file is missing or cannot be read.
    """
    params = dict(params)
    for name, info in params_class.model_fields.items():
        marker = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "digest_field" not in marker:
            continue
        value, prefix = params.get(name, info.default), marker["file_prefix"]
        if not isinstance(value, str) or not value.startswith(prefix):
            continue
        path = (Path(source).parent / Path(value[len(prefix):]).expanduser()).resolve()
        try:
            digest = file_sha256(str(path))
        except FileNotFoundError:
            raise SearchSpaceError(source, _field_path(loc + (name,)), f"file not found: {path}") from None
        except OSError as error:
            raise SearchSpaceError(source, _field_path(loc + (name,)), f"{path}: cannot be read: {error}") from None
        params[name], params[marker["digest_field"]] = prefix + str(path), digest
    return params


def parse_defenses(entries: list[Any], source: str) -> list[tuple[DefenseSpec, ...]]:
    """Expand the ``defenses`` list into pipelines (tuples of :class:`DefenseSpec`).

    An entry is ``none``, one defense (``ac`` or ``{ac: {...}}``), or a list of defenses applied in
    order; lists inside a defense's parameters are axes. An input filter may only stand last.
    """
    pipelines = []
    for index, entry in enumerate(entries):
        if entry == NO_DEFENSE:
            pipelines.append(())
            continue
        steps = entry if isinstance(entry, list) else [entry]
        if not steps:
            raise SearchSpaceError(source, f"defenses[{index}]", "an empty pipeline; write 'none' for no defense")
        prefix = ("defenses", index) if not isinstance(entry, list) else None
        per_step = [
            _parse_method(step, DefenseSpec, source, prefix or ("defenses", index, position))
            for position, step in enumerate(steps)
        ]
        for chain in itertools.product(*per_step):
            if problem := check_pipeline(list(chain)):
                raise SearchSpaceError(source, f"defenses[{index}]", problem)
            pipelines.append(tuple(chain))
    return pipelines


def pipeline_label(defenses: tuple[DefenseSpec, ...]) -> str:
    """The canonical label of a pipeline: each defense's label (non-default parameters shown), ``>`` between."""
    return ">".join(spec.label() for spec in defenses) or NO_DEFENSE


def load_search_space(path: str | Path) -> tuple[SearchSpace, list[TrialSpec]]:
    """Read, validate and expand a search-space file.

    Returns
    -------
    space : SearchSpace
    trials : list of TrialSpec
        The full cross product without duplicates, in a stable order.

    Raises
    ------
    SearchSpaceError
        With the file and the field, for anything malformed or unknown.
    """
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SearchSpaceError(source, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SearchSpaceError(source, None, f"cannot be read: {error}") from None
    except yaml.YAMLError as error:
        raise SearchSpaceError(source, None, f"not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SearchSpaceError(source, None, "a search space is a YAML mapping (name, dataset, model, ...)")
    trials: dict[str, TrialSpec] = {}
    spaces = []
    for index, block, merged in _blocks(raw, source):
        try:
            space = _validated_block(merged, source)
            expanded = expand_trials(space, parse_defenses(space.defenses, source), source)
        except SearchSpaceError as error:
            if block is None or error.field is None:
                raise
            raise SearchSpaceError(source, _where_written(error.field, block, index), error.message) from None
        spaces.append(space)
        for trial in expanded:
            trials.setdefault(trial.trial_id, trial)  # a trial two blocks produce runs once
    return spaces[0], list(trials.values())


BLOCK_KEYS = ("dataset", "model", "train", "attack", "seeds", "defenses")
# Mappings a block merges key by key into the shared defaults; other keys it replaces.
MERGED_KEYS = ("dataset", "train", "attack")


def _blocks(raw: dict, source: str) -> list[tuple[int | None, dict | None, dict]]:
    """``(index, block, search-space mapping)`` per block; ``(None, None, raw)`` for a space without ``blocks``.

    A space with ``blocks`` is the union of several grids: the top level holds the shared defaults
    (``name``, ``resources`` and any of :data:`BLOCK_KEYS`) and each block a mapping of those keys.
    A block's ``train`` and ``attack`` are merged key by key into the defaults, as is its ``dataset``
    when it names the same dataset (another dataset replaces it); ``model``, ``seeds`` and
    ``defenses`` replace them.
    """
    if "blocks" not in raw:
        return [(None, None, raw)]
    blocks = raw["blocks"]
    if not isinstance(blocks, list) or not blocks:
        raise SearchSpaceError(source, "blocks", "a non-empty list of mappings, each a grid (attack, model, defenses, ...)")
    shared = {key: value for key, value in raw.items() if key != "blocks"}
    expanded = []
    for index, block in enumerate(blocks):
        if not isinstance(block, dict):
            raise SearchSpaceError(source, f"blocks[{index}]", f"a block is a mapping of {', '.join(BLOCK_KEYS)}")
        if unknown := sorted(set(block) - set(BLOCK_KEYS)):
            raise SearchSpaceError(source, f"blocks[{index}].{unknown[0]}",
                                   f"unknown key (a block holds {', '.join(BLOCK_KEYS)})")
        merged = dict(shared)
        for key, value in block.items():
            default = shared.get(key)
            mergeable = key in MERGED_KEYS and isinstance(value, dict) and isinstance(default, dict)
            if key == "dataset" and mergeable:
                mergeable = value.get("name", default.get("name")) == default.get("name")
            merged[key] = {**default, **value} if mergeable else value
        expanded.append((index, block, merged))
    return expanded


def _validated_block(raw: dict, source: str) -> SearchSpace:
    """One grid's :class:`SearchSpace`, its paths resolved, its files and classes checked."""
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as error:
        _raise_first(error, source)
    _resolve_paths(space, Path(source).parent)
    _check_files(space, source)
    space.dataset = _listed_dataset(space.dataset, source)
    space.attack = _resolve_classes(space, source)
    return space


def _where_written(field: str, block: dict, index: int) -> str:
    """``field`` of a merged block's space as the user wrote it: ``blocks[2].attack.trigger`` when the
    block set it, the shared ``attack.trigger`` when the block inherited it."""
    key, _, rest = re.match(r"([^.\[]+)(?:[.\[](.*))?", field).group(1, 0, 2)
    given = block.get(key, _MISSING)
    inherited = given is _MISSING or (
        key in MERGED_KEYS and isinstance(given, dict) and rest and re.split(r"[.\[]", rest)[0] not in given
        and not (key == "dataset" and "name" in given))
    return field if inherited else f"blocks[{index}].{field}"


_MISSING = object()


def _resolve_paths(space: SearchSpace, base: Path) -> None:
    """Make ``train.weights`` and ``png:`` trigger paths absolute, relative ones from the space file's folder.

    Trials run elsewhere (Ray workers change directory), and an absolute path is also one recipe key
    whatever directory the sweep was launched from.
    """

    def absolute(path: str) -> str:
        return str((base / Path(path).expanduser()).resolve())

    space.train.weights = [None if w is None else absolute(w) for w in space.train.weights]
    space.attack.trigger = [
        PNG_PREFIX + absolute(t[len(PNG_PREFIX) :]) if isinstance(t, str) and t.startswith(PNG_PREFIX) else t
        for t in space.attack.trigger
    ]


def _check_files(space: SearchSpace, source: str) -> None:
    """Fail before any work when a model's weights settings or a user trigger's file are wrong."""
    for model in space.model:
        for train in expand_grid(space.train):
            problem = weights_problem(model, train["weights"], train["random_init"])
            if problem:
                raise SearchSpaceError(source, f"train.{problem[0]}", problem[1])
    for position, weights in enumerate(space.train.weights):
        if weights is not None and not Path(weights).is_file():
            raise SearchSpaceError(source, f"train.weights[{position}]", f"weights file not found: {weights}")
    for position, trigger in enumerate(space.attack.trigger):
        if not (isinstance(trigger, str) and trigger.startswith(PNG_PREFIX)):
            continue  # a registered attack: checked with its parameters in expand_trials
        try:
            get_trigger(trigger)
        except TriggerError as error:
            raise SearchSpaceError(source, f"attack.trigger[{position}]", f"{error.source}: {error.message}") from None


def _listed_dataset(dataset, source: str):
    """``dataset`` keyed by its root's content: the digest of the root's file names and sizes, listed now.

    Done once per grid, on the driver; a worker reads the digest from the config and lists nothing
    (:mod:`tasks.datasets.on_disk` says what the listing sees). Bundled datasets have no root and
    are returned as they are, so their keys do not change.
    """
    try:
        return with_root_listing(dataset)
    except DatasetError as error:
        raise SearchSpaceError(source, "dataset.root", f"{error.source}: {error.message}") from None


def file_digests(space: SearchSpace, source: str) -> dict[str, str]:
    """SHA-256 of every file the space's ``train.weights`` and ``png:`` triggers name, each read once.

    Keys are the values as the configs hold them (an absolute weights path, a ``png:<absolute
    path>`` trigger name), so a trial's digests are ``digests.get(train.weights)`` and
    ``digests.get(attack.trigger)`` (None for no weights file and for a registered trigger).
    Computed on the driver after :func:`_resolve_paths`; the configs carry them to the workers.

    Raises
    ------
    SearchSpaceError
        Naming the field and the file, when a file is missing or cannot be read.
    """
    digests: dict[str, str] = {}
    for position, weights in enumerate(space.train.weights):
        if weights is None or weights in digests:
            continue
        try:
            digests[weights] = file_sha256(weights)
        except FileNotFoundError:
            raise SearchSpaceError(source, f"train.weights[{position}]", f"weights file not found: {weights}") from None
        except OSError as error:
            raise SearchSpaceError(source, f"train.weights[{position}]", f"{weights}: cannot be read: {error}") from None
    for position, trigger in enumerate(space.attack.trigger):
        if not (isinstance(trigger, str) and trigger.startswith(PNG_PREFIX)) or trigger in digests:
            continue  # only a png: trigger names a file
        try:
            digest = trigger_file_digest(trigger)
        except TriggerError as error:
            raise SearchSpaceError(source, f"attack.trigger[{position}]", f"{error.source}: {error.message}") from None
        if digest is not None:
            digests[trigger] = digest
    return digests


def _resolve_classes(space: SearchSpace, source: str) -> AttackGrid:
    """The attack grid with every class given by name replaced by its index, so that a recipe has one key."""
    names = class_names(space.dataset)
    resolved = {}
    for field in ("source", "target"):
        resolved[field] = []
        for position, label in enumerate(getattr(space.attack, field)):
            if field == "source" and label == ALL:
                resolved[field].append(ALL)
                continue
            try:
                resolved[field].append(resolve_class(label, names))
            except ValueError as error:
                raise SearchSpaceError(source, f"attack.{field}[{position}]", str(error)) from None
    return space.attack.model_copy(update=resolved)


def attack_specs(space: SearchSpace, digests: dict[str, str], source: str) -> list[AttackSpec]:
    """Every attack configuration of ``attack.trigger``: each entry's parameter axes expanded, a
    ``png:`` trigger's file digest (``digests``, see :func:`file_digests`) among its parameters."""
    specs = []
    for position, entry in enumerate(space.attack.trigger):
        if isinstance(entry, str) and entry.startswith(PNG_PREFIX):
            entry = {"png": {**attack_spec(entry)["params"], "sha256": digests.get(entry)}}
        specs += _parse_method(entry, AttackSpec, source, ("attack", "trigger", position))
    return specs


def _attack_amounts(space: SearchSpace, specs: list[AttackSpec], source: str) -> list[tuple[AttackSpec, Any, float]]:
    """``(attack, source class, poison_pct)`` for every attack, source and poison percentage of the grid.

    ``poison_pct: default`` is each attack's own rate (:attr:`~tasks.methods.Attack.default_poison_pct`).
    Refused, naming the field: a clean-label attack with a named source, a default rate for an
    attack that has none or with a named source.
    """
    blocks_hint = "; to give each attack its own source or rate, write one grid per attack under blocks: (see README)"
    amounts = []
    for spec in specs:
        method = spec.method()
        for class_ in space.attack.source:
            if method.labels == "clean" and class_ != ALL:
                raise SearchSpaceError(source, "attack.source", (
                    f"{spec.label()} is a clean-label attack: its poisons are target-class images and poison_pct "
                    f"is a percent of the target class, so source must be 'all', not {class_!r}{blocks_hint}"))
            for pct in space.attack.poison_pct:
                if pct == "default":
                    if method.default_poison_pct is None:
                        raise SearchSpaceError(source, "attack.poison_pct",
                                               f"{spec.label()} has no default poison rate: give a number{blocks_hint}")
                    if class_ != ALL:
                        raise SearchSpaceError(source, "attack.poison_pct", (
                            f"the default rate of {spec.label()} ({method.default_poison_pct} %) is a share of the "
                            f"whole training set: it needs source: all, not {class_!r}{blocks_hint}"))
                    pct = method.default_poison_pct
                amounts.append((spec, class_, float(pct)))
    return amounts


def _check_poison_counts(space: SearchSpace, trials: list[TrialSpec], source: str) -> None:
    """Refuse, before any work, an attack that needs more training images than the classes hold.

    Only a poisoning from every class (``source: all``) or with cover samples can: the loader then
    reads the bundled dataset's labels (a dataset on disk is checked when its poison stage runs).
    """
    from tasks.datasets import OnDiskConfig, load_dataset

    def may_overflow(trial: TrialSpec) -> bool:
        return trial.attack.source == ALL or trial.attack.method().adds_covers

    checked = [trial for trial in trials if may_overflow(trial)]
    if not checked or isinstance(space.dataset, OnDiskConfig):
        return
    y_train = load_dataset(space.dataset).y_train
    for trial in checked:
        attack = trial.attack
        plan = plan_poisoning(attack.method(), attack.params(), attack.poison_pct,
                              None if attack.source == ALL else attack.source, attack.target, y_train)
        if problem := plan.problem():
            raise SearchSpaceError(source, "attack.poison_pct", f"{attack.label} at {attack.poison_pct} %: {problem}")


def expand_trials(space: SearchSpace, pipelines, source: str) -> list[TrialSpec]:
    """The cross product of a validated space's axes and pipelines, duplicates removed."""
    digests = file_digests(space, source)
    attack_axes = space.attack.model_dump(exclude={"trigger"})
    trials: dict[str, TrialSpec] = {}
    for model, train, target, (trigger, source_class, poison_pct), seed, defenses in itertools.product(
        space.model, expand_grid(space.train), attack_axes["target"],
        _attack_amounts(space, attack_specs(space, digests, source), source), space.seeds, pipelines,
    ):
        try:
            trial = TrialSpec(
                dataset=space.dataset,
                attack=AttackConfig(source=source_class, target=target, trigger=trigger, poison_pct=poison_pct, seed=seed),
                train=TrainConfig(model=model, **train, seed=seed, weights_sha256=digests.get(train["weights"])),
                defenses=defenses,
                pipeline=pipeline_label(defenses),
            )
        except ValidationError as error:  # each field was checked as an axis already; kept as a safety net
            _raise_first(error, source)
        if trial.attack.source == trial.attack.target:
            raise SearchSpaceError(source, "attack.target", f"source and target are the same class ({trial.attack.source})")
        trials.setdefault(trial.trial_id, trial)
    _check_poison_counts(space, list(trials.values()), source)
    return list(trials.values())
