"""The ``bus`` command line in-process: parsing, error lines, output modes, start-up cost."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bus import MemoryTransport, Runner, WorkerSettings
from bus.cli import main
from bus.cli.output import error, print_table, progress
from bus.errors import DefinitionError

ROOT = Path(__file__).resolve().parents[2]


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a console's would."""

    def isatty(self) -> bool:
        return True


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_an_unknown_flag_on_a_subcommand_prints_that_subcommands_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "dlq", "list", "--bogus")
    assert code == 2
    assert out == ""
    assert "Usage: bus dlq list [OPTIONS]" in err
    assert "Usage: bus [OPTIONS]" not in err
    assert "bus: error: No such option: --bogus (see 'bus dlq list --help')" in err.splitlines()
    code, _, err = run(capsys, "sagas", "list", "--bogus")
    assert code == 2
    assert "Usage: bus sagas list [OPTIONS]" in err


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out == f"bus {version('bus')}\n"


def test_help_lists_every_command_and_offers_shell_completion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("run", "publish", "schema", "topics", "trace", "dlq", "dev", "sagas"):
        assert f"\n  {command} " in out
    assert "--install-completion" in out
    assert "--show-completion" in out


def test_a_file_path_instead_of_a_module_gets_the_dotted_name_as_a_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "run", "handlers/demo.py")
    assert code == 2
    assert "'handlers.demo'" in err
    assert err.startswith("bus: error: ")


def test_publish_without_modules_says_to_pass_one_with_m(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import bus.registry

    monkeypatch.setattr(bus.registry.default_registry, "_models", {})
    code, _, err = run(capsys, "publish", "hr.employee.hired.v1", "--data", "{}", "--dry-run")
    assert code == 2
    assert "pass -m MODULE" in err
    assert "known: )" not in err


def test_topics_ensure_on_the_memory_transport_says_its_topics_live_in_the_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUS_TRANSPORT", raising=False)
    code, out, err = run(capsys, "topics", "ensure", "handlers.demo:apps")
    assert code == 2
    assert "created" not in out
    assert "live only inside the process" in err


def test_the_runners_definition_error_reads_as_english() -> None:
    with pytest.raises(DefinitionError) as caught:
        Runner([], MemoryTransport(), WorkerSettings())
    assert "the set of apps to run is invalid" in str(caught.value)


def test_a_piped_table_is_plain_one_line_per_row_under_its_header() -> None:
    out = io.StringIO()
    long_error = "ValueError: " + "x" * 300
    print_table(
        ["ID", "TOPIC", "ERROR"], [["ev-1", "hr.events", long_error], ["e2", "t", "-"]], stream=out
    )
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["ID", "TOPIC", "ERROR"]
    assert lines[1].split()[:2] == ["ev-1", "hr.events"]
    assert lines[1].endswith(long_error)  # never wrapped nor cut
    assert lines[2].startswith("e2 ")
    assert len(lines) == 3
    assert "\x1b[" not in out.getvalue()  # no colour
    assert not set(out.getvalue()) & set("─━│┃┏┓└┘")  # no box drawing
    assert all(line == line.rstrip() for line in lines)


def test_a_table_on_a_terminal_is_drawn_with_a_ruled_header() -> None:
    out = Terminal()
    print_table(["ID", "TOPIC"], [["ev-1", "hr.events"]], stream=out)
    assert "─" in out.getvalue() or "━" in out.getvalue()


def test_the_error_line_is_plain_when_piped_and_styled_on_a_terminal() -> None:
    piped = io.StringIO()
    error("no such thing", stream=piped)
    assert piped.getvalue() == "bus: error: no such thing\n"
    terminal = Terminal()
    error("no such thing", stream=terminal)
    assert "\x1b[" in terminal.getvalue()
    assert "bus: error:" in terminal.getvalue()
    assert "no such thing" in terminal.getvalue()


def test_progress_is_drawn_on_a_terminal_only() -> None:
    terminal = Terminal()
    with progress("replaying", total=3, stream=terminal) as update:
        for done in (1, 2, 3):
            update(done, 3)
    assert "replaying" in terminal.getvalue()
    assert "3/3" in terminal.getvalue()
    piped = io.StringIO()
    with progress("replaying", total=3, stream=piped) as update:
        update(3, 3)
    assert piped.getvalue() == ""


def test_bus_help_imports_no_runtime_and_no_rich() -> None:
    code = (
        "import sys\n"
        "from bus.cli import main\n"
        "assert main(['--help']) == 0\n"
        "assert main(['dlq', '--help']) == 0\n"
        "heavy = ('aiokafka', 'pydantic', 'aiohttp', 'rich', 'orjson', 'sagas')\n"
        "print('\\n' + __import__('json').dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_the_lazy_public_names_match_the_imports_type_checkers_see() -> None:
    import ast

    import bus

    tree = ast.parse((ROOT / "bus" / "__init__.py").read_text())
    [block] = [
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    ]
    typed = {  # `from m import a as b` is exported as b, lazily as "m:a"
        alias.asname or alias.name: (f"{node.module}:{alias.name}" if alias.asname else node.module)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert typed == bus._LAZY
    assert sorted(typed) == sorted(bus.__all__)


def test_as_pid_1_sigterm_exits_until_a_command_installs_its_own_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os
    import signal

    from bus.cli import app as cli_app

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(os, "getpid", lambda: 1)
    try:
        cli_app._exit_on_sigterm_as_pid_1()
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with pytest.raises(SystemExit) as exited:
            handler(signal.SIGTERM, None)
        assert exited.value.code == 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, before)
