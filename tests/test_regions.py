"""Region labels: label images, their numbering and reduction, and the masked search and vote
against brute force."""
from __future__ import annotations

import numpy as np
import pytest

from gpuanalogy.backend import cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.nnf import random_nnf, warp
from gpuanalogy.patchmatch import patchmatch
from gpuanalogy.regions import (
    WALL, forbidden_share, label_keys, pair_labels, reduce_labels, search_labels)
from test_patchmatch import brute_energy, smooth_features

CPU = cpu_backend()


def test_label_keys_of_colours_and_integers():
    colours = np.zeros((2, 2, 3), np.uint8)
    colours[0, 1] = (255, 0, 0)
    colours[1, 1] = (0, 0, 7)
    np.testing.assert_array_equal(label_keys(colours, "x"), [[0, 0xFF0000], [0, 7]])
    np.testing.assert_array_equal(label_keys(np.array([[0, 3]], np.uint16), "x"), [[0, 3]])
    for bad in (np.zeros((2, 2, 4), np.uint8), np.zeros((2, 2), np.float32),
                np.array([[-1, 2]])):
        with pytest.raises(InputError, match="x:"):
            label_keys(bad, "x")


def test_pair_labels_numbers_both_sides_alike_and_names_a_lonely_label():
    a = np.array([[0, 0xFF0000], [0x00FF00, 0x00FF00]])
    b = np.array([[0x00FF00, 0], [0xFF0000, 0xFF0000]])
    ids_a, ids_b, count = pair_labels(a, b, ("sky.png", "sea.png"))
    assert count == 2
    np.testing.assert_array_equal(ids_a, [[0, 2], [1, 1]])
    np.testing.assert_array_equal(ids_b, [[1, 0], [2, 2]])
    b[0, 1] = 0x0000FF
    with pytest.raises(InputError, match=r"^sea\.png: label #0000ff is not in sky\.png"):
        pair_labels(a, b, ("sky.png", "sea.png"), colours=True)
    with pytest.raises(InputError, match=r"^A: label 5 is not in B"):
        pair_labels(np.array([[5]]), np.array([[0]]), ("A", "B"))
    ids_a, ids_b, count = pair_labels(np.array([[0, 4]]), np.array([[4, 4]]), ("A", "B"))
    assert count == 1 and ids_a.tolist() == [[0, 1]] and ids_b.tolist() == [[1, 1]]


def test_reduce_labels_by_majority():
    ids = np.array([[1, 1, 2, 2, 2],
                    [1, 2, 2, 0, 0],
                    [0, 0, 0, 0, 1],
                    [0, 1, 1, 1, 1]], np.int32)
    # rows {0,1} {2,3}; columns {0,1} {2,3,4}
    np.testing.assert_array_equal(reduce_labels(ids, (2, 2)), [[1, 2], [0, 1]])
    np.testing.assert_array_equal(reduce_labels(ids, ids.shape), ids)
    np.testing.assert_array_equal(reduce_labels(np.array([[1, 2]], np.int32), (2, 4)),
                                  [[1, 1, 2, 2], [1, 1, 2, 2]])   # larger: the nearest
    # a tie goes to the smaller label
    np.testing.assert_array_equal(reduce_labels(np.array([[2, 1]], np.int32), (1, 1)), [[1]])


def test_search_labels_groups_b_by_label_without_walls():
    ids_q = np.array([[2, 0, WALL], [1, 2, 0]], np.int32)
    labels = search_labels(np.ones((3, 3), np.int32), ids_q, 2, CPU)
    offsets = labels.offsets.tolist()
    assert offsets == [0, 2, 3, 5]
    assert sorted(labels.members[0:2].tolist()) == [1, 5]          # label 0
    assert labels.members[2:3].tolist() == [3]                     # label 1
    assert sorted(labels.members[3:5].tolist()) == [0, 4]          # label 2
    assert search_labels(None, ids_q, 2, CPU).labels_p.shape == (0, 0)


