"""CPU kernels: ``numba.njit(parallel=True)`` twins of ``gpuanalogy.kernels.cuda``.

Every public function here has a namesake with the same signature in ``kernels.cuda``; the
pipeline reaches them as ``backend.kernels.<name>``. Arrays are NumPy: feature maps
``(H, W, C) float32`` C-contiguous, NNFs ``(H, W, 2) int32`` holding (row, col) into the
other map, energies ``(H, W) float32``. Each kernel runs ``prange`` over rows and does per
pixel exactly what one CUDA thread does, with the scalar helpers of ``kernels._device``.

The public functions trust their inputs (shapes, dtypes, contiguity): ``gpuanalogy.patchmatch``
and ``gpuanalogy.nnf`` check them.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from gpuanalogy.kernels import _device

__all__ = [
    "pm_init",
    "pm_propagate",
    "pm_random_search",
    "nnf_energy",
    "fill_random_nnf",
    "upsample_nnf",
    "warp",
]

_jit = numba.njit(cache=True, fastmath=False)
_kernel = numba.njit(parallel=True, cache=True, fastmath=False)

_random_in_window = _jit(_device.random_in_window)
_clamp = _jit(_device.clamp)
_patch_distance = _jit(_device.patch_distance)
_try_candidate = _jit(_device.bind(_device.try_candidate, patch_distance=_patch_distance))
_upsample_coordinate = _jit(_device.upsample_coordinate)

_INF = np.float32(np.inf)


@_kernel
def _pm_init(a, a_prime, b, b_prime, nnf, half, nnf_out, energy_out):
    hb = b.shape[0]
    wb = b.shape[1]
    for row in prange(nnf.shape[0]):
        r = np.int64(row)  # prange's index is unsigned: -r would wrap
        for c in range(nnf.shape[1]):
            qr = _clamp(nnf[r, c, 0], 0, hb - 1)
            qc = _clamp(nnf[r, c, 1], 0, wb - 1)
            nnf_out[r, c, 0] = qr
            nnf_out[r, c, 1] = qc
            energy_out[r, c] = _patch_distance(a, a_prime, b, b_prime, r, c, qr, qc, half, _INF)


@_kernel
def _pm_propagate(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half, step):
    ha = nnf_in.shape[0]
    wa = nnf_in.shape[1]
    hb = b.shape[0]
    wb = b.shape[1]
    for row in prange(ha):
        r = np.int64(row)  # prange's index is unsigned: -r would wrap
        for c in range(wa):
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
                qr = _clamp(nnf_in[nr, nc, 0] - sr, 0, hb - 1)
                qc = _clamp(nnf_in[nr, nc, 1] - sc, 0, wb - 1)
                best_r, best_c, best_e = _try_candidate(a, a_prime, b, b_prime, r, c, qr, qc,
                                                          half, best_r, best_c, best_e)
            nnf_out[r, c, 0] = best_r
            nnf_out[r, c, 1] = best_c
            energy_out[r, c] = best_e


@_kernel
def _pm_random_search(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half,
                      radius, seed, iteration):
    ha = nnf_in.shape[0]
    wa = nnf_in.shape[1]
    hb = b.shape[0]
    wb = b.shape[1]
    for row in prange(ha):
        r = np.int64(row)  # prange's index is unsigned: -r would wrap
        for c in range(wa):
            pixel = r * wa + c
            best_r = nnf_in[r, c, 0]
            best_c = nnf_in[r, c, 1]
            best_e = energy_in[r, c]
            rad = radius
            draw = 0
            while rad >= 1:
                qr = _random_in_window(seed, iteration, pixel, draw, best_r, rad, hb)
                qc = _random_in_window(seed, iteration, pixel, draw + 1, best_c, rad, wb)
                draw += 2
                rad //= 2
                best_r, best_c, best_e = _try_candidate(a, a_prime, b, b_prime, r, c, qr, qc,
                                                          half, best_r, best_c, best_e)
            nnf_out[r, c, 0] = best_r
            nnf_out[r, c, 1] = best_c
            energy_out[r, c] = best_e


@_kernel
def _nnf_energy(a, a_prime, b, b_prime, nnf, half, energy_out):
    for row in prange(nnf.shape[0]):
        r = np.int64(row)  # prange's index is unsigned: -r would wrap
        for c in range(nnf.shape[1]):
            energy_out[r, c] = _patch_distance(a, a_prime, b, b_prime, r, c, nnf[r, c, 0],
                                               nnf[r, c, 1], half, _INF)


@_kernel
def _fill_random_nnf(out, hb, wb, seed):
    wa = out.shape[1]
    for row in prange(out.shape[0]):
        r = np.int64(row)  # prange's index is unsigned: -r would wrap
        for c in range(wa):
            pixel = r * wa + c
            # stream -1 keeps these draws apart from the random-search streams (0, 1, ...)
            out[r, c, 0] = _random_in_window(seed, -1, pixel, 0, 0, hb, hb)
            out[r, c, 1] = _random_in_window(seed, -1, pixel, 1, 0, wb, wb)


@_kernel
def _upsample_nnf(nnf, old_b_h, old_b_w, new_b_h, new_b_w, out):
    old_h = nnf.shape[0]
    old_w = nnf.shape[1]
    new_h = out.shape[0]
    new_w = out.shape[1]
    for row in prange(new_h):
        r = np.int64(row)  # prange's index is unsigned: -r would wrap
        for c in range(new_w):
            parent_r = (r * old_h) // new_h
            parent_c = (c * old_w) // new_w
            out[r, c, 0] = _upsample_coordinate(r, old_h, new_h, nnf[parent_r, parent_c, 0],
                                                old_b_h, new_b_h)
            out[r, c, 1] = _upsample_coordinate(c, old_w, new_w, nnf[parent_r, parent_c, 1],
                                                old_b_w, new_b_w)


@_kernel
def _warp(source, nnf, half, out):
    ha = nnf.shape[0]
    wa = nnf.shape[1]
    hb = source.shape[0]
    wb = source.shape[1]
    channels = source.shape[2]
    for row in prange(ha):
        r = np.int64(row)  # prange's index is unsigned: -r would wrap
        for c in range(wa):
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
                    count += 1
                    for k in range(channels):
                        out[r, c, k] += source[qr, qc, k]
            scale = np.float32(count)
            for k in range(channels):
                out[r, c, k] = out[r, c, k] / scale


# --- host wrappers: the backend-neutral API --------------------------------------------------

def pm_init(a, a_prime, b, b_prime, nnf, nnf_out, energy_out, *, half):
    """Clamp ``nnf`` into B, write it to ``nnf_out`` and its patch energies to ``energy_out``."""
    _pm_init(a, a_prime, b, b_prime, nnf, half, nnf_out, energy_out)


def pm_propagate(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, *, half, step):
    """One jump-flooding pass: each pixel tries its 4 neighbours' matches at distance ``step``."""
    _pm_propagate(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half, step)


