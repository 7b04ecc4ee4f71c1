"""A clip at keyframe speed: whole analogies at keyframes, guided synthesis between them.

The frame-by-frame video mode (:mod:`gpuanalogy.video`) pays a whole analogy, warm-started, for
every frame. Here only the keyframes do (the same :class:`gpuanalogy.video.Clip`, each keyframe
warm-started from the one before); every other frame is synthesised from its neighbouring
keyframes' outputs by :class:`gpuanalogy.propagation.Propagation` (PatchMatch and voting on
image patches, no network):

* the frames after a keyframe are carried forward from it, one after another, and held;
* at the next keyframe they are carried backward from it too, and each held frame is the
  :func:`gpuanalogy.propagation.blend` of its two sides (the nearer keyframe counting more);
* frames after the last keyframe keep their forward result alone.

Which frames are keyframes (:class:`gpuanalogy.config.Schedule`): every N-th, a list, or ``auto``: a frame
becomes a keyframe when the share of it that the previous keyframe cannot explain
(:func:`gpuanalogy.propagation.unexplained`: content entering the frame, disoccluded) passes a
threshold, or when the keyframe is too far behind. Frame 0 is always a keyframe.

Results come as :class:`KeyedFrame`, a keyframe before the frames held behind it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import Schedule
from .propagation import GuideWeights, Propagation, blend, reversed_flow, unexplained
from .synthesis import Synthesis, SynthesisSettings
from .voting import to_uint8

__all__ = ["KeyedFrame", "keyframe_video"]


@dataclass
class KeyedFrame:
    """One output frame.

    Attributes
    ----------
    index : int
    a_prime : ndarray, shape (H, W, 3), uint8
    nnf_ab : ndarray, shape (H, W, 2), float32
        The frame -> B' field: a keyframe's own; a propagated frame's through the keyframe of
        its nearer side (its synthesis field, then that keyframe's field).
    keyframe : bool
    sources : tuple of int
        The keyframes a propagated frame was made from (empty for a keyframe).
    seconds : float
        The frame's own cost: a keyframe's analogy; a propagated frame's syntheses and blend.
    unexplained : float or None
        The share of the frame its forward keyframe cannot explain.
    analogy : AnalogyResult or None
        A keyframe's whole result (None for a propagated frame or a reused keyframe).
    """

    index: int
    a_prime: np.ndarray
    nnf_ab: np.ndarray
    keyframe: bool
    sources: tuple[int, ...] = ()
    seconds: float = 0.0
    unexplained: float | None = None
    analogy: Any = None


@dataclass
class _Held:
    """A frame carried forward, waiting for the keyframe after it."""

    index: int
    frame: np.ndarray
    ahead: Synthesis
    motion: np.ndarray
    seconds: float
    unexplained: float


@dataclass
class _Key:
    index: int
    frame: np.ndarray
    a_prime: np.ndarray
    nnf_ab: np.ndarray
    held: list[_Held] = field(default_factory=list)


def keyframe_video(frames: Iterable[tuple[int, np.ndarray]],
                   stylise: Callable[[int, np.ndarray], KeyedFrame], schedule: Schedule, *,
                   backend: Any, weights: GuideWeights | None = None,
                   settings: SynthesisSettings | None = None, blend_method: str = "error",
                   seed: int = 0) -> Iterator[KeyedFrame]:
    """The clip's outputs, keyframes by ``stylise`` and the rest by guided synthesis.

    Parameters
    ----------
    frames : iterable of (int, ndarray)
        The frames in order: index and (H, W, 3) uint8 image, one size.
    stylise : callable
        ``stylise(index, frame)`` -> the keyframe's :class:`KeyedFrame` (a whole analogy, or
        a finished keyframe read back).
    schedule : Schedule
    backend : Backend
        Where the syntheses run.
    weights, settings, blend_method, seed :
        The guided synthesis's (:mod:`gpuanalogy.propagation`).

    Yields
    ------
    KeyedFrame
        Each keyframe as soon as it is made, then the frames held before it, in order.
    """
    key: _Key | None = None
    chain: Propagation | None = None
    for index, frame in frames:
        if key is None or chain is None or schedule.planned(index):
            done = None
        else:
            start = time.perf_counter()
            ahead = chain.step(frame, name=f"frame {index}")
            share = unexplained(frame, key.frame, ahead.nnf)
            done = _Held(index, frame, ahead, chain.motion, time.perf_counter() - start,
                         share)  # type: ignore[arg-type]
            if schedule.auto and (share > schedule.threshold
                                  or index - key.index >= schedule.longest):
                done = None
        if done is not None:
            key.held.append(done)   # type: ignore[union-attr]
            continue
        made = stylise(index, frame)
        yield made
        following = _Key(index, frame, made.a_prime, made.nnf_ab)
        if key is not None:
            yield from _closed(key, following, backend, weights, settings, blend_method, seed)
        key = following
        chain = Propagation(frame, made.a_prime, weights=weights, settings=settings, seed=seed,
                            backend=backend)
    if key is not None:
        for held in key.held:
            yield _propagated(held, held.ahead.image, held.ahead.nnf, key, (key.index,),
                              held.seconds)


def _closed(key: _Key, following: _Key, backend: Any, weights: GuideWeights | None,
            settings: SynthesisSettings | None, blend_method: str,
            seed: int) -> Iterator[KeyedFrame]:
    """The frames held behind ``key``, each blended with its synthesis from ``following``.

    Going backward, frame t's motion to frame t+1 is the reverse of the forward pass's motion
    of t+1 (:func:`gpuanalogy.propagation.reversed_flow`); only the last held frame's, to the
    following keyframe, is searched."""
    chain = Propagation(following.frame, following.a_prime, weights=weights, settings=settings,
                        seed=seed, backend=backend)
    behind: dict[int, tuple[Synthesis, float]] = {}
    later: _Held | None = None
    for held in reversed(key.held):
        start = time.perf_counter()
        flow = None if later is None else reversed_flow(later.motion)
        synthesis = chain.step(held.frame, flow=flow, name=f"frame {held.index}")
        behind[held.index] = synthesis, time.perf_counter() - start
        later = held
    span = following.index - key.index
    for held in key.held:
        back, seconds = behind[held.index]
        start = time.perf_counter()
        share = 1.0 - (held.index - key.index) / span
        image = blend(held.ahead, back, share=share, method=blend_method)  # type: ignore[arg-type]
        nearer, via = (held.ahead, key) if share >= 0.5 else (back, following)
        cost = held.seconds + seconds + time.perf_counter() - start
        yield _propagated(held, image, nearer.nnf, via, (key.index, following.index), cost)


def _propagated(held: _Held, image: np.ndarray, nnf: np.ndarray, via: _Key,
                sources: tuple[int, ...], seconds: float) -> KeyedFrame:
    a_prime = to_uint8(image)
    nnf_ab = np.ascontiguousarray(via.nnf_ab[nnf[..., 0], nnf[..., 1]], dtype=np.float32)
    return KeyedFrame(held.index, a_prime, nnf_ab, False, sources, seconds, held.unexplained)
