"""Host memory: what a run may still use, what a block of work took, and figures in words.

:func:`available_bytes` is what the kernel says a process can still allocate without swapping
(``MemAvailable`` on Linux); callers compare their estimates with it and refuse early, with one
line, rather than be killed half-way. :class:`PeakMemory` measures the peak resident memory of a
block of work (run.json's ``peak_memory_mb`` and the benchmarks' tables).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["available_bytes", "in_words", "PeakMemory"]


def available_bytes() -> int | None:
    """Bytes of host memory available to a new allocation now; None when it cannot be told.

    Linux's ``MemAvailable`` (free memory plus the page cache that can be dropped); elsewhere the
    free physical pages.
    """
    found = _kib_entry("/proc/meminfo", "MemAvailable")
    if found is not None:
        return found
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def in_words(size: float) -> str:
    """A byte count for a message: ``"3.2 GB"``, ``"640 MB"`` (decimal units)."""
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    return f"{max(size, 0) / 1e6:.0f} MB"


class PeakMemory:
    """Peak resident memory of this process during a ``with`` block, in MiB.

    On Linux the kernel's high-water mark is reset at entry (``/proc/self/clear_refs``) and read
    at exit, so the figure belongs to the block alone; elsewhere it is the process's peak so far.
    """

    megabytes: float = 0.0

    def __enter__(self) -> "PeakMemory":
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        self.megabytes = round(_peak_rss_bytes() / 2**20, 1)


def _peak_rss_bytes() -> int:
    found = _kib_entry("/proc/self/status", "VmHWM")
    if found is not None:
        return found
    import resource  # noqa: PLC0415 - the fallback off Linux

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _kib_entry(path: str, key: str) -> int | None:
    """The ``key:  N kB`` entry of a /proc file, in bytes; None where there is none."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