def halves(rng, shape, swap):
    """Labels 1 | 2 on the left and right halves (swapped when asked)."""
    ids = np.ones(shape, np.int32)
    ids[:, shape[1] // 2:] = 2
    return 3 - ids if swap else ids


@pytest.mark.parametrize(("shape_a", "shape_b", "patch_size"), [
    ((10, 12), (10, 12), 3), ((9, 11), (12, 8), 5)])
def test_masked_search_reaches_the_masked_brute_force_optimum(shape_a, shape_b, patch_size):
    rng = np.random.default_rng(sum(shape_a) + patch_size)
    a, a_prime = (smooth_features(rng, *shape_a) for _ in range(2))
    b, b_prime = (smooth_features(rng, *shape_b) for _ in range(2))
    ids_a = halves(rng, shape_a, False)
    ids_a[0, :3] = 0                        # some pixels match freely
    ids_b = halves(rng, shape_b, True)
    ids_b[-1, -2:] = 0
    labels = search_labels(ids_a, ids_b, 2, CPU)
    start = random_nnf(shape_a, shape_b, 1, CPU)
    nnf, energy = patchmatch(a, a_prime, b, b_prime, start, patch_size=patch_size, radius=100,
                             iterations=10, seed=3, labels=labels, backend=CPU)
    assert forbidden_share(nnf, labels, CPU) == 0.0
    brute = brute_energy(a, a_prime, b, b_prime, patch_size)
    allowed = (ids_a[:, :, None, None] == 0) | (ids_a[:, :, None, None] == ids_b[None, None])
    masked_optimum = np.where(allowed, brute, np.inf).reshape(*shape_a, -1).min(axis=2)
    rows, cols = np.indices(shape_a)
    np.testing.assert_allclose(energy, brute[rows, cols, nnf[..., 0], nnf[..., 1]], rtol=1e-5,
                               atol=1e-6)
    assert energy.mean() <= 1.02 * masked_optimum.mean()
    unmasked, _ = patchmatch(a, a_prime, b, b_prime, start, patch_size=patch_size, radius=100,
                             iterations=10, seed=3, backend=CPU)
    assert forbidden_share(unmasked, labels, CPU) > 0.2   # the masks changed something


def test_masks_hold_where_the_wrong_match_is_the_more_similar():
    """A's left half is copied exactly into B's right half, and B's left half holds it only
    with noise: the labels (left to left) must win over the better energy."""
    rng = np.random.default_rng(5)
    a = smooth_features(rng, 12, 16)
    b = np.empty_like(a)
    b[:, 8:] = a[:, :8]
    b[:, :8] = a[:, :8] + 0.3 * smooth_features(rng, 12, 8)
    b[:, :8] /= np.linalg.norm(b[:, :8], axis=2, keepdims=True)
    ids_a = np.where(np.arange(16) < 8, 1, 2)[None].repeat(12, 0).astype(np.int32)
    labels = search_labels(ids_a, ids_a, 2, CPU)
    start = random_nnf((12, 16), (12, 16), 0, CPU)
    kwargs = dict(patch_size=3, radius=100, iterations=6, seed=1, backend=CPU)
    free, _ = patchmatch(a, a, b, b, start, **kwargs)
    masked, _ = patchmatch(a, a, b, b, start, labels=labels, **kwargs)
    rows, cols = np.indices((12, 8))
    right = lambda f: np.mean((f[:, :8, 0] == rows) & (f[:, :8, 1] == cols))  # noqa: E731
    assert right(free) < 0.05 and right(masked) > 0.9


def brute_warp(source, nnf, half, ids_p, ids_q):
    out = np.zeros(nnf.shape[:2] + source.shape[2:])
    for r in range(nnf.shape[0]):
        for c in range(nnf.shape[1]):
            total, count = 0, 0
            for dr in range(-half, half + 1):
                for dc in range(-half, half + 1):
                    if not (0 <= r + dr < nnf.shape[0] and 0 <= c + dc < nnf.shape[1]):
                        continue
                    qr, qc = nnf[r + dr, c + dc] - (dr, dc)
                    if not (0 <= qr < source.shape[0] and 0 <= qc < source.shape[1]):
                        continue
                    lq = ids_q[qr, qc]
                    ok = lq != WALL and (ids_p[r, c] in (0, lq))
                    if (dr or dc) and not ok:
                        continue
                    total, count = total + source[qr, qc], count + 1
            out[r, c] = total / count
    return out


def test_masked_vote_takes_only_allowed_pixels():
    rng = np.random.default_rng(2)
    source = rng.random((7, 9, 3)).astype(np.float32)
    nnf = random_nnf((6, 8), (7, 9), 4, CPU)
    ids_p = rng.integers(0, 3, (6, 8)).astype(np.int32)
    ids_q = rng.integers(1, 3, (7, 9)).astype(np.int32)
    ids_q[3, :] = WALL
    labels = search_labels(ids_p, ids_q, 2, CPU)
    got = warp(source, nnf, patch_size=3, backend=CPU, labels=labels)
    np.testing.assert_allclose(got, brute_warp(source, nnf, 1, ids_p, ids_q), rtol=1e-5)
    with pytest.raises(InputError, match="region labels"):
        warp(source, nnf, patch_size=3, backend=CPU,
             labels=search_labels(ids_p[:5], ids_q, 2, CPU))


def test_a_start_field_on_walls_or_other_labels_is_repaired():
    rng = np.random.default_rng(3)
    maps = [smooth_features(rng, 6, 7) for _ in range(4)]
    ids_q = np.zeros((6, 7), np.int32)
    ids_q[:, 3] = WALL                      # an atlas of two 6 x 3 exemplars
    labels = search_labels(None, ids_q, 0, CPU)
    start = np.zeros((6, 7, 2), np.int32)
    start[..., 1] = 3                       # every match on the wall
    nnf, _ = patchmatch(*maps, start, patch_size=3, radius=0, iterations=0, seed=0,
                        labels=labels, backend=CPU)
    assert forbidden_share(nnf, labels, CPU) == 0.0
