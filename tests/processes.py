"""Running the command line as a separate process and killing it mid-run, for resume tests."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
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
