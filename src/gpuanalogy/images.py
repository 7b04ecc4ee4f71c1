"""Images in and out: decoding any file Pillow reads to RGB, encoding PNG/JPEG, resizing.

Notices that do not stop the run (an alpha channel dropped, an animation reduced to its
first frame) go through :mod:`warnings` as :class:`~gpuanalogy.errors.Notice`, with the same
"``NAME: what happened``" shape as the errors, so callers can silence or log them.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .checks import check_size, to_host
from .errors import InputError, Notice, error_reason, printable
from .files import atomic_path

__all__ = ["read_image", "read_labels", "write_image", "resize_image"]

# Errors Pillow's decoders raise on damaged data (truncated streams, bad chunks, bad EXIF).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError)


def read_image(path: str | os.PathLike[str], *, name: str | None = None,
               max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as RGB.

    Parameters
    ----------
    path : str or os.PathLike
        Any file Pillow can decode (PNG, JPEG, TIFF, BMP, GIF, WebP, ...).
    name : str, optional
        What to call the image in messages; defaults to `path` as given.
    max_pixels : int, optional
        A lower pixel limit than :data:`gpuanalogy.checks.MAX_PIXELS` (a server's), checked in
        the same way: on the header's size, before any pixel data is decoded.

    Returns
    -------
    image : ndarray, shape (H, W, 3), dtype uint8
        The image upright (EXIF orientation applied) in RGB.

    Notes
    -----
    - Transparent images (RGBA, LA, PA, palettes with transparency) are composited over
      white, with a :class:`~gpuanalogy.errors.Notice` "``NAME: alpha channel composited
      over white``" when any pixel is not fully opaque.
    - Greyscale is repeated into three channels; 1-bit becomes 0 / 255.
    - 16-bit greyscale is scaled to 8 bits (65535 -> 255, rounding), not clipped; 16-bit
      RGB(A) is reduced to 8 bits by Pillow's decoder (high byte). Mode "I"
      (32-bit integer) is read as 16-bit data and must lie in 0..65535.
    - Mode "F" (32-bit float) is read as [0, 1] when its maximum is at most 1, else as
      0..255; other values are refused.
    - CMYK, YCbCr, HSV and palette images are converted to RGB by Pillow. ICC profiles are
      not applied.
    - Of an animation only the first frame is read, with a warning.

    Raises
    ------
    InputError
        The file is missing, a directory, unreadable, not an image, truncated or corrupt,
        larger than :data:`gpuanalogy.checks.MAX_PIXELS` (or ``max_pixels``), or has a side
        shorter than :data:`gpuanalogy.checks.MIN_SIDE` (:func:`gpuanalogy.checks.check_size`).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> folder = tempfile.mkdtemp()
    >>> Image.new("L", (40, 50), 128).save(os.path.join(folder, "a.png"))
    >>> read_image(os.path.join(folder, "a.png")).shape
    (50, 40, 3)
    """
    return _pil_to_rgb(*_decoded(path, name, max_pixels))


def read_labels(path: str | os.PathLike[str], *, name: str | None = None,
                max_pixels: int | None = None) -> np.ndarray:
    """Read a label image of region masks (``gpuanalogy.regions``) as its values, unscaled.

    Parameters
    ----------
    path : str or os.PathLike
        An image file Pillow can decode, or a NumPy ``.npy`` file of such an array.
    name : str, optional
        What to call the file in messages; defaults to `path` as given.
    max_pixels : int, optional
        A lower pixel limit than :data:`gpuanalogy.checks.MAX_PIXELS`, as for
        :func:`read_image`.

    Returns
    -------
    ndarray, shape (H, W) of integers, or (H, W, 3) uint8
        Greyscale and integer images (modes 1, L, I;16, I) as their integers, colour and
        palette images as RGB colours; fully transparent pixels are 0 (black): unlabelled.

    Raises
    ------
    InputError
        As :func:`read_image`, or a ``.npy`` file holding no such array.
    """
    label = printable(name if name is not None else os.fspath(path))
    if os.fspath(path).endswith(".npy"):
        return _read_label_array(path, label, max_pixels)
    image, label = _decoded(path, name, max_pixels)
    if image.mode in ("1", "L", "I") or image.mode.startswith("I;16"):
        return np.array(image).astype(np.int64 if image.mode == "I" else np.int32)
    if image.mode == "LA":
        grey, alpha = np.array(image).transpose(2, 0, 1)
        return np.where(alpha == 0, 0, grey).astype(np.int32)
    rgba = np.array(image.convert("RGBA"), dtype=np.uint8)
    return np.where(rgba[..., 3:] == 0, 0, rgba[..., :3]).astype(np.uint8)


