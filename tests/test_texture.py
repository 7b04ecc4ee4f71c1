"""Fields refined at the input resolution (``upsample="patchmatch"``, gpuanalogy.texture)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from gpuanalogy import AnalogyConfig, pipeline, voting
from gpuanalogy.backend import Backend, cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.fields import Field
from gpuanalogy.texture import coarse_factor, grid_scale, refine_field, search, search_radius

CPU = cpu_backend()
SHIFT = (9, 13)   # the true match of A's pixel p is p + SHIFT in B', in input pixels


def textured(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """B' (a one-pixel grain over smooth waves) and the truth A' = B' shifted by SHIFT."""
    rng = np.random.default_rng(seed)
    side = size + 2 * max(SHIFT)
    grain = gaussian_filter(rng.random((side, side, 3)), (0.8, 0.8, 0))
    grain = (grain - grain.mean()) / grain.std() * 0.12
    y, x = np.mgrid[0:side, 0:side] / size
    big = np.clip(0.5 + grain + 0.2 * np.sin(6 * x)[..., None] + 0.1 * np.cos(9 * y)[..., None],
                  0, 1).astype(np.float32)
    return big[:size, :size].copy(), big[SHIFT[0]:SHIFT[0] + size, SHIFT[1]:SHIFT[1] + size]


def high_frequency(image: np.ndarray) -> float:
    """Mean squared difference between an image (uint8 or [0, 1]) and its Gaussian blur."""
    x = image / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    return float(np.mean((x - gaussian_filter(x, (1.5, 1.5, 0))) ** 2))


