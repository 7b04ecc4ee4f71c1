"""CUDA kernels: ``numba.cuda`` twins of ``gpuanalogy.kernels.cpu``.

Every public function here has a namesake with the same signature in ``kernels.cpu``; the
pipeline reaches them as ``backend.kernels.<name>``. One thread per pixel (x = column,
y = row), doing exactly what one iteration of the CPU kernels' pixel loop does, with the same
scalar helpers from ``kernels._device`` compiled as device functions.

The host wrappers accept CuPy arrays (or anything with ``__cuda_array_interface__``) and, in
Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), NumPy arrays; outputs they allocate use the
inputs' array module (CuPy for CuPy inputs, NumPy otherwise). Kernels launch on Numba's default
stream, which is CuPy's default stream too, so the order of work is kept.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

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

_device_fn = cuda.jit(device=True)

_random_in_window = _device_fn(_device.random_in_window)
_clamp = _device_fn(_device.clamp)
_patch_distance = _device_fn(_device.patch_distance)
_try_candidate = _device_fn(_device.bind(_device.try_candidate, patch_distance=_patch_distance))
_upsample_coordinate = _device_fn(_device.upsample_coordinate)

_INF = np.float32(np.inf)
_BLOCK = (16, 8)  # (columns, rows) per block


@cuda.jit
def _pm_init(a, a_prime, b, b_prime, nnf, half, nnf_out, energy_out):
    c, r = cuda.grid(2)
    if r >= nnf.shape[0] or c >= nnf.shape[1]:
        return
    qr = _clamp(nnf[r, c, 0], 0, b.shape[0] - 1)
    qc = _clamp(nnf[r, c, 1], 0, b.shape[1] - 1)
    nnf_out[r, c, 0] = qr
    nnf_out[r, c, 1] = qc
    energy_out[r, c] = _patch_distance(a, a_prime, b, b_prime, r, c, qr, qc, half, _INF)


@cuda.jit
def _pm_propagate(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half, step):
    c, r = cuda.grid(2)
    ha = nnf_in.shape[0]
    wa = nnf_in.shape[1]
    if r >= ha or c >= wa:
        return
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
        qr = _clamp(nnf_in[nr, nc, 0] - sr, 0, hb - 1)
        qc = _clamp(nnf_in[nr, nc, 1] - sc, 0, wb - 1)
        best_r, best_c, best_e = _try_candidate(a, a_prime, b, b_prime, r, c, qr, qc,
                                                  half, best_r, best_c, best_e)
    nnf_out[r, c, 0] = best_r
    nnf_out[r, c, 1] = best_c
    energy_out[r, c] = best_e


@cuda.jit
def _pm_random_search(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half,
                      radius, seed, iteration):
    c, r = cuda.grid(2)
    wa = nnf_in.shape[1]
    if r >= nnf_in.shape[0] or c >= wa:
        return
    hb = b.shape[0]
    wb = b.shape[1]
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


@cuda.jit
def _nnf_energy(a, a_prime, b, b_prime, nnf, half, energy_out):
    c, r = cuda.grid(2)
    if r >= nnf.shape[0] or c >= nnf.shape[1]:
        return
    energy_out[r, c] = _patch_distance(a, a_prime, b, b_prime, r, c, nnf[r, c, 0], nnf[r, c, 1],
                                       half, _INF)


@cuda.jit
def _fill_random_nnf(out, hb, wb, seed):
    c, r = cuda.grid(2)
    wa = out.shape[1]
    if r >= out.shape[0] or c >= wa:
        return
    pixel = r * wa + c
    # stream -1 keeps these draws apart from the random-search streams (0, 1, ...)
    out[r, c, 0] = _random_in_window(seed, -1, pixel, 0, 0, hb, hb)
    out[r, c, 1] = _random_in_window(seed, -1, pixel, 1, 0, wb, wb)


@cuda.jit
def _upsample_nnf(nnf, old_b_h, old_b_w, new_b_h, new_b_w, out):
    c, r = cuda.grid(2)
    new_h = out.shape[0]
    new_w = out.shape[1]
    if r >= new_h or c >= new_w:
        return
    old_h = nnf.shape[0]
    old_w = nnf.shape[1]
    parent_r = (r * old_h) // new_h
    parent_c = (c * old_w) // new_w
    out[r, c, 0] = _upsample_coordinate(r, old_h, new_h, nnf[parent_r, parent_c, 0], old_b_h,
                                        new_b_h)
    out[r, c, 1] = _upsample_coordinate(c, old_w, new_w, nnf[parent_r, parent_c, 1], old_b_w,
                                        new_b_w)


@cuda.jit
def _warp(source, nnf, half, out):
    c, r = cuda.grid(2)
    ha = nnf.shape[0]
    wa = nnf.shape[1]
    if r >= ha or c >= wa:
        return
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
            count += 1
            for k in range(channels):
                out[r, c, k] += source[qr, qc, k]
    scale = np.float32(count)
    for k in range(channels):
        out[r, c, k] = out[r, c, k] / scale


# --- host wrappers: the backend-neutral API --------------------------------------------------

def _on_device(array):
    """What a kernel launch should get: NumPy arrays as they are (the simulator, or Numba's
    implicit copies), CUDA Array Interface producers (CuPy) as Numba device arrays."""
    if isinstance(array, np.ndarray) or not hasattr(array, "__cuda_array_interface__"):
        return array
    return cuda.as_cuda_array(array)


def _empty(like, shape, dtype):
    """An uninitialised array in ``like``'s array module (CuPy on the GPU, NumPy otherwise)."""
    if isinstance(like, np.ndarray):
        return np.empty(shape, dtype=dtype)
    import cupy  # noqa: PLC0415 - only reached with CuPy inputs

    return cupy.empty(shape, dtype=dtype)


