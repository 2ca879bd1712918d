"""Section "Beside BackdoorBench": our DER and ASR after, with intervals over seeds, next to
BackdoorBench's one-run GTSRB PreAct-ResNet18 cells for the attack/defense pairs both have, and how
alike the two orders of the defenses are (Spearman's rho per attack and over every pair, with a
bootstrap interval over our seeds).

BackdoorBench's cells (``reference/backdoorbench_gtsrb_preactresnet18.csv``, its README names the
source) are read at ratio 0.1 for the dirty-label attacks and at 0.005 for SIG, the nearest ratio
it has defended cells for; it has no defended label-consistent cell. Its DER is computed from its
own "no defense" cell at the same ratio, by the formula our rows use.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from orchestrator.report.model import Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import estimate_cells, file_stem
from orchestrator.report.stats import aggregate, spearman_interval
from orchestrator.studies.leaderboard.board import ALL_TO_ONE

# Our attack (a trigger at its defaults) -> BackdoorBench's; our defense -> BackdoorBench's.
ATTACKS = {"white_pattern": "badnet", "big_yellow_square": "badnet", "blend": "blended", "sig": "sig",
           "wanet": "wanet", "label_consistent": "lc"}
DEFENSES = {"ac": "ac", "ss": "spectral", "fp": "fp", "fine_tune": "ft", "neural_cleanse": "nc", "i_bau": "i-bau"}
RATIOS = {"sig": 0.005}  # the nearest ratio with defended cells; every other attack at 0.1
DEFAULT_RATIO = 0.1
N_BOOT = 2000
SETTING = ("Where the settings differ: BackdoorBench trains PreAct-ResNet18 for 50 epochs with SGD (learning "
           "rate 0.01 annealed along a cosine to 0.005) on GTSRB (43 classes, 39,209 photographs) and gives each"
           " defense 5 % clean data; our rows train the sweep's model (its epochs, optimizer and learning-rate "
           "schedule, no data augmentation) on the sweep's data (a GTSRB-like subset of drawn signs, or "
           "handwritten digits, which are not GTSRB at all) with 10 % clean tuning data, and use our triggers: "
           "BadNets is our white_pattern or big_yellow_square patch (theirs: a white 3 × 3 square), blend our "
           "drawn image, SIG at 10 % of the target class beside their 0.5 % of the training set (SIG's delta 20 "
           "for training and 40 at test time, the paper's; they use 40 for both). Their target is class 0, ours "
           "the sweep's; both measure ASR on every non-target test image. One run per cell on their side, so "
           "their numbers have no interval.")


def backdoorbench() -> pd.DataFrame:
    """BackdoorBench's cells with their DER against their own "no defense" at the same ratio: columns
    ``attack_name``, ``defense_name``, ``ratio``, ``test_acc``, ``test_asr``, ``der`` (failed cells NaN)."""
    path = resources.files("orchestrator.studies.leaderboard") / "reference" / "backdoorbench_gtsrb_preactresnet18.csv"
    with resources.as_file(path) as file:
        cells = pd.read_csv(file)
    cells = cells.replace(-100, np.nan)
    baseline = cells[cells["defense_name"] == "no defense"].set_index(["attack_name", "ratio"])
    defended = cells[cells["defense_name"] != "no defense"].copy()
    before = baseline.reindex(list(zip(defended["attack_name"], defended["ratio"])))
    asr_drop = np.maximum(0, before["test_asr"].to_numpy() - defended["test_asr"].to_numpy())
    acc_drop = np.maximum(0, before["test_acc"].to_numpy() - defended["test_acc"].to_numpy())
    defended["der"] = (asr_drop - acc_drop + 1) / 2
    defended["asr_before"], defended["acc_before"] = before["test_asr"].to_numpy(), before["test_acc"].to_numpy()
    return defended.reset_index(drop=True)


def reference_cells() -> pd.DataFrame:
    """:func:`backdoorbench` at the ratio each of our attacks is compared at, keyed by our names:
    ``trigger``, ``defense``, ``bb_attack``, ``bb_ratio``, ``bb_der``, ``bb_asr``, ``bb_acc``, and
    their undefended model's ``bb_asr_before`` and ``bb_acc_before``."""
    cells = backdoorbench()
    rows = []
    for trigger, attack in ATTACKS.items():
        ratio = RATIOS.get(attack, DEFAULT_RATIO)
        for defense, theirs in DEFENSES.items():
            found = cells[(cells["attack_name"] == attack) & (cells["defense_name"] == theirs)
                          & np.isclose(cells["ratio"], ratio)]
            if len(found) and np.isfinite(found.iloc[0]["der"]):  # missing or failed (-100) cells are left out
                cell = found.iloc[0]
                rows.append({"trigger": trigger, "defense": defense, "bb_attack": attack, "bb_ratio": ratio,
                             "bb_der": cell["der"], "bb_asr": cell["test_asr"], "bb_acc": cell["test_acc"],
                             "bb_asr_before": cell["asr_before"], "bb_acc_before": cell["acc_before"]})
    return pd.DataFrame(rows)


