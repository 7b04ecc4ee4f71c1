"""Every CUDA kernel against its CPU twin.

Without a GPU the kernels run in Numba's CUDA simulator (``conftest.py`` sets
``NUMBA_ENABLE_CUDASIM=1``) on NumPy arrays; on a GPU machine they run for real on CuPy arrays
when CuPy is installed. Inputs are tiny because the simulator runs each thread in Python.
"""
from __future__ import annotations

import numpy as np
import pytest

numba_cuda = pytest.importorskip("numba.cuda")

import gpuanalogy.kernels.cuda as cuda_kernels  # noqa: E402
from gpuanalogy.backend import Backend, cpu_backend  # noqa: E402
from gpuanalogy.nnf import identity_nnf, nnf_energy, random_nnf, upsample_nnf, warp  # noqa: E402
from gpuanalogy.patchmatch import normalize_features, patchmatch  # noqa: E402

CPU = cpu_backend()
SIMULATED = bool(numba_cuda.config.ENABLE_CUDASIM)


def _gpu_backend() -> Backend:
    if SIMULATED:
        return Backend("cuda-sim", np, cuda_kernels.KERNELS)
    if not numba_cuda.is_available():
        pytest.skip("no CUDA device and the simulator is off")
    cupy = pytest.importorskip("cupy")
    return Backend("cuda", cupy, cuda_kernels.KERNELS)


@pytest.fixture(scope="module")
def gpu() -> Backend:
    return _gpu_backend()


def features(rng, height, width, channels=4):
    return normalize_features(rng.standard_normal((channels, height, width)).astype(np.float32),
                              CPU)


def test_both_kernel_modules_compile_every_kernel_of_the_api():
    import gpuanalogy.kernels.cpu as cpu_kernels
    from gpuanalogy.kernels import _api

    assert tuple(cpu_kernels._LOOPS) == tuple(cuda_kernels._THREADS) == _api.KERNEL_NAMES
    assert cpu_kernels.KERNELS.name == "cpu" and cuda_kernels.KERNELS.name == "cuda"


def test_random_and_identity_nnf(gpu):
    np.testing.assert_array_equal(gpu.to_numpy(random_nnf((8, 9), (7, 10), 3, gpu)),
                                  random_nnf((8, 9), (7, 10), 3, CPU))
    np.testing.assert_array_equal(gpu.to_numpy(identity_nnf((8, 9), (5, 12), gpu)),
                                  identity_nnf((8, 9), (5, 12), CPU))


@pytest.mark.parametrize(("old_a", "new_a", "old_b", "new_b"), [
    ((4, 5), (8, 10), (5, 4), (10, 8)),
    ((5, 4), (9, 7), (6, 5), (11, 10)),
])
def test_upsample_equal(gpu, old_a, new_a, old_b, new_b):
    nnf = random_nnf(old_a, old_b, 2, CPU)
    want = upsample_nnf(nnf, new_a, new_b, CPU, shape_b_old=old_b)
    got = upsample_nnf(gpu.asarray(nnf), new_a, new_b, gpu, shape_b_old=old_b)
    np.testing.assert_array_equal(gpu.to_numpy(got), want)


@pytest.mark.parametrize(("channels", "patch_size"), [(3, 3), (9, 5)])
def test_warp_equal(gpu, channels, patch_size):
    rng = np.random.default_rng(channels)
    source = rng.standard_normal((7, 10, channels)).astype(np.float32)
    nnf = random_nnf((8, 9), (7, 10), 1, CPU)
    want = warp(source, nnf, patch_size=patch_size, backend=CPU)
    got = warp(gpu.asarray(source), gpu.asarray(nnf), patch_size=patch_size, backend=gpu)
    np.testing.assert_allclose(gpu.to_numpy(got), want, rtol=1e-6, atol=1e-6)


def test_nnf_energy_equal(gpu):
    rng = np.random.default_rng(3)
    maps = [features(rng, 8, 9, 11), features(rng, 8, 9, 11),
            features(rng, 7, 10, 11), features(rng, 7, 10, 11)]
    nnf = random_nnf((8, 9), (7, 10), 5, CPU)
    want = nnf_energy(*maps, nnf, 3, CPU)
    got = nnf_energy(*(gpu.asarray(m) for m in maps), gpu.asarray(nnf), 3, gpu)
    np.testing.assert_allclose(gpu.to_numpy(got), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("channels", "patch_size", "radius"), [(4, 3, 100), (16, 5, 4)])
