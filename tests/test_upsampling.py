"""The edge-aware upsampling of a colour change (gpuanalogy.upsampling)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from gpuanalogy.backend import cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.images import resize_image
from gpuanalogy.refinement import edge_weights, grey_guide, refine
from gpuanalogy.upsampling import (apply_colour_change, coarse_weights, fit_colour_change,
                                    refine_guided, upsample_colour_change)

BACKEND = cpu_backend()


def _textured(height: int, width: int, seed: int = 0, grain: float = 0.03) -> np.ndarray:
    """Smooth colour regions, a hard edge and fine grain (the full-resolution detail), float32."""
    rng = np.random.default_rng(seed)
    image = gaussian_filter(rng.random((height, width, 3)), (6, 6, 0))
    image = (image - image.min()) / (image.max() - image.min())
    image[height // 3:, width // 2:] = 0.6 * image[height // 3:, width // 2:] + 0.4
    image += rng.normal(0.0, grain, image.shape)     # grain the low resolution cannot see
    return np.clip(0.1 + 0.8 * image, 0.0, 1.0).astype(np.float32)


def _retone(image: np.ndarray) -> np.ndarray:
    """A per-channel affine re-tone whose gain and offset vary slowly over the image."""
    height, width = image.shape[:2]
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    gain = np.stack([0.8 + 0.3 * x, 1.1 - 0.2 * y, 0.9 + 0.1 * x * y], axis=-1)
    offset = np.stack([0.05 * y, 0.02 - 0.04 * x, 0.06 * x], axis=-1)
    return (gain * image + offset).astype(np.float32)


def test_a_smooth_retone_is_reproduced_at_full_resolution():
    full = _textured(240, 360)
    low = np.clip(resize_image(full, (60, 90)), 0.0, 1.0)
    truth = np.clip(_retone(full), 0.0, 1.0)
    out = upsample_colour_change(low, _retone(low), full, backend=BACKEND) / 255.0
    error = np.abs(out - truth)
    # Tolerance: 1/255 for the rounding, plus the re-tone's change within a window.
    assert error.mean() < 0.004 and np.percentile(error, 99) < 0.015, (error.mean(), error.max())
    # The full-resolution grain passes through: against a bicubic enlargement of the
    # low-resolution result, the error is far smaller.
    blur = np.clip(resize_image(_retone(low), full.shape[:2]), 0.0, 1.0)
    assert error.mean() < np.abs(blur - truth).mean() / 4


def _psnr(x: np.ndarray, truth: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((x.astype(np.float64) - truth) ** 2)))


def test_the_refinement_solved_small_and_carried_up_matches_the_full_solve():
    # The output to refine has the truth's colours without the structure's detail (a blur,
    # as a voted output is): refined at a third of the size and carried up, it gets the
    # detail back, within 0.5 dB of the solve over every pixel (issue 16's bar).
    structure = _textured(240, 360, seed=5)
    truth = np.clip(_retone(structure), 0.0, 1.0)
    result = np.rint(gaussian_filter(truth, (2, 2, 0)) * 255).astype(np.uint8)
    small = refine_guided(result, structure, (80, 120), backend=BACKEND)
    assert small.shape == result.shape and small.dtype == np.uint8
    full = refine(result, np.rint(structure * 255).astype(np.uint8))
    guided_psnr, full_psnr = _psnr(small / 255.0, truth), _psnr(full / 255.0, truth)
    assert guided_psnr > _psnr(result / 255.0, truth) + 3
    assert guided_psnr > full_psnr - 0.5, (guided_psnr, full_psnr)


def _halved(image: np.ndarray) -> np.ndarray:
    """Means of 2 x 2 blocks."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    return image[:2 * h, :2 * w].reshape(h, 2, w, 2, -1).mean(axis=(1, 3)).astype(np.float32)


