"""The kernels' per-pixel work, written once for the CPU and the CUDA kernels.

Each function here is plain Python: the scalar helpers (the patch distance; the random draws
of ``kernels._random`` and the region labels of ``kernels._labels`` join them) and one
``*_pixel`` body per kernel, which does for pixel (r, c) what one CUDA thread does.
:func:`compile_all` compiles them all with a backend's decorator: ``kernels.cpu`` with
``numba.njit`` and loops over the pixels with ``prange``, ``kernels.cuda`` with
``numba.cuda.jit(device=True)`` and launches one thread per pixel. Both therefore run the same
schedule on the same random streams, in ``float32`` everywhere (explicitly, so NumPy scalars in
the CUDA simulator round like compiled code). Only the order of a patch distance's additions may
differ: the CPU kernels let the compiler reassociate them (``kernels.cpu`` says why) and a GPU
contracts multiply-adds, so the backends' energies agree to rounding and their fields wherever
two candidates are not within rounding of each other.

A function that calls another (``try_candidate`` calls ``patch_distance``) would, through the
plain function's globals, reach the plain (un-jitted) callee; :func:`compile_all` therefore
compiles each through :func:`bind`, which rebinds the callees' names to the compiled versions.

Caching note: ``kernels.cpu`` caches its compiled kernels (``cache=True``). Numba checks only
the caller's own source file for staleness, so after editing this file (or ``_random``,
``_labels``), delete the
``__pycache__/*.nbi``/``*.nbc`` files of ``kernels/`` (the package never edits itself at run
time, so installed copies are unaffected).
"""
from __future__ import annotations

import types
from collections.abc import Callable

import numpy as np

from gpuanalogy.kernels._labels import allowed, draw_member, pixel_label
from gpuanalogy.kernels._random import random_hash, random_in_window

_INF = np.float32(np.inf)
#: Draws a random search makes again in its window before it draws among the label's pixels.
_REDRAWS = 3


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
    total = np.float32(0.0)
    for dr in range(r0, r1 + 1):
        for dc in range(c0, c1 + 1):
            xa = a[pr + dr, pc + dc]
            xap = a_prime[pr + dr, pc + dc]
            yb = b[qr + dr, qc + dc]
            ybp = b_prime[qr + dr, qc + dc]
            s = np.float32(0.0)
            for k in range(channels):
                t = xa[k] - yb[k]
                u = xap[k] - ybp[k]
                s += t * t + u * u
            total += s
            if total > limit:
                return total / count
    return total / count


def try_candidate(a, a_prime, b, b_prime, r, c, qr, qc, half, best_r, best_c, best_e,
                  labels_p, labels_q, offsets):
    """The better of pixel (r, c)'s current match and the candidate (qr, qc), with its energy.

    A candidate the labels forbid (``allowed``) is not tried. The distance stops early once it
    exceeds the current best (see ``patch_distance``).
    """
    if qr == best_r and qc == best_c:
        return best_r, best_c, best_e
    if not allowed(labels_p, labels_q, offsets, r, c, qr, qc):
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


# --- one pixel of each kernel ----------------------------------------------------------------
# Arrays: feature maps (H, W, C) float32, NNFs (H, W, 2) int32 holding (row, col) into the other
# map, energies (H, W) float32. ``r`` and ``c`` are the pixel's row and column in the output.


def init_pixel(a, a_prime, b, b_prime, nnf, half, labels_p, labels_q, members, offsets, seed,
               nnf_out, energy_out, r, c):
    """Clamp the pixel's match into B and write it with its patch energy; a match the labels
    forbid is replaced by a uniform draw among the pixels they allow."""
    qr = clamp(nnf[r, c, 0], 0, b.shape[0] - 1)
    qc = clamp(nnf[r, c, 1], 0, b.shape[1] - 1)
    if not allowed(labels_p, labels_q, offsets, r, c, qr, qc):
        # stream -2: apart from the random search's (0, 1, ...) and random_nnf's (-1)
        q = draw_member(members, offsets, pixel_label(labels_p, r, c), seed, -2,
                        r * nnf.shape[1] + c, 0)
        qr = q // b.shape[1]
        qc = q % b.shape[1]
    nnf_out[r, c, 0] = qr
    nnf_out[r, c, 1] = qc
    energy_out[r, c] = patch_distance(a, a_prime, b, b_prime, r, c, qr, qc, half, _INF)


