"""Sub-pixel alignment of the final NNFs under a local colour model (an addition to the paper).

The method's fields are whole pixels found on VGG features, and on photographs of one scene
the level-1 fields are typically 1-2 px off the true correspondence (docs/performance.md,
known-answer analogies): every output pixel voted through them is off as well. This stage
keeps the paper's field as the starting point and moves each match by a sub-pixel offset
``d`` (a grid of step ``step`` within ``radius`` pixels) to where the source image, sampled
bilinearly through the shifted field, best explains the structure image up to a local affine
change of colour:

    cost_d(p) = min_{G, c} mean_{q in N(p)} || I(q) - G S_d(q) - c ||^2,
    S_d(q) = source(nnf(q) + d),   I = structure,   N(p) = the (2 window + 1)^2 window,

with a ridge ``eps`` on the 3 x 3 colour matrix G. This is the colour model of the guided
filter (He, Sun and Tang, "Guided image filtering", ECCV 2010), and the residual has the closed
form ``tr(cov(I)) - tr(cov(I, S) (cov(S) + eps)^-1 cov(S, I))``. The model accepts any locally
affine change of colour (exposure, white balance, channel mixing, sepia, contrast), so it
compares layouts across looks as the deep features do, but at sub-pixel precision. The
structure is fitted from the source and not the other way round: bilinear sampling between
pixels smooths the source, and a smoothed source explains less of the structure, so the cost
does not favour fractional offsets for their smoothing alone. Each pixel takes the offset of
least cost, the smallest offset winning ties, so flat regions, where every offset costs the
same, keep the paper's match.

Aligned fields are float (row, col); ``warp`` and ``upsample_nnf`` here are the sub-pixel twins
of ``gpuanalogy.nnf.warp`` and ``gpuanalogy.nnf.upsample_nnf`` (bilinear sampling instead of
whole pixels). Everything is array code on ``backend.xp``, so it runs on NumPy and CuPy alike.
"""
from __future__ import annotations

from typing import Any

from .backend import Backend
from .box_filter import UPPER_TRIANGLE, box_mean, inverse_symmetric3
from .checks import check_warp
from .errors import InputError

__all__ = ["align", "warp", "vote", "upsample_nnf"]


