"""CPU kernels for L-BFGS on long float32 vectors (``gpuanalogy.lbfgs``).

The optimiser's own work is a few passes over vectors of up to 12.8 M values between two
evaluations of the network, and each pass is bound by memory, not arithmetic. These loops do
in one pass what NumPy does in several, over runs of :data:`RUN` values: a run's products are
summed in float32 (vectorised: LLVM may reassociate that sum), the runs' sums in float64, as
``lbfgs.dot`` does. They run on one core: the network's thread pool keeps spinning on the other
between its runs, and loops over both cores made the deconvolution slower
(docs/performance.md).
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["RUN", "add_pair", "combine", "dot", "new_rows", "step_to"]

#: Values whose products are summed in float32 before the sums go to float64.
RUN = 1024

_FASTMATH = {"reassoc", "contract"}   # no "nnan"/"ninf": a NaN must reach the caller's check
_inline = numba.njit(cache=True, fastmath=_FASTMATH, inline="always")
_loop = numba.njit(cache=True, fastmath=_FASTMATH)


@_inline
def _dot_run(a, b):
    total = np.float32(0.0)
    for i in range(a.size):
        total += a[i] * b[i]
    return total


@_inline
def _dot3_run(a, b, c, row):
    """(a . row, b . row, c . row) over one run, reading ``row`` once."""
    ab = np.float32(0.0)
    bb = np.float32(0.0)
    cb = np.float32(0.0)
    for i in range(row.size):
        v = row[i]
        ab += a[i] * v
        bb += b[i] * v
        cb += c[i] * v
    return ab, bb, cb


@_inline
def _subtract_run(a, b, out):
    for i in range(a.size):
        out[i] = a[i] - b[i]


@_inline
def _scale_run(a, x, out):
    for i in range(x.size):
        out[i] = a * x[i]


@_inline
def _axpy_run(a, x, out):
    for i in range(x.size):
        out[i] += a * x[i]


@_loop
def _dot_loop(a, b):
    total = 0.0
    for start in range(0, a.size, RUN):
        total += _dot_run(a[start:start + RUN], b[start:start + RUN])
    return total


@_loop
def _step_loop(x, d, alpha, out):
    for i in range(x.size):
        out[i] = x[i] + alpha * d[i]


@_loop
def _combine_loop(rows, coefficients, g, g_coefficient, out):
    for r in range(rows.shape[0]):
        start = r * RUN
        run = out[start:start + RUN]
        block = rows[r]
        _scale_run(g_coefficient, g[start:start + RUN], run)
        for k in range(block.shape[0]):
            if coefficients[k] != 0.0:      # unused slots hold stale values: never read them
                _axpy_run(coefficients[k], block[k, :run.size], run)


@_loop
def _add_pair_loop(rows, slot, trial, x, grad, g, live):
    count = rows.shape[1]
    total = np.zeros((3, count + 1))
    for r in range(rows.shape[0]):
        start = r * RUN
        grad_run, trial_run = grad[start:start + RUN], trial[start:start + RUN]
        block, m = rows[r], trial_run.size
        s, y = block[2 * slot, :m], block[2 * slot + 1, :m]
        _subtract_run(trial_run, x[start:start + RUN], s)
        _subtract_run(grad_run, g[start:start + RUN], y)
        total[0, count] += _dot_run(trial_run, trial_run)
        total[2, count] += _dot_run(grad_run, grad_run)
        for k in range(count):
            if live[k]:
                sk, yk, gk = _dot3_run(s, y, grad_run, block[k, :m])
                total[0, k] += sk
                total[1, k] += yk
                total[2, k] += gk
    return total


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` of two float32 vectors of shape (n,)."""
    return float(_dot_loop(a, b))


def step_to(x: np.ndarray, d: np.ndarray, alpha: float, out: np.ndarray) -> np.ndarray:
    """``out = x + alpha * d`` (float32 vectors of shape (n,)) in one pass."""
    _step_loop(x, d, np.float32(alpha), out)
    return out


def new_rows(count: int, like: np.ndarray) -> np.ndarray:
    """Room for ``count`` vectors shaped like ``like`` (n,), run by run: shape
    (ceil(n / RUN), count, RUN), float32, so that a run of every row is one block of memory
    (one stream for the hardware's prefetcher instead of one per row)."""
    return np.empty((-(-like.size // RUN), count, RUN), np.float32)


def combine(rows: np.ndarray, coefficients: np.ndarray, g: np.ndarray, g_coefficient: float,
            out: np.ndarray) -> np.ndarray:
    """``out = sum_k coefficients[k] rows[k] + g_coefficient g`` in one pass.

    rows : from :func:`new_rows` (K rows); coefficients : (K,) float32 (rows with 0 are not
    read); g, out : (n,) float32.
    """
    _combine_loop(rows, coefficients, g, np.float32(g_coefficient), out)
    return out


def add_pair(rows: np.ndarray, slot: int, trial: np.ndarray, x: np.ndarray, grad: np.ndarray,
             g: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Write a correction pair into ``rows`` (from :func:`new_rows`) and return its inner
    products, in one pass.

    ``rows[2 slot] = s = trial - x`` and ``rows[2 slot + 1] = y = grad - g``. Returns P, shape
    (3, K + 1), float64: ``P[0, k] = s . rows[k]``, ``P[1, k] = y . rows[k]``,
    ``P[2, k] = grad . rows[k]`` for the rows with ``live[k]`` (0 elsewhere; the new pair's
    two rows must be live), ``P[0, K] = trial . trial`` and ``P[2, K] = grad . grad``.
    """
    return _add_pair_loop(rows, slot, trial, x, grad, g, live)
