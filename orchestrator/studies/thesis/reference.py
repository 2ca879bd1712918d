"""The thesis's tables ("Backdoor defenses", TU Wien 2021) shipped with the package, as DataFrames.

The CSVs live in ``orchestrator/studies/thesis/reference/`` (its README names each one's tables and columns).
Their percentages stay on the thesis's 0–100 scale; a report converts bdsweep's fractions, not these.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

# name → (file, the thesis tables it copies)
REFERENCE_TABLES: dict[str, tuple[str, str]] = {
    "clean_models": ("thesis_clean_models.csv", "Tables 3.4, 3.5"),
    "models": ("thesis_models.csv", "Table 4.1"),
    "poison_sweep": ("thesis_poison_sweep.csv", "Tables A.1, A.2"),
    "activation_clustering": ("thesis_activation_clustering.csv", "Tables 4.2, 4.3"),
    "fine_pruning": ("thesis_fine_pruning.csv", "Tables 4.5, 4.6"),
    "combinations": ("thesis_combinations.csv", "Tables 4.7, 4.8, 4.9"),
}


def reference_file(name: str):
    """The packaged CSV of reference table ``name`` (a :class:`importlib.resources.abc.Traversable`)."""
    if name not in REFERENCE_TABLES:
        raise KeyError(f"no thesis table {name!r}; there are {', '.join(REFERENCE_TABLES)}")
    return resources.files("orchestrator.studies.thesis").joinpath("reference", REFERENCE_TABLES[name][0])


def load_reference(name: str) -> pd.DataFrame:
    """Reference table ``name`` (a key of :data:`REFERENCE_TABLES`) as printed: percentages 0–100,
    empty cells NaN, text columns as strings."""
    with reference_file(name).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


def thesis_settings() -> pd.DataFrame:
    """The attack setting of each backdoored model of the thesis.

    Returns
    -------
    DataFrame with ``model_id``, ``dataset``, ``model``, ``trigger`` (bdsweep's names) and
    ``poison_pct`` (float, percent of the source class), one row per model of Table 4.1
    """
    models = load_reference("models")
    settings = models[["model_id", "dataset", "model", "trigger", "poison_pct_of_source"]]
    settings = settings.rename(columns={"poison_pct_of_source": "poison_pct"})
    return settings.astype({"poison_pct": float})