def propagate_pixel(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half, step,
                    labels_p, labels_q, offsets, r, c):
    """Jump flooding: try the matches of the 4 neighbours at distance ``step``, shifted back."""
    ha = nnf_in.shape[0]
    wa = nnf_in.shape[1]
    hb = b.shape[0]
    wb = b.shape[1]
    best_r = nnf_in[r, c, 0]
    best_c = nnf_in[r, c, 1]
    best_e = energy_in[r, c]
    for direction in range(4):
        # neighbour n = p + s; its match shifted back by s is the candidate for p
        sr = 0
        sc = 0
        if direction == 0:
            sc = -step
        elif direction == 1:
            sc = step
        elif direction == 2:
            sr = -step
        else:
            sr = step
        nr = r + sr
        nc = c + sc
        if nr < 0 or nr >= ha or nc < 0 or nc >= wa:
            continue
        qr = clamp(nnf_in[nr, nc, 0] - sr, 0, hb - 1)
        qc = clamp(nnf_in[nr, nc, 1] - sc, 0, wb - 1)
        best_r, best_c, best_e = try_candidate(a, a_prime, b, b_prime, r, c, qr, qc, half,
                                               best_r, best_c, best_e, labels_p, labels_q,
                                               offsets)
    nnf_out[r, c, 0] = best_r
    nnf_out[r, c, 1] = best_c
    energy_out[r, c] = best_e


def random_search_pixel(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half,
                        radius, seed, iteration, labels_p, labels_q, members, offsets, r, c):
    """Random search around the pixel's match, the window radius halving down to 1.

    Under labels, a draw they forbid is drawn again in the same window, up to
    ``_REDRAWS`` times, and then replaced by a uniform draw among the pixels of the pixel's
    label (``draw_member``): the search samples among the pixels it may match.
    """
    hb = b.shape[0]
    wb = b.shape[1]
    pixel = r * nnf_in.shape[1] + c
    best_r = nnf_in[r, c, 0]
    best_c = nnf_in[r, c, 1]
    best_e = energy_in[r, c]
    rad = radius
    draw = 0
    while rad >= 1:
        qr = random_in_window(seed, iteration, pixel, draw, best_r, rad, hb)
        qc = random_in_window(seed, iteration, pixel, draw + 1, best_c, rad, wb)
        draw += 2
        tries = 0
        while tries < _REDRAWS and not allowed(labels_p, labels_q, offsets, r, c, qr, qc):
            qr = random_in_window(seed, iteration, pixel, draw, best_r, rad, hb)
            qc = random_in_window(seed, iteration, pixel, draw + 1, best_c, rad, wb)
            draw += 2
            tries += 1
        if tries == _REDRAWS and not allowed(labels_p, labels_q, offsets, r, c, qr, qc):
            q = draw_member(members, offsets, pixel_label(labels_p, r, c), seed, iteration,
                            pixel, draw)
            draw += 1
            qr = q // wb
            qc = q % wb
        rad //= 2
        best_r, best_c, best_e = try_candidate(a, a_prime, b, b_prime, r, c, qr, qc, half,
                                               best_r, best_c, best_e, labels_p, labels_q,
                                               offsets)
    nnf_out[r, c, 0] = best_r
    nnf_out[r, c, 1] = best_c
    energy_out[r, c] = best_e


