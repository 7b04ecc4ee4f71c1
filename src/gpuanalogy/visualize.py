"""Pictures for people: NNF colour plots and labelled side-by-side sheets.

The NNF plot uses the optical-flow colour coding of the Middlebury benchmark (Baker, Scharstein,
Lewis, Roth, Black, Szeliski, "A database and evaluation methodology for optical flow", IJCV
2011): the hue gives the direction of the displacement, the saturation its length; white is no
displacement.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import InputError

__all__ = ["color_wheel", "make_sheet", "nnf_to_color"]

Panel = tuple[str, np.ndarray]
Panels = Union[Sequence[Panel], Sequence[Sequence[Panel]]]

# Hue steps between the six primary/secondary colours of the Middlebury wheel: red -> yellow
# -> green -> cyan -> blue -> magenta -> red. More steps where the eye tells hues apart better.
_WHEEL_STEPS = (("R", "Y", 15), ("Y", "G", 6), ("G", "C", 4), ("C", "B", 11), ("B", "M", 13),
                ("M", "R", 6))
_PRIMARIES = {"R": (1, 0, 0), "Y": (1, 1, 0), "G": (0, 1, 0), "C": (0, 1, 1), "B": (0, 0, 1),
              "M": (1, 0, 1)}


def _wheel() -> np.ndarray:
    """The 55 wheel colours, float in [0, 1], shape (55, 3)."""
    colours = []
    for start, end, steps in _WHEEL_STEPS:
        a, b = np.array(_PRIMARIES[start], float), np.array(_PRIMARIES[end], float)
        t = np.arange(steps)[:, None] / steps
        colours.append((1 - t) * a + t * b)
    return np.concatenate(colours)


_WHEEL = _wheel()


def flow_to_color(flow: np.ndarray, *, max_flow: float | None = None) -> np.ndarray:
    """Colour-code a displacement field.

    Parameters
    ----------
    flow : ndarray, shape (H, W, 2), float
        Displacements as (rows, cols), i.e. (down, right).
    max_flow : float, optional
        The length drawn fully saturated; longer vectors are drawn darker. Default: the longest
        vector in ``flow``.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8. Non-finite vectors are black.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise InputError(f"flow must be H x W x 2 (rows, cols), got shape {flow.shape}.")
    valid = np.isfinite(flow).all(axis=2)
    dy = np.where(valid, flow[..., 0], 0.0)
    dx = np.where(valid, flow[..., 1], 0.0)
    length = np.hypot(dx, dy)
    scale = float(length.max(initial=0.0)) if max_flow is None else float(max_flow)
    radius = length / scale if scale > 0 else np.zeros_like(length)

    # angle in (-1, 1]: 0 for a vector pointing left, +-1 pointing right (Middlebury convention)
    n = len(_WHEEL)
    position = (np.arctan2(-dy, -dx) / np.pi + 1) / 2 * (n - 1)
    k0 = np.floor(position).astype(int) % n
    k1 = (k0 + 1) % n
    frac = (position - np.floor(position))[..., None]
    colour = (1 - frac) * _WHEEL[k0] + frac * _WHEEL[k1]

    r = radius[..., None]
    colour = np.where(r <= 1, 1 - r * (1 - colour), colour * 0.75)
    colour[~valid] = 0.0
    return np.rint(np.clip(colour, 0, 1) * 255).astype(np.uint8)


def nnf_to_color(nnf: np.ndarray, shape_b: tuple[int, int], *,
                 max_flow: float | None = None) -> np.ndarray:
    """Colour plot of a nearest-neighbour field as its displacement from the identity.

    Parameters
    ----------
    nnf : ndarray, shape (H_A, W_A, 2), int or float
        For each pixel of A, the (row, col) of its match in B.
    shape_b : (int, int)
        (H_B, W_B). When B's size differs from A's, the identity maps pixel centres
        proportionally, and displacements are in B's pixels.
    max_flow : float, optional
        Displacement length (B pixels) drawn fully saturated; default the longest in the field.

    Returns
    -------
    ndarray, shape (H_A, W_A, 3), uint8
        White where the match is the same place; hue = direction, saturation = length.

    Examples
    --------
    >>> rows, cols = np.mgrid[0:4, 0:5]
    >>> identity = np.stack([rows, cols], axis=-1)
    >>> bool((nnf_to_color(identity, (4, 5)) == 255).all())
    True
    """
    nnf = np.asarray(nnf)
    if nnf.ndim != 3 or nnf.shape[2] != 2:
        raise InputError(f"nnf must be H x W x 2 (row, col), got shape {nnf.shape}.")
    if len(shape_b) < 2 or min(shape_b[:2]) < 1:
        raise InputError(f"shape_b must be (H_B, W_B), got {shape_b}.")
    h_a, w_a = nnf.shape[:2]
    h_b, w_b = shape_b[:2]
    rows = (np.arange(h_a) + 0.5) * (h_b / h_a) - 0.5
    cols = (np.arange(w_a) + 0.5) * (w_b / w_a) - 0.5
    flow = nnf.astype(np.float64)
    flow[..., 0] -= rows[:, None]
    flow[..., 1] -= cols[None, :]
    return flow_to_color(flow, max_flow=max_flow)


