"""Section "Leaderboard answers": four claims from the literature judged on a leaderboard sweep's rows.

Q1 (Qi et al., ICLR 2023): the latent-separation defenses (AC, SS, SPECTRE) remove less of the
adaptive attacks' backdoors than of BadNets' and blend's: their mean DER on a model attacked by
BadNets or blend minus on a model attacked adaptively (two groups of models; Welch's interval).
Q2 (BackdoorBench's order): I-BAU and Neural Cleanse have a higher DER than AC and SS on the same
backdoored model (paired). Q3: plain fine-tuning has a higher DER than Fine-Pruning on the same
model (paired). Q4: STRIP rejects more triggered inputs (input TPR at its FRR) of patch triggers
than of warping and blended ones (two groups of models; Welch's interval, percentage points).

Each claim reads single-defense trials on all-to-one models (``board.ALL_TO_ONE``) whose ASR
before defense is at least :data:`IMPLANTED_ASR`, a model's trials of one arm averaged, and is judged
by :func:`orchestrator.studies.claims.judge` (AGREES when the 95 % interval lies above 0), with
Holm's adjustment over the four. The benign arm's costs (0 % poison) stand beside them as a table,
not as a claim.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.report.model import Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import estimate_cells, quote
from orchestrator.report.stats import aggregate, holm
from orchestrator.studies.claims import FAMILY_ALPHA, NOT_IN_SWEEP, Evidence, after_holm, judge
from orchestrator.studies.leaderboard.board import ALL_TO_ONE, IMPLANTED_ASR

LATENT = ("ac", "ss", "spectre")
ADAPTIVE = ("adaptive_blend", "adaptive_patch")
PATCHES = ("white_pattern", "big_yellow_square", "yellow_square", "white_square", "yellow_pattern")
WARPED_OR_BLENDED = ("wanet", "blend", "adaptive_blend")
MODEL = ["dataset", "model", "trigger", "poison_pct", "seed"]  # one backdoored model (all-to-one: no source)

RULE = (
    "Verdict rule. Each claim is one statistic oriented so that the claim predicts a value above 0, on "
    f"backdoored all-to-one models whose ASR before defense is at least {IMPLANTED_ASR:.0%}, a model's trials of "
    "one arm averaged. A paired claim (Q2, Q3) takes one difference per backdoored model, with the Student-t "
    "interval of their mean; a two-group claim (Q1, Q4) compares two groups of models, with Welch's interval. "
    "AGREES when the whole 95 % interval lies above 0, DISAGREES below 0, INCONCLUSIVE when it holds 0 or rests "
    "on fewer than 2 values (2 models in a group); 'not in this sweep' without one. Beside each verdict, the "
    f"verdict after Holm's step-down adjustment over the claims with a test (family-wise {FAMILY_ALPHA:.0%}). "
    "DER differences are on DER's 0–1 scale; Q4's in percentage points of triggered inputs rejected.")


@dataclass(frozen=True)
class LeaderboardClaim:
    """One claim: ``id``, ``question`` (Q1–Q4), ``text``, ``statistic`` (what is differenced),
    ``unit`` (what one value is), ``scale`` (1 for DER, 100 for shares) and ``measure`` (the trials
    of :func:`trials` to :class:`~orchestrator.studies.claims.Evidence`)."""

    id: str
    question: str
    text: str
    statistic: str
    unit: str
    scale: float
    measure: Callable[[pd.DataFrame], Evidence]


def _base(trigger: pd.Series) -> pd.Series:
    """A trigger label's attack name (``blend(alpha=0.1)`` -> ``blend``)."""
    return trigger.astype(str).str.split("(", n=1).str[0]