def _read_label_array(path: str | os.PathLike[str], label: str, max_pixels: int | None
                      ) -> np.ndarray:
    """A ``.npy`` label array, its header's shape and type checked (and its size, as an
    image's) before any data is read."""
    try:
        with open(path, "rb") as stream:
            major, _ = np.lib.format.read_magic(stream)
            header = (np.lib.format.read_array_header_1_0 if major == 1
                      else np.lib.format.read_array_header_2_0)
            shape, _, dtype = header(stream)
            if not (len(shape) == 2 and dtype.kind in "iu"
                    or len(shape) == 3 and shape[2] == 3 and dtype == np.uint8):
                raise InputError(f"{label}: labels are (H, W) integers or (H, W, 3) uint8 "
                                 f"colours; got {shape} {dtype}")
            check_size(label, shape[1], shape[0], shape=shape, max_pixels=max_pixels)
            stream.seek(0)
            return np.load(stream, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{label}: cannot read labels: {error_reason(error)}") from error


def _decoded(path: str | os.PathLike[str], name: str | None, max_pixels: int | None = None
             ) -> tuple[Image.Image, str]:
    """An image file decoded and upright (EXIF orientation applied), with its name for
    messages; every refusal of :func:`read_image` is made here (``max_pixels`` as there)."""
    file = Path(os.fspath(path))
    label = printable(name if name is not None else os.fspath(path))

    if not file.exists():
        raise InputError(f"{label}: no such file")
    if file.is_dir():
        raise InputError(f"{label}: is a folder, not an image file")
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed below, Pillow reads lazily
    except OSError as error:
        raise InputError(f"{label}: cannot open: {error_reason(error)}") from error

    with handle:
        with warnings.catch_warnings():
            # We apply our own, clearer limit below; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image = Image.open(handle)
            except UnidentifiedImageError as error:
                raise InputError(f"{label}: not an image file (unknown or damaged format)") from error
            except Image.DecompressionBombError as error:
                raise _too_large(label, error) from error
            except _DECODE_ERRORS as error:
                raise InputError(f"{label}: cannot read image header: {error_reason(error)}") from error

        with image:
            check_size(label, *image.size, max_pixels=max_pixels)
            if getattr(image, "is_animated", False):
                warnings.warn(f"{label}: animated image, using its first frame", Notice,
                              stacklevel=2)
            try:
                image.load()  # force the full decode here, where damage can be reported
                upright = ImageOps.exif_transpose(image)
            except _DECODE_ERRORS as error:
                raise InputError(
                    f"{label}: cannot decode image data (file truncated or corrupt): {error_reason(error)}"
                ) from error
            except Image.DecompressionBombError as error:
                raise _too_large(label, error) from error
    return upright, label


def _too_large(label: str, error: Exception) -> InputError:
    """Pillow's refusal of a decompression bomb, as our one line."""
    return InputError(f"{label}: image is too large to decode safely ({error_reason(error)})")


def _pil_to_rgb(image: Image.Image, label: str) -> np.ndarray:
    """A decoded Pillow image as (H, W, 3) uint8 RGB, following the rules in read_image."""
    mode = image.mode
    if mode == "RGB":
        return np.array(image, dtype=np.uint8)
    if mode in ("1", "L"):
        return _grey_to_rgb(np.array(image.convert("L"), dtype=np.uint8))
    if mode.startswith("I;16") or mode == "I":
        values = np.array(image)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise InputError(
                f"{label}: 32-bit integer pixels range from {values.min()} to {values.max()}; "
                "only 0..65535 (16-bit data) is supported"
            )
        scaled = (values.astype(np.uint32) * 255 + 32767) // 65535  # round(v / 257)
        return _grey_to_rgb(scaled.astype(np.uint8))
    if mode == "F":
        values = np.array(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise InputError(f"{label}: floating-point pixels contain NaN or infinity")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < 0 or high > 255:
            raise InputError(
                f"{label}: floating-point pixels range from {low:.4g} to {high:.4g}; "
                "only [0, 1] or [0, 255] is supported"
            )
        scale = 255.0 if high <= 1.0 else 1.0
        return _grey_to_rgb(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
    if image.has_transparency_data:
        try:
            rgba = np.array(image.convert("RGBA"), dtype=np.uint8)
        except ValueError as error:
            raise InputError(f"{label}: colour mode {mode!r} is not supported") from error
        return _composite_uint8(rgba, label)
    try:
        return np.array(image.convert("RGB"), dtype=np.uint8)
    except ValueError as error:
        raise InputError(f"{label}: colour mode {mode!r} is not supported") from error


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _composite_uint8(rgba: np.ndarray, label: str) -> np.ndarray:
    """RGBA uint8 over a white background, warning when anything was transparent."""
    alpha = rgba[:, :, 3]
    if alpha.min(initial=255) == 255:
        return np.ascontiguousarray(rgba[:, :, :3])
    warnings.warn(f"{label}: alpha channel composited over white", Notice, stacklevel=3)
    a = alpha[:, :, None].astype(np.float32) / 255.0
    rgb = rgba[:, :, :3].astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)



_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a uint8 image atomically as PNG or JPEG, chosen by the file extension.

    Parameters
    ----------
    path : str or os.PathLike
        Ends in ``.png``, ``.jpg`` or ``.jpeg`` (any case). JPEGs are written at quality 95.
    image : ndarray, shape (H, W, 3), (H, W, 1) or (H, W), dtype uint8
        NumPy, or CuPy (copied to the host).

    Raises
    ------
    InputError
        Unknown extension, wrong dtype or shape, an unwritable folder, or an OS error while
        writing (disk full, ...). No partial file is left behind in any case.
    """
    final = Path(os.fspath(path))
    label = printable(str(final))
    fmt = _FORMATS.get(final.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{label}: unknown image extension {final.suffix!r}; use .png, .jpg or .jpeg"
        )
    array = to_host(image, label)
    if array.dtype != np.uint8:
        raise InputError(f"{label}: image to write has dtype={array.dtype}; expected uint8")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or 0 in array.shape:
        raise InputError(
            f"{label}: image to write has shape {array.shape}; expected (H, W, 3) or (H, W)"
        )
    picture = Image.fromarray(np.ascontiguousarray(array))
    options: dict[str, Any] = {"quality": 95} if fmt == "JPEG" else {}
    try:
        with atomic_path(final) as temp, open(temp, "wb") as handle:
            picture.save(handle, format=fmt, **options)
    except InputError:
        raise
    except OSError as error:
        raise InputError(f"{label}: could not write image: {error_reason(error)}") from error



def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize with Pillow's bicubic filter to ``shape = (height, width)``.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C), dtype uint8 or float32
        float32 is resized channel by channel in Pillow's mode "F" and is not clipped:
        bicubic overshoot can leave values slightly outside the input's range.
    shape : (int, int)
        Target height and width, each at least 1.

    Returns
    -------
    resized : ndarray, shape (height, width[, C]), same dtype as `image`
    """
    array = np.asarray(image)
    if array.dtype not in (np.uint8, np.float32):
        raise InputError(f"resize_image: dtype={array.dtype} is not supported. Try uint8 or float32.")
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise InputError(f"resize_image: shape {array.shape} is not an image; expected (H, W) or (H, W, C)")
    height, width = (int(n) for n in shape)
    if height < 1 or width < 1:
        raise InputError(f"resize_image: target shape {tuple(shape)} must be positive")
    if (height, width) == array.shape[:2]:
        return array.copy()
    size = (width, height)
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        return np.array(Image.fromarray(np.ascontiguousarray(array)).resize(size, Image.Resampling.BICUBIC))
    planes = array[:, :, None] if array.ndim == 2 else array
    out = np.empty((height, width, planes.shape[2]), dtype=array.dtype)
    for c in range(planes.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(planes[:, :, c]))  # mode "L" or "F"
        out[:, :, c] = np.asarray(plane.resize(size, Image.Resampling.BICUBIC))
    return out[:, :, 0] if array.ndim == 2 else out

