"""``gpuanalogy serve`` started for real, on a free port of 127.0.0.1, for the web tests."""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: Settings that make a job take seconds on two cores.
QUICK = {"ratio": "0.25", "iters": "2", "lbfgs_iters": "3"}


@dataclass
class Server:
    url: str              # http://127.0.0.1:PORT
    root: Path            # the folder of the jobs' files
    process: subprocess.Popen
    log: Path


@contextmanager
def serving(log: Path, *args: str) -> Iterator[Server]:
    """Run ``gpuanalogy serve --port 0 --device cpu ARGS`` until the block ends (then SIGINT,
    as Ctrl-C), its stderr in ``log``; yields once it prints its address."""
    with open(log, "w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "gpuanalogy", "serve", "--port", "0", "--device", "cpu",
             *args], stdout=subprocess.PIPE, stderr=errors, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line, deadline = "", time.monotonic() + 180
        while "http://" not in line:
            assert process.poll() is None, f"serve ended: {log.read_text()}"
            assert time.monotonic() < deadline, f"serve did not start: {log.read_text()}"
            if select.select([process.stdout], [], [], 0.5)[0]:
                line = process.stdout.readline()
        found = re.search(r"(http://\S+?)/ on \w+, jobs' files in (\S+) ", line)
        assert found, line
        yield Server(found.group(1), Path(found.group(2)), process, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()


def events(client, job_id: str) -> Iterator[tuple[str, dict]]:
    """A job's server-sent events, (kind, data), until the server ends the stream."""
    with client.stream("GET", f"/api/jobs/{job_id}/events", timeout=300) as response:
        assert response.status_code == 200, response.read()
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                yield kind, json.loads(line[6:])


def picture(path: Path, seed: int, shape: tuple[int, int] = (48, 64)) -> Path:
    """A small test picture: a gradient with a bright box (and noise with ``seed`` > 1)."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    rgb = np.stack([x * 3 + seed * 50, y * 4, (x + y) * 2 + seed * 30], axis=2) % 256
    rgb[10:25, 15:35] = 240 - seed * 100
    if seed > 1:
        rgb = rgb + np.random.default_rng(seed).integers(0, 40, rgb.shape)
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(path)
    return path


def truncated(path: Path, source: Path) -> Path:
    """``source`` cut to half its bytes: the header reads, the pixel data does not."""
    data = source.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path
