"""Result rows as a hive-partitioned Parquet dataset, one file per trial, and SQL over them.

Layout: ``<storage>/<sweep>/results/dataset=<name>/model=<name>/<trial_id>.parquet``. The
partition columns live in the path, not in the files; every reader here restores them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.errors import StorageError
from orchestrator.storage import StorageRoot, open_storage

PARTITIONS = ("dataset", "model")
RESULTS = "results"  # a sweep's directory of rows


def row_parts(sweep: str, row: dict[str, Any]) -> tuple[str, ...]:
    """Where a row's file is, as parts under the storage root."""
    return (sweep, RESULTS, *(f"{key}={row[key]}" for key in PARTITIONS), f"{row['trial_id']}.parquet")


def read_row(storage: str | Path | StorageRoot, sweep: str, dataset: str, model: str, trial_id: str) -> dict[str, Any] | None:
    """The row of one trial as a dict, or None when the trial has none yet."""
    storage = open_storage(storage)
    parts = row_parts(sweep, {"dataset": dataset, "model": model, "trial_id": trial_id})
    try:
        data = storage.read_bytes(*parts)
    except FileNotFoundError:
        return None
    return {**pq.read_table(pa.BufferReader(data)).to_pylist()[0], "dataset": dataset, "model": model}


def write_row(storage: str | Path | StorageRoot, sweep: str, row: dict[str, Any]) -> str:
    """Write one trial's row, whole or not at all, and return where it is.

    Writing the same trial again replaces its file whole, so a trial run twice leaves one row.
    """
    storage = open_storage(storage)
    table = pa.Table.from_pylist([{k: v for k, v in row.items() if k not in PARTITIONS}])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    parts = row_parts(sweep, row)
    storage.write_bytes(*parts, data=sink.getvalue().to_pybytes())
    return storage.display(*parts)


def finished_trial_ids(storage: str | Path | StorageRoot, sweep: str) -> set[str]:
    """Ids of the trials of ``sweep`` that have a result file."""
    files = open_storage(storage).files(sweep, RESULTS, suffix=".parquet", recursive=True)
    return {info.base_name.removesuffix(".parquet") for info in files}


def connect(storage: str | Path | StorageRoot, sweep: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a ``results`` view over every row under ``storage`` (or one sweep)."""
    storage = open_storage(storage)
    sweeps = [sweep] if sweep else storage.directories()
    files = [info for name in sweeps for info in storage.files(name, RESULTS, suffix=".parquet", recursive=True)]
    if not files:
        where = f"sweep {sweep!r}" if sweep else "any sweep"
        raise StorageError(storage.display(), None, f"no result files for {where} (run a sweep first)")
    connection = duckdb.connect()
    if storage.is_local:
        pattern = storage.path(sweep or "*", RESULTS, "**", "*.parquet").replace("'", "''")
        connection.execute(
            f"CREATE VIEW results AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"
        )
    else:
        # DuckDB reads object stores only through an extension it would download; pyarrow reads them here.
        connection.register("results", _rows_table(storage, files))
    return connection


def _rows_table(storage: StorageRoot, files) -> pa.Table:
    """One table of every row in ``files``, partition columns restored from their paths.

    The files are fetched several at once: on an object store each is a request of its own.
    """
    def read(info) -> pa.Table:
        table = pq.read_table(pa.BufferReader(storage.read_bytes(storage.relative(info))))
        for part in info.path.split("/"):
            key, equals, value = part.partition("=")
            if equals and key in PARTITIONS:
                table = table.append_column(key, pa.array([value] * table.num_rows))
        return table

    with ThreadPoolExecutor(max_workers=16) as pool:
        return pa.concat_tables(list(pool.map(read, files)), promote_options="permissive")


def query(storage: str | Path | StorageRoot, sql: str, sweep: str | None = None) -> pd.DataFrame:
    """Run ``sql`` against the ``results`` view and return the answer as a DataFrame."""
    connection = connect(storage, sweep)
    try:
        return connection.execute(sql).df()
    except duckdb.Error as error:
        raise StorageError("query", None, str(error).splitlines()[0]) from None
    finally:
        connection.close()


def load_results(storage: str | Path | StorageRoot, sweep: str) -> pd.DataFrame:
    """Every row of one sweep, ordered by trigger, poison_pct, pipeline."""
    return query(storage, "SELECT * FROM results ORDER BY trigger, poison_pct, pipeline, seed", sweep=sweep)
