"""The base of every stage config: frozen, validated, and canonical when dumped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_serializer


class StageConfig(BaseModel):
    """A frozen pydantic model that rejects unknown fields.

    ``model_dump(mode="json")`` of a config lists every field, defaults included, so its canonical
    JSON (sorted keys) states the whole recipe of a stage and is what the artifact store hashes. The
    one exception is an option added later that a config leaves unused: its serializer may omit it,
    so that configs written before the option existed keep their keys (``synthetic_signs.classes``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class MethodOrigin(StageConfig):
    """A config that names a registered method and, for a plugin's, where it comes from.

    ``origin`` is ``distribution==version`` for a plugin's method (part of the key: a new version
    recomputes what it computes) and None for a built-in, left out of the canonical JSON then, so
    built-in keys are those of configs written before plugins existed.
    """

    origin: str | None = None

    @model_serializer(mode="wrap")
    def _omit_builtin_origin(self, handler):
        dumped = handler(self)
        if self.origin is None:
            dumped.pop("origin", None)
        return dumped