def color_wheel(size: int = 128) -> np.ndarray:
    """The colour key for :func:`nnf_to_color`: each pixel coloured by its offset from the centre.

    Saturated at the inscribed circle, darker outside it. Returns (size, size, 3) uint8.
    """
    centre = (size - 1) / 2
    rows, cols = np.mgrid[0:size, 0:size] - centre
    return flow_to_color(np.stack([rows, cols], axis=-1), max_flow=max(centre, 1e-9))


def make_sheet(panels: Panels, *, height: int = 256, gap: int = 8, label_height: int = 20,
               background: int = 255) -> np.ndarray:
    """Labelled images side by side, in one row or several.

    Parameters
    ----------
    panels : list of (label, image), or list of rows of them
        ``[("A", a), ("B'", bp)]`` gives one row; ``[[("A", a), ("B'", bp)], [("A'", ap)]]``
        gives two. Images are H x W x 3 (or H x W, H x W x 1, H x W x 4), uint8 or float in
        [0, 1].
    height : int
        Every image is resized to this height, keeping its aspect ratio.
    gap : int
        Pixels between panels, between rows, and around the sheet.
    label_height : int
        Height of the text strip above each image (0 for no labels).
    background : int
        Grey level of the gaps and label strips.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        Rows are left-aligned; shorter rows are padded with the background.

    Examples
    --------
    >>> a = np.zeros((10, 20, 3), np.uint8)
    >>> make_sheet([("A", a), ("B", a)], height=10, gap=2, label_height=0).shape
    (14, 46, 3)
    """
    rows = _as_rows(panels)
    if height < 1 or gap < 0 or label_height < 0:
        raise InputError(f"make_sheet: need height >= 1, gap >= 0, label_height >= 0 "
                         f"(got {height}, {gap}, {label_height}).")
    font = _font(label_height)
    rendered = [[_panel(label, image, height, label_height, font, background)
                 for label, image in row] for row in rows]
    row_widths = [sum(p.shape[1] for p in row) + gap * (len(row) - 1) for row in rendered]
    panel_height = height + label_height
    sheet = np.full((gap + len(rows) * (panel_height + gap), gap + max(row_widths) + gap, 3),
                    background, np.uint8)
    for r, row in enumerate(rendered):
        top = gap + r * (panel_height + gap)
        left = gap
        for panel in row:
            sheet[top:top + panel_height, left:left + panel.shape[1]] = panel
            left += panel.shape[1] + gap
    return sheet


def _as_rows(panels: Panels) -> list[list[Panel]]:
    if len(panels) == 0:
        raise InputError("make_sheet: no panels given. Pass [(label, image), ...].")
    first = panels[0]
    one_row = isinstance(first, tuple) and len(first) == 2 and isinstance(first[0], str)
    rows = [list(panels)] if one_row else [list(row) for row in panels]
    for row in rows:
        if not row:
            raise InputError("make_sheet: a row has no panels.")
        for item in row:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise InputError("make_sheet: each panel must be a (label, image) pair; "
                                 f"got {type(item).__name__}.")
    return rows


def _to_rgb_uint8(image: np.ndarray, label: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise InputError(f"make_sheet: panel {label!r} must be an H x W x 3 image, "
                         f"got shape {image.shape}.")
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind in "fb":
        return np.rint(np.clip(np.nan_to_num(image.astype(np.float64)), 0, 1) * 255).astype(np.uint8)
    raise InputError(f"make_sheet: panel {label!r} has dtype={image.dtype}. "
                     "Try uint8, or float in [0, 1].")


def _font(label_height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:  # Pillow >= 10.1 scales its built-in font when FreeType is there
        return ImageFont.load_default(size=max(int(label_height * 0.7), 6))
    except TypeError:
        return ImageFont.load_default()


def _panel(label: str, image: np.ndarray, height: int, label_height: int, font: object,
           background: int) -> np.ndarray:
    """One label strip on top of one resized image, (label_height + height, width, 3) uint8."""
    rgb = _to_rgb_uint8(image, label)
    h, w = rgb.shape[:2]
    width = max(1, round(w * height / h))
    if (h, w) != (height, width):
        rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS))
    if label_height == 0:
        return rgb
    strip = Image.new("RGB", (width, label_height), (background,) * 3)
    draw = ImageDraw.Draw(strip)
    text = _fit(draw, label, font, width - 4)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    ink = 0 if background >= 128 else 255
    draw.text(((width - (right - left)) / 2 - left, (label_height - (bottom - top)) / 2 - top),
              text, fill=(ink,) * 3, font=font)
    return np.concatenate([np.asarray(strip), rgb], axis=0)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: object, width: int) -> str:
    """``text``, shortened with an ellipsis until it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""
