"""Colour and texture apart: the ``transfer`` stage, a lightness / chroma split in CIELAB.

An analogy's output takes everything from the exemplar: its texture (the lightness pattern
inside each patch) and its colours. :func:`transfer` keeps one of the two from the structure
image instead, in CIE 1976 L*a*b* (D65), where L* is the perceived lightness and (a*, b*) the
chroma, nearly independent of it:

* ``"all"``: the output as the method made it;
* ``"colour"``: the structure image's own lightness L* with the output's (a*, b*): the
  exemplar's colours on the structure's lightness detail;
* ``"texture"``: the output's lightness with the structure image's (a*, b*): the exemplar's
  texture in the structure's own colours (the luminance-only transfer of style transfer tools).

The conversion is sRGB's: the transfer function undone to linear light (IEC 61966-2-1), the
sRGB primaries' matrix to XYZ, and the CIE L*a*b* function with its exact constants. A
lightness from one image with the chroma of another can lie outside the sRGB gamut; such a
pixel's chroma is shortened at constant lightness and hue until it fits
(:func:`fit_chroma`), so the kept channel is kept, instead of clipping R, G and B apart,
which would change lightness and hue alike.

Everything runs on host NumPy arrays in float32, in strips of rows, so the temporaries stay a
few rows' worth whatever the image size.
"""
from __future__ import annotations

import numpy as np

from .config import TRANSFERS, Transfer
from .errors import InputError

__all__ = ["srgb_to_lab", "lab_to_srgb", "fit_chroma", "transfer"]

#: Linear sRGB to CIE XYZ (D65): the sRGB primaries and white point (IEC 61966-2-1).
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
#: The white point as the matrix makes it from RGB (1, 1, 1): white is L* = 100, a* = b* = 0.
_WHITE = _RGB_TO_XYZ.sum(axis=1)
_EPSILON = 216.0 / 24389.0    # (6/29)**3: where the cube root meets the linear segment
_KAPPA = 24389.0 / 27.0       # the linear segment's slope, times 116
_ROWS = 256                   # rows per strip
_FIT_STEPS = 20               # bisection steps of fit_chroma: chroma to 2**-20 of its length


def _to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB's transfer function undone: encoded values in [0, 1] to linear light."""
    return np.where(rgb <= np.float32(0.04045), rgb / np.float32(12.92),
                    ((np.maximum(rgb, 0) + np.float32(0.055)) / np.float32(1.055))
                    ** np.float32(2.4))


def _to_encoded(linear: np.ndarray) -> np.ndarray:
    """sRGB's transfer function: linear light to encoded values (not clipped)."""
    return np.where(linear <= np.float32(0.0031308), linear * np.float32(12.92),
                    np.float32(1.055) * np.maximum(linear, 0) ** np.float32(1 / 2.4)
                    - np.float32(0.055))


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > _EPSILON, np.cbrt(t), (np.float32(_KAPPA) * t + 16) / np.float32(116))


def _lab_f_inverse(f: np.ndarray) -> np.ndarray:
    cube = f * f * f
    return np.where(cube > _EPSILON, cube, (np.float32(116) * f - 16) / np.float32(_KAPPA))


