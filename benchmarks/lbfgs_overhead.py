"""SciPy's L-BFGS-B on its own: the host cost per evaluation that no faster network removes.

The deconvolution hands SciPy a float64 vector as long as the feature map it optimises
(64 x 256 x 256 = 4.2M values for the relu1_1 step at 256 px). To see what the optimiser itself
costs, this runs ``scipy.optimize.minimize(method="L-BFGS-B")`` with the deconvolution's
settings (history 4) on a diagonal quadratic whose value and gradient take almost nothing,
and subtracts the time spent in that function.

    python benchmarks/lbfgs_overhead.py [--sizes 1048576,4194304] [--iters 30]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).parent))
from _table import Stage, print_table  # noqa: E402


def optimiser_seconds(n: int, iterations: int) -> tuple[float, int]:
    """(seconds per evaluation spent outside the objective, evaluations) for an n-vector."""
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.5, 2.0, n)
    inside = [0.0]

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        grad = scale * x
        value = 0.5 * float(x @ grad)
        inside[0] += time.perf_counter() - start
        return value, grad

    start = time.perf_counter()
    result = minimize(objective, rng.standard_normal(n), jac=True, method="L-BFGS-B",
                      options={"maxiter": iterations, "maxcor": 4, "maxfun": 5 * iterations})
    total = time.perf_counter() - start
    return (total - inside[0]) / result.nfev, int(result.nfev)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1048576,4194304")
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args()
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        with Stage(f"L-BFGS-B per evaluation, n = {n:,}", image_size=f"{n:,} float64",
                   device="cpu (SciPy)") as stage:
            per_eval, evaluations = optimiser_seconds(n, args.iters)
        stage.row.seconds = per_eval
        rows.append(stage.row)
        print(f"n = {n:,}: {evaluations} evaluations, {1e3 * per_eval:.1f} ms each outside the "
              f"objective, {1e3 * per_eval / (n / 2**20):.1f} ms per million values", flush=True)
    print_table(rows, title="SciPy L-BFGS-B overhead (history 4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
