"""Progress on stderr: one line per stage for ``run``, a status line with an ETA for ``batch``;
and notices, one plain line each (``gpuanalogy: notice: ...``)."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import Notice

if TYPE_CHECKING:
    from ..pipeline import Progress

__all__ = ["ProgressPrinter", "BatchProgress", "format_duration", "print_written",
           "notice_line", "print_notice", "showing_notices"]


def notice_line(text: str) -> str:
    """How the command line shows a notice: ``gpuanalogy: notice: <text>`` on one line."""
    return "gpuanalogy: notice: " + " ".join(text.split())


def print_notice(text: str) -> None:
    print(notice_line(text), file=sys.stderr, flush=True)


@contextlib.contextmanager
def showing_notices(show: Callable[[str], None]) -> Iterator[None]:
    """Within the block, every :class:`~gpuanalogy.errors.Notice` the library warns with goes to
    ``show(text)`` as it happens (each time, never de-duplicated), with no source path; other
    warnings print as Python prints them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", Notice)
        original = warnings.showwarning

        def route(message: Warning | str, category: type[Warning], *args: Any,
                  **kwargs: Any) -> None:
            if issubclass(category, Notice):
                show(str(message))
            else:
                original(message, category, *args, **kwargs)

        warnings.showwarning = route
        yield


class ProgressPrinter:
    """Prints one stderr line per stage: steps done, level, stage and the seconds elapsed.

    The clock starts at construction; :meth:`elapsed` reads it, so a final "done in" line
    measured here is never smaller than the last progress line.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, progress: "Progress") -> None:
        level = f"level {progress.level}" if progress.level else "output"
        print(f"{self.prefix}[{progress.done + 1:2d}/{progress.total}] {level}: {progress.stage}"
              f"  ({self.elapsed():.1f} s)", file=sys.stderr, flush=True)


class BatchProgress:
    """Pairs done, the current pair's level and stage, and an ETA, on ``stream`` (stderr).

    On a terminal the status is one line rewritten in place with ``\\r``, and each finished
    pair leaves a line above it; elsewhere (a log file, a pipe) every stage prints a line.

    The ETA is the mean time of the pairs computed so far (before the first, the current
    pair's elapsed time over its share of steps done) times the pairs left to compute. On a
    cluster (:meth:`in_flight`), where pairs overlap, it is the time since the first pair was
    sent over the pairs finished, times the pairs left.
    """

    def __init__(self, total: int, *, to_run: int | None = None, stream: TextIO | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 unit: str = "pair", skip_first: bool = False) -> None:
        self.total = total
        self.unit = unit               # what the status line counts ("pair", "frame")
        self.skip_first = skip_first   # leave the first duration out of the ETA once others exist
        self.to_run = total if to_run is None else to_run
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.clock = clock
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.durations: list[float] = []
        self.index = 0
        self.name = ""
        self.pair_start = clock()
        self.fraction = 0.0
        self.shown = False   # a status line is on screen (terminal mode)
        self.sending: float | None = None   # when the first pair went to a cluster

    # Events ---------------------------------------------------------------------------

    def start_pair(self, index: int, name: str) -> None:
        self.index, self.name = index, name
        self.pair_start = self.clock()
        self.fraction = 0.0

    def stage(self, progress: Any) -> None:
        """The ``on_progress`` callback of :func:`gpuanalogy.app.pair.run_pair`."""
        self.fraction = progress.done / max(progress.total, 1)
        where = f"level {progress.level} " if progress.level else ""
        self._show(f"{self._head()} {self.name}: {where}{progress.stage} "
                   f"(step {progress.done + 1}/{progress.total}) | {self._tally()} | "
                   f"ETA {self._eta()}")

    def in_flight(self, count: int) -> None:
        """The status of a batch on a cluster: ``count`` pairs sent and not yet back."""
        if self.sending is None:
            self.sending = self.clock()
        done = sum(self.counts.values())
        self._show(f"[{done:{len(str(self.total))}d}/{self.total}] {self._tally()} | "
                   f"{count} in flight | ETA {self._eta()}")

    def end_pair(self, result: Any) -> None:
        """A finished :class:`gpuanalogy.app.pair.PairResult`: one line that stays."""
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if result.status == "ok":
            self.durations.append(result.seconds)
        if result.status == "skipped":
            text = f"{self._head()} {self.name}: skipped (already complete)"
        elif result.status == "ok":
            text = f"{self._head()} {self.name}: ok in {result.seconds:.1f} s"
            if len(self.durations) > 1:
                text += f" ({self._per_unit():.1f} s/{self.unit}, ETA {self._eta()})"
        else:
            text = f"{self._head()} {self.name}: FAILED: {result.error}"
        self.notice(text)

    def notice(self, text: str) -> None:
        """A line that stays (above the status line on a terminal)."""
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def show_notice(self, text: str) -> None:
        """A notice (:func:`notice_line`), above the status line."""
        self.notice(notice_line(text))

    def clear(self) -> None:
        """Take the status line off the terminal, before other output."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def close(self) -> None:
        self.clear()

    # Text -----------------------------------------------------------------------------

    def _show(self, text: str) -> None:
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + text[:max(width, 20)] + "\x1b[K")
            self.shown = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _head(self) -> str:
        width = len(str(self.total))
        return f"[{self.index + 1:{width}d}/{self.total}]"

    def _tally(self) -> str:
        return ", ".join(f"{n} {status}" for status, n in self.counts.items()
                         if n or status == "ok")

    def eta_seconds(self) -> float | None:
        """Seconds left for the whole batch, or None before anything can be estimated."""
        ran = self.counts["ok"] + self.counts["failed"]
        if self.sending is not None:
            rate = (self.clock() - self.sending) / ran if ran else None
            return None if rate is None else rate * max(self.to_run - ran, 0)
        elapsed = self.clock() - self.pair_start
        if self.durations:
            per_pair = self._per_unit()
        elif self.fraction > 0:
            per_pair = elapsed / self.fraction
        else:
            return None
        after = max(self.to_run - ran - 1, 0)   # to compute after the current one
        return max(per_pair - elapsed, 0.0) + per_pair * after

    def _per_unit(self) -> float:
        """Mean seconds of the units computed so far (the first left out once others exist,
        with ``skip_first``)."""
        durations = self.durations[1:] if self.skip_first and len(self.durations) > 1 \
            else self.durations
        return sum(durations) / len(durations)

    def _eta(self) -> str:
        seconds = self.eta_seconds()
        return "--:--" if seconds is None else format_duration(seconds)


def format_duration(seconds: float) -> str:
    """``M:SS`` or ``H:MM:SS``."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def print_written(outdir: str | os.PathLike[str], record: dict[str, Any], seconds: float) -> None:
    """The end of ``run`` and ``demo``: the wall time (``seconds``, the progress lines' clock),
    the device and peak memory on stderr, then every file written on stdout."""
    print(f"done in {seconds:.1f} s on {record['device']}"
          f" (peak memory {record.get('peak_memory_mb', 0):.0f} MiB); wrote:", file=sys.stderr)
    for name in record["files"] + ["run.json"]:
        print(Path(outdir) / name)
