"""Validation at the public boundary: what callers hand the package is checked here, once.

:func:`to_float_image` is the gate for image arrays; the small checks below serve the public
functions of the stage modules. Inner code trusts what these let through, so a shape the package
itself got wrong is not reported as the caller's bad input.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .errors import InputError, Notice, error_reason, printable

__all__ = ["MIN_SIDE", "MAX_PIXELS", "to_host", "to_float_image", "check_size", "patch_half",
           "shape2", "check_nnf", "check_warp"]

#: Smallest side, in pixels, of an image the method accepts. The deepest feature layer
#: (relu5_1) sits behind four 2x poolings, so its map is 1/16 of the input: a 16 px side
#: leaves a 1 x 1 map with nothing to match, and anything smaller leaves none at all.
#: 32 px is the smallest side that still leaves a 2 x 2 map at the coarsest level.
MIN_SIDE: int = 32

#: Largest image, in pixels (width x height), that is decoded. Larger files are refused
#: before decoding, which also guards against decompression bombs (a small file that
#: expands to gigabytes). 100 megapixels is far beyond what the method can process anyway.
MAX_PIXELS: int = 100_000_000

# Floats may stray this far outside [0, 1] (rounding in the caller's arithmetic) before
# they are refused; within it they are clipped. float16 needs a little more (see below).
_RANGE_TOLERANCE = 1e-3


_SUPPORTED_DTYPES = "Try uint8, uint16 or float32 in [0, 1]."
_SUPPORTED_SHAPES = "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"


def to_host(array: Any, label: str) -> np.ndarray:
    """Any array-like (NumPy, CuPy, DLPack or __array__ producer) as a NumPy array."""
    if isinstance(array, np.ndarray):
        return array
    try:
        if hasattr(array, "__cuda_array_interface__") and callable(getattr(array, "get", None)):
            return np.asarray(array.get())  # CuPy: copy device -> host
        if (
            hasattr(array, "__dlpack__")
            and not hasattr(array, "__array__")
            and not hasattr(array, "__array_interface__")
        ):
            return np.from_dlpack(array)
        return np.asarray(array)
    except (TypeError, ValueError, RuntimeError, BufferError, AttributeError) as error:
        raise InputError(
            f"{label}: cannot be read as an array ({type(array).__name__}: {error_reason(error)})"
        ) from error


def to_float_image(array: Any, *, name: str = "image") -> np.ndarray:
    """Validate an image array given to the API and return it as float RGB in [0, 1].

    Parameters
    ----------
    array : array_like, shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        uint8 (0..255), uint16 (0..65535) or float16/32/64 in [0, 1]. NumPy arrays, CuPy
        arrays (copied to the host), DLPack and ``__array__`` producers are accepted.
        Greyscale is repeated into three channels; a fourth channel is alpha and is
        composited over white (with a :class:`~gpuanalogy.errors.Notice` if anything was
        transparent).
    name : str
        What to call the array in messages.

    Returns
    -------
    image : ndarray, shape (H, W, 3), dtype float32
        Values in [0, 1]; a new array, never a view of `array`.

    Raises
    ------
    InputError
        Unsupported dtype, shape, a side shorter than :data:`MIN_SIDE`, more than
        :data:`MAX_PIXELS` pixels, NaN or infinite values, or floats outside [0, 1]
        (beyond a rounding tolerance of about 1e-3).

    Examples
    --------
    >>> import numpy as np
    >>> to_float_image(np.full((32, 40), 255, np.uint8)).shape
    (32, 40, 3)
    """
    label = printable(str(name))
    data = to_host(array, label)
    dtype = data.dtype

    if dtype.kind == "u" and dtype.itemsize in (1, 2):
        scale = 255.0 if dtype.itemsize == 1 else 65535.0
    elif dtype.kind == "f":
        scale = 1.0
    else:
        raise InputError(f"{label}: dtype={dtype} is not supported. {_SUPPORTED_DTYPES}")

    shape = tuple(int(n) for n in data.shape)
    if data.ndim == 3 and shape[0] in (1, 3, 4) and min(shape[1:]) > 4:
        raise InputError(
            f"{label}: shape {shape} looks channels-first; {_SUPPORTED_SHAPES} "
            "(use array.transpose(1, 2, 0))"
        )
    if data.ndim not in (2, 3) or (data.ndim == 3 and shape[2] not in (1, 3, 4)):
        raise InputError(f"{label}: shape {shape} is not an image; {_SUPPORTED_SHAPES}")
    check_size(label, shape[1], shape[0], shape=shape)

    if dtype.kind == "f":
        _check_float_values(data, label)
        values = np.clip(data.astype(np.float32), 0.0, 1.0)  # removes the rounding slack
    else:
        values = data.astype(np.float32) / np.float32(scale)

    if values.ndim == 2:
        values = values[:, :, None]
    channels = values.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(values, 3, axis=2))
    if channels == 4:
        alpha = values[:, :, 3:4]
        rgb = values[:, :, :3]
        if alpha.min(initial=1.0) < 1.0:
            warnings.warn(f"{label}: alpha channel composited over white", Notice, stacklevel=2)
            rgb = np.clip(rgb * alpha + (1.0 - alpha), 0.0, 1.0)
        return np.ascontiguousarray(rgb, dtype=np.float32)
    return np.ascontiguousarray(values, dtype=np.float32)


def check_size(label: str, width: int, height: int, *,
               shape: tuple[int, ...] | None = None, max_pixels: int | None = None) -> None:
    """Refuse an image with a side shorter than :data:`MIN_SIDE` or more than
    :data:`MAX_PIXELS` pixels: arrays given to the API, and files before they are decoded.
    ``shape``, an array's, is named in the message; ``max_pixels`` is a lower limit of the
    caller's (a server's)."""
    size = f"{width}x{height} pixels" + ("" if shape is None else f" (shape {shape})")
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{label}: {size} is too small; both sides need at least {MIN_SIDE} "
                         f"pixels")
    limit, name = ((MAX_PIXELS, "MAX_PIXELS") if max_pixels is None
                   else (min(max_pixels, MAX_PIXELS), "max_pixels"))
    if width * height > limit:
        raise InputError(f"{label}: {width}x{height} is {width * height:,} pixels, more than the "
                         f"limit of {limit:,} ({name}); downscale the image first")


def _check_float_values(data: np.ndarray, label: str) -> None:
    """Refuse NaN, infinity and values outside [0, 1] beyond rounding slack."""
    per_pixel = (lambda mask: mask.any(axis=2) if mask.ndim == 3 else mask)
    nan = per_pixel(np.isnan(data))
    if nan.any():
        raise InputError(f"{label}: contains NaN at {int(nan.sum())} pixels")
    inf = per_pixel(np.isinf(data))
    if inf.any():
        raise InputError(f"{label}: contains infinity at {int(inf.sum())} pixels")
    low, high = float(data.min()), float(data.max())
    tolerance = max(_RANGE_TOLERANCE, 2.0 * float(np.finfo(data.dtype).eps))
    if low < -tolerance or high > 1.0 + tolerance:
        hint = " Divide by 255 first." if 1.0 < high <= 255.0 and low >= -tolerance else ""
        raise InputError(
            f"{label}: float values must lie in [0, 1] but range from {low:.4g} to {high:.4g}.{hint}"
        )



def patch_half(patch_size: int) -> int:
    """Half the side of an odd patch; refuses even or non-positive sizes."""
    if patch_size < 1 or patch_size % 2 == 0:
        raise InputError(f"patch_size={patch_size} is not supported. Try an odd size such as 3 "
                         "or 5.")
    return patch_size // 2


def shape2(name: str, shape: Any) -> tuple[int, int]:
    """``shape`` as a (height, width) pair of positive ints."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"{name}={shape} is not a (height, width) pair of positive sizes.")
    return shape  # type: ignore[return-value]


