"""PatchMatch NNF search on normalised feature maps (the NNF search step of Deep Image Analogy).

The search follows Liao et al. 2017 (Sec. 4.2) and the official implementation's choices:
jump-flooding propagation with steps 8, 4, 2, 1 in four directions, then random search around
the current match with the radius halving down to 1. Each pass is one kernel of
``backend.kernels`` reading one NNF/energy buffer and writing the other (ping-pong), so passes
are race-free and a seed draws the same candidates on every backend (the energies agree to
rounding: ``kernels._device`` says why not to the bit); this module only owns the schedule.
"""
from __future__ import annotations

from typing import Any

from gpuanalogy.backend import Backend
from gpuanalogy.checks import check_labels, patch_half
from gpuanalogy.errors import InputError
from gpuanalogy.regions import Labels

__all__ = ["normalize_features", "patchmatch", "JUMP_STEPS"]

#: Jump-flooding steps of one propagation sweep (official implementation: 8, 4, 2, 1).
JUMP_STEPS = (8, 4, 2, 1)

_EPS = 1e-8


def normalize_features(f: Any, backend: Backend) -> Any:
    """Channel-wise L2 normalisation of a VGG feature map, in matching layout.

    Parameters
    ----------
    f : array, shape (C, H, W)
        Feature map as VGG gives it (NumPy or CuPy, any real dtype).
    backend : Backend

    Returns
    -------
    array, shape (H, W, C), float32, C-contiguous
        ``f[:, y, x] / max(||f[:, y, x]||, 1e-8)``: unit vectors, and zero where the feature
        vector is zero (dead positions stay zero instead of becoming NaN).
    """
    xp = backend.xp
    if f.ndim != 3:
        raise InputError(f"feature map has shape {tuple(f.shape)}; expected (C, H, W).")
    hwc = xp.transpose(xp.asarray(f, dtype=xp.float32), (1, 2, 0))
    norm = xp.sqrt(xp.sum(hwc * hwc, axis=2, keepdims=True))
    return xp.ascontiguousarray(hwc / xp.maximum(norm, xp.float32(_EPS)), dtype=xp.float32)


def _check_pair(name: str, x: Any, x_prime: Any) -> None:
    if x.ndim != 3 or x.shape != x_prime.shape:
        raise InputError(f"{name} and {name}' must be (H, W, C) feature maps of one shape; got "
                         f"{tuple(x.shape)} and {tuple(x_prime.shape)}.")


def _prepare(x: Any, xp: Any, dtype: Any) -> Any:
    return xp.ascontiguousarray(xp.asarray(x), dtype=dtype)


def patchmatch(a: Any, a_prime: Any, b: Any, b_prime: Any, nnf: Any, *, patch_size: int,
               radius: int, iterations: int = 10, seed: int = 0,
               jumps: tuple[int, ...] = JUMP_STEPS, labels: Labels | None = None,
               backend: Backend) -> tuple[Any, Any]:
    """Refine the NNF from A to B with PatchMatch.

    Minimises, for every pixel p of A, the mean patch energy of p -> q = nnf(p):
    over the offsets d of the ``patch_size`` x ``patch_size`` patch with p + d in A and
    q + d in B, ``sum ||a(p+d) - b(q+d)||^2 + ||a'(p+d) - b'(q+d)||^2`` divided by the number
    of such offsets. For the B -> A field call it again with the roles swapped:
    ``patchmatch(b_prime, b, a_prime, a, ...)`` (B' is the structure on that side).

    Each iteration runs one propagation pass per jump step (``jumps``; each pixel tries
    ``nnf(p + s) - s`` for the four neighbours at distance ``step``, clamped into B) and then
    one random-search pass (candidates drawn uniformly in the window of radius ``radius``,
    ``radius // 2``, ..., 1 around the current match, clipped to B; the draws are a hash of
    ``(seed, iteration, pixel index, draw)``, so CPU and CUDA draw the same numbers).

    Parameters
    ----------
    a, a_prime : array, shape (H_A, W_A, C), float32
        Normalised feature maps of A and A' (see ``normalize_features``).
    b, b_prime : array, shape (H_B, W_B, C), float32
        Normalised feature maps of B and B'.
    nnf : array, shape (H_A, W_A, 2), int32
        Initial field, (row, col) into B; values outside B are clamped. Not modified.
    patch_size : int
        Odd patch side (3 or 5 in Deep Image Analogy).
    radius : int
        Initial random-search radius in B pixels; larger than B means whole-map search.
    iterations : int
    seed : int
    jumps : tuple of int
        The propagation's jump steps, longest first (8, 4, 2, 1, the official ones); ``()``
        leaves only the random search.
    labels : gpuanalogy.regions.Labels, optional
        Region labels of A and B (:func:`gpuanalogy.regions.search_labels`): a labelled pixel
        of A matches only pixels of its label, none matches a wall. The start field's
        forbidden matches are replaced by draws among the allowed pixels, propagation skips
        forbidden candidates and the random search draws among allowed pixels.
    backend : Backend

    Returns
    -------
    nnf : array, shape (H_A, W_A, 2), int32
    energy : array, shape (H_A, W_A), float32
        Mean patch energy of each pixel's match (as ``gpuanalogy.nnf.nnf_energy``).

    Raises
    ------
    InputError
        Mismatched shapes or an even / non-positive patch size.
    """
    xp = backend.xp
    kernels = backend.kernels
    _check_pair("A", a, a_prime)
    _check_pair("B", b, b_prime)
    if a.shape[2] != b.shape[2]:
        raise InputError(f"A has {a.shape[2]} channels and B has {b.shape[2]}; they must agree.")
    ha, wa = a.shape[:2]
    hb, wb = b.shape[:2]
    if tuple(nnf.shape) != (ha, wa, 2):
        raise InputError(f"nnf has shape {tuple(nnf.shape)}; expected {(ha, wa, 2)} for A.")
    half = patch_half(patch_size)
    check_labels(labels, (ha, wa), (hb, wb))
    if iterations < 0 or radius < 0:
        raise InputError("iterations and radius must be non-negative.")

    a, a_prime, b, b_prime = (_prepare(x, xp, xp.float32) for x in (a, a_prime, b, b_prime))
    radius = min(int(radius), max(hb, wb))  # a bigger window is clipped to B anyway
    steps = [s for s in jumps if s < max(ha, wa)]  # longer jumps land outside A

    nnfs = [xp.empty((ha, wa, 2), dtype=xp.int32) for _ in range(2)]
    energies = [xp.empty((ha, wa), dtype=xp.float32) for _ in range(2)]
    kernels.pm_init(a, a_prime, b, b_prime, _prepare(nnf, xp, xp.int32), nnfs[0], energies[0],
                    half=half, labels=labels, seed=seed)
    cur = 0
    for iteration in range(iterations):
        for step in steps:
            kernels.pm_propagate(a, a_prime, b, b_prime, nnfs[cur], energies[cur],
                                 nnfs[1 - cur], energies[1 - cur], half=half, step=step,
                                 labels=labels)
            cur = 1 - cur
        if radius >= 1:
            kernels.pm_random_search(a, a_prime, b, b_prime, nnfs[cur], energies[cur],
                                     nnfs[1 - cur], energies[1 - cur], half=half, radius=radius,
                                     seed=seed, iteration=iteration, labels=labels)
            cur = 1 - cur
    return nnfs[cur], energies[cur]
