"""Section "Provenance": what produced the numbers and how they were computed.

The code and library versions and dataset fingerprints found in the rows, the metric formulas, the
interval methods, and the command that writes this report again.
"""

from __future__ import annotations

import pandas as pd

from orchestrator.report.methods import INPUT_FILTER, defenses
from orchestrator.report.model import Code, Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import DER_FORMULA
from orchestrator.report.sections.sweep import versions_table

# (metric, definition); every rate is a fraction in [0, 1], shown in percent; DER is a score in [0, 1].
METRICS = (
    ("clean_acc", "Share of the clean test set classified correctly."),
    ("asr", "Attack success rate: share of the poisoned test set (every source-class test image with the trigger) "
            "classified as the target class."),
    ("ra", "Robust accuracy: share of the poisoned test set classified as its true (source) class."),
    ("der", f"{DER_FORMULA} (BackdoorBench); a score, not a share, so never shown in percent."),
    ("tpr", "removed_poisoned / n_poisoned: share of the poisoned training samples a filtering defense removed."),
    ("fpr", "removed_clean / (n_seen − n_poisoned): share of the clean training samples it removed."),
    ("precision", "removed_poisoned / removed_total: share of the removed samples that were poisoned."),
    ("f1", "2 · precision · tpr / (precision + tpr)."),
)
INTERVALS = (
    "Means over seeds (clean_acc, asr, ra, der, channels pruned, differences) carry a two-sided 95 % Student-t "
    "interval, mean ± t(0.975, n − 1) · s / √n with s the sample standard deviation; with n = 1 there is none. "
    "Shares shown as percent are cut at 0 and 100. Detection rates (tpr, fpr, ...) are computed per backdoored "
    "model (one attack setting and seed; its samples are not independent of each other) and averaged over "
    "models with the same t interval, n = models; the counts summed over the models stand beside them. "
    "A metric that is NaN (a rate whose denominator is 0) is left out of its n.")


def section(context: ReportContext) -> Section | None:
    """None when the sweep has no rows."""
    if not context.frame("SELECT count(*) AS n FROM results")["n"].iloc[0]:
        return None
    blocks: list = []
    versions = versions_table(context)
    if versions is not None:
        blocks.append(Paragraph("Code and library versions in the rows (section 'The sweep' counts the trials per "
                                "version): " + versions_sentence(versions.data) + "."))
    fingerprints = _fingerprints(context)
    if fingerprints is not None:
        blocks.append(fingerprints)
    definitions = pd.DataFrame([*METRICS, *declared_metrics(context)], columns=["Metric", "Definition"])
    blocks.append(Table("provenance_metrics", "Metrics", definitions, definitions.rename(columns=str.lower),
                        "Before: the backdoored model; after: the model the defense pipeline returned (for no "
                        "defense, after = before)."))
    blocks.append(Paragraph(INTERVALS))
    if context.facts.command:
        blocks.append(Code("The command that writes this report again", context.facts.command, "bash",
                           collapsed=False))
    return Section("provenance", "Provenance", blocks)


def declared_metrics(context: ReportContext) -> list[tuple[str, str]]:
    """``(metric, definition)`` of every metric a defense that ran in the sweep declares (its own, and an
    input filter's rejection shares), as the registry has them: a plugin's metrics are defined here too."""
    if "defense" not in context.columns("stages"):
        return []
    ran = set(context.frame("SELECT DISTINCT defense FROM stages")["defense"].dropna())
    found = []
    for name, info in defenses().items():
        if name not in ran:
            continue
        # A training-set filter's kind metrics are the rates above; an input filter's rejections are not.
        kind_metrics = info.kind_metrics if info.kind == INPUT_FILTER else ()
        found += [(metric, f"{meaning} ({name}, {info.kind.replace('_', ' ')}; {kind_name})")
                  for metric, kind_name, meaning in (*kind_metrics, *info.metrics)]
    return found


def versions_sentence(versions: pd.DataFrame) -> str:
    """``bdsweep code 3f2a9c1 (all 240 trials); tensorflow 2.21.0 (all); ...`` from rows of
    ``package``, ``version``, ``trials``; a package with several versions lists each with its count."""
    total = versions.groupby("package", sort=False)["trials"].sum()
    parts = []
    for package, rows in versions.groupby("package", sort=False):
        name = "bdsweep code" if package == "code" else package
        listed = ", ".join(f"{'–' if pd.isna(v) else v} ({n} trial{'' if n == 1 else 's'})"
                           for v, n in zip(rows["version"], rows["trials"]))
        parts.append(f"{name} {rows['version'].iloc[0]}" if len(rows) == 1 else f"{name}: {listed}")
    mixed = [p for p, rows in versions.groupby("package", sort=False) if len(rows) > 1]
    sentence = "; ".join(parts)
    if not mixed:
        sentence += f" (every one of the {int(total.max())} trials)"
    return sentence


def _fingerprints(context: ReportContext) -> Table | None:
    """Dataset fingerprints with how many trials read each."""
    if "dataset_fingerprint" not in context.columns("results"):
        return None
    data = context.frame("SELECT dataset, dataset_fingerprint AS fingerprint, count(*) AS trials FROM results "
                         "GROUP BY ALL ORDER BY dataset, trials DESC, fingerprint")
    data["trials"] = data["trials"].astype("int64")
    shown = pd.DataFrame({"Dataset": data["dataset"], "Fingerprint": data["fingerprint"].fillna("–"),
                          "Trials": data["trials"].astype(str)})
    return Table("provenance_datasets", "Dataset fingerprints", shown, data,
                 "SHA-256 (first 16 hex digits) of every split's images and labels and the class names, as "
                 "loaded: one per dataset configuration, unless the data changed under the sweep.")
