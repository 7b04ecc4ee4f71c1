"""Tests for gpuanalogy.images and gpuanalogy.checks.to_float_image: every fixture image is
built here, in tmp_path, with Pillow."""
from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpuanalogy import checks, images
from gpuanalogy.checks import MIN_SIDE, to_float_image
from gpuanalogy.errors import InputError
from gpuanalogy.files import check_output_dir, write_npy
from gpuanalogy.images import read_image, resize_image, write_image

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def assert_one_line_error(excinfo: pytest.ExceptionInfo, *parts: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "\r" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


def gradient_rgb(height: int = 40, width: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 5 % 256, y * 6 % 256, (x + y) * 3 % 256], axis=2).astype(np.uint8)


def leftover_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------
# read_image: the kinds of image files
# --------------------------------------------------------------------------------------


def test_rgb_png_round_trip(tmp_path):
    rgb = gradient_rgb()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (40, 48, 3)
    np.testing.assert_array_equal(out, rgb)
    out[0, 0] = 0  # the result is writable


def test_rgba_is_composited_over_white_with_a_warning(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200  # red-ish everywhere
    rgba[:, :20, 3] = 255  # left half opaque
    rgba[:, 20:30, 3] = 0  # fully transparent
    rgba[:, 30:, 3] = 128  # half transparent
    path = tmp_path / "A.png"
    Image.fromarray(rgba).save(path)
    with pytest.warns(UserWarning, match="alpha channel composited over white") as record:
        out = read_image(path)
    assert str(record[0].message) == f"{path}: alpha channel composited over white"
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[0, 25], [255, 255, 255])
    a = 128 / 255
    expected = np.rint([200 * a + 255 * (1 - a), 255 * (1 - a), 255 * (1 - a)])
    np.testing.assert_allclose(out[0, 35], expected, atol=1)


