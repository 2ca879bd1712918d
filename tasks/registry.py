"""The registry of methods: bdsweep's built-ins and every installed plugin, checked once when loaded.

A plugin is a Python distribution that names its methods as entry points::

    [project.entry-points."bdsweep.attacks"]
    checker = "my_package.attacks:CheckerAttack"
    [project.entry-points."bdsweep.defenses"]
    norm_filter = "my_package.defenses:NormFilter"

The entry point's name is the method's name in a search space; its object is a method instance or a
class with no required arguments (:mod:`tasks.methods` says what each kind implements). Loading
checks, before any work, that every plugin imports, that no name is taken twice, that each object
is a method of the group's kinds, and that the result-row columns the methods declare fit together
(one type per column name; no metric named like a parameter). Any failure is a
:class:`RegistryError` naming the plugin and its package (exit status 2 in the CLI).

A plugin must be installed on every node that runs trials (``cluster.yaml``'s ``setup_commands``
install ``BDSWEEP_EXTRA_PACKAGES``; on one machine the driver's environment is the workers'). A
method's distribution and version are part of its stages' keys and of the rows; a worker whose
installed version differs from the driver's refuses the trial (:class:`PluginVersionError`).
"""

from __future__ import annotations

import functools
import json
import importlib.metadata
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import model_validator

from tasks.columns import arrow_type
from tasks.config import MethodOrigin, StageConfig
from tasks.errors import UserError
from tasks.methods import Attack, Defense, FilterParams, InputFilter, Method, TrainingSetFilter

ATTACK_GROUP = "bdsweep.attacks"
DEFENSE_GROUP = "bdsweep.defenses"


class RegistryError(UserError):
    """A plugin cannot be loaded or does not fit beside the others; ``source`` names plugin and package."""


class PluginVersionError(UserError):
    """The installed version of a plugin differs from the one the trial was planned with."""


@dataclass(frozen=True)
class Registry:
    """Every method by name: ``attacks`` and ``defenses`` (``{name: method}``)."""

    attacks: dict[str, Attack]
    defenses: dict[str, Defense]

    def methods(self) -> list[Method]:
        return [*self.attacks.values(), *self.defenses.values()]


def builtin_attacks() -> list[Attack]:
    from tasks.attacks import ATTACKS

    return list(ATTACKS)


def builtin_defenses() -> list[Defense]:
    from tasks.defenses.builtins import DEFENSES

    return list(DEFENSES)


def load_registry(entry_points: dict[str, list] | None = None) -> Registry:
    """Built-ins, then the plugins' entry points (``{group: [EntryPoint]}``; default: the installed ones).

    Raises RegistryError for a plugin that fails to import, a name already taken, an object that is
    not a method of the group's kinds, or declarations whose columns clash.
    """
    if entry_points is None:
        entry_points = {group: list(importlib.metadata.entry_points(group=group)) for group in (ATTACK_GROUP, DEFENSE_GROUP)}
    attacks = {method.name: method for method in builtin_attacks()}
    defenses = {method.name: method for method in builtin_defenses()}
    for group, table, kind in ((ATTACK_GROUP, attacks, Attack), (DEFENSE_GROUP, defenses, Defense)):
        for entry in entry_points.get(group, []):
            method = _plugin(entry, group, kind)
            if method.name in table:
                taken = table[method.name].package
                raise RegistryError(_where(entry), None, f"the name {method.name!r} in {group} is taken by {taken}")
            table[method.name] = method
    registry = Registry(attacks, defenses)
    check_declarations(registry)
    return registry


def _where(entry) -> str:
    dist = getattr(entry, "dist", None)
    package = f"{dist.name} {dist.version}" if dist is not None else "an unknown package"
    return f"plugin {entry.name!r} ({entry.value}) from {package}"


def _plugin(entry, group: str, kind: type[Method]) -> Method:
    try:
        loaded = entry.load()
    except Exception as error:  # a plugin's import may raise anything; the user needs its name
        raise RegistryError(_where(entry), None, f"failed to import: {type(error).__name__}: {error}") from None
    try:
        method = loaded() if isinstance(loaded, type) else loaded
    except Exception as error:
        raise RegistryError(_where(entry), None, f"cannot be made: {type(error).__name__}: {error}") from None
    if not isinstance(method, kind):
        raise RegistryError(_where(entry), None, f"{group} holds {kind.__name__} subclasses (tasks.methods); "
                            f"got {type(method).__name__}")
    if getattr(method, "name", entry.name) != entry.name:
        raise RegistryError(_where(entry), None, f"its name attribute {method.name!r} differs from the entry point's")
    dist = getattr(entry, "dist", None)
    method.name = entry.name
    method.package = dist.name if dist is not None else entry.value.split(":")[0].split(".")[0]
    method.version = dist.version if dist is not None else None
    return method


