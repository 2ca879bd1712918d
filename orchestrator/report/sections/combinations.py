"""Section "Combinations": two defenses alone and chained in both orders, per attack setting.

For every pair of defense configurations A, B that the sweep ran alone and as A→B and B→A, it
sets the four side by side (mean ASR and clean accuracy after, 95 % t-intervals over seeds), gives
each chain's change against the better single defense of that setting (paired by seed: the same
backdoored model), and counts, in the thesis's words, for how many settings one beats another.
"Beats" means a strictly lower mean ASR after.

A configuration is matched by its full parameters, not its label: ``ac(cluster_analysis=smaller)``
inside a chain is the same configuration as ``ac(cluster_analysis=smaller,reduce=PCA)`` alone, since
``reduce`` defaults to PCA.
"""

from __future__ import annotations

import pandas as pd

from orchestrator.report.model import Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import estimate_cells, file_stem, quote, setting_columns, shown_keys, spread
from orchestrator.report.stats import aggregate

VARIANTS = ("a", "b", "ab", "ba")
CHAINS = ("ab", "ba")
RULE = ("A configuration beats another in an attack setting when its mean ASR after is strictly lower; equal "
        "means are ties, not wins.")


def section(context: ReportContext) -> Section | None:
    """None when no pair of defense configurations ran alone and chained in both orders."""
    if not ({"trial_id", "position", "defense", "pipeline"} <= context.columns("stages")
            and {"n_defenses", "asr_after", "clean_acc_after"} <= context.columns("results")):
        return None
    keys = setting_columns(context)
    queries = _queries(context, keys)
    pairs = context.frame(f"WITH {queries['pairs']} SELECT * FROM pairs ORDER BY pair")
    if pairs.empty:
        return None
    means = aggregate(context.connection, f"(WITH {queries['tagged']} SELECT * FROM tagged)",
                      ["pair", *keys, "variant"], ["asr_after", "clean_acc_after"])
    changes = aggregate(context.connection, f"(WITH {queries['changes']} SELECT * FROM changes)",
                        ["pair", *keys, "variant"], ["asr_change", "clean_acc_change"])
    blocks: list = [Paragraph(
        "Pairs of defense configurations the sweep ran alone and chained in both orders (A→B applies A, then B "
        "to A's model and data). Cells: mean [95 % CI] n = seeds, in percent. 'vs best single' compares a chain "
        "with whichever of A alone and B alone has the lower mean ASR after in that setting, seed by seed (the "
        "same backdoored model), in percentage points: a negative ASR change is better. " + RULE)]
    for pair in pairs.itertuples(index=False):
        blocks += _pair_blocks(pair, keys, means[means["pair"] == pair.pair], changes[changes["pair"] == pair.pair])
    return Section("combinations", "Combinations: defenses alone and chained in both orders", blocks)


def configuration_sql(columns: set[str]) -> str:
    """A SQL expression over ``stages`` rows naming a defense configuration by all its parameters.

    ``ac(cluster_analysis=smaller,nb_clusters=2,...,retrain=full)``: the defense and every parameter
    of its registry entry that the view holds, NULL written ``None``. Two stages with equal
    expressions ran the same recipe whatever their pipeline labels showed. A defense missing from the
    registry falls back to its part of the label.
    """
    # The registry's Params classes are plain pydantic models: importing it does not load TensorFlow.
    from tasks.registry import registry

    cases = []
    for name, method in sorted(registry().defenses.items()):
        params = [p for p in method.Params.model_fields if p in columns]
        parts = ", ".join(f"'{p}=' || coalesce(CAST({quote(p)} AS VARCHAR), 'None')" for p in params)
        body = f"'{name}(' || concat_ws(',', {parts}) || ')'" if params else f"'{name}'"
        cases.append(f"WHEN '{name}' THEN {body}")
    return f"CASE defense {' '.join(cases)} ELSE split_part(pipeline, '>', position) END"


