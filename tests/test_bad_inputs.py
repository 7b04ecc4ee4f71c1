"""Bad inputs end in one line naming the input and the problem; odd but valid ones just work.

Through the ``run`` command: unusable files and output folders give exit status 2, one line on
stderr, no traceback (``--debug`` shows one) and no output files. Through the API: arrays of the
wrong dtype, shape or values raise InputError naming ``a`` or ``b_prime``. And RGBA, greyscale,
16-bit, palette, CMYK and EXIF-rotated files run through ``run`` to outputs of the input sizes.
"""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gpuanalogy
from gpuanalogy.app.main import main
from gpuanalogy.errors import InputError
from gpuanalogy.outputs import is_complete

QUICK = ["--ratio", "0.25", "--lbfgs-iters", "3", "--iters", "2", "--device", "cpu"]


def rgb(height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 4 + seed * 40, y * 4, (x + y) * 2 + seed * 20], axis=2) % 256
    image[height // 4: height // 2, width // 4: width // 2] = 250   # a bright square
    return image.astype(np.uint8)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG that claims to be width x height: its decoded size would be enormous."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def make_bad(kind: str, folder: Path) -> tuple[Path, list[str]]:
    """A bad input file of one kind, and the words its message must contain."""
    path = folder / f"bad_{kind}.png"
    if kind == "too small":
        Image.fromarray(rgb(10, 10)).save(path)
        return path, ["10x10 pixels is too small", "at least 32"]
    if kind == "decompression bomb":
        return png_header_only(path, 30_000, 30_000), ["too large to decode safely"]
    if kind == "over the pixel limit":
        return png_header_only(path, 12_000, 10_000), ["120,000,000 pixels", "limit"]
    if kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:3000])
        return path, ["truncated"]
    if kind == "not an image":
        path.write_text("a,b\n1,2\n")
        return path, ["not an image file"]
    if kind == "missing":
        return path, ["no such file"]
    if kind == "a folder":
        path.mkdir()
        return path, ["is a folder"]
    raise AssertionError(kind)


KINDS = ["too small", "decompression bomb", "over the pixel limit", "truncated", "not an image",
         "missing", "a folder"]


@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "good.png"
    Image.fromarray(rgb()).save(path)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert err.startswith("gpuanalogy: error: ")
    return err.strip()


@pytest.mark.parametrize("side", ["a", "b_prime"])
@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_file_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, good, kind, side):
    bad, words = make_bad(kind, tmp_path)
    pair = [str(bad), str(good)] if side == "a" else [str(good), str(bad)]
    out = tmp_path / "out"
    assert main(["run", *pair, "-o", str(out), *QUICK]) == 2
    err = one_line_error(capsys)
    assert f"error: {bad}: " in err, err       # names the input first
    for word in words:
        assert word in err, err
    assert not out.exists()


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_unwritable_output_folder_is_one_line_exit_2(tmp_path, capsys, good, where):
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("a regular file")
    out = blocker / "out" if where == "under a file" else blocker
    assert main(["run", str(good), str(good), "-o", str(out), *QUICK]) == 2
    err = one_line_error(capsys)
    assert f"cannot write to {out}: " in err
    assert ("Not a directory" if where == "under a file" else "not a folder") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker.txt", "good.png"]
    assert blocker.read_text() == "a regular file"


