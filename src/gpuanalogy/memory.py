"""The host memory a run may use, and memory figures in words, for the checks made before work.

:func:`available_bytes` is what the kernel says a process can still allocate without swapping
(``MemAvailable`` on Linux); callers compare their estimates with it and refuse early, with one
line, rather than be killed half-way.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_bytes", "in_words"]


def available_bytes() -> int | None:
    """Bytes of host memory available to a new allocation now; None when it cannot be told.

    Linux's ``MemAvailable`` (free memory plus the page cache that can be dropped); elsewhere the
    free physical pages.
    """
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def in_words(size: float) -> str:
    """A byte count for a message: ``"3.2 GB"``, ``"640 MB"`` (decimal units)."""
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    return f"{max(size, 0) / 1e6:.0f} MB"
