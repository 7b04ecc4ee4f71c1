"""The WLS system ``(I + lam * Laplacian_a) u = g`` of :mod:`gpuanalogy.refinement` and its solvers.

The 5-point system over an H x W grid, with the smoothness weights of horizontal pairs
``wx`` (H, W-1) and vertical pairs ``wy`` (H-1, W), is solved for every channel of the right-hand
side at once, by one of three solvers :func:`solve` chooses among:

* ``"direct"``: sparse LU (SuperLU) on a nested-dissection ordering, exact, NumPy only;
* ``"cg"``: Jacobi-preconditioned conjugate gradients written against ``xp`` (NumPy or CuPy),
  light on memory but slower on the CPU;
* ``"amg"``: algebraic multigrid (:mod:`gpuanalogy.multigrid`, pyamg), memory linear in the
  pixels, NumPy only.

The memory each needs is estimated here too, for the checks made before work
(:mod:`gpuanalogy.sizes`).
"""
from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np

from . import multigrid
from .errors import DeviceMemoryError, InputError
from .memory import available_bytes, in_words

__all__ = ["Solver", "SOLVERS", "solve", "solve_direct", "solve_cg", "system_matrix",
           "direct_solve_bytes", "wls_solve_bytes"]

Solver = Literal["auto", "direct", "cg", "amg"]

#: The solvers :func:`solve` takes.
SOLVERS: tuple[Solver, ...] = get_args(Solver)

_ND_LEAF = 12   # smallest nested-dissection blocks: of 8, 12, 16, 24, the fastest measured


def solve(wx: Any, wy: Any, rhs: Any, xp: Any, *, solver: Solver = "auto",
          rtol: float = 1e-6) -> Any:
    """Solve the WLS system for every channel of ``rhs`` (H, W, C) float64, by ``solver``.

    ``"auto"``: cg for CuPy; for NumPy direct, or amg where pyamg is installed and the direct
    solve's memory (:func:`direct_solve_bytes`) is more than is free. ``rtol`` is the relative
    residual at which ``"cg"`` stops. Returns (H, W, C) on ``xp``.

    Raises
    ------
    InputError
        ``"direct"`` or ``"amg"`` asked for on CuPy arrays, or ``"amg"`` without pyamg.
    DeviceMemoryError
        The direct solve cannot fit the free memory.
    """
    height, width = rhs.shape[:2]
    if solver == "auto":
        solver = "cg" if xp is not np else ("amg" if _direct_too_big(height, width) else "direct")
    if solver in ("direct", "amg") and xp is not np:
        raise InputError(f"solver={solver!r} needs NumPy arrays. Try solver='cg' on the GPU.")
    if solver == "direct":
        return solve_direct(wx, wy, rhs)
    if solver == "amg":
        pixel = np.arange(height * width).reshape(height, width)
        return multigrid.solve(system_matrix(wx, wy, pixel).tocsr(), rhs)
    return solve_cg(wx, wy, rhs, xp, rtol=rtol)


def _diagonal(wx: Any, wy: Any, xp: Any) -> Any:
    """``1 +`` the sum of the weights of each pixel's edges: the system's diagonal, (H, W)."""
    diag = xp.ones((wy.shape[0] + 1, wx.shape[1] + 1))
    diag[:, :-1] += wx
    diag[:, 1:] += wx
    diag[:-1, :] += wy
    diag[1:, :] += wy
    return diag


def system_matrix(wx: np.ndarray, wy: np.ndarray, pixel: np.ndarray) -> Any:
    """The WLS system ``I + Laplacian`` weighted by ``wx``, ``wy`` as a SciPy sparse matrix.

    ``pixel`` (H, W) int64 holds each pixel's row in the system (``arange`` for the natural
    order, a permutation for an ordering of the direct solve). Returns an (H W, H W) COO matrix.
    """
    import scipy.sparse as sp  # noqa: PLC0415 - SciPy is only needed on the CPU solves

    left, right = pixel[:, :-1].ravel(), pixel[:, 1:].ravel()
    top, bottom = pixel[:-1, :].ravel(), pixel[1:, :].ravel()
    rows = np.concatenate([pixel.ravel(), left, right, top, bottom])
    cols = np.concatenate([pixel.ravel(), right, left, bottom, top])
    off_x, off_y = -wx.ravel(), -wy.ravel()
    vals = np.concatenate([_diagonal(wx, wy, np).ravel(), off_x, off_x, off_y, off_y])
    return sp.coo_matrix((vals, (rows, cols)), shape=(pixel.size, pixel.size))


# Memory of the direct solve: SuperLU's L and U on a nested-dissection order of the 5-point grid
# grow as n log2 n (George, "Nested dissection of a regular finite element mesh", 1973); both
# constants measured on dev-cpu (docs/performance.md, "Outputs above the working size").
_LU_BYTES_PER_N_LOG_N = 130
_SOLVE_BYTES_PER_PIXEL = 200


def _direct_too_big(height: int, width: int) -> bool:
    """Whether pyamg is installed and the direct solve needs more memory than is free."""
    free = available_bytes()
    return (free is not None and direct_solve_bytes(height, width) > free
            and multigrid.available())


def wls_solve_bytes(height: int, width: int) -> int:
    """About the peak memory of the NumPy solve of an H x W system, the smaller of the direct
    and (where pyamg is installed) the multigrid solve, in bytes."""
    direct = direct_solve_bytes(height, width)
    return min(direct, multigrid.solve_bytes(height, width)) if multigrid.available() else direct


def direct_solve_bytes(height: int, width: int) -> int:
    """About the peak host memory of the ``"direct"`` solve of an H x W system, in bytes."""
    n = max(height * width, 2)
    return int(n * (_LU_BYTES_PER_N_LOG_N * np.log2(n) + _SOLVE_BYTES_PER_PIXEL))


