"""Result rows as a hive-partitioned Parquet dataset, one file per trial, and SQL over them.

Layout: ``<storage>/<sweep>/results/dataset=<name>/model=<name>/<trial_id>.parquet``. The
partition columns live in the path, not in the files; every reader here restores them.

Two views answer SQL: ``results``, one wide row per trial (a defense's columns carry its position,
``d1_tpr``), and ``stages``, one row per (trial, defense position) with those columns unprefixed
(``tpr``) beside ``position`` and ``defense``. A column has one type in every row: configuration
columns take theirs from the config classes' annotations (:func:`field_types`), so a parameter
left at None is a typed null. A row file that cannot be read is named in a warning and left out;
its trial counts as not done, so ``resume`` runs it again.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator.errors import StorageError
from orchestrator.storage import StorageRoot, open_storage

log = logging.getLogger("bdsweep.results")

PARTITIONS = ("dataset", "model")
RESULTS = "results"  # a sweep's directory of rows
# Columns of a trial that the ``stages`` view repeats on each of its defense positions.
TRIAL_COLUMNS = (
    "sweep", "trial_id", "dataset", "model", "trigger", "source", "target", "poison_pct", "seed", "pipeline",
    "n_defenses", "clean_acc_before", "asr_before", "ra_before", "clean_acc_after", "asr_after", "ra_after", "der",
    "served_clean_acc", "served_asr", "served_ra", "der_served",  # with an input filter
    "defense_seconds",
)


def row_parts(sweep: str, row: dict[str, Any]) -> tuple[str, ...]:
    """Where a row's file is, as parts under the storage root."""
    return (sweep, RESULTS, *(f"{key}={row[key]}" for key in PARTITIONS), f"{row['trial_id']}.parquet")


def read_row(storage: str | Path | StorageRoot, sweep: str, dataset: str, model: str, trial_id: str) -> dict[str, Any] | None:
    """The row of one trial as a dict, or None when the trial has none yet (or its file is damaged)."""
    storage = open_storage(storage)
    parts = row_parts(sweep, {"dataset": dataset, "model": model, "trial_id": trial_id})
    try:
        data = storage.read_bytes(*parts)
    except FileNotFoundError:
        return None
    try:
        table = _read_table(data)
    except (pa.ArrowException, OSError) as error:  # the file's damage; the storage's errors are raised
        log.warning("row file %s cannot be read (%s); the trial is run again", storage.display(*parts), error)
        return None
    return {**table.to_pylist()[0], "dataset": dataset, "model": model}


def write_row(storage: str | Path | StorageRoot, sweep: str, row: dict[str, Any],
              types: dict[str, pa.DataType] | None = None) -> str:
    """Write one trial's row, whole or not at all, and return where it is.

    ``types`` fixes the Parquet type of columns whose value may be None (see :func:`field_types`);
    other columns take the type of their value. Data pages carry checksums, so most flipped bytes
    are found when the row is read (the footer is checked by its parse, page headers only so). Writing the same trial again replaces its file whole, so a trial run
    twice leaves one row.
    """
    storage = open_storage(storage)
    types = types or {}
    values = {k: v for k, v in row.items() if k not in PARTITIONS}
    schema = pa.schema([(k, types[k] if k in types else pa.array([v]).type) for k, v in values.items()])
    table = pa.Table.from_pylist([values], schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, write_page_checksum=True)
    parts = row_parts(sweep, row)
    storage.write_bytes(*parts, data=sink.getvalue().to_pybytes())
    return storage.display(*parts)


def _read_table(data: bytes) -> pa.Table:
    # ParquetFile.read without threads: a one-row file reads 3x faster than through read_table,
    # and files are read in parallel already (see scan_rows).
    return pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True).read(use_threads=False)


