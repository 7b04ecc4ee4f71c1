"""CUDA kernels: one ``numba.cuda`` thread per pixel, running the bodies of ``kernels._device``.

Each kernel does for its pixel (x = column, y = row) what one iteration of the CPU kernels'
pixel loop does. :data:`KERNELS` offers them through the API of ``kernels._api``; it accepts
CuPy arrays (or anything with ``__cuda_array_interface__``) and, in Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), NumPy arrays, and allocates outputs in the inputs' array module.
Kernels launch on Numba's default stream, which is CuPy's default stream too, so the order of
work is kept.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from gpuanalogy.kernels import _api, _device

__all__ = ["KERNELS", "check_compiler"]

_px = _device.compile_all(cuda.jit(device=True))

_BLOCK = (16, 8)  # (columns, rows) per block


@cuda.jit
def _init_thread(a, a_prime, b, b_prime, nnf, half, labels_p, labels_q, members, offsets, seed,
                 nnf_out, energy_out):
    c, r = cuda.grid(2)
    if r < nnf.shape[0] and c < nnf.shape[1]:
        _px.init_pixel(a, a_prime, b, b_prime, nnf, half, labels_p, labels_q, members, offsets,
                       seed, nnf_out, energy_out, r, c)


@cuda.jit
def _propagate_thread(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half, step,
                      labels_p, labels_q, offsets):
    c, r = cuda.grid(2)
    if r < nnf_in.shape[0] and c < nnf_in.shape[1]:
        _px.propagate_pixel(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out,
                            half, step, labels_p, labels_q, offsets, r, c)


@cuda.jit
def _random_search_thread(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half,
                          radius, seed, iteration, labels_p, labels_q, members, offsets):
    c, r = cuda.grid(2)
    if r < nnf_in.shape[0] and c < nnf_in.shape[1]:
        _px.random_search_pixel(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out,
                                energy_out, half, radius, seed, iteration, labels_p, labels_q,
                                members, offsets, r, c)


@cuda.jit
def _energy_thread(a, a_prime, b, b_prime, nnf, half, energy_out):
    c, r = cuda.grid(2)
    if r < nnf.shape[0] and c < nnf.shape[1]:
        _px.energy_pixel(a, a_prime, b, b_prime, nnf, half, energy_out, r, c)


@cuda.jit
def _random_nnf_thread(out, hb, wb, seed):
    c, r = cuda.grid(2)
    if r < out.shape[0] and c < out.shape[1]:
        _px.random_nnf_pixel(out, hb, wb, seed, r, c)


@cuda.jit
def _upsample_thread(nnf, old_b_h, old_b_w, new_b_h, new_b_w, out):
    c, r = cuda.grid(2)
    if r < out.shape[0] and c < out.shape[1]:
        _px.upsample_pixel(nnf, old_b_h, old_b_w, new_b_h, new_b_w, out, r, c)


@cuda.jit
def _warp_thread(source, nnf, half, labels_p, labels_q, offsets, out):
    c, r = cuda.grid(2)
    if r < nnf.shape[0] and c < nnf.shape[1]:
        _px.warp_pixel(source, nnf, half, labels_p, labels_q, offsets, out, r, c)


_THREADS = {"init": _init_thread, "propagate": _propagate_thread,
            "random_search": _random_search_thread, "energy": _energy_thread,
            "random_nnf": _random_nnf_thread, "upsample": _upsample_thread, "warp": _warp_thread}


def _on_device(array):
    """What a kernel launch should get: NumPy arrays as they are (the simulator, or Numba's
    implicit copies), CUDA Array Interface producers (CuPy) as Numba device arrays."""
    if isinstance(array, np.ndarray) or not hasattr(array, "__cuda_array_interface__"):
        return array
    return cuda.as_cuda_array(array)


def _launch(kernel: str, grid: tuple[int, int], *arguments) -> None:
    height, width = grid
    blocks = ((width + _BLOCK[0] - 1) // _BLOCK[0], (height + _BLOCK[1] - 1) // _BLOCK[1])
    _THREADS[kernel][blocks, _BLOCK](*[_on_device(x) for x in arguments])


def _empty(like, shape, dtype):
    """An uninitialised array in ``like``'s array module (CuPy on the GPU, NumPy otherwise)."""
    if isinstance(like, np.ndarray):
        return np.empty(shape, dtype=dtype)
    import cupy  # noqa: PLC0415 - only reached with CuPy inputs

    return cupy.empty(shape, dtype=dtype)


def _probe(out):
    out[0] = 1


@functools.cache
def check_compiler() -> None:
    """Compile a one-line kernel (once per process), so that a numba-cuda that cannot compile
    here fails when the backend is chosen rather than at the first search (numba-cuda 0.30.4 on
    NumPy 2.5 fails at any compilation: docs/performance.md, "GPU")."""
    cuda.jit("void(int32[:])")(_probe)


#: The CUDA kernels (CuPy arrays; NumPy arrays in the simulator).
KERNELS = _api.Kernels("cuda", _launch, _empty)
