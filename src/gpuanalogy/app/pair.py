"""One pair from images in memory to a complete output folder, as ``run``, ``demo`` and ``batch``
do it, and the peak memory it took.

:func:`run_pair` is :func:`compute_pair` then :func:`write_pair`; a batch on a cluster computes
on a worker and writes on the client.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AnalogyConfig
from ..errors import DeviceMemoryError
from ..outputs import versions, write_result
from ..levels import LevelStep
from ..pipeline import AnalogyResult, Progress, SizeNotice, analogy, level_preview


def run_pair(a: np.ndarray, b_prime: np.ndarray, outdir: str | os.PathLike,
             config: AnalogyConfig, *, names: tuple[str, str] = ("a", "b_prime"),
             model: Any = None, save_levels: bool = False,
             on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Run the analogy on ``a`` and ``b_prime`` (H x W x 3 uint8) and write ``outdir``.

    Says on stderr when the size rule reduces an input. With ``save_levels`` each level's A'
    and B are voted as the loop finishes it and written too. Returns the run.json record.
    """
    computed = compute_pair(a, b_prime, config, names=names, model=model,
                            save_levels=save_levels, on_progress=on_progress)
    return write_pair(outdir, computed, a, b_prime, config)


@dataclass
class ComputedPair:
    """One pair's results in memory, all that :func:`write_pair` needs besides the inputs.

    Attributes
    ----------
    result : AnalogyResult
    levels : dict
        Level -> (A', B) previews; empty unless ``save_levels``.
    extra : dict
        run.json's entries about the run: input paths, seconds, peak memory, provider and the
        versions of the process that computed it.
    """

    result: AnalogyResult
    levels: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def compute_pair(a: np.ndarray, b_prime: np.ndarray, config: AnalogyConfig, *,
                 names: tuple[str, str] = ("a", "b_prime"), model: Any = None,
                 save_levels: bool = False,
                 on_progress: Callable[[Progress], None] | None = None,
                 on_notice: Callable[[str], None] | None = None,
                 on_level: Callable[[int, np.ndarray, np.ndarray], None] | None = None
                 ) -> ComputedPair:
    """The analogy of one pair, with what run.json records about the run.

    ``on_notice`` receives the size rule's notices, naming the input files (by default they
    print on stderr at once). The memory check's refusal names the input files too.
    ``on_level(level, a_prime, b)`` receives each level's previews (uint8, input sizes) as the
    loop finishes it (``gpuanalogy.pipeline.level_preview``).
    """
    def notice(message: Warning | str, *_: Any, **__: Any) -> None:
        text = str(message)
        for generic, given in zip(("a", "b_prime"), names):
            if text.startswith(f"{generic}: "):
                text = f"{given}: {text[len(generic) + 2:]}"
        (on_notice or _print_notice)(text)

    levels: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def preview(step: LevelStep) -> None:
        images = level_preview(step, a, b_prime, config)
        if save_levels:
            levels[step.level] = images
        if on_level is not None:
            on_level(step.level, *images)

    peak = PeakMemory()
    with peak, warnings.catch_warnings():
        warnings.simplefilter("always", SizeNotice)
        warnings.showwarning = notice  # notices print at once, naming the input files
        start = time.perf_counter()
        try:
            result = analogy(a, b_prime, config, model=model, on_progress=on_progress,
                             on_level=preview if save_levels or on_level else None)
        except DeviceMemoryError as error:
            raise DeviceMemoryError(_with_file_names(str(error), (a, b_prime), names)
                                    ) from error
        wall = time.perf_counter() - start
    extra = {"inputs": {"a": str(names[0]), "b_prime": str(names[1])},
             "seconds_wall": round(wall, 3), "peak_memory_mb": peak.megabytes,
             "onnxruntime_provider": getattr(model, "provider", None) or result.device,
             "versions": versions()}
    return ComputedPair(result, levels, extra)


def write_pair(outdir: str | os.PathLike, computed: ComputedPair, a: np.ndarray,
               b_prime: np.ndarray, config: AnalogyConfig) -> dict[str, Any]:
    """Write a computed pair's folder (run.json last); returns the run.json record."""
    return write_result(outdir, computed.result, a=a, b_prime=b_prime, config=config,
                        extra=computed.extra, levels=computed.levels)


def _with_file_names(message: str, images: tuple[np.ndarray, np.ndarray],
                     names: tuple[str, str]) -> str:
    """``message`` with the inputs named as files: the memory check calls them "a" and
    "b_prime" (``gpuanalogy.sizes.check_memory``)."""
    def inputs(labels: tuple[str, str]) -> str:
        return " and ".join(f"{label} {x.shape[1]}x{x.shape[0]}"
                            for label, x in zip(labels, images))

    return message.replace(inputs(("a", "b_prime")), inputs(names), 1)


def _print_notice(text: str) -> None:
    print(f"gpuanalogy: {text}", file=sys.stderr, flush=True)


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
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # noqa: PLC0415

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
