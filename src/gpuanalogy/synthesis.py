"""Guided patch synthesis: a keyframe's stylised output carried to another frame.

After Jamriska et al., "Stylizing Video by Example" (SIGGRAPH 2019; EbSynth). The source is a
keyframe: its frame and its stylised output (the "style"). The target is another frame. Each
side brings *guides*, maps the two sides share a meaning for (the frames' colours, their
edges, keyframe coordinates carried along the motion, the previous stylised frame carried
along the motion); a guide is a pair of maps (source, target) and a weight. The synthesis
finds, for every target pixel p, the keyframe pixel q = nnf(p) whose patch minimises

    E(p, q) = sum over guides g of  w_g * mean over the patch offsets d of
              ||g_target(p + d) - g_source(q + d)||^2

by PatchMatch (:func:`gpuanalogy.patchmatch.patchmatch`: its kernels sum the squared
differences of all the channels of two map pairs, so the guides, each scaled by the square
root of its weight, are stacked as channels and split between the pairs), then votes the
style's pixels through the field (average voting over the patch, the method's own).

Coarse to fine: the guides are box-reduced by 2 per level (:func:`gpuanalogy.texture.
reduce_image`) down to :data:`MIN_SIDE` pixels or ``levels`` levels; the coarsest search starts
from the caller's start field (typically the keyframe coordinates carried along the motion) with
a whole-map random search, and every finer one from the better, pixel by pixel, of the coarser
level's field brought up and the start field reduced to that level, with a small window.

The per-pixel energy of the final field is returned as the synthesis error: what the blend of
two keyframes' results and the placement of keyframes read.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import Backend
from .checks import patch_half
from .errors import InputError
from .fields import Field
from .nnf import identity_nnf
from .patchmatch import JUMP_STEPS, patchmatch
from .texture import reduce_field, reduce_image

__all__ = ["Guide", "Synthesis", "SynthesisSettings", "synthesize", "match", "positions",
           "edges", "MIN_SIDE"]

#: The coarsest level's shorter side is at least this many pixels.
MIN_SIDE = 24


@dataclass(frozen=True)
class Guide:
    """One guide: a map on the keyframe's grid, its counterpart on the target's, a weight.

    Attributes
    ----------
    source : ndarray, shape (H_S, W_S, C), float32
    target : ndarray, shape (H_T, W_T, C), float32
        The same C channels, in the same units (the weight is what sets a guide's share).
    weight : float
        Non-negative; 0 leaves the guide out.
    """

    source: np.ndarray
    target: np.ndarray
    weight: float


@dataclass(frozen=True)
class SynthesisSettings:
    """The schedule of :func:`synthesize`.

    Attributes
    ----------
    patch_size : int
        Odd patch side of the search and the vote.
    levels : int
        At most this many pyramid levels (fewer when the frame is small: :data:`MIN_SIDE`).
    iterations : int
        PatchMatch iterations at every level but the coarsest.
    coarse_iterations : int
        PatchMatch iterations at the coarsest level.
    radius : int
        Random-search window at the finer levels, in that level's pixels (the coarsest
        searches the whole keyframe).
    jumps : tuple of int
        The propagation's jump steps at the finer levels (the coarsest uses PatchMatch's
        own, :data:`gpuanalogy.patchmatch.JUMP_STEPS`): they start from a field that is
        already close.
    """

    patch_size: int = 5
    levels: int = 3
    iterations: int = 1
    coarse_iterations: int = 2
    radius: int = 4
    jumps: tuple[int, ...] = (2, 1)

    def __post_init__(self) -> None:
        patch_half(self.patch_size)
        if self.levels < 1 or self.iterations < 0 or self.coarse_iterations < 0 \
                or self.radius < 1:
            raise InputError("synthesis settings: levels and radius must be at least 1, "
                             "iterations non-negative.")


@dataclass
class Synthesis:
    """A synthesised frame.

    Attributes
    ----------
    image : ndarray, shape (H_T, W_T, C), float32
        The style voted through ``nnf``, in the style's range.
    nnf : ndarray, shape (H_T, W_T, 2), int32
        (row, col) into the keyframe for every target pixel.
    error : ndarray, shape (H_T, W_T), float32
        The guides' weighted mean patch energy of each pixel's match.
    """

    image: np.ndarray
    nnf: np.ndarray
    error: np.ndarray


def synthesize(style: np.ndarray, guides: Sequence[Guide], *, start: np.ndarray | None = None,
               settings: SynthesisSettings | None = None, seed: int = 0,
               backend: Backend) -> Synthesis:
    """The target frame synthesised from the keyframe's ``style`` under ``guides``.

    Parameters
    ----------
    style : ndarray, shape (H_S, W_S, C)
        The keyframe's stylised output (any real dtype; voted as float32).
    guides : sequence of Guide
        At least one with a positive weight; all sources (H_S, W_S, *), all targets
        (H_T, W_T, *).
    start : ndarray, shape (H_T, W_T, 2), optional
        The start field into the keyframe (rounded and clamped); the identity (scaled when
        the sizes differ) when omitted.
    settings : SynthesisSettings, optional
    seed : int
    backend : Backend
        Where the search and the vote run; inputs and outputs are host arrays.

    Returns
    -------
    Synthesis

    Raises
    ------
    InputError
        Mismatched shapes, no weighted guide, or a negative weight.
    """
    if any(g.source.shape[:2] != style.shape[:2] for g in guides):
        raise InputError(f"style has shape {tuple(style.shape)}; the guides' sources must be "
                         f"on its grid.")
    settings = settings or SynthesisSettings()
    field, energy = match(guides, start=start, settings=settings, seed=seed, backend=backend)
    image = field.vote(backend.asarray(np.ascontiguousarray(style, dtype=np.float32)),
                       settings.patch_size, backend)
    return Synthesis(backend.to_numpy(image), backend.to_numpy(field.values),
                     backend.to_numpy(energy))


def match(guides: Sequence[Guide], *, start: np.ndarray | None = None,
          settings: SynthesisSettings | None = None, seed: int = 0,
          backend: Backend) -> tuple[Field, Any]:
    """The field of :func:`synthesize` alone (no vote): coarse-to-fine PatchMatch under
    ``guides`` (see it for the arguments).

    Returns
    -------
    field : Field
        (H_T, W_T, 2) int32 values into the source grid, on ``backend``.
    energy : array, shape (H_T, W_T), float32, on ``backend``
    """
    settings = settings or SynthesisSettings()
    source, target = _stack(guides)
    shape_s, shape_t = source.shape[:2], target.shape[:2]
    if start is None:
        start = backend.to_numpy(identity_nnf(shape_t, shape_s, backend))
    elif tuple(start.shape) != (*shape_t, 2):
        raise InputError(f"start field has shape {tuple(start.shape)}; expected "
                         f"{(*shape_t, 2)} for the target.")
    start = reduce_field(np.asarray(start), 1, shape_s)
    pyramid = _pyramid(source, target, start, settings.levels)
    field: Field | None = None
    energy: Any = None
    for depth in range(len(pyramid) - 1, -1, -1):
        src, tgt, begin = pyramid[depth]
        maps = _split(tgt, backend) + _split(src, backend)
        begin = backend.asarray(begin)
        if field is not None:
            begin = _better(field.upsampled(tgt.shape[:2], src.shape[:2], backend).values,
                            begin, maps, settings.patch_size, backend)
        coarsest = depth == len(pyramid) - 1
        values, energy = patchmatch(
            *maps, begin, patch_size=settings.patch_size,
            radius=max(src.shape[:2]) if coarsest else settings.radius,
            iterations=settings.coarse_iterations if coarsest else settings.iterations,
            jumps=JUMP_STEPS if coarsest else settings.jumps, seed=seed + depth,
            backend=backend)
        field = Field(values, tuple(src.shape[:2]))  # type: ignore[arg-type]
    assert field is not None
    return field, energy


def positions(shape: tuple[int, int], scale: float) -> np.ndarray:
    """The keyframe coordinates of a grid as a guide: (H, W, 2) float32 (row, col) / ``scale``.

    ``scale`` (the keyframe's longer side, typically) makes the guide's units a share of the
    frame, the same at every pyramid level.
    """
    grid = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(grid, 0, -1) / np.float32(scale))


def edges(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """An edge guide: the grey image minus its Gaussian blur (a difference of Gaussians).

    ``image`` (H, W, 3) uint8 or float in [0, 1]; returns (H, W, 1) float32 in about [-1, 1].
    """
    from scipy.ndimage import gaussian_filter  # noqa: PLC0415 - only guides need SciPy here

    grey = np.asarray(image, np.float32).mean(axis=2)
    if image.dtype == np.uint8:
        grey /= np.float32(255.0)
    return (grey - gaussian_filter(grey, sigma)).astype(np.float32)[..., None]


def _stack(guides: Sequence[Guide]) -> tuple[np.ndarray, np.ndarray]:
    """The weighted guides as two (H, W, K) float32 stacks, source and target."""
    used = [g for g in guides if g.weight != 0]
    if any(g.weight < 0 for g in guides) or not used:
        raise InputError("synthesis needs at least one guide with a positive weight and none "
                         "negative.")
    shape_s = used[0].source.shape[:2]
    shape_t = used[0].target.shape[:2]
    for g in used:
        if g.source.ndim != 3 or g.target.ndim != 3 or g.source.shape[:2] != shape_s \
                or g.target.shape[:2] != shape_t or g.source.shape[2] != g.target.shape[2]:
            raise InputError(f"guide maps must be (H, W, C) on the keyframe's grid "
                             f"{shape_s} and the target's {shape_t} with equal channels; got "
                             f"{tuple(g.source.shape)} and {tuple(g.target.shape)}.")
    scale = [np.float32(np.sqrt(g.weight)) for g in used]
    source = np.concatenate([s * g.source for s, g in zip(scale, used)], axis=2)
    target = np.concatenate([s * g.target for s, g in zip(scale, used)], axis=2)
    return source.astype(np.float32), target.astype(np.float32)


def _pyramid(source: np.ndarray, target: np.ndarray, start: np.ndarray,
             levels: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(source, target, start) at each level, finest first, each half the one before."""
    out = [(source, target, start)]
    while len(out) < levels and min(*out[-1][0].shape[:2], *out[-1][1].shape[:2]) >= 2 * MIN_SIDE:
        src, tgt, _ = out[-1]
        small_src, small_tgt = reduce_image(src, 2), reduce_image(tgt, 2)
        factor = 2 ** len(out)
        out.append((small_src, small_tgt, reduce_field(start, factor, small_src.shape[:2])))
    return out


def _split(stack: np.ndarray, backend: Backend) -> tuple[Any, Any]:
    """A (H, W, K) stack as the kernels' two maps of equal channels (zero-padded to even K)."""
    channels = stack.shape[2]
    half = (channels + 1) // 2
    padded = stack if channels == 2 * half else np.concatenate(
        [stack, np.zeros((*stack.shape[:2], 1), np.float32)], axis=2)
    return (backend.asarray(np.ascontiguousarray(padded[..., :half])),
            backend.asarray(np.ascontiguousarray(padded[..., half:])))


def _better(first: Any, second: Any, maps: tuple[Any, ...], patch_size: int,
            backend: Backend) -> Any:
    """Pixel by pixel, whichever of two fields has the lower patch energy."""
    xp, half = backend.xp, patch_half(patch_size)
    second = xp.ascontiguousarray(second, dtype=xp.int32)
    e1 = backend.kernels.nnf_energy(*maps, first, half=half)
    e2 = backend.kernels.nnf_energy(*maps, second, half=half)
    return xp.ascontiguousarray(xp.where((e2 < e1)[..., None], second, first))
