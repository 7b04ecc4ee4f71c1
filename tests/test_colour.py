"""The colour/texture split: CIELAB against reference values and formulas, and the transfers
on known answers."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import color

from gpuanalogy.colour import fit_chroma, lab_to_srgb, srgb_to_lab, transfer
from gpuanalogy.errors import InputError

# Published L*a*b* (D65) of the sRGB primaries, white and black (Lindbloom's calculator).
KNOWN = [((1, 1, 1), (100.0, 0.0, 0.0)),
         ((0, 0, 0), (0.0, 0.0, 0.0)),
         ((1, 0, 0), (53.2408, 80.0925, 67.2032)),
         ((0, 1, 0), (87.7347, -86.1827, 83.1793)),
         ((0, 0, 1), (32.2970, 79.1875, -107.8602)),
         ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0))]


def reference_lab(rgb):
    """The textbook formula, pixel by pixel in float64: sRGB decoding, the sRGB matrix, the CIE
    function with 216/24389 and 24389/27."""
    out = []
    for r, g, b in np.asarray(rgb, dtype=np.float64).reshape(-1, 3):
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        x = 0.4124564 * lin[0] + 0.3575761 * lin[1] + 0.1804375 * lin[2]
        y = 0.2126729 * lin[0] + 0.7151522 * lin[1] + 0.0721750 * lin[2]
        z = 0.0193339 * lin[0] + 0.1191920 * lin[1] + 0.9503041 * lin[2]
        white = (0.9504700, 1.0000001, 1.0888300)

        def f(t):
            return t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116

        fx, fy, fz = f(x / white[0]), f(y / white[1]), f(z / white[2])
        out.append((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)))
    return np.array(out).reshape(np.shape(rgb))


def test_known_colours():
    for rgb, lab in KNOWN:
        np.testing.assert_allclose(srgb_to_lab(np.array(rgb, dtype=np.float32)), lab, atol=2e-3)


def test_against_the_textbook_formula_and_scikit_image():
    rng = np.random.default_rng(0)
    rgb = rng.random((4, 5, 3)).astype(np.float32)
    rgb[0, :3] = [[0.01, 0.02, 0.03], [0.04, 0.04045, 0.05], [0, 0, 0.002]]  # linear segments
    lab = srgb_to_lab(rgb)
    np.testing.assert_allclose(lab, reference_lab(rgb), atol=2e-3)
    # scikit-image rounds the CIE constants (0.008856, 7.787) and the matrix to 6 places
    np.testing.assert_allclose(lab, color.rgb2lab(rgb.astype(np.float64)), atol=0.05)


def test_round_trip():
    rng = np.random.default_rng(1)
    corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T
    rgb = np.concatenate([rng.random((30, 3)), corners]).astype(np.float32)
    np.testing.assert_allclose(lab_to_srgb(srgb_to_lab(rgb)), rgb, atol=2e-5)
    lab = np.array([[50, 20, -30], [90, -5, 10], [5, 1, 1]], dtype=np.float32)
    np.testing.assert_allclose(srgb_to_lab(lab_to_srgb(lab)), lab, atol=2e-3)


def test_fit_chroma_keeps_lightness_and_hue():
    lab = np.array([[20, 90, 90], [95, -100, 0], [50, 10, 10], [100, 40, 0]], dtype=np.float32)
    fitted = fit_chroma(lab)
    linear_ok = np.all((lab_to_srgb(fitted) > -1e-4) & (lab_to_srgb(fitted) < 1 + 1e-4), axis=1)
    assert linear_ok.all()
    np.testing.assert_array_equal(fitted[:, 0], lab[:, 0])
    np.testing.assert_allclose(np.arctan2(fitted[:3, 2], fitted[:3, 1]),
                               np.arctan2(lab[:3, 2], lab[:3, 1]), atol=1e-5)
    np.testing.assert_array_equal(fitted[2], lab[2])                 # inside: untouched
    assert np.hypot(*fitted[0, 1:]) < np.hypot(*lab[0, 1:])         # outside: shortened
    np.testing.assert_allclose(fitted[3, 1:], 0, atol=1e-3)          # white has no chroma


def _pair():
    """A structure image and an output with other lightness texture and other colours."""
    rng = np.random.default_rng(2)
    y, x = np.mgrid[0:48, 0:64] / 64.0
    structure = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.5 - 0.3 * x * y], axis=-1)
    structure = structure + 0.08 * rng.standard_normal((48, 64, 1))
    output = np.stack([0.7 - 0.5 * y, 0.2 + 0.3 * x, 0.6 + 0.2 * y], axis=-1)
    output = output + 0.05 * np.sin(np.arange(64) / 2.0)[None, :, None]
    to_uint8 = lambda im: np.clip(np.rint(im * 255), 0, 255).astype(np.uint8)  # noqa: E731
    return to_uint8(structure), to_uint8(output)


def _lab(image):
    return srgb_to_lab(image / np.float32(255))


def _psnr(x, truth, peak):
    return float(10 * np.log10(peak ** 2 / np.mean((np.float64(x) - truth) ** 2)))


def test_colour_keeps_the_structure_lightness_and_takes_the_output_chroma():
    structure, output = _pair()
    got = transfer(structure, output, "colour")
    # lightness equal to the structure's up to 8-bit rounding (PSNR on L* in [0, 100])
    assert _psnr(_lab(got)[..., 0], _lab(structure)[..., 0], 100.0) > 45
    # and far from the output's own
    assert _psnr(_lab(output)[..., 0], _lab(structure)[..., 0], 100.0) < 25
    # chroma the output's where the combination lies in the gamut
    want = srgb_to_lab(output / np.float32(255))
    want[..., 0] = _lab(structure)[..., 0]
    inside = np.all(np.abs(lab_to_srgb(want) - np.clip(lab_to_srgb(want), 0, 1)) == 0, axis=-1)
    assert inside.mean() > 0.5
    assert np.abs(_lab(got)[..., 1:] - want[..., 1:])[inside].max() < 1.5


def test_texture_keeps_the_structure_chroma_and_takes_the_output_lightness():
    structure, output = _pair()
    got = transfer(structure, output, "texture")
    assert _psnr(_lab(got)[..., 0], _lab(output)[..., 0], 100.0) > 45
    want = _lab(structure)
    want[..., 0] = _lab(output)[..., 0]
    inside = np.all(np.abs(lab_to_srgb(want) - np.clip(lab_to_srgb(want), 0, 1)) == 0, axis=-1)
    assert inside.mean() > 0.5
    assert np.abs(_lab(got)[..., 1:] - want[..., 1:])[inside].max() < 1.5
    assert np.abs(_lab(got)[..., 1:] - want[..., 1:]).mean() < 3.0


def test_all_is_the_output_and_bad_modes_are_refused():
    structure, output = _pair()
    assert transfer(structure, output, "all") is output
    with pytest.raises(InputError, match="transfer='hue'"):
        transfer(structure, output, "hue")
    with pytest.raises(InputError, match="one size"):
        transfer(structure[:10], output, "colour")
