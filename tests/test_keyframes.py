"""Keyframe scheduling and the clip driver (gpuanalogy.keyframes), with a stand-in stylisation."""
from __future__ import annotations

import numpy as np
import pytest

from gpuanalogy.backend import cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.config import Schedule
from gpuanalogy.keyframes import KeyedFrame, keyframe_video
from test_synthesis import texture, to_uint8

CPU = cpu_backend()


def test_schedule_parse():
    assert Schedule.parse("all") is None
    assert Schedule.parse("auto").auto
    assert Schedule.parse("12").every == 12
    assert Schedule.parse("30, 0,12").listed == (0, 12, 30)
    for bad in ("", "often", "0"):
        with pytest.raises(InputError):
            Schedule.parse(bad)
    every = Schedule(every=4)
    assert [i for i in range(10) if every.planned(i)] == [0, 4, 8]
    assert [i for i in range(10) if Schedule(listed=(3, 7)).planned(i)] == [0, 3, 7]


def _stylise(calls: list[int]):
    """A stand-in for the analogy: the frame's colours inverted, the identity field."""
    def stylise(index: int, frame: np.ndarray) -> KeyedFrame:
        calls.append(index)
        grid = np.moveaxis(np.mgrid[0:frame.shape[0], 0:frame.shape[1]], 0, -1)
        return KeyedFrame(index, 255 - frame, grid.astype(np.float32), True)
    return stylise


def _pan(count: int, step: int = 2) -> list[np.ndarray]:
    world = to_uint8(texture((56, 64 + step * count), 30))
    return [np.ascontiguousarray(world[:, step * t:step * t + 64]) for t in range(count)]


def test_every_n_makes_keyframes_there_and_blends_the_frames_between():
    frames = _pan(9)
    calls: list[int] = []
    out = list(keyframe_video(enumerate(frames), _stylise(calls), Schedule(every=4),
                              backend=CPU))
    assert calls == [0, 4, 8]
    assert [f.index for f in out] == [0, 4, 1, 2, 3, 8, 5, 6, 7]
    for f in out:
        assert f.keyframe == (f.index in (0, 4, 8))
        if not f.keyframe:
            assert f.sources == ((0, 4) if f.index < 4 else (4, 8))
            assert f.seconds > 0 and f.unexplained is not None
            equal = (f.a_prime == 255 - frames[f.index]).all(axis=2)[3:-3, 3:-3]
            assert equal.mean() >= 0.9, (f.index, equal.mean())
            assert f.nnf_ab.shape == (56, 64, 2)


def test_frames_after_the_last_keyframe_are_carried_forward_alone():
    frames = _pan(4)
    out = list(keyframe_video(enumerate(frames), _stylise([]), Schedule(every=8),
                              backend=CPU))
    assert [f.index for f in out] == [0, 1, 2, 3]
    assert all(f.sources == (0,) for f in out[1:])


def test_auto_adds_a_keyframe_when_new_content_enters():
    """A still frame into which a new, different texture slides from the right."""
    base = to_uint8(texture((56, 64), 31))
    intruder = to_uint8(texture((56, 40), 32)) // 4 + 180
    frames = []
    for t in range(6):
        frame = base.copy()
        width = 8 * t
        if width:
            frame[:, 64 - width:] = intruder[:, :width]
        frames.append(frame)
    calls: list[int] = []
    still = list(keyframe_video(enumerate([base] * 4), _stylise(calls), Schedule(auto=True),
                                backend=CPU))
    assert calls == [0] and all(f.unexplained == 0.0 for f in still[1:])
    calls.clear()
    out = list(keyframe_video(enumerate(frames), _stylise(calls), Schedule(auto=True),
                              backend=CPU))
    assert calls[0] == 0 and len(calls) >= 2
    assert sorted(f.index for f in out) == list(range(6))
