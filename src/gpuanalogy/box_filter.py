"""Window means and per-pixel 3 x 3 algebra: the pieces of the guided filter's local colour model.

The sub-pixel alignment (:mod:`gpuanalogy.subpixel`) and the guided upsampling
(:mod:`gpuanalogy.upsampling`) both fit, in every window, an affine model between two colour
images (He, Sun and Tang, "Guided image filtering", ECCV 2010): means over (2 half + 1)^2
windows (:func:`box_mean`) and the inverse of each pixel's 3 x 3 colour covariance
(:func:`inverse_symmetric3`). Array code on ``xp``, NumPy or CuPy alike.
"""
from __future__ import annotations

from typing import Any

__all__ = ["UPPER_TRIANGLE", "box_mean", "inverse_symmetric3"]

#: The entries (a, b), a <= b, of a symmetric 3 x 3 matrix, in the order arrays of them take.
UPPER_TRIANGLE = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def inverse_symmetric3(m: dict) -> list[list[Any]]:
    """Inverse of per-pixel symmetric 3 x 3 matrices given by their upper triangle.

    ``m[(a, b)]`` for a <= b are arrays of one shape; the result is nested lists [a][b] of
    arrays, by the adjugate (positive definite input: the ridge keeps the determinant > 0).
    """
    a, b, c, d, e, f = (m[k] for k in UPPER_TRIANGLE)
    co_a, co_b, co_c = d * f - e * e, c * e - b * f, b * e - c * d
    co_d, co_e, co_f = a * f - c * c, b * c - a * e, a * d - b * b
    scale = 1 / (a * co_a + b * co_b + c * co_c)
    return [[co_a * scale, co_b * scale, co_c * scale],
            [co_b * scale, co_d * scale, co_e * scale],
            [co_c * scale, co_e * scale, co_f * scale]]


def box_mean(x: Any, half: int, xp: Any) -> Any:
    """Mean of ``x`` (..., H, W) over the (2 half + 1)^2 window, clipped at the borders.

    Sums of shifted slices rather than differences of running sums, so float32 keeps its
    precision (a running sum along a 700-pixel row would not).
    """
    for axis in (-2, -1):
        n = x.shape[axis]

        def part(start: int | None, stop: int | None) -> tuple:
            return (Ellipsis, slice(start, stop)) + (slice(None),) * (-1 - axis)

        total = x.copy()
        for k in range(1, min(half, n - 1) + 1):
            total[part(k, None)] += x[part(None, -k)]
            total[part(None, -k)] += x[part(k, None)]
        index = xp.arange(n)
        count = xp.minimum(index + half + 1, n) - xp.maximum(index - half, 0)
        x = total / count.reshape((n,) + (1,) * (-1 - axis)).astype(x.dtype)
    return x
