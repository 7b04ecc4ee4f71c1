"""PatchMatch on the CPU backend against a brute-force NumPy search."""
from __future__ import annotations

import numpy as np
import pytest

from gpuanalogy.backend import cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.nnf import identity_nnf, nnf_energy, random_nnf
from gpuanalogy.patchmatch import normalize_features, patchmatch

CPU = cpu_backend()


def smooth_features(rng, height, width, channels=8, noise=0.1):
    """Random unit feature vectors with spatial correlation, like VGG feature maps."""
    f = rng.standard_normal((channels, height + 4, width + 4))
    k = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    f = np.apply_along_axis(lambda v: np.convolve(v, k, "valid"), 1, f)
    f = np.apply_along_axis(lambda v: np.convolve(v, k, "valid"), 2, f)
    f += noise * rng.standard_normal(f.shape)
    return normalize_features(f.astype(np.float32), CPU)


def white_features(rng, height, width, channels=8):
    return normalize_features(rng.standard_normal((channels, height, width)).astype(np.float32),
                              CPU)


def brute_energy(a, a_prime, b, b_prime, patch_size):
    """E[p_r, p_c, q_r, q_c]: the mean patch energy of every p -> q, in float64."""
    half = patch_size // 2
    ha, wa, _ = a.shape
    hb, wb, _ = b.shape
    fa = np.concatenate([a, a_prime], axis=2).astype(np.float64)
    fb = np.concatenate([b, b_prime], axis=2).astype(np.float64)
    total = np.zeros((ha, wa, hb, wb))
    count = np.zeros((ha, wa, hb, wb))
    for dr in range(-half, half + 1):
        for dc in range(-half, half + 1):
            ra, ca = np.arange(ha) + dr, np.arange(wa) + dc
            rb, cb = np.arange(hb) + dr, np.arange(wb) + dc
            valid_a = ((ra >= 0) & (ra < ha))[:, None] & ((ca >= 0) & (ca < wa))[None, :]
            valid_b = ((rb >= 0) & (rb < hb))[:, None] & ((cb >= 0) & (cb < wb))[None, :]
            xa = fa[np.clip(ra, 0, ha - 1)][:, np.clip(ca, 0, wa - 1)]
            xb = fb[np.clip(rb, 0, hb - 1)][:, np.clip(cb, 0, wb - 1)]
            d2 = ((xa[:, :, None, None, :] - xb[None, None, :, :, :]) ** 2).sum(-1)
            valid = valid_a[:, :, None, None] & valid_b[None, None, :, :]
            total += d2 * valid
            count += valid
    return total / count


def optimum(energy):
    ha, wa = energy.shape[:2]
    return energy.reshape(ha, wa, -1).min(axis=2)


@pytest.mark.parametrize(("shape_a", "shape_b", "patch_size"), [
    ((12, 14), (12, 14), 3),
    ((10, 13), (14, 9), 3),   # A and B of different sizes
    ((12, 14), (11, 15), 5),
])
def test_reaches_brute_force_optimum(shape_a, shape_b, patch_size):
    rng = np.random.default_rng(sum(shape_a) + sum(shape_b) + patch_size)
    a, a_prime = (smooth_features(rng, *shape_a) for _ in range(2))
    b, b_prime = (smooth_features(rng, *shape_b) for _ in range(2))
    start = random_nnf(shape_a, shape_b, 1, CPU)
    nnf, energy = patchmatch(a, a_prime, b, b_prime, start, patch_size=patch_size, radius=100,
                             iterations=10, seed=3, backend=CPU)
    brute = brute_energy(a, a_prime, b, b_prime, patch_size)
    assert nnf.shape == (*shape_a, 2) and nnf.dtype == np.int32
    assert energy.shape == shape_a and energy.dtype == np.float32
    assert nnf[..., 0].max() < shape_b[0] and nnf[..., 1].max() < shape_b[1] and nnf.min() >= 0
    # the returned energy is the energy of the returned field
    rows, cols = np.indices(shape_a)
    np.testing.assert_allclose(energy, brute[rows, cols, nnf[..., 0], nnf[..., 1]], rtol=1e-5,
                               atol=1e-6)
    assert energy.mean() <= 1.02 * optimum(brute).mean()


def test_white_noise_gets_close_to_optimum():
    """No spatial coherence (PatchMatch's worst case): still within a few percent."""
    rng = np.random.default_rng(7)
    a, a_prime, b, b_prime = (white_features(rng, 12, 14) for _ in range(4))
    _, energy = patchmatch(a, a_prime, b, b_prime, random_nnf((12, 14), (12, 14), 0, CPU),
                           patch_size=3, radius=100, iterations=10, backend=CPU)
    assert energy.mean() <= 1.06 * optimum(brute_energy(a, a_prime, b, b_prime, 3)).mean()


