"""The kernels' random numbers: counter-based draws, the same on every backend.

Plain Python compiled with the pixel bodies of ``kernels._device`` (see its
:func:`~gpuanalogy.kernels._device.compile_all`).
"""
from __future__ import annotations

import numpy as np

#: Odd multipliers below 2**31, so a 32-bit value times one fits a signed 64-bit integer on
#: every backend (compiled int64 code, NumPy int64 scalars and Python ints alike).
_M1 = 0x7FEB352D
_M2 = 0x68E31DA5
_GOLDEN = 0x9E3779B9
_MASK = 0xFFFFFFFF


def random_hash(seed, stream, pixel, draw):
    """A 32-bit value that is a hash of ``(seed, stream, pixel, draw)`` alone.

    Counter-based (a ``lowbias32``-style integer mixer applied once per word), so there is no
    generator state, every pixel owns an independent stream and the CPU and CUDA kernels draw
    identical values.
    """
    h = (seed ^ _GOLDEN) & _MASK
    for word in range(3):
        if word == 0:
            h ^= stream & _MASK
        elif word == 1:
            h ^= pixel & _MASK
        else:
            h ^= draw & _MASK
        h ^= h >> 16
        h = (h * _M1) & _MASK
        h ^= h >> 15
        h = (h * _M2) & _MASK
        h ^= h >> 16
    return h


def random_in_window(seed, stream, pixel, draw, centre, radius, size):
    """A uniform integer in ``[max(0, centre - radius), min(size - 1, centre + radius)]``.

    The value is :func:`random_hash` of ``(seed, stream, pixel, draw)`` mapped into the window.
    The window is the clamped square around ``centre``: sampling inside it (instead of
    clamping a sample) keeps the draw uniform near the borders and makes a radius larger than
    the map a whole-map search.
    """
    h = random_hash(seed, stream, pixel, draw)
    centre = np.int64(centre)  # may be an int32 read from an NNF: keep the sums 64-bit
    lo = max(centre - radius, 0)
    hi = min(centre + radius, size - 1)
    return lo + h % (hi - lo + 1)
