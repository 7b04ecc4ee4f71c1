"""Time the WLS filter and the photo refinement at the method's largest working size (700 x 500).

    python benchmarks/wls.py                 # CPU (direct solve)
    python benchmarks/wls.py --device cuda   # CuPy arrays (conjugate gradients on the GPU)
    python benchmarks/wls.py --size 350x250 --repeat 5

Each stage runs in its own child process (one warm-up call, then the median of --repeat calls),
so its peak memory can be read from the child alone: on the CPU the rise of the peak resident set
over the child's resident set before the stage, on the GPU the CuPy memory pool's high-water mark.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STAGES = ("wls_filter", "refine")


def _test_image(height: int, width: int) -> np.ndarray:
    """A photo-like float32 RGB image in [0, 1]: smooth colour fields, hard edges, fine noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([0.5 + 0.4 * np.sin(6 * x + 2 * y), 0.5 + 0.4 * np.cos(5 * y - 3 * x),
                      0.5 + 0.3 * np.sin(9 * x * y)], axis=-1)
    image[height // 4: 3 * height // 4, width // 3: 2 * width // 3] *= 0.5   # a dark box
    image[(x - 0.8) ** 2 + (y - 0.3) ** 2 < 0.01] = (0.9, 0.8, 0.2)           # a bright disc
    image += rng.normal(0, 0.02, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_stage(stage: str, height: int, width: int, repeat: int, device: str) -> dict:
    """Run one stage in this process; return its median seconds and peak memory in bytes."""
    from gpuanalogy.refinement import refine, wls_filter  # noqa: PLC0415

    image = _test_image(height, width)
    guide = (image @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)
    structure = np.rint(image * 255).astype(np.uint8)
    result = np.rint(np.roll(image, 7, axis=1) * 255).astype(np.uint8)
    sync = lambda: None  # noqa: E731
    if device == "cuda":
        import cupy  # noqa: PLC0415

        image, guide = cupy.asarray(image), cupy.asarray(guide)
        sync = cupy.cuda.Device().synchronize
        pool = cupy.get_default_memory_pool()

    def call() -> None:
        if stage == "wls_filter":
            wls_filter(image, guide)
        else:
            refine(result, structure)  # refine takes host images; it filters on the CPU
        sync()

    baseline = _rss_bytes()
    call()  # warm-up: imports, first-touch allocations
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    if device == "cuda" and stage == "wls_filter":
        peak = pool.total_bytes()  # the pool keeps what the stage needed at most
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"stage": stage, "seconds": statistics.median(times), "peak_bytes": max(peak, 0)}


def _device_name(device: str) -> str:
    if device == "cuda":
        import cupy  # noqa: PLC0415

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"cpu ({len(os.sched_getaffinity(0))} cores)"


def _print_table(rows: list[dict]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _table import Row, print_table  # noqa: PLC0415 - the benchmarks' shared printer

    print_table([Row(r["stage"], r["seconds"], r["size"], r["device"],
                     peak_bytes=r["peak_bytes"])
                 for r in rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="700x500", help="WIDTHxHEIGHT (default 700x500)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per stage")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    if args.stage:
        print(json.dumps(run_stage(args.stage, height, width, args.repeat, args.device)))
        return
    rows = []
    for stage in STAGES:
        child = subprocess.run(
            [sys.executable, __file__, "--stage", stage, "--size", args.size,
             "--repeat", str(args.repeat), "--device", args.device],
            capture_output=True, text=True, check=True)
        row = json.loads(child.stdout.strip().splitlines()[-1])
        row["size"] = f"{width}x{height} RGB"
        row["device"] = _device_name(args.device) if stage == "wls_filter" else _device_name("cpu")
        rows.append(row)
    _print_table(rows)


if __name__ == "__main__":
    main()
