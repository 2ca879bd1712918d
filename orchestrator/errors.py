"""Errors that are the user's to fix: each names the file and the field, and the CLI exits with 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in something the user gave bdsweep; printed as one line, exit status 2."""

    def __init__(self, source: str, field: str | None, message: str):
        self.source, self.field, self.message = str(source), field, message
        where = f"{self.source}: {field}" if field else self.source
        super().__init__(f"{where}: {message}")


class SearchSpaceError(UserError):
    """A search-space YAML file is malformed or names something bdsweep does not know."""


class StorageError(UserError):
    """The storage root or a sweep in it is missing or not what the command expects."""
