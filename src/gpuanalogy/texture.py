"""Fields refined at the input resolution on image patches, for outputs with the source's texture.

The method finds its fields at the working size. Brought to a larger input by the NNF upsampling
rule, a field is piecewise constant over blocks of input pixels and off by up to a few of them,
so voting the input's own pixels through it ("nnf" outputs) shows seams, and voting at the
working size and resizing ("cubic") loses the texture. Here each upsampled field is refined by
PatchMatch (``gpuanalogy.patchmatch``) on image patches, in a small window around its upsampled
match, before it votes the source's input-size pixels:

* the energy is the method's own with images for features: A and an estimate of A' on one side,
  an estimate of B and B' on the other (``||A(p) - B(q)||^2 + ||A'(p) - B'(q)||^2`` over a patch);
  the estimates are the "cubic" outputs (voted at the working size, resized), so the refined
  match keeps the working-size answer's colours and takes its texture from B''s own pixels;
* two passes, coarse to fine. The coarse pass works on the images reduced by
  :func:`coarse_factor` (box averages: a power of two, at most :data:`MAX_COARSE_FACTOR`, never
  coarser than the working grid): one PatchMatch iteration on 5 x 5 patches with the whole
  propagation and a random search within two working pixels. Its field, brought to the input
  size by the NNF rule, is constant over blocks of ``factor`` pixels; the fine pass gives every
  input pixel its own alignment by a random search within :data:`FINE_RADIUS` pixels on 3 x 3
  patches, without propagation (which would spread the blocks' offsets again). Nearly all the
  work is the fine pass, a few patch comparisons per input pixel;
* A's rows are processed in strips of about :data:`STRIP_PIXELS` pixels, each with a margin
  (whole patches and the longest propagation jump beyond its kept rows), against only the rows
  of B that the strip's matches can reach: memory beyond the images and fields is bounded by a
  strip, and time is linear in the pixels;
* the kernels are PatchMatch's, so both backends run it (strips move to the device one at a
  time).

docs/performance.md ("Output modes above the working size") holds the measurements behind the
schedule.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .backend import Backend
from .checks import patch_half
from .errors import InputError
from .fields import Field
from .patchmatch import JUMP_STEPS, patchmatch
from .regions import reduce_labels, search_labels

#: Region labels for the search and the vote: (the layout's labels or None, the source's, K),
#: host (H, W) int32 arrays at the input sizes (``gpuanalogy.guides.Guides.pair``).
RegionIds = tuple[np.ndarray | None, np.ndarray, int]

__all__ = ["refine_field", "search", "textured_vote", "grid_scale", "coarse_factor",
           "search_radius", "reduce_image", "reduce_field", "STRIP_PIXELS", "MAX_COARSE_FACTOR",
           "FINE_RADIUS"]

#: Pixels of A per strip: bounds the memory of one refinement step.
STRIP_PIXELS = 1 << 20
#: The coarse pass's grid is the input's reduced by at most this factor.
MAX_COARSE_FACTOR = 4
#: The fine pass's random-search radius, in input pixels.
FINE_RADIUS = 2
COARSE_PATCH_SIZE = 5
FINE_PATCH_SIZE = 3
#: Added to the seed of the fine pass, so its draws are a stream apart from the coarse pass's.
_FINE_STREAM = 1 << 20


def grid_scale(full: tuple[int, int], work: tuple[int, int]) -> float:
    """Input pixels per working pixel: the larger of the two axes' ratios."""
    return max(full[0] / work[0], full[1] / work[1])


def search_radius(scale: float) -> int:
    """The random-search radius at the input size: two working pixels, in input pixels.

    The working-size fields are right to a pixel or two of the working grid, so their matches at
    the input size lie within twice the scale (:func:`grid_scale`) between the grids.
    """
    return max(1, 2 * math.ceil(scale))


def coarse_factor(scale: float) -> int:
    """The coarse pass's reduction: the largest power of two not above ``scale`` (so the coarse
    grid is no coarser than the working one), at most :data:`MAX_COARSE_FACTOR`."""
    factor = 1
    while 2 * factor <= min(scale, MAX_COARSE_FACTOR):
        factor *= 2
    return factor


