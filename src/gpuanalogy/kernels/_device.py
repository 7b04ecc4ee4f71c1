"""Scalar helpers shared by the CPU and CUDA kernels.

Each helper is a plain Python function. ``kernels.cpu`` wraps it with ``numba.njit`` and
``kernels.cuda`` with ``numba.cuda.jit(device=True)``, so both backends run the very same
arithmetic: the same random streams, the same order of floating-point operations (explicit
``float32`` everywhere, so NumPy scalars in the CUDA simulator round like compiled code).

A helper that calls another (``try_candidate`` calls ``patch_distance``) would, through the
plain function's globals, reach the plain (un-jitted) callee; each backend therefore compiles
it from :func:`bind`, which rebinds the callee's name to that backend's compiled version.

Caching note: ``kernels.cpu`` caches its compiled kernels (``cache=True``). Numba checks only
the caller's own source file for staleness, so after editing this file, delete the
``__pycache__/*.nbi``/``*.nbc`` files of ``kernels/`` (the package never edits itself at run
time, so installed copies are unaffected).
"""
from __future__ import annotations

import types

import numpy as np

#: Odd multipliers below 2**31, so a 32-bit value times one fits a signed 64-bit integer on
#: every backend (compiled int64 code, NumPy int64 scalars and Python ints alike).
_M1 = 0x7FEB352D
_M2 = 0x68E31DA5
_GOLDEN = 0x9E3779B9
_MASK = 0xFFFFFFFF


