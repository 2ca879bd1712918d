"""The ``bdsweep`` command line: a thin layer over :mod:`orchestrator.sweep` and :mod:`orchestrator.results`."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, Optional

import pandas as pd
import typer

from orchestrator.errors import StorageError, UserError
from orchestrator.storage import StorageRoot, open_storage

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Grid searches of backdoor attacks and defenses on Ray Tune.")


@app.callback()
def _warnings_on_stderr() -> None:
    """Warnings from bdsweep's modules (a row file that cannot be read) as one line each on stderr."""
    logger = logging.getLogger("bdsweep")
    if not any(isinstance(handler, _StderrLines) for handler in logger.handlers):
        handler = _StderrLines(logging.WARNING)
        handler.setFormatter(logging.Formatter("bdsweep: warning: %(message)s"))
        logger.addHandler(handler)


class _StderrLines(logging.Handler):
    # Looks sys.stderr up per line (as typer.echo does), so a replaced stderr is honoured.
    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(self.format(record), err=True)

def _storage_root(value: str) -> StorageRoot:
    try:
        return open_storage(value)
    except UserError as error:
        raise typer.BadParameter(error.message) from None


STORAGE = typer.Option(
    "runs", "--storage", parser=_storage_root,
    help="Storage root every node sees: a directory (local, NFS/EFS mount) or an object store "
         "(s3://bucket/prefix[?region=...]): artifacts in cache/, each sweep in <name>/.",
)
SUMMARY_COLUMNS = [
    "trigger", "poison_pct", "seed", "pipeline", "clean_acc_before", "asr_before", "clean_acc_after", "asr_after",
    "d1_removed_total", "d1_tpr", "d1_fpr",
]


def _fail(error: UserError) -> NoReturn:
    typer.echo(f"bdsweep: error: {error}", err=True)
    raise typer.Exit(2)


def _check_environment() -> None:
    """Exit 2 with one line for a setting in the environment that the sweep would fail on later."""
    from orchestrator.ray_watch import gcs_patience_s

    try:
        gcs_patience_s()
    except ValueError as error:
        typer.echo(f"bdsweep: error: {error}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def _reported(storage: StorageRoot):
    """Exit 2 with one line for a user's mistake, or for storage that cannot be read or written."""
    try:
        yield
    except UserError as error:
        _fail(error)
    except OSError as error:  # e.g. access denied to the bucket
        _fail(StorageError(storage.display(), None, f"cannot be read or written: {error}"))


def _print_table(frame: pd.DataFrame) -> None:
    with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200,
                           "display.float_format", "{:.3f}".format):
        typer.echo(frame.to_string(index=False))


def _sweep_name(name: Optional[str]) -> Optional[str]:
    # The name becomes a directory under the storage root: no separators, no "..".
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise typer.BadParameter("letters, digits, '_', '.' and '-' only, starting with a letter or digit")
    return name


MAX_CONCURRENT = typer.Option(None, "--max-concurrent", min=1, help="At most this many trials at once.")
ADDRESS = typer.Option(None, "--address", help="Ray cluster address (default: a local Ray on 127.0.0.1).")
MAX_FAILURES = typer.Option(
    2, "--max-failures", min=0, help="Retries of a trial whose worker or node died (or that raised)."
)


@app.command()
def run(
    space_file: Path = typer.Argument(..., help="Search-space YAML file."),
    storage: StorageRoot = STORAGE,
    name: Optional[str] = typer.Option(None, help="Sweep name (default: the space's name).", callback=_sweep_name),
    max_concurrent: Optional[int] = MAX_CONCURRENT,
    address: Optional[str] = ADDRESS,
    max_failures: int = MAX_FAILURES,
    resume: bool = typer.Option(False, "--resume", help="Continue the sweep of that name (same space) if it exists."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the trial count and unique stages, run nothing."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Each trial computes its whole pipeline alone, sharing and keeping no artifact "
        "(the naive orchestrator, for comparison)."),
) -> None:
    """Expand SPACE_FILE into trials and run them; a sweep name that exists needs --resume."""
    from orchestrator.search_space import load_search_space
    from orchestrator.sweep import check_not_started, plan_sweep, record_sweep

    _check_environment()
    with _reported(storage):
        _methods()  # every plugin loads, and fits beside the others, before anything else happens
        space, trials = load_search_space(space_file)
        if not (resume or dry_run):
            check_not_started(storage, name or space.name)
        plan = plan_sweep(trials, storage, name or space.name, space.resources)
        typer.echo(plan.describe())
        if dry_run:
            return
        record_sweep(plan, space_file)
    _launch(plan, max_concurrent, address, max_failures, resume, shared_cache=not no_cache)


