"""Time the sub-pixel alignment of both final fields and the sub-pixel voting of both outputs.

    python benchmarks/subpixel.py [--sizes 224x224,448x448,500x700] [--device auto]

The pair is a scikit-image photo (the astronaut) and the same photo shifted by (0.5, -0.5) px
and colour-mixed; the fields start at p + (1, 0), 0.7 px from the truth, as the method's level-1
fields typically are. Default search: 1.5 px at a 0.25 px step (169 offsets per field), a 7 x 7
colour-model window. Peak memory is the process's resident set (CPU) or, on the GPU, the bytes
CuPy's memory pool holds after the stage (it keeps freed blocks, so this is its high-water mark).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import data
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).parent))
from _table import Stage, print_table  # noqa: E402

from gpuanalogy import subpixel  # noqa: E402
from gpuanalogy.backend import get_backend  # noqa: E402


def case(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B', a whole-pixel field 0.7 px off the truth), float32 images in [0, 1]."""
    a = resize(data.astronaut(), (height, width), order=3, anti_aliasing=True)
    grid = np.stack(np.mgrid[0:height, 0:width], axis=-1).astype(np.float64)
    shift = np.array([0.5, -0.5])
    moved = np.stack([ndimage.map_coordinates(a[..., c], (grid - shift).transpose(2, 0, 1),
                                              order=3, mode="reflect") for c in range(3)], -1)
    b_prime = np.clip(moved @ np.array([[0.2, 0.7, 0.1], [0.5, 0.1, 0.4], [0.1, 0.2, 0.7]]).T,
                      0, 1)
    start = np.clip(grid + np.array([1, 0]), 0, [height - 1, width - 1]).astype(np.int32)
    return a.astype(np.float32), b_prime.astype(np.float32), start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224x224,448x448,500x700", help="HxW,...")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    backend = get_backend(args.device)
    xp = backend.xp
    pool = xp.get_default_memory_pool() if backend.name == "cuda" else None
    rows = []
    for text in args.sizes.split(","):
        height, width = (int(v) for v in text.split("x"))
        a, b_prime, start = (backend.asarray(x) for x in case(height, width))
        subpixel.align(a[:32, :32], b_prime[:32, :32], xp.clip(start[:32, :32], 0, 31),
                       backend=backend)                                   # warm-up
        size = f"{height}x{width}"
        t0 = time.perf_counter()
        with Stage("align both fields", image_size=size, device=backend.name,
                   sync=backend.synchronize) as stage:
            field_ab = subpixel.align(a, b_prime, start, backend=backend)
            subpixel.align(b_prime, a, start, backend=backend)
            if pool is not None:
                stage.peak_override = pool.total_bytes()
        rows.append(stage.row)
        with Stage("vote both outputs (3x3)", image_size=size, device=backend.name,
                   sync=backend.synchronize) as stage:
            subpixel.warp(b_prime, field_ab, patch_size=3, backend=backend)
            subpixel.warp(a, field_ab, patch_size=3, backend=backend)
            if pool is not None:
                stage.peak_override = pool.total_bytes()
        rows.append(stage.row)
        truth = np.stack(np.mgrid[0:height, 0:width], -1) + np.array([0.5, -0.5])
        error = np.linalg.norm(backend.to_numpy(field_ab) - truth, axis=-1)[8:-8, 8:-8]
        print(f"{size}: median error of the aligned field {np.median(error):.3f} px "
              f"(start: {np.median(np.linalg.norm(backend.to_numpy(start) - truth, axis=-1)):.3f}"
              f" px), {time.perf_counter() - t0:.1f} s", flush=True)
    print_table(rows, title="sub-pixel alignment (radius 1.5 px, step 0.25 px, 7x7 window)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
