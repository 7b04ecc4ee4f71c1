"""A clip at keyframe speed: whole analogies at keyframes, guided synthesis between them.

Today's video mode (:mod:`gpuanalogy.video`) pays a whole analogy, warm-started, for every
frame. Here only the keyframes do (the same :class:`gpuanalogy.video.Clip`, each keyframe
warm-started from the one before); every other frame is synthesised from its neighbouring
keyframes' outputs by :class:`gpuanalogy.propagation.Propagation` (PatchMatch and voting on
image patches, no network):

* the frames after a keyframe are carried forward from it, one after another, and held;
* at the next keyframe they are carried backward from it too, and each held frame is the
  :func:`gpuanalogy.propagation.blend` of its two sides (the nearer keyframe counting more);
* frames after the last keyframe keep their forward result alone.

Which frames are keyframes (:class:`Schedule`): every N-th, a list, or ``auto``: a frame
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

from .errors import InputError
from .propagation import GuideWeights, Propagation, blend, reversed_flow, unexplained
from .synthesis import Synthesis, SynthesisSettings

__all__ = ["Schedule", "KeyedFrame", "keyframe_video"]


@dataclass(frozen=True)
class Schedule:
    """Which frames are keyframes.

    Attributes
    ----------
    every : int or None
        A keyframe every ``every`` frames (0, every, 2 every, ...).
    listed : tuple of int
        These frames (0-based), and frame 0.
    auto : bool
        Place keyframes by the propagated frames' unexplained share.
    threshold : float
        ``auto``: the unexplained share past which a frame becomes a keyframe.
    longest : int
        ``auto``: at most this many frames from one keyframe to the next.
    """

    every: int | None = None
    listed: tuple[int, ...] = ()
    auto: bool = False
    threshold: float = 0.03
    longest: int = 48

    def __post_init__(self) -> None:
        if (self.every is not None and self.every < 1) or any(i < 0 for i in self.listed) \
                or not 0 < self.threshold < 1 or self.longest < 1:
            raise InputError("keyframes: N must be at least 1, frames non-negative, the "
                             "threshold in (0, 1) and the longest interval at least 1.")

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> "Schedule | None":
        """``"all"`` (None: every frame a whole analogy, today's mode), ``"auto"``, ``"N"``
        (a keyframe every N frames) or ``"i,j,..."`` (these frames, 0-based)."""
        text = text.strip().lower()
        if text == "all":
            return None
        if text == "auto":
            return cls(auto=True, **kwargs)
        try:
            numbers = tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            numbers = ()
        if not numbers:
            raise InputError(f"--keyframes {text!r} is not understood. Try all, auto, a number "
                             f"N (a keyframe every N frames) or a list of frames like 0,12,30.")
        if "," in text:
            return cls(listed=tuple(sorted(set(numbers))), **kwargs)
        return cls(every=numbers[0], **kwargs)

    def planned(self, index: int) -> bool:
        """Whether frame ``index`` is a keyframe before anything is measured."""
        if index == 0 or index in self.listed:
            return True
        return self.every is not None and index % self.every == 0


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
    a_prime = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    nnf_ab = np.ascontiguousarray(via.nnf_ab[nnf[..., 0], nnf[..., 1]], dtype=np.float32)
    return KeyedFrame(held.index, a_prime, nnf_ab, False, sources, seconds, held.unexplained)
