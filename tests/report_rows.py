"""Realistic result rows made up for report tests, without training anything.

:func:`synthetic_rows` writes the wide rows a sweep would write (the schema of
:mod:`orchestrator.results`): one row per (trigger, poison_pct, seed, pipeline), with numbers that
behave like the thesis's — the attack success rate rises with the poison percentage, defenses lower
it and cost some clean accuracy, detection counts are consistent (``removed_poisoned <= n_poisoned``,
``removed_total = removed_poisoned + removed_clean``), shared stages are computed once and reused
after. :func:`connect_rows` puts them behind the ``results`` and ``stages`` views a report reads.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
from typing import Any

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from orchestrator.results import RESULT_ROWS, stages_sql, write_row

# Every parameter of each defense with its default, as the search space fills them in (rows carry
# them all, typed; None is a typed NULL). Kept here so that making rows needs no TensorFlow import.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "ac": {"cluster_analysis": "smaller", "nb_clusters": 2, "nb_dims": 10, "reduce": "PCA", "layer": None,
           "ex_re_threshold": None, "retrain": "full"},
    "ss": {"expected_pp_poison": 0.33, "eps_multiplier": 1.5, "score": "centered", "layer": None, "retrain": "full"},
    "dp": {"mode": "trusted", "eps": 0.01, "detection_epochs": None, "holdout": 0.2, "retrain": "full"},
    "fp": {"layer": "last_conv", "threshold": 0.04, "epochs": 2, "learning_rate": 0.0001},
    "perfect_filter": {"retrain": "full"},
    "random_filter": {"fraction": None, "same_as": None, "retrain": "full"},
}
FILTERS = ("ac", "ss", "dp", "perfect_filter", "random_filter")

# How easily each trigger is learnt: the poison percentage at which half the poisoned test set flips.
TRIGGER_HALF_PCT = {
    "big_yellow_square": 1.5, "yellow_pattern": 2.0, "white_pattern": 2.5, "yellow_square": 3.0,
    "white_square": 4.0, "green_sunglasses": 3.0, "black_sunglasses": 4.0,
}
VERSIONS = {"code_version": "3f2a9c1d0b7e", "tensorflow_version": "2.21.0", "keras_version": "3.11.3",
            "art_version": "1.20.1", "ray_version": "2.60.0", "numpy_version": "2.2.6"}
# One configuration of each kind a thesis space holds: controls, every filtering defense (both SS
# scores), Fine-Pruning, and both orders of a two-defense chain.
PIPELINES = [
    "none", "perfect_filter", "random_filter(fraction=0.1)",
    "random_filter(same_as={'ac': {'cluster_analysis': 'smaller'}})",
    "random_filter(same_as={'ss': {'expected_pp_poison': 0.05, 'eps_multiplier': 1.5}})",
    "ac(cluster_analysis=smaller)", "ac(cluster_analysis=distance)", "ac(cluster_analysis=smaller,ex_re_threshold=1.0)",
    "ss(expected_pp_poison=0.05,eps_multiplier=1.5,score=art)",
    "ss(expected_pp_poison=0.05,eps_multiplier=1.5,score=centered)",
    "dp(mode=trusted,eps=0.01)", "dp(mode=untrusted,eps=0.01)",
    "fp(layer=last_conv,threshold=0.04)", "fp(layer=second_to_last_conv,threshold=0.02)",
    "ac(cluster_analysis=smaller)>fp(layer=last_conv,threshold=0.04)",
    "fp(layer=last_conv,threshold=0.04)>ac(cluster_analysis=smaller)",
]
TRAIN_PER_CLASS = 180  # dataset_per_class 200 less the 10 % tuning split
N_CLASSES = 43


def parse_pipeline(label: str) -> list[tuple[str, dict[str, Any]]]:
    """``ac(cluster_analysis=smaller)>fp(threshold=0.04)`` → ``[(name, all params), ...]``; ``none`` → ``[]``.

    Values are read as Python literals where they are one (numbers, None, ``{...}``), else as strings;
    ``same_as`` becomes its canonical JSON with every parameter filled in, as rows store it.
    """
    if label == "none":
        return []
    steps = []
    for part in _split_top(label, ">"):
        name, _, args = part.partition("(")
        params = dict(DEFAULT_PARAMS[name])
        for item in _split_top(args.removesuffix(")"), ",") if args else []:
            key, _, text = item.partition("=")
            params[key] = _literal(text)
        if isinstance(params.get("same_as"), dict):
            (inner, inner_params), = params["same_as"].items()
            params["same_as"] = json.dumps({inner: {**DEFAULT_PARAMS[inner], **inner_params}}, sort_keys=True)
        steps.append((name, params))
    return steps


def synthetic_rows(triggers: list[str], poison_pcts: list[float], seeds: list[int], pipelines: list[str],
                   dataset: str = "synthetic_signs", model: str = "gtsrb_cnn", rng_seed: int = 0) -> list[dict]:
    """Wide result rows for every (trigger, poison_pct, seed, pipeline), as a sweep would write them.

    Parameters
    ----------
    triggers, poison_pcts, seeds : the attack grid (poison_pct in percent of the source class)
    pipelines : pipeline labels as the search space writes them, e.g. ``none``,
        ``ac(cluster_analysis=smaller)``, ``random_filter(same_as={'ac': {'cluster_analysis': 'smaller'}})``,
        ``ac(cluster_analysis=smaller)>fp(layer=last_conv,threshold=0.04)``
    rng_seed : seeds the noise; the same arguments give the same rows

    Returns
    -------
    list of dicts, one per trial; keys differ between rows (a row has only its own defenses' columns)
    """
    rng = np.random.default_rng(rng_seed)
    computed: dict[tuple, float] = {}  # seconds of each stage computed so far
    source, target = (8, 14) if dataset in ("synthetic_signs", "gtsrb", "digits") else (0, 1)
    rows = []
    for trigger in triggers:
        for poison_pct in poison_pcts:
            for seed in seeds:
                trained = _trained_model(rng, trigger, float(poison_pct))
                for pipeline in pipelines:
                    row = {
                        "sweep": "synthetic", "dataset": dataset, "model": model, "trigger": trigger,
                        "source": source, "target": target, "poison_pct": float(poison_pct), "seed": int(seed),
                        "pipeline": pipeline, **trained["row"],
                        "dataset_per_class": 200, "dataset_test_per_class": 40, "train_epochs": 10,
                        "train_batch_size": 32, "train_optimizer": "adam", "train_learning_rate": 0.001,
                    }
                    row["trial_id"] = hashlib.sha256(
                        json.dumps([dataset, model, trigger, poison_pct, seed, pipeline]).encode()).hexdigest()[:16]
                    _apply_defenses(rng, row, parse_pipeline(pipeline), trained, trigger)
                    _add_costs(rng, row, computed, (dataset, model, trigger, poison_pct, seed))
                    row.update(VERSIONS)
                    row.update({"dataset_fingerprint": f"fp-{dataset}", "node": f"node-{len(rows) % 2}",
                                "node_ip": f"10.0.0.{len(rows) % 2 + 1}", "node_id": f"id{len(rows) % 2}",
                                "finished_at": 1.75e9 + len(rows) * 7.0})
                    rows.append(row)
    return rows


def connect_rows(rows: list[dict]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the ``results`` and ``stages`` views over ``rows``, the views
    :func:`orchestrator.results.connect` makes over row files (no files written: fast for 10,000 rows).

    Columns are the union over the rows (missing values NULL), typed by pyarrow's inference.
    """
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = pa.table({column: pa.array([row.get(column) for row in rows]) for column in columns})
    connection = duckdb.connect()
    connection.register(RESULT_ROWS, table)
    connection.execute(f"CREATE VIEW results AS SELECT * FROM {RESULT_ROWS}")
    connection.execute(f"CREATE VIEW stages AS {stages_sql(columns)}")
    return connection


def write_rows(storage: str | Path, sweep: str, rows: list[dict]) -> None:
    """Write ``rows`` as the sweep's Parquet row files, one per trial, as trials do
    (:func:`orchestrator.results.connect` then reads them back)."""
    for row in rows:
        write_row(storage, sweep, {**row, "sweep": sweep})


def _split_top(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside brackets and braces."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += char in "([{"
        depth -= char in ")]}"
        if char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    return parts + [text[start:]]


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _asr_at(trigger: str, effective_pct: float) -> float:
    """Attack success of a model trained with ``effective_pct`` % of the source class poisoned."""
    if effective_pct <= 0:
        return 0.01
    half = TRIGGER_HALF_PCT.get(trigger, 3.0)
    return 0.01 + 0.98 / (1 + math.exp(-(effective_pct - half) / (0.35 * half)))


def _trained_model(rng: np.random.Generator, trigger: str, poison_pct: float) -> dict:
    """The backdoored model of one (trigger, poison_pct, seed): its metrics before any defense."""
    n_poisoned = round(poison_pct / 100 * TRAIN_PER_CLASS)
    clean_acc = float(np.clip(rng.normal(0.955 - 0.0008 * poison_pct, 0.008), 0, 1))
    asr = float(np.clip(_asr_at(trigger, poison_pct) + rng.normal(0, 0.03), 0, 1))
    ra = float(np.clip((1 - asr) * rng.uniform(0.85, 0.95), 0, 1))
    return {
        "row": {"n_poisoned": n_poisoned, "clean_acc_before": clean_acc, "asr_before": asr, "ra_before": ra},
        "n_seen": N_CLASSES * TRAIN_PER_CLASS,
        "art_sign_flipped": bool(rng.random() < 0.35),  # ART's un-centred SS score catches the wrong tail
        "dp_gain": float(rng.normal(0.004 * min(poison_pct, 10), 0.006)),
    }


def _apply_defenses(rng, row: dict, steps: list[tuple[str, dict]], trained: dict, trigger: str) -> None:
    """Run the made-up defenses in order, filling ``dN_*`` columns and the after metrics."""
    clean_acc, asr = row["clean_acc_before"], row["asr_before"]
    n_seen, n_poisoned = trained["n_seen"], row["n_poisoned"]
    effective_pct = row["poison_pct"]
    for position, (name, params) in enumerate(steps, start=1):
        prefix = f"d{position}_"
        row[f"{prefix}name"] = name
        row.update({prefix + key: value for key, value in params.items()})
        if name == "fp":
            metrics, clean_acc, asr = _fine_prune(rng, params, clean_acc, asr)
            row.update({prefix + key: value for key, value in metrics.items()})
            continue
        removed_poisoned, removed_clean, extra = _filter(rng, name, params, n_seen, n_poisoned, trained, row)
        row.update({prefix + key: value for key, value in
                    _detection_metrics(n_seen, n_poisoned, removed_poisoned, removed_clean).items()})
        row.update({prefix + key: value for key, value in extra.items()})
        retrained = params["retrain"] != "none"
        row[f"{prefix}retrained"] = retrained
        if retrained:
            left = (n_poisoned - removed_poisoned) / max(n_poisoned, 1)
            effective_pct *= left
            asr = float(np.clip(min(asr, _asr_at(trigger, effective_pct)) + rng.normal(0, 0.02), 0, 1))
            clean_share_removed = removed_clean / max(n_seen - n_poisoned, 1)
            cost = 0.06 * clean_share_removed ** 1.5 + rng.normal(0, 0.004)
            clean_acc = float(np.clip(clean_acc - cost, 0, 1))
        n_seen, n_poisoned = n_seen - removed_poisoned - removed_clean, n_poisoned - removed_poisoned
    row["n_defenses"] = len(steps)
    ra = float(np.clip((1 - asr) * rng.uniform(0.85, 0.95), 0, 1)) if steps else row["ra_before"]
    row.update({"clean_acc_after": clean_acc, "asr_after": asr, "ra_after": ra})
    row["der"] = (
        (max(0.0, row["asr_before"] - asr) - max(0.0, row["clean_acc_before"] - clean_acc) + 1) / 2 if steps else None
    )


def _filter(rng, name: str, params: dict, n_seen: int, n_poisoned: int, trained: dict, row: dict):
    """``(removed_poisoned, removed_clean, defense-specific metrics)`` of one filtering defense."""
    n_clean = n_seen - n_poisoned
    extra: dict[str, Any] = {}
    if name == "perfect_filter":
        return n_poisoned, 0, extra
    if name == "random_filter":
        if params["fraction"] is not None:
            share = params["fraction"]
        else:
            (inner, inner_params), = json.loads(params["same_as"]).items()
            share = _ss_share(inner_params) if inner == "ss" else 0.31
        removed = round(share * n_seen)
        removed_poisoned = int(rng.hypergeometric(n_poisoned, n_clean, removed)) if n_seen else 0
        return removed_poisoned, removed - removed_poisoned, extra
    if name == "ac":
        tpr, fpr = {"smaller": (0.92, 0.31), "distance": (0.75, 0.02), "relative-size": (0.6, 0.04),
                    "silhouette-scores": (0.85, 0.09)}[params["cluster_analysis"]]
        if params["ex_re_threshold"] is not None:
            fpr *= 0.4
            tpr *= 0.95
        removed_poisoned = int(rng.binomial(n_poisoned, tpr))
        removed_clean = int(rng.binomial(n_clean, fpr))
        extra = {"flagged_by_clustering": removed_poisoned + removed_clean, "classes_skipped": int(rng.integers(0, 3))}
        return removed_poisoned, removed_clean, extra
    if name == "ss":
        return _spectral_signatures(rng, params, n_seen, n_poisoned, trained)
    if name == "dp":
        gains = {f"gain_camera_{c}": float(rng.normal(-0.004, 0.003)) for c in range(3)}
        gains["gain_camera_3"] = trained["dp_gain"] if n_poisoned else float(rng.normal(-0.004, 0.003))
        cameras = [c for c in range(4) if gains[f"gain_camera_{c}"] > params["eps"]]
        if params["mode"] == "untrusted" and gains["gain_camera_1"] > -0.006:
            cameras = sorted(set(cameras) | {1})  # without a trusted set, a clean segment goes too at times
        removed_poisoned = n_poisoned if 3 in cameras else 0
        removed_clean = round(n_clean / 3) * sum(c < 3 for c in cameras)
        extra = {**gains, "removed_cameras": ",".join(str(c) for c in cameras)}
        return removed_poisoned, removed_clean, extra
    raise ValueError(f"no made-up numbers for defense {name!r}")


def _ss_share(params: dict) -> float:
    """Share of every class ART's Spectral Signatures removes: min(1, eps_multiplier · expected_pp_poison)."""
    return min(1.0, params["eps_multiplier"] * params["expected_pp_poison"])


def _spectral_signatures(rng, params: dict, n_seen: int, n_poisoned: int, trained: dict):
    """SS removes the same share of every class; within the target class the poison is caught first
    unless ART's un-centred score picked the wrong tail. The ROC is over that share, 0..1 in 101 steps."""
    share = _ss_share(params)
    target_size = TRAIN_PER_CLASS + n_poisoned
    poison_in_target = n_poisoned / target_size if target_size else 0.0
    wrong_tail = params["score"] == "art" and trained["art_sign_flipped"]
    shares = np.linspace(0.0, 1.0, 101)
    if n_poisoned == 0:  # as the defense reports it: no curve without poisons
        tpr_curve = np.full_like(shares, np.nan)
    elif wrong_tail:
        tpr_curve = np.clip((shares - (1 - poison_in_target)) / poison_in_target, 0, 1)
    else:
        quality = rng.uniform(0.9, 1.0)
        tpr_curve = np.clip(quality * shares / poison_in_target, 0, 1)
        tpr_curve = np.maximum(tpr_curve, shares)
    n_clean = n_seen - n_poisoned
    fpr_curve = np.clip((shares * n_seen - np.nan_to_num(tpr_curve) * n_poisoned) / n_clean, 0, 1)
    fpr_curve = np.where(np.isnan(tpr_curve), np.nan, fpr_curve)
    tpr_at = float(np.interp(share, shares, np.nan_to_num(tpr_curve)))
    removed_poisoned = min(n_poisoned, round(tpr_at * n_poisoned))
    removed_clean = max(0, round(share * n_seen) - removed_poisoned)
    auroc = float(np.trapezoid(tpr_curve, fpr_curve)) if n_poisoned else float("nan")
    extra = {"flagged_share": share, "auroc": auroc, "roc_fpr": [float(v) for v in fpr_curve],
             "roc_tpr": [float(v) for v in tpr_curve]}
    return removed_poisoned, removed_clean, extra


def _detection_metrics(n_seen: int, n_poisoned: int, removed_poisoned: int, removed_clean: int) -> dict:
    """Counts and rates of one filtering stage; a rate is NaN when its denominator is 0."""
    removed_total = removed_poisoned + removed_clean
    n_clean = n_seen - n_poisoned
    tpr = removed_poisoned / n_poisoned if n_poisoned else math.nan
    fpr = removed_clean / n_clean if n_clean else math.nan
    precision = removed_poisoned / removed_total if removed_total else math.nan
    f1 = 2 * precision * tpr / (precision + tpr) if removed_total and n_poisoned and precision + tpr else math.nan
    return {"n_seen": n_seen, "n_poisoned": n_poisoned, "removed_total": removed_total,
            "removed_poisoned": removed_poisoned, "removed_clean": removed_clean, "tpr": tpr, "fpr": fpr,
            "precision": precision, "f1": f1}


def _fine_prune(rng, params: dict, clean_acc: float, asr: float) -> tuple[dict, float, float]:
    """Fine-Pruning: a tuning-accuracy curve over pruned channels, pruning up to the threshold, then fine-tuning."""
    width = 128 if params["layer"] == "last_conv" else 64
    tune_before = float(np.clip(clean_acc + rng.normal(0, 0.005), 0, 1))
    k = np.arange(width)
    knee = width * rng.uniform(0.7, 0.85)
    curve = tune_before - 0.5 * np.clip((k - knee) / (width - knee), 0, None) ** 2 - rng.normal(0, 0.002, width).cumsum() * 0.05
    curve = np.clip(curve, 0, 1)
    within = np.nonzero(tune_before - curve <= params["threshold"])[0]
    pruned = int(within.max()) if len(within) else 0
    # Pruning dormant channels takes some of the backdoor with it; fine-tuning restores clean accuracy.
    asr_after = float(np.clip(asr * (1 - 6 * params["threshold"]) + rng.normal(0, 0.03), 0, 1))
    clean_after = float(np.clip(clean_acc - 0.25 * params["threshold"] + rng.normal(0, 0.004), 0, 1))
    metrics = {"pruned_layer": "conv2d_5" if width == 128 else "conv2d_3", "layer_width": width,
               "pruned_channels": pruned, "tune_acc_before": tune_before, "tune_acc_pruned": float(curve[pruned]),
               "tune_acc_curve": [float(v) for v in curve]}
    return metrics, clean_after, asr_after


def _add_costs(rng, row: dict, computed: dict, model_key: tuple) -> None:
    """``<label>_seconds`` and ``<label>_computed`` per stage: a stage shared with an earlier row is reused.

    ``computed`` maps (label, stage key) to the seconds it took, for the rows made so far.
    """
    dataset_key = model_key[:2]
    labels = [("dataset", dataset_key, 40.0), ("poison", model_key, 2.0),
              ("train", model_key, 120.0), ("evaluate_before", model_key, 3.0)]
    chain = model_key
    for position in range(1, row["n_defenses"] + 1):
        name = row[f"d{position}_name"]
        step = (name, tuple(sorted((k[len(f"d{position}_"):], str(v)) for k, v in row.items()
                                   if k.startswith(f"d{position}_") and k[len(f"d{position}_"):] in DEFAULT_PARAMS[name])))
        if name in ("ac", "ss") or (name == "random_filter" and row[f"d{position}_same_as"]):
            labels.append((f"d{position}_activations", chain + ("activations",), 15.0))
        if name == "random_filter" and row[f"d{position}_same_as"]:
            labels.append((f"d{position}_defense", chain + ("same_as", row[f"d{position}_same_as"]), 20.0))
        if name == "fp":
            labels.append((f"d{position}_pruning_curve", chain + ("curve", row[f"d{position}_layer"]), 30.0))
        chain = chain + (step,)
        labels.append((f"d{position}", chain, {"dp": 400.0, "fp": 25.0}.get(name, 110.0)))
    if row["n_defenses"]:
        labels.append(("evaluate_after", chain + ("evaluate",), 3.0))
    for label, key, typical in labels:
        # A reused stage reports the seconds its artifact took when it was computed.
        row[f"{label}_computed"] = (label, key) not in computed
        row[f"{label}_seconds"] = computed.setdefault((label, key), float(typical * rng.uniform(0.8, 1.25)))
    row["n_stages_computed"] = sum(row[f"{label}_computed"] for label, _, _ in labels)
    row["trial_seconds"] = sum(row[f"{label}_seconds"] for label, _, _ in labels if row[f"{label}_computed"]) + 9.0