def test_debug_shows_the_traceback(tmp_path, good):
    bad, _ = make_bad("truncated", tmp_path)
    done = subprocess.run([sys.executable, "-m", "gpuanalogy", "run", str(bad), str(good),
                           "-o", str(tmp_path / "out"), "--debug"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stderr
    assert "InputError" in done.stderr and "truncated" in done.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# Through the API
# --------------------------------------------------------------------------------------

GOOD = rgb()


@pytest.mark.parametrize("array, message", [
    (GOOD.astype(np.int32), "dtype=int32 is not supported"),
    (GOOD > 100, "dtype=bool is not supported"),
    (GOOD.astype(np.complex64), "dtype=complex64 is not supported"),
    (GOOD.transpose(2, 0, 1), "looks channels-first"),
    (GOOD[:, :, :2], "is not an image"),
    (GOOD[0], "3x64 pixels (shape (64, 3)) is too small"),   # (H, W) greyscale, 3 wide
    (GOOD.reshape(-1), "is not an image"),
    (GOOD[None], "is not an image"),
    (GOOD[:20], "too small"),
    (np.where(np.arange(64)[:, None, None] == 5, np.nan, GOOD / 255.0), "contains NaN at 64 pixels"),
    (np.where(np.arange(64)[:, None, None] == 5, np.inf, GOOD / 255.0), "contains infinity"),
    (-np.inf * np.ones((64, 64, 3), np.float32), "contains infinity"),
    (GOOD.astype(np.float32), "Divide by 255 first"),
])
@pytest.mark.parametrize("side", ["a", "b_prime"])
def test_api_refuses_bad_arrays_naming_the_argument(array, message, side):
    arguments = (array, GOOD) if side == "a" else (GOOD, array)
    with pytest.raises(InputError) as caught:
        gpuanalogy.analogy(*arguments)
    text = str(caught.value)
    assert text.startswith(f"{side}: ") and message in text and "\n" not in text, text


# --------------------------------------------------------------------------------------
# Unusual but valid files
# --------------------------------------------------------------------------------------


def exif_rotated_jpeg(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6     # shown turned 90 degrees clockwise: 64 x 48 stored, 48 x 64 upright
    Image.fromarray(rgb(48, 64, seed=3)).save(path, exif=exif.tobytes(), quality=95)
    return path


def formats(folder: Path) -> dict[str, tuple[Path, tuple[int, int]]]:
    """name -> (file, its upright (width, height))."""
    made = {}
    rgba = np.dstack([rgb(48, 64, seed=1), np.full((48, 64), 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    Image.fromarray(rgba).save(folder / "rgba.png")
    made["rgba"] = (folder / "rgba.png", (64, 48))
    grey16 = (np.add.outer(np.arange(60), np.arange(40)) * 600).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "grey16.png")
    with Image.open(folder / "grey16.png") as check:
        assert check.mode.startswith("I")
    made["grey16"] = (folder / "grey16.png", (40, 60))
    Image.fromarray(rgb(56, 64, seed=2)).quantize(16).save(folder / "palette.png")
    made["palette"] = (folder / "palette.png", (64, 56))
    Image.fromarray(rgb(64, 72, seed=4)).convert("CMYK").save(folder / "cmyk.jpg")
    made["cmyk"] = (folder / "cmyk.jpg", (72, 64))
    made["exif"] = (exif_rotated_jpeg(folder / "exif.jpg"), (48, 64))
    Image.fromarray(rgb(64, 50, seed=5)[:, :, 0]).save(folder / "grey8.png")
    made["grey8"] = (folder / "grey8.png", (50, 64))
    return made


@pytest.mark.slow
@pytest.mark.parametrize("a_kind, b_kind", [("rgba", "grey16"), ("palette", "cmyk"),
                                            ("exif", "grey8")])
def test_unusual_files_run_to_outputs_of_the_input_sizes(tmp_path, capsys, a_kind, b_kind):
    made = formats(tmp_path)
    (a, a_size), (b_prime, b_size) = made[a_kind], made[b_kind]
    out = tmp_path / "out"
    assert main(["run", str(a), str(b_prime), "-o", str(out), *QUICK]) == 0
    notice = f"gpuanalogy: notice: {a}: alpha channel composited over white"
    assert (notice in capsys.readouterr().err.splitlines()) == (a_kind == "rgba")
    assert is_complete(out)
    with Image.open(out / "a_prime.png") as a_prime, Image.open(out / "b.png") as b:
        assert (a_prime.size, a_prime.mode) == (a_size, "RGB")
        assert (b.size, b.mode) == (b_size, "RGB")
    assert np.load(out / "nnf_ab.npy").shape == (a_size[1], a_size[0], 2)

