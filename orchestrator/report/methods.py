"""What the report reads of the method registry: each defense's kind, parameters and declared metrics.

Generic sections ask these functions, never a method's name, so a defense from a plugin shows up in
them like a built-in. A row written since kinds were recorded carries ``dN_kind`` (``kind`` in the
``stages`` view); older rows get the kind their defense's name has in this process's registry, and a
name the registry does not know (a plugin not installed where the report is written) has none.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.results import quote_identifier

# The kinds' names as tasks.methods declares them (TrainingSetFilter.kind, ...), spelt out so that a
# section can name a kind without importing the protocols; tests check they match.
TRAINING_SET_FILTER = "training_set_filter"
MODEL_INSPECTION = "model_inspection"
MODEL_REPAIR = "model_repair"
INPUT_FILTER = "input_filter"


@dataclass(frozen=True)
class DefenseInfo:
    """A registered defense as the report sees it.

    Attributes
    ----------
    name, kind, package : as registered (``package`` is ``bdsweep`` for a built-in)
    parameters : its parameters, its own first, then those its kind's Params inherits (``retrain``),
        each in declaration order (as canonical labels list them)
    own_parameters : the parameters it declares itself
    metrics : ``(name, type name, meaning)`` of the metrics it declares, beside its kind's
    kind_metrics : the same of the metrics every method of its kind adds (a filter's counts and rates)
    summary : one line saying what it does
    """

    name: str
    kind: str
    package: str
    parameters: tuple[str, ...]
    own_parameters: tuple[str, ...]
    metrics: tuple[tuple[str, str, str], ...]
    kind_metrics: tuple[tuple[str, str, str], ...]
    summary: str


def defenses() -> dict[str, DefenseInfo]:
    """Every registered defense by name, in registry order."""
    # The registry's Params classes are plain pydantic models: importing it does not load TensorFlow.
    from tasks.registry import registry

    found = {}
    for name, method in registry().defenses.items():
        fields = method.Params.model_fields
        inherited = {field for base in method.Params.__mro__[1:] for field in getattr(base, "model_fields", {})}
        own = tuple(field for field in fields if field not in inherited)
        found[name] = DefenseInfo(
            name=name, kind=method.kind, package=method.package,
            parameters=own + tuple(field for field in fields if field in inherited), own_parameters=own,
            metrics=tuple((metric.name, metric.type_name, metric.meaning) for metric in method.metrics),
            kind_metrics=tuple((metric.name, metric.type_name, metric.meaning) for metric in method.kind_metrics()),
            summary=method.summary())
    return found


def kind_sql(columns: set[str], name: str = "defense", kind: str = "kind") -> str:
    """A SQL expression giving a defense step's kind: its recorded ``kind`` column where the rows have
    one, else the kind the registry gives the name in column ``name`` (NULL for an unknown name).

    ``columns`` are the columns of the view the expression reads (``stages``: ``defense`` and ``kind``;
    ``results``: ``dN_name`` and ``dN_kind``).
    """
    cases = " ".join(f"WHEN {_literal(defense)} THEN {_literal(info.kind)}" for defense, info in defenses().items())
    registered = f"CASE {quote_identifier(name)} {cases} END" if cases else "NULL"
    return f"coalesce({quote_identifier(kind)}, {registered})" if kind in columns else registered


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
