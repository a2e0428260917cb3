"""``up``: a Procfile's processes as one, output prefixed, SIGTERM forwarded, a death fatal."""

from __future__ import annotations

import io
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from bus.supervise import up

ROOT = Path(__file__).resolve().parents[2]

#: A service: says it is ready on its port, exits 0 on SIGTERM.
SERVICE = """
import signal, sys
def term(*_):
    print("got TERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready on", sys.argv[1], flush=True)
while True:
    signal.pause()
"""


def procfile(tmp_path: Path, lines: dict[str, str]) -> Path:
    path = tmp_path / "Procfile"
    path.write_text("".join(f"{name}: {command}\n" for name, command in lines.items()))
    return path


def python(tmp_path: Path, name: str, code: str, *args: str) -> str:
    """The command running ``code`` (saved as ``name``.py: a Procfile line is one line)."""
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    return shlex.join([sys.executable, str(script), *args])


def test_a_process_that_ends_by_itself_stops_the_others_and_fails(tmp_path: Path) -> None:
    # the crasher ends once the service is up, so the service must be stopped, not spared
    up_file = tmp_path / "service-up"
    crasher = (
        "import pathlib, time\n"
        f"while not pathlib.Path({str(up_file)!r}).exists():\n"
        "    time.sleep(0.01)\n"
        "raise SystemExit(3)\n"
    )
    service = SERVICE.replace(
        'print("ready on"',
        f"__import__('pathlib').Path({str(up_file)!r}).touch()\nprint(\"ready on\"",
    )
    path = procfile(
        tmp_path,
        {
            "service": python(tmp_path, "service", service, "$PORT"),
            "crasher": python(tmp_path, "crasher", crasher),
        },
    )
    out = io.StringIO()
    assert up(path, base_port=7000, grace_s=10, out=out) == 1
    lines = out.getvalue().splitlines()
    assert "crasher | ended by itself with code 3: stopping the others" in lines
    assert "service | got TERM" in lines
    assert "service | exited with code 0" in lines


def test_sigterm_is_forwarded_and_a_clean_stop_exits_0(tmp_path: Path) -> None:
    service = python(tmp_path, "service", SERVICE, "$PORT")
    path = procfile(tmp_path, {"one": service, "two": service})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus.supervise", str(path), "7100"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line.rstrip("\n"))
            if {"one | ready on 7100", "two | ready on 7101"} <= set(seen):
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        seen += proc.stdout.read().splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
    for name in ("one", "two"):
        assert f"{name} | got TERM" in seen
        assert f"{name} | exited with code 0" in seen


def test_a_missing_procfile_is_one_error_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bus.supervise", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"bus: error: cannot read the Procfile {tmp_path / 'nope'}")


def test_a_killed_supervisor_leaves_no_process_behind(tmp_path: Path) -> None:
    import os
    import re

    from tests.waiting import wait_until_blocking

    path = procfile(tmp_path, {"service": python(tmp_path, "service", SERVICE, "$PORT")})
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "bus", "up", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert supervisor.stdout is not None
    pid = 0
    for line in supervisor.stdout:  # "service ... | started (pid N): ...", then "ready on"
        found = re.search(r"started \(pid (\d+)\)", line)
        pid = int(found[1]) if found else pid
        if "ready on" in line:
            break
    assert pid, "the supervisor said which pid the service has"
    supervisor.kill()  # SIGKILL: no chance to forward anything
    supervisor.wait(timeout=30)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for init counts as gone
            return stat.read().split()[2] == "Z"

    try:
        wait_until_blocking(gone, timeout_s=30, what="the orphaned service to stop")
    finally:
        if not gone():
            os.kill(pid, signal.SIGKILL)