def working_fields(work: tuple[int, int], scale: float, seed: int) -> tuple[Field, Field]:
    """The true fields at the working size, off by up to a working pixel in 4 x 4 blocks."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:work[0], 0:work[1]]
    jitter = rng.integers(-1, 2, (work[0] // 4 + 1, work[1] // 4 + 1, 2))
    jitter = jitter.repeat(4, 0).repeat(4, 1)[:work[0], :work[1]]
    shift = np.array(SHIFT) / scale
    fields = [np.stack([rows, cols], -1) + sign * shift + sign * jitter for sign in (1, -1)]
    return tuple(Field(np.clip(np.rint(f), 0, work[0] - 1).astype(np.int32), work)
                 for f in fields)


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_full_resolution_style_output_keeps_more_texture_than_the_cubic_one(ratio):
    exemplar, truth = textured(256)
    structure = np.clip(truth.mean(-1, keepdims=True) * [0.3, 1.0, 0.6] + 0.2, 0, 1)
    config = AnalogyConfig(ratio=ratio)
    work = pipeline.working_shape((256, 256), config)
    a = pipeline._images(structure.astype(np.float32), work)
    b_prime = pipeline._images(exemplar, work)
    nnf_ab, nnf_ba = working_fields(work, 256 / work[0], seed=1)
    a_prime, field = pipeline.vote_output(b_prime, a, nnf_ab, config, CPU)
    b, _ = pipeline.vote_output(a, b_prime, nnf_ba, config, CPU)
    textured_a_prime, refined = voting.textured(
        b_prime, a, field, a_prime, b, config.replace(upsample="patchmatch"), CPU)
    assert refined.shape == (256, 256, 2) and textured_a_prime.shape == (256, 256, 3)
    assert high_frequency(textured_a_prime) > 3 * high_frequency(a_prime)
    assert high_frequency(textured_a_prime) < 1.5 * high_frequency(exemplar)


def test_a_field_off_by_a_few_pixels_is_brought_back_to_the_truth():
    exemplar, truth = textured(96, seed=2)
    rows, cols = np.mgrid[0:96, 0:96]
    true = np.stack([rows + SHIFT[0], cols + SHIFT[1]], -1)
    rng = np.random.default_rng(3)
    start = true + rng.integers(-3, 4, (24, 24, 2)).repeat(4, 0).repeat(4, 1)
    refined = search(np.clip(start, 0, 95), truth, truth, exemplar, exemplar, patch_size=5,
                     radius=4, iterations=3, backend=CPU, strip_pixels=96 * 20)
    inner = (slice(4, 96 - 20), slice(4, 96 - 20))   # matches inside B' on both sides
    assert np.mean(np.all(refined == true, -1)[inner]) > 0.95
    assert np.mean(np.all(start == true, -1)[inner]) < 0.1


def test_coarse_to_fine_refinement_brings_a_field_a_working_pixel_off_within_a_pixel():
    # a field off by a working pixel in blocks (scale 4: 4 input pixels, 4 off on either axis)
    exemplar, truth = textured(128, seed=6)
    rows, cols = np.mgrid[0:128, 0:128]
    true = np.stack([rows + SHIFT[0], cols + SHIFT[1]], -1)
    rng = np.random.default_rng(7)
    start = np.clip(true + 4 * rng.integers(-1, 2, (32, 32, 2)).repeat(4, 0).repeat(4, 1),
                    0, 127)
    refined = refine_field(start.astype(np.float32), truth, truth, exemplar, exemplar,
                           scale=4.0, backend=CPU)
    inner = (slice(8, 128 - 24), slice(8, 128 - 24))
    before = np.abs(start - true).max(-1)[inner]
    after = np.abs(refined - true).max(-1)[inner]
    assert np.mean(before <= 1) < 0.2
    # the coarse pass (4 x 4 blocks) leaves the blocks' rounding, the fine pass moves pixels
    assert np.mean(after <= 1) > 0.85 and np.mean(after == 0) > 0.1


def test_strips_find_what_one_pass_finds():
    exemplar, truth = textured(64, seed=4)
    rows, cols = np.mgrid[0:64, 0:64]
    true = np.stack([rows + SHIFT[0], cols + SHIFT[1]], -1)
    start = np.clip(true + 2, 0, 63)
    options = dict(patch_size=5, radius=4, iterations=3, backend=CPU)
    one = search(start, truth, truth, exemplar, exemplar, **options)
    strips = search(start, truth, truth, exemplar, exemplar, strip_pixels=64 * 5, **options)
    inner = (slice(4, 64 - 20), slice(4, 64 - 20))
    assert np.mean(np.all(one == true, -1)[inner]) > 0.95
    assert np.mean(np.all(strips == true, -1)[inner]) > 0.95


def test_the_cuda_kernels_refine_as_the_cpu_ones():
    numba_cuda = pytest.importorskip("numba.cuda")
    if not numba_cuda.config.ENABLE_CUDASIM:
        pytest.skip("the comparison runs in Numba's CUDA simulator")
    import gpuanalogy.kernels.cuda as cuda_kernels

    gpu = Backend("cuda-sim", np, cuda_kernels.KERNELS)
    exemplar, truth = textured(12, seed=5)
    rows, cols = np.mgrid[0:12, 0:12]
    start = np.stack([rows, cols], -1).astype(np.float32) + 0.6   # fractional: rounded
    estimate = (truth * 255).astype(np.uint8)
    options = dict(scale=2.5, strip_pixels=12 * 5)   # coarse factor 2, then the fine pass
    np.testing.assert_array_equal(
        refine_field(start, truth, estimate, exemplar, exemplar, backend=gpu, **options),
        refine_field(start, truth, estimate, exemplar, exemplar, backend=CPU, **options))


def test_radius_and_coarse_grid_follow_the_scale_and_shapes_are_checked():
    assert grid_scale((1000, 1500), (500, 700)) == 1500 / 700
    assert search_radius(2.0) == 4 and search_radius(1.0) == 2 and search_radius(2.1) == 6
    # a power of two, never coarser than the working grid, at most 4
    assert [coarse_factor(s) for s in (1.0, 1.9, 2.0, 3.5, 4.0, 8.6, 17.0)] == [1, 1, 2, 2, 4, 4, 4]
    image = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(InputError, match="refine_field"):
        refine_field(np.zeros((8, 7, 2)), image, image, image, image, scale=2.0, backend=CPU)
