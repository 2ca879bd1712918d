"""CI runs what README tells a new machine to run: its second command, verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The commands of README's "Two commands for a new machine" section, in order."""
    readme = (REPOSITORY / "README.md").read_text()
    section = readme.split("## Two commands for a new machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)]


def test_ci_runs_readmes_test_command_verbatim():
    commands = readme_commands()
    assert len(commands) == 2 and "pytest" in commands[1], commands
    ci = (REPOSITORY / ".ci" / "run").read_text()
    # .ci/run names the interpreter through $PYTHON (python3.11 unless set), as README's python3.11.
    assert commands[1].replace("python3.11 ", "$PYTHON ", 1) in ci.splitlines()