@dataclass
class RowScan:
    """Every readable row of some sweeps, and the files that could not be read.

    Attributes
    ----------
    table : one row per readable file, partition columns restored, columns unified by name
    trial_ids : ``{sweep: trial ids with a readable row}``
    damaged : display paths of row files that could not be read
    """

    table: pa.Table
    trial_ids: dict[str, set[str]] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)

    def warn(self) -> None:
        """Log the damaged files, with their count, as one warning."""
        if self.damaged:
            log.warning(
                "%d row file(s) cannot be read and are left out; their trials count as not done and "
                "`bdsweep resume` runs them again: %s", len(self.damaged), ", ".join(self.damaged),
            )


def scan_rows(storage: str | Path | StorageRoot, sweeps: list[str] | None = None) -> RowScan:
    """Read the rows of ``sweeps`` (default: every sweep under ``storage``).

    A sweep's rows are also kept in one file, ``<sweep>/snapshot/rows.parquet``, with each row's
    file and its size and modification time: a scan reads only the row files that are new or
    changed since the last one (reading 10,000 one-row files costs about a minute, the snapshot a
    second). The row files stay the truth: a snapshot that cannot be read is rebuilt from them, and
    a file is checked when it is first read (one damaged later in place, keeping its size and
    modification time, is still served from the snapshot until the snapshot is deleted).
    Files are read several at once (on an object store each is a request of its own) and checked
    (Parquet footer and page checksums); one that fails is listed in ``damaged``.
    """
    storage = open_storage(storage)
    sweeps = storage.directories() if sweeps is None else sweeps
    scan = RowScan(table=pa.table({}), trial_ids={})
    tables = []
    for sweep in sweeps:
        table, damaged = _scan_sweep(storage, sweep)
        scan.damaged += damaged
        scan.trial_ids[sweep] = {Path(path).stem for path in table.column(_FILE).to_pylist()} if table.num_rows else set()
        if table.num_rows:
            tables.append(table.drop_columns([_FILE, _STAMP]))
    if tables:
        scan.table, _ = _concat(tables)
    return scan


SNAPSHOT = ("snapshot", "rows.parquet")
_FILE, _STAMP = "_row_file", "_row_stamp"  # snapshot-only columns: which file a row came from, and its state


