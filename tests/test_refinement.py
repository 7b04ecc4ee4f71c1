"""The WLS filter and the photo refinement (DESIGN.md step 5)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from gpuanalogy import wls_system
from gpuanalogy.errors import InputError
from gpuanalogy.refinement import edge_weights, wls_filter, refine
from gpuanalogy.wls_system import _apply

NOISE_COLUMNS = np.r_[4:20, 44:60]  # flat parts of the 64-wide step, away from the edge


def _noisy_step(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """64 x 64 vertical step 0.2 -> 0.8 at column 32, plus Gaussian noise (sigma 0.05)."""
    rng = np.random.default_rng(seed)
    clean = np.where(np.arange(64) < 32, 0.2, 0.8)[None, :].repeat(64, axis=0)
    noisy = (clean + rng.normal(0.0, 0.05, clean.shape)).astype(np.float32)
    return clean, noisy


def _noise_std(image: np.ndarray) -> float:
    """Spread around each column's mean in the flat parts (the step's trend runs along x only)."""
    part = image[:, NOISE_COLUMNS].astype(np.float64)
    return float((part - part.mean(axis=0)).std())


def _photo(height: int = 40, width: int = 56, seed: int = 1) -> np.ndarray:
    """Smooth colour blobs with a few hard edges, float32 in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    image = gaussian_filter(rng.random((height, width, 3)), (3, 3, 0))
    image[height // 3:, width // 2:] += 0.3
    image = (image - image.min()) / (image.max() - image.min())
    return (0.1 + 0.8 * image).astype(np.float32)


def _grey(image: np.ndarray) -> np.ndarray:
    return (image @ np.array([0.299, 0.587, 0.114])).astype(np.float32)


def test_tiny_lambda_returns_the_input():
    image = _photo()
    out = wls_filter(image, _grey(image), lam=1e-8)
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, image, atol=1e-5)


def test_grey_image_keeps_its_shape():
    image = _grey(_photo())
    out = wls_filter(image, image)
    assert out.shape == image.shape and out.dtype == np.float32


def test_solution_satisfies_the_system():
    image = _photo().astype(np.float64)
    guide = _grey(image)
    out = wls_filter(image, guide).astype(np.float64)
    wx, wy = edge_weights(guide.astype(np.float64), 0.8, 1.0, 1e-4, False, np)
    lhs = _apply(np.moveaxis(out, 2, 0), wx, wy)
    # the float32 output is rounded; weights up to 8000 scale that rounding up
    np.testing.assert_allclose(np.moveaxis(lhs, 0, 2), image, atol=5e-3)


def test_noisy_step_loses_its_noise_and_keeps_its_edge():
    clean, noisy = _noisy_step()
    out = wls_filter(noisy, np.clip(noisy, 0.0, 1.0))  # guide = the (noisy) image itself

    assert _noise_std(noisy) / _noise_std(out) >= 5.0

    profile = out.mean(axis=0)
    height = profile[NOISE_COLUMNS[16:]].mean() - profile[NOISE_COLUMNS[:16]].mean()
    assert abs(height - 0.6) <= 0.06  # step height kept within 10%
    # Sharp: most of the step happens between the two pixels at the edge. A Gaussian blur with
    # a similar noise reduction (sigma 2) leaves only ~0.12 of the 0.6 there.
    assert profile[32] - profile[31] >= 0.3
    blurred = gaussian_filter(noisy, 2.0).mean(axis=0)
    assert blurred[32] - blurred[31] < 0.2


def test_constant_image_is_a_fixed_point():
    image = np.full((12, 17, 3), 0.37, np.float32)
    guide = _grey(_photo(12, 17))
    np.testing.assert_allclose(wls_filter(image, guide), image, atol=1e-6)


def test_log_guide_also_smooths_noise():
    _, noisy = _noisy_step()
    out = wls_filter(noisy, np.clip(noisy, 0.0, 1.0), log_guide=True)
    assert np.isfinite(out).all()
    assert _noise_std(out) < _noise_std(noisy) / 3


def test_cg_agrees_with_direct():
    image = _photo(24, 31)
    guide = _grey(image)
    direct = wls_filter(image, guide, solver="direct")
    cg = wls_filter(image, guide, solver="cg", rtol=1e-9)
    np.testing.assert_allclose(cg, direct, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 9), (9, 1), (2, 2), (1, 1)])
