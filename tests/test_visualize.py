"""NNF colour plots and labelled sheets."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest

from gpuanalogy.errors import InputError
from gpuanalogy.visualize import color_wheel, flow_to_color, make_sheet, nnf_to_color


def _identity(height: int, width: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows, cols], axis=-1)


def _hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(rgb / 255.0))[0]


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.float64])
def test_identity_nnf_is_white(dtype):
    plot = nnf_to_color(_identity(7, 9).astype(dtype), (7, 9))
    assert plot.shape == (7, 9, 3) and plot.dtype == np.uint8
    assert (plot == 255).all()


def test_identity_between_sizes_is_white():
    # A 8 x 10 field whose matches are the proportional places in a 16 x 30 B
    rows = (np.arange(8) + 0.5) * 2 - 0.5
    cols = (np.arange(10) + 0.5) * 3 - 0.5
    nnf = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1)
    assert (nnf_to_color(nnf, (16, 30)) == 255).all()


def test_opposite_directions_have_different_hues():
    nnf = _identity(4, 8).astype(np.float32)
    nnf[:, :4, 1] += 3   # left half looks 3 pixels right
    nnf[:, 4:, 1] -= 3   # right half looks 3 pixels left
    plot = nnf_to_color(nnf, (4, 8))
    right, left = plot[0, 0], plot[0, 7]
    assert (plot[:, :4] == right).all() and (plot[:, 4:] == left).all()
    assert abs(_hue(right) - _hue(left)) > 0.3  # about half-way round the wheel
    assert not (right == 255).all()


def test_saturation_grows_with_length():
    flow = np.zeros((1, 3, 2))
    flow[0, :, 1] = [0.0, 1.0, 2.0]
    plot = flow_to_color(flow)[0].astype(int)
    whiteness = plot.min(axis=1)  # the smallest channel: 255 for white, 0 when saturated
    assert whiteness[0] == 255 and whiteness[0] > whiteness[1] > whiteness[2]


def test_max_flow_caps_saturation_and_darkens_beyond():
    flow = np.zeros((1, 2, 2))
    flow[0, :, 1] = [1.0, 4.0]
    plot = flow_to_color(flow, max_flow=2.0).astype(int)
    assert plot[0, 1].max() < 255  # beyond max_flow: darker


def test_non_finite_matches_are_black():
    nnf = _identity(3, 3).astype(np.float64)
    nnf[1, 1] = np.nan
    plot = nnf_to_color(nnf, (3, 3))
    assert (plot[1, 1] == 0).all() and (plot[0, 0] == 255).all()


def test_color_wheel_is_white_at_its_centre():
    wheel = color_wheel(33)
    assert wheel.shape == (33, 33, 3)
    assert (wheel[16, 16] == 255).all()
    assert len({tuple(wheel[16, 0]), tuple(wheel[16, 32]), tuple(wheel[0, 16])}) == 3


@pytest.mark.parametrize("nnf, shape_b", [(np.zeros((4, 4)), (4, 4)),
                                          (np.zeros((4, 4, 3)), (4, 4)),
                                          (np.zeros((4, 4, 2)), (0, 4))])
def test_bad_nnf_inputs(nnf, shape_b):
    with pytest.raises(InputError):
        nnf_to_color(nnf, shape_b)


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def _solid(colour: tuple[int, int, int], height: int, width: int) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()


def test_one_row_sheet_shape_and_pixels():
    panels = [("A", _solid(COLOURS[0], 32, 20)), ("B'", _solid(COLOURS[1], 32, 45))]
    sheet = make_sheet(panels, height=32, gap=4, label_height=12)
    assert sheet.dtype == np.uint8
    assert sheet.shape == (4 + 12 + 32 + 4, 4 + 20 + 4 + 45 + 4, 3)
    for colour, area in zip(COLOURS[:2], (32 * 20, 32 * 45)):
        assert np.all(sheet == colour, axis=2).sum() == area
    # the first image sits under its label strip, one gap in from the corner
    assert (sheet[4 + 12:4 + 12 + 32, 4:24] == COLOURS[0]).all()


def test_several_rows_resize_keeping_aspect():
    rows = [[("A", _solid(COLOURS[0], 16, 16)), ("B'", _solid(COLOURS[1], 64, 32))],
            [("A'", _solid(COLOURS[2], 10, 30))]]
    sheet = make_sheet(rows, height=20, gap=2, label_height=10)
    # row 1: 20x20 and 20x10; row 2: 20x60 (widest)
    assert sheet.shape == (2 + 2 * (10 + 20 + 2), 2 + 60 + 2, 3)
    for colour, area in zip(COLOURS[:3], (20 * 20, 20 * 10, 20 * 60)):
        # Lanczos on a solid image keeps the colour; allow a rounding step at most
        close = np.all(np.abs(sheet.astype(int) - colour) <= 1, axis=2)
        assert close.sum() == area


def test_labels_draw_ink():
    sheet = make_sheet([("A label", _solid(COLOURS[3], 24, 80))], height=24, gap=0,
                       label_height=16)
    strip = sheet[:16]
    assert (strip < 128).any()  # dark text on the white strip
    unlabeled = make_sheet([("", _solid(COLOURS[3], 24, 80))], height=24, gap=0, label_height=16)
    assert (unlabeled[:16] == 255).all()


def test_grey_float_and_rgba_panels_are_accepted():
    grey = np.linspace(0, 1, 12 * 12).reshape(12, 12)
    rgba = np.zeros((12, 12, 4), np.uint8)
    sheet = make_sheet([("grey", grey), ("rgba", rgba)], height=12, label_height=0, gap=1)
    assert sheet.shape == (14, 1 + 12 + 1 + 12 + 1, 3)


@pytest.mark.parametrize("panels", [[], [[]], [("A",)], [("A", np.zeros((4, 4, 2), np.uint8))],
                                    [("A", np.zeros((4, 4, 3), np.int64))]])
def test_bad_sheets_say_what_is_wrong(panels):
    with pytest.raises(InputError):
        make_sheet(panels)
