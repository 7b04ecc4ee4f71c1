"""Reading, validating and writing images, with one-line errors and atomic writes.

Everything that enters the package from a file or from a caller's array passes through
:func:`read_image` or :func:`to_float_image`; everything written to disk goes through
:func:`atomic_path`, so a crash or a full disk never leaves a half-written file under the
final name.

Notices that do not stop the run (an alpha channel dropped, an animation reduced to its
first frame) go through :mod:`warnings` as :class:`UserWarning`, with the same
"``NAME: what happened``" shape as the errors, so callers can silence or log them.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import unicodedata
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

__all__ = [
    "MIN_SIDE",
    "MAX_PIXELS",
    "read_image",
    "to_float_image",
    "write_image",
    "atomic_path",
    "write_json",
    "write_npy",
    "check_output_dir",
    "resize_image",
    "sha256_file",
    "fsync_folder",
    "printable",
    "error_reason",
]

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

# Errors Pillow's decoders raise on damaged data (truncated streams, bad chunks, bad EXIF).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError)


def printable(text: str) -> str:
    """`text` made safe for a one-line message: line breaks and control characters escaped."""
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Zl", "Zp")
        else char
        for char in text
    )


def error_reason(error: BaseException) -> str:
    """A one-line description of an exception, for the end of a message."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = " ".join(str(error).split())
    return text or type(error).__name__


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike[str], *, name: str | None = None) -> np.ndarray:
    """Read an image file as RGB.

    Parameters
    ----------
    path : str or os.PathLike
        Any file Pillow can decode (PNG, JPEG, TIFF, BMP, GIF, WebP, ...).
    name : str, optional
        What to call the image in messages; defaults to `path` as given.

    Returns
    -------
    image : ndarray, shape (H, W, 3), dtype uint8
        The image upright (EXIF orientation applied) in RGB.

    Notes
    -----
    - Transparent images (RGBA, LA, PA, palettes with transparency) are composited over
      white, with a :class:`UserWarning` "``NAME: alpha channel composited over white``"
      when any pixel is not fully opaque.
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
        larger than :data:`MAX_PIXELS`, or has a side shorter than :data:`MIN_SIDE`.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> folder = tempfile.mkdtemp()
    >>> Image.new("L", (40, 50), 128).save(os.path.join(folder, "a.png"))
    >>> read_image(os.path.join(folder, "a.png")).shape
    (50, 40, 3)
    """
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
                raise InputError(
                    f"{label}: image is too large to decode safely ({error_reason(error)})"
                ) from error
            except _DECODE_ERRORS as error:
                raise InputError(f"{label}: cannot read image header: {error_reason(error)}") from error

        with image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputError(
                    f"{label}: {width}x{height} is {width * height:,} pixels, more than the "
                    f"limit of {MAX_PIXELS:,} (MAX_PIXELS); downscale the image first"
                )
            if min(width, height) < MIN_SIDE:
                raise InputError(
                    f"{label}: {width}x{height} pixels is too small; "
                    f"both sides need at least {MIN_SIDE} pixels"
                )
            if getattr(image, "is_animated", False):
                warnings.warn(f"{label}: animated image, using its first frame", UserWarning, stacklevel=2)
            try:
                image.load()  # force the full decode here, where damage can be reported
                upright = ImageOps.exif_transpose(image)
            except _DECODE_ERRORS as error:
                raise InputError(
                    f"{label}: cannot decode image data (file truncated or corrupt): {error_reason(error)}"
                ) from error
            except Image.DecompressionBombError as error:
                raise InputError(
                    f"{label}: image is too large to decode safely ({error_reason(error)})"
                ) from error
    return _pil_to_rgb(upright, label)


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
    warnings.warn(f"{label}: alpha channel composited over white", UserWarning, stacklevel=3)
    a = alpha[:, :, None].astype(np.float32) / 255.0
    rgb = rgba[:, :, :3].astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Validating arrays
# --------------------------------------------------------------------------------------

_SUPPORTED_DTYPES = "Try uint8, uint16 or float32 in [0, 1]."
_SUPPORTED_SHAPES = "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"


def _to_host(array: Any, label: str) -> np.ndarray:
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
        composited over white (with a :class:`UserWarning` if anything was transparent).
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
    data = _to_host(array, label)
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
    height, width = shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InputError(
            f"{label}: {width}x{height} pixels (shape {shape}) is too small; "
            f"both sides need at least {MIN_SIDE} pixels"
        )
    if height * width > MAX_PIXELS:
        raise InputError(
            f"{label}: {width}x{height} is {height * width:,} pixels, more than the "
            f"limit of {MAX_PIXELS:,} (MAX_PIXELS)"
        )

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
            warnings.warn(f"{label}: alpha channel composited over white", UserWarning, stacklevel=2)
            rgb = np.clip(rgb * alpha + (1.0 - alpha), 0.0, 1.0)
        return np.ascontiguousarray(rgb, dtype=np.float32)
    return np.ascontiguousarray(values, dtype=np.float32)


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


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _cannot_write(folder: Path, error: OSError) -> InputError:
    return InputError(f"cannot write to {printable(str(folder))}: {error_reason(error)}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` only if the block succeeds.

    The temporary file (``.NAME.<random>.tmp`` in the same folder, created empty with the
    usual permissions) is flushed to disk and then renamed over `path` with
    :func:`os.replace`, so readers see either the old file or the complete new one. If the
    block raises, the temporary file is removed and the exception propagates unchanged.

    Raises
    ------
    InputError
        The folder does not exist or cannot be written to, or `path` is a folder.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> open(target).read()
    'hello'
    """
    final = Path(os.fspath(path))
    folder = final.parent
    if final.is_dir():
        raise InputError(f"{printable(str(final))}: is a folder, cannot write a file there")
    temp = _create_temp(folder, final.name)
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_folder(folder)


def _create_temp(folder: Path, name: str) -> Path:
    """Create an empty, new file ``.name.<random>.tmp`` in `folder` (mode 0o666 & ~umask)."""
    for _ in range(100):
        temp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as error:
            raise _cannot_write(folder, error) from error
        os.close(fd)
        return temp
    raise InputError(f"cannot write to {printable(str(folder))}: no free temporary file name")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make the rename durable where the platform allows (POSIX); best effort elsewhere."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    array = _to_host(image, label)
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


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented UTF-8 JSON, atomically.

    NumPy scalars and arrays and paths are converted; NaN and infinity are refused
    (``ValueError``) because they are not JSON. Other unserialisable objects raise
    ``TypeError`` before anything is written.
    """
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    with atomic_path(path) as temp, open(temp, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


def write_npy(path: str | os.PathLike[str], array: Any) -> None:
    """Write `array` in NumPy ``.npy`` format (no pickles), atomically, to exactly `path`.

    `path` is used as given (no ``.npy`` is appended). CuPy arrays are copied to the host.
    Object arrays raise ``ValueError`` (they would need pickles); nothing is written then.
    """
    data = _to_host(array, printable(os.fspath(path)))
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.save(handle, data, allow_pickle=False)


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder if needed and check that files can be written in it.

    Returns
    -------
    folder : Path
        `path` as a :class:`~pathlib.Path`.

    Raises
    ------
    InputError
        "cannot write to OUTDIR: <reason>" when it cannot be created or written to, or
        when it exists and is not a folder.
    """
    folder = Path(os.fspath(path))
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write to {printable(str(folder))}: it exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_write(folder, error) from error
    probe = _create_temp(folder, "gpuanalogy-write-test")
    with contextlib.suppress(OSError):
        probe.unlink()
    return folder


# --------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------


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


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
