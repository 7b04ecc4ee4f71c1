"""Motion between consecutive frames of a clip, and carrying a frame's fields and maps along it.

A motion here is *backward*: for every position p of the current frame's grid at one level, the
position in the previous frame's grid that shows the same content, as a :class:`Field` from the
current frame to the previous one (whole pixels, clamped into the frame). It comes either from
our own PatchMatch between the two frames' feature pyramids (:func:`estimate_motion`,
coarse to fine, each level starting from the motion of the level above) or from a flow the
caller measured (:func:`motion_from_flow`).

Carrying is then plain gathering, the same on NumPy and CuPy arrays:

* a field on the frame's grid (A -> B', or a feature map) is read at the motion:
  ``carried(p) = previous(motion(p))`` (:func:`carry_field`, :func:`carry_map`);
* a field *into* the frame (B' -> A) keeps its source and moves its values forward: a value r
  of the previous frame goes to ``r - (motion(r) - r)``, the backward displacement at r taken
  as the forward one there (:func:`carry_positions`; exact for a translation).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backend import Backend
from .fields import Field
from .nnf import identity_nnf
from .patchmatch import normalize_features, patchmatch

__all__ = ["MOTION_LEVELS", "estimate_motion", "motion_from_flow", "carry_field",
           "carry_positions", "carry_map"]

#: The levels a motion covers: the image (0) and relu1_1 .. relu5_1 (1..5).
MOTION_LEVELS = (0, 1, 2, 3, 4, 5)


def estimate_motion(current: dict[int, Any], previous: dict[int, Any], *, backend: Backend,
                    patch_sizes: tuple[int, ...] = (5, 5, 3, 3, 3), radius: int = 4,
                    iterations: int = 4, seed: int = 0) -> dict[int, Field]:
    """Backward motion from ``current`` to ``previous`` at levels 0..5, by PatchMatch.

    Parameters
    ----------
    current, previous : dict
        Level -> feature map (C, H, W) float32 on ``backend``, levels 1..5 (VGG-19's relu1_1 ..
        relu5_1 of two frames of one size); level 0 may be present and is not used.
    patch_sizes : tuple of int
        Patch side at levels 1..5.
    radius : int
        Random-search radius at every level, in that level's pixels: the motion found at a
        level may differ from the one handed down by at most this much.
    iterations : int
        PatchMatch iterations per level.

    Returns
    -------
    dict
        Level -> :class:`Field` (H_L, W_L, 2) int32 from the current frame to the previous one;
        level 0 (the image's grid, the same as relu1_1's) is level 1's motion.
    """
    motion: dict[int, Field] = {}
    above: Field | None = None
    for level in (5, 4, 3, 2, 1):
        shape = tuple(current[level].shape[1:])
        start = (Field(identity_nnf(shape, shape, backend), shape) if above is None
                 else above.upsampled(shape, shape, backend))
        now, before = (normalize_features(maps[level], backend) for maps in (current, previous))
        values, _ = patchmatch(now, now, before, before, start.values,
                               patch_size=patch_sizes[level - 1], radius=radius,
                               iterations=iterations, seed=seed + level, backend=backend)
        motion[level] = above = Field(values, shape)  # type: ignore[arg-type]
    motion[0] = motion[1]
    return motion


def motion_from_flow(flow: np.ndarray, shapes: dict[int, tuple[int, int]],
                     backend: Backend) -> dict[int, Field]:
    """A measured backward flow as a motion at each level.

    Parameters
    ----------
    flow : ndarray, shape (H, W, 2), float
        For each pixel of the current frame, the (row, col) displacement to where its content
        was in the previous frame, in pixels of this (H, W) grid (any size: the frame's input
        size, typically).
    shapes : dict
        Level -> (H_L, W_L) of the grids wanted.

    Returns
    -------
    dict
        Level -> :class:`Field` (H_L, W_L, 2) int32: the flow sampled at each cell's centre
        (nearest), scaled to the level and rounded, clamped into the grid.
    """
    flow = np.asarray(flow, dtype=np.float32)
    height, width = flow.shape[:2]
    motion = {}
    for level, (h, w) in shapes.items():
        rows = np.minimum(((np.arange(h) + 0.5) * height / h).astype(np.int64), height - 1)
        cols = np.minimum(((np.arange(w) + 0.5) * width / w).astype(np.int64), width - 1)
        sampled = flow[rows[:, None], cols[None, :]]
        grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), axis=-1)
        scale = np.array([h / height, w / width], dtype=np.float32)
        target = np.rint(grid + sampled * scale).astype(np.int32)
        target[..., 0] = np.clip(target[..., 0], 0, h - 1)
        target[..., 1] = np.clip(target[..., 1], 0, w - 1)
        motion[level] = Field(backend.asarray(target), (h, w))
    return motion


def carry_field(previous: Field, motion: Field, backend: Backend) -> Field:
    """The previous frame's field out of the frame, read where the motion points:
    ``carried(p) = previous(motion(p))``. Shapes: (H, W, 2) in, (H, W, 2) out."""
    xp = backend.xp
    rows, cols = motion.values[..., 0], motion.values[..., 1]
    values = xp.ascontiguousarray(previous.values[rows, cols])
    return Field(values, previous.shape_b, previous.subpixel)


def carry_positions(previous: Field, motion: Field, backend: Backend) -> Field:
    """The previous frame's field into the frame, its values moved forward with the content.

    ``previous`` (whole pixels, (H_B, W_B, 2) int32) maps another image's pixels to the previous
    frame; a value r becomes
    ``r - (motion(r) - r)``, clamped into the frame (see the module docstring).
    """
    xp = backend.xp
    r = previous.values
    moved = 2 * r - motion.values[r[..., 0], r[..., 1]]          # r - (motion(r) - r)
    limit = xp.asarray([previous.shape_b[0] - 1, previous.shape_b[1] - 1], dtype=r.dtype)
    moved = xp.clip(moved, xp.zeros_like(limit), limit).astype(r.dtype)
    return Field(xp.ascontiguousarray(moved), previous.shape_b)


def carry_map(previous: Any, motion: Field, backend: Backend) -> Any:
    """A map (C, H, W) of the previous frame moved with the content: ``carried[:, p] =
    previous[:, motion(p)]``; float32, C-contiguous, on ``backend``."""
    xp = backend.xp
    rows, cols = motion.values[..., 0], motion.values[..., 1]
    return xp.ascontiguousarray(previous[:, rows, cols], dtype=xp.float32)
