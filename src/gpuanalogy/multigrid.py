"""The WLS system solved by algebraic multigrid (pyamg), in memory linear in the pixels.

The direct solve of :mod:`gpuanalogy.wls_system` factorises the 5-point system
``(I + lam * Laplacian_a) u = g``; its factors grow as n log n and take about 3 KB a pixel at
camera sizes. Ruge-Stuben algebraic multigrid (pyamg's ``ruge_stuben_solver``) as the
preconditioner of conjugate gradients solves the same system in memory and time that grow with
the pixels, where the Jacobi-preconditioned CG there needs thousands of iterations
(the weights span 1 to 8000). pyamg is an optional dependency (``gpuanalogy[amg]``).
"""
from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["available", "solve", "solve_bytes", "RTOL"]

#: Relative residual at which each channel's solve stops.
RTOL = 1e-3

# Peak memory of one solve per pixel, measured on dev-cpu (docs/performance.md, "Outputs above
# the working size": the hierarchy, the matrix and the Krylov vectors).
_BYTES_PER_PIXEL = 550


def available() -> bool:
    """Whether pyamg can be imported."""
    return importlib.util.find_spec("pyamg") is not None


def solve_bytes(height: int, width: int) -> int:
    """About the peak host memory of :func:`solve` on an H x W system, in bytes."""
    return _BYTES_PER_PIXEL * height * width


def solve(matrix: Any, rhs: np.ndarray) -> np.ndarray:
    """Solve the WLS system for every channel of ``rhs`` with one multigrid hierarchy.

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix, shape (H W, H W), float64
        The system in the pixels' natural order (``gpuanalogy.wls_system.system_matrix``).
    rhs : ndarray, shape (H, W, C), float64

    Returns
    -------
    ndarray, shape (H, W, C), float64
        Each channel to a relative residual of :data:`RTOL`.

    Raises
    ------
    InputError
        pyamg is not installed.
    """
    try:
        import pyamg  # noqa: PLC0415 - optional
    except ImportError:
        raise InputError("the multigrid WLS solve needs pyamg. Try: pip install "
                         "'gpuanalogy[amg]', or --refine-upsample guided") from None
    height, width, channels = rhs.shape
    hierarchy = pyamg.ruge_stuben_solver(matrix)
    out = np.empty_like(rhs)
    for c in range(channels):
        out[..., c] = hierarchy.solve(rhs[..., c].ravel(), tol=RTOL, accel="cg",
                                      maxiter=1000).reshape(height, width)
    return out
