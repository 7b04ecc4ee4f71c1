"""A nearest-neighbour field with what it takes to move it between grids and vote through it.

:class:`Field` holds a field's values together with the size of the map they index, so a
field can be upsampled and can vote without the caller carrying that size beside it. Its
values are whole pixels (``(H, W, 2) int32``, the method's fields, handled by the kernels of
``gpuanalogy.nnf``) or, once aligned by ``gpuanalogy.subpixel``, fractions
(``(H, W, 2) float32``, handled by bilinear sampling). The pipeline builds fields itself, so
nothing here validates: the public functions of ``gpuanalogy.nnf`` and ``gpuanalogy.subpixel``
do that for callers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import subpixel
from .atlas import Atlas
from .atlas import upsample as atlas_upsample
from .backend import Backend, cpu_backend
from .checks import to_host
from .errors import InputError
from .flo import field_from_flow, read_flo
from .regions import Labels

__all__ = ["Field", "field_file_arrays", "read_field"]


@dataclass(frozen=True)
class Field:
    """A field from A to B.

    Attributes
    ----------
    values : array, shape (H_A, W_A, 2)
        (row, col) in B for every pixel of A: int32 whole pixels, or float32 when ``subpixel``.
    shape_b : (int, int)
        The size of B, whose pixels the values index.
    subpixel : bool
        Whether the values are fractional (aligned by ``gpuanalogy.subpixel.align``).
    atlas : (Atlas, Atlas) or None
        With several exemplars, B is their atlas and these its layouts at the working and the
        input sizes (``gpuanalogy.atlas``): the field is then brought between grids exemplar
        by exemplar.
    """

    values: Any
    shape_b: tuple[int, int]
    subpixel: bool = False
    atlas: tuple[Atlas, Atlas] | None = None

    @property
    def shape_a(self) -> tuple[int, int]:
        return tuple(self.values.shape[:2])  # type: ignore[return-value]

    def with_values(self, values: Any) -> "Field":
        """A field with other values into the same B."""
        return replace(self, values=values)

    def upsampled(self, shape_a: tuple[int, int], shape_b: tuple[int, int],
                  backend: Backend) -> "Field":
        """This field brought to A of ``shape_a`` and B of ``shape_b`` (the rule of
        ``gpuanalogy.nnf.upsample_nnf``; without its rounding for a sub-pixel field; exemplar
        by exemplar into an atlas, whose ``shape_b`` is then a level's or the working size's)."""
        if self.atlas is not None:
            values = atlas_upsample(self.values, self._layout(self.shape_b),
                                    self._layout(shape_b), tuple(shape_a),  # type: ignore[arg-type]
                                    backend.xp)
            return replace(self, values=values, shape_b=tuple(shape_b))
        if self.subpixel:
            values = subpixel.upsample_nnf(self.values, shape_a, shape_b, backend,
                                           shape_b_old=self.shape_b)
        else:
            values = backend.kernels.upsample_nnf(self.values, shape_a_new=tuple(shape_a),
                                                  shape_b_old=self.shape_b,
                                                  shape_b_new=tuple(shape_b))
        return Field(values, tuple(shape_b), self.subpixel)  # type: ignore[arg-type]

    def _layout(self, shape_b: tuple[int, int]) -> Atlas:
        """The atlas's layout on a grid of ``shape_b``: the input size's, or the working
        size's reduced to a level."""
        work, full = self.atlas  # type: ignore[misc]
        if tuple(shape_b) == full.shape and tuple(shape_b) != work.shape:
            return full
        return work.reduced(work.shape[1] // shape_b[1])

    def vote(self, source: Any, patch_size: int, backend: Backend,
             labels: Labels | None = None) -> Any:
        """Average voting: A's grid rebuilt from ``source`` (H_B, W_B, C) through the field,
        from the pixels ``labels`` allow (whole-pixel fields; see ``gpuanalogy.nnf.warp``).

        Returns an (H_A, W_A, C) float32 array on ``backend``.
        """
        if self.subpixel:
            return subpixel.vote(source, self.values, patch_size // 2, backend)
        xp = backend.xp
        return backend.kernels.warp(xp.ascontiguousarray(source, dtype=xp.float32), self.values,
                                    half=patch_size // 2, labels=labels)


def field_file_arrays(work: Field, shape_a_full: tuple[int, int],
                      shape_b_full: tuple[int, int]) -> dict[str, np.ndarray]:
    """What a "working" field file (``nnf_*.npz``, ``field_format="working"``) holds: the
    working-size field (int16 whole pixels where they fit, else int32; float32 sub-pixel),
    the size of the map it indexes, and the input sizes it is brought to. :func:`read_field`
    reads it back."""
    values = to_host(work.values, "field")
    if not work.subpixel:
        values = values.astype(np.int16 if values.max(initial=0) < 2**15 else np.int32)
    return {"values": values, "shape_b": np.array(work.shape_b),
            "shape_a_full": np.array(shape_a_full), "shape_b_full": np.array(shape_b_full),
            "subpixel": np.array(work.subpixel)}


def read_field(path: str | os.PathLike[str]) -> np.ndarray:
    """A field file of an output folder at the input size: ``(H_A, W_A, 2) float32``.

    ``nnf_*.npy`` (``field_format`` "float32" or "float16") is read as it is; ``nnf_*.flo``
    ("flo") as the matches its displacements point to; ``nnf_*.npz`` ("working": the
    working-size field and the sizes it goes to) is brought to the input size by the rule the
    run used (:meth:`Field.upsampled`, on the CPU), which gives the field the run voted with.

    Raises
    ------
    InputError
        A missing file, or one that is not a field file.
    """
    name = os.fspath(path)
    if name.endswith(".flo"):
        return field_from_flow(read_flo(name))
    try:
        if not name.endswith(".npz"):
            values = np.load(name, allow_pickle=False)
            if values.ndim != 3 or values.shape[2] != 2 or min(values.shape[:2]) < 1:
                raise ValueError(f"an array of shape {values.shape}, not H x W x 2")
            return values.astype(np.float32)
        with np.load(name, allow_pickle=False) as data:
            aligned = bool(data["subpixel"])
            field = Field(data["values"].astype(np.float32 if aligned else np.int32),
                          tuple(int(n) for n in data["shape_b"]), aligned)  # type: ignore[arg-type]
            shape_a, shape_b = (tuple(int(n) for n in data[k])
                                for k in ("shape_a_full", "shape_b_full"))
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{name}: not a field file written by gpuanalogy ({error})") from None
    return field.upsampled(shape_a, shape_b, cpu_backend()).values.astype(np.float32)
