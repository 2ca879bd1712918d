"""Sweep progress: plain lines off a terminal, one live bar on it; the callbacks survive Tune's pickling."""

from __future__ import annotations

import io
import pickle
from types import SimpleNamespace

import pytest
from ray import cloudpickle
from rich.console import Console

from orchestrator.progress import SweepProgress, format_duration
from orchestrator.ray_watch import RayWatch
from orchestrator.storage import open_storage
from orchestrator.trainable import write_error

LABELS = {"t1": "yellow_square 4% seed=0 none", "t2": "yellow_square 4% seed=0 ac(x)", "t3": "white_square 4% seed=0 none",
          "t4": "white_square 4% seed=0 ac(x)"}


def trial(trial_id: str, result: dict | None = None, num_failures: int = 0):
    """What the callback reads of a Tune trial."""
    return SimpleNamespace(config={"trial_id": trial_id}, last_result=result, num_failures=num_failures,
                           get_error=lambda: "Traceback ...\nRuntimeError: worker died", path="/tune/t")


def result(n_stages_computed: int, **extra) -> dict:
    return {"clean_acc_after": 0.95, "asr_after": 0.1, "n_stages_computed": n_stages_computed, **extra}


def drive(progress: SweepProgress, storage) -> None:
    """Four trials: one computed, one wholly from the cache, one retried then failed, one had its row."""
    progress.setup()
    for trial_id in LABELS:
        progress.on_trial_start(0, [], trial(trial_id))
    progress.on_trial_complete(0, [], trial("t1", result(3)))
    progress.on_trial_complete(0, [], trial("t3", result(0)))
    progress.on_trial_recover(0, [], trial("t2", num_failures=1))
    write_error(storage, "sw", "t2", "Traceback (most recent call last):\nValueError: no layer named 'x'")
    progress.on_trial_error(0, [], trial("t2", num_failures=2))
    progress.on_trial_complete(0, [], trial("t4", result(0, had_row=True)))
    progress.on_experiment_end([])


def test_off_a_terminal_every_trial_event_is_a_line(tmp_path):
    storage, lines = open_storage(tmp_path), []
    progress = SweepProgress(storage, "sw", LABELS, lines.append, console=Console(file=io.StringIO()))
    drive(progress, storage)
    assert lines[:4] == [f"  started   {label}" for label in LABELS.values()]
    assert lines[4:] == [
        "[1/4] done yellow_square 4% seed=0 none: clean_acc 0.950, asr 0.100, 3 stages computed",
        "[2/4] done white_square 4% seed=0 none: clean_acc 0.950, asr 0.100, 0 stages computed",
        "  retrying  yellow_square 4% seed=0 ac(x) (failure 1)",
        "[2/4] FAILED yellow_square 4% seed=0 ac(x): ValueError: no layer named 'x'\n"
        f"    traceback: {storage.display('sw', 'errors', 't2.txt')}",
        # Its row was counted before this launch (none here): the count stays.
        "[2/4] done white_square 4% seed=0 ac(x): clean_acc 0.950, asr 0.100, its row was written before",
    ]


def test_on_a_terminal_one_bar_shows_counts_and_failures_print_above_it(tmp_path):
    storage, lines, screen = open_storage(tmp_path), [], io.StringIO()
    console = Console(file=screen, force_terminal=True, force_interactive=True, width=200, color_system=None)
    progress = SweepProgress(storage, "sw", LABELS, lines.append, console=console)
    drive(progress, storage)
    assert lines == []  # nothing went the plain way
    shown = screen.getvalue()
    assert "started" not in shown and " done yellow" not in shown  # no line per trial
    assert "FAILED yellow_square 4% seed=0 ac(x): ValueError: no layer named 'x'" in shown
    assert storage.display("sw", "errors", "t2.txt") in shown
    final = shown.rsplit("sweep sw", 1)[1]  # the bar as last drawn, at the experiment's end
    assert "2/4 done" in final and "1 from cache" in final and "1 failed" in final and "0 running" in final
    assert "━" in final  # the bar itself
    assert progress._live is None  # stopped: the cursor is back


def test_rate_and_eta_count_this_launch_only():
    progress = SweepProgress(None, "sw", {str(i): str(i) for i in range(10)})
    progress.rows_at_start, progress.rows, progress.failed, progress.total = 1, 3, 1, 10
    progress.cache_hits, progress.running, progress.started_at = 0, 2, 100.0
    # 2 trials in 1 minute; 10 - 3 done - 1 failed = 6 left: 3 minutes.
    assert progress.summary(now=160.0) == "3/10 done · 2.0/min · ETA 0:03:00 · 0 from cache · 2 running · 1 failed"
    progress.rows = 1
    assert progress.summary(now=160.0).startswith("1/10 done · -/min · ETA --:--")


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.6, 245, 97200)] == ["0:00:00", "0:01:00", "0:04:05", "27:00:00"]


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_callbacks_survive_tunes_pickling_without_their_display(tmp_path, dumps):
    storage, screen = open_storage(tmp_path), io.StringIO()
    console = Console(file=screen, force_terminal=True, force_interactive=True)
    progress = SweepProgress(storage, "sw", LABELS, print, console=console)
    progress.setup()  # a live bar running: it is not what gets pickled
    try:
        copy = pickle.loads(dumps(progress))
    finally:
        progress.close()
    assert (copy.name, copy.labels, copy.echo) == ("sw", LABELS, print)
    assert copy._live is None and copy._console is None
    lines = []
    copy.echo = lines.append
    copy.setup()  # stdout is not a terminal under pytest: plain lines
    copy.on_trial_complete(0, [], trial("t1", result(2)))
    assert lines == ["[1/4] done yellow_square 4% seed=0 none: clean_acc 0.950, asr 0.100, 2 stages computed"]

    watch = pickle.loads(dumps(RayWatch("sw", interval=0.5)))
    assert (watch.sweep, watch.interval, watch.on_lost) == ("sw", 0.5, None)
