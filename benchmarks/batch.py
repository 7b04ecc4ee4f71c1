"""A batch of 8 small pairs in process against a Dask cluster of worker processes.

    python benchmarks/batch.py [--workers 2] [--ratio 0.5] [--iters 5] [--lbfgs-iters 10]

The pairs are crops of scikit-image's colour photographs, 128 to 200 px on a side (the size
rule brings them to 200 px, then ``--ratio``); the settings are cut down so both runs take a few
minutes on two cores. Each mode is the command line, ``gpuanalogy batch`` and ``gpuanalogy batch
--workers N``, in a fresh process and a fresh output folder, timed from start to exit (cluster
start and network loading included). Peak memory is the kernel's high-water mark (VmHWM, Linux)
of each process of the run, read every 0.1 s: the batch's own process and, with
``--workers``, each worker process. The median pair is the analogy's own time in run.json
(``seconds_wall``, network loading in a process's first pair included), so the rest of the wall
time is start-up, loading and waiting. The machine's 1-minute load average at the end of each run
is printed with it: above the run's own processes' share (about the number of cores), something
else was running too.

Another session may be timing benchmarks on the same machine: this one waits while
``/tmp/gpuanalogy-bench.lock`` exists, then holds that file until it is done.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).parent))
from _table import Row, bench_lock, print_table  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
SIDES = (128, 144, 160, 176, 192, 200, 136, 184)


def write_pairs(folder: Path) -> Path:
    """8 pairs of crops, A and B' from different photographs; the CSV that lists them."""
    rng = np.random.default_rng(0)
    lines = ["a,b_prime"]
    for i, side in enumerate(SIDES):
        names = []
        for role, photo in (("a", PHOTOS[i % 5]), ("b", PHOTOS[(i + 2) % 5])):
            image = getattr(data, photo)()
            size = min(2 * side, *image.shape[:2])
            top = int(rng.integers(0, image.shape[0] - size + 1))
            left = int(rng.integers(0, image.shape[1] - size + 1))
            crop = Image.fromarray(image[top:top + size, left:left + size])
            path = folder / f"{role}{i}.png"
            crop.resize((side, side), Image.Resampling.LANCZOS).save(path)
            names.append(path.name)
        lines.append(",".join(names))
    csv_path = folder / "pairs.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path


def high_water_mark(pid: int) -> int:
    """VmHWM of a process in bytes (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def timed_run(command: list[str]) -> tuple[float, dict[str, int]]:
    """Run ``command``; its seconds and the peak memory of it ("batch") and its workers."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[int, int] = {}
    workers: set[int] = set()
    main = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            children = main.children()
        except psutil.NoSuchProcess:
            children = []
        for child in children:
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    workers.add(child.pid)
            except psutil.Error:
                continue
        for pid in (process.pid, *workers):
            peaks[pid] = max(peaks.get(pid, 0), high_water_mark(pid))
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}:\n"
                         f"{process.stderr.read().decode()}")
    memory = {"batch": peaks.get(process.pid, 0)}
    memory.update({f"worker {n + 1}": peaks[pid] for n, pid in enumerate(sorted(workers))})
    return seconds, memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ratio", default="0.5")
    parser.add_argument("--iters", default="5")
    parser.add_argument("--lbfgs-iters", default="10")
    args = parser.parse_args()
    settings = ["--ratio", args.ratio, "--iters", args.iters, "--lbfgs-iters", args.lbfgs_iters,
                "--device", "cpu"]
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    modes = [("in process", [], f"cpu, 1 process x {cores} threads"),
             (f"--workers {args.workers}", ["--workers", str(args.workers)],
              f"cpu, {args.workers} workers x {max(cores // args.workers, 1)} threads")]
    rows = []
    with tempfile.TemporaryDirectory() as folder, bench_lock("benchmarks/batch.py"):
        csv_path = write_pairs(Path(folder))
        for n, (label, flags, device) in enumerate(modes):
            command = [sys.executable, "-m", "gpuanalogy", "batch", str(csv_path), "-o",
                       str(Path(folder) / f"out{n}"), *settings, *flags]
            seconds, memory = timed_run(command)
            pair_seconds = [json.loads(path.read_text())["seconds_wall"]
                            for path in Path(folder, f"out{n}").glob("*/run.json")]
            per_hour = len(SIDES) * 3600 / seconds
            workers = {k: v for k, v in memory.items() if k.startswith("worker")}
            peak = max(workers.values()) if workers else memory["batch"]
            note = ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in memory.items())
            note += (f"; median pair {statistics.median(pair_seconds):.1f} s; "
                     f"load {os.getloadavg()[0]:.1f} at the end")
            rows.append(Row(f"{label}: {per_hour:.0f} pairs/h", seconds, "128-200 px, 8 pairs",
                            device, peak_bytes=peak, note=note))
            print(f"{label}: {seconds:.1f} s, {per_hour:.0f} pairs per hour; {note}", flush=True)
    print_table(rows, title=f"batch of {len(SIDES)} pairs, ratio {args.ratio}, "
                            f"{args.iters} PatchMatch and {args.lbfgs_iters} L-BFGS iterations "
                            f"(peak memory: per worker with --workers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