def our_trials(context: ReportContext) -> pd.DataFrame:
    """Our defended all-to-one trials of one defense at a time whose attack and defense BackdoorBench
    has: ``dataset``, ``trigger``, ``defense``, ``seed``, ``der``, ``asr_after``, ``asr_before``,
    ``clean_acc_before``."""
    if not {"poison_base", "d1_name", "n_defenses", "der"} <= context.columns("results"):
        return pd.DataFrame()
    triggers = ", ".join(f"'{t}'" for t in ATTACKS)
    defenses = ", ".join(f"'{d}'" for d in DEFENSES)
    return context.frame(
        f"SELECT dataset, trigger, d1_name AS defense, seed, der, asr_after, asr_before, clean_acc_before "
        f"FROM results WHERE {ALL_TO_ONE} "
        f"AND poison_pct > 0 AND n_defenses = 1 AND trigger IN ({triggers}) AND d1_name IN ({defenses}) "
        f"AND der IS NOT NULL")


def comparison(context: ReportContext) -> pd.DataFrame:
    """Per (dataset, trigger, defense) both have: our ``der_*`` and ``asr_after_*`` estimates beside
    BackdoorBench's cell (:func:`reference_cells`)."""
    trials = our_trials(context)
    if trials.empty:
        return trials
    context.connection.register("beside_trials", trials)
    try:
        ours = aggregate(context.connection, "beside_trials", ["dataset", "trigger", "defense"],
                         ["der", "asr_after", "asr_before", "clean_acc_before"])
    finally:
        context.connection.unregister("beside_trials")
    return ours.merge(reference_cells(), on=["trigger", "defense"], how="inner")


def der_ceiling(asr_before):
    """The highest DER a defense can reach on a model whose ASR before is ``asr_before`` (a fraction):
    removing the whole backdoor at no cost in accuracy, ``(asr_before + 1) / 2``."""
    return (np.asarray(asr_before, dtype=float) + 1) / 2


def differences(context: ReportContext, at_least: float = 0.2) -> pd.DataFrame:
    """The pairs of :func:`comparison` whose mean DER differs from BackdoorBench's by ``at_least`` or
    more, largest gap first, with what was measured on each side that bounds or explains it: ``gap``
    (ours minus theirs), each side's undefended ASR and clean accuracy, and each side's DER ceiling
    (:func:`der_ceiling`: a weak backdoor caps DER whatever the defense does)."""
    found = comparison(context)
    if found.empty:
        return found
    found = found.assign(gap=found["der_mean"] - found["bb_der"], ceiling=der_ceiling(found["asr_before_mean"]),
                         bb_ceiling=der_ceiling(found["bb_asr_before"]))
    wide = found[found["gap"].abs() >= at_least]
    return wide.reindex(wide["gap"].abs().sort_values(ascending=False, kind="stable").index).reset_index(drop=True)


