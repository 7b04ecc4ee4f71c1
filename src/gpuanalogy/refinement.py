"""Photo refinement: the weighted-least-squares (WLS) edge-preserving filter and step 5 of the method.

The WLS filter (Farbman, Fattal, Lischinski, Szeliski, "Edge-preserving decompositions for
multi-scale tone and detail manipulation", SIGGRAPH 2008) finds the image ``u`` closest to the
input ``g`` that is smooth wherever the guide is smooth:

    minimise  sum_p (u_p - g_p)^2 + lam * sum_{p~q} a_pq (u_p - u_q)^2,
    a_pq = 1 / (|L_p - L_q|^alpha + eps)

over 4-neighbour pairs ``p~q``; setting the gradient to zero gives the sparse symmetric positive
definite 5-point system ``(I + lam * Laplacian_a) u = g``.

Which ``L``: Farbman et al. (and the widely copied MATLAB ``wlsFilter``) take the log-luminance,
``L = log(guide + tiny)``. The official Deep Image Analogy code (``WLS.cpp``, called with
``lambda = 0.8, alpha = 1, eps = 1e-4`` on ``grey(A)`` in [0, 1]) takes the grey values themselves,
with no log. We follow the official code by default, since its parameters were tuned for it;
``log_guide=True`` gives the paper's log-luminance weights. One deliberate difference: the official
loop leaves the weights of the last row and column at zero (so the last column is never smoothed
vertically); here every 4-neighbour pair gets its weight.

Refinement (DESIGN.md step 5): ``refined = S + WLS(R) - WLS(S)`` with both filtered under the guide
``grey(S)``, where ``R`` is the result (A' or B) and ``S`` the structure image (A or B'): the
result's smooth colour layer on top of the structure image's edges and detail.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np

from . import multigrid
from .errors import DeviceMemoryError, InputError
from .memory import available_bytes, in_words

__all__ = ["refine", "wls_filter", "edge_weights", "grey_guide", "system_matrix",
           "direct_solve_bytes", "wls_solve_bytes"]

Solver = Literal["auto", "direct", "cg", "amg"]

# Rec. 601 luma, the weights of OpenCV's BGR2GRAY that the official code uses (here in RGB order).
_LUMA = np.array([0.299, 0.587, 0.114])
_LOG_FLOOR = 1e-4   # inside the log when ``log_guide`` is set (black would give -inf)
_ND_LEAF = 12   # smallest nested-dissection blocks: of 8, 12, 16, 24, the fastest measured


def wls_filter(image: Any, guide: Any, *, lam: float = 0.8, alpha: float = 1.0,
               eps: float = 1e-4, log_guide: bool = False, solver: Solver = "auto",
               rtol: float = 1e-6, xp: Any = None, weights: tuple[Any, Any] | None = None) -> Any:
    """Weighted-least-squares edge-preserving smoothing of ``image`` under ``guide``.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C), float
        The image to smooth (any range; all channels share one factorisation).
    guide : ndarray, shape (H, W), float in [0, 1]
        Grey image whose edges are kept: smoothing is weak across its steps.
    lam : float
        Smoothness weight (lambda). 0 returns the input.
    alpha : float
        Exponent on the guide gradient: larger keeps edges sharper.
    eps : float
        Added to ``|gradient|^alpha`` so flat regions get a finite weight.
    log_guide : bool
        Weights from ``log(guide)`` as in Farbman et al. instead of the guide itself as in the
        official Deep Image Analogy code (the default).
    solver : {"auto", "direct", "cg", "amg"}
        ``"direct"``: sparse LU (SuperLU) on a nested-dissection ordering, exact, NumPy only.
        ``"cg"``: Jacobi-preconditioned conjugate gradients written against ``xp`` (NumPy or CuPy),
        light on memory but slower on the CPU. ``"amg"``: algebraic multigrid from pyamg
        (:mod:`gpuanalogy.multigrid`), memory linear in the pixels, NumPy only. ``"auto"``: cg
        for CuPy; for NumPy direct, or amg where pyamg is installed and the direct solve's
        memory (:func:`direct_solve_bytes`) is more than is free.
    rtol : float
        Relative residual at which ``"cg"`` stops.
    xp : module, optional
        ``numpy`` or ``cupy``; taken from ``image`` when not given.
    weights : (wx, wy), optional
        Smoothness weights ``lam * a``, (H, W-1) and (H-1, W), instead of the guide's
        (:func:`edge_weights`); ``lam``, ``alpha``, ``eps`` and ``log_guide`` are then unused.

    Returns
    -------
    filtered : ndarray, same shape as ``image``, float32, on the same device.

    Raises
    ------
    InputError
        When the shapes do not match or a parameter is out of range.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> step = np.where(np.arange(32) < 16, 0.2, 0.8).astype(np.float32) * np.ones((32, 1))
    >>> noisy = (step + rng.normal(0, 0.05, step.shape)).astype(np.float32)
    >>> smooth = wls_filter(noisy, noisy)
    >>> bool(smooth[:, :12].std() < noisy[:, :12].std() / 3)
    True
    """
    xp = _array_module(image) if xp is None else xp
    image = xp.asarray(image)
    guide = xp.asarray(guide)
    _check_wls_inputs(image, guide, lam, alpha, eps, solver)
    height, width = guide.shape
    rhs = image.reshape(height, width, -1).astype(xp.float64)
    wx, wy = (edge_weights(guide.astype(xp.float64), lam, alpha, eps, log_guide, xp)
              if weights is None else [xp.asarray(w, dtype=xp.float64) for w in weights])
    if wx.shape != (height, width - 1) or wy.shape != (height - 1, width):
        raise InputError(f"wls_filter: weights of shapes {wx.shape} and {wy.shape} do not fit "
                         f"a {height} x {width} guide.")
    if (lam == 0 and weights is None) or height * width == 1:
        return image.astype(xp.float32)
    if solver == "auto":
        solver = "cg" if xp is not np else ("amg" if _direct_too_big(height, width) else "direct")
    if solver in ("direct", "amg") and xp is not np:
        raise InputError(f"solver={solver!r} needs NumPy arrays. Try solver='cg' on the GPU.")
    if solver == "direct":
        out = _solve_direct(wx, wy, rhs)
    elif solver == "amg":
        pixel = np.arange(height * width).reshape(height, width)
        out = multigrid.solve(system_matrix(wx, wy, pixel).tocsr(), rhs)
    else:
        out = _solve_cg(wx, wy, rhs, xp, rtol=rtol)
    return out.reshape(image.shape).astype(xp.float32)


def refine(result: Any, structure: Any, *, lam: float = 0.8, alpha: float = 1.0,
           eps: float = 1e-4, weights: tuple[Any, Any] | None = None) -> Any:
    """The photo refinement of step 5: ``structure + WLS(result) - WLS(structure)``.

    Both images are filtered under the guide ``grey(structure)`` in [0, 1], in one solve (the six
    channels share one factorisation).

    Parameters
    ----------
    result : array, shape (H, W, 3), uint8 or float in [0, 1]
        The analogy output to refine (A' or B), NumPy or CuPy (the backend's arrays: CuPy is
        solved by conjugate gradients on the device, see :func:`wls_filter`).
    structure : array, shape (H, W, 3), uint8 or float in [0, 1]
        The image whose structure the output keeps (A for A', B' for B), on the same device.
    lam, alpha, eps : float
        WLS parameters (the official values are the defaults); see :func:`wls_filter`.
    weights : (wx, wy), optional
        Smoothness weights instead of ``grey(structure)``'s, as in :func:`wls_filter` (e.g.
        :func:`gpuanalogy.upsampling.coarse_weights`: a larger image's, brought to this size).

    Returns
    -------
    refined : array, shape (H, W, 3), on the inputs' device
        uint8 when ``result`` is uint8, else float32; clipped to the valid range in both cases.

    Raises
    ------
    InputError
        When the two images differ in shape or are not RGB.

    Examples
    --------
    >>> a = np.full((8, 8, 3), 0.5, np.float32)
    >>> bool(np.allclose(refine(a, a), a))
    True
    """
    for name, image in (("result", result), ("structure", structure)):
        if getattr(image, "ndim", None) != 3 or image.shape[2] != 3:
            raise InputError(f"refine: {name} must be an H x W x 3 array, "
                             f"got {getattr(image, 'shape', type(image).__name__)}.")
    if result.shape != structure.shape:
        raise InputError(f"refine: result {result.shape} and structure {structure.shape} must "
                         "have the same shape. Resize one to the other first.")
    xp = _array_module(result)
    res = _to_unit_float(result, xp)
    struct = _to_unit_float(structure, xp)
    both = xp.concatenate([res, struct], axis=2)
    smooth = wls_filter(both, grey_guide(struct, xp), lam=lam, alpha=alpha, eps=eps, xp=xp,
                        weights=weights).astype(xp.float64)
    refined = xp.clip(struct + smooth[..., :3] - smooth[..., 3:], 0.0, 1.0)
    if result.dtype == np.uint8:
        return xp.rint(refined * 255.0).astype(xp.uint8)
    return refined.astype(xp.float32)


# --------------------------------------------------------------------------------------------
# Internals


def _array_module(array: Any) -> Any:
    if isinstance(array, np.ndarray) or not type(array).__module__.startswith("cupy"):
        return np
    import cupy  # noqa: PLC0415 - only reached with a CuPy array in hand

    return cupy


def _check_wls_inputs(image: Any, guide: Any, lam: float, alpha: float, eps: float,
                      solver: str) -> None:
    if guide.ndim != 2:
        raise InputError(f"wls_filter: guide must be a grey H x W array, got shape {guide.shape}.")
    if image.ndim not in (2, 3) or image.shape[:2] != guide.shape:
        raise InputError(f"wls_filter: image {image.shape} must be H x W or H x W x C with the "
                         f"guide's H x W {guide.shape}.")
    if image.size == 0:
        raise InputError("wls_filter: image is empty.")
    if not lam >= 0 or not alpha > 0 or not eps > 0:
        raise InputError(f"wls_filter: need lam >= 0, alpha > 0 and eps > 0 "
                         f"(got lam={lam}, alpha={alpha}, eps={eps}).")
    if solver not in ("auto", "direct", "cg", "amg"):
        raise InputError(f"wls_filter: solver={solver!r} is not supported. "
                         "Try 'auto', 'direct', 'cg' or 'amg'.")


def _to_unit_float(image: Any, xp: Any) -> Any:
    image = xp.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(xp.float64) / 255.0
    if image.dtype.kind == "f":
        return image.astype(xp.float64)
    raise InputError(f"refine: dtype={image.dtype} is not supported. "
                     "Try uint8, or float32 in [0, 1].")


def grey_guide(structure: Any, xp: Any) -> Any:
    """The refinement's guide: the Rec. 601 grey of an (H, W, 3) image in [0, 1], (H, W)."""
    return xp.clip(structure @ xp.asarray(_LUMA), 0.0, 1.0)


def edge_weights(guide: Any, lam: float, alpha: float, eps: float, log_guide: bool,
                 xp: Any) -> tuple[Any, Any]:
    """``lam * a`` for horizontal pairs, shape (H, W-1), and vertical pairs, shape (H-1, W)."""
    level = xp.log(xp.maximum(guide, 0.0) + _LOG_FLOOR) if log_guide else guide
    wx = lam / (xp.abs(xp.diff(level, axis=1)) ** alpha + eps)
    wy = lam / (xp.abs(xp.diff(level, axis=0)) ** alpha + eps)
    return wx, wy


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


def _solve_direct(wx: np.ndarray, wy: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``A u = rhs`` for every column of ``rhs`` (H, W, C) with one factorisation."""
    from scipy.sparse.linalg import splu  # noqa: PLC0415 - SciPy is only needed on this path  # noqa: PLC0415

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


def _solve_cg(wx: Any, wy: Any, rhs: Any, xp: Any, *, rtol: float,
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

