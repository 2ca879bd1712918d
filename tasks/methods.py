"""The typed protocols every attack and defense implements, built-in or a user's plugin.

A *method* is an object with a ``name``, a ``Params`` class (a frozen pydantic
:class:`~tasks.config.StageConfig`: the grid axes a search space may vary), the ``metrics`` it adds
to a result row (:class:`Metric`: name, type, meaning) and the ``stages`` of its own it runs. Its
kind says where it stands in a trial and what it is handed:

========================  =====================================================================
kind                      what it does (what it is given)
========================  =====================================================================
:class:`Attack`           poisons training samples and triggers test inputs (images, labels)
:class:`TrainingSetFilter`  flags training samples; the model is retrained without them
                          (:class:`DefenseData`: the training samples it sees, the clean tuning set)
:class:`ModelInspection`  scores and flags each class of a model, the model unchanged; may repair
                          it afterwards (the model, :class:`CleanData`)
:class:`ModelRepair`      turns the model into another (the model, :class:`CleanData`)
:class:`InputFilter`      decides at inference which test inputs are served; stands last
                          (the model, :class:`CleanData` to calibrate on)
========================  =====================================================================

No defense is ever handed test data or triggered inputs: its inputs are the (possibly poisoned)
training samples and the clean tuning set, so no parameter can be chosen on the test set. An input
filter's ``accept`` sees test inputs one batch at a time, unlabelled, as a deployed filter would.

A method implements the abstract methods of its kind and may override the optional ones (each has
a default that does the plain thing). The trial's walk (:mod:`tasks.plan`) calls them; it never
looks for attributes by name. Registering a method is :mod:`tasks.registry`'s job.
"""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from tasks.config import StageConfig
from tasks.stage import Stage

if TYPE_CHECKING:
    import keras

    from tasks.plan import TrialGraph
    from tasks.train import TrainConfig


@dataclass(frozen=True)
class Metric:
    """A value a method adds to every row it runs in.

    ``type`` is one of ``int``, ``float``, ``bool``, ``str`` or ``list[float]``; rows store it as
    that Parquet type (NULL where a trial did not compute it). ``meaning`` is one line for readers
    of ``bdsweep list`` and the report.
    """

    name: str
    type: Any
    meaning: str

    @property
    def type_name(self) -> str:
        return self.type.__name__ if isinstance(self.type, type) else str(self.type).replace("typing.", "")


METRIC_TYPES = (int, float, bool, str, list[float], list[int])


class NoParams(StageConfig):
    """The parameters of a method that has none."""


