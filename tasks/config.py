"""The base of every stage config: frozen, validated, and canonical when dumped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StageConfig(BaseModel):
    """A frozen pydantic model that rejects unknown fields.

    ``model_dump(mode="json")`` of a config lists every field, defaults included, so its canonical
    JSON (sorted keys) states the whole recipe of a stage and is what the artifact store hashes. The
    one exception is an option added later that a config leaves unused: its serializer may omit it,
    so that configs written before the option existed keep their keys (``synthetic_signs.classes``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
