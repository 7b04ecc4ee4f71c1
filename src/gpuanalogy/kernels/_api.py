"""The kernels' API, the same on every backend: ``backend.kernels.<name>(...)``.

:class:`Kernels` takes a backend's way to run a kernel over a grid of pixels (``kernels.cpu``:
a ``prange`` loop; ``kernels.cuda``: one thread per pixel) and to allocate an output, and offers
the operations PatchMatch and the NNF functions use. Arrays: feature maps ``(H, W, C) float32``
C-contiguous, NNFs ``(H, W, 2) int32`` holding (row, col) into the other map, energies
``(H, W) float32``, all in the backend's array module; region labels (``labels=``) the four
arrays of ``gpuanalogy.regions.Labels`` (``kernels._labels`` says what they hold), or None.
The methods trust their inputs (shapes, dtypes, contiguity): ``gpuanalogy.patchmatch`` and
``gpuanalogy.nnf`` check them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: The kernels every backend compiles, by name (each runs one ``kernels._device`` pixel body).
KERNEL_NAMES = ("init", "propagate", "random_search", "energy", "random_nnf", "upsample", "warp")

Launch = Callable[..., None]          # launch(name, (height, width), *arguments)
Empty = Callable[[Any, tuple, Any], Any]   # empty(like, shape, dtype)


class Kernels:
    """One backend's kernels behind the backend-neutral API.

    Parameters
    ----------
    name : str
        The backend ("cpu" or "cuda").
    launch : callable
        ``launch(kernel, (height, width), *arguments)`` runs kernel ``kernel`` (one of
        :data:`KERNEL_NAMES`) for every pixel of a height x width grid.
    empty : callable
        ``empty(like, shape, dtype)``: an uninitialised array in ``like``'s array module.
    """

    def __init__(self, name: str, launch: Launch, empty: Empty) -> None:
        self.name = name
        self._launch = launch
        self._empty = empty

    def __repr__(self) -> str:
        return f"Kernels({self.name!r})"

    def unlabelled(self, like) -> tuple:
        """No labels: every pixel may match every pixel (empty arrays in ``like``'s module)."""
        empty = self._empty(like, (0, 0), np.int32)
        return (empty, empty, self._empty(like, (0,), np.int32), self._empty(like, (0,), np.int32))

    def pm_init(self, a, a_prime, b, b_prime, nnf, nnf_out, energy_out, *, half, labels=None,
                seed=0):
        """Clamp ``nnf`` into B; write it and its patch energies to ``nnf_out``, ``energy_out``.

        A match ``labels`` forbid is replaced by a draw (``seed``) among those they allow."""
        labels = labels or self.unlabelled(nnf)
        self._launch("init", nnf.shape[:2], a, a_prime, b, b_prime, nnf, half, *labels, seed,
                     nnf_out, energy_out)

    def pm_propagate(self, a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, *,
                     half, step, labels=None):
        """One jump-flooding pass: each pixel tries its 4 neighbours' matches ``step`` away
        (those ``labels`` allow)."""
        labels_p, labels_q, _, offsets = labels or self.unlabelled(nnf_in)
        self._launch("propagate", nnf_in.shape[:2], a, a_prime, b, b_prime, nnf_in, energy_in,
                     nnf_out, energy_out, half, step, labels_p, labels_q, offsets)

    def pm_random_search(self, a, a_prime, b, b_prime, nnf_in, energy_in, nnf_out, energy_out, *,
                         half, radius, seed, iteration, labels=None):
        """Random search around each pixel's match, radius halving from ``radius`` down to 1,
        among the pixels ``labels`` allow."""
        labels = labels or self.unlabelled(nnf_in)
        self._launch("random_search", nnf_in.shape[:2], a, a_prime, b, b_prime, nnf_in,
                     energy_in, nnf_out, energy_out, half, radius, seed, iteration, *labels)

    def nnf_energy(self, a, a_prime, b, b_prime, nnf, *, half):
        """Per-pixel mean patch energy of ``nnf``: ``(H_A, W_A) float32``."""
        out = self._empty(nnf, nnf.shape[:2], np.float32)
        self._launch("energy", nnf.shape[:2], a, a_prime, b, b_prime, nnf, half, out)
        return out

    def fill_random_nnf(self, out, *, shape_b, seed):
        """Fill ``out`` (``(H_A, W_A, 2) int32``) with uniform positions in B; returns ``out``."""
        self._launch("random_nnf", out.shape[:2], out, shape_b[0], shape_b[1], seed)
        return out

    def upsample_nnf(self, nnf, *, shape_a_new, shape_b_old, shape_b_new):
        """Nearest-neighbour NNF upsampling (rule in ``gpuanalogy.nnf.upsample_nnf``)."""
        out = self._empty(nnf, (shape_a_new[0], shape_a_new[1], 2), np.int32)
        self._launch("upsample", out.shape[:2], nnf, shape_b_old[0], shape_b_old[1],
                     shape_b_new[0], shape_b_new[1], out)
        return out

    def warp(self, source, nnf, *, half, labels=None):
        """Average voting of ``source`` (``(H_B, W_B, C)``) through ``nnf``: ``(H_A, W_A, C)``;
        under ``labels`` only from the pixels they allow (and each pixel's own match)."""
        labels_p, labels_q, _, offsets = labels or self.unlabelled(nnf)
        out = self._empty(nnf, (nnf.shape[0], nnf.shape[1], source.shape[2]), np.float32)
        self._launch("warp", nnf.shape[:2], source, nnf, half, labels_p, labels_q, offsets, out)
        return out
