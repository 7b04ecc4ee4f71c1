"""Sub-pixel alignment: voting and upsampling twins of gpuanalogy.nnf, and the colour-model search."""
import numpy as np
import pytest
from scipy import ndimage

from gpuanalogy import nnf as nnf_ops, subpixel
from gpuanalogy.backend import cpu_backend
from gpuanalogy.errors import InputError

BACKEND = cpu_backend()


def _texture(points, seed):
    """A smooth RGB texture in [0, 1]: random plane waves (periods 7-40 px) evaluated at
    ``points`` (..., 2) of (row, col), so it can be sampled exactly anywhere."""
    rng = np.random.default_rng(seed)
    out = np.zeros(points.shape[:-1] + (3,))
    for _ in range(8):
        frequency, angle, phase = rng.uniform(0.15, 0.9), rng.uniform(0, np.pi), rng.uniform(0, 6.3)
        along = points[..., 0] * np.cos(angle) + points[..., 1] * np.sin(angle)
        out += np.sin(frequency * along + phase)[..., None] * rng.normal(size=3)
    return 0.5 + 0.5 * out / np.abs(out).max()


def _identity(shape):
    return np.stack(np.mgrid[0:shape[0], 0:shape[1]], axis=-1)


@pytest.mark.parametrize("patch_size", [1, 3, 5])
def test_whole_pixel_field_votes_as_nnf_warp(patch_size):
    rng = np.random.default_rng(0)
    source = rng.random((13, 11, 4)).astype(np.float32)
    field = np.stack([rng.integers(0, 13, (9, 10)), rng.integers(0, 11, (9, 10))], -1)
    expected = nnf_ops.warp(source, field.astype(np.int32), patch_size=patch_size,
                            backend=BACKEND)
    got = subpixel.warp(source, field.astype(np.float32), patch_size=patch_size, backend=BACKEND)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_fractional_field_samples_between_pixels():
    # A linear ramp is reproduced exactly by bilinear sampling: shifting the identity field by
    # (0.25, -0.5) shifts the ramp by as much, wherever the patch stays inside.
    rows, cols = np.mgrid[0:12, 0:12].astype(np.float32)
    ramp = np.stack([rows, cols, 2 * rows + 3 * cols], -1)
    field = np.clip(_identity((12, 12)) + np.array([0.25, -0.5]), 0, 11).astype(np.float32)
    got = subpixel.warp(ramp, field, patch_size=3, backend=BACKEND)
    inside = (slice(1, -2), slice(2, -1))
    expected = np.stack([rows + 0.25, cols - 0.5, 2 * (rows + 0.25) + 3 * (cols - 0.5)], -1)
    np.testing.assert_allclose(got[inside], expected[inside], atol=1e-5)


@pytest.mark.parametrize("old_a, new_a, old_b, new_b", [
    ((8, 8), (16, 16), (8, 8), (16, 16)), ((9, 7), (19, 13), (6, 10), (11, 21)),
    ((10, 10), (10, 10), (10, 10), (10, 10)), ((12, 8), (6, 5), (12, 8), (7, 4))])
def test_upsampling_without_rounding_is_the_integer_rule_before_its_floor(old_a, new_a, old_b,
                                                                          new_b):
    rng = np.random.default_rng(1)
    field = np.stack([rng.integers(0, old_b[0], old_a), rng.integers(0, old_b[1], old_a)], -1)
    whole = nnf_ops.upsample_nnf(field.astype(np.int32), new_a, new_b, backend=BACKEND,
                                 shape_b_old=old_b)
    exact = subpixel.upsample_nnf(field.astype(np.float32), new_a, new_b, backend=BACKEND,
                                  shape_b_old=old_b)
    assert exact.shape == new_a + (2,) and exact.dtype == np.float32
    np.testing.assert_array_equal(np.floor(exact + 1e-4).astype(np.int32), whole)


@pytest.mark.parametrize("shift", [(0.5, -0.25), (-1.0, 0.75), (0.25, 0.25), (0.0, 0.0)])
def test_align_finds_a_sub_pixel_shift_under_a_colour_change(shift):
    # B'(y) = colour(texture(y - s)) and A(p) = texture(p), so the true field is p + s; the
    # search starts from whole pixels (p + round(s)) and must land on s, although B' has A's
    # colours mixed and re-scaled.
    grid = _identity((40, 40)).astype(np.float64)
    a = _texture(grid, seed=2)
    mix = np.array([[0.2, 0.7, 0.1], [0.5, 0.1, 0.3], [0.1, 0.2, 0.6]])
    b_prime = _texture(grid - shift, seed=2) @ mix.T * 0.8 + 0.1
    start = np.clip(grid + np.round(shift), 0, 39).astype(np.int32)
    field = subpixel.align(a, b_prime, start, backend=BACKEND)
    assert field.dtype == np.float32
    error = np.abs(field - (grid + shift))[4:-4, 4:-4].max(axis=-1)
    # The truth is a point of the 0.25 px grid; the colour model's ridge may prefer a
    # neighbouring point where a window's colours are nearly one-dimensional.
    assert error.max() <= 0.25
    assert error.mean() < 0.1
    assert np.median(error) == 0


def test_align_leaves_flat_regions_alone():
    a = _texture(_identity((24, 24)).astype(np.float64), seed=3)
    a[:, :12] = 0.4                                   # a flat half: every offset costs the same
    start = _identity((24, 24)).astype(np.int32)
    field = subpixel.align(a, a, start, backend=BACKEND)
    # columns whose window (3 px) stays flat at every offset (1.5 px)
    np.testing.assert_array_equal(field[:, :7], start[:, :7])


def test_align_stays_inside_the_source():
    a = _texture(_identity((16, 16)).astype(np.float64), seed=4)
    b_prime = _texture(_identity((10, 12)).astype(np.float64), seed=5)
    start = np.stack(np.meshgrid(np.linspace(0, 9, 16), np.linspace(0, 11, 16), indexing="ij"),
                     -1).round().astype(np.int32)
    field = subpixel.align(a, b_prime, start, backend=BACKEND, radius=2.0, step=0.5)
    assert field.min() >= 0
    assert field[..., 0].max() <= 9 and field[..., 1].max() <= 11
    assert np.abs(field - start).max() <= 2.0


@pytest.mark.parametrize("call", [
    lambda: subpixel.align(np.zeros((4, 4)), np.zeros((4, 4, 3)), np.zeros((4, 4, 2)),
                           backend=BACKEND),
    lambda: subpixel.align(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((4, 5, 2)),
                           backend=BACKEND),
    lambda: subpixel.align(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((4, 4, 2)),
                           backend=BACKEND, step=0),
    lambda: subpixel.warp(np.zeros((4, 4, 3)), np.zeros((4, 4, 2)), patch_size=2,
                          backend=BACKEND),
    lambda: subpixel.warp(np.zeros((4, 4)), np.zeros((4, 4, 2)), patch_size=3, backend=BACKEND),
    lambda: subpixel.warp(np.zeros((4, 4, 3)), np.full((4, 4, 2), 3.5), patch_size=3,
                          backend=BACKEND),
])
def test_bad_arguments_are_one_line_input_errors(call):
    with pytest.raises(InputError) as err:
        call()
    assert "\n" not in str(err.value)
