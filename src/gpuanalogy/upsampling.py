"""Edge-aware upsampling of a colour change: found at a reduced size, applied at full size.

The photo refinement is solved on reduced copies, where it is cheap; what it found is carried
to the input resolution by the colour guided filter's local affine model (He, Sun and Tang,
"Guided image filtering", ECCV 2010 / TPAMI 2013), fitted at low resolution and applied at full
resolution, as in guided upsampling (Kopf et al., "Joint bilateral upsampling", SIGGRAPH 2007;
Chen et al., "Bilateral guided upsampling", SIGGRAPH Asia 2016):

1. at low resolution, in each (2 radius + 1)^2 window, the least-squares affine map from the
   structure image's colour ``s`` to the colour change ``d = target - s``:
   ``d ~ M s + c`` (M 3 x 3, c 3), with a ridge ``eps`` on ``M``;
2. each pixel's coefficients averaged over the windows that hold it (the guided filter's second
   step), giving 12 smooth coefficient planes;
3. at full resolution, strip by strip: the planes upsampled bilinearly and applied to the
   full-resolution structure image, ``out = s + M s + c``.

:func:`refine_guided` is the photo refinement done this way: solved on reduced copies, by the
input's own WLS system brought to the reduced size (:func:`coarse_weights`), then carried up.

Fitting the change rather than the target itself makes the ridge pull towards "the same change
for every colour" rather than towards a flat colour: where a low-resolution window is flat, the
full-resolution structure's own detail passes through unchanged. Memory above the working size
is the output (3 bytes a pixel), the coefficients brought to the full width (48 bytes a column
and low-resolution row) and one strip's coefficients.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backend import Backend
from .box_filter import UPPER_TRIANGLE, box_mean, inverse_symmetric3
from .errors import InputError
from .images import resize_image
from .refinement import edge_weights, grey_guide, refine

__all__ = ["fit_colour_change", "apply_colour_change", "upsample_colour_change", "refine_guided",
           "coarse_weights"]

#: Pixels per strip when the coefficients are applied: bounds the memory of that step.
STRIP_PIXELS = 1 << 20


def fit_colour_change(structure: Any, target: Any, *, backend: Backend, radius: int = 2,
                      eps: float = 1e-3) -> Any:
    """The local affine colour change from ``structure`` to ``target``, as coefficient planes.

    Parameters
    ----------
    structure, target : array, shape (h, w, 3), float in [0, 1]
        The structure image and the result at the same (low) resolution.
    backend : Backend
        Where to compute (``backend.xp``).
    radius : int
        Half side of the windows the model is fitted in, in low-resolution pixels.
    eps : float
        Ridge on the colour matrix, a variance for images in [0, 1]: larger values make the
        change less dependent on colour and more on position.

    Returns
    -------
    coefficients : array, shape (12, h, w), float32, on the backend
        ``M[c, k]`` at index ``3 c + k`` (output channel c, input channel k), then ``c[c]``.

    Raises
    ------
    InputError
        When the images are not two RGB images of one shape, or a parameter is out of range.
    """
    xp = backend.xp
    if structure.ndim != 3 or structure.shape[2] != 3 or structure.shape != target.shape:
        raise InputError(f"fit_colour_change: need two H x W x 3 images of one shape, got "
                         f"{tuple(structure.shape)} and {tuple(target.shape)}.")
    if radius < 0 or not eps > 0:
        raise InputError(f"fit_colour_change: need radius >= 0 and eps > 0 "
                         f"(got radius={radius}, eps={eps}).")
    s = xp.moveaxis(xp.asarray(structure, dtype=xp.float64), -1, 0)
    d = xp.moveaxis(xp.asarray(target, dtype=xp.float64), -1, 0) - s
    mean_s, mean_d = box_mean(s, radius, xp), box_mean(d, radius, xp)
    moments = box_mean(xp.concatenate(
        [xp.stack([s[a] * s[b] for a, b in UPPER_TRIANGLE]),
         (s[:, None] * d[None, :]).reshape((9,) + s.shape[1:])]), radius, xp)
    cov = {ab: moments[k] - mean_s[ab[0]] * mean_s[ab[1]] + eps * (ab[0] == ab[1])
           for k, ab in enumerate(UPPER_TRIANGLE)}
    cross = moments[6:].reshape((3, 3) + s.shape[1:]) - mean_s[:, None] * mean_d[None, :]
    inverse = inverse_symmetric3(cov)
    matrix = [[sum(inverse[k][j] * cross[j, c] for j in range(3)) for k in range(3)]
              for c in range(3)]
    offset = [mean_d[c] - sum(matrix[c][k] * mean_s[k] for k in range(3)) for c in range(3)]
    planes = xp.stack([m for row in matrix for m in row] + offset)
    return box_mean(planes, radius, xp).astype(xp.float32)


def apply_colour_change(coefficients: Any, guide: np.ndarray, *, backend: Backend,
                        strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """The colour change of :func:`fit_colour_change` applied to the full-resolution ``guide``.

    Parameters
    ----------
    coefficients : array, shape (12, h, w), float32
        From :func:`fit_colour_change`, on the backend.
    guide : ndarray, shape (H, W, 3), uint8 or float in [0, 1], on the host
        The structure image at full resolution (any size; usually H >= h and W >= w).
    backend : Backend
    strip_pixels : int
        About how many pixels are processed at once: the memory beyond the output is about
        100 bytes times this, plus the coefficients' columns at full width (48 h W bytes).

    Returns
    -------
    out : ndarray, shape (H, W, 3), uint8, on the host
    """
    xp = backend.xp
    height, width = guide.shape[:2]
    low_h, low_w = coefficients.shape[1:]
    scale = 1.0 / 255.0 if guide.dtype == np.uint8 else 1.0
    # Bilinear is separable: the columns once, at the low height (12 x h x W), then each strip's
    # rows from two of those rows.
    c0, c1, fc = (backend.asarray(a) for a in _linear_taps(width, low_w))
    columns = coefficients[:, :, c1] - coefficients[:, :, c0]
    columns *= fc
    columns += coefficients[:, :, c0]
    r0, r1, fr = (backend.asarray(a) for a in _linear_taps(height, low_h))
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, strip_pixels // width)
    for top in range(0, height, rows):
        strip = slice(top, min(top + rows, height))
        first = columns[:, r0[strip]]
        coef = columns[:, r1[strip]]                                   # 12 x rows x W
        coef -= first
        coef *= fr[strip][None, :, None]
        coef += first
        s = xp.ascontiguousarray(xp.moveaxis(backend.asarray(guide[strip], dtype=xp.float32),
                                             -1, 0))
        s *= scale
        image = xp.empty(s.shape[1:] + (3,), xp.float32)
        for c in range(3):
            channel = coef[9 + c] + s[c]
            for k in range(3):
                channel += coef[3 * c + k] * s[k]
            image[..., c] = channel
        image *= 255.0
        xp.clip(image, 0.0, 255.0, out=image)
        out[strip] = backend.to_numpy(xp.rint(image, out=image).astype(xp.uint8))
    return out


def upsample_colour_change(structure: Any, target: Any, guide: np.ndarray, *,
                           backend: Backend, radius: int = 2, eps: float = 1e-3,
                           strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """``target``'s change from ``structure`` (both low resolution) carried onto ``guide``.

    :func:`fit_colour_change` then :func:`apply_colour_change`; see them for the parameters.
    ``guide`` is the full-resolution structure image, (H, W, 3) uint8 or float in [0, 1], on
    the host; returns (H, W, 3) uint8 on the host.

    Examples
    --------
    >>> from gpuanalogy.backend import cpu_backend
    >>> low = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    >>> full = np.repeat(np.repeat(low, 2, axis=0), 2, axis=1)
    >>> out = upsample_colour_change(low, low * 0.5, full, backend=cpu_backend())
    >>> out.shape, bool(np.abs(out / 255.0 - full * 0.5).max() < 0.05)
    ((32, 32, 3), True)
    """
    coefficients = fit_colour_change(structure, target, backend=backend, radius=radius, eps=eps)
    return apply_colour_change(coefficients, guide, backend=backend, strip_pixels=strip_pixels)


def refine_guided(result: np.ndarray, structure: np.ndarray, shape: tuple[int, int], *,
                  backend: Backend, lam: float = 0.8, alpha: float = 1.0, eps: float = 1e-4,
                  strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """The photo refinement of ``result`` solved at the smaller ``shape`` and carried back up.

    Both images are reduced (bicubic) to ``shape``; there :func:`gpuanalogy.refinement.refine`
    solves the full-resolution system coarsened to that size (:func:`coarse_weights`), and
    the colour change it finds is carried to the input size under ``structure`` by
    :func:`upsample_colour_change`.

    Parameters
    ----------
    result : ndarray, shape (H, W, 3), uint8, on the host
        The output to refine (A' or B).
    structure : ndarray, shape (H, W, 3), float32 in [0, 1], on the host
        The image whose structure the output keeps (A for A', B' for B).
    shape : (int, int)
        (h, w), where the refinement is solved; at most (H, W).
    backend : Backend
    lam, alpha, eps : float
        The WLS parameters of the full-resolution system (see
        :func:`gpuanalogy.refinement.wls_filter`).
    strip_pixels : int
        About how many input pixels are processed at once.

    Returns
    -------
    refined : ndarray, shape (H, W, 3), uint8, on the host
    """
    if result.dtype != np.uint8 or result.shape != structure.shape:
        raise InputError(f"refine_guided: need a uint8 result of the structure's shape "
                         f"{structure.shape}, got {result.dtype} {result.shape}.")
    weights = coarse_weights(structure, shape, lam=lam, alpha=alpha, eps=eps,
                             strip_pixels=strip_pixels)
    reduced = resize_image(result, shape).astype(np.float32) / np.float32(255.0)
    small = backend.asarray(np.clip(resize_image(structure, shape), 0.0, 1.0))
    change = refine(backend.asarray(reduced), small,
                    weights=tuple(backend.asarray(w) for w in weights))
    return upsample_colour_change(small, change, structure, backend=backend,
                                  strip_pixels=strip_pixels)


def coarse_weights(structure: np.ndarray, shape: tuple[int, int], *, lam: float = 0.8,
                   alpha: float = 1.0, eps: float = 1e-4, strip_pixels: int = STRIP_PIXELS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The WLS smoothness weights of ``structure``'s full-resolution system, brought to ``shape``.

    A reduced pixel stands for ``(H / h) (W / w)`` input pixels, and a pair of reduced pixels
    side by side for a block of input pairs: ``W / w`` of them in series along the pair's
    direction, ``H / h`` rows of them side by side. Against the data term of the pixels it
    stands for, a uniform block's weight so counts ``(w / W) ** 2`` times an input pair's
    (``(h / H) ** 2`` for vertical pairs). The block's weight is the inverse of its mean
    ``1 / a``: the harmonic mean that pairs in series call for, taken over the rows side by
    side as well (a simplification: those would call for the plain mean; the harmonic one
    smooths a little less). Where the guide is smooth this is close to the reduced guide's
    own weights with ``lam`` times the size ratio; where the input has grain the reduced guide
    has lost it, and these weights still smooth as little as the full-resolution solve does.

    Parameters
    ----------
    structure : ndarray, shape (H, W, 3), float in [0, 1], on the host
    shape : (int, int)
        (h, w), each from 1 to the input's.
    lam, alpha, eps : float
        The full-resolution system's parameters (see :func:`gpuanalogy.refinement.wls_filter`).
    strip_pixels : int
        About how many input pixels are processed at once.

    Returns
    -------
    wx, wy : ndarray, shapes (h, w-1) and (h-1, w), float64
    """
    height, width = structure.shape[:2]
    low_h, low_w = shape
    if not (1 <= low_h <= height and 1 <= low_w <= width):
        raise InputError(f"coarse_weights: shape {tuple(shape)} must be from 1 x 1 to the "
                         f"input's {height} x {width}.")
    # Per input row, the sums of 1/a over each reduced column's share, then over reduced rows.
    across_x = np.zeros((height, max(low_w - 1, 0)))
    across_y = np.zeros((max(height - 1, 0), low_w))
    cols_x, cols_y = _bins(width - 1, low_w - 1), _bins(width, low_w)
    rows = max(1, strip_pixels // width)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        grey = grey_guide(np.asarray(structure[top:min(bottom + 1, height)], np.float64), np)
        wx, wy = edge_weights(grey, 1.0, alpha, eps, False, np)
        if cols_x.size:
            across_x[top:bottom] = np.add.reduceat(1.0 / wx[:bottom - top], cols_x, axis=1)
        if wy.shape[0]:
            across_y[top:top + wy.shape[0]] = np.add.reduceat(1.0 / wy, cols_y, axis=1)
    return (_block_weight(across_x, _bins(height, low_h), cols_x, width - 1,
                          lam * (low_w / width) ** 2),
            _block_weight(across_y, _bins(height - 1, low_h - 1), cols_y, width,
                          lam * (low_h / height) ** 2))


def _bins(size: int, count: int) -> np.ndarray:
    """Where each of ``count`` contiguous, near-equal bins over ``size`` items starts."""
    return np.ceil(np.arange(count) * (size / max(count, 1))).astype(np.int64)


def _block_weight(column_sums: np.ndarray, row_starts: np.ndarray, col_starts: np.ndarray,
                  columns: int, factor: float) -> np.ndarray:
    """``factor`` over the mean of ``1 / a`` in each block, from per-row column sums."""
    if not (row_starts.size and col_starts.size):
        return np.zeros((row_starts.size, col_starts.size))
    sums = np.add.reduceat(column_sums, row_starts, axis=0)
    count_r = np.diff(np.append(row_starts, column_sums.shape[0]))
    count_c = np.diff(np.append(col_starts, columns))
    return factor * (count_r[:, None] * count_c[None, :]) / sums


def _linear_taps(size: int, low: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``size`` pixels, the two low-resolution neighbours and the weight of the second.

    Pixel centres are aligned (``(i + 0.5) low / size - 0.5``), clamped at the borders.
    """
    position = np.clip((np.arange(size) + 0.5) * (low / size) - 0.5, 0, low - 1)
    first = np.minimum(np.floor(position).astype(np.int64), max(low - 2, 0))
    second = np.minimum(first + 1, low - 1)
    return first, second, (position - first).astype(np.float32)