def _queries(context: ReportContext, keys: list[str]) -> dict[str, str]:
    """The CTE chains the section reads: ``pairs``, ``tagged`` (every trial of a pair's four variants)
    and ``changes`` (a chain's trial against the better single defense's on the same model)."""
    setting = ", ".join(quote(k) for k in keys)
    on_setting = " AND ".join(f"c.{quote(k)} IS NOT DISTINCT FROM s.{quote(k)}" for k in [*keys, "seed"])
    best_on = " AND ".join(f"c.{quote(k)} IS NOT DISTINCT FROM best.{quote(k)}" for k in keys)
    chains = f"""
    t AS (
        SELECT {', '.join(f'r.{quote(k)}' for k in keys)}, r.seed, r.n_defenses, r.asr_after, r.clean_acc_after,
               s.cfg1, s.cfg2, s.shown1, s.shown2
        FROM results r JOIN (
            SELECT trial_id,
                   max(CASE WHEN position = 1 THEN cfg END) AS cfg1, max(CASE WHEN position = 2 THEN cfg END) AS cfg2,
                   max(CASE WHEN position = 1 THEN shown END) AS shown1,
                   max(CASE WHEN position = 2 THEN shown END) AS shown2
            FROM (SELECT trial_id, position, {configuration_sql(context.columns('stages'))} AS cfg,
                         split_part(pipeline, '>', position) AS shown FROM stages)
            GROUP BY trial_id
        ) s USING (trial_id)
        WHERE r.n_defenses IN (1, 2))"""
    # Pairs (a, b), a < b, run alone and in both orders; shown_a and shown_b as the chain A→B labels them.
    pairs = f"""{chains},
    combos AS (SELECT cfg1 AS a, cfg2 AS b, min(shown1) AS shown_a, min(shown2) AS shown_b
               FROM t WHERE n_defenses = 2 GROUP BY cfg1, cfg2),
    singles AS (SELECT DISTINCT cfg1 AS cfg FROM t WHERE n_defenses = 1),
    pairs AS (SELECT row_number() OVER (ORDER BY x.a, x.b) AS pair, x.a, x.b, x.shown_a, x.shown_b
              FROM combos x JOIN combos y ON x.a = y.b AND x.b = y.a
              WHERE x.a < x.b AND x.a IN (SELECT cfg FROM singles) AND x.b IN (SELECT cfg FROM singles))"""
    tagged = f"""{pairs},
    tagged AS (
        SELECT p.pair, 'a' AS variant, t.* FROM t JOIN pairs p ON t.n_defenses = 1 AND t.cfg1 = p.a
        UNION ALL SELECT p.pair, 'b', t.* FROM t JOIN pairs p ON t.n_defenses = 1 AND t.cfg1 = p.b
        UNION ALL SELECT p.pair, 'ab', t.* FROM t JOIN pairs p ON t.n_defenses = 2 AND t.cfg1 = p.a AND t.cfg2 = p.b
        UNION ALL SELECT p.pair, 'ba', t.* FROM t JOIN pairs p ON t.n_defenses = 2 AND t.cfg1 = p.b AND t.cfg2 = p.a)"""
    changes = f"""{tagged},
    single_means AS (
        SELECT pair, {setting}, variant, avg(CASE WHEN isnan(asr_after) THEN NULL ELSE asr_after END) AS mean_asr
        FROM tagged WHERE variant IN ('a', 'b') GROUP BY ALL),
    best AS (
        SELECT pair, {setting}, variant AS best_variant FROM single_means WHERE mean_asr IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY pair, {setting} ORDER BY mean_asr, variant) = 1),
    changes AS (
        SELECT c.pair, {', '.join(f'c.{quote(k)}' for k in keys)}, c.variant,
               c.asr_after - s.asr_after AS asr_change, c.clean_acc_after - s.clean_acc_after AS clean_acc_change
        FROM tagged c
        JOIN best ON best.pair = c.pair AND {best_on}
        JOIN tagged s ON s.pair = c.pair AND s.variant = best.best_variant AND {on_setting}
        WHERE c.variant IN ('ab', 'ba'))"""
    return {"pairs": pairs, "tagged": tagged, "changes": changes}


