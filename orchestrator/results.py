"""Result rows as a hive-partitioned Parquet dataset, one file per trial, and SQL over them.

Layout: ``<storage>/<sweep>/results/dataset=<name>/model=<name>/<trial_id>.parquet``. The
partition columns live in the path, not in the files; every reader here restores them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.errors import StorageError

PARTITIONS = ("dataset", "model")


def results_dir(storage: str | Path, sweep: str) -> Path:
    return Path(storage) / sweep / "results"


def row_path(storage: str | Path, sweep: str, row: dict[str, Any]) -> Path:
    parts = [f"{key}={row[key]}" for key in PARTITIONS]
    return results_dir(storage, sweep).joinpath(*parts, f"{row['trial_id']}.parquet")


def read_row(storage: str | Path, sweep: str, dataset: str, model: str, trial_id: str) -> dict[str, Any] | None:
    """The row of one trial as a dict, or None when the trial has none yet."""
    path = row_path(storage, sweep, {"dataset": dataset, "model": model, "trial_id": trial_id})
    if not path.is_file():
        return None
    return {**pq.read_table(path).to_pylist()[0], "dataset": dataset, "model": model}


def write_row(storage: str | Path, sweep: str, row: dict[str, Any]) -> Path:
    """Write one trial's row atomically (temporary file, then rename) and return its path.

    Writing the same trial again replaces its file whole, so a trial run twice leaves one row.
    """
    path = row_path(storage, sweep, row)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{k: v for k, v in row.items() if k not in PARTITIONS}])
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    return path


def finished_trial_ids(storage: str | Path, sweep: str) -> set[str]:
    """Ids of the trials of ``sweep`` that have a result file."""
    return {path.stem for path in results_dir(storage, sweep).glob("**/*.parquet")}


def _glob(storage: str | Path, sweep: str | None) -> str:
    return str(Path(storage).resolve() / (sweep or "*") / "results" / "**" / "*.parquet")


def connect(storage: str | Path, sweep: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a ``results`` view over every row under ``storage`` (or one sweep)."""
    if not any(Path(storage).glob(f"{sweep or '*'}/results/**/*.parquet")):
        where = f"sweep {sweep!r}" if sweep else "any sweep"
        raise StorageError(str(storage), None, f"no result files for {where} (run a sweep first)")
    connection = duckdb.connect()
    pattern = _glob(storage, sweep).replace("'", "''")
    connection.execute(
        f"CREATE VIEW results AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"
    )
    return connection


def query(storage: str | Path, sql: str, sweep: str | None = None) -> pd.DataFrame:
    """Run ``sql`` against the ``results`` view and return the answer as a DataFrame."""
    connection = connect(storage, sweep)
    try:
        return connection.execute(sql).df()
    except duckdb.Error as error:
        raise StorageError("query", None, str(error).splitlines()[0]) from None
    finally:
        connection.close()


def load_results(storage: str | Path, sweep: str) -> pd.DataFrame:
    """Every row of one sweep, ordered by trigger, poison_pct, pipeline."""
    return query(storage, "SELECT * FROM results ORDER BY trigger, poison_pct, pipeline, seed", sweep=sweep)
