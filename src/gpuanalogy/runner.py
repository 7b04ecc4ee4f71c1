"""One pair from images in memory to a complete output folder, as ``run`` and ``batch`` do it."""
from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .config import AnalogyConfig
from .pipeline import Progress, SizeNotice, analogy


def run_pair(a: np.ndarray, b_prime: np.ndarray, outdir: str | os.PathLike,
             config: AnalogyConfig, *, names: tuple[str, str] = ("a", "b_prime"),
             model: Any = None, save_levels: bool = False,
             on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Run the analogy on ``a`` and ``b_prime`` (H x W x 3 uint8) and write ``outdir``.

    Says on stderr when the size rule reduces an input. Returns the run.json record.
    """
    from .outputs import write_result  # noqa: PLC0415

    def notice(message: Warning | str, *_: Any, **__: Any) -> None:
        text = str(message)
        for generic, given in zip(("a", "b_prime"), names):
            if text.startswith(f"{generic}: "):
                text = f"{given}: {text[len(generic) + 2:]}"
        print(f"gpuanalogy: {text}", file=sys.stderr, flush=True)

    peak = PeakMemory()
    with peak, warnings.catch_warnings():
        warnings.simplefilter("always", SizeNotice)
        warnings.showwarning = notice  # notices print at once, naming the input files
        start = time.perf_counter()
        result = analogy(a, b_prime, config, model=model, on_progress=on_progress,
                         keep_levels=save_levels)
        wall = time.perf_counter() - start
    extra = {"inputs": {"a": str(names[0]), "b_prime": str(names[1])},
             "seconds_wall": round(wall, 3), "peak_memory_mb": peak.megabytes,
             "onnxruntime_provider": getattr(model, "provider", None) or result.device}
    return write_result(outdir, result, a=a, b_prime=b_prime, config=config, extra=extra,
                        save_levels=save_levels)


def demo_pair() -> tuple[np.ndarray, np.ndarray, tuple[str, str]]:
    """The demo pair, both shipped by scikit-image: a face to a cat's face.

    A is the astronaut portrait (NASA, public domain) cropped to head and shoulders; B' is
    Chelsea the cat (CC0) cropped to her face. Both are 300 x 300 x 3 uint8.
    """
    from .errors import InputError  # noqa: PLC0415

    try:
        from skimage import data  # noqa: PLC0415
    except ImportError as exc:
        raise InputError("the demo needs scikit-image: pip install 'gpuanalogy[examples]'") from exc
    return (data.astronaut()[20:320, 110:410], data.chelsea()[:, 75:375],
            ("skimage astronaut (face crop)", "skimage chelsea (face crop)"))


DEMO_CONFIG = AnalogyConfig.preset("photo2style", ratio=0.5)
"""The official photo-to-style setting for faces (ratio 0.5), which the demo pair is."""


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
