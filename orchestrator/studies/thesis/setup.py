"""The thesis's setup, written once: how it ran its defenses and which datasets stand for which.

Read by the study's sections (Answers, Beside the thesis) and by ``bdsweep findings``; nothing here is
known to the generic report.
"""

from __future__ import annotations

from orchestrator.results import quote_identifier

FACE_DATASETS = ("youtube_faces", "lfw", "synthetic_faces")
SIGN_DATASETS = ("gtsrb", "synthetic_signs")
# (our dataset, the thesis's dataset it stands beside, an analogue rather than the same data)
DATASET_MATCHES = (
    ("gtsrb", "gtsrb", False), ("youtube_faces", "youtube_faces", False), ("lfw", "lfw", False),
    ("synthetic_signs", "gtsrb", True), ("synthetic_faces", "youtube_faces", True), ("synthetic_faces", "lfw", True),
)
# Activation Clustering as the thesis ran it (§4.2.1): without exclusionary reclassification, retrained
# from scratch; its tables hold both cluster analyses, its combinations and its answers the size-based one.
AC_SETUP = {"ex_re_threshold": None, "retrain": "full"}
AC = {"cluster_analysis": "smaller", **AC_SETUP}
# Fine-Pruning's threshold in Tables 4.5-4.9 (§4.2.4, §4.3: "the suggested 4 %").
FP_THRESHOLD = 0.04


def ac_setup_sql(position: int, columns: set[str], setup: dict | None = None) -> str:
    """SQL conditions on ``results`` that AC at ``position`` ran with ``setup`` (:data:`AC_SETUP` by
    default); a parameter the rows lack (older rows) is left out of the conditions, a NULL one is IS NULL."""
    conditions = []
    for parameter, value in (AC_SETUP if setup is None else setup).items():
        column = f"d{position}_{parameter}"
        if column not in columns:
            continue
        literal = "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"
        conditions.append(f"{quote_identifier(column)} IS NOT DISTINCT FROM {literal}")
    return " AND ".join(conditions) or "TRUE"