def refine_field(field: np.ndarray, layout: np.ndarray, layout_estimate: np.ndarray,
                 source: np.ndarray, source_estimate: np.ndarray, *, scale: float, seed: int = 0,
                 backend: Backend, strip_pixels: int = STRIP_PIXELS,
                 labels: RegionIds | None = None) -> np.ndarray:
    """A field at the input size refined on image patches, coarse to fine (see the module).

    Parameters
    ----------
    field : ndarray, shape (H_A, W_A, 2), int32 or float
        The field from the layout image to the source image at the input sizes (the level-1
        field upsampled); fractional values are rounded. On the host.
    layout, layout_estimate : ndarray, shape (H_A, W_A, 3)
        The layout image (A for A') and the estimate of the output on its grid (A'), each
        uint8 or float in [0, 1], on the host.
    source, source_estimate : ndarray, shape (H_B, W_B, 3)
        The source image (B' for A') and the estimate of the other output on its grid (B),
        uint8 or float in [0, 1], on the host.
    scale : float
        Input pixels per working pixel (:func:`grid_scale`; the larger of the two images').
    seed : int
    backend : Backend
        Where the search runs.
    strip_pixels : int
        About how many pixels of A each strip holds.
    labels : (ndarray or None, ndarray, int), optional
        Region labels of the layout and the source images and their count: both passes keep
        every match among the pixels they allow (the coarse pass with labels reduced by
        majority).

    Returns
    -------
    ndarray, shape (H_A, W_A, 2), int32, on the host

    Raises
    ------
    InputError
        Mismatched shapes.
    """
    _check(field, layout, layout_estimate, source, source_estimate)
    factor = coarse_factor(scale)
    radius = math.ceil(search_radius(scale) / factor)
    if factor == 1:
        start = search(field, layout, layout_estimate, source, source_estimate,
                       patch_size=COARSE_PATCH_SIZE, radius=radius, seed=seed, backend=backend,
                       strip_pixels=strip_pixels, labels=labels)
    else:
        small = [reduce_image(image, factor)
                 for image in (layout, layout_estimate, source, source_estimate)]
        shape_b = small[2].shape[:2]
        coarse = search(reduce_field(field, factor, shape_b), *small,
                        patch_size=COARSE_PATCH_SIZE, radius=radius, seed=seed, backend=backend,
                        strip_pixels=strip_pixels,
                        labels=None if labels is None else _reduce_labels(labels, small))
        start = backend.to_numpy(Field(backend.asarray(coarse), shape_b).upsampled(
            layout.shape[:2], source.shape[:2], backend).values)
    return search(start, layout, layout_estimate, source, source_estimate,
                  patch_size=FINE_PATCH_SIZE, radius=FINE_RADIUS, jumps=(),
                  seed=seed + _FINE_STREAM, backend=backend, strip_pixels=strip_pixels,
                  labels=labels)