class Method(ABC):
    """What every attack and defense declares. Subclass one of the kinds below, not this.

    Attributes
    ----------
    name : str
        The name a search space uses (``ac``, ``yellow_square``); unique within attacks and within defenses.
    Params : type of StageConfig
        The method's parameters, each a possible grid axis.
    metrics : tuple of Metric
        What the method adds to a row (beside the metrics its kind adds, :meth:`kind_metrics`).
    stages : tuple of Stage
        Stages of its own that it runs through the graph (the kind's generic stages are not listed).
    description : str
        One line for ``bdsweep list``; the class docstring's first line by default.
    """

    kind: ClassVar[str]
    name: str
    Params: type[StageConfig] = NoParams
    metrics: tuple[Metric, ...] = ()
    stages: tuple[Stage, ...] = ()
    description: str = ""

    # Filled in by the registry: the distribution the method comes from and its version.
    package: str = "bdsweep"
    version: str | None = None

    def summary(self) -> str:
        """One line saying what the method does."""
        doc = self.description or (type(self).__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    @classmethod
    def kind_metrics(cls) -> tuple[Metric, ...]:
        """Metrics every method of this kind adds (the walk computes them, not the method)."""
        return ()

    def label(self, params: StageConfig) -> str:
        """The readable, canonical name of one configuration: ``name(k=v,...)`` with every parameter
        that differs from its default, the method's own parameters first, then those its Params
        inherits (a filter's ``retrain``), each in declaration order; the name alone when none does."""
        fields = type(params).model_fields
        inherited = {name for base in type(params).__mro__[1:] for name in getattr(base, "model_fields", {})}
        shown = []
        for key in sorted(fields, key=lambda name: name in inherited):  # stable: declaration order within each
            info, value = fields[key], getattr(params, key)
            if (info.json_schema_extra or {}).get("filled_by_loader"):
                continue  # a file's digest: the path names the configuration
            if info.is_required() or value != info.default:
                shown.append(f"{key}={_label_value(value)}")
        return self.name + (f"({','.join(shown)})" if shown else "")


def file_param(default: str, *, description: str, prefix: str = "", digest: str) -> Any:
    """A parameter that may name a file (a PNG pattern): a pydantic ``Field`` the search-space loader treats so.

    A value that starts with ``prefix`` (all values, for an empty prefix) is a path: the loader makes
    it absolute from the space file's folder, checks that it can be read (exit 2 naming the field
    otherwise) and writes the file's SHA-256 into the parameter ``digest``, which the ``Params``
    declares as ``str | None = digest_param()``. The stage's key then follows the file's bytes, not
    only its path. Other values (``noise``) pass as they are.
    """
    from pydantic import Field

    return Field(default, description=description, json_schema_extra={"file_prefix": prefix, "digest_field": digest})


def digest_param() -> Any:
    """The ``<name>_sha256`` companion of a :func:`file_param`: filled by the loader, left out of labels."""
    from pydantic import Field

    return Field(None, description="SHA-256 of the file, filled in when the space is loaded",
                 json_schema_extra={"filled_by_loader": True})


def _label_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_label_value(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


# -- attacks ------------------------------------------------------------------------------------------


Mode = Literal["train", "test", "cover"]

VISIBILITY_METRICS = (
    Metric("linf_mean", float, "mean over the changed images of the largest pixel change (0-255)"),
    Metric("linf_max", float, "largest pixel change (0-255) over the changed images"),
    Metric("l2_mean", float, "mean over the changed images of the change's L2 norm (0-255 scale, all channels)"),
    Metric("l2_max", float, "largest L2 norm of a change (0-255 scale)"),
    Metric("psnr_mean", float, "mean PSNR (dB) of a changed image against its original; +inf if unchanged"),
    Metric("psnr_min", float, "lowest PSNR (dB) of a changed image: the most visible change"),
    Metric("ssim_mean", float, "mean SSIM of a changed image against its original (1: identical)"),
    Metric("ssim_min", float, "lowest SSIM of a changed image: the most visible change"),
)
"""How visible an attack's change is, measured by the poison stage over the images it changed:
``attack_<name>`` over the training images (poisons and covers), ``attack_test_<name>`` over the
triggered test inputs (:func:`tasks.attacks.visibility.visibility`)."""


class Attack(Method):
    """How a training sample is poisoned and how a test input is triggered.

    The generic ``poison`` stage (:func:`tasks.poison.poison_dataset`) chooses the samples and
    records, per sample, its index, the label it carries and whether it is poison or cover; the
    attack only changes pixels, in :meth:`stamp`.

    Attributes
    ----------
    labels : "dirty" or "clean"
        ``dirty``: poisons are drawn from the source class (or every class but the target, for
        ``source: all``) and relabelled as the target. ``clean``: poisons are drawn from the target
        class and keep their label (SIG, label-consistent).
    """

    kind = "attack"
    labels: Literal["dirty", "clean"] = "dirty"
    default_poison_pct: ClassVar[float | None] = None
    """The poison rate ``poison_pct: default`` stands for, in percent of the whole training set (so
    only with ``source: all``); None: the attack has none and a number must be given."""

    @classmethod
    def kind_metrics(cls) -> tuple[Metric, ...]:
        return VISIBILITY_METRICS

    @abstractmethod
    def stamp(self, params: StageConfig, x: np.ndarray, *, mode: Mode, rng: np.random.Generator,
              seed: int = 0, y: np.ndarray | None = None, parents: tuple = ()) -> tuple[np.ndarray, dict[str, int | float]]:
        """A triggered copy of uint8 images ``x`` (n, h, w, 3) and metrics of how it was done.

        ``mode`` is ``train`` for poisons, ``test`` for the inputs the attack success is measured
        on (an attack may use another strength there), ``cover`` for cover samples (see
        :meth:`n_cover`). ``rng`` is the attack's seeded generator, shared by the three calls;
        ``seed`` is the attack's seed itself, for what must be drawn alike in every mode (WaNet's
        warping field); ``y`` the images' labels in the clean dataset, int64 (n,) (a clean-label
        attack's adversarial step needs them); ``parents`` the loaded artifacts of :meth:`parents`. The metrics of a
        ``train`` stamp are the row's ``attack_<name>``, of a ``test`` stamp ``attack_test_<name>``:
        declare them in ``metrics``. How visible the change is (:data:`VISIBILITY_METRICS`) is
        measured by the poison stage, not here.
        """

    @property
    def adds_covers(self) -> bool:
        """Whether the attack overrides :meth:`n_cover` (it may add cover samples)."""
        return type(self).n_cover is not Attack.n_cover

    def n_cover(self, params: StageConfig, n_poisoned: int, n_train: int) -> int:
        """How many correctly labelled cover samples to add beside ``n_poisoned`` poisons, in a
        training set of ``n_train`` images (default 0). Covers replace non-poisoned images outside
        the target class."""
        return 0

    def parents(self, params: StageConfig, graph: "TrialGraph") -> tuple:
        """Extra parent stages the poisoning reads (a proxy model trained on clean data), as refs
        from ``graph.step``; their loaded artifacts reach :meth:`stamp` as ``parents``."""
        return ()


# -- the data a defense may see ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CleanData:
    """The clean tuning set the defender holds (never poisoned, never the test set).

    ``x_tune``: uint8 (n, h, w, c); ``y_tune``: int64 (n,); ``n_classes``: int.
    """

    x_tune: np.ndarray
    y_tune: np.ndarray
    n_classes: int


@dataclass(frozen=True, eq=False)
class DefenseData:
    """What a training-set filter sees: the training samples earlier stages kept, and the clean tuning set.

    Attributes
    ----------
    x, y, is_poison : the training samples this stage sees: uint8 images (n, h, w, c), int labels
        (n,) as the attacker labelled them, bool ground truth (n,) for metrics and controls only
    is_cover : bool (n,), ground truth too: the attacker's cover samples (stamped, correctly
        labelled; not poison). All False for an attack without covers.
    x_tune, y_tune : the clean tuning set the defender holds (never poisoned)
    n_classes : int
    """

    x: np.ndarray
    y: np.ndarray
    is_poison: np.ndarray
    x_tune: np.ndarray
    y_tune: np.ndarray
    n_classes: int
    is_cover: np.ndarray | None = None

    def __post_init__(self):
        if self.is_cover is None:
            object.__setattr__(self, "is_cover", np.zeros(len(self.y), dtype=bool))

    @property
    def from_attacker(self) -> np.ndarray:
        """bool (n,): what the attacker supplied, poisons and covers (ground truth, for controls)."""
        return np.asarray(self.is_poison, bool) | np.asarray(self.is_cover, bool)

    @property
    def clean(self) -> CleanData:
        return CleanData(self.x_tune, self.y_tune, self.n_classes)


@dataclass(frozen=True, eq=False)
class Context:
    """What a defense step is told besides its data.

    ``seed``: the seed its randomness takes (the trial's); ``train``: the trial's train config
    (epochs, optimiser: for defenses that train); ``model``: the current Keras model, for methods
    that read it (None otherwise); ``prepared``: the loaded artifacts of the method's own stages
    (:meth:`TrainingSetFilter.prepare`), in order.
    """

    seed: int
    train: "TrainConfig"
    model: "keras.Model | None" = None
    prepared: tuple = ()


class Defense(Method):
    """A defense of any kind. Subclass :class:`TrainingSetFilter`, :class:`ModelInspection`,
    :class:`ModelRepair` or :class:`InputFilter`.

    Attributes
    ----------
    role : "defense", "control" or "oracle"
        ``defense``: a method a defender could deploy. ``control``: a reference point that makes the
        defenses' numbers interpretable (removing as many samples at random), listed first in the
        report. ``oracle``: it reads the ground truth (``DefenseData.is_poison``), so no defender has
        it; the report shows it as a yardstick and never recommends it, nor a configuration that
        names it.
    """

    role: ClassVar[Literal["defense", "control", "oracle"]] = "defense"


# -- training-set filters ------------------------------------------------------------------------------


class FilterParams(StageConfig):
    """The parameters every training-set filter shares: what happens after the detection.

    ``retrain``: ``full`` trains a fresh model on the kept samples (as the thesis), ``finetune``
    continues training the current model on them, ``none`` only measures the detection.
    """

    retrain: Literal["full", "finetune", "none"] = "full"


@dataclass(frozen=True, eq=False)
class Detected:
    """What a filter's :meth:`~TrainingSetFilter.detect` returns.

    ``flagged``: bool (n,) over the samples it saw, True = removed; ``metrics``: the method's
    declared metrics; ``scores``: float (n,), a per-sample suspicion score, or None.
    """

    flagged: np.ndarray
    metrics: dict = field(default_factory=dict)
    scores: np.ndarray | None = None


FILTER_METRICS = (
    Metric("n_seen", int, "training samples the filter saw"),
    Metric("n_poisoned", int, "poisons among them"),
    Metric("removed_total", int, "samples it removed"),
    Metric("removed_poisoned", int, "poisons it removed"),
    Metric("removed_clean", int, "non-poison samples it removed (covers included)"),
    Metric("removed_cover", int, "the attacker's cover samples it removed (counted in removed_clean too)"),
    Metric("tpr", float, "removed_poisoned / n_poisoned"),
    Metric("fpr", float, "removed_clean / clean samples seen"),
    Metric("precision", float, "removed_poisoned / removed_total"),
    Metric("f1", float, "harmonic mean of precision and tpr"),
    Metric("n_kept", int, "samples handed on"),
    Metric("kept_digest", str, "digest of the kept indices (what a retraining is keyed by)"),
    Metric("retrained", bool, "whether a model was trained on the kept samples"),
    Metric("retrain_key", str, "key of the retrained model handed on; NULL when none was"),
)


class TrainingSetFilter(Defense):
    """Flags training samples; the model is then retrained on the rest (``retrain``).

    Implement :meth:`detect`. ``Params`` must subclass :class:`FilterParams`.

    Attributes
    ----------
    reads_model : bool
        Whether :meth:`detect` needs the current model (``context.model``).
    """

    kind = "training_set_filter"
    Params: type[FilterParams] = FilterParams
    reads_model: bool = False

    @classmethod
    def kind_metrics(cls) -> tuple[Metric, ...]:
        return FILTER_METRICS

    @abstractmethod
    def detect(self, params: FilterParams, data: DefenseData, context: Context) -> Detected:
        """Which of ``data.x`` to remove. Called inside the generic ``detection`` stage."""

    def prepare(self, params: FilterParams, graph: "TrialGraph", label: str) -> tuple:
        """Shared stages computed before the detection (a layer's activations), as refs from
        ``graph``; their artifacts reach :meth:`detect` as ``context.prepared``. Default: none."""
        return ()

    def detection(self, params: FilterParams, graph: "TrialGraph", label: str):
        """The detection's ``(ref, record)``; override to put stages around it (Activation
        Clustering's reclassification). Default: :meth:`prepare`, then the ``detection`` stage."""
        return graph.detection(self, params, label)


# -- model inspection ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Inspected:
    """What :meth:`ModelInspection.inspect` returns.

    ``scores``: float (n_classes,), per class, higher = more suspicious; ``flagged``: bool
    (n_classes,); ``metrics``: the method's declared metrics; ``arrays``: anything the repair
    needs later (a reversed trigger), saved with the inspection.
    """

    scores: np.ndarray
    flagged: np.ndarray
    metrics: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


INSPECTION_METRICS = (
    Metric("flagged_classes", str, "classes flagged as backdoored, comma-separated"),
    Metric("n_flagged_classes", int, "how many classes were flagged"),
    Metric("target_flagged", bool, "whether the attack's target class was flagged"),
    Metric("target_score", float, "the target class's suspicion score"),
    Metric("target_rank", int, "the target class's rank by suspicion score (1 = most suspicious; ties share the best)"),
    Metric("repaired", bool, "whether the model was repaired after the inspection"),
)


class ModelInspection(Defense):
    """Scores and flags each class of the model; the model is handed on unchanged unless
    :meth:`repairs` says to repair it with :meth:`repair`.

    Implement :meth:`inspect`; a method that repairs implements :meth:`repair` and :meth:`repairs`.
    """

    kind = "model_inspection"

    @classmethod
    def kind_metrics(cls) -> tuple[Metric, ...]:
        return INSPECTION_METRICS

    @abstractmethod
    def inspect(self, params: StageConfig, model: "keras.Model", data: CleanData, context: Context) -> Inspected:
        """Per-class scores and flags of ``model``; ``context.prepared`` holds what :meth:`prepare` ran."""

    def prepare(self, params: StageConfig, graph: "TrialGraph", label: str) -> tuple:
        """Refs of stages of the method's own that :meth:`inspect` reads (``context.prepared``, in
        order), run on ``graph``'s current model and data: work keyed by fewer parameters than the
        inspection, so configurations that differ only in how they flag or repair share it
        (Neural Cleanse's reversed triggers). Default: none."""
        return ()

    def repairs(self, params: StageConfig) -> bool:
        """Whether this configuration repairs the model after the inspection (default: no)."""
        return False

    def repair(self, params: StageConfig, inspected: Inspected, model: "keras.Model", data: CleanData,
               context: Context) -> tuple["keras.Model", dict]:
        """A repaired copy of ``model`` (never ``model`` itself: it is a cached artifact) and metrics."""
        raise TypeError(f"{self.name} does not repair models; its repairs() must return False")


# -- model repair ---------------------------------------------------------------------------------------


class ModelRepair(Defense):
    """Turns the model into another on clean data: fine-tuning, pruning, unlearning.

    Implement :meth:`repair` (run by the generic ``repair`` stage), or override :meth:`repaired`
    to run stages of one's own (Fine-Pruning's curve, selection and fine-tuning).
    """

    kind = "model_repair"

    def repair(self, params: StageConfig, model: "keras.Model", data: CleanData,
               context: Context) -> tuple["keras.Model", dict]:
        """A repaired copy of ``model`` (never ``model`` itself: it is a cached artifact) and metrics."""
        raise TypeError(f"{self.name} overrides neither repair() nor repaired()")

    def repaired(self, params: StageConfig, graph: "TrialGraph", label: str):
        """The repaired model's ref and the row metrics. Default: the generic ``repair`` stage."""
        return graph.repair(self, params, label)


# -- input filters ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Calibration:
    """What :meth:`InputFilter.calibrate` learns on clean data: ``arrays`` (saved with it) and ``metrics``."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


INPUT_FILTER_METRICS = (
    Metric("input_frr", float, "share of clean test inputs rejected (false rejections)"),
    Metric("input_tpr", float, "share of triggered test inputs rejected (detections)"),
    Metric("input_auroc", float, "AUROC of the filter's suspicion, triggered against clean test inputs "
                                 "(NaN for a filter without a score)"),
)


class InputFilter(Defense):
    """Decides at inference which test inputs the model serves; stands last in a pipeline.

    The model is unchanged: ``clean_acc_after``, ``asr_after`` and ``der`` keep their meaning (the
    model's own). With the filter, ``served_clean_acc`` is the share of clean test inputs served and
    classified correctly, ``served_asr`` the share of triggered inputs served and classified as the
    target (``served_ra``, ``der_served`` likewise); a rejected input is never counted as a class.
    Implement :meth:`calibrate` (on clean data, e.g. a threshold for a false-rejection rate) and
    :meth:`accept`; a filter with a score overrides :meth:`screen` too, so its AUROC is measured.
    """

    kind = "input_filter"

    @classmethod
    def kind_metrics(cls) -> tuple[Metric, ...]:
        return INPUT_FILTER_METRICS

    @abstractmethod
    def calibrate(self, params: StageConfig, model: "keras.Model", data: CleanData, context: Context) -> Calibration:
        """What :meth:`accept` needs, learnt on the clean tuning set only."""

    @abstractmethod
    def accept(self, params: StageConfig, calibration: Calibration, model: "keras.Model", x: np.ndarray,
               context: Context) -> np.ndarray:
        """bool (n,): which of the unlabelled uint8 inputs ``x`` (n, h, w, c) are served."""

    def screen(self, params: StageConfig, calibration: Calibration, model: "keras.Model", x: np.ndarray,
               context: Context) -> tuple[np.ndarray, np.ndarray | None]:
        """``(accepted, suspicion)`` for the uint8 inputs ``x`` (n, h, w, c): bool (n,) as :meth:`accept`,
        and float (n,), higher for inputs more likely triggered, or None for a filter without a score.

        The evaluation calls this, once per batch. Default: :meth:`accept` and no score.
        """
        return self.accept(params, calibration, model, x, context), None


KINDS: dict[str, type[Method]] = {
    kind.kind: kind for kind in (Attack, TrainingSetFilter, ModelInspection, ModelRepair, InputFilter)
}
