"""Every command and example in the README runs as written.

Python blocks are executed. Every shell block (```sh, ```console) is run with bash, as a
user would in one terminal, in a scratch directory holding what the README's commands
name (`.venv` -> this environment, `handlers/`, `deploy/`), unless an HTML comment right
above it says otherwise:

    <!-- not-run: REASON -->   never run here (needs Docker, a remote database, ...)
    <!-- pending: COMMAND -->  uses a command that is not built yet: expected to fail, and
                               a failure of this test once it passes (remove the comment)
    <!-- expect: TEXT -->      the block's output, its background processes' included, must
                               contain TEXT (waited for up to a minute)

- `python3 -m venv .venv && .venv/bin/pip install -q -e SPEC &&` and a line
  `.venv/bin/pip install -q -e SPEC` would install this checkout into the environment the
  tests run in, which has it: the test checks instead that every requirement of SPEC's
  extras is installed, then runs the rest of the line.
- Lines ending in `&` start background processes (`bus run`, `bus dev broker`); once the
  block's last command returned and its expected text appeared, every process it started
  is stopped (its process group: SIGTERM, then SIGKILL).
- The fixed ports 9092 (broker) and 9400 (HTTP) are replaced by free ones, so the blocks
  run beside whatever else listens on this machine.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bus.devbroker import free_port

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SHELL = ("sh", "console", "bash", "shell")
NOTES = ("not-run", "pending", "expect")
FIXED_PORTS = ("9092", "9400")
INSTALL = re.compile(r"^(?:python3 -m venv \.venv && )?\.venv/bin/pip install -q -e (\S+)(?: && )?")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file and the notes above it."""

    line: int
    language: str
    code: str
    notes: dict[str, str] = field(default_factory=dict)


def code_blocks(text: str) -> list[Block]:
    found = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
        notes: dict[str, str] = {}
        for above in reversed(text[: match.start()].rstrip("\n").split("\n")):
            note = re.fullmatch(r"<!--\s*([\w-]+):\s*(.*?)\s*-->", above.strip())
            if note is None:
                break
            notes[note[1]] = note[2]
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(line, match[1], match[2], notes))
    return found


def blocks(language: str) -> list[str]:
    return [b.code for b in code_blocks(README) if b.language == language]


SHELL_BLOCKS = [b for b in code_blocks(README) if b.language in SHELL]
RUN_BLOCKS = [b for b in SHELL_BLOCKS if "not-run" not in b.notes]


def test_every_python_example_in_the_readme_runs() -> None:
    examples = [
        b.code for b in code_blocks(README) if b.language == "python" and "not-run" not in b.notes
    ]
    assert examples
    for code in examples:
        # dont_inherit: run each example as its own script, without this module's
        # `from __future__ import annotations` (pydantic resolves real annotations there)
        exec(compile(code, "README.md", "exec", dont_inherit=True), {"__name__": "readme_example"})


def test_every_python_example_moved_from_the_readme_to_docs_handlers_runs() -> None:
    doc = (ROOT / "docs" / "handlers.md").read_text()
    examples = [b.code for b in code_blocks(doc) if b.language == "python"]
    assert len(examples) >= 2  # batch handlers on a virtual clock; retry policies
    for code in examples:
        exec(compile(code, "docs/handlers.md", "exec", dont_inherit=True), {"__name__": "doc"})


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    commands = [b.strip() for b in blocks("sh")]
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command == (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
        ".venv/bin/python -m pytest"
    )
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
    assert re.match(r"9 sagas: 1 compensated, 7 completed, 1 failed in [\d.]+s$", last), last
    timeline = done.stdout
    for needle in ("manager_approval         completed", "compensation_sent", "COMPENSATED"):
        assert needle in timeline


def test_every_shell_block_of_the_readme_is_run_or_says_why_not() -> None:
    assert SHELL_BLOCKS
    for block in SHELL_BLOCKS:
        where = f"README.md:{block.line}"
        assert set(block.notes) <= set(NOTES), f"{where}: unknown note {sorted(block.notes)}"
        for name, text in block.notes.items():
            assert text, f"{where}: <!-- {name}: ... --> needs a reason or a text"
    # the marker cannot swallow the README: most of its commands run
    assert len(RUN_BLOCKS) >= len(SHELL_BLOCKS) / 2


def installed_extras_problems(spec: str) -> list[str]:
    """What of ``pip install -e SPEC`` (`.` or `'.[a,b]'`) is missing from this environment."""
    extras = re.findall(r"[\w-]+", spec.strip("'\"").partition("[")[2])
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    missing: list[str] = []
    for extra in extras:
        assert extra in declared["optional-dependencies"], f"pyproject.toml has no extra {extra!r}"
        for requirement in declared["optional-dependencies"][extra]:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement)
            assert name is not None
            if name[0] == "bus":
                missing += installed_extras_problems(requirement[3:])
                continue
            try:
                importlib.metadata.version(name[0])
            except importlib.metadata.PackageNotFoundError:
                missing.append(f"{name[0]} (extra {extra!r})")
    return missing


def shell_script(block: Block) -> str:
    """The block's commands as bash runs them here: installs checked, ports made free."""
    lines = block.code.splitlines()
    if block.language == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    script = []
    for line in lines:
        install = INSTALL.match(line)
        if install:
            missing = installed_extras_problems(install[1])
            assert not missing, f"README.md:{block.line} installs {missing}: not installed here"
            line = line[install.end() :]
        script.append(line)
    text = "\n".join(script) + "\n"
    for port in FIXED_PORTS:
        text = re.sub(rf"\b{port}\b", str(free_port()), text)
    return text


def scratch_directory(tmp_path: Path) -> Path:
    """A directory like the clone the README's commands run in, without writing into it."""
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    for name in ("handlers", "deploy"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def stop_group(pgid: int) -> None:
    """SIGTERM every process the block started (they share its process group), then KILL."""
    for sig, grace_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def run_block(block: Block, directory: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """Run the block; its exit code (None: timed out) and its output once expected text shows."""
    log = directory / "output.log"
    with log.open("wb") as out:
        bash = subprocess.Popen(
            ["bash", "-e", "-c", shell_script(block)],
            cwd=directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            try:
                code: int | None = bash.wait(timeout=240)
            except subprocess.TimeoutExpired:
                code = None
            expected = block.notes.get("expect") if code == 0 else None
            deadline = time.monotonic() + 60
            while expected and expected not in log.read_text(errors="replace"):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            stop_group(bash.pid)
    return code, log.read_text(errors="replace")


def block_param(block: Block) -> object:
    marks = [pytest.mark.kafka] if "kafka" in block.code else []
    return pytest.param(block, id=f"README.md:{block.line}", marks=[pytest.mark.slow, *marks])


@pytest.mark.parametrize("block", [block_param(b) for b in RUN_BLOCKS])
def test_the_readmes_shell_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    pending = block.notes.get("pending")
    if pending:
        env["BUS_KAFKA_CONNECT_TIMEOUT_S"] = "5"  # a command that does not exist yet fails fast
    code, output = run_block(block, scratch_directory(tmp_path), env)
    expected = block.notes.get("expect")
    works = code == 0 and (not expected or expected in output)
    if pending and not works:
        pytest.xfail(f"pending: {pending} (README.md:{block.line})")
    assert not pending, (
        f"README.md:{block.line} runs now: remove its <!-- pending: {pending} --> comment"
    )
    assert code == 0, f"README.md:{block.line} exited {code}:\n{output[-3000:]}"
    assert not expected or expected in output, (
        f"README.md:{block.line}: {expected!r} not in its output:\n{output[-3000:]}"
    )
