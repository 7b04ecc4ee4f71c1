"""The WLS system solved by algebraic multigrid (pyamg), in memory linear in the pixels.

The direct solve of :mod:`gpuanalogy.refinement` factorises the 5-point system
``(I + lam * Laplacian_a) u = g``; its factors grow as n log n and take about 3 KB a pixel at
camera sizes. Ruge-Stuben algebraic multigrid (pyamg's ``ruge_stuben_solver``) as the
preconditioner of conjugate gradients solves the same system in memory and time that grow with
the pixels, where the Jacobi-preconditioned CG of ``refinement`` needs thousands of iterations
(the weights span 1 to 8000). pyamg is an optional dependency (``gpuanalogy[amg]``).
"""
from __future__ import annotations

import importlib.util

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


def solve(wx: np.ndarray, wy: np.ndarray, diagonal: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve the WLS system for every channel of ``rhs`` with one multigrid hierarchy.

    Parameters
    ----------
    wx, wy : ndarray, shape (H, W-1) and (H-1, W), float64
        The weights of horizontal and vertical neighbour pairs (the off-diagonal entries are
        their negatives).
    diagonal : ndarray, shape (H, W), float64
        ``1 +`` the sum of each pixel's weights.
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
        import scipy.sparse as sp  # noqa: PLC0415
    except ImportError:
        raise InputError("the multigrid WLS solve needs pyamg. Try: pip install "
                         "'gpuanalogy[amg]', or --refine-upsample guided") from None
    height, width, channels = rhs.shape
    pixel = np.arange(height * width).reshape(height, width)
    left, right = pixel[:, :-1].ravel(), pixel[:, 1:].ravel()
    top, bottom = pixel[:-1, :].ravel(), pixel[1:, :].ravel()
    rows = np.concatenate([pixel.ravel(), left, right, top, bottom])
    cols = np.concatenate([pixel.ravel(), right, left, bottom, top])
    vals = np.concatenate([diagonal.ravel(), -wx.ravel(), -wx.ravel(), -wy.ravel(),
                           -wy.ravel()])
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(height * width,) * 2)
    hierarchy = pyamg.ruge_stuben_solver(matrix)
    out = np.empty_like(rhs)
    for c in range(channels):
        out[..., c] = hierarchy.solve(rhs[..., c].ravel(), tol=RTOL, accel="cg",
                                      maxiter=1000).reshape(height, width)
    return out
