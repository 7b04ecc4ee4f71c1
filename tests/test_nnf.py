"""NNF construction, upsampling and average voting on the CPU backend, against NumPy loops."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from gpuanalogy.backend import cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.nnf import identity_nnf, random_nnf, upsample_nnf, warp

CPU = cpu_backend()


def upsample_reference(nnf, shape_a_new, shape_b_old, shape_b_new):
    """The documented rule in exact rational arithmetic, one pixel at a time."""
    old_a = nnf.shape[:2]
    out = np.empty((*shape_a_new, 2), np.int32)
    for r in range(shape_a_new[0]):
        for c in range(shape_a_new[1]):
            p = (r, c)
            parent = tuple(p[i] * old_a[i] // shape_a_new[i] for i in range(2))
            for i in range(2):
                f = Fraction(p[i] * old_a[i], shape_a_new[i]) - parent[i]
                q = (int(nnf[parent[0], parent[1], i]) + f) * Fraction(shape_b_new[i],
                                                                        shape_b_old[i])
                out[r, c, i] = min(max(int(q // 1), 0), shape_b_new[i] - 1)
    return out


def warp_reference(source, nnf, patch_size):
    half = patch_size // 2
    ha, wa = nnf.shape[:2]
    hb, wb = source.shape[:2]
    out = np.zeros((ha, wa, source.shape[2]), np.float64)
    for r in range(ha):
        for c in range(wa):
            acc, n = 0.0, 0
            for dr in range(-half, half + 1):
                for dc in range(-half, half + 1):
                    if not (0 <= r + dr < ha and 0 <= c + dc < wa):
                        continue
                    qr, qc = nnf[r + dr, c + dc] - (dr, dc)
                    if 0 <= qr < hb and 0 <= qc < wb:
                        acc = acc + source[qr, qc].astype(np.float64)
                        n += 1
            out[r, c] = acc / n
    return out


@pytest.mark.parametrize(("old_a", "new_a", "old_b", "new_b"), [
    ((5, 6), (10, 12), (4, 7), (8, 14)),        # exact doubling
    ((19, 10), (37, 19), (12, 23), (23, 45)),    # ceil-pooled VGG sizes, not multiples
    ((7, 5), (13, 11), (9, 9), (20, 17)),        # A and B at different ratios
])
def test_upsample_matches_reference(old_a, new_a, old_b, new_b):
    nnf = random_nnf(old_a, old_b, 4, CPU)
    got = upsample_nnf(nnf, new_a, new_b, CPU, shape_b_old=old_b)
    assert got.shape == (*new_a, 2) and got.dtype == np.int32
    np.testing.assert_array_equal(got, upsample_reference(nnf, new_a, old_b, new_b))


def test_upsample_exact_doubling_keeps_offsets():
    nnf = random_nnf((6, 5), (4, 8), 1, CPU)
    got = upsample_nnf(nnf, (12, 10), (8, 16), CPU, shape_b_old=(4, 8))
    rows, cols = np.indices((12, 10))
    np.testing.assert_array_equal(got[..., 0], 2 * nnf[rows // 2, cols // 2, 0] + rows % 2)
    np.testing.assert_array_equal(got[..., 1], 2 * nnf[rows // 2, cols // 2, 1] + cols % 2)


def test_upsample_identity_stays_identity():
    got = upsample_nnf(identity_nnf((19, 23), (19, 23), CPU), (37, 45), (37, 45), CPU,
                       shape_b_old=(19, 23))
    np.testing.assert_array_equal(got, identity_nnf((37, 45), (37, 45), CPU))


@pytest.mark.parametrize(("shape_a", "shape_b", "channels", "patch_size"), [
    ((9, 11), (9, 11), 3, 3),
    ((8, 10), (12, 7), 5, 5),
    ((6, 7), (5, 9), 16, 1),
])
def test_warp_matches_reference(shape_a, shape_b, channels, patch_size):
    rng = np.random.default_rng(channels)
    source = rng.standard_normal((*shape_b, channels)).astype(np.float32)
    nnf = random_nnf(shape_a, shape_b, channels, CPU)
    got = warp(source, nnf, patch_size=patch_size, backend=CPU)
    assert got.shape == (*shape_a, channels) and got.dtype == np.float32
    np.testing.assert_allclose(got, warp_reference(source, nnf, patch_size), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("patch_size", [1, 3, 5])
def test_warp_with_identity_returns_source(patch_size):
    source = np.random.default_rng(0).random((7, 8, 4)).astype(np.float32)
    got = warp(source, identity_nnf((7, 8), (7, 8), CPU), patch_size=patch_size, backend=CPU)
    np.testing.assert_allclose(got, source, rtol=1e-6)


def test_identity_nnf_scales_between_sizes():
    nnf = identity_nnf((4, 6), (8, 3), CPU)
    assert nnf.dtype == np.int32 and nnf.shape == (4, 6, 2)
    np.testing.assert_array_equal(nnf[:, 0, 0], [0, 2, 4, 6])
    np.testing.assert_array_equal(nnf[0, :, 1], [0, 0, 1, 1, 2, 2])


def test_random_nnf_is_uniform_in_b_and_seeded():
    a = random_nnf((40, 50), (7, 9), 3, CPU)
    assert a.dtype == np.int32 and a.shape == (40, 50, 2)
    assert a[..., 0].min() == 0 and a[..., 0].max() == 6
    assert a[..., 1].min() == 0 and a[..., 1].max() == 8
    counts = np.bincount(a[..., 0].ravel(), minlength=7)
    assert counts.min() > 0.6 * counts.mean()
    np.testing.assert_array_equal(a, random_nnf((40, 50), (7, 9), 3, CPU))
    assert not np.array_equal(a, random_nnf((40, 50), (7, 9), 4, CPU))


def test_rejects_bad_arguments():
    nnf = np.zeros((4, 4, 2), np.int32)
    with pytest.raises(InputError, match="odd"):
        warp(np.zeros((4, 4, 3), np.float32), nnf, patch_size=2, backend=CPU)
    with pytest.raises(InputError, match="outside"):
        warp(np.zeros((2, 2, 3), np.float32), nnf + 3, patch_size=3, backend=CPU)
    with pytest.raises(InputError, match="nnf"):
        upsample_nnf(nnf[..., :1], (8, 8), (8, 8), CPU, shape_b_old=(4, 4))