def test_thin_images(shape):
    rng = np.random.default_rng(3)
    image = rng.random(shape).astype(np.float32)
    direct = wls_filter(image, image, solver="direct")
    cg = wls_filter(image, image, solver="cg", rtol=1e-10)
    assert direct.shape == shape
    np.testing.assert_allclose(cg, direct, atol=1e-5)


def test_refine_of_the_structure_itself_is_the_structure():
    structure = _photo()
    np.testing.assert_allclose(refine(structure, structure), structure, atol=1e-6)
    as_bytes = np.rint(structure * 255).astype(np.uint8)
    out = refine(as_bytes, as_bytes)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, as_bytes)


def test_refine_keeps_a_constant_colour_offset():
    structure = _photo()  # values in [0.1, 0.9]
    offset = np.array([0.05, -0.08, 0.02], np.float32)
    out = refine(structure + offset, structure)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, structure + offset, atol=1e-4)


def test_refine_puts_structure_edges_on_a_blurry_result():
    structure = _photo()
    blurry = gaussian_filter(structure, (2, 2, 0))
    out = refine(blurry, structure)
    assert np.abs(out - structure).mean() < np.abs(blurry - structure).mean()


def test_refine_clips_uint8():
    structure = np.zeros((8, 9, 3), np.uint8)
    result = np.full((8, 9, 3), 255, np.uint8)
    result[:4] = 0
    out = refine(result, structure)
    assert out.dtype == np.uint8 and out.shape == (8, 9, 3)


@pytest.mark.parametrize("call", [
    lambda: wls_filter(np.zeros((4, 5)), np.zeros((4, 6))),
    lambda: wls_filter(np.zeros((4, 5, 3)), np.zeros((4, 5, 3))),
    lambda: wls_filter(np.zeros((4, 5)), np.zeros((4, 5)), lam=-1.0),
    lambda: wls_filter(np.zeros((4, 5)), np.zeros((4, 5)), solver="qr"),
    lambda: wls_filter(np.zeros((4, 5)), np.zeros((4, 5)),
                       weights=(np.ones((4, 5)), np.ones((3, 5)))),
    lambda: refine(np.zeros((4, 5, 3)), np.zeros((4, 6, 3))),
    lambda: refine(np.zeros((4, 5)), np.zeros((4, 5))),
    lambda: refine(np.zeros((4, 5, 3), np.int32), np.zeros((4, 5, 3), np.int32)),
])
def test_bad_inputs_say_what_is_wrong(call):
    with pytest.raises(InputError):
        call()


def test_the_multigrid_solve_gives_the_direct_solves_answer_and_auto_takes_it_when_needed(
        monkeypatch):
    pytest.importorskip("pyamg")
    from gpuanalogy import multigrid

    rng = np.random.default_rng(4)
    guide = np.clip(np.add.outer(np.linspace(0, 1, 60), np.linspace(0, 0.5, 80))
                    + (rng.random((60, 80)) > 0.97) * 0.5, 0, 1)
    image = rng.random((60, 80, 3))
    direct = wls_filter(image, guide, solver="direct")
    amg = wls_filter(image, guide, solver="amg")
    assert np.abs(amg - direct).max() < 1e-2 and np.abs(amg - direct).mean() < 1e-3
    calls = []
    real = multigrid.solve
    monkeypatch.setattr(multigrid, "solve", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(wls_system, "available_bytes", lambda: 10**4)   # direct cannot fit
    np.testing.assert_array_equal(wls_filter(image, guide), amg)
    assert calls == [1]


def test_given_weights_replace_the_guides_own_whatever_lam():
    _, noisy = _noisy_step()
    wx, wy = edge_weights(noisy.astype(np.float64), 0.8, 1.0, 1e-4, False, np)
    own = wls_filter(noisy, noisy)
    np.testing.assert_allclose(wls_filter(noisy, np.zeros_like(noisy), weights=(wx, wy)), own,
                               atol=1e-6)
    np.testing.assert_allclose(wls_filter(noisy, noisy, lam=0.0, weights=(wx, wy)), own,
                               atol=1e-6)