@app.command()
def resume(
    name: str = typer.Argument(..., help="Sweep name."),
    storage: StorageRoot = STORAGE,
    max_concurrent: Optional[int] = MAX_CONCURRENT,
    address: Optional[str] = ADDRESS,
    max_failures: int = MAX_FAILURES,
) -> None:
    """Continue an interrupted sweep: restore Tune's experiment, restart errored trials, run what has no row."""
    from orchestrator.sweep import recorded_sweep

    _check_environment()
    with _reported(storage):
        _methods()
        plan = recorded_sweep(storage, name)
    typer.echo(plan.describe())
    _launch(plan, max_concurrent, address, max_failures, resume=True)


def _launch(plan, max_concurrent, address, max_failures, resume, shared_cache: bool = True) -> None:
    from orchestrator.results import load_results
    from orchestrator.sweep import launch, results_location

    # When Ray dies under the sweep, launch does not return: orchestrator.ray_watch ends the
    # driver with one line and status 1 (Ray itself would hang or end it with its own message).
    failed = launch(plan, max_concurrent=max_concurrent, address=address, echo=typer.echo,
                    max_failures=max_failures, resume=resume, shared_cache=shared_cache)
    report_failed = False
    if failed < len(plan.trials):
        frame = load_results(plan.storage, plan.name)
        typer.echo("")
        _print_table(frame[[c for c in SUMMARY_COLUMNS if c in frame.columns]])
        typer.echo(f"\n{len(frame)} result rows in {results_location(plan)}")
        try:
            _write_report(plan.storage, plan.name)
        except Exception as error:
            # The rows are safe, and the sweep's outcome is still printed; but a sweep whose report
            # breaks has not done its job, so the command fails (its traceback above the line).
            report_failed = True
            typer.echo(traceback.format_exc().rstrip(), err=True)
            typer.echo(f"bdsweep: error: the report could not be written ({type(error).__name__}: {error}); "
                       f"`bdsweep report {plan.name}` tries again", err=True)
    if failed:
        typer.echo(f"bdsweep: {failed} trial(s) failed; `bdsweep resume {plan.name}` retries them", err=True)
    if failed or report_failed:
        raise typer.Exit(1)


@app.command()
def query(sql: str = typer.Argument(..., help='SQL over the "results" view, e.g. "SELECT * FROM results".'),
          storage: StorageRoot = STORAGE) -> None:
    """Run SQL (DuckDB) over every result row under the storage root."""
    from orchestrator.results import query as run_query

    with _reported(storage):
        _print_table(run_query(storage, sql))


def _write_report(storage: StorageRoot, name: str, out: Optional[Path] = None,
                  budgets: tuple[float, ...] | None = None) -> None:
    from orchestrator.report.sweep_report import DEFAULT_BUDGETS, write_sweep_report

    written = write_sweep_report(storage, name, out, budgets or DEFAULT_BUDGETS)
    partial = f" (partial: {written.facts.progress})" if written.facts.partial else ""
    typer.echo(f"report{partial}: {written.location}")


@app.command()
def report(
    name: str = typer.Argument(..., help="Sweep name."),
    storage: StorageRoot = STORAGE,
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of <storage>/<NAME>/report/."),
    budget: Optional[list[float]] = typer.Option(
        None, "--budget", min=0, help="Clean-accuracy drop in percentage points the guidelines allow (repeatable; default 1, 2, 5).",
    ),
) -> None:
    """Write the sweep's summary report: index.html (self-contained), report.md with figures, summary/*.parquet."""
    with _reported(storage):
        _write_report(storage, name, out, tuple(budget) if budget else None)


@app.command()
def findings(
    name: str = typer.Argument(..., help="Sweep name (thesis_study for the README)."),
    storage: StorageRoot = STORAGE,
    study: str = typer.Option("thesis", "--study", help="Whose findings: thesis or leaderboard."),
    readme: Path = typer.Option(Path("README.md"), "--readme", help="Markdown file holding the study's findings markers."),
    figures: Path = typer.Option(Path("docs/findings"), "--figures", help="Folder for the study's PNG figures."),
) -> None:
    """Write a study's findings of the sweep (tables and figures) into README's block between that study's markers."""
    from orchestrator.studies import findings_writers
    from orchestrator.studies.findings import write_findings

    writers = findings_writers()
    if study not in writers:
        raise typer.BadParameter(f"unknown study {study!r}; known: {', '.join(sorted(writers))}", param_hint="--study")
    with _reported(storage):
        written = write_findings(storage, name, writers[study], readme, figures)
    typer.echo(f"findings of {written.n_trials} trials: {readme}, " + ", ".join(str(p) for p in written.figures))


