"""Nearest-neighbour fields: construction, upsampling, average voting and energy.

An NNF from A to B is an ``(H_A, W_A, 2) int32`` array holding, for each pixel of A, the
(row, col) of its match in B. Every function takes a ``backend`` and runs on its arrays and
kernels (``backend.xp``, ``backend.kernels``).
"""
from __future__ import annotations

from typing import Any

from gpuanalogy.backend import Backend
from gpuanalogy.checks import check_labels, check_nnf, check_warp, patch_half, shape2
from gpuanalogy.errors import InputError
from gpuanalogy.regions import Labels

__all__ = ["identity_nnf", "random_nnf", "upsample_nnf", "warp", "nnf_energy"]


def identity_nnf(shape_a: tuple[int, int], shape_b: tuple[int, int], backend: Backend) -> Any:
    """The identity field, scaled when the sizes differ.

    ``nnf[y, x] = (floor(y * H_B / H_A), floor(x * W_B / W_A))``: the identity for equal sizes.

    Returns
    -------
    array, shape (H_A, W_A, 2), int32
    """
    xp = backend.xp
    ha, wa = shape2("shape_a", shape_a)
    hb, wb = shape2("shape_b", shape_b)
    rows = (xp.arange(ha, dtype=xp.int64) * hb) // ha
    cols = (xp.arange(wa, dtype=xp.int64) * wb) // wa
    nnf = xp.empty((ha, wa, 2), dtype=xp.int32)
    nnf[:, :, 0] = rows[:, None]
    nnf[:, :, 1] = cols[None, :]
    return nnf


def random_nnf(shape_a: tuple[int, int], shape_b: tuple[int, int], seed: int,
               backend: Backend) -> Any:
    """A field of independent uniform positions in B.

    The positions come from the kernels' counter-based generator (a hash of the seed and the
    pixel index), so a seed gives the same field on every backend.

    Returns
    -------
    array, shape (H_A, W_A, 2), int32
    """
    ha, wa = shape2("shape_a", shape_a)
    hb, wb = shape2("shape_b", shape_b)
    out = backend.xp.empty((ha, wa, 2), dtype=backend.xp.int32)
    return backend.kernels.fill_random_nnf(out, shape_b=(hb, wb), seed=int(seed))


def upsample_nnf(nnf: Any, shape_a_new: tuple[int, int], shape_b_new: tuple[int, int],
                 backend: Backend, *, shape_b_old: tuple[int, int]) -> Any:
    """Nearest-neighbour upsampling of an NNF to the next (finer) pyramid level.

    Per axis, with A going from ``old_a`` to ``new_a`` pixels and B from ``old_b`` to
    ``new_b``: a new pixel ``p`` has the parent ``P = floor(p * old_a / new_a)`` and the
    fractional position ``f = (p * old_a mod new_a) / new_a`` inside it (so ``p`` sits at
    ``P + f`` in old-A units). Its match keeps that position relative to the parent's match::

        q = floor((nnf[P] + f) * new_b / old_b),   clamped into [0, new_b - 1]

    For exact doubling this is ``q = 2 nnf[P] + (p mod 2)``; it also covers sizes that are not
    multiples (ceil-pooled VGG maps, e.g. 19 -> 37) and A, B of different sizes. Integer
    arithmetic only, so every backend gives identical fields.

    Parameters
    ----------
    nnf : array, shape (old_H_A, old_W_A, 2), int32
    shape_a_new, shape_b_new : (int, int)
        Sizes of A and B at the new level.
    backend : Backend
    shape_b_old : (int, int)
        Size of B at the old level (the field's values index it; it cannot be read off the
        field itself).

    Returns
    -------
    array, shape (H_A_new, W_A_new, 2), int32
    """
    check_nnf(nnf)
    shape_a_new = shape2("shape_a_new", shape_a_new)
    shape_b_new = shape2("shape_b_new", shape_b_new)
    shape_b_old = shape2("shape_b_old", shape_b_old)
    nnf = backend.xp.ascontiguousarray(backend.xp.asarray(nnf), dtype=backend.xp.int32)
    return backend.kernels.upsample_nnf(nnf, shape_a_new=shape_a_new, shape_b_old=shape_b_old,
                                        shape_b_new=shape_b_new)


def warp(source: Any, nnf: Any, *, patch_size: int, backend: Backend,
         labels: Labels | None = None) -> Any:
    """Average voting: rebuild A's grid from ``source`` (on B's grid) through ``nnf``.

    ``out(p) = mean of source(nnf(p + d) - d)`` over the patch offsets ``d`` with ``p + d``
    in A and ``nnf(p + d) - d`` in B (``d = 0`` always counts, so the mean is defined); with
    ``labels`` (:func:`gpuanalogy.regions.search_labels`) only the ``nnf(p + d) - d`` that p
    may match count besides ``d = 0``: no colour crosses from one region into another.

    Parameters
    ----------
    source : array, shape (H_B, W_B, C)
        Image or feature map on B's grid (cast to float32).
    nnf : array, shape (H_A, W_A, 2), int32
        Field from A to B; values must lie in B.
    patch_size : int
        Odd voting patch side.
    backend : Backend

    Returns
    -------
    array, shape (H_A, W_A, C), float32

    Raises
    ------
    InputError
        A malformed field, an even patch size, or a field pointing outside ``source``.
    """
    xp = backend.xp
    source = xp.ascontiguousarray(xp.asarray(source), dtype=xp.float32)
    nnf = xp.ascontiguousarray(xp.asarray(nnf), dtype=xp.int32)
    check_labels(labels, nnf.shape[:2], source.shape[:2])
    return backend.kernels.warp(source, nnf, half=check_warp(source, nnf, patch_size),
                                labels=labels)


def nnf_energy(a: Any, a_prime: Any, b: Any, b_prime: Any, nnf: Any, patch_size: int,
               backend: Backend) -> Any:
    """Per-pixel mean patch energy of a field (what ``patchmatch`` minimises).

    ``E(p) = sum_d ||a(p+d) - b(q+d)||^2 + ||a'(p+d) - b'(q+d)||^2 / #d`` with ``q = nnf(p)``
    and ``d`` over the patch offsets with ``p + d`` in A and ``q + d`` in B.

    Parameters
    ----------
    a, a_prime : array, shape (H_A, W_A, C), float32
    b, b_prime : array, shape (H_B, W_B, C), float32
    nnf : array, shape (H_A, W_A, 2), int32
        Values must lie in B.
    patch_size : int
    backend : Backend

    Returns
    -------
    array, shape (H_A, W_A), float32
    """
    xp = backend.xp
    check_nnf(nnf)
    half = patch_half(patch_size)
    if a.shape != a_prime.shape or b.shape != b_prime.shape or a.shape[2] != b.shape[2]:
        raise InputError("a, a_prime and b, b_prime must be (H, W, C) maps with equal channels.")
    if tuple(nnf.shape[:2]) != tuple(a.shape[:2]):
        raise InputError(f"nnf covers {tuple(nnf.shape[:2])} pixels but A has "
                         f"{tuple(a.shape[:2])}.")
    a, a_prime, b, b_prime = (xp.ascontiguousarray(xp.asarray(x), dtype=xp.float32)
                              for x in (a, a_prime, b, b_prime))
    nnf = xp.ascontiguousarray(xp.asarray(nnf), dtype=xp.int32)
    check_nnf(nnf, b.shape)
    return backend.kernels.nnf_energy(a, a_prime, b, b_prime, nnf, half=half)