def _pair_blocks(pair, keys: list[str], means: pd.DataFrame, changes: pd.DataFrame) -> list:
    """The counts and, per dataset and model, the ASR and clean-accuracy tables of one pair."""
    name_a, name_b = short_names(pair.shown_a, pair.shown_b)
    names = {"a": f"{name_a} alone", "b": f"{name_b} alone", "ab": f"{name_a}→{name_b}", "ba": f"{name_b}→{name_a}"}
    wide = _wide(means, changes, keys)
    counts = beat_counts(wide, names)
    sentences = " ".join(f"{row.comparison} for {row.wins} of {row.settings} settings"
                         + (f" ({row.ties} tied)" if row.ties else "") + "." for row in counts.itertuples())
    blocks: list = [
        Paragraph(f"Pair {pair.pair}: {name_a} = {pair.shown_a}; {name_b} = {pair.shown_b}. {sentences}"),
        Table(file_stem("combinations", pair.pair, "counts"), f"{name_a} and {name_b}: wins over attack settings",
              counts.rename(columns={"comparison": "Comparison", "wins": "Wins", "ties": "Ties",
                                     "settings": "Settings compared"}).astype(str),
              counts.assign(pair=pair.pair, a=pair.shown_a, b=pair.shown_b), RULE),
    ]
    for (dataset, model), group in wide.groupby(["dataset", "model"], sort=True):
        group = group.reset_index(drop=True)
        for metric, change, label in (("asr_after", "asr_change", "ASR after"),
                                      ("clean_acc_after", "clean_acc_change", "Clean accuracy after")):
            shown = {(title, ""): values for title, values in shown_keys(group, keys).items()}
            for variant in VARIANTS:
                shown[(f"{label} (%)", names[variant])] = estimate_cells(group, f"{variant}_{metric}")
            for variant in CHAINS:
                shown[("vs best single (pp)", names[variant])] = estimate_cells(group, f"{variant}_{change}",
                                                                                bounds=None)
            frame = pd.DataFrame(shown)
            frame.columns = pd.MultiIndex.from_tuples(frame.columns)
            columns = [f"{v}_{m}_{p}" for v, m in [(v, metric) for v in VARIANTS] + [(v, change) for v in CHAINS]
                       for p in ("mean", "lo", "hi", "n")]
            blocks.append(Table(
                file_stem("combinations", pair.pair, metric, dataset, model),
                f"{name_a} and {name_b} on {dataset} / {model}: {label.lower()}",
                frame, group[[*keys, *columns]],
                "Mean [95 % CI] n = seeds, in percent; 'vs best single': the chain minus the better single defense "
                "of that setting, seed by seed, in percentage points."))
    return blocks


def _wide(means: pd.DataFrame, changes: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per attack setting, columns ``<variant>_<metric>_<mean|lo|hi|n>``; n is 0 where a
    variant did not run in that setting."""
    def values(frame: pd.DataFrame) -> list[str]:
        return [c for c in frame.columns if c not in ("pair", *keys, "variant")]

    wide = spread(means, keys, "variant", VARIANTS, values(means)).merge(
        spread(changes, keys, "variant", CHAINS, values(changes)), on=keys, how="left")
    counts = [c for c in wide.columns if c.endswith("_n")]
    wide[counts] = wide[counts].fillna(0).astype("int64")
    return wide.sort_values(keys).reset_index(drop=True)


def beat_counts(wide: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """In how many attack settings each chain beats each single defense, and one order the other.

    Parameters
    ----------
    wide : one row per setting with ``<variant>_asr_after_mean`` for the variants a, b, ab, ba
    names : display name per variant

    Returns
    -------
    DataFrame with ``comparison`` (``AC→FP beats AC alone``), ``wins``, ``ties`` and ``settings``
    (settings where both means exist)
    """
    rows = []
    for winner, other in (("ab", "a"), ("ab", "b"), ("ba", "a"), ("ba", "b"), ("ab", "ba")):
        first, second = wide[f"{winner}_asr_after_mean"], wide[f"{other}_asr_after_mean"]
        both = first.notna() & second.notna()
        rows.append({"comparison": f"{names[winner]} beats {names[other]}",
                     "wins": int((both & (first < second)).sum()), "ties": int((both & (first == second)).sum()),
                     "settings": int(both.sum())})
    return pd.DataFrame(rows)


def short_names(shown_a: str, shown_b: str) -> tuple[str, str]:
    """Names for a pair in sentences: the defenses in capitals (``AC``, ``FP``) when they differ, else A and B."""
    name_a, name_b = (shown.split("(")[0].upper() for shown in (shown_a, shown_b))
    return (name_a, name_b) if name_a != name_b else ("A", "B")
