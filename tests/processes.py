"""Running the command line as a separate process: killing it mid-run, for resume tests, and
measuring its peak memory, for hostile-input tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def kill_when(command: list[str], log: Path, ready: Callable[[], bool], *, seconds: float,
              too_long: str) -> None:
    """Start ``command`` (output to ``log``), wait until ``ready()`` holds, then SIGKILL it.

    Fails the test when the process ends first (showing its log) or when ``seconds`` pass
    (with the message ``too_long``).
    """
    with open(log, "w") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + seconds
            while not ready():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, too_long
                time.sleep(0.02)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Finished:
    """How a command ended: its exit status, what it printed, its peak resident memory, and
    whether it was sent a signal."""

    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int
    signalled: bool = False


def run_measured(args: list[str], *, seconds: float = 300) -> Finished:
    """Run ``python -m gpuanalogy ARGS`` and measure its peak resident set size.

    The figure is the kernel's own (``wait4``'s ``ru_maxrss``) for that process, so no short
    spike is missed. The process is killed after ``seconds``.
    """
    return signal_when(args, lambda _log: False, seconds=seconds)


# Starts the command and waits for it, passing SIGTERM and SIGINT on, then writes its exit
# status and peak RSS (KiB on Linux) to the file named first. Linux counts in a child's peak the
# pages of the process it was forked from, so the command is forked from this small process,
# never from the test's (which may hold gigabytes). The handlers are set before the fork: a
# handled signal starts at its default in the command, while an ignored one would stay ignored
# (as SIGINT is for the tests of a make run in the background of a non-interactive shell).
_MEASURE = """
import os, signal, subprocess, sys
children = []
for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda number, _frame: [c.send_signal(number) for c in children])
child = subprocess.Popen(sys.argv[2:])
children.append(child)
_pid, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def signal_when(args: list[str], ready: Callable[[str], bool], *,
                signum: int = signal.SIGTERM, seconds: float = 300) -> Finished:
    """Run ``python -m gpuanalogy ARGS``; once ``ready(stderr so far)`` holds, send ``signum``.

    Returns how it ended, with its peak resident set size (as :func:`run_measured`) and whether
    it was ready in time to be signalled; it is killed (and the test fails) after ``seconds``.
    """
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile() as err, \
            tempfile.NamedTemporaryFile() as report:
        process = subprocess.Popen([sys.executable, "-c", _MEASURE, report.name, sys.executable,
                                    "-m", "gpuanalogy", *args], stdout=out, stderr=err,
                                   start_new_session=True)
        watchdog = threading.Timer(seconds, os.killpg, (process.pid, signal.SIGKILL))
        watchdog.start()
        signalled = False
        try:
            while process.poll() is None:
                if not signalled and ready(Path(err.name).read_text(errors="replace")):
                    process.send_signal(signum)
                    signalled = True
                time.sleep(0.05)
        finally:
            watchdog.cancel()
        written = Path(report.name).read_text().split()
        assert written, f"killed after {seconds} s: {Path(err.name).read_text()[-2000:]}"
        status, peak_kib = (int(word) for word in written)
        out.seek(0)
        err.seek(0)
        return Finished(status, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"), peak_kib * 1024, signalled)