def pm_random_search(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, *, half,
                     radius, seed, iteration):
    """Random search around each pixel's match, radius halving from ``radius`` down to 1."""
    _pm_random_search(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half,
                      radius, seed, iteration)


def nnf_energy(a, a_prime, b, b_prime, nnf, *, half):
    """Per-pixel mean patch energy of ``nnf``: ``(H_A, W_A) float32``."""
    out = np.empty(nnf.shape[:2], dtype=np.float32)
    _nnf_energy(a, a_prime, b, b_prime, nnf, half, out)
    return out


def fill_random_nnf(out, *, shape_b, seed):
    """Fill ``out`` (``(H_A, W_A, 2) int32``) with uniform positions in B; returns ``out``."""
    _fill_random_nnf(out, shape_b[0], shape_b[1], seed)
    return out


def upsample_nnf(nnf, *, shape_a_new, shape_b_old, shape_b_new):
    """Nearest-neighbour NNF upsampling (rule in ``gpuanalogy.nnf.upsample_nnf``)."""
    out = np.empty((shape_a_new[0], shape_a_new[1], 2), dtype=np.int32)
    _upsample_nnf(nnf, shape_b_old[0], shape_b_old[1], shape_b_new[0], shape_b_new[1], out)
    return out


def warp(source, nnf, *, half):
    """Average voting of ``source`` (``(H_B, W_B, C)``) through ``nnf``: ``(H_A, W_A, C)``."""
    out = np.empty((nnf.shape[0], nnf.shape[1], source.shape[2]), dtype=np.float32)
    _warp(source, nnf, half, out)
    return out
