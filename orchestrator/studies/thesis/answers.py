"""Section "Answers": the thesis's four research questions, its answers, this sweep's, and a verdict.

The thesis (§1.3, answered in Chapter 5) asked: RQ1 how the trigger affects backdoor success, RQ2 how
the (model, dataset) pair affects defenses, RQ3 how much defense parameters matter, RQ4 what combined
defenses, and their order, do. Its answers are split here into claims that a sweep's rows can test.
Each claim is one statistic, a difference in percentage points oriented so that the thesis's answer
predicts a value above 0, computed the same way on the thesis's tables (one run per cell, so no
interval) and on the sweep's rows (with a 95 % interval). The verdict follows from that interval by
:data:`VERDICT_RULE`, which the section prints, so nothing in it is written by hand but the claims.

A claim reads either paired differences (two runs on the same backdoored model, or two models trained
alike but for the trigger; Student-t interval of their mean) or two groups of models (faces against
traffic signs; Welch's interval of the difference of the group means).

Several claims are judged at 95 % each, so some verdict can come out by chance although no effect
exists. The section says how many claims are judged, and beside each verdict gives the verdict after
Holm's step-down adjustment (:func:`~orchestrator.report.stats.holm`) at a family-wise 5 % over the
claims with a test, from the two-sided p-values of the same t statistics as the intervals.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from orchestrator.report.model import Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import (
    CORE,
    POOLED_INTERVAL,
    backdoored_models_sql,
    quote,
    setting_columns,
)
from orchestrator.report.stats import CONFIDENCE, holm
# AGREES, DISAGREES, INCONCLUSIVE, Judgement, decide: re-exported, the thesis's Answers speak in them.
from orchestrator.studies.claims import (  # noqa: F401
    AGREES,
    DISAGREES,
    FAMILY_ALPHA,
    INCONCLUSIVE,
    NOT_IN_SWEEP,
    Evidence,
    Judgement,
    after_holm,
    comparable,
    decide,
    judge,
    paired_differences,
)
from orchestrator.studies.thesis.reference import load_reference, thesis_settings
from orchestrator.studies.thesis.setup import AC, AC_SETUP, FACE_DATASETS, FP_THRESHOLD, SIGN_DATASETS

# A defense claim reads only models with a backdoor to remove; the thesis's models had 51-100 % ASR.
IMPLANTED_ASR = 0.5
# Activation Clustering as the thesis ran it (setup.AC), as Runs name its parameters; a column is left
# out where the sweep's rows do not have it.
THESIS_AC = {f"ac.{parameter}": value for parameter, value in AC.items()}
THESIS_FP_THRESHOLD = FP_THRESHOLD

VERDICT_RULE = (
    "Verdict rule. Each claim is one statistic: a difference in percentage points, oriented so that the "
    "thesis's answer predicts a value above 0. A paired claim takes one difference per pair (defined in the "
    "last table) and its 95 % interval is the Student-t interval of their mean, mean ± t(0.975, n − 1) · s / √n; "
    "a two-group claim compares the mean over face models with the mean over traffic-sign models, with Welch's "
    "95 % interval for unequal variances. The verdict is AGREES when the whole interval lies above 0, DISAGREES "
    "when it lies below 0, and INCONCLUSIVE when it contains 0 or when there are fewer than 2 pairs (fewer than "
    f"2 models in a group); 'not in this sweep' when the sweep has no rows to form one pair (one model in each "
    f"group). Defense claims read only backdoored models whose ASR before defense is at least "
    f"{IMPLANTED_ASR * 100:.0f} %, so that there is a backdoor to remove (the thesis's models had 51–100 %). "
    "A claim's p-value is the two-sided p of the same t statistic (Student's for pairs, Welch's for two groups): "
    "its interval leaves out 0 exactly when p < 0.05.")


class Runs(Protocol):
    """Where claims read their numbers: the sweep's rows or the thesis's tables, in one shape.

    ``keys`` are the columns that identify an attack setting; :meth:`backdoored` has a row per
    backdoored model (``keys``, ``seed``, ``asr_before``, poison % > 0) and :meth:`runs` a row per
    trial that ran exactly the defenses ``chain`` in that order (``keys``, ``seed``, ``asr_before``,
    ``asr_after`` and each defense's parameters as ``<defense>.<parameter>``). ASRs are fractions.
    """

    keys: list[str]

    def backdoored(self) -> pd.DataFrame: ...

    def runs(self, chain: tuple[str, ...]) -> pd.DataFrame: ...


class SweepRuns:
    """A sweep's rows (the ``results`` view) as :class:`Runs`."""

    def __init__(self, context: ReportContext):
        self.context = context
        self.keys = setting_columns(context)
        self.columns = context.columns("results")

    def backdoored(self) -> pd.DataFrame:
        return self.context.frame(f"SELECT * FROM {backdoored_models_sql(self.keys, ['asr_before'], 'poison_pct > 0')}")

    def runs(self, chain: tuple[str, ...]) -> pd.DataFrame:
        selected = [*self.keys, "seed", "asr_before", "asr_after"]
        names = [f"d{position}_name" for position in range(1, len(chain) + 1)]
        if not {"n_defenses", "asr_after", *names} <= self.columns:
            return pd.DataFrame(columns=selected)
        parts = [quote(column) for column in selected]
        for position, defense in enumerate(chain, start=1):
            parts += [f"{quote(f'd{position}_{parameter}')} AS {quote(f'{defense}.{parameter}')}"
                      for parameter in defense_parameters(defense) if f"d{position}_{parameter}" in self.columns]
        where = [f"n_defenses = {len(chain)}", "poison_pct > 0"] + [
            f"{quote(name)} = '{defense}'" for name, defense in zip(names, chain)]
        return self.context.frame(f"SELECT {', '.join(parts)} FROM results WHERE {' AND '.join(where)}")


class ThesisRuns:
    """The thesis's tables (``orchestrator/studies/thesis/reference/``) as :class:`Runs`: one run per model
    (seed 0), its percentages as fractions, and the parameters it printed or named in the text."""

    keys = list(CORE)

    def backdoored(self) -> pd.DataFrame:
        return _thesis_backdoored().copy()

    def runs(self, chain: tuple[str, ...]) -> pd.DataFrame:
        return _thesis_runs(tuple(chain)).copy()


@functools.cache
def _thesis_backdoored() -> pd.DataFrame:
    models = load_reference("models")
    sweep = load_reference("poison_sweep")  # Tables A.1, A.2: the same models at other poison %
    columns = ["dataset", "model", "trigger", "poison_pct_of_source", "backdoor_success"]
    frame = pd.concat([models[columns], sweep[columns]], ignore_index=True)
    frame = frame.rename(columns={"poison_pct_of_source": "poison_pct"}).astype({"poison_pct": float})
    return frame.assign(seed=0, asr_before=frame["backdoor_success"] / 100)[[*CORE, "seed", "asr_before"]]


@functools.cache
def _thesis_runs(chain: tuple[str, ...]) -> pd.DataFrame:
    before = thesis_settings().merge(load_reference("models")[["model_id", "backdoor_success"]], on="model_id")
    before = before.assign(seed=0, asr_before=before["backdoor_success"] / 100)[
        ["model_id", *CORE, "seed", "asr_before"]]
    if chain == ("ac",):
        table = load_reference("activation_clustering")
        parameters = {"ac.cluster_analysis": table["cluster_analysis"],
                      **{f"ac.{parameter}": value for parameter, value in AC_SETUP.items()}}
    elif chain == ("fp",):
        table = load_reference("fine_pruning")
        parameters = {"fp.layer": table["layer"], "fp.threshold": table["threshold_pct"] / 100}
    elif chain in (("ac", "fp"), ("fp", "ac")):
        table = load_reference("combinations")
        table = table[table["order"] == ("ac_then_fp" if chain[0] == "ac" else "fp_then_ac")]
        parameters = {**THESIS_AC, "fp.layer": table["fp_layer"], "fp.threshold": THESIS_FP_THRESHOLD}
    else:
        return pd.DataFrame(columns=[*CORE, "seed", "asr_before", "asr_after"])
    table = table.assign(asr_after=table["backdoor_success_after"] / 100, **parameters)
    return before.merge(table[["model_id", "asr_after", *parameters]], on="model_id").drop(columns="model_id")


def defense_parameters(defense: str) -> list[str]:
    """The parameters of ``defense`` as its registry entry declares them (rows carry each as ``dN_<name>``)."""
    # The registry's Params classes are plain pydantic models: importing it does not load TensorFlow.
    from tasks.registry import registry

    defenses = registry().defenses
    return list(defenses[defense].Params.model_fields) if defense in defenses else []


@dataclass(frozen=True)
class Claim:
    """One testable part of the thesis's answer to a research question.

    Attributes
    ----------
    id : file-safe name (``rq1_size``)
    question : ``RQ1`` … ``RQ4``
    short : a few words naming it in sentences
    text : the claim, the thesis's answer in our words
    tables : where the thesis shows it
    statistic : what is differenced, in which direction (the thesis predicts > 0)
    pair : what one of n is
    measure : reads the claim's evidence from a :class:`Runs`
    """

    id: str
    question: str
    short: str
    text: str
    tables: str
    statistic: str
    pair: str
    measure: Callable[[Runs], Evidence]


def _basis(units: pd.DataFrame, group: str | None = None) -> str:
    """``synthetic_signs / gtsrb_cnn: 12``: how many values each dataset and model gave (per group)."""
    if units.empty:
        return ""
    columns = ([group] if group else []) + ["dataset", "model"]
    counts = units.groupby(columns, dropna=False).size()
    return "; ".join(f"{' · '.join(str(part) for part in key[:-2])}{': ' if group else ''}{key[-2]} / {key[-1]}: "
                     f"{count}" for key, count in counts.items())


def _implanted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[pd.to_numeric(frame["asr_before"], errors="coerce") >= IMPLANTED_ASR]


def _thesis_ac(frame: pd.DataFrame) -> pd.Series:
    """Rows whose Activation Clustering ran as the thesis's (:data:`THESIS_AC`)."""
    keep = pd.Series(True, index=frame.index)
    for column, value in THESIS_AC.items():
        if column in frame:
            keep &= frame[column].isna() if value is None else frame[column] == value
    return keep


def _thesis_fp(frame: pd.DataFrame) -> pd.Series:
    """Rows whose Fine-Pruning ran at the thesis's threshold (:data:`THESIS_FP_THRESHOLD`)."""
    if "fp.threshold" not in frame:
        return pd.Series(False, index=frame.index)
    return comparable(frame["fp.threshold"]) == THESIS_FP_THRESHOLD


def trigger_contrast(pairs: list[tuple[str, str]]) -> Callable[[Runs], Evidence]:
    """Backdoored models' ASR before defense: the first trigger of each pair minus the second, for
    models trained alike but for the trigger (a pair's shapes averaged at each point)."""
    def measure(runs: Runs) -> Evidence:
        models = runs.backdoored()
        side = {trigger: name for pair in pairs for trigger, name in zip(pair, ("first", "second"))}
        shape = {trigger: index for index, pair in enumerate(pairs) for trigger in pair}
        models = models[models["trigger"].isin(list(side))]
        models = models.assign(_side=models["trigger"].map(side), _shape=models["trigger"].map(shape))
        unit = [key for key in runs.keys if key != "trigger"] + ["seed"]
        differences = paired_differences(models, unit, ["_shape"], "_side", "first", "second", "asr_before")
        return Evidence(differences["difference"].to_numpy(dtype=float), None, _basis(differences))

    return measure


def group_contrast(chain: tuple[str, ...], where: Callable[[pd.DataFrame], pd.Series]) -> Callable[[Runs], Evidence]:
    """ASR reduction (before − after) by the defenses ``chain`` on each backdoored model, face models
    against traffic-sign models; a model's runs (other parameters) averaged."""
    def measure(runs: Runs) -> Evidence:
        frame = _implanted(runs.runs(chain))
        frame = frame[where(frame)]
        frame = frame.assign(reduction=pd.to_numeric(frame["asr_before"], errors="coerce")
                             - pd.to_numeric(frame["asr_after"], errors="coerce")).dropna(subset=["reduction"])
        unit = [*runs.keys, "seed"]
        models = frame.groupby(unit, dropna=False)["reduction"].mean().reset_index()
        faces = models[models["dataset"].isin(FACE_DATASETS)]
        signs = models[models["dataset"].isin(SIGN_DATASETS)]
        grouped = pd.concat([faces.assign(_group="faces"), signs.assign(_group="signs")])
        return Evidence(faces["reduction"].to_numpy(dtype=float), signs["reduction"].to_numpy(dtype=float),
                        _basis(grouped, "_group"))

    return measure


def parameter_contrast(chain: tuple[str, ...], parameter: str, first: object, second: object,
                       datasets: tuple[str, ...] | None = None) -> Callable[[Runs], Evidence]:
    """ASR after the defenses ``chain`` with ``parameter`` (``fp.layer``) at ``first`` minus at
    ``second``, on the same backdoored model with every other parameter equal."""
    def measure(runs: Runs) -> Evidence:
        frame = _implanted(runs.runs(chain))
        if datasets is not None:
            frame = frame[frame["dataset"].isin(datasets)]
        match = [column for column in frame.columns if "." in column and column != parameter]
        differences = paired_differences(frame, [*runs.keys, "seed"], match, parameter, first, second, "asr_after")
        return Evidence(differences["difference"].to_numpy(dtype=float), None, _basis(differences))

    return measure


def chain_contrast(first: tuple[str, ...], second: tuple[str, ...],
                   where: Callable[[pd.DataFrame], pd.Series]) -> Callable[[Runs], Evidence]:
    """ASR after the defenses ``first`` minus after ``second`` on the same backdoored model, the
    defenses both hold set alike; only rows that ``where`` keeps."""
    def measure(runs: Runs) -> Evidence:
        frames = []
        for name, chain in (("first", first), ("second", second)):
            frame = _implanted(runs.runs(chain))
            frames.append(frame[where(frame)].assign(_chain=name))
        match = [column for column in frames[0].columns if "." in column and column in frames[1].columns]
        differences = paired_differences(pd.concat(frames, ignore_index=True), [*runs.keys, "seed"], match,
                                         "_chain", "first", "second", "asr_after")
        return Evidence(differences["difference"].to_numpy(dtype=float), None, _basis(differences))

    return measure


_TRIGGER_PAIR = ("two backdoored models trained alike (dataset, model, poison % above 0, configuration, seed) "
                 "but for the trigger")
_SAME_MODEL = ("one backdoored model (attack setting and seed), both settings run with every other parameter "
               "equal; a model's differences averaged")
_GROUPS = (f"one backdoored model, its runs averaged; faces: {', '.join(FACE_DATASETS)}; signs: "
           f"{', '.join(SIGN_DATASETS)}")

QUESTIONS: dict[str, tuple[str, str]] = {
    "RQ1": (
        "What impact does the choice of pattern have on the backdoor's success?",
        "The thesis (§4.1 and Chapter 5; Tables 4.1, A.1, A.2): size and colour of the trigger matter most. A "
        "bigger trigger needs fewer poisoned images: the 4×4 yellow square reached 97.4 % ASR with 4 % of the "
        "source class poisoned, the 2×2 yellow square 51.5 % with 2 % and 99.3 % with 6 %. A colour the images "
        "lack implants more: the white square and pattern needed 27 % for 95–99 %, and green sunglasses beat "
        "black ones (YouTube Faces, 10 %: 100 % against 90 %)."),
    "RQ2": (
        "How does the type of a model and dataset pair affect defense effectiveness?",
        "The thesis (§4.2 and Chapter 5; Tables 4.3, 4.5, 4.6): the pair matters. Activation Clustering lowered "
        "ASR on the face models (YouTube Faces with green glasses 100 → 30 %, LFW 70 → 50 %) but not on GTSRB, "
        "where ASR fell by at most 1.5 pp and rose for four of six models. Fine-Pruning was the only defense that "
        "worked on every pair, again better on the faces. Spectral Signatures and Data Provenance worked on no "
        "pair (the thesis's ART ≤ 1.7.0 flagged every sample in SS), so the thesis draws no conclusion about "
        "them, and neither do these claims."),
    "RQ3": (
        "To what extent do different parameter settings impact the defense mechanism?",
        "The thesis (§4.2.1, §4.2.4 and Chapter 5; Tables 4.5, 4.6, Figure 4.19): a lot. Activation Clustering's "
        "distance-based cluster analysis flagged all data as poisoned, the size-based one worked. Fine-Pruning's "
        "layer can decide its effect: on GTSRB pruning the last convolutional layer cut ASR more, on the face "
        "models the second-to-last did. A larger pruning threshold lowers both clean accuracy and ASR (on GTSRB; "
        "flat on the face models), so the suggested 4 % is not always best."),
    "RQ4": (
        "To what extent do combined defense mechanisms affect defense effectiveness?",
        "The thesis (§4.3 and Chapter 5; Tables 4.7–4.9): combining Activation Clustering (AC) and Fine-Pruning "
        "(FP) changed ASR, not clean accuracy, and the order matters: AC then FP did much better than FP then AC, "
        "and was at least as good as AC alone on 9 of 10 models."),
}

CLAIMS: list[Claim] = [
    Claim("rq1_size", "RQ1", "size",
          "At the same poison %, the 4×4 big_yellow_square implants a stronger backdoor than the 2×2 yellow_square.",
          "Tables 4.1, A.2", "ASR before defense: big_yellow_square − yellow_square", _TRIGGER_PAIR,
          trigger_contrast([("big_yellow_square", "yellow_square")])),
    Claim("rq1_colour_signs", "RQ1", "colour on signs",
          "At the same poison %, a yellow trigger implants a stronger backdoor than the same shape in white.",
          "Tables 4.1, A.2",
          "ASR before defense: yellow − white of one shape (yellow_square − white_square, yellow_pattern − "
          "white_pattern)", _TRIGGER_PAIR + "; both shapes' differences at one such point averaged",
          trigger_contrast([("yellow_square", "white_square"), ("yellow_pattern", "white_pattern")])),
    Claim("rq1_colour_faces", "RQ1", "colour on faces",
          "At the same poison %, green sunglasses implant a stronger backdoor than black ones.",
          "Tables 4.1, A.1", "ASR before defense: green_sunglasses − black_sunglasses", _TRIGGER_PAIR,
          trigger_contrast([("green_sunglasses", "black_sunglasses")])),
    Claim("rq2_ac", "RQ2", "AC on faces against signs",
          "Activation Clustering, as the thesis ran it, lowers ASR more on face models than on traffic-sign models.",
          "Tables 4.1, 4.3",
          "ASR reduction by AC (before − after; size-based, no exclusionary reclassification, retrained from "
          "scratch): mean over face models − mean over sign models", _GROUPS,
          group_contrast(("ac",), _thesis_ac)),
    Claim("rq2_fp", "RQ2", "FP on faces against signs",
          "Fine-Pruning at the 4 % threshold lowers ASR more on face models than on traffic-sign models.",
          "Tables 4.1, 4.5, 4.6",
          "ASR reduction by FP (before − after; threshold 0.04, either layer): mean over face models − mean over "
          "sign models", _GROUPS,
          group_contrast(("fp",), _thesis_fp)),
    Claim("rq3_ac_metric", "RQ3", "AC's cluster analysis",
          "Activation Clustering's size-based cluster analysis (smaller) leaves a lower ASR than the distance-based one.",
          "§4.2.1 (text; no table)", "ASR after AC: cluster_analysis distance − smaller", _SAME_MODEL,
          parameter_contrast(("ac",), "ac.cluster_analysis", "distance", "smaller")),
    Claim("rq3_fp_layer_signs", "RQ3", "FP's layer on signs",
          "On traffic signs, pruning the last convolutional layer lowers ASR more than pruning the second-to-last.",
          "Tables 4.5, 4.6", "ASR after FP on sign models: second_to_last_conv − last_conv", _SAME_MODEL,
          parameter_contrast(("fp",), "fp.layer", "second_to_last_conv", "last_conv", SIGN_DATASETS)),
    Claim("rq3_fp_layer_faces", "RQ3", "FP's layer on faces",
          "On faces, pruning the second-to-last convolutional layer lowers ASR more than pruning the last.",
          "Tables 4.5, 4.6", "ASR after FP on face models: last_conv − second_to_last_conv", _SAME_MODEL,
          parameter_contrast(("fp",), "fp.layer", "last_conv", "second_to_last_conv", FACE_DATASETS)),
    Claim("rq3_fp_threshold", "RQ3", "FP's threshold",
          "A larger Fine-Pruning threshold leaves a lower ASR: 6 % against 2 %.",
          "Figure 4.19 (no table)", "ASR after FP: threshold 0.02 − threshold 0.06", _SAME_MODEL,
          parameter_contrast(("fp",), "fp.threshold", 0.02, 0.06)),
    Claim("rq4_order", "RQ4", "order",
          "AC then FP leaves a lower ASR than FP then AC.",
          "Tables 4.7, 4.9",
          "ASR after: FP→AC − AC→FP (AC as the thesis ran it, FP set alike in both)", _SAME_MODEL,
          chain_contrast(("fp", "ac"), ("ac", "fp"), _thesis_ac)),
    Claim("rq4_chain_vs_ac", "RQ4", "AC→FP against AC alone",
          "AC then FP leaves a lower ASR than AC alone.",
          "Tables 4.3, 4.7", "ASR after: AC alone − AC→FP (AC as the thesis ran it, set alike in both)",
          _SAME_MODEL, chain_contrast(("ac",), ("ac", "fp"), _thesis_ac)),
]


def section(context: ReportContext) -> Section | None:
    """None when the rows have no ASR before defense, or none of the thesis's arms (no claim has a pair
    here: the sweep is not of this study); otherwise every claim, judged or 'not in this sweep'."""
    if not {"asr_before", "poison_pct", "seed"} <= context.columns("results"):
        return None
    table = answers_frame(SweepRuns(context), ThesisRuns())
    judged = int((table["verdict"] != NOT_IN_SWEEP).sum())
    if not judged:
        return None
    blocks: list = [
        Paragraph(
            "The thesis's four research questions, its answers split into claims this sweep's rows can test, and "
            f"whether the rows agree: {judged} of {len(table)} claims have rows here. 'Thesis' is the same statistic "
            "on the thesis's tables (one model per cell, so no interval; a claim from its text alone has none); "
            "'Ours' is the mean with its 95 % interval. Synthetic datasets are analogues: synthetic_signs of "
            "GTSRB, synthetic_faces of YouTube Faces and LFW. " + POOLED_INTERVAL),
        Paragraph(VERDICT_RULE),
        Paragraph(multiplicity_text(table)),
        answers_table(table),
    ]
    for question, (asked, answered) in QUESTIONS.items():
        rows = table[table["question"] == question]
        found = "; ".join(f"{row.short}: {row.verdict.upper()} ({_ours_cell(row)}, {_count(row)}; {row.reason}"
                          f"{_holm_clause(row)})"
                          if row.verdict != NOT_IN_SWEEP else f"{row.short}: not in this sweep"
                          for row in rows.itertuples())
        blocks.append(Paragraph(f"{question}. {asked} {answered} This sweep: {found}."))
    blocks.append(_method_table(table))
    return Section("answers", "Answers: the thesis's four questions", blocks)


def answers_frame(ours: Runs, thesis: Runs) -> pd.DataFrame:
    """Every claim judged on ``ours`` and computed on ``thesis``, one row per claim, in percentage points.

    Returns
    -------
    DataFrame: question, claim_id, short, claim, thesis_tables, statistic, pair, comparison
    (``paired`` or ``two groups``), thesis_value, thesis_n_first, thesis_n_second, mean, lower, upper,
    n_first, n_second (counts of pairs or of each group's models; NA where paired), verdict, reason, basis,
    p_value (two-sided, of the interval's t statistic; NaN without a test), holm_p (Holm-adjusted over
    the claims with a p-value; NaN without one) and holm_verdict (:func:`after_holm`)
    """
    rows = []
    for claim in CLAIMS:
        evidence = claim.measure(ours)
        ours_judged = judge(evidence)
        theirs = judge(claim.measure(thesis))
        rows.append({
            "question": claim.question, "claim_id": claim.id, "short": claim.short, "claim": claim.text,
            "thesis_tables": claim.tables, "statistic": claim.statistic, "pair": claim.pair,
            "comparison": "paired" if evidence.paired else "two groups",
            "thesis_value": theirs.mean, "thesis_n_first": theirs.n_first, "thesis_n_second": theirs.n_second,
            "mean": ours_judged.mean, "lower": ours_judged.lower, "upper": ours_judged.upper,
            "n_first": ours_judged.n_first, "n_second": ours_judged.n_second,
            "verdict": ours_judged.verdict, "reason": ours_judged.reason, "basis": evidence.basis,
            "p_value": ours_judged.p_value,
        })
    frame = pd.DataFrame(rows)
    adjusted, rejected = holm(frame["p_value"].to_numpy(dtype=float), FAMILY_ALPHA)
    frame["holm_p"] = adjusted
    frame["holm_verdict"] = [after_holm(verdict, bool(keep)) for verdict, keep in zip(frame["verdict"], rejected)]
    for column in ("thesis_n_first", "thesis_n_second", "n_first", "n_second"):
        frame[column] = frame[column].astype("Int64")
    return frame


def family_size(table: pd.DataFrame) -> int:
    """m, the claims Holm's procedure judges as one family: those with a p-value (at least 2 pairs, or
    2 models in each group)."""
    return int(table["p_value"].notna().sum())


def multiplicity_text(table: pd.DataFrame) -> str:
    """The paragraph that says how many claims are judged, each at 95 %, what Holm's procedure does with
    them, and which verdicts it changed."""
    m = family_size(table)
    with_rows = int((table["verdict"] != NOT_IN_SWEEP).sum())
    alpha = f"{FAMILY_ALPHA * 100:.0f} %"
    if m == 0:
        return (f"Multiplicity. {with_rows} of {len(table)} claims have rows here, none with a test (each needs at "
                "least 2 pairs, or 2 models in each group), so no verdict is adjusted.")
    changed = table[table["verdict"] != table["holm_verdict"]]
    if changed.empty:
        effect = "Holm's adjustment changes no verdict here."
    else:
        effect = "Holm's adjustment changes " + "; ".join(
            f"{row.short} ({row.question}) from {row.verdict.upper()} to {row.holm_verdict.upper()} "
            f"(p {_p_text(row.p_value)}, adjusted {_p_text(row.holm_p)} > 0.05)" for row in changed.itertuples()) + "."
    chance = 1 - CONFIDENCE**m
    return (
        f"Multiplicity. {with_rows} of {len(table)} claims have rows here and {m} of them have a test (at least 2 "
        f"pairs, or 2 models in each group); each verdict in the column 'Verdict (95 % each)' is taken at 95 % on "
        f"its own. Were none of the {m} effects real, each would still be called AGREES or DISAGREES with "
        f"probability {alpha}, and at least one of them with probability up to {100 * chance:.0f} % (1 − 0.95^{m}, "
        f"for independent claims). The column 'After Holm' judges the {m} claims as one family at a family-wise "
        f"{alpha}: Holm's step-down procedure (Holm 1979) sorts their p-values, p(1) ≤ … ≤ p({m}), and keeps the "
        f"verdict of the claim with p(i) only while p(j) ≤ 0.05 / ({m} − j + 1) for every j ≤ i; otherwise the claim "
        f"becomes INCONCLUSIVE. Column p shows each claim's p-value and, in brackets, its Holm-adjusted p-value, "
        f"which is compared with 0.05. {effect}")


def answers_table(table: pd.DataFrame) -> Table:
    """The Answers table of :func:`answers_frame`'s rows, as the report and ``bdsweep findings`` show it."""
    m = family_size(table)
    shown = pd.DataFrame({
        "Question": table["question"],
        "Claim (the thesis's answer)": table["claim"],
        "Thesis table": table["thesis_tables"],
        "Thesis (pp)": [_thesis_cell(row) for row in table.itertuples()],
        "Ours (pp)": [_ours_cell(row) for row in table.itertuples()],
        "n": [_count(row) for row in table.itertuples()],
        "p (Holm-adjusted)": [_p_cell(row) for row in table.itertuples()],
        "Verdict (95 % each)": [_verdict_cell(row.verdict) for row in table.itertuples()],
        f"After Holm (family-wise 5 %, m = {m})": [_verdict_cell(row.holm_verdict) for row in table.itertuples()],
    })
    data = table.drop(columns=["short", "statistic", "pair", "basis"])
    return Table("answers", "Answers: the thesis's claims against this sweep's rows", shown, data,
                 "Differences in percentage points, oriented so that the thesis predicts a value above 0; ours: mean "
                 "[95 % CI]. p: two-sided, of the interval's t statistic; brackets: Holm-adjusted over the m claims "
                 "with a test. The verdict follows from our interval by the rule above; after Holm it stands only "
                 "where the adjusted p is at most 0.05.")


def _verdict_cell(verdict: str) -> str:
    return verdict.upper() if verdict != NOT_IN_SWEEP else verdict


def _p_text(p: float) -> str:
    """``0.012``; four decimals near 0.05, where three could round across it; ``<0.001``; ``–`` for NaN."""
    if pd.isna(p):
        return "–"
    if p < 0.001:
        return "<0.001"
    return f"{p:.4f}" if abs(p - 0.05) < 0.005 else f"{p:.3f}"


def _p_cell(row) -> str:
    if pd.isna(row.p_value):
        return "– (no test)" if row.verdict != NOT_IN_SWEEP else "–"
    return f"{_p_text(row.p_value)} ({_p_text(row.holm_p)})"


def _holm_clause(row) -> str:
    if pd.isna(row.p_value):
        return ""
    return f"; p {_p_text(row.p_value)}, after Holm {row.holm_verdict.upper()}"


def _method_table(table: pd.DataFrame) -> Table:
    shown = pd.DataFrame({
        "Question": table["question"],
        "Claim": table["short"],
        "Statistic (pp; the thesis predicts > 0)": table["statistic"],
        "One pair (or one value of a group)": table["pair"],
        "Rows used in this sweep": table["basis"].map(lambda basis: basis or "none"),
    })
    data = table[["question", "claim_id", "statistic", "pair", "comparison", "basis"]]
    return Table("answers_method", "How each answer is computed", shown, data,
                 "Rows used: the datasets and models that gave the pairs (or each group's models), with counts.")


def _signed(value: float) -> str:
    text = f"{value:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def _ours_cell(row) -> str:
    if pd.isna(row.mean):
        return "–"
    if pd.isna(row.lower):
        return f"{_signed(row.mean)} (n = 1)" if row.comparison == "paired" else f"{_signed(row.mean)} (no interval)"
    # A difference of two percentages lies within ±100 pp: a t-interval on few pairs can reach past it.
    return f"{_signed(row.mean)} [{_signed(max(row.lower, -100.0))}, {_signed(min(row.upper, 100.0))}]"


def _thesis_cell(row) -> str:
    if pd.isna(row.thesis_value):
        return "– (no table)"
    if row.comparison == "paired":
        count = f"{row.thesis_n_first} pair{'s' if row.thesis_n_first != 1 else ''}"
    else:
        count = f"{row.thesis_n_first} face + {row.thesis_n_second} sign models"
    return f"{_signed(row.thesis_value)} ({count})"


def _count(row) -> str:
    if row.comparison == "paired":
        return f"{row.n_first} pair{'s' if row.n_first != 1 else ''}"
    return f"{row.n_first} face + {row.n_second} sign models"
