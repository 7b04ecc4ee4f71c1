"""The deconvolution's optimisers on their own: host cost per iteration that no faster network removes.

The deconvolution optimises a vector as long as the feature map it reconstructs (64 x 256 x 256
= 4.2M values for the relu1_1 step at 256 px). To see what each optimiser itself costs, this runs
both of them (``config.OPTIMIZERS``: our L-BFGS on float32 backend arrays, and SciPy's
L-BFGS-B on float64 host vectors) with the deconvolution's settings (history 4) on a diagonal
quadratic whose value and gradient take almost nothing, and subtracts the time spent in that
function. Both run in the same process, one after the other, so they see the same host.

    python benchmarks/lbfgs_overhead.py [--sizes 1048576,4194304] [--iters 50] [--device auto]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize as scipy_minimize

sys.path.insert(0, str(Path(__file__).parent))
from _table import Stage, print_table  # noqa: E402

from gpuanalogy import lbfgs  # noqa: E402
from gpuanalogy.backend import get_backend  # noqa: E402


def quadratic(n: int, xp, dtype):
    """``f(x) = 0.5 sum(c x^2)`` with c log-uniform in [1e-3, 1] (ill-conditioned enough that
    neither optimiser converges within the iterations), and a record of seconds spent inside it."""
    scale = xp.asarray(10.0 ** np.random.default_rng(0).uniform(-3.0, 0.0, n), dtype=dtype)
    inside = [0.0]

    def objective(x):
        start = time.perf_counter()
        grad = scale * x
        value = 0.5 * float(xp.sum(x * grad, dtype=xp.float64))
        inside[0] += time.perf_counter() - start
        return value, grad

    x0 = xp.asarray(np.random.default_rng(1).standard_normal(n), dtype=dtype)
    return objective, x0, inside


def ours(n: int, iterations: int, backend) -> tuple[float, int, int, float]:
    xp = backend.xp
    objective, x0, inside = quadratic(n, xp, xp.float32)
    backend.synchronize()
    start = time.perf_counter()
    result = lbfgs.minimize(objective, x0, xp=xp, max_iter=iterations, history=4)
    backend.synchronize()
    total = time.perf_counter() - start
    return total - inside[0], result.iterations, result.evaluations, result.loss


def scipys(n: int, iterations: int) -> tuple[float, int, int, float]:
    objective, x0, inside = quadratic(n, np, np.float64)
    start = time.perf_counter()
    result = scipy_minimize(objective, x0, jac=True, method="L-BFGS-B",
                            options={"maxiter": iterations, "maxcor": 4,
                                     "maxfun": 5 * iterations, "ftol": 0, "gtol": 0})
    total = time.perf_counter() - start
    return total - inside[0], int(result.nit), int(result.nfev), float(result.fun)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1048576,4194304")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    backend = get_backend(args.device)
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        runs = {"lbfgs": lambda: ours(n, args.iters, backend),
                "scipy": lambda: scipys(n, args.iters)}
        for name, run in runs.items():
            device = f"{backend.name} (float32)" if name == "lbfgs" else "cpu (SciPy, float64)"
            with Stage(f"{name}: per iteration per 1M values", image_size=f"n = {n:,}",
                       device=device) as stage:
                seconds, iterations, evaluations, loss = run()
            per_million = seconds / iterations / (n / 1e6)
            stage.row.seconds = per_million
            rows.append(stage.row)
            print(f"{name:6s} n = {n:>10,}: {iterations} iterations, {evaluations} evaluations, "
                  f"final loss {loss:.4g}, {1e3 * seconds / iterations:.1f} ms per iteration "
                  f"outside the objective, {1e3 * per_million:.2f} ms per iteration per "
                  "million values", flush=True)
    print_table(rows, title="optimiser cost outside the objective (history 4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