def align(structure: Any, source: Any, nnf: Any, *, backend: Backend, radius: float = 1.5,
          step: float = 0.25, window: int = 3, eps: float = 1e-4) -> Any:
    """Refine a field to sub-pixel precision (see the module docstring for the cost).

    Parameters
    ----------
    structure : array, shape (H_A, W_A, 3), float in [0, 1]
        The image whose layout the field follows (A for ``nnf_ab``).
    source : array, shape (H_B, W_B, 3), float in [0, 1]
        The image the field points into (B' for ``nnf_ab``).
    nnf : array, shape (H_A, W_A, 2), int or float
        The field to refine; its values must lie in ``source``.
    backend : Backend
    radius : float
        Largest correction per axis, in pixels.
    step : float
        Grid step of the corrections, in pixels.
    window : int
        Half side of the window N(p) the colour model is fitted over.
    eps : float
        Ridge on the colour matrix: a variance, for images in [0, 1] (1e-4: a standard
        deviation of 2.5 grey levels, about the noise of a photograph). Larger values bias
        the search towards offsets where the sampled source has more contrast.

    Returns
    -------
    array, shape (H_A, W_A, 2), float32
        ``nnf`` plus each pixel's best correction, inside ``source``.
    """
    xp = backend.xp
    _check_pair(structure, source, nnf)
    if not (radius >= 0 and step > 0 and window >= 1 and eps > 0):
        raise InputError("align needs radius >= 0, step > 0, window >= 1 and eps > 0.")
    # float32, channels first: the window sums add at most (2 window + 1)^2 terms.
    image = xp.ascontiguousarray(xp.moveaxis(xp.asarray(structure, dtype=xp.float32), -1, 0))
    source = xp.ascontiguousarray(xp.moveaxis(xp.asarray(source, dtype=xp.float32), -1, 0))
    base = xp.asarray(nnf, dtype=xp.float32)
    limit = xp.asarray([source.shape[1] - 1, source.shape[2] - 1], dtype=xp.float32)

    # The structure's side of the model is the same for every offset.
    mean_i = box_mean(image, window, xp)
    var_i = (box_mean(image * image, window, xp) - mean_i * mean_i).sum(axis=0)

    def cost(field: Any) -> Any:
        s = _bilinear(source, field[..., 0], field[..., 1], xp)               # 3 x H x W
        moments = box_mean(xp.concatenate(
            [s, xp.stack([s[a] * s[b] for a, b in UPPER_TRIANGLE]),
             (image[:, None] * s[None, :]).reshape((9,) + s.shape[1:])]), window, xp)
        mean_s = moments[:3]
        cov_s = {ab: moments[3 + k] - mean_s[ab[0]] * mean_s[ab[1]] + eps * (ab[0] == ab[1])
                 for k, ab in enumerate(UPPER_TRIANGLE)}
        cross = moments[9:].reshape((3, 3) + s.shape[1:]) - mean_i[:, None] * mean_s[None, :]
        inverse = inverse_symmetric3(cov_s)
        # tr(cross inverse cross^T), written out: 3 x 3 matrices per pixel are too small
        # for matmul
        explained = sum(cross[i, a] * inverse[a][b] * cross[i, b]
                        for i in range(3) for a in range(3) for b in range(3))
        return var_i - explained

    # One offset for the whole window (a locally constant correction), nearest offsets first,
    # and only a strictly lower cost moves a match.
    best_field, best_cost = base, cost(base)
    for offset in _offsets(radius, step):
        candidate = xp.clip(base + xp.asarray(offset, dtype=xp.float32), 0.0, limit)
        candidate_cost = cost(candidate)
        better = candidate_cost < best_cost
        best_cost = xp.where(better, candidate_cost, best_cost)
        best_field = xp.where(better[..., None], candidate, best_field)
    return best_field


def warp(source: Any, nnf: Any, *, patch_size: int, backend: Backend) -> Any:
    """Average voting through a sub-pixel field: :func:`gpuanalogy.nnf.warp` (the same
    arguments, checks and result) with bilinear samples, for an (H_A, W_A, 2) float ``nnf``.

    ``out(p) = mean of source(nnf(p + d) - d)`` over the patch offsets ``d`` with ``p + d`` in
    A and ``nnf(p + d) - d`` in B (``d = 0`` always counts). A field of whole numbers gives what
    ``gpuanalogy.nnf.warp`` gives.
    """
    nnf = backend.xp.asarray(nnf, dtype=backend.xp.float32)
    return vote(source, nnf, check_warp(source, nnf, patch_size), backend)


def vote(source: Any, nnf: Any, half: int, backend: Backend) -> Any:
    """:func:`warp` without its checks (``half`` is half the patch side), for fields the
    pipeline made itself (``gpuanalogy.fields``): no reads of the field back to the host."""
    xp = backend.xp
    channels = xp.ascontiguousarray(xp.moveaxis(xp.asarray(source, dtype=xp.float32), -1, 0))
    nnf = xp.asarray(nnf, dtype=xp.float32)
    ha, wa = nnf.shape[:2]
    hb, wb = source.shape[:2]
    total = xp.zeros((source.shape[2], ha, wa), dtype=xp.float32)
    count = xp.zeros((ha, wa), dtype=xp.float32)
    for dr in range(-half, half + 1):
        for dc in range(-half, half + 1):
            # pixels p whose neighbour p + d lies in A, and those neighbours
            p = (slice(max(0, -dr), ha - max(0, dr)), slice(max(0, -dc), wa - max(0, dc)))
            n = (slice(max(0, dr), ha + min(0, dr)), slice(max(0, dc), wa + min(0, dc)))
            rows, cols = nnf[n][..., 0] - dr, nnf[n][..., 1] - dc
            inside = (rows >= 0) & (rows <= hb - 1) & (cols >= 0) & (cols <= wb - 1)
            total[(slice(None),) + p] += xp.where(inside, _bilinear(channels, rows, cols, xp), 0)
            count[p] += inside
    return xp.ascontiguousarray(xp.moveaxis(total / count, 0, -1))


