"""The orchestrator's kinds of user mistake; all are :class:`tasks.errors.UserError` (exit status 2)."""

from __future__ import annotations

from tasks.errors import DatasetError, UserError


class SearchSpaceError(UserError):
    """A search-space YAML file is malformed or names something bdsweep does not know."""


class StorageError(UserError):
    """The storage root or a sweep in it is missing or not what the command expects."""


class ClusterConfigError(UserError):
    """A Ray cluster-launcher file fails Ray's or bdsweep's checks."""


__all__ = ["ClusterConfigError", "DatasetError", "SearchSpaceError", "StorageError", "UserError"]
