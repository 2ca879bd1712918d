"""Issue 19's acceptance 2 in numbers: per dataset, attack setting and defense, ASR and clean
accuracy before and after (served for an input filter), DER, what the defense detected, and its
compute seconds per model, each a mean [95 % Student-t interval] over seeds.

Run after both sweeps of this folder::

    python bench/defense_check/summarize.py --storage <root>

It prints one Markdown table per dataset, then the counts the acceptance asks for: on the
all-to-one BadNets models with ASR >= 0.9, in how many Neural Cleanse flagged the target and what
share of triggered inputs STRIP rejected at what input FRR.
"""

from __future__ import annotations

import argparse
import re

import pandas as pd

from orchestrator.report.render import markdown_table
from orchestrator.report.stats import aggregate, format_estimate
from orchestrator.results import connect

SWEEPS = ("defense_check_digits", "defense_check_synthetic_signs", "defense_check_digits_source_specific")
SETTING = ["dataset", "trigger", "source", "poison_pct"]


def per_trial(storage: str, sweep: str) -> pd.DataFrame:
    """One row per trial with the served outcome where a filter served, and the defense's seconds."""
    connection = connect(storage, sweep, warn=False)
    frame = connection.execute("SELECT * FROM results").df()
    connection.close()
    seconds = [c for c in frame.columns if re.fullmatch(r"d1_.*_seconds", c)]
    frame["defense_s"] = frame[seconds].fillna(0).sum(axis=1)
    served = frame["served_asr"].notna() if "served_asr" in frame else pd.Series(False, index=frame.index)
    # An input filter's screening of the test inputs is its cost too (the final evaluation's extra time).
    frame.loc[served, "defense_s"] += (frame["evaluate_after_seconds"] - frame["evaluate_before_seconds"]).clip(lower=0)
    for after, own in (("asr", "asr_after"), ("clean", "clean_acc_after"), ("der_", "der")):
        frame[f"{after}_out"] = frame[own]
    if served.any():
        frame.loc[served, "asr_out"] = frame.loc[served, "served_asr"]
        frame.loc[served, "clean_out"] = frame.loc[served, "served_clean_acc"]
        frame.loc[served, "der__out"] = frame.loc[served, "der_served"]
    for column in ("d1_target_flagged", "d1_input_tpr", "d1_tpr", "d1_auroc", "d1_input_frr", "d1_fpr",
                   "d1_target_rank", "d1_anomaly_index", "d1_input_auroc"):
        if column not in frame:
            frame[column] = float("nan")
    # Rows written before inspections recorded the target's rank: its rank by mask size.
    if "d1_mask_l1" in frame:
        missing = frame["d1_target_rank"].isna() & frame["d1_mask_l1"].notna()
        frame.loc[missing, "d1_target_rank"] = [1 + sum(v < l1[int(t)] for v in l1) for l1, t in
                                                zip(frame.loc[missing, "d1_mask_l1"], frame.loc[missing, "target"])]
    return frame


def table(frame: pd.DataFrame) -> pd.DataFrame:
    import duckdb

    connection = duckdb.connect()
    connection.register("trials", frame.astype({c: "float64" for c in frame.columns if frame[c].dtype == bool}))
    metrics = ["asr_before", "asr_out", "clean_acc_before", "clean_out", "der__out", "defense_s", "d1_target_flagged",
               "d1_target_rank", "d1_anomaly_index", "d1_input_tpr", "d1_input_frr", "d1_input_auroc", "d1_tpr", "d1_fpr",
               "d1_auroc"]
    stats = aggregate(connection, "trials", [*SETTING, "pipeline"], metrics)
    shown = stats[[*SETTING, "pipeline"]].copy()

    def cells(metric: str, scale: float = 100.0, digits: int = 1) -> list[str]:
        return [format_estimate(m, lo, hi, int(n), scale=scale, digits=digits) if n else "–" for m, lo, hi, n in
                zip(stats[f"{metric}_mean"], stats[f"{metric}_lo"], stats[f"{metric}_hi"], stats[f"{metric}_n"])]

    shown["ASR before"], shown["ASR after"] = cells("asr_before"), cells("asr_out")
    shown["clean before"], shown["clean after"] = cells("clean_acc_before"), cells("clean_out")
    shown["DER"] = cells("der__out", scale=1.0, digits=2)
    shown["detection"] = [
        "; ".join(part for part in (
            f"target flagged {f}, rank {r}, index {a}" if nf else "",
            f"input TPR {t}, FRR {q}, AUROC {ia}" if nt else "",
            f"TPR {tp}, FPR {fp}, AUROC {au}" if ntp else "",
        ) if part) or "–"
        for f, r, a, nf, t, q, ia, nt, tp, fp, au, ntp in zip(
            cells("d1_target_flagged"), cells("d1_target_rank", 1.0), cells("d1_anomaly_index", 1.0, 2),
            stats["d1_target_flagged_n"], cells("d1_input_tpr"), cells("d1_input_frr"), cells("d1_input_auroc"),
            stats["d1_input_tpr_n"],
            cells("d1_tpr"), cells("d1_fpr"), cells("d1_auroc"), stats["d1_tpr_n"])]
    shown["defense s"] = cells("defense_s", scale=1.0, digits=0)
    return shown


def acceptance(frame: pd.DataFrame) -> list[str]:
    """The counts of acceptance 2 on the all-to-one BadNets models with ASR >= 0.9."""
    lines = []
    badnets = frame[(frame["trigger"] == "white_pattern") & (frame["poison_pct"] > 0) & frame["source"].isna()
                    & (frame["asr_before"] >= 0.9)]
    for dataset, rows in badnets.groupby("dataset"):
        nc = rows[rows["pipeline"].str.startswith("neural_cleanse")]
        strip = rows[rows["pipeline"].str.startswith("strip")]
        lines.append(f"{dataset}: {len(nc)} BadNets models with ASR >= 0.9; Neural Cleanse flagged the target in "
                     f"{int(nc['d1_target_flagged'].sum())} (target ranks {nc['d1_target_rank'].tolist()}, "
                     f"anomaly indices {[round(v, 2) for v in nc['d1_anomaly_index']]}); STRIP rejected "
                     f"{[round(v, 3) for v in strip['d1_input_tpr']]} of triggered inputs at input FRR "
                     f"{[round(v, 3) for v in strip['d1_input_frr']]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    args = parser.parse_args()
    frames = []
    for sweep in SWEEPS:
        try:
            frames.append(per_trial(args.storage, sweep))
        except Exception as error:  # a sweep not run yet: say so, summarise the others
            print(f"{sweep}: no rows ({str(error).splitlines()[0]})")
    frame = pd.concat(frames, ignore_index=True)
    for dataset, rows in frame.groupby("dataset"):
        print(f"\n## {dataset}\n")
        print("\n".join(markdown_table(table(rows).drop(columns=["dataset"]).astype(str))))
    print()
    print("\n".join(acceptance(frame)))


if __name__ == "__main__":
    main()