def _per_model(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    return frame.groupby(MODEL, dropna=False)[value].mean().reset_index()


def _basis(models: pd.DataFrame) -> str:
    """``adaptive_blend 0.3 %: 3, blend 10 %: 3``: the models behind a group, by attack and rate."""
    counts = models.groupby(["trigger", "poison_pct"]).size()
    return ", ".join(f"{trigger} {pct:g} %: {n}" for (trigger, pct), n in counts.items())


def latent_against_adaptive(frame: pd.DataFrame) -> Evidence:
    latent = frame[frame["defense"].isin(LATENT)]
    models = _per_model(latent, "der")
    base = _base(models["trigger"])
    plain = models[base.isin((*PATCHES, "blend"))]
    adaptive = models[base.isin(ADAPTIVE)]
    return Evidence(plain["der"].to_numpy(float), adaptive["der"].to_numpy(float),
                    f"BadNets and blend: {_basis(plain) or 'none'}; adaptive: {_basis(adaptive) or 'none'}")


def paired_means(frame: pd.DataFrame, first: tuple[str, ...], second: tuple[str, ...]) -> Evidence:
    """Per backdoored model: mean DER over the ``first`` defenses minus over the ``second``; models
    with both."""
    sides = []
    for name, defenses in (("first", first), ("second", second)):
        sides.append(_per_model(frame[frame["defense"].isin(defenses)], "der").rename(columns={"der": name}))
    both = sides[0].merge(sides[1], on=MODEL, how="inner")
    return Evidence((both["first"] - both["second"]).to_numpy(float), None, _basis(both))


def strip_patch_against_warped(frame: pd.DataFrame) -> Evidence:
    strip = frame[(frame["defense"] == "strip") & frame["input_tpr"].notna()]
    models = _per_model(strip, "input_tpr")
    base = _base(models["trigger"])
    patches, warped = models[base.isin(PATCHES)], models[base.isin(WARPED_OR_BLENDED)]
    return Evidence(patches["input_tpr"].to_numpy(float), warped["input_tpr"].to_numpy(float),
                    f"patches: {_basis(patches) or 'none'}; warped or blended: {_basis(warped) or 'none'}")


CLAIMS = (
    LeaderboardClaim("q1_latent_adaptive", "Q1",
                     "The latent-separation defenses (AC, SS, SPECTRE) remove less of the adaptive attacks' backdoors "
                     "than of BadNets' and blend's (Qi et al.).",
                     "mean DER of AC, SS, SPECTRE on BadNets/blend models − on adaptive-attack models",
                     "a backdoored model, its AC, SS and SPECTRE trials averaged", 1.0, latent_against_adaptive),
    LeaderboardClaim("q2_strong_defenses", "Q2",
                     "I-BAU and Neural Cleanse have a higher DER than AC and SS (BackdoorBench's order).",
                     "mean DER of i_bau and neural_cleanse − mean DER of ac and ss, same model",
                     "a backdoored model with both arms", 1.0,
                     lambda frame: paired_means(frame, ("i_bau", "neural_cleanse"), ("ac", "ss"))),
    LeaderboardClaim("q3_fine_tuning", "Q3", "Plain fine-tuning has a higher DER than Fine-Pruning.",
                     "DER of fine_tune − DER of fp, same model", "a backdoored model with both", 1.0,
                     lambda frame: paired_means(frame, ("fine_tune",), ("fp",))),
    LeaderboardClaim("q4_strip_patches", "Q4",
                     "STRIP rejects more triggered inputs of patch triggers than of warping and blended ones.",
                     "STRIP's input TPR on patch-trigger models − on wanet/blend/adaptive_blend models (pp)",
                     "a backdoored model", 100.0, strip_patch_against_warped),
)


def trials(context: ReportContext) -> pd.DataFrame:
    """Single-defense all-to-one trials on implanted models: :data:`MODEL`, ``defense``, ``der``
    (served for an input filter) and ``input_tpr`` (NaN but for input filters)."""
    columns = context.columns("results")
    if not {"poison_base", "d1_name", "n_defenses", "der", "asr_before"} <= columns:
        return pd.DataFrame()
    tpr = "d1_input_tpr" if "d1_input_tpr" in columns else "NULL::DOUBLE"
    return context.frame(
        f"SELECT {', '.join(quote(c) for c in MODEL)}, d1_name AS defense, der, {tpr} AS input_tpr FROM results "
        f"WHERE {ALL_TO_ONE} AND poison_pct > 0 AND n_defenses = 1 AND asr_before >= {IMPLANTED_ASR}")


def answers_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: the judgement's ``mean``, ``lower``, ``upper``, ``n_first``, ``n_second``,
    ``verdict``, ``reason``, ``p_value``, ``holm_p``, ``holm_verdict``, ``basis``."""
    if frame.empty:
        frame = pd.DataFrame(columns=[*MODEL, "defense", "der", "input_tpr"])
    rows = []
    for claim in CLAIMS:
        evidence = claim.measure(frame)
        judged = judge(evidence, scale=claim.scale)
        rows.append({"id": claim.id, "question": claim.question, "claim": claim.text, "statistic": claim.statistic,
                     "unit": claim.unit, "scale": claim.scale, "mean": judged.mean, "lower": judged.lower,
                     "upper": judged.upper, "n_first": judged.n_first, "n_second": judged.n_second,
                     "verdict": judged.verdict, "reason": judged.reason, "p_value": judged.p_value,
                     "basis": evidence.basis})
    table = pd.DataFrame(rows)
    tested = table["p_value"].notna()
    table["holm_p"], rejected = np.nan, pd.Series(False, index=table.index)
    if tested.any():
        adjusted, reject = holm(table.loc[tested, "p_value"].to_numpy(float))
        table.loc[tested, "holm_p"] = adjusted
        rejected.loc[tested] = reject
    table["holm_verdict"] = [after_holm(v, r) for v, r in zip(table["verdict"], rejected)]
    return table


def _estimate(row) -> str:
    if row["verdict"] == NOT_IN_SWEEP:
        return "–"
    digits, unit = (3, "") if row["scale"] == 1.0 else (1, " pp")
    n = f"n = {row['n_first']}" if pd.isna(row["n_second"]) else f"n = {row['n_first']} + {int(row['n_second'])}"
    if math.isnan(row["lower"]):
        return f"{row['mean']:+.{digits}f}{unit} ({n})"
    return f"{row['mean']:+.{digits}f}{unit} [{row['lower']:+.{digits}f}, {row['upper']:+.{digits}f}] ({n})"


def answers_table(table: pd.DataFrame) -> Table:
    """:func:`answers_frame` as the report shows it (the README block drops the models column)."""
    shown = pd.DataFrame({
        "Question": table["question"], "Claim": table["claim"], "Ours": [_estimate(r) for _, r in table.iterrows()],
        "Verdict (95 % each)": table["verdict"].str.upper(), "After Holm": table["holm_verdict"].str.upper(),
        "Models": table["basis"],
    })
    return Table("leaderboard_answers", "Answers: four claims judged on the leaderboard's rows", shown, table,
                 "Statistic and unit of each claim: "
                 + " ".join(f"{c.question}: {c.statistic}; one value = {c.unit}." for c in CLAIMS))


def benign_costs(context: ReportContext) -> pd.DataFrame:
    """Per single defense on the all-to-one 0 % models: clean-accuracy cost (before − after), mean
    [t interval] n = models."""
    if not {"poison_base", "d1_name", "n_defenses"} <= context.columns("results"):
        return pd.DataFrame()
    per_model = ("(SELECT dataset, model, d1_name AS defense, seed, avg(clean_acc_before - clean_acc_after) AS cost "
                 "FROM results WHERE poison_base = 'all' AND poison_pct = 0 AND n_defenses = 1 "
                 "GROUP BY dataset, model, d1_name, seed)")
    return aggregate(context.connection, per_model, ["dataset", "model", "defense"], ["cost"])


def section(context: ReportContext) -> Section | None:
    frame = trials(context)
    if frame.empty or not set(frame["defense"]) & {*LATENT, "i_bau", "neural_cleanse", "fine_tune", "fp", "strip"}:
        return None
    table = answers_frame(frame)
    if (table["verdict"] == NOT_IN_SWEEP).all():
        return None
    blocks = [Paragraph(RULE), answers_table(table)]
    costs = benign_costs(context)
    if not costs.empty:
        blocks += [Paragraph("Beside the claims, not a claim: what each defense costs when nothing is poisoned "
                             "(all-to-one models at 0 %), clean accuracy before − after in percentage points."),
                   Table("leaderboard_benign_costs", "Benign arm: clean-accuracy cost of each defense at 0 % poison",
                         pd.DataFrame({"Dataset": costs["dataset"], "Model": costs["model"], "Defense": costs["defense"],
                                       "Cost (pp)": estimate_cells(costs, "cost", bounds=None)}), costs,
                         "Mean [95 % CI] n = models (seeds).")]
    return Section("leaderboard_answers", "Leaderboard answers: four claims from the literature", blocks)