def test_finds_a_shift():
    """B is A shifted by (2, 3): every pixel whose shifted match exists finds it exactly."""
    rng = np.random.default_rng(11)
    big, big_prime = smooth_features(rng, 16, 19), smooth_features(rng, 16, 19)
    a, a_prime = big[:12, :14], big_prime[:12, :14]
    b, b_prime = big[2:16, 3:19], big_prime[2:16, 3:19]   # b(q) = a(q + (2, 3))
    a, a_prime, b, b_prime = (np.ascontiguousarray(x) for x in (a, a_prime, b, b_prime))
    nnf, energy = patchmatch(a, a_prime, b, b_prime, random_nnf((12, 14), (14, 16), 5, CPU),
                             patch_size=3, radius=100, iterations=10, backend=CPU)
    rows, cols = np.indices((12, 14))
    inside = (rows >= 2) & (cols >= 3)
    np.testing.assert_array_equal(nnf[..., 0][inside], rows[inside] - 2)
    np.testing.assert_array_equal(nnf[..., 1][inside], cols[inside] - 3)
    assert np.all(energy[inside] == 0.0)


def test_identity_pair_gives_identity():
    rng = np.random.default_rng(2)
    a, a_prime = smooth_features(rng, 11, 13), smooth_features(rng, 11, 13)
    nnf, energy = patchmatch(a, a_prime, a, a_prime, random_nnf((11, 13), (11, 13), 9, CPU),
                             patch_size=3, radius=100, iterations=10, backend=CPU)
    np.testing.assert_array_equal(nnf, identity_nnf((11, 13), (11, 13), CPU))
    assert np.all(energy == 0.0)


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(4)
    maps = [white_features(rng, 10, 12) for _ in range(4)]
    start = random_nnf((10, 12), (10, 12), 0, CPU)
    runs = [patchmatch(*maps, start, patch_size=3, radius=6, iterations=3, seed=s, backend=CPU)
            for s in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_serial_and_parallel_cpu_loops_agree(monkeypatch):
    """Small grids run a serial twin of each loop (``kernels.cpu.SERIAL_PIXELS``); both compile
    the same pixel body, so the field and its energies are the same to the bit."""
    import gpuanalogy.kernels.cpu as cpu_kernels

    rng = np.random.default_rng(12)
    maps = [smooth_features(rng, 20, 22, channels=37) for _ in range(4)]
    start = random_nnf((20, 22), (20, 22), 1, CPU)
    runs = []
    for serial_below in (0, 1 << 30):
        monkeypatch.setattr(cpu_kernels, "SERIAL_PIXELS", serial_below)
        runs.append(patchmatch(*maps, start, patch_size=5, radius=8, iterations=3, seed=2,
                               backend=CPU))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_does_not_modify_the_start_field_and_clamps_it():
    rng = np.random.default_rng(5)
    maps = [white_features(rng, 6, 7) for _ in range(4)]
    start = np.full((6, 7, 2), 50, dtype=np.int32)   # outside B: clamped to its corner
    kept = start.copy()
    nnf, energy = patchmatch(*maps, start, patch_size=3, radius=3, iterations=0, backend=CPU)
    np.testing.assert_array_equal(start, kept)
    assert np.all(nnf == [5, 6])
    np.testing.assert_allclose(energy, nnf_energy(*maps, nnf, 3, CPU))


def test_nnf_energy_matches_brute_force():
    rng = np.random.default_rng(6)
    a, a_prime = white_features(rng, 7, 9, 12), white_features(rng, 7, 9, 12)
    b, b_prime = white_features(rng, 8, 6, 12), white_features(rng, 8, 6, 12)
    nnf = random_nnf((7, 9), (8, 6), 3, CPU)
    brute = brute_energy(a, a_prime, b, b_prime, 5)
    rows, cols = np.indices((7, 9))
    np.testing.assert_allclose(nnf_energy(a, a_prime, b, b_prime, nnf, 5, CPU),
                               brute[rows, cols, nnf[..., 0], nnf[..., 1]], rtol=1e-5)


def test_normalize_features():
    rng = np.random.default_rng(8)
    f = rng.standard_normal((5, 4, 3)).astype(np.float32) * 10
    f[:, 1, 2] = 0.0
    n = normalize_features(f, CPU)
    assert n.shape == (4, 3, 5) and n.dtype == np.float32 and n.flags.c_contiguous
    norms = np.linalg.norm(n, axis=2)
    norms[1, 2] = 1.0
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)
    assert np.all(n[1, 2] == 0.0)
    np.testing.assert_allclose(n[2, 1] * np.linalg.norm(f[:, 2, 1]), f[:, 2, 1], rtol=1e-5)


def test_rejects_bad_arguments():
    maps = [np.zeros((4, 5, 3), np.float32)] * 4
    start = np.zeros((4, 5, 2), np.int32)
    with pytest.raises(InputError, match="odd"):
        patchmatch(*maps, start, patch_size=4, radius=2, backend=CPU)
    with pytest.raises(InputError, match="nnf"):
        patchmatch(*maps, start[:3], patch_size=3, radius=2, backend=CPU)
    with pytest.raises(InputError, match="channels"):
        patchmatch(*maps[:2], np.zeros((4, 5, 2), np.float32), np.zeros((4, 5, 2), np.float32),
                   start, patch_size=3, radius=2, backend=CPU)