def _scan_sweep(storage: StorageRoot, sweep: str) -> tuple[pa.Table, list[str]]:
    """One sweep's readable rows (with the snapshot columns) and its damaged files' display paths."""
    listed = storage.files(sweep, RESULTS, suffix=".parquet", recursive=True)
    stamps = {storage.relative(info): f"{info.size}:{info.mtime_ns}" for info in listed}
    snapshot, horizon = _read_snapshot(storage, sweep)
    kept = None
    if snapshot is not None:
        # A file written in the snapshot's last second may have been rewritten since with the same
        # size and (on an object store, whole-second) time: only older files are taken from it.
        settled = [f"{storage.relative(info)}|{stamps[storage.relative(info)]}" for info in listed if info.mtime_ns < horizon]
        kept = snapshot.filter(pc.is_in(pc.binary_join_element_wise(snapshot[_FILE], snapshot[_STAMP], "|"),
                                        value_set=pa.array(settled, pa.string())))
    known = set(kept.column(_FILE).to_pylist()) if kept is not None else set()
    fresh = [path for path in stamps if path not in known]

    def read(path: str) -> pa.Table | None:
        try:
            data = storage.read_bytes(path)
        except FileNotFoundError:
            return None  # replaced or removed since the listing
        # Any other error reading (a timeout, throttling) is the storage's, not the file's: it is
        # raised, never taken for damage (that would count a finished trial as not done).
        try:
            table = _read_table(data)
        except (pa.ArrowException, OSError):  # a failed checksum is an OSError
            return pa.table({})
        for part in path.split("/"):
            key, equals, value = part.partition("=")
            if equals and key in PARTITIONS:
                table = table.append_column(key, pa.array([value] * table.num_rows))
        return table.append_column(_FILE, pa.array([path])).append_column(_STAMP, pa.array([stamps[path]]))

    # An object store is latency-bound: many requests at once. A local disk is CPU-bound: one thread
    # a core, each reading a batch (16 threads on 2 cores read 2.3x slower than 2 with batches).
    workers = (os.cpu_count() or 2) if storage.is_local else 16
    batches = [fresh[start:start + 64] for start in range(0, len(fresh), 64)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        read_now = [table for batch in pool.map(lambda paths: [read(path) for path in paths], batches) for table in batch]
    damaged = [storage.display(path) for path, table in zip(fresh, read_now) if table is not None and not table.num_rows]
    readable = {path: table for path, table in zip(fresh, read_now) if table is not None and table.num_rows}
    tables = ([kept] if kept is not None and kept.num_rows else []) + list(readable.values())
    table, mixed = _concat(tables) if tables else (pa.table({}), set())
    snapshot_keys = set() if snapshot is None else set(
        pc.binary_join_element_wise(snapshot[_FILE], snapshot[_STAMP], "|").to_pylist())
    new = any(f"{path}|{stamps[path]}" not in snapshot_keys for path in readable)
    dropped = snapshot is not None and kept.num_rows + len(readable) < snapshot.num_rows
    # A table whose mixed columns were read as text is not kept: once the old rows are rewritten,
    # the row files alone decide the types again.
    if table.num_rows and (new or dropped) and not mixed:
        _write_snapshot(storage, sweep, table, horizon=max(info.mtime_ns for info in listed) - 1_000_000_000)
    return table, damaged


def _read_snapshot(storage: StorageRoot, sweep: str) -> tuple[pa.Table | None, int]:
    """The sweep's snapshot and its horizon (ns): rows of files modified before it can be trusted."""
    try:
        table = _read_table(storage.read_bytes(sweep, *SNAPSHOT))
    except FileNotFoundError:
        return None, 0
    except (pa.ArrowException, OSError) as error:
        log.info("rebuilding the rows snapshot %s (%s)", storage.display(sweep, *SNAPSHOT), error)
        return None, 0
    horizon = int((table.schema.metadata or {}).get(b"horizon_ns", b"0"))
    return (table, horizon) if {_FILE, _STAMP} <= set(table.column_names) else (None, 0)


def _write_snapshot(storage: StorageRoot, sweep: str, table: pa.Table, horizon: int) -> None:
    sink = pa.BufferOutputStream()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"horizon_ns": str(horizon).encode()})
    pq.write_table(table, sink, write_page_checksum=True)
    try:
        storage.write_bytes(sweep, *SNAPSHOT, data=sink.getvalue().to_pybytes())
    except OSError as error:  # a read-only root still answers; the next scan reads the rows again
        log.info("could not write the rows snapshot %s (%s)", storage.display(sweep, *SNAPSHOT), error)


def _concat(tables: list[pa.Table]) -> tuple[pa.Table, set[str]]:
    """One table of ``tables`` by column name, and the columns read as text because two rows typed
    them differently.

    Rows written by this version never disagree; rows of older versions may (``'default'`` for an
    unset parameter), and must not make every query fail.
    """
    try:
        # One chunk per column: 10,000 one-row chunks made writing the snapshot take 22 s, not 0.1.
        return pa.concat_tables(tables, promote_options="permissive").combine_chunks(), set()
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        seen: dict[str, set[pa.DataType]] = {}
        for table in tables:
            for column in table.schema:
                if column.type != pa.null():
                    seen.setdefault(column.name, set()).add(column.type)
        mixed = {name for name, kinds in seen.items() if len(kinds) > 1}
        log.warning("columns with more than one type across rows are read as text: %s", ", ".join(sorted(mixed)))
        tables = [
            pa.Table.from_arrays([_as_text(table.column(name)) if name in mixed else table.column(name)
                                  for name in table.column_names], names=table.column_names)
            for table in tables
        ]
        return pa.concat_tables(tables, promote_options="permissive").combine_chunks(), mixed


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``column`` as text: Arrow's cast where it has one, JSON for lists and structs (it has none)."""
    try:
        return column.cast(pa.string())
    except pa.ArrowNotImplementedError:
        return pa.chunked_array([pa.array([None if value is None else json.dumps(value) for value in column.to_pylist()],
                                          pa.string())])