def upsample_nnf(nnf: Any, shape_a_new: tuple[int, int], shape_b_new: tuple[int, int],
                 backend: Backend, *, shape_b_old: tuple[int, int]) -> Any:
    """A sub-pixel field brought to other image sizes.

    The rule of ``gpuanalogy.nnf.upsample_nnf`` without its rounding: a new pixel ``p`` with
    parent ``P = floor(p * old_a / new_a)`` and fractional position ``f`` inside it gets
    ``(nnf[P] + f) * new_b / old_b``, clamped into B.

    Returns
    -------
    array, shape (H_A_new, W_A_new, 2), float32
    """
    xp = backend.xp
    nnf = xp.asarray(nnf, dtype=xp.float64)
    axes = []
    for axis in (0, 1):
        old_a, new_a = nnf.shape[axis], shape_a_new[axis]
        p = xp.arange(new_a, dtype=xp.int64)
        parent = (p * old_a) // new_a
        fraction = ((p * old_a) % new_a) / new_a
        axes.append((parent, fraction, shape_b_new[axis] / shape_b_old[axis], shape_b_new[axis]))
    (pr, fr, sr, hr), (pc, fc, sc, wc) = axes
    parents = nnf[pr[:, None], pc[None, :]]
    rows = xp.clip((parents[..., 0] + fr[:, None]) * sr, 0, hr - 1)
    cols = xp.clip((parents[..., 1] + fc[None, :]) * sc, 0, wc - 1)
    return xp.stack([rows, cols], axis=-1).astype(xp.float32)


def _offsets(radius: float, step: float) -> list[tuple[float, float]]:
    """Every (dr, dc) on the grid within ``radius``, nearest first, without (0, 0)."""
    n = int(radius / step + 1e-9)
    grid = [(i * step, j * step) for i in range(-n, n + 1) for j in range(-n, n + 1)]
    return sorted((d for d in grid if d != (0.0, 0.0)), key=lambda d: (d[0] ** 2 + d[1] ** 2, d))


def _bilinear(image: Any, rows: Any, cols: Any, xp: Any) -> Any:
    """``image`` (C, H, W) sampled at fractional (rows, cols), clamped: (C,) + rows.shape."""
    h, w = image.shape[1:]
    rows = xp.clip(rows, 0, h - 1)
    cols = xp.clip(cols, 0, w - 1)
    r0 = xp.minimum(xp.floor(rows).astype(xp.int64), max(h - 2, 0))
    c0 = xp.minimum(xp.floor(cols).astype(xp.int64), max(w - 2, 0))
    r1, c1 = xp.minimum(r0 + 1, h - 1), xp.minimum(c0 + 1, w - 1)
    fr = (rows - r0).astype(image.dtype)
    fc = (cols - c0).astype(image.dtype)
    top = image[:, r0, c0] * (1 - fc) + image[:, r0, c1] * fc
    bottom = image[:, r1, c0] * (1 - fc) + image[:, r1, c1] * fc
    return top * (1 - fr) + bottom * fr


def _check_pair(structure: Any, source: Any, nnf: Any) -> None:
    if structure.ndim != 3 or structure.shape[2] != 3 or source.ndim != 3 \
            or source.shape[2] != 3:
        raise InputError("align needs two RGB images (H, W, 3).")
    if nnf.ndim != 3 or tuple(nnf.shape) != tuple(structure.shape[:2]) + (2,):
        raise InputError(f"nnf has shape {tuple(nnf.shape)}; expected "
                         f"{tuple(structure.shape[:2]) + (2,)}.")
