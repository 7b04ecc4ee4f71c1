"""Fields refined at the input resolution on image patches, for outputs with the source's texture.

The method finds its fields at the working size. Brought to a larger input by the NNF upsampling
rule, a field is piecewise constant over blocks of input pixels and off by up to a few of them,
so voting the input's own pixels through it ("nnf" outputs) shows seams, and voting at the
working size and resizing ("cubic") loses the texture. Here each upsampled field is refined at
the input size by PatchMatch (``gpuanalogy.patchmatch``) on image patches, in a small window
around its upsampled match, before it votes the source's input-size pixels:

* the energy is the method's own with images for features: A and an estimate of A' on one side,
  an estimate of B and B' on the other (``||A(p) - B(q)||^2 + ||A'(p) - B'(q)||^2`` over a patch);
  the estimates are the "cubic" outputs (voted at the working size, resized), so the refined
  match keeps the working-size answer's colours and takes its texture from B''s own pixels;
* A's rows are processed in strips of about :data:`STRIP_PIXELS` pixels, each with a margin
  (whole patches and the longest propagation jump beyond its kept rows), against only the rows
  of B that the strip's matches can reach: memory beyond the images and fields is bounded by a
  strip, and time is linear in the pixels;
* the kernels are PatchMatch's, so both backends run it (strips move to the device one at a
  time).
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

__all__ = ["refine_field", "textured_vote", "search_radius", "STRIP_PIXELS"]

#: Pixels of A per strip: bounds the memory of one refinement step.
STRIP_PIXELS = 1 << 20


def search_radius(full: tuple[int, int], work: tuple[int, int]) -> int:
    """The random-search radius at the input size: two working pixels, in input pixels.

    The working-size fields are right to a pixel or two of the working grid, so their matches at
    the input size lie within twice the scale between the grids.
    """
    scale = max(full[0] / work[0], full[1] / work[1])
    return max(1, 2 * math.ceil(scale))


def refine_field(field: np.ndarray, layout: np.ndarray, layout_estimate: np.ndarray,
                 source: np.ndarray, source_estimate: np.ndarray, *, radius: int,
                 patch_size: int = 5, iterations: int = 1, seed: int = 0, backend: Backend,
                 strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """A field at the input size refined by PatchMatch on image patches in a small window.

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
    radius : int
        Random-search radius in input pixels (:func:`search_radius`).
    patch_size : int
        Odd side of the image patches compared.
    iterations : int
        PatchMatch iterations (each: propagation with jumps 8, 4, 2, 1, then random search).
    seed : int
    backend : Backend
        Where the search runs.
    strip_pixels : int
        About how many pixels of A each strip holds.

    Returns
    -------
    ndarray, shape (H_A, W_A, 2), int32, on the host

    Raises
    ------
    InputError
        Mismatched shapes, or an even patch size.
    """
    height, width = layout.shape[:2]
    if (field.shape != (height, width, 2) or layout_estimate.shape != layout.shape
            or source_estimate.shape != source.shape or layout.ndim != 3 or source.ndim != 3):
        raise InputError(f"refine_field: need a (H, W, 2) field over the layout image and "
                         f"estimates of the images' shapes; got field {tuple(field.shape)}, "
                         f"layout {tuple(layout.shape)}, source {tuple(source.shape)}.")
    half = patch_half(patch_size)
    source_height = source.shape[0]
    field = np.clip(np.rint(field), 0, [source_height - 1, source.shape[1] - 1]).astype(np.int32)
    margin = half + max(JUMP_STEPS)
    reach = iterations * (radius + max(JUMP_STEPS)) + half
    rows = max(1, strip_pixels // width)
    out = np.empty_like(field)
    for strip, top in enumerate(range(0, height, rows)):
        bottom = min(top + rows, height)
        lo_a, hi_a = max(top - margin, 0), min(bottom + margin, height)
        part = field[lo_a:hi_a]
        lo_b = max(int(part[..., 0].min()) - reach, 0)
        hi_b = min(int(part[..., 0].max()) + reach + 1, source_height)
        start = part - np.array([lo_b, 0], np.int32)
        found, _ = patchmatch(
            _floats(layout[lo_a:hi_a], backend), _floats(layout_estimate[lo_a:hi_a], backend),
            _floats(source_estimate[lo_b:hi_b], backend), _floats(source[lo_b:hi_b], backend),
            backend.asarray(start), patch_size=patch_size, radius=radius,
            iterations=iterations, seed=seed + strip, backend=backend)
        kept = backend.to_numpy(found[top - lo_a:bottom - lo_a])
        out[top:bottom] = kept + np.array([lo_b, 0], np.int32)
    return out


def textured_vote(field: np.ndarray, layout: np.ndarray, layout_estimate: np.ndarray,
                  source: np.ndarray, source_estimate: np.ndarray, *, radius: int,
                  vote_patch_size: int = 3, seed: int = 0, backend: Backend
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The output on the layout's grid voted from ``source`` through the refined ``field``.

    :func:`refine_field` (see it for the arguments), then average voting of ``source``'s own
    pixels through the result with ``vote_patch_size`` patches.

    Returns
    -------
    image : ndarray, shape (H_A, W_A, 3), float32, on the host
        In the source's range ([0, 1] for a float source).
    field : ndarray, shape (H_A, W_A, 2), int32, on the host
    """
    refined = refine_field(field, layout, layout_estimate, source, source_estimate,
                           radius=radius, seed=seed, backend=backend)
    voted = Field(backend.asarray(refined), tuple(source.shape[:2])).vote(  # type: ignore[arg-type]
        backend.asarray(source), vote_patch_size, backend)
    return backend.to_numpy(voted), refined


def _floats(image: np.ndarray, backend: Backend) -> Any:
    """Rows of a uint8 or [0, 1] image as a C-contiguous float32 array on the backend."""
    xp = backend.xp
    array = backend.asarray(np.ascontiguousarray(image))
    if image.dtype == np.uint8:
        return array.astype(xp.float32) * xp.float32(1.0 / 255.0)
    return xp.ascontiguousarray(array, dtype=xp.float32)
