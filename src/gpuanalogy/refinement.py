"""Photo refinement: the weighted-least-squares (WLS) edge-preserving filter and step 5 of the method.

The WLS filter (Farbman, Fattal, Lischinski, Szeliski, "Edge-preserving decompositions for
multi-scale tone and detail manipulation", SIGGRAPH 2008) finds the image ``u`` closest to the
input ``g`` that is smooth wherever the guide is smooth:

    minimise  sum_p (u_p - g_p)^2 + lam * sum_{p~q} a_pq (u_p - u_q)^2,
    a_pq = 1 / (|L_p - L_q|^alpha + eps)

over 4-neighbour pairs ``p~q``; setting the gradient to zero gives the sparse symmetric positive
definite 5-point system ``(I + lam * Laplacian_a) u = g`` (solved by :mod:`gpuanalogy.wls_system`).

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

from typing import Any

import numpy as np

from . import wls_system
from .errors import InputError
from .wls_system import SOLVERS, Solver

__all__ = ["refine", "wls_filter", "edge_weights", "grey_guide"]

# Rec. 601 luma, the weights of OpenCV's BGR2GRAY that the official code uses (here in RGB order).
_LUMA = np.array([0.299, 0.587, 0.114])
_LOG_FLOOR = 1e-4   # inside the log when ``log_guide`` is set (black would give -inf)


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
        How the system is solved (:func:`gpuanalogy.wls_system.solve`): ``"direct"`` sparse LU,
        exact, NumPy only; ``"cg"`` conjugate gradients on NumPy or CuPy, light on memory;
        ``"amg"`` pyamg's algebraic multigrid, memory linear in the pixels, NumPy only;
        ``"auto"`` cg for CuPy, else direct, or amg where that does not fit the free memory.
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
    out = wls_system.solve(wx, wy, rhs, xp, solver=solver, rtol=rtol)
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
    if solver not in SOLVERS:
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