def _grid(height, width):
    return ((width + _BLOCK[0] - 1) // _BLOCK[0], (height + _BLOCK[1] - 1) // _BLOCK[1])


def _launch(kernel, height, width, *args):
    kernel[_grid(height, width), _BLOCK](*[_on_device(x) for x in args])


def pm_init(a, a_prime, b, b_prime, nnf, nnf_out, energy_out, *, half):
    """Clamp ``nnf`` into B, write it to ``nnf_out`` and its patch energies to ``energy_out``."""
    _launch(_pm_init, nnf.shape[0], nnf.shape[1], a, a_prime, b, b_prime, nnf, half, nnf_out,
            energy_out)


def pm_propagate(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, *, half, step):
    """One jump-flooding pass: each pixel tries its 4 neighbours' matches at distance ``step``."""
    _launch(_pm_propagate, nnf_in.shape[0], nnf_in.shape[1], a, a_prime, b, b_prime, nnf_in,
            energy_in, nnf_out, energy_out, half, step)


def pm_random_search(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, *, half,
                     radius, seed, iteration):
    """Random search around each pixel's match, radius halving from ``radius`` down to 1."""
    _launch(_pm_random_search, nnf_in.shape[0], nnf_in.shape[1], a, a_prime, b, b_prime, nnf_in,
            energy_in, nnf_out, energy_out, half, radius, seed, iteration)


def nnf_energy(a, a_prime, b, b_prime, nnf, *, half):
    """Per-pixel mean patch energy of ``nnf``: ``(H_A, W_A) float32``."""
    out = _empty(nnf, nnf.shape[:2], np.float32)
    _launch(_nnf_energy, nnf.shape[0], nnf.shape[1], a, a_prime, b, b_prime, nnf, half, out)
    return out


def fill_random_nnf(out, *, shape_b, seed):
    """Fill ``out`` (``(H_A, W_A, 2) int32``) with uniform positions in B; returns ``out``."""
    _launch(_fill_random_nnf, out.shape[0], out.shape[1], out, shape_b[0], shape_b[1], seed)
    return out


def upsample_nnf(nnf, *, shape_a_new, shape_b_old, shape_b_new):
    """Nearest-neighbour NNF upsampling (rule in ``gpuanalogy.nnf.upsample_nnf``)."""
    out = _empty(nnf, (shape_a_new[0], shape_a_new[1], 2), np.int32)
    _launch(_upsample_nnf, shape_a_new[0], shape_a_new[1], nnf, shape_b_old[0], shape_b_old[1],
            shape_b_new[0], shape_b_new[1], out)
    return out


def warp(source, nnf, *, half):
    """Average voting of ``source`` (``(H_B, W_B, C)``) through ``nnf``: ``(H_A, W_A, C)``."""
    out = _empty(nnf, (nnf.shape[0], nnf.shape[1], source.shape[2]), np.float32)
    _launch(_warp, nnf.shape[0], nnf.shape[1], source, nnf, half, out)
    return out