def test_patchmatch_equal(gpu, channels, patch_size, radius):
    """Same random streams, the same sums but for their order (the CPU kernels reassociate
    them, a real GPU contracts multiply-adds): energies equal to rounding, and in the
    simulator the same field, since no two candidates here are within rounding of each other
    (on a real GPU only the energy is compared)."""
    rng = np.random.default_rng(channels)
    maps = [features(rng, 8, 9, channels), features(rng, 8, 9, channels),
            features(rng, 7, 10, channels), features(rng, 7, 10, channels)]
    start = random_nnf((8, 9), (7, 10), 0, CPU)
    kwargs = dict(patch_size=patch_size, radius=radius, iterations=2, seed=7)
    nnf_cpu, e_cpu = patchmatch(*maps, start, backend=CPU, **kwargs)
    nnf_gpu, e_gpu = patchmatch(*(gpu.asarray(m) for m in maps), gpu.asarray(start),
                                backend=gpu, **kwargs)
    nnf_gpu, e_gpu = gpu.to_numpy(nnf_gpu), gpu.to_numpy(e_gpu)
    assert e_gpu.mean() <= e_cpu.mean() * (1 + 1e-5)
    np.testing.assert_allclose(e_gpu, nnf_energy(*maps, nnf_gpu, patch_size, CPU), rtol=1e-5,
                               atol=1e-6)
    if SIMULATED:
        np.testing.assert_array_equal(nnf_gpu, nnf_cpu)
        np.testing.assert_allclose(e_gpu, e_cpu, rtol=1e-6)


def _labelled(rng, shape_a, shape_b, backend):
    """Labels 0..2 on A, 1..2 and a wall column on B, on ``backend``."""
    from gpuanalogy.regions import WALL, search_labels

    ids_a = rng.integers(0, 3, shape_a).astype(np.int32)
    ids_b = np.where(np.arange(shape_b[1]) < shape_b[1] // 2, 1, 2)[None].repeat(shape_b[0], 0)
    ids_b[:, shape_b[1] // 2] = WALL
    return search_labels(ids_a, ids_b.astype(np.int32), 2, backend)


def test_masked_patchmatch_and_vote_equal(gpu):
    """Region labels (start field repaired, forbidden candidates skipped, draws among allowed
    pixels, the masked vote): the same field and the same votes on both backends."""
    from gpuanalogy.regions import forbidden_share

    rng = np.random.default_rng(11)
    maps = [features(rng, 8, 9, 5), features(rng, 8, 9, 5),
            features(rng, 7, 10, 5), features(rng, 7, 10, 5)]
    start = random_nnf((8, 9), (7, 10), 0, CPU)
    kwargs = dict(patch_size=3, radius=3, iterations=2, seed=4)
    labels_cpu = _labelled(np.random.default_rng(1), (8, 9), (7, 10), CPU)
    labels_gpu = _labelled(np.random.default_rng(1), (8, 9), (7, 10), gpu)
    nnf_cpu, e_cpu = patchmatch(*maps, start, backend=CPU, labels=labels_cpu, **kwargs)
    nnf_gpu, e_gpu = patchmatch(*(gpu.asarray(m) for m in maps), gpu.asarray(start),
                                backend=gpu, labels=labels_gpu, **kwargs)
    assert forbidden_share(nnf_cpu, labels_cpu, CPU) == 0.0
    assert forbidden_share(gpu.to_numpy(nnf_gpu), labels_cpu, CPU) == 0.0
    source = rng.random((7, 10, 3)).astype(np.float32)
    want = warp(source, nnf_cpu, patch_size=3, backend=CPU, labels=labels_cpu)
    got = warp(gpu.asarray(source), gpu.asarray(nnf_cpu), patch_size=3, backend=gpu,
               labels=labels_gpu)
    np.testing.assert_allclose(gpu.to_numpy(got), want, rtol=1e-6, atol=1e-6)
    if SIMULATED:
        np.testing.assert_array_equal(gpu.to_numpy(nnf_gpu), nnf_cpu)
        np.testing.assert_allclose(gpu.to_numpy(e_gpu), e_cpu, rtol=1e-6)


def test_guided_synthesis_matches_the_cpu(gpu):
    """The keyframe synthesis (PatchMatch over stacked guides, then the vote) on both."""
    from gpuanalogy.synthesis import Guide, SynthesisSettings, positions, synthesize

    rng = np.random.default_rng(7)
    key, frame = (rng.random((12, 14, 3), dtype=np.float32) for _ in range(2))
    style = rng.random((12, 14, 3), dtype=np.float32)
    guides = [Guide(key, frame, 1.0), Guide(positions((12, 14), 14), positions((12, 14), 14),
                                            0.5)]
    settings = SynthesisSettings(patch_size=3, levels=1, coarse_iterations=1)
    on_cpu = synthesize(style, guides, settings=settings, seed=3, backend=CPU)
    on_gpu = synthesize(style, guides, settings=settings, seed=3, backend=gpu)
    np.testing.assert_array_equal(on_gpu.nnf, on_cpu.nnf)
    np.testing.assert_array_equal(on_gpu.error, on_cpu.error)
    np.testing.assert_array_equal(on_gpu.image, on_cpu.image)
