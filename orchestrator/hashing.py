"""Content hashes: the identity of stages, artifacts and trials."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_hash(value: Any, length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def record_hash(record: Any, length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of a stored record (a manifest) as canonical JSON
    that may hold non-finite metrics (an unchanged image's PSNR is +inf, a rate over nothing NaN),
    written as JSON's ``Infinity``/``NaN`` extensions. Keys never take this: :func:`content_hash`
    refuses non-finite values, so a configuration cannot name one."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