def search(field: np.ndarray, layout: np.ndarray, layout_estimate: np.ndarray,
           source: np.ndarray, source_estimate: np.ndarray, *, patch_size: int, radius: int,
           jumps: tuple[int, ...] = JUMP_STEPS, iterations: int = 1, seed: int = 0,
           backend: Backend, strip_pixels: int = STRIP_PIXELS,
           labels: RegionIds | None = None) -> np.ndarray:
    """PatchMatch on image patches at one grid, in strips of A's rows: one pass of
    :func:`refine_field` (see it for the images, the field and the labels).

    ``patch_size``, ``radius`` (in this grid's pixels), ``jumps`` and ``iterations`` are
    :func:`gpuanalogy.patchmatch.patchmatch`'s. Returns the (H_A, W_A, 2) int32 field on the
    host.

    Raises
    ------
    InputError
        Mismatched shapes, or an even patch size.
    """
    _check(field, layout, layout_estimate, source, source_estimate)
    height, width = layout.shape[:2]
    half = patch_half(patch_size)
    source_height = source.shape[0]
    longest = max(jumps, default=0)
    margin = half + longest
    reach = iterations * (radius + longest) + half
    rows = max(1, strip_pixels // width)
    out = np.empty((height, width, 2), np.int32)
    for strip, top in enumerate(range(0, height, rows)):
        bottom = min(top + rows, height)
        lo_a, hi_a = max(top - margin, 0), min(bottom + margin, height)
        part = _whole(field[lo_a:hi_a], source.shape[:2])
        lo_b = max(int(part[..., 0].min()) - reach, 0)
        hi_b = min(int(part[..., 0].max()) + reach + 1, source_height)
        start = part - np.array([lo_b, 0], np.int32)
        strip_labels = None if labels is None else search_labels(
            None if labels[0] is None else labels[0][lo_a:hi_a], labels[1][lo_b:hi_b],
            labels[2], backend)
        found, _ = patchmatch(
            _floats(layout[lo_a:hi_a], backend), _floats(layout_estimate[lo_a:hi_a], backend),
            _floats(source_estimate[lo_b:hi_b], backend), _floats(source[lo_b:hi_b], backend),
            backend.asarray(start), patch_size=patch_size, radius=radius, jumps=jumps,
            iterations=iterations, seed=seed + strip, labels=strip_labels, backend=backend)
        kept = backend.to_numpy(found[top - lo_a:bottom - lo_a])
        out[top:bottom] = kept + np.array([lo_b, 0], np.int32)
    return out


def textured_vote(field: np.ndarray, layout: np.ndarray, layout_estimate: np.ndarray,
                  source: np.ndarray, source_estimate: np.ndarray, *, scale: float,
                  vote_patch_size: int = 3, seed: int = 0, backend: Backend,
                  labels: RegionIds | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The output on the layout's grid voted from ``source`` through the refined ``field``.

    :func:`refine_field` (see it for the arguments), then average voting of ``source``'s own
    pixels through the result with ``vote_patch_size`` patches (from the pixels ``labels``
    allow).

    Returns
    -------
    image : ndarray, shape (H_A, W_A, 3), float32, on the host
        In the source's range ([0, 1] for a float source).
    field : ndarray, shape (H_A, W_A, 2), int32, on the host
    """
    refined = refine_field(field, layout, layout_estimate, source, source_estimate,
                           scale=scale, seed=seed, backend=backend, labels=labels)
    voted = Field(backend.asarray(refined), tuple(source.shape[:2])).vote(  # type: ignore[arg-type]
        backend.asarray(source), vote_patch_size, backend,
        None if labels is None else search_labels(*labels, backend))
    return backend.to_numpy(voted), refined


def _reduce_labels(labels: RegionIds, small: list[np.ndarray]) -> RegionIds:
    """Labels brought to the coarse pass's grids (``small``: its layout, layout estimate,
    source and source estimate images) by majority."""
    ids_p, ids_q, count = labels
    return (None if ids_p is None else reduce_labels(ids_p, small[0].shape[:2]),
            reduce_labels(ids_q, small[2].shape[:2]), count)


def _floats(image: np.ndarray, backend: Backend) -> Any:
    """Rows of a uint8 or [0, 1] image as a C-contiguous float32 array on the backend."""
    xp = backend.xp
    array = backend.asarray(np.ascontiguousarray(image))
    if image.dtype == np.uint8:
        return array.astype(xp.float32) * xp.float32(1.0 / 255.0)
    return xp.ascontiguousarray(array, dtype=xp.float32)


def _check(field: np.ndarray, layout: np.ndarray, layout_estimate: np.ndarray,
           source: np.ndarray, source_estimate: np.ndarray) -> None:
    height, width = layout.shape[:2]
    if (field.shape != (height, width, 2) or layout_estimate.shape != layout.shape
            or source_estimate.shape != source.shape or layout.ndim != 3 or source.ndim != 3):
        raise InputError(f"refine_field: need a (H, W, 2) field over the layout image and "
                         f"estimates of the images' shapes; got field {tuple(field.shape)}, "
                         f"layout {tuple(layout.shape)}, source {tuple(source.shape)}.")


def _whole(field: np.ndarray, shape_b: tuple[int, int]) -> np.ndarray:
    """Field values rounded to whole pixels and clamped into B: (..., 2) int32."""
    values = field if field.dtype == np.int32 else np.rint(field).astype(np.int32)
    return np.minimum(np.maximum(values, 0), np.array([shape_b[0] - 1, shape_b[1] - 1], np.int32))


def reduce_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Box averages of ``factor`` x ``factor`` pixels (the last ones edge-padded): a uint8 or
    [0, 1] (H, W, C) image as (ceil(H / factor), ceil(W / factor), C) float32 in [0, 1]."""
    height, width = image.shape[:2]
    rows, cols = height // factor, width // factor   # whole blocks: strided sums
    out = np.zeros((-(-height // factor), -(-width // factor), image.shape[2]), np.float32)
    for i in range(factor):
        for j in range(factor):
            out[:rows, :cols] += image[i:rows * factor:factor, j:cols * factor:factor]
    out[:rows, :cols] *= _unit(image) / (factor * factor)
    if rows < out.shape[0]:
        out[rows:] = _reduce_edge(image[rows * factor:], factor)
    if cols < out.shape[1]:
        out[:, cols:] = _reduce_edge(image[:, cols * factor:], factor)
    return out


def _reduce_edge(image: np.ndarray, factor: int) -> np.ndarray:
    """:func:`reduce_image` of a strip shorter than a block, its last row and column repeated."""
    height, width = image.shape[:2]
    rows, cols = -(-height // factor), -(-width // factor)
    out = np.zeros((rows, cols, image.shape[2]), np.float32)
    for i in range(factor):
        take_rows = np.minimum(np.arange(rows) * factor + i, height - 1)
        for j in range(factor):
            take_cols = np.minimum(np.arange(cols) * factor + j, width - 1)
            out += image[np.ix_(take_rows, take_cols)]
    return out * (_unit(image) / (factor * factor))


def _unit(image: np.ndarray) -> np.float32:
    """The factor that brings ``image``'s values into [0, 1]."""
    return np.float32(1.0 / 255.0 if image.dtype == np.uint8 else 1.0)


def reduce_field(field: np.ndarray, factor: int, shape_b: tuple[int, int]) -> np.ndarray:
    """The field at the input size as a field between the reduced grids: each block's first
    pixel's match, in reduced pixels, clamped into ``shape_b``."""
    return _whole(np.floor(np.rint(field[::factor, ::factor]) / factor), shape_b)