@app.command()
def status(name: str = typer.Argument(..., help="Sweep name."), storage: StorageRoot = STORAGE) -> None:
    """How far a sweep is: trials done, running, errored and pending; stages computed and reused."""
    from orchestrator.status import sweep_status

    with _reported(storage):
        typer.echo(sweep_status(storage, name))


@app.command()
def triggers(
    dataset: str = typer.Option(..., "--dataset", help="Dataset name (synthetic_faces, digits, gtsrb, ...)."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    n: int = typer.Option(4, "--n", min=1, max=64, help="Sample images (rows)."),
    root: Optional[str] = typer.Option(None, "--root", help="Folder (or URI) of a dataset read from disk."),
    trigger: Optional[list[str]] = typer.Option(
        None, "--trigger", help=("Show this attack (repeatable): a name, png:<file>.png, or a search space's entry "
                                 "such as '{blend: {alpha: [0.1, 0.3]}}' (lists draw each value). Default: the "
                                 "dataset's triggers and every other registered attack at its defaults."),
    ),
    seed: int = typer.Option(0, help="Picks the sample images."),
) -> None:
    """Render a gallery PNG: sample images of DATASET clean and under each attack (poison, cover, test input)."""
    from orchestrator.gallery import dataset_config, default_attacks, parse_attacks, render_gallery
    from tasks.datasets import load_dataset

    _methods()
    try:
        config = dataset_config(dataset, root)
        specs = parse_attacks(trigger) if trigger else default_attacks(dataset)
    except (ValueError, UserError) as error:
        raise typer.BadParameter(str(error)) from None
    try:
        gallery = render_gallery(load_dataset(config), specs, out, n=n, seed=seed)
    except UserError as error:
        _fail(error)
    placed = "; ".join(
        f"{name}: " + ", ".join(f"{count} {how}" for how, count in counts.items())
        for name, counts in gallery.placements.items()
    )
    typer.echo(f"wrote {gallery.path} ({len(gallery.triggers)} attacks in {len(gallery.columns)} columns x "
               f"{len(gallery.sample_index)} images)")
    if placed:
        typer.echo(f"placement: {placed}")


def _methods():
    """The method registry, built-ins and plugins (RegistryError, exit 2, when a plugin does not load)."""
    from tasks.registry import registry

    return registry()


LIST_KINDS = ("attacks", "defenses", "datasets", "models")


@app.command("list")
def list_methods(
    what: Optional[str] = typer.Argument(None, help="attacks, defenses, datasets or models (default: all)."),
) -> None:
    """Every method a search space can name: its kind, parameters (type, default), metrics and package."""
    from orchestrator.method_list import describe_datasets, describe_methods, describe_models

    if what is not None and what not in LIST_KINDS:
        raise typer.BadParameter(f"one of {', '.join(LIST_KINDS)}", param_hint="WHAT")
    try:
        registry = _methods()
    except UserError as error:
        _fail(error)
    parts = {
        "attacks": lambda: describe_methods("attacks (attack.trigger)", registry.attacks.values()),
        "defenses": lambda: describe_methods("defenses", registry.defenses.values()),
        "datasets": describe_datasets,
        "models": describe_models,
    }
    typer.echo("\n".join(parts[kind]() for kind in ([what] if what else LIST_KINDS)).rstrip())


cluster_app = typer.Typer(no_args_is_help=True, help="Ray cluster-launcher files.")
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("validate")
def cluster_validate(cluster_file: Path = typer.Argument(..., help="Cluster-launcher YAML (cluster.yaml).")) -> None:
    """Run Ray's offline checks of CLUSTER_FILE (what `ray up` checks first) and bdsweep's own."""
    from orchestrator.cluster import validate_cluster_file

    try:
        check = validate_cluster_file(str(cluster_file))
    except UserError as error:
        _fail(error)
    node = check.config["available_node_types"][check.gpu_worker]
    typer.echo(
        f"{cluster_file}: valid. GPU workers: {check.gpu_worker!r} ({node['resources']}, "
        f"{node.get('min_workers', 0)}..{node['max_workers']} nodes); storage {check.storage}, which every node reaches"
    )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