@pytest.mark.parametrize("grain", [0.0, 0.03])
def test_the_coarse_weights_make_the_halved_solve_the_full_ones_halved(grain):
    # A change that varies over a few pixels, on a smooth and on a grainy structure: solved on
    # the halved images with the full-resolution system's weights brought down, the refinement
    # lands near the full-size solve halved; the halved guide's own weights smooth too far.
    rng = np.random.default_rng(3)
    structure = _textured(96, 128, seed=4, grain=grain)
    change = gaussian_filter(rng.normal(0, 1, structure.shape), (4, 4, 0))
    result = np.clip(structure + 0.1 * change / change.std(), 0, 1).astype(np.float32)
    full = _halved(refine(result, structure))
    small = _halved(structure)
    coarse = refine(_halved(result), small, weights=coarse_weights(structure, small.shape[:2]))
    own = refine(_halved(result), small)
    assert np.abs(coarse - full).mean() < np.abs(own - full).mean() / 4
    assert np.abs(coarse - full).mean() < 0.006


@pytest.mark.parametrize("shape", [(37, 50), (96, 1), (1, 128)])
def test_the_coarse_weights_have_the_systems_shapes_whatever_the_strips(shape):
    structure = _textured(96, 128, seed=2)
    wx, wy = coarse_weights(structure, shape)
    assert wx.shape == (shape[0], shape[1] - 1) and wy.shape == (shape[0] - 1, shape[1])
    assert np.all(np.isfinite(wx)) and np.all(wx > 0) and np.all(wy > 0)
    in_strips = coarse_weights(structure, shape, strip_pixels=300)
    np.testing.assert_allclose(in_strips[0], wx, rtol=1e-12)
    np.testing.assert_allclose(in_strips[1], wy, rtol=1e-12)


def test_the_coarse_weights_of_a_plane_are_its_own_times_the_squared_ratios():
    # A grey plane L = 0.002 x + 0.003 y has the same weight on every pair; brought from
    # 120 x 90 to 30 x 17 (unequal ratios), each direction's weight is lam times its own
    # squared size ratio times that; at the input's own size they are the input's weights.
    y, x = np.mgrid[0:120, 0:90]
    structure = np.repeat((0.1 + 0.002 * x + 0.003 * y)[..., None], 3, axis=2).astype(np.float32)
    wx, wy = coarse_weights(structure, (30, 17), lam=0.8)
    np.testing.assert_allclose(wx, 0.8 * (17 / 90) ** 2 / (0.002 + 1e-4), rtol=1e-3)
    np.testing.assert_allclose(wy, 0.8 * (30 / 120) ** 2 / (0.003 + 1e-4), rtol=1e-3)
    textured = _textured(40, 30, seed=6)
    same = edge_weights(grey_guide(textured.astype(np.float64), np), 0.8, 1.0, 1e-4, False, np)
    for got, want in zip(coarse_weights(textured, (40, 30)), same):
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_no_change_gives_back_the_guide():
    full = _textured(64, 48, seed=3)
    low = np.clip(resize_image(full, (32, 24)), 0.0, 1.0)
    out = upsample_colour_change(low, low, full, backend=BACKEND)
    np.testing.assert_array_equal(out, np.rint(full * 255).astype(np.uint8))


@pytest.mark.parametrize("strip_pixels", [1, 100, 1 << 20])
def test_strips_do_not_change_the_result(strip_pixels):
    full = _textured(50, 70, seed=1)
    low = np.clip(resize_image(full, (20, 30)), 0.0, 1.0)
    coefficients = fit_colour_change(low, _retone(low), backend=BACKEND)
    assert coefficients.shape == (12, 20, 30) and coefficients.dtype == np.float32
    whole = apply_colour_change(coefficients, full, backend=BACKEND, strip_pixels=10**9)
    np.testing.assert_array_equal(
        apply_colour_change(coefficients, full, backend=BACKEND, strip_pixels=strip_pixels), whole)
    uint8 = np.rint(full * 255).astype(np.uint8)
    assert np.abs(apply_colour_change(coefficients, uint8, backend=BACKEND).astype(int)
                  - whole).max() <= 1


def test_bad_inputs_say_what_is_wrong():
    image = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(InputError, match="two H x W x 3 images of one shape"):
        fit_colour_change(image, image[:4], backend=BACKEND)
    with pytest.raises(InputError, match="eps > 0"):
        fit_colour_change(image, image, backend=BACKEND, eps=0)
    with pytest.raises(InputError, match="from 1 x 1 to the input's 8 x 8"):
        coarse_weights(image, (9, 4))
    with pytest.raises(InputError, match="need a uint8 result"):
        refine_guided(image, image, (4, 4), backend=BACKEND)
