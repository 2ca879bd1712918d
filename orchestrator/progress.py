"""A sweep's progress for people: one live bar on a terminal, a line per trial event elsewhere.

On a terminal the bar shows trials done out of all the sweep's trials, the rate and the time left
(both measured over this launch), the trials whose stages all came from the cache, the running
and the failed ones; a failure also prints its line, with the path of its traceback, above the
bar. Elsewhere (CI, a log file, tests) every trial started, done, retried or failed prints the
line it always did:

    [3/8] done yellow_square 4% seed=0 none: clean_acc 0.951, asr 0.988, 5 stages computed
    [3/8] FAILED yellow_square 4% seed=0 ac(...): ValueError: ...
        traceback: runs/quickstart/errors/<trial_id>.txt
"""

from __future__ import annotations

import atexit
import time
from typing import Callable

from ray import tune
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.results import finished_trial_ids
from orchestrator.storage import StorageRoot
from orchestrator.trainable import error_file, last_line


class SweepProgress(tune.Callback):
    """Tune callback reporting a sweep's trials; ``labels`` names each trial id for people.

    Parameters
    ----------
    storage, name : the sweep whose rows count as done
    labels : {trial_id: label} for every trial of the sweep (its length is the total)
    echo : where plain lines go (``print``, ``typer.echo``, a list's ``append``)
    console : the rich Console a bar is drawn on; None: one on stdout, made at setup. The bar is
        drawn only where that console is interactive (a terminal; rich's ``TTY_INTERACTIVE``
        overrides), else plain lines go to ``echo``.

    Tune pickles the callback with its experiment and a restored experiment uses that copy, so
    what belongs to one process (the console, the live display) is made at setup, never pickled.
    """

    def __init__(self, storage: StorageRoot, name: str, labels: dict[str, str],
                 echo: Callable[[str], None] = print, console: Console | None = None):
        self.storage, self.name, self.labels, self.echo = storage, name, labels, echo
        self._console = console
        self._live: Live | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_console"] = state["_live"] = None
        return state

    # Counting -------------------------------------------------------------------------------

    def setup(self, **info) -> None:
        # Rows are counted once per launch, then one per finished trial (a glob per trial would
        # read the whole results tree thousands of times).
        self.rows = self.rows_at_start = len(finished_trial_ids(self.storage, self.name))
        self.total = len(self.labels)
        self.cache_hits = self.failed = self.running = 0
        self.started_at = time.monotonic()
        console = self._console or Console()
        if console.is_interactive:
            self._live = Live(get_renderable=self.render, console=console, refresh_per_second=2, transient=False)
            self._live.start()
            # The bar hides the cursor; give it back however the driver ends.
            atexit.register(self.close)

    def label(self, trial) -> str:
        return self.labels.get(trial.config["trial_id"], trial.config["trial_id"])

    def counter(self) -> str:
        return f"[{self.rows}/{self.total}]"

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running += 1
        self._plain(f"  started   {self.label(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.running = max(0, self.running - 1)
        result = trial.last_result or {}
        # A trial with a row from before (Tune ran it again after a restore) was counted at setup.
        if not result.get("had_row"):
            self.rows += 1
            self.cache_hits += result.get("n_stages_computed") == 0
        computed = "its row was written before" if result.get("had_row") else (
            f"{result.get('n_stages_computed', '?')} stages computed"
        )
        self._plain(
            f"{self.counter()} done {self.label(trial)}: "
            f"clean_acc {result.get('clean_acc_after', float('nan')):.3f}, "
            f"asr {result.get('asr_after', float('nan')):.3f}, {computed}"
        )

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.running = max(0, self.running - 1)  # it starts again later
        self._plain(f"  retrying  {self.label(trial)} (failure {trial.num_failures})")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.running = max(0, self.running - 1)
        self.failed += 1
        traceback_file = error_file(self.name, trial.config["trial_id"])
        try:
            text, where = self.storage.read_text(*traceback_file), self.storage.display(*traceback_file)
        except FileNotFoundError:
            text, where = trial.get_error(), trial.path
        self._always(f"{self.counter()} FAILED {self.label(trial)}: {last_line(text)}\n    traceback: {where}")

    def on_experiment_end(self, trials, **info) -> None:
        self.close()

    # Showing --------------------------------------------------------------------------------

    def _plain(self, line: str) -> None:
        """A line only where there is no bar."""
        if self._live is None:
            self.echo(line)

    def _always(self, line: str) -> None:
        """A line in either mode: above the bar on a terminal."""
        if self._live is None:
            self.echo(line)
        else:
            self._live.console.print(Text(line))

    def summary(self, now: float | None = None) -> str:
        """``12/40 done · 2.0/min · ETA 0:14:00 · 3 from cache · 2 running · 1 failed``.

        Rate and ETA count only this launch's trials (rows from before took no time here); the
        ETA is for the trials that neither finished nor failed.
        """
        now = time.monotonic() if now is None else now
        finished_here = self.rows - self.rows_at_start
        minutes = max(now - self.started_at, 1e-9) / 60
        rate = finished_here / minutes
        left = self.total - self.rows - self.failed
        eta = format_duration(left / rate * 60) if rate > 0 else "--:--"
        parts = [f"{self.rows}/{self.total} done", f"{rate:.1f}/min" if finished_here else "-/min", f"ETA {eta}",
                 f"{self.cache_hits} from cache", f"{self.running} running", f"{self.failed} failed"]
        return " · ".join(parts)

    def render(self) -> Table:
        """The bar and its summary, one line: what the live display redraws twice a second."""
        grid = Table.grid(padding=(0, 1))
        grid.add_row(Text(f"sweep {self.name}"), ProgressBar(total=max(self.total, 1), completed=self.rows, width=30),
                     Text(self.summary()))
        return grid

    def close(self) -> None:
        """Stop the live bar (drawn once more, final); nothing when there is none."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()
            atexit.unregister(self.close)


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (``0:04:05``); days are hours (``27:00:00``)."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