def check_nnf(nnf: Any, shape_b: tuple[int, ...] | None = None) -> None:
    """An (H, W, 2) field, and with ``shape_b`` one whose values (whole pixels or fractions)
    lie in B: from 0 to ``shape_b - 1`` on each axis (reads the device)."""
    if nnf.ndim != 3 or nnf.shape[2] != 2:
        raise InputError(f"nnf has shape {tuple(nnf.shape)}; expected (H, W, 2).")
    if shape_b is None:
        return
    rows, cols = nnf[:, :, 0], nnf[:, :, 1]
    if (float(rows.min()) < 0 or float(rows.max()) > shape_b[0] - 1 or float(cols.min()) < 0
            or float(cols.max()) > shape_b[1] - 1):
        raise InputError(f"nnf points outside B, whose size is {tuple(shape_b[:2])}.")


def check_warp(source: Any, nnf: Any, patch_size: int) -> int:
    """The arguments of an average-voting warp: a source map (H_B, W_B, C), a field
    (H_A, W_A, 2) whose values lie in it and an odd patch side. Returns half the side."""
    check_nnf(nnf)
    half = patch_half(patch_size)
    if source.ndim != 3:
        raise InputError(f"source has shape {tuple(source.shape)}; expected (H, W, C).")
    check_nnf(nnf, source.shape)
    return half


def check_labels(labels: Any, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> None:
    """Region labels (``gpuanalogy.regions.Labels``) of a search or vote from A to B: None, or
    label grids of A's shape (or empty: A unlabelled) and of B's."""
    if labels is None:
        return
    shape_p, shape_q = tuple(labels.labels_p.shape), tuple(labels.labels_q.shape)
    if shape_q != tuple(shape_b) or shape_p not in ((0, 0), tuple(shape_a)):
        raise InputError(f"region labels of shapes {shape_p} and {shape_q} do not fit A "
                         f"{tuple(shape_a)} and B {tuple(shape_b)}")
