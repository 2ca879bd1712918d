"""Section "Guidelines": which defense configuration to use, per attack setting and accuracy budget.

For each attack setting and each budget in ``context.budgets`` (percentage points of clean accuracy
the defender will give up), the configuration with the lowest mean ASR after among those whose mean
clean-accuracy drop (before − after) stays within the budget; then a ranking of configurations by
mean DER. Configurations that use ``perfect_filter`` (the oracle, or a random control copying its
count) are left out: no defender has them.
"""

from __future__ import annotations

import pandas as pd

from orchestrator.report.model import Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import (
    DER_FORMULA,
    POOLED_INTERVAL,
    without_oracle_sql,
    backdoored_models_sql,
    der_cells,
    estimate_cells,
    file_stem,
    setting_columns,
    shown_keys,
)
from orchestrator.report.stats import aggregate

RANKED = 15  # configurations shown per dataset and model in the DER ranking


def candidates_sql() -> str:
    """The defended rows a recommendation may come from: none whose pipeline names an oracle."""
    return f"n_defenses >= 1 AND {without_oracle_sql()}"


def drop_sql() -> str:
    return f"(SELECT *, clean_acc_before - clean_acc_after AS acc_drop FROM results WHERE {candidates_sql()})"


def section(context: ReportContext) -> Section | None:
    """None when the sweep has no defended trial."""
    if not {"n_defenses", "pipeline", "asr_after", "clean_acc_before", "clean_acc_after"} <= context.columns("results"):
        return None
    keys = setting_columns(context)
    means = aggregate(context.connection, drop_sql(), [*keys, "pipeline"], ["asr_after", "acc_drop"])
    if means.empty:
        return None
    # One ASR before per backdoored model (setting and seed), not one per defended trial of it.
    undefended = aggregate(context.connection, backdoored_models_sql(keys, ["asr_before"]), keys, ["asr_before"])
    chosen = choose_within_budgets(means, keys, sorted(context.budgets)).merge(undefended, on=keys, how="left")
    blocks: list = [Paragraph(
        "For each attack setting and clean-accuracy budget: the configuration with the lowest mean ASR after "
        "among those whose mean clean-accuracy drop (before − after, in percentage points) is at most the "
        "budget; ties go to the smaller drop. Configurations using perfect_filter are left out (no defender "
        "knows the poison). 'ASR without defense' is the backdoored models' mean ASR. Cells: mean [95 % CI] "
        "n = seeds. A choice rests on means: where intervals overlap, the runner-up may be as good.")]
    for (dataset, model, budget), rows in chosen.groupby(["dataset", "model", "budget_pp"], sort=True):
        rows = rows.reset_index(drop=True)
        shown = shown_keys(rows, keys)
        shown["ASR without defense (%)"] = estimate_cells(rows, "asr_before")
        shown["Configuration"] = rows["pipeline"].fillna("none within budget")
        shown["ASR after (%)"] = estimate_cells(rows, "asr_after")
        shown["Clean-acc. drop (pp)"] = estimate_cells(rows, "acc_drop", bounds=None)
        blocks.append(Table(file_stem("guidelines", dataset, model, "budget", budget),
                            f"Best within a {budget:g} pp clean-accuracy budget, {dataset} / {model}", shown, rows,
                            f"Lowest mean ASR after among configurations whose mean clean-accuracy drop is at most "
                            f"{budget:g} percentage points. Mean [95 % CI] n = seeds."))
    blocks += _der_ranking(context)
    return Section("guidelines", "Guidelines: which defense within an accuracy budget", blocks)


def choose_within_budgets(means: pd.DataFrame, keys: list[str], budgets: list[float]) -> pd.DataFrame:
    """Per attack setting and budget, the configuration with the lowest mean ASR after whose mean
    clean-accuracy drop is within the budget.

    Parameters
    ----------
    means : :func:`aggregate` of ``asr_after`` and ``acc_drop`` (fractions) by ``keys`` and ``pipeline``
    keys : the attack-setting columns
    budgets : budgets in percentage points

    Returns
    -------
    One row per (setting, budget), sorted by them, with ``budget_pp`` and the chosen row's columns;
    ``pipeline`` is missing (NaN, n = 0) where no configuration stays within the budget
    """
    settings = means[keys].drop_duplicates()
    chosen = []
    for budget in budgets:
        # A drop of exactly the budget, computed in floating point, is within it.
        within = means[means["acc_drop_mean"] * 100 <= budget + 1e-9]
        best = within.sort_values(["asr_after_mean", "acc_drop_mean", "pipeline"]).drop_duplicates(keys, keep="first")
        chosen.append(settings.merge(best, on=keys, how="left").assign(budget_pp=float(budget)))
    chosen = pd.concat(chosen, ignore_index=True)
    counts = [c for c in chosen.columns if c.endswith("_n")]
    chosen[counts] = chosen[counts].fillna(0).astype("int64")
    return chosen.sort_values([*keys, "budget_pp"]).reset_index(drop=True)


def _der_ranking(context: ReportContext) -> list:
    """Configurations ranked by mean DER per dataset and model, the top :data:`RANKED` shown."""
    if "der" not in context.columns("results"):
        return []
    ranking = aggregate(context.connection, drop_sql(), ["dataset", "model", "pipeline"], ["der", "asr_after", "acc_drop"])
    ranking = ranking[ranking["der_n"] > 0]
    blocks: list = []
    for (dataset, model), group in ranking.groupby(["dataset", "model"], sort=True):
        group = group.sort_values(["der_mean", "pipeline"], ascending=[False, True]).reset_index(drop=True)
        top = group.head(RANKED).assign(rank=lambda frame: frame.index + 1)
        shown = pd.DataFrame({
            "Rank": top["rank"].astype(str),
            "Configuration": top["pipeline"],
            "DER": der_cells(top),
            "ASR after (%)": estimate_cells(top, "asr_after"),
            "Clean-acc. drop (pp)": estimate_cells(top, "acc_drop", bounds=None),
        })
        shown_of = f" (top {RANKED} of {len(group)})" if len(group) > RANKED else ""
        blocks.append(Table(
            file_stem("guidelines_der", dataset, model), f"Configurations by mean DER, {dataset} / {model}{shown_of}",
            shown, top,
            f"{DER_FORMULA}. Mean [95 % CI] n = trials, pooled over the attack settings and seeds of this dataset "
            f"and model. {POOLED_INTERVAL}"))
    return blocks