def _matrix(pixels: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return pixels @ matrix.T.astype(np.float32)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB colours.

    Parameters
    ----------
    rgb : ndarray, shape (..., 3), float in [0, 1]
        Encoded sRGB values.

    Returns
    -------
    ndarray, shape (..., 3), float32
        L* in [0, 100], a* and b* (about -128 .. 127 for sRGB colours).
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    f = _lab_f(_matrix(_to_linear(rgb), _RGB_TO_XYZ) / _WHITE.astype(np.float32))
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def _lab_to_linear(lab: np.ndarray) -> np.ndarray:
    """Linear sRGB of L*a*b* colours, not clipped (outside [0, 1] where out of gamut)."""
    fy = (lab[..., 0] + 16) / np.float32(116)
    f = np.stack([fy + lab[..., 1] / np.float32(500), fy, fy - lab[..., 2] / np.float32(200)],
                 axis=-1)
    return _matrix(_lab_f_inverse(f) * _WHITE.astype(np.float32), _XYZ_TO_RGB)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """Encoded sRGB of CIE L*a*b* (D65) colours, the inverse of :func:`srgb_to_lab`.

    Parameters
    ----------
    lab : ndarray, shape (..., 3), float

    Returns
    -------
    ndarray, shape (..., 3), float32
        Not clipped: colours outside the sRGB gamut fall outside [0, 1] (see :func:`fit_chroma`).
    """
    return _to_encoded(_lab_to_linear(np.asarray(lab, dtype=np.float32)))


def _in_gamut(lab: np.ndarray, tolerance: float = 1e-6) -> np.ndarray:
    linear = _lab_to_linear(lab)
    return np.all((linear >= -tolerance) & (linear <= 1 + tolerance), axis=-1)


def fit_chroma(lab: np.ndarray) -> np.ndarray:
    """``lab`` with the chroma of out-of-gamut colours shortened until they fit sRGB.

    A colour outside the gamut keeps its L* (clipped into [0, 100]) and its hue angle; its
    (a*, b*) is scaled by the largest factor in [0, 1] (found by bisection to 2**-20) that puts
    it inside. The grey of the same lightness is always inside, so every colour fits.

    Parameters
    ----------
    lab : ndarray, shape (..., 3), float32

    Returns
    -------
    ndarray, shape (..., 3), float32
        A new array; colours already inside are unchanged.
    """
    lab = np.array(lab, dtype=np.float32)
    np.clip(lab[..., 0], 0, 100, out=lab[..., 0])
    outside = ~_in_gamut(lab)
    if not outside.any():
        return lab
    bad = lab[outside]
    low = np.zeros(len(bad), dtype=np.float32)    # a scale known to fit
    high = np.ones(len(bad), dtype=np.float32)    # a scale known not to
    for _ in range(_FIT_STEPS):
        middle = (low + high) / 2
        trial = bad.copy()
        trial[:, 1:] *= middle[:, None]
        fits = _in_gamut(trial)
        low = np.where(fits, middle, low)
        high = np.where(fits, high, middle)
    bad[:, 1:] *= low[:, None]
    lab[outside] = bad
    return lab


def transfer(structure: np.ndarray, result: np.ndarray, mode: Transfer) -> np.ndarray:
    """The output as ``mode`` says: all of ``result``, or lightness and chroma from each.

    Parameters
    ----------
    structure : ndarray, shape (H, W, 3), uint8
        The image whose structure the output has (A for A', B' for B).
    result : ndarray, shape (H, W, 3), uint8
        The analogy's output on that grid.
    mode : {"all", "colour", "texture"}
        See the module docstring.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        ``result`` itself for "all"; otherwise a new image.

    Raises
    ------
    InputError
        An unknown mode, or images of different shapes.
    """
    if mode not in TRANSFERS:
        raise InputError(f"transfer={mode!r} is not supported. Try one of: {', '.join(TRANSFERS)}.")
    if mode == "all":
        return result
    if structure.shape != result.shape or structure.ndim != 3 or structure.shape[2] != 3:
        raise InputError(f"the structure image {structure.shape} and the output {result.shape} "
                         f"must be H x W x 3 images of one size for transfer={mode!r}")
    out = np.empty_like(result, dtype=np.uint8)
    lightness_from, chroma_from = (structure, result) if mode == "colour" else (result, structure)
    for top in range(0, result.shape[0], _ROWS):
        rows = slice(top, top + _ROWS)
        lab = srgb_to_lab(chroma_from[rows] / np.float32(255))
        lab[..., 0] = srgb_to_lab(lightness_from[rows] / np.float32(255))[..., 0]
        rgb = lab_to_srgb(fit_chroma(lab))
        out[rows] = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    return out