def orders(context: ReportContext) -> pd.DataFrame:
    """Spearman's rho of our mean DER against BackdoorBench's DER over the defenses, per (dataset,
    trigger) and per dataset over every (trigger, defense) pair: ``dataset``, ``attack``, ``rho``,
    ``rho_lo``, ``rho_hi`` (bootstrap over our seeds), ``n`` (defenses or pairs)."""
    trials = our_trials(context)
    if trials.empty:
        return pd.DataFrame()
    reference = reference_cells()
    rows = []
    for dataset, part in trials.groupby("dataset", sort=True):
        for trigger, cell in part.groupby("trigger", sort=True):
            theirs = reference[reference["trigger"] == trigger].set_index("defense")["bb_der"]
            rho, low, high, n = spearman_interval(cell, theirs, "defense", "der", n_boot=N_BOOT)
            rows.append({"dataset": dataset, "attack": trigger, "rho": rho, "rho_lo": low, "rho_hi": high, "n": n})
        pairs = part.assign(pair=part["trigger"] + " / " + part["defense"])
        theirs = reference.assign(pair=reference["trigger"] + " / " + reference["defense"]).set_index("pair")["bb_der"]
        rho, low, high, n = spearman_interval(pairs, theirs, "pair", "der", n_boot=N_BOOT)
        rows.append({"dataset": dataset, "attack": "every pair", "rho": rho, "rho_lo": low, "rho_hi": high, "n": n})
    return pd.DataFrame(rows)


def section(context: ReportContext) -> Section | None:
    found = comparison(context)
    if found.empty:
        return None
    shown = pd.DataFrame({
        "Dataset": found["dataset"], "Attack": found["trigger"], "Defense": found["defense"],
        "DER (ours)": estimate_cells(found, "der", scale=1.0, digits=3),
        "ASR after (ours, %)": estimate_cells(found, "asr_after"),
        "DER (BackdoorBench)": [f"{v:.3f}" if np.isfinite(v) else "–" for v in found["bb_der"]],
        "ASR after (BackdoorBench, %)": [f"{100 * v:.1f}" if np.isfinite(v) else "–" for v in found["bb_asr"]],
    })
    # Which of their cells each row sits beside: a note under the table, not a column (a column of
    # it made the table wider than the page's text).
    cells = found.drop_duplicates("trigger").sort_values("trigger")
    their_cells = "; ".join(f"{trigger}: {attack} at ratio {ratio:g}"
                            for trigger, attack, ratio in zip(cells["trigger"], cells["bb_attack"], cells["bb_ratio"]))
    rhos = orders(context)
    rho_shown = pd.DataFrame({
        "Dataset": rhos["dataset"], "Attack": rhos["attack"],
        "Spearman's rho": [f"{r:+.2f} [{lo:+.2f}, {hi:+.2f}]" if np.isfinite(r)
                           else "– (fewer than 3 shared defenses, or a constant order)"
                           for r, lo, hi in zip(rhos["rho"], rhos["rho_lo"], rhos["rho_hi"])],
        "Defenses (pairs)": rhos["n"].astype(str),
    })
    lc = "label_consistent" in set(our_trials(context)["trigger"])
    blocks = [
        Paragraph("Our rows beside BackdoorBench's published GTSRB cells (PreAct-ResNet18, one run each) for the "
                  "attack and defense pairs both have, at their 10 % ratio for the dirty-label attacks and their "
                  "0.5 % for SIG (the nearest ratio with defended cells). Ours: mean [95 % CI] n = seeds; theirs: "
                  "one number. Their DER is computed from their own no-defense cell at the same ratio."
                  + (" BackdoorBench has no defended label-consistent cell: our label_consistent rows have no "
                     "counterpart." if lc else "")),
        Table("beside_backdoorbench", "Our DER and ASR after beside BackdoorBench's GTSRB cells", shown, found,
              "Ours: mean [95 % Student-t interval] n = seeds. Theirs: one run, PreAct-ResNet18, GTSRB. Their "
              f"cells: {their_cells}."),
        Paragraph("How alike the two orders of the defenses are: Spearman's rho of our mean DER against theirs, "
                  "per attack over the defenses both have, and over every (attack, defense) pair; the interval is "
                  f"the 2.5–97.5 % range over {N_BOOT:,} bootstrap resamples of our seeds (theirs are single runs). "
                  "rho = 1: the same order; 0: unrelated; −1: reversed."),
        Table(file_stem("beside_backdoorbench_orders"), "Spearman's rho of the defense orders, ours against BackdoorBench's",
              rho_shown, rhos, "Bootstrap interval over our seeds; n: defenses (or pairs) both have."),
        Paragraph(SETTING),
    ]
    return Section("backdoorbench", "Beside BackdoorBench: the same pairs, with intervals", blocks)