def random_in_window(seed, stream, pixel, draw, centre, radius, size):
    """A uniform integer in ``[max(0, centre - radius), min(size - 1, centre + radius)]``.

    Counter-based: the value is a hash of ``(seed, stream, pixel, draw)`` alone (a
    ``lowbias32``-style integer mixer applied once per word), so there is no generator state,
    every pixel owns an independent stream and the CPU and CUDA kernels draw identical values.
    The window is the clamped square around ``centre``: sampling inside it (instead of
    clamping a sample) keeps the draw uniform near the borders and makes a radius larger than
    the map a whole-map search.
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
    centre = np.int64(centre)  # may be an int32 read from an NNF: keep the sums 64-bit
    lo = max(centre - radius, 0)
    hi = min(centre + radius, size - 1)
    return lo + h % (hi - lo + 1)


def clamp(value, lo, hi):
    """``value`` clamped into ``[lo, hi]``."""
    return min(max(value, lo), hi)


def patch_distance(a, a_prime, b, b_prime, pr, pc, qr, qc, half, best):
    """Mean patch energy of matching pixel ``(pr, pc)`` of A to ``(qr, qc)`` of B.

    Over the offsets ``d`` of the ``(2 half + 1)**2`` patch for which ``p + d`` lies in A and
    ``q + d`` lies in B: ``sum ||a(p+d) - b(q+d)||^2 + ||a'(p+d) - b'(q+d)||^2``, divided by
    the number of such offsets (so border pixels compare with inner ones).

    ``best`` enables the early exit: once the partial sum exceeds ``best`` times the number
    of offsets the result can only be worse than ``best``, and a value greater than ``best``
    is returned at once (pass ``inf`` for the exact energy).

    The channel loop keeps eight independent ``float32`` partial sums: the order of the
    additions is fixed in the source (so every backend gives the same bits) and the
    compiler can still put the eight lanes into one SIMD register without reassociating.
    """
    ha = a.shape[0]
    wa = a.shape[1]
    channels = a.shape[2]
    hb = b.shape[0]
    wb = b.shape[1]
    r0 = max(-half, max(-pr, -qr))
    r1 = min(half, min(ha - 1 - pr, hb - 1 - qr))
    c0 = max(-half, max(-pc, -qc))
    c1 = min(half, min(wa - 1 - pc, wb - 1 - qc))
    count = np.float32((r1 - r0 + 1) * (c1 - c0 + 1))
    limit = best * count
    vector_end = channels - channels % 8
    one = np.uint64(1)
    total = np.float32(0.0)
    for dr in range(r0, r1 + 1):
        for dc in range(c0, c1 + 1):
            xa = a[pr + dr, pc + dc]
            xap = a_prime[pr + dr, pc + dc]
            yb = b[qr + dr, qc + dc]
            ybp = b_prime[qr + dr, qc + dc]
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            s4 = np.float32(0.0)
            s5 = np.float32(0.0)
            s6 = np.float32(0.0)
            s7 = np.float32(0.0)
            for k0 in range(np.uint64(0), np.uint64(vector_end), np.uint64(8)):
                # unsigned indices: no negative-index wraparound code, so the compiler sees
                # eight consecutive loads and vectorises them
                k1 = k0 + one
                k2 = k1 + one
                k3 = k2 + one
                k4 = k3 + one
                k5 = k4 + one
                k6 = k5 + one
                k7 = k6 + one
                t0 = xa[k0] - yb[k0]
                t1 = xa[k1] - yb[k1]
                t2 = xa[k2] - yb[k2]
                t3 = xa[k3] - yb[k3]
                t4 = xa[k4] - yb[k4]
                t5 = xa[k5] - yb[k5]
                t6 = xa[k6] - yb[k6]
                t7 = xa[k7] - yb[k7]
                u0 = xap[k0] - ybp[k0]
                u1 = xap[k1] - ybp[k1]
                u2 = xap[k2] - ybp[k2]
                u3 = xap[k3] - ybp[k3]
                u4 = xap[k4] - ybp[k4]
                u5 = xap[k5] - ybp[k5]
                u6 = xap[k6] - ybp[k6]
                u7 = xap[k7] - ybp[k7]
                s0 += t0 * t0 + u0 * u0
                s1 += t1 * t1 + u1 * u1
                s2 += t2 * t2 + u2 * u2
                s3 += t3 * t3 + u3 * u3
                s4 += t4 * t4 + u4 * u4
                s5 += t5 * t5 + u5 * u5
                s6 += t6 * t6 + u6 * u6
                s7 += t7 * t7 + u7 * u7
            for k in range(vector_end, channels):
                t0 = xa[k] - yb[k]
                u0 = xap[k] - ybp[k]
                s0 += t0 * t0 + u0 * u0
            total += ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
            if total > limit:
                return total / count
    return total / count


def try_candidate(a, a_prime, b, b_prime, r, c, qr, qc, half, best_r, best_c, best_e):
    """The better of pixel (r, c)'s current match and the candidate (qr, qc), with its energy.

    The distance stops early once it exceeds the current best (see ``patch_distance``).
    Compile it through :func:`bind` with the backend's ``patch_distance``.
    """
    if qr == best_r and qc == best_c:
        return best_r, best_c, best_e
    e = patch_distance(a, a_prime, b, b_prime, r, c, qr, qc, half, best_e)
    if e < best_e:
        return qr, qc, e
    return best_r, best_c, best_e


def bind(helper, **callees):
    """``helper`` with the helpers it calls, by name, replaced by compiled versions.

    Numba resolves a called function through the caller's globals at compile time, so a copy
    of ``helper`` whose globals map e.g. ``patch_distance`` to the backend's jitted one
    compiles against that.
    """
    return types.FunctionType(helper.__code__, {**helper.__globals__, **callees},
                              helper.__name__, helper.__defaults__, helper.__closure__)


def upsample_coordinate(p, old_a, new_a, q_parent, old_b, new_b):
    """One axis of the NNF upsampling rule (see ``gpuanalogy.nnf.upsample_nnf``).

    ``p`` (new A grid) has the parent ``floor(p * old_a / new_a)`` and the fractional
    position ``f = (p * old_a mod new_a) / new_a`` inside it; the parent's match
    ``q_parent`` (old B grid) maps to ``floor((q_parent + f) * new_b / old_b)``, clamped into
    the new B grid. Integer arithmetic only, so every backend agrees exactly.
    """
    numerator = (q_parent * new_a + (p * old_a) % new_a) * new_b
    q = numerator // (old_b * new_a)
    return min(max(q, 0), new_b - 1)
