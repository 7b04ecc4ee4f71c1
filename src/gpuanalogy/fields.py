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

from dataclasses import dataclass
from typing import Any

from . import subpixel
from .backend import Backend

__all__ = ["Field"]


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
    """

    values: Any
    shape_b: tuple[int, int]
    subpixel: bool = False

    @property
    def shape_a(self) -> tuple[int, int]:
        return tuple(self.values.shape[:2])  # type: ignore[return-value]

    def upsampled(self, shape_a: tuple[int, int], shape_b: tuple[int, int],
                  backend: Backend) -> "Field":
        """This field brought to A of ``shape_a`` and B of ``shape_b`` (the rule of
        ``gpuanalogy.nnf.upsample_nnf``; without its rounding for a sub-pixel field)."""
        if self.subpixel:
            values = subpixel.upsample_nnf(self.values, shape_a, shape_b, backend,
                                           shape_b_old=self.shape_b)
        else:
            values = backend.kernels.upsample_nnf(self.values, shape_a_new=tuple(shape_a),
                                                  shape_b_old=self.shape_b,
                                                  shape_b_new=tuple(shape_b))
        return Field(values, tuple(shape_b), self.subpixel)  # type: ignore[arg-type]

    def vote(self, source: Any, patch_size: int, backend: Backend) -> Any:
        """Average voting: A's grid rebuilt from ``source`` (H_B, W_B, C) through the field.

        Returns an (H_A, W_A, C) float32 array on ``backend``.
        """
        if self.subpixel:
            return subpixel.warp(source, self.values, patch_size=patch_size, backend=backend)
        xp = backend.xp
        return backend.kernels.warp(xp.ascontiguousarray(source, dtype=xp.float32), self.values,
                                    half=patch_size // 2)