def check_declarations(registry: Registry) -> None:
    """Raise RegistryError where methods' declared columns do not fit together.

    Attacks' parameters are columns ``trigger_<parameter>`` and their metrics ``attack_<metric>``
    (and ``attack_test_<metric>``); a defense's parameters and metrics share the columns of its
    position (``d1_<name>``), so within a defense a metric may not be named like a parameter, and
    across all defenses (whose columns the ``stages`` view stacks) one name has one type.
    """
    def where(method: Method) -> str:
        return f"{method.kind} {method.name!r} from {method.package}"

    for group in (registry.attacks.values(), registry.defenses.values()):
        seen: dict[str, tuple[Any, str]] = {}
        for method in group:
            params = {name: arrow_type(info.annotation) for name, info in method.Params.model_fields.items()}
            metrics = {metric.name: arrow_type(metric.type) for metric in (*method.kind_metrics(), *method.metrics)}
            if clash := sorted(set(params) & set(metrics)):
                raise RegistryError(where(method), None, f"declares a metric named like a parameter: {clash[0]}")
            if isinstance(method, TrainingSetFilter) and not issubclass(method.Params, FilterParams):
                raise RegistryError(where(method), "Params", "a training-set filter's Params subclass tasks.methods.FilterParams")
            for name, column_type in {**params, **metrics}.items():
                other = seen.setdefault(name, (column_type, where(method)))
                if other[0] != column_type:
                    raise RegistryError(where(method), None, f"declares column {name!r} as {column_type}, "
                                        f"while {other[1]} declares it as {other[0]}")


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The registry of this process, loaded once (see :func:`load_registry`)."""
    return load_registry()


def origin_of(method: Method) -> str | None:
    """``distribution==version`` of a plugin's method (part of its stages' keys); None for a built-in."""
    return None if method.package == "bdsweep" else f"{method.package}=={method.version}"


def _checked(method: Method, origin: str | None) -> Method:
    if origin is not None and origin_of(method) != origin:
        raise PluginVersionError(method.package, method.name,
                                 f"this trial was planned with {origin}, but this node has {origin_of(method)}: "
                                 "install the same version on every node")
    return method


def attack(name: str, origin: str | None = None) -> Attack:
    """The attack ``name``; with ``origin``, checked to be that plugin version."""
    return _checked(registry().attacks[name], origin)


def defense(name: str, origin: str | None = None) -> Defense:
    """The defense ``name``; with ``origin``, checked to be that plugin version."""
    return _checked(registry().defenses[name], origin)


class MethodSpec(MethodOrigin):
    """One method of a trial: its registry name, its full, validated parameters, and its origin.

    ``params`` is normalised to every parameter (defaults included), so equal configurations hash
    equal however they were written; ``origin`` is ``distribution==version`` for a plugin (None for
    a built-in, and then left out of the canonical JSON so built-in keys are unchanged).
    """

    name: str
    params: dict[str, Any] = {}

    _group: ClassVar[str]  # the registry's table: "attacks" or "defenses"
    _noun: ClassVar[str]

    def _table(self) -> dict[str, Method]:
        return getattr(registry(), self._group)

    @model_validator(mode="after")
    def _valid_params(self) -> "MethodSpec":
        table = self._table()
        if self.name not in table:
            raise ValueError(f"unknown {self._noun} {self.name!r}; known: {', '.join(sorted(table))}")
        method = table[self.name]
        full = method.Params(**self.params).model_dump(mode="json")
        object.__setattr__(self, "params", full)
        if self.origin is None:
            object.__setattr__(self, "origin", origin_of(method))
        return self

    def __str__(self) -> str:
        return self.label()

    def __hash__(self) -> int:
        # Frozen, but params is a dict: hash the canonical form, so specs can be set members and keys.
        return hash((type(self).__name__, self.name, json.dumps(self.params, sort_keys=True), self.origin))

    def method(self) -> Method:
        """The registered method, checked to be the version the trial was planned with."""
        return _checked(self._table()[self.name], self.origin)

    def validated(self) -> StageConfig:
        """The parameters as the method's ``Params``."""
        return self.method().Params(**self.params)

    def label(self) -> str:
        """The canonical label of this configuration (see :meth:`tasks.methods.Method.label`)."""
        return self.method().label(self.validated())


class DefenseSpec(MethodSpec):
    """One defense of a pipeline."""

    _group = "defenses"
    _noun = "defense"


class AttackSpec(MethodSpec):
    """The attack of a trial (``trigger`` in a search space)."""

    _group = "attacks"
    _noun = "attack"


def check_pipeline(specs: list[DefenseSpec]) -> str | None:
    """What is wrong with the order of a pipeline's defenses, or None: an input filter stands last."""
    for spec in specs[:-1]:
        if isinstance(spec.method(), InputFilter):
            return f"{spec.name} is an input filter: it decides which test inputs are served, so it stands last"
    return None