# Direct solve (CPU). Why direct: with eps = 1e-4 the weights in flat regions reach 8000 while
# across edges they are near 1, so the system is badly conditioned and Jacobi-preconditioned CG
# needs well over a thousand iterations on a photo. SuperLU on a geometric nested-dissection
# ordering (separators last, no pivoting: the matrix is SPD) factorises it faster than with
# SuperLU's own orderings (MMD, COLAMD), then solves every channel (three, or six in `refine`)
# for a fraction of that, to a relative residual near 1e-12.


def solve_direct(wx: np.ndarray, wy: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``A u = rhs`` for every column of ``rhs`` (H, W, C) with one factorisation."""
    from scipy.sparse.linalg import splu  # noqa: PLC0415 - SciPy is only needed on this path

    height, width, channels = rhs.shape
    n = height * width
    need, free = direct_solve_bytes(height, width), available_bytes()
    what = f"the WLS solve over {width}x{height} pixels"
    if free is not None and need > free:
        raise DeviceMemoryError(f"{what} needs about {in_words(need)} of memory but "
                                f"{in_words(free)} is free; try refinement at the working size "
                                "(--refine-upsample guided) or a smaller image")
    order = _nested_dissection(height, width, _ND_LEAF)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)  # rank[pixel] = its row in the permuted system
    matrix = system_matrix(wx, wy, rank.reshape(height, width)).tocsc()
    try:
        lu = splu(matrix, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
    except (RuntimeError, MemoryError) as exc:  # SuperLU's "SUPERLU_MALLOC fails ..."
        if isinstance(exc, RuntimeError) and "MALLOC" not in str(exc).upper():
            raise
        raise DeviceMemoryError(f"{what}: the machine ran out of memory; try refinement at "
                                "the working size (--refine-upsample guided) or a smaller "
                                "image") from exc
    permuted = lu.solve(np.ascontiguousarray(rhs.reshape(n, channels)[order]))
    out = np.empty_like(permuted)
    out[order] = permuted
    return out.reshape(height, width, channels)


def _nested_dissection(height: int, width: int, leaf: int) -> np.ndarray:
    """A fill-reducing elimination order for an H x W 5-point grid, as flat pixel indices.

    Cut the longer side with a one-pixel line, order the two halves (recursively), then the
    line. Blocks of at most ``leaf**2`` pixels are taken in row order.
    """
    index = np.arange(height * width).reshape(height, width)
    parts: list[np.ndarray] = []

    def split(r0: int, r1: int, c0: int, c1: int) -> None:
        h, w = r1 - r0, c1 - c0
        if h <= 0 or w <= 0:
            return
        if h * w <= leaf * leaf or max(h, w) < 3:
            parts.append(index[r0:r1, c0:c1].ravel())
        elif h >= w:
            mid = (r0 + r1) // 2
            split(r0, mid, c0, c1)
            split(mid + 1, r1, c0, c1)
            parts.append(index[mid, c0:c1])
        else:
            mid = (c0 + c1) // 2
            split(r0, r1, c0, mid)
            split(r0, r1, mid + 1, c1)
            parts.append(index[r0:r1, mid])

    split(0, height, 0, width)
    return np.concatenate(parts)


# Conjugate gradients (GPU, or low memory): the operator is applied as array slices, so the same
# code runs on NumPy and CuPy and is tested on the CPU against the direct solve. The Jacobi
# preconditioner is weak for this system, but every iteration is a handful of element-wise
# kernels over all channels at once, which a GPU runs in microseconds.


def _apply(u: Any, wx: Any, wy: Any) -> Any:
    """``(I + Laplacian_w) u`` for ``u`` of shape (C, H, W)."""
    out = u.copy()
    flow_x = wx * (u[:, :, 1:] - u[:, :, :-1])
    out[:, :, :-1] -= flow_x
    out[:, :, 1:] += flow_x
    flow_y = wy * (u[:, 1:, :] - u[:, :-1, :])
    out[:, :-1, :] -= flow_y
    out[:, 1:, :] += flow_y
    return out


def solve_cg(wx: Any, wy: Any, rhs: Any, xp: Any, *, rtol: float,
              max_iter: int = 20000, check_every: int = 8) -> Any:
    """Jacobi-preconditioned CG on all channels at once; ``rhs`` (H, W, C) -> (H, W, C)."""
    b = xp.ascontiguousarray(xp.moveaxis(rhs, 2, 0))
    inv_diag = 1.0 / _diagonal(wx, wy, xp)
    tol2 = (rtol ** 2) * xp.sum(b * b, axis=(1, 2))  # per channel, squared
    x = b.copy()  # the input is a good first guess for a smoothing
    r = b - _apply(x, wx, wy)
    z = inv_diag * r
    p = z.copy()
    rz = xp.sum(r * z, axis=(1, 2))
    for it in range(max_iter):
        if it % check_every == 0 and bool(xp.all(xp.sum(r * r, axis=(1, 2)) <= tol2)):
            break
        ap = _apply(p, wx, wy)
        pap = xp.sum(p * ap, axis=(1, 2))
        step = rz / xp.where(pap == 0, 1.0, pap)  # a converged channel has p = 0: step 0
        x += step[:, None, None] * p
        r -= step[:, None, None] * ap
        z = inv_diag * r
        rz_new = xp.sum(r * z, axis=(1, 2))
        beta = rz_new / xp.where(rz == 0, 1.0, rz)
        p = z + beta[:, None, None] * p
        rz = rz_new
    return xp.moveaxis(x, 0, 2)