def test_opaque_rgba_gives_no_warning(tmp_path):
    rgba = np.dstack([gradient_rgb(), np.full((40, 48), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = read_image(tmp_path / "opaque.png")
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_la_is_composited(tmp_path):
    grey = np.full((40, 40), 100, np.uint8)
    alpha = np.full((40, 40), 255, np.uint8)
    alpha[:, 20:] = 0
    Image.merge("LA", [Image.fromarray(grey), Image.fromarray(alpha)]).save(tmp_path / "la.png")
    with pytest.warns(UserWarning, match="la.png: alpha channel composited over white"):
        out = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(out[0, 30], [255, 255, 255])


def test_greyscale_is_repeated(tmp_path):
    grey = gradient_rgb()[..., 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (40, 48, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.zeros((40, 40), np.uint16)
    values[0, :5] = [0, 257, 1000, 32896, 65535]
    values[1:] = np.linspace(0, 65535, 40 * 39).reshape(39, 40).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    image.save(tmp_path / "deep.png")
    out = read_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(out[0, :5, 0], [0, 1, 4, 128, 255])
    np.testing.assert_array_equal(out[1:, :, 1], np.rint(values[1:] / 257).astype(np.uint8))


def test_32_bit_integer_image_is_read_as_16_bit(tmp_path):
    values = np.full((40, 40), 65535, np.int32)
    values[:, :20] = 32896
    Image.fromarray(values).save(tmp_path / "int.tif")
    out = read_image(tmp_path / "int.tif")
    assert out[0, 0, 0] == 128 and out[0, 30, 0] == 255


def test_32_bit_integer_image_out_of_16_bit_range_is_refused(tmp_path):
    Image.fromarray(np.full((40, 40), 70000, np.int32)).save(tmp_path / "big.tif")
    with pytest.raises(InputError) as excinfo:
        read_image(tmp_path / "big.tif")
    assert_one_line_error(excinfo, "big.tif", "70000", "0..65535")


@pytest.mark.parametrize(("fill", "expected"), [(0.5, 128), (1.0, 255), (200.0, 200)])
def test_float_image_is_read_in_unit_or_byte_range(tmp_path, fill, expected):
    Image.fromarray(np.full((40, 40), fill, np.float32)).save(tmp_path / "f.tif")
    assert read_image(tmp_path / "f.tif")[0, 0, 0] == expected


def test_float_image_out_of_range_is_refused(tmp_path):
    Image.fromarray(np.full((40, 40), -3.0, np.float32)).save(tmp_path / "neg.tif")
    with pytest.raises(InputError) as excinfo:
        read_image(tmp_path / "neg.tif")
    assert_one_line_error(excinfo, "neg.tif", "-3")


def test_palette_without_transparency(tmp_path):
    rgb = gradient_rgb()
    palette_image = Image.fromarray(rgb).quantize(colors=16)
    assert palette_image.mode == "P"
    palette_image.save(tmp_path / "p.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out, np.array(palette_image.convert("RGB")))


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (40, 40), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0, 0, 0] * 254)
    image.paste(0, (0, 0, 20, 40))  # index 0, made transparent below
    image.save(tmp_path / "pt.png", transparency=0)
    with pytest.warns(UserWarning, match="pt.png: alpha channel composited over white"):
        out = read_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 30], [10, 20, 30])


def test_palette_with_alpha_gif_and_animation_warning(tmp_path):
    frames = [Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("RGB", (40, 40), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="anim.gif: animated image, using its first frame"):
        out = read_image(tmp_path / "anim.gif")
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 50


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as check:
        assert check.mode == "CMYK"
    out = read_image(tmp_path / "cmyk.jpg")
    assert out.shape == (40, 40, 3)
    red, green, blue = out[20, 20].astype(int)
    assert red > 230 and green < 30 and blue < 30


def test_one_bit(tmp_path):
    image = Image.new("1", (40, 40), 0)
    image.paste(1, (0, 0, 20, 40))
    image.save(tmp_path / "bw.png")
    out = read_image(tmp_path / "bw.png")
    assert set(np.unique(out)) == {0, 255}
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 30], [0, 0, 0])


@pytest.mark.parametrize(("orientation", "turns"), [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied(tmp_path, orientation, turns):
    stored = np.zeros((40, 64, 3), np.uint8)  # 64 wide, 40 tall as stored
    stored[:20, :32] = [255, 0, 0]  # red top-left quarter
    stored[20:, 32:] = [0, 0, 255]  # blue bottom-right quarter
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rot{orientation}.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    out = read_image(path)
    expected = np.rot90(stored, k=turns)  # orientation 6 = turn clockwise to display
    assert out.shape == expected.shape
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 4


# --------------------------------------------------------------------------------------
# read_image: errors
# --------------------------------------------------------------------------------------


def _noise_file(path: Path, fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, format=fmt)
    return path.read_bytes()


@pytest.mark.parametrize(("suffix", "fmt"), [(".png", "PNG"), (".jpg", "JPEG")])
def test_truncated_file(tmp_path, suffix, fmt):
    path = tmp_path / f"cut{suffix}"
    data = _noise_file(path, fmt)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, str(path), "truncated or corrupt")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n" * 10)
    with pytest.raises(InputError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, str(path), "not an image file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InputError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, str(path), "not an image file")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(InputError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, str(path), "no such file")


def test_directory(tmp_path):
    with pytest.raises(InputError) as excinfo:
        read_image(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path), "is a folder")


def test_too_small(tmp_path):
    path = tmp_path / "tiny.png"
    Image.new("RGB", (10, 10)).save(path)
    with pytest.raises(InputError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, str(path), "10x10", "too small", str(MIN_SIDE))


def test_too_small_on_one_side_only(tmp_path):
    Image.new("RGB", (MIN_SIDE - 1, 500)).save(tmp_path / "thin.png")
    with pytest.raises(InputError, match="too small"):
        read_image(tmp_path / "thin.png")
    Image.new("RGB", (MIN_SIDE, MIN_SIDE)).save(tmp_path / "ok.png")
    assert read_image(tmp_path / "ok.png").shape == (MIN_SIDE, MIN_SIDE, 3)


def test_pixel_limit(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(checks, "MAX_PIXELS", 1000)
    with pytest.raises(InputError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, str(path), "40x40", "1,600 pixels", "MAX_PIXELS")


def test_a_callers_lower_pixel_limit_is_checked_the_same_way(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(path)
    with pytest.raises(InputError) as excinfo:
        read_image(path, name="big.png", max_pixels=1000)
    assert_one_line_error(excinfo, "big.png", "1,600 pixels", "limit of 1,000 (max_pixels)")
    assert read_image(path, max_pixels=1600).shape == (40, 40, 3)
    monkeypatch.setattr(checks, "MAX_PIXELS", 1000)   # never above the library's own limit
    with pytest.raises(InputError, match="limit of 1,000"):
        read_image(path, max_pixels=5000)


def test_pillow_decompression_bomb_error_is_an_input_error(tmp_path, monkeypatch):
    path = tmp_path / "bomb2.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses above 2x this
    with pytest.raises(InputError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, str(path), "too large")


def test_name_replaces_the_path_in_messages(tmp_path):
    path = tmp_path / "tiny.png"
    Image.new("RGB", (10, 10)).save(path)
    with pytest.raises(InputError) as excinfo:
        read_image(path, name="style image")
    message = assert_one_line_error(excinfo, "style image", "too small")
    assert str(tmp_path) not in message


def test_file_name_with_newline_still_gives_one_line(tmp_path):
    path = tmp_path / "odd\nname.png"
    path.write_text("x")
    with pytest.raises(InputError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, "odd\\nname.png", "not an image file")


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root reads files without permission")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.png"
    Image.new("RGB", (40, 40)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(InputError) as excinfo:
            read_image(path)
        assert_one_line_error(excinfo, str(path), "Permission denied")
    finally:
        path.chmod(0o600)


# --------------------------------------------------------------------------------------
# to_float_image
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "top"), [(np.uint8, 255), (np.uint16, 65535), (np.float16, 1), (np.float32, 1), (np.float64, 1)]
)
def test_to_float_image_dtypes(dtype, top):
    array = np.zeros((32, 40, 3), dtype)
    array[0, 0] = top
    out = to_float_image(array)
    assert out.dtype == np.float32 and out.shape == (32, 40, 3)
    assert out[0, 0, 0] == 1.0 and out[1, 1, 0] == 0.0
    assert out.flags.c_contiguous


def test_to_float_image_returns_a_copy():
    array = np.full((32, 32, 3), 0.5, np.float32)
    out = to_float_image(array)
    out[:] = 0
    assert array[0, 0, 0] == 0.5


@pytest.mark.parametrize("shape", [(32, 33), (32, 33, 1)])
def test_to_float_image_grey(shape):
    array = np.random.default_rng(1).random(shape)
    out = to_float_image(array)
    assert out.shape == (32, 33, 3)
    np.testing.assert_allclose(out[..., 2], array.reshape(32, 33), rtol=1e-6)


def test_to_float_image_alpha():
    array = np.zeros((32, 32, 4), np.uint8)
    array[..., 3] = 255
    array[:, 16:, 3] = 0
    with pytest.warns(UserWarning, match="^b: alpha channel composited over white$"):
        out = to_float_image(array, name="b")
    assert out[0, 0, 0] == 0.0 and out[0, 20, 0] == 1.0


def test_to_float_image_nan_counts_pixels():
    array = np.full((32, 32, 3), 0.5)
    array[0, 0, :] = np.nan  # one pixel, three channels
    array[5, 5, 1] = np.nan
    array[6, 6, 2] = np.nan
    with pytest.raises(InputError) as excinfo:
        to_float_image(array, name="a")
    assert str(excinfo.value) == "a: contains NaN at 3 pixels"


def test_to_float_image_infinity():
    array = np.full((32, 32), 0.5, np.float32)
    array[3, 3] = np.inf
    with pytest.raises(InputError) as excinfo:
        to_float_image(array, name="a")
    assert_one_line_error(excinfo, "a: contains infinity at 1 pixels")


def test_to_float_image_range():
    with pytest.raises(InputError) as excinfo:
        to_float_image(np.full((32, 32, 3), 200.0), name="content")
    assert_one_line_error(excinfo, "content", "[0, 1]", "200", "Divide by 255")
    # rounding slack is accepted and clipped
    slack = np.full((32, 32, 3), 1.0005, np.float32)
    slack[0, 0] = -0.0005
    out = to_float_image(slack)
    assert out.max() == 1.0 and out.min() == 0.0


@pytest.mark.parametrize("dtype", [np.bool_, np.int64, np.int8, np.uint32, np.complex64, object])
def test_to_float_image_unsupported_dtype(dtype):
    with pytest.raises(InputError) as excinfo:
        to_float_image(np.zeros((32, 32, 3), dtype), name="a")
    assert_one_line_error(excinfo, "a: dtype=", "is not supported", "Try uint8, uint16 or float32 in [0, 1].")


@pytest.mark.parametrize("shape", [(), (32,), (32, 32, 2), (32, 32, 5), (1, 32, 32, 3)])
def test_to_float_image_bad_shape(shape):
    with pytest.raises(InputError) as excinfo:
        to_float_image(np.zeros(shape, np.uint8), name="a")
    assert_one_line_error(excinfo, "a: shape", str(shape))


def test_to_float_image_channels_first_hint():
    with pytest.raises(InputError) as excinfo:
        to_float_image(np.zeros((3, 64, 64), np.uint8))
    assert_one_line_error(excinfo, "channels-first", "transpose(1, 2, 0)")


def test_to_float_image_too_small():
    with pytest.raises(InputError) as excinfo:
        to_float_image(np.zeros((10, 100, 3), np.uint8), name="a")
    assert_one_line_error(excinfo, "a:", "100x10", "too small")


def test_to_float_image_too_large(monkeypatch):
    monkeypatch.setattr(checks, "MAX_PIXELS", 1000)
    with pytest.raises(InputError, match="MAX_PIXELS"):
        to_float_image(np.zeros((40, 40), np.uint8))


class _ArrayOnly:
    def __init__(self, data):
        self._data = data

    def __array__(self, dtype=None, copy=None):
        return self._data


class _FakeCupy:
    """Looks like a CuPy array: a device interface numpy cannot read, and .get()."""

    __cuda_array_interface__ = {"shape": (32, 32, 3), "typestr": "|u1", "data": (0, False), "version": 3}

    def __init__(self, data):
        self._data = data

    def get(self):
        return self._data


class _DlpackOnly:
    def __init__(self, data):
        self._data = data

    def __dlpack__(self, **kwargs):
        return self._data.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()


@pytest.mark.parametrize("wrapper", [_ArrayOnly, _FakeCupy, _DlpackOnly, lambda a: (a / 255.0).tolist()])
def test_to_float_image_array_producers(wrapper):
    data = np.full((32, 32, 3), 255, np.uint8)
    out = to_float_image(wrapper(data))
    assert out.shape == (32, 32, 3) and out.min() == 1.0


def test_to_float_image_ragged_list():
    with pytest.raises(InputError) as excinfo:
        to_float_image([[1, 2], [3]], name="ragged")
    assert_one_line_error(excinfo, "ragged", "cannot be read as an array")


def test_to_float_image_non_native_byte_order():
    array = np.full((32, 32), 65535, dtype=">u2")
    assert to_float_image(array).min() == 1.0


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def test_write_image_png_round_trip(tmp_path):
    rgb = gradient_rgb()
    write_image(tmp_path / "out.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"), rgb)
    assert leftover_files(tmp_path) == ["out.png"]


def test_write_image_jpeg_and_grey(tmp_path):
    rgb = gradient_rgb()
    write_image(tmp_path / "out.JPG", rgb)
    with Image.open(tmp_path / "out.JPG") as written:
        assert written.format == "JPEG"
    assert np.abs(read_image(tmp_path / "out.JPG").astype(int) - rgb).mean() < 3
    write_image(tmp_path / "grey.png", rgb[..., 0])
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png")[..., 2], rgb[..., 0])


def test_write_image_has_ordinary_permissions(tmp_path):
    write_image(tmp_path / "out.png", gradient_rgb())
    (tmp_path / "plain").write_bytes(b"")
    mode = stat.S_IMODE((tmp_path / "out.png").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_write_image_replaces_existing_file(tmp_path):
    write_image(tmp_path / "out.png", np.zeros((40, 40, 3), np.uint8))
    write_image(tmp_path / "out.png", np.full((40, 40, 3), 9, np.uint8))
    assert read_image(tmp_path / "out.png")[0, 0, 0] == 9
    assert leftover_files(tmp_path) == ["out.png"]


def _failing_save(error: BaseException):
    def save(self, fp, format=None, **params):  # noqa: A002 - Pillow's own name
        fp.write(b"\x89PNG partial")
        raise error

    return save


@pytest.mark.parametrize(
    ("error", "expected"), [(OSError(28, "No space left on device"), InputError), (RuntimeError("boom"), RuntimeError)]
)
def test_write_image_failure_leaves_nothing(tmp_path, monkeypatch, error, expected):
    monkeypatch.setattr(Image.Image, "save", _failing_save(error))
    with pytest.raises(expected) as excinfo:
        write_image(tmp_path / "out.png", gradient_rgb())
    if expected is InputError:
        assert_one_line_error(excinfo, "out.png", "No space left on device")
    assert leftover_files(tmp_path) == []


def test_write_image_failure_keeps_the_old_file(tmp_path, monkeypatch):
    write_image(tmp_path / "out.png", np.full((40, 40, 3), 7, np.uint8))
    before = (tmp_path / "out.png").read_bytes()
    monkeypatch.setattr(Image.Image, "save", _failing_save(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        write_image(tmp_path / "out.png", gradient_rgb())
    assert (tmp_path / "out.png").read_bytes() == before
    assert leftover_files(tmp_path) == ["out.png"]


def test_write_image_unwritable_folder(tmp_path):
    (tmp_path / "somefile").write_text("x")
    target = tmp_path / "somefile" / "sub" / "out.png"
    with pytest.raises(InputError) as excinfo:
        write_image(target, gradient_rgb())
    assert_one_line_error(excinfo, "cannot write to", str(target.parent))


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process may read but not write (skipped where root writes anyway)."""
    if IS_ROOT or os.name != "posix":
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)


def test_write_image_read_only_folder(read_only_folder):
    with pytest.raises(InputError) as excinfo:
        write_image(read_only_folder / "out.png", gradient_rgb())
    assert_one_line_error(excinfo, f"cannot write to {read_only_folder}: Permission denied")


@pytest.mark.parametrize(
    ("name", "image", "problem"),
    [
        ("out.gif", gradient_rgb(), "unknown image extension"),
        ("out.png", gradient_rgb().astype(np.float32), "dtype=float32"),
        ("out.png", np.zeros((40, 40, 4), np.uint8), "shape (40, 40, 4)"),
        ("out.png", np.zeros((0, 40, 3), np.uint8), "shape (0, 40, 3)"),
    ],
)
def test_write_image_bad_arguments(tmp_path, name, image, problem):
    with pytest.raises(InputError) as excinfo:
        write_image(tmp_path / name, image)
    assert_one_line_error(excinfo, name, problem)
    assert leftover_files(tmp_path) == []


# --------------------------------------------------------------------------------------
# resize_image
# --------------------------------------------------------------------------------------


def test_resize_uint8_rgb():
    out = resize_image(gradient_rgb(), (80, 30))
    assert out.shape == (80, 30, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("shape", [(40, 48), (40, 48, 1), (40, 48, 3), (40, 48, 5)])
def test_resize_float32_keeps_constants(shape):
    image = np.full(shape, 0.25, np.float32)
    out = resize_image(image, (33, 70))
    assert out.dtype == np.float32 and out.shape == (33, 70) + shape[2:]
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


def test_resize_float32_matches_uint8_roughly():
    y, x = np.mgrid[0:40, 0:48]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)  # smooth: no clamping
    a = resize_image(rgb, (20, 24)).astype(np.float32) / 255
    b = resize_image(rgb.astype(np.float32) / 255, (20, 24))
    assert np.abs(a - b).max() < 2 / 255


def test_resize_same_shape_is_a_copy():
    image = gradient_rgb()
    out = resize_image(image, image.shape[:2])
    np.testing.assert_array_equal(out, image)
    assert out is not image and not np.shares_memory(out, image)


def test_resize_bad_input():
    with pytest.raises(InputError, match="dtype=int64"):
        resize_image(np.zeros((4, 4), np.int64), (2, 2))
    with pytest.raises(InputError, match="must be positive"):
        resize_image(np.zeros((4, 4), np.uint8), (0, 2))


# The permission tests above are skipped for root (chmod does not stop root); these
# simulate the operating system's refusal so that the messages are checked everywhere.


def _deny(real, folder: Path):
    def guarded(path, *args, **kwargs):
        if Path(os.fspath(path)).parent == folder or Path(os.fspath(path)) == folder:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    return guarded


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    path = tmp_path / "secret.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(images, "open", _deny(open, tmp_path), raising=False)
    with pytest.raises(InputError) as excinfo:
        read_image(path)
    assert str(excinfo.value) == f"{path}: cannot open: Permission denied"


def test_read_only_folder_simulated(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    monkeypatch.setattr(os, "open", _deny(os.open, folder))
    with pytest.raises(InputError) as excinfo:
        check_output_dir(folder)
    assert str(excinfo.value) == f"cannot write to {folder}: Permission denied"
    with pytest.raises(InputError) as excinfo:
        write_image(folder / "out.png", gradient_rgb())
    assert str(excinfo.value) == f"cannot write to {folder}: Permission denied"
    assert leftover_files(folder) == []


def test_writers_accept_cupy_like_arrays(tmp_path):
    rgb = gradient_rgb(32, 32)
    write_image(tmp_path / "out.png", _FakeCupy(rgb))
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"), rgb)
    write_npy(tmp_path / "out.npy", _FakeCupy(rgb))
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), rgb)