def finished_trial_ids(storage: str | Path | StorageRoot, sweep: str, warn: bool = True) -> set[str]:
    """Ids of the trials of ``sweep`` that have a readable result file (a damaged one is not done).

    ``warn`` logs the damaged files; a caller that reads the rows afterwards leaves that to the read.
    """
    scan = scan_rows(storage, [sweep])
    if warn:
        scan.warn()
    return scan.trial_ids[sweep]


# Columns ``<step label><suffix>`` that record how a step went (its time, whether it was computed,
# the key of the artifact it used), not a configuration, though the labels ``dataset`` and
# ``train`` start like configuration columns.
STEP_SUFFIXES = ("_seconds", "_computed", "_key")


def stages_sql(columns: list[str]) -> str:
    """The ``stages`` view over ``results`` with these ``columns``: a row per (trial, defense position).

    Position N's ``dN_<name>`` columns appear as ``<name>`` (``d2_tpr`` as ``tpr``), its defense's
    name as ``defense``; the trial's own columns (:data:`TRIAL_COLUMNS`, ``dataset_*``, ``train_*``)
    are repeated on each.
    """
    # The trial's identity, its metrics and the configuration that sets its model apart (dataset_*,
    # train_*), so a per-model aggregate over stages never merges two models.
    trial = [c for c in TRIAL_COLUMNS if c in columns] + [
        c for c in columns if c.startswith(("dataset_", "train_"))
        and c != "dataset_fingerprint" and not c.endswith(STEP_SUFFIXES)]  # not the steps' costs and keys
    positions = sorted({int(c[1:].split("_", 1)[0]) for c in columns if c.startswith("d") and c.endswith("_name")
                        and c[1:].split("_", 1)[0].isdigit()})
    keep = ", ".join(quote_identifier(c) for c in trial)
    if not positions:
        return f"SELECT {keep}, NULL::INTEGER AS position, NULL::VARCHAR AS defense FROM results WHERE FALSE"
    selects = []
    for position in positions:
        prefix = f"d{position}_"
        own = [c for c in columns if c.startswith(prefix) and c != f"{prefix}name"]
        renamed = "".join(f", {quote_identifier(c)} AS {quote_identifier(c.removeprefix(prefix))}" for c in own)
        selects.append(
            f"SELECT {keep}, {position} AS position, {quote_identifier(prefix + 'name')} AS defense{renamed} "
            f"FROM results WHERE {quote_identifier(prefix + 'name')} IS NOT NULL"
        )
    return " UNION ALL BY NAME ".join(selects)


def quote_identifier(column: str) -> str:
    """``column`` as a quoted SQL identifier (DuckDB), safe whatever characters it holds."""
    return '"' + column.replace('"', '""') + '"'


@dataclass
class Results:
    """A DuckDB connection with the ``results`` and ``stages`` views, the trials whose rows it holds
    and the row files left out."""

    connection: duckdb.DuckDBPyConnection
    trial_ids: set[str]
    damaged: list[str]


def open_results(storage: str | Path | StorageRoot, sweep: str | None = None, warn: bool = True) -> Results:
    """The rows under ``storage`` (or of one sweep) as the ``results`` and ``stages`` views.

    ``warn`` logs the row files left out because they cannot be read (``Results.damaged`` lists them).
    """
    storage = open_storage(storage)
    scan = scan_rows(storage, [sweep] if sweep else None)
    if not scan.table.num_rows:
        where = f"sweep {sweep!r}" if sweep else "any sweep"
        if scan.damaged:
            message = f"no readable result files for {where}: {len(scan.damaged)} cannot be read: {', '.join(scan.damaged)}"
        else:
            message = f"no result files for {where} (run a sweep first)"
        raise StorageError(storage.display(), None, message)
    if warn:
        scan.warn()
    connection = duckdb.connect()
    connection.register(RESULT_ROWS, scan.table)
    connection.execute(f"CREATE VIEW results AS SELECT * FROM {RESULT_ROWS}")
    connection.execute(f"CREATE VIEW stages AS {stages_sql(scan.table.column_names)}")
    return Results(connection, set().union(*scan.trial_ids.values()), scan.damaged)


