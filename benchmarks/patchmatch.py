"""Time PatchMatch, NNF upsampling and average voting on feature maps shaped like VGG-19 levels.

    python benchmarks/patchmatch.py                        # CPU, 224 and 448 px images
    python benchmarks/patchmatch.py --device cuda          # CuPy arrays and numba.cuda kernels
    python benchmarks/patchmatch.py --sizes 224 --levels relu5_1 relu4_1

For an N x N image the levels are the Deep Image Analogy pyramid: relu5_1 at N/16 (512 ch,
patch 3, whole-map search), relu4_1 at N/8 (512 ch, patch 3, radius 6), relu3_1 at N/4 (256 ch,
patch 3, radius 6), relu2_1 at N/2 (128 ch, patch 5, radius 4), relu1_1 at N (64 ch, patch 5,
radius 4). Feature maps are random (spatially smoothed, L2-normalised per position), A and B'
the same size. Stages per level:

- ``patchmatch``: 10 iterations in both directions (A->B and B->A), from a random field;
- ``upsample``: both fields upsampled to the next finer level;
- ``warp``: average voting of a feature map of the level through both fields;
- ``warp image``: voting of the RGB image through the final field (3 x 3 patch).

Times are the median of ``--repeat`` runs; every kernel is compiled (or loaded from Numba's
cache) by a warm-up on tiny inputs first, so compile time is excluded. Peak memory is what the
stage holds at its peak, its inputs included: on the CPU the input arrays plus the tracemalloc
high-water mark of the allocations during the stage (NumPy reports its buffers to tracemalloc;
the kernels allocate nothing else), on the GPU the input arrays plus the CuPy memory pool's
growth during the stage.

Random features are PatchMatch's worst case: their optimal field is incoherent (propagation
rarely proposes the current match again, so few candidates are skipped) and every candidate
costs about the same (the early exit rarely fires). Coherent features do better on both: at
relu1_1 for a 224 px image, a pair where B is A shifted needed a quarter of the distance work.
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gpuanalogy.backend import Backend, get_backend  # noqa: E402
from gpuanalogy.kernels.cpu import SERIAL_PIXELS  # noqa: E402
from gpuanalogy.nnf import random_nnf, upsample_nnf, warp  # noqa: E402
from gpuanalogy.patchmatch import patchmatch  # noqa: E402

#: (name, downsampling factor, channels, patch size, search radius; None = whole map)
LEVELS = (
    ("relu5_1", 16, 512, 3, None),
    ("relu4_1", 8, 512, 3, 6),
    ("relu3_1", 4, 256, 3, 6),
    ("relu2_1", 2, 128, 5, 4),
    ("relu1_1", 1, 64, 5, 4),
)


def _level_side(image_side: int, factor: int) -> int:
    """Side of a VGG map: each 2 x 2 max-pool halves it, rounding up (ceil mode)."""
    side = image_side
    while factor > 1:
        side = (side + 1) // 2
        factor //= 2
    return side


def _features(rng: np.random.Generator, side: int, channels: int) -> np.ndarray:
    """(side, side, channels) float32 unit vectors with some spatial correlation."""
    f = rng.standard_normal((side, side, channels), dtype=np.float32)
    for axis in (0, 1, 0, 1):   # a [1, 2, 1] / 4 blur, twice along each axis
        f = (np.roll(f, 1, axis) + 2 * f + np.roll(f, -1, axis)) / 4
    f /= np.maximum(np.linalg.norm(f, axis=2, keepdims=True), 1e-8)
    return np.ascontiguousarray(f, dtype=np.float32)


def _nbytes(*arrays: Any) -> int:
    return sum(int(a.nbytes) for a in arrays)


def _measure(fn: Callable[[], Any], inputs_bytes: int, backend: Backend,
             repeat: int) -> tuple[float, int]:
    """Median seconds and peak bytes of ``fn()`` (kernels already compiled by ``_warm_up``)."""
    if backend.name == "cuda":
        pool = backend.xp.get_default_memory_pool()
        pool.free_all_blocks()
        before = pool.total_bytes()
    else:
        tracemalloc.start()
        tracemalloc.reset_peak()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        backend.synchronize()
        times.append(time.perf_counter() - start)
    if backend.name == "cuda":
        working = pool.total_bytes() - before
    else:
        working = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return statistics.median(times), inputs_bytes + max(working, 0)


def _device_name(backend: Backend) -> str:
    if backend.name == "cuda":
        import cupy  # noqa: PLC0415

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    import numba  # noqa: PLC0415

    return f"CPU {platform.machine()}, {numba.get_num_threads()} threads"


def bench_size(side: int, backend: Backend, levels: list[str], iterations: int,
               repeat: int) -> list[dict]:
    xp = backend.xp
    rng = np.random.default_rng(side)
    device = _device_name(backend)
    rows = []

    def row(stage: str, seconds: float, peak: int) -> None:
        rows.append({"stage": stage, "seconds": seconds, "peak": peak,
                     "size": f"{side}x{side}", "device": device})
        print(f"  {stage:<28} {seconds:8.3f} s", file=sys.stderr, flush=True)

    chosen = [lv for lv in LEVELS if lv[0] in levels]
    for index, (name, factor, channels, patch, radius) in enumerate(chosen):
        s = _level_side(side, factor)
        a, a_prime, b, b_prime = (xp.asarray(_features(rng, s, channels)) for _ in range(4))
        start_ab = random_nnf((s, s), (s, s), 1, backend)
        start_ba = random_nnf((s, s), (s, s), 2, backend)
        r = 2 * s if radius is None else radius
        fields: dict[str, Any] = {}

        def both_directions() -> None:
            fields["ab"], _ = patchmatch(a, a_prime, b, b_prime, start_ab, patch_size=patch,
                                         radius=r, iterations=iterations, backend=backend)
            fields["ba"], _ = patchmatch(b_prime, b, a_prime, a, start_ba, patch_size=patch,
                                         radius=r, iterations=iterations, backend=backend)

        inputs = _nbytes(a, a_prime, b, b_prime, start_ab, start_ba)
        row(f"{name} patchmatch ({s}x{s}x{channels})",
            *_measure(both_directions, inputs, backend, repeat))

        def vote() -> None:
            warp(b_prime, fields["ab"], patch_size=patch, backend=backend)
            warp(a, fields["ba"], patch_size=patch, backend=backend)

        row(f"{name} warp", *_measure(vote, _nbytes(b_prime, a, fields["ab"], fields["ba"]),
                                      backend, repeat))

        nxt = next((lv for lv in LEVELS if lv[1] == factor // 2), None)
        if nxt is not None:
            t = _level_side(side, nxt[1])

            def upsample() -> None:
                upsample_nnf(fields["ab"], (t, t), (t, t), backend, shape_b_old=(s, s))
                upsample_nnf(fields["ba"], (t, t), (t, t), backend, shape_b_old=(s, s))

            row(f"{name} upsample -> {t}x{t}",
                *_measure(upsample, _nbytes(fields["ab"], fields["ba"]), backend, repeat))
        elif index == len(chosen) - 1 and factor == 1:
            image = xp.asarray(rng.random((s, s, 3), dtype=np.float32))
            row("warp image (3x3, RGB)",
                *_measure(lambda: warp(image, fields["ab"], patch_size=3, backend=backend),
                          _nbytes(image, fields["ab"]), backend, repeat))
        del a, a_prime, b, b_prime
    return rows


def _warm_up(backend: Backend) -> None:
    """Compile (or load from Numba's cache) every kernel: on tiny inputs, and once more on a
    grid just large enough for the CPU's parallel loops (``kernels.cpu.SERIAL_PIXELS``; a
    smaller grid runs their serial twins, which are compiled apart)."""
    rng = np.random.default_rng(0)
    for side in (6, math.isqrt(SERIAL_PIXELS) + 1):
        maps = [backend.xp.asarray(_features(rng, side, 8)) for _ in range(4)]
        nnf = random_nnf((side, side), (side, side), 0, backend)
        nnf, _ = patchmatch(*maps, nnf, patch_size=3, radius=2, iterations=1, backend=backend)
        warp(maps[0], nnf, patch_size=3, backend=backend)
        upsample_nnf(nnf, (side, side), (side, side), backend, shape_b_old=(side, side))
    backend.synchronize()


def _print_table(rows: list[dict]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _table import Row, print_table  # noqa: PLC0415 - the benchmarks' shared printer

    print_table([Row(r["stage"], r["seconds"], r["size"], r["device"], peak_bytes=r["peak"])
                 for r in rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448],
                        help="image sides in pixels (default 224 448)")
    parser.add_argument("--levels", nargs="+", default=[lv[0] for lv in LEVELS],
                        choices=[lv[0] for lv in LEVELS])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="timed calls per stage")
    args = parser.parse_args(argv)
    backend = get_backend(args.device)
    _warm_up(backend)
    rows = []
    for side in args.sizes:
        print(f"{side} x {side} image on {backend.name}", file=sys.stderr)
        rows += bench_size(side, backend, args.levels, args.iterations, args.repeat)
    _print_table(rows)


if __name__ == "__main__":
    main()
