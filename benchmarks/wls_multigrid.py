"""One WLS solve (the refinement's system) by the direct solver or by pyamg's multigrid.

    python benchmarks/wls_multigrid.py SIDE direct|amg

The system is refinement's for a SIDE x 1.5 SIDE photo (scikit-image's coffee enlarged, with
``highres.photo``'s grain; three channels). Prints the seconds and the peak resident memory of
the solve (the kernel's high-water mark, reset at its start), and for ``amg`` the PSNR of its
answer against the direct one when a ``direct`` run of the same SIDE left it in /tmp. Run each
solver in its own process: the peak belongs to the whole process.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from skimage import data

sys.path.insert(0, str(Path(__file__).parent))
from highres import photo  # noqa: E402

from gpuanalogy import multigrid, refinement, wls_system  # noqa: E402
from gpuanalogy.memory import PeakMemory  # noqa: E402


def main() -> int:
    side, how = int(sys.argv[1]), sys.argv[2]
    shape = (side, side * 3 // 2)
    image = photo(data.coffee(), shape, seed=1).astype(np.float64) / 255
    rhs = np.clip(image[..., ::-1] * 0.8 + 0.1, 0, 1)
    wx, wy = refinement.edge_weights(image.mean(-1), 0.8, 1.0, 1e-4, False, np)
    with PeakMemory() as peak:
        start = time.perf_counter()
        if how == "direct":
            out = wls_system.solve_direct(wx, wy, rhs)
        else:
            pixel = np.arange(shape[0] * shape[1]).reshape(shape)
            out = multigrid.solve(wls_system.system_matrix(wx, wy, pixel).tocsr(), rhs)
        seconds = time.perf_counter() - start
    saved = Path(f"/tmp/wls_multigrid_{side}_direct.npy")
    print(f"{shape[1]}x{shape[0]} {how}: {seconds:.1f} s, peak {peak.megabytes:,.0f} MiB")
    if how == "direct":
        np.save(saved, out)
    elif saved.is_file():
        psnr = 10 * np.log10(1 / np.mean((out - np.load(saved)) ** 2))
        print(f"PSNR against the direct solve {psnr:.1f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
