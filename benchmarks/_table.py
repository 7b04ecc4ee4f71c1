"""Shared benchmark helpers: time a stage, track its peak memory, print one table.

Peak memory is the process's resident set size (RSS), which is what a user's machine feels.
Two sources are combined, because neither alone is honest:

- ``getrusage(RUSAGE_SELF).ru_maxrss`` is exact (the kernel tracks it) but is the peak over the
  process's whole life: it only tells about a stage when that stage sets a new high;
- a sampling thread reads the current RSS every ``interval`` seconds during the stage, which
  sees a stage's peak even below an earlier high but can miss spikes shorter than the interval.

The reported peak is the larger of the two (``ru_maxrss`` counts only if it rose during the
stage), and ``delta`` is that peak minus the RSS when the stage began. GPU memory is not RSS:
a GPU benchmark passes its own reading (e.g. CuPy's pool high-water mark) as ``peak_override``.

    from _table import Stage, print_table
    rows = []
    with Stage("features", image_size="224x224", device="cpu") as stage:
        run()
    rows.append(stage.row)
    print_table(rows, title="VGG-19")
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

__all__ = ["Row", "Stage", "print_table", "rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size of this process, in bytes (0 when it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # noqa: PLC0415 - fallback off Linux

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        return 0


def _max_rss_bytes() -> int:
    if resource is None:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB else


@dataclass
class Row:
    """One line of a benchmark table."""

    stage: str
    seconds: float
    image_size: str
    device: str
    peak_bytes: int | None = None
    delta_bytes: int | None = None
    note: str = ""

    def memory_text(self) -> str:
        if self.peak_bytes is None:
            return "n/a"
        text = f"{self.peak_bytes / 2**20:,.0f} MiB"
        if self.delta_bytes is not None:
            text += f" (+{max(self.delta_bytes, 0) / 2**20:,.0f})"
        return text


class Stage:
    """Context manager: wall time and peak RSS of the code inside it.

    Parameters
    ----------
    name : str
    image_size : str
        e.g. ``"224x224"``.
    device : str
        e.g. ``"cpu (CPUExecutionProvider, 2 threads)"``.
    interval : float
        RSS sampling period in seconds.
    sync : callable, optional
        Called before the clock stops (e.g. ``backend.synchronize``) so queued GPU work counts.
    """

    def __init__(self, name: str, *, image_size: str, device: str, interval: float = 0.002,
                 sync: Any = None) -> None:
        self.name, self.image_size, self.device = name, image_size, device
        self.interval = interval
        self.sync = sync
        self.row: Row | None = None
        self.peak_override: int | None = None
        self._stop = threading.Event()
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, rss_bytes())

    def __enter__(self) -> Stage:
        self._start_rss = rss_bytes()
        self._start_max = _max_rss_bytes()
        self._peak = self._start_rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.sync is not None:
            self.sync()
        seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        peak = max(self._peak, rss_bytes())
        end_max = _max_rss_bytes()
        if end_max > self._start_max:  # this stage set the process's high-water mark
            peak = max(peak, end_max)
        if self.peak_override is not None:
            peak = self.peak_override
        self.row = Row(self.name, seconds, self.image_size, self.device,
                       peak if peak else None, (peak - self._start_rss) if peak else None)


def print_table(rows: list[Row], *, title: str | None = None, file: IO[str] | None = None) -> None:
    """Print ``rows`` as a fixed-width table: stage, seconds, peak memory, image size, device."""
    out = file or sys.stdout
    header = ("stage", "seconds", "peak memory (+stage)", "image size", "device")
    lines = [(r.stage + (f" [{r.note}]" if r.note else ""), f"{r.seconds:.3f}", r.memory_text(),
              r.image_size, r.device) for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(header)]
    if title:
        print(title, file=out)

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in (1, 2) else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(fmt(header), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for line in lines:
        print(fmt(line), file=out)


#: Held while a benchmark times something, so that benchmarks on one machine never overlap.
LOCK = Path("/tmp/gpuanalogy-bench.lock")


@contextmanager
def bench_lock(owner: str) -> Iterator[None]:
    """Wait while another benchmark holds :data:`LOCK`, then hold it (naming ``owner``)."""
    while True:
        try:
            fd = os.open(LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            print(f"waiting: {LOCK} exists", file=sys.stderr, flush=True)
            time.sleep(10)
    try:
        os.write(fd, f"{os.getpid()} {owner}\n".encode())
        os.close(fd)
        yield
    finally:
        LOCK.unlink(missing_ok=True)