def energy_pixel(a, a_prime, b, b_prime, nnf, half, energy_out, r, c):
    """The exact patch energy of the pixel's match."""
    energy_out[r, c] = patch_distance(a, a_prime, b, b_prime, r, c, nnf[r, c, 0], nnf[r, c, 1],
                                      half, _INF)


def random_nnf_pixel(out, hb, wb, seed, r, c):
    """A uniform position in B for the pixel."""
    pixel = r * out.shape[1] + c
    # stream -1 keeps these draws apart from the random-search streams (0, 1, ...)
    out[r, c, 0] = random_in_window(seed, -1, pixel, 0, 0, hb, hb)
    out[r, c, 1] = random_in_window(seed, -1, pixel, 1, 0, wb, wb)


def upsample_pixel(nnf, old_b_h, old_b_w, new_b_h, new_b_w, out, r, c):
    """The pixel's match at the finer level, from its parent's (see ``upsample_coordinate``)."""
    old_h = nnf.shape[0]
    old_w = nnf.shape[1]
    parent_r = (r * old_h) // out.shape[0]
    parent_c = (c * old_w) // out.shape[1]
    out[r, c, 0] = upsample_coordinate(r, old_h, out.shape[0], nnf[parent_r, parent_c, 0],
                                       old_b_h, new_b_h)
    out[r, c, 1] = upsample_coordinate(c, old_w, out.shape[1], nnf[parent_r, parent_c, 1],
                                       old_b_w, new_b_w)


def warp_pixel(source, nnf, half, labels_p, labels_q, offsets, out, r, c):
    """Average voting: the mean of ``source`` over the patch's matches, shifted back.

    Under labels, a shifted-back match counts only where the pixel may match it (``allowed``:
    no walls, no other region); the pixel's own match (offset 0) always counts.
    """
    ha = nnf.shape[0]
    wa = nnf.shape[1]
    hb = source.shape[0]
    wb = source.shape[1]
    channels = source.shape[2]
    for k in range(channels):
        out[r, c, k] = np.float32(0.0)
    count = 0
    for dr in range(-half, half + 1):
        nr = r + dr
        if nr < 0 or nr >= ha:
            continue
        for dc in range(-half, half + 1):
            nc = c + dc
            if nc < 0 or nc >= wa:
                continue
            qr = nnf[nr, nc, 0] - dr
            qc = nnf[nr, nc, 1] - dc
            if qr < 0 or qr >= hb or qc < 0 or qc >= wb:
                continue
            if (dr != 0 or dc != 0) and not allowed(labels_p, labels_q, offsets, r, c, qr, qc):
                continue
            count += 1
            for k in range(channels):
                out[r, c, k] += source[qr, qc, k]
    scale = np.float32(count)
    for k in range(channels):
        out[r, c, k] = out[r, c, k] / scale


#: Every function above, each after those it calls: the order :func:`compile_all` compiles in.
_COMPILED = ("random_hash", "random_in_window", "clamp", "pixel_label", "allowed",
             "draw_member", "patch_distance",
             "try_candidate", "upsample_coordinate", "init_pixel", "propagate_pixel",
             "random_search_pixel", "energy_pixel", "random_nnf_pixel", "upsample_pixel",
             "warp_pixel")


def compile_all(jit: Callable[[Callable], Callable]) -> types.ModuleType:
    """Every helper and pixel body compiled by ``jit``, each calling the compiled others.

    ``jit`` is the backend's decorator for functions its kernels call (``numba.njit(...)`` or
    ``numba.cuda.jit(device=True)``). The result is a module object with one attribute per
    name in ``_COMPILED``: Numba resolves ``module.name`` inside a kernel at compile time.
    """
    compiled = types.ModuleType(f"{__name__}.compiled")
    for done, name in enumerate(_COMPILED):
        callees = {earlier: getattr(compiled, earlier) for earlier in _COMPILED[:done]}
        setattr(compiled, name, jit(bind(globals()[name], **callees)))
    return compiled
