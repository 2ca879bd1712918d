"""Errors that are the user's to fix: each names the file (or path) and the field, never a traceback.

The base lives here, in the lowest layer, so that stages can raise it and the orchestrator's CLI
can turn every kind into one line and exit status 2.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in something the user gave bdsweep; printed as one line, exit status 2."""

    def __init__(self, source: str, field: str | None, message: str):
        self.source, self.field, self.message = str(source), field, message
        where = f"{self.source}: {field}" if field else self.source
        super().__init__(f"{where}: {message}")


class DatasetError(UserError):
    """A dataset on disk is missing, incomplete or unreadable; ``source`` is the offending path."""


class ModelError(UserError):
    """A model cannot be built as configured (pretrained weights missing or not matching); ``field`` is the config key."""


class TriggerError(UserError):
    """A trigger image the user named is missing or unreadable; ``source`` is its path."""
