"""CPU kernels: ``numba.njit(parallel=True)`` loops over the pixel bodies of ``kernels._device``.

Each kernel runs ``prange`` over rows and, for every pixel, the body one CUDA thread runs in
``kernels.cuda``. :data:`KERNELS` offers them through the API of ``kernels._api``. The bodies
and their helpers are inlined into the loops (``inline="always"``): a call costs more than the
patch distance of a few channels (docs/performance.md, "coarse to fine").

A grid of fewer than :data:`SERIAL_PIXELS` pixels runs the same loop compiled without
``parallel``: starting and joining the threads of a parallel loop costs more than such a grid's
work, and far more when other processes hold the cores (docs/performance.md, "Video by
keyframes"). Every pixel is computed alike either way, so the results are the same.
"""
from __future__ import annotations

import types

import numba
import numpy as np
from numba import prange

from gpuanalogy.kernels import _api, _device

__all__ = ["KERNELS"]

#: LLVM vectorises a float sum (the patch distance's over the channels) only when it may
#: reassociate it; without that the loop stays scalar and the search runs several times slower
#: (docs/performance.md, "PatchMatch"). Nothing else of fast-math: infinities must stay exact
#: (an energy of ``inf`` turns the early exit off).
_FASTMATH = {"reassoc"}
_kernel = numba.njit(parallel=True, cache=True, fastmath=_FASTMATH)
_px = _device.compile_all(numba.njit(cache=True, fastmath=_FASTMATH, inline="always"))

# prange's index is unsigned, so each loop makes it an int64 row (-r would wrap).


@_kernel
def _init_loop(a, a_prime, b, b_prime, nnf, half, labels_p, labels_q, members, offsets, seed,
               nnf_out, energy_out):
    for row in prange(nnf.shape[0]):
        for c in range(nnf.shape[1]):
            _px.init_pixel(a, a_prime, b, b_prime, nnf, half, labels_p, labels_q, members,
                           offsets, seed, nnf_out, energy_out, np.int64(row), c)


@_kernel
def _propagate_loop(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half, step,
                    labels_p, labels_q, offsets):
    for row in prange(nnf_in.shape[0]):
        for c in range(nnf_in.shape[1]):
            _px.propagate_pixel(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out,
                                energy_out, half, step, labels_p, labels_q, offsets,
                                np.int64(row), c)


@_kernel
def _random_search_loop(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, half,
                        radius, seed, iteration, labels_p, labels_q, members, offsets):
    for row in prange(nnf_in.shape[0]):
        for c in range(nnf_in.shape[1]):
            _px.random_search_pixel(a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out,
                                    energy_out, half, radius, seed, iteration, labels_p,
                                    labels_q, members, offsets, np.int64(row), c)


@_kernel
def _energy_loop(a, a_prime, b, b_prime, nnf, half, energy_out):
    for row in prange(nnf.shape[0]):
        for c in range(nnf.shape[1]):
            _px.energy_pixel(a, a_prime, b, b_prime, nnf, half, energy_out, np.int64(row), c)


@_kernel
def _random_nnf_loop(out, hb, wb, seed):
    for row in prange(out.shape[0]):
        for c in range(out.shape[1]):
            _px.random_nnf_pixel(out, hb, wb, seed, np.int64(row), c)


@_kernel
def _upsample_loop(nnf, old_b_h, old_b_w, new_b_h, new_b_w, out):
    for row in prange(out.shape[0]):
        for c in range(out.shape[1]):
            _px.upsample_pixel(nnf, old_b_h, old_b_w, new_b_h, new_b_w, out, np.int64(row), c)


@_kernel
def _warp_loop(source, nnf, half, labels_p, labels_q, offsets, out):
    for row in prange(nnf.shape[0]):
        for c in range(nnf.shape[1]):
            _px.warp_pixel(source, nnf, half, labels_p, labels_q, offsets, out, np.int64(row), c)


_LOOPS = {"init": _init_loop, "propagate": _propagate_loop, "random_search": _random_search_loop,
          "energy": _energy_loop, "random_nnf": _random_nnf_loop, "upsample": _upsample_loop,
          "warp": _warp_loop}

#: Grids with fewer pixels than this run the serial loops.
SERIAL_PIXELS = 1 << 14


def _serial(loop):
    """``loop``'s Python function compiled without ``parallel`` (``prange`` is then ``range``),
    under its own name so that Numba's cache keeps the two apart."""
    function = loop.py_func
    twin = types.FunctionType(function.__code__, function.__globals__,
                              function.__name__ + "_serial", function.__defaults__,
                              function.__closure__)
    twin.__qualname__ = function.__qualname__ + "_serial"
    return numba.njit(cache=True, fastmath=_FASTMATH)(twin)


_SERIAL_LOOPS = {name: _serial(loop) for name, loop in _LOOPS.items()}


def _launch(kernel: str, grid: tuple[int, int], *arguments) -> None:
    loops = _SERIAL_LOOPS if grid[0] * grid[1] < SERIAL_PIXELS else _LOOPS
    loops[kernel](*arguments)


def _empty(like, shape, dtype):
    return np.empty(shape, dtype=dtype)


#: The CPU kernels (NumPy arrays).
KERNELS = _api.Kernels("cpu", _launch, _empty)