RESULT_ROWS = "result_rows"  # the rows as read; ``results`` is a view over them
# An input filter leaves the model alone: its row's clean_acc_after, asr_after, ra_after and der
# are the model's own, and what it serves is apart (served_*, der_served).
SERVED_OUTCOMES = {"clean_acc_after": "served_clean_acc", "asr_after": "served_asr", "ra_after": "served_ra",
                   "der": "der_served"}


def read_served_outcomes(connection: duckdb.DuckDBPyConnection) -> bool:
    """Make ``results`` and ``stages`` on ``connection`` read a pipeline's defended outcome: what an
    input filter serves where one stands last, the model's own elsewhere (the summary report's
    view: a filter that rejects triggered inputs defends, though the model keeps its backdoor).

    Returns whether any served column was there to read. ``bdsweep query`` keeps both apart.
    """
    try:
        columns = [row[0] for row in connection.execute(f"DESCRIBE {RESULT_ROWS}").fetchall()]
    except duckdb.CatalogException:  # rows put behind ``results`` some other way: left as they are
        return False
    present = {after: served for after, served in SERVED_OUTCOMES.items() if after in columns and served in columns}
    if not present:
        return False
    replaced = ", ".join(f"coalesce({quote_identifier(served)}, {quote_identifier(after)}) AS {quote_identifier(after)}"
                         for after, served in present.items())
    connection.execute(f"CREATE OR REPLACE VIEW results AS SELECT * REPLACE ({replaced}) FROM {RESULT_ROWS}")
    connection.execute(f"CREATE OR REPLACE VIEW stages AS {stages_sql(columns)}")
    return True


def connect(storage: str | Path | StorageRoot, sweep: str | None = None, warn: bool = True) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the ``results`` and ``stages`` views over every row under ``storage`` (or one sweep)."""
    return open_results(storage, sweep, warn).connection


def query(storage: str | Path | StorageRoot, sql: str, sweep: str | None = None, warn: bool = True) -> pd.DataFrame:
    """Run ``sql`` against the ``results`` and ``stages`` views and return the answer as a DataFrame."""
    connection = connect(storage, sweep, warn)
    try:
        return connection.execute(sql).df()
    except duckdb.Error as error:
        raise StorageError("query", None, str(error).splitlines()[0]) from None
    finally:
        connection.close()


def load_results(storage: str | Path | StorageRoot, sweep: str, warn: bool = True) -> pd.DataFrame:
    """Every row of one sweep, ordered by trigger, poison_pct, pipeline."""
    return query(storage, "SELECT * FROM results ORDER BY trigger, poison_pct, pipeline, seed", sweep=sweep, warn=warn)


@dataclass
class SweepFrames:
    """A sweep's rows for a notebook: ``rows`` (one per trial), ``stages`` (one per trial and defense)."""

    rows: pd.DataFrame
    stages: pd.DataFrame
    damaged: list[str]


def load_sweep(storage: str | Path | StorageRoot, sweep: str) -> SweepFrames:
    """Load one sweep's ``results`` and ``stages`` views as pandas DataFrames.

    >>> from orchestrator.results import load_sweep
    >>> frames = load_sweep("runs", "quickstart")
    >>> frames.stages.query("defense == 'ac'")[["trigger", "poison_pct", "cluster_analysis", "tpr", "fpr"]]
    """
    results = open_results(storage, sweep)
    try:
        order = "ORDER BY trigger, poison_pct, pipeline, seed"
        return SweepFrames(
            rows=results.connection.execute(f"SELECT * FROM results {order}").df(),
            stages=results.connection.execute(f"SELECT * FROM stages {order}, position").df(),
            damaged=results.damaged,
        )
    finally:
        results.connection.close()
