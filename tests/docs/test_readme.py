"""The README's examples run, and its two commands are the ones that work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_every_python_example_in_the_readme_runs() -> None:
    examples = blocks("python")
    assert examples
    for code in examples:
        # dont_inherit: run each example as its own script, without this module's
        # `from __future__ import annotations` (pydantic resolves real annotations there)
        exec(compile(code, "README.md", "exec", dont_inherit=True), {"__name__": "readme_example"})


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    commands = [b.strip() for b in blocks("sh")]
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_the_readmes_main_command_onboards_every_hire_as_its_scenario_expects() -> None:
    main = next(c for c in (b.strip() for b in blocks("sh")) if "pytest" not in c)
    setup, _, bus_args = main.rpartition("&& .venv/bin/bus ")
    assert setup == "python3 -m venv .venv && .venv/bin/pip install -q -e . "
    # the installed console script is this environment's `python -m bus`
    done = subprocess.run(
        [sys.executable, "-m", "bus", *bus_args.split()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert re.match(r"5 sagas: 1 compensated, 3 completed, 1 failed in [\d.]+s$", last), last
    timeline = done.stdout
    for needle in ("manager_approval         completed", "compensation_sent", "COMPENSATED"):
        assert needle in timeline
