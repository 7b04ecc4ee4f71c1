"""The atlas of several exemplars: layout, walls, locating matches, per-exemplar upsampling."""
from __future__ import annotations

import numpy as np

from gpuanalogy.atlas import Atlas, upsample
from gpuanalogy.backend import cpu_backend
from gpuanalogy.nnf import random_nnf, upsample_nnf, warp
from gpuanalogy.patchmatch import patchmatch
from gpuanalogy.regions import WALL, forbidden_share, search_labels
from test_patchmatch import smooth_features

CPU = cpu_backend()


def test_layout_walls_and_edges():
    atlas = Atlas.side_by_side([(2, 3), (3, 2)], border=3)
    assert atlas.origins == (0, 6) and atlas.shape == (3, 8)
    one = np.arange(6, dtype=np.float32).reshape(2, 3, 1)
    two = 10 + np.arange(6, dtype=np.float32).reshape(3, 2, 1)
    got = atlas.assemble([one, two], np)[..., 0]
    np.testing.assert_array_equal(got, [[0, 1, 2, 2, 2, 10, 10, 11],
                                        [3, 4, 5, 5, 5, 12, 12, 13],
                                        [3, 4, 5, 5, 5, 14, 14, 15]])
    labels = atlas.labels([np.full((2, 3), 1), np.full((3, 2), 2)])
    np.testing.assert_array_equal(labels, [[1, 1, 1, WALL, WALL, WALL, 2, 2],
                                           [1, 1, 1, WALL, WALL, WALL, 2, 2],
                                           [WALL, WALL, WALL, WALL, WALL, WALL, 2, 2]])
    chw = atlas.assemble([one.transpose(2, 0, 1), two.transpose(2, 0, 1)], np,
                         channels_first=True)
    np.testing.assert_array_equal(chw[0], got)
    np.testing.assert_array_equal(atlas.cut(got, 1), two[..., 0])


def test_aligned_layout_halves_down_the_levels():
    atlas = Atlas.side_by_side([(50, 37), (45, 70)], border=32, align=16)
    assert atlas.origins == (0, 80) and atlas.shape == (64, 160)
    level5 = atlas.reduced(16)
    assert level5.shapes == ((4, 3), (3, 5)) and level5.origins == (0, 5)
    assert level5.shape == (4, 10)
    labels = level5.labels()
    assert (labels[:, 3:5] == WALL).all() and (labels[3:, 5:] == WALL).all()


def test_locate_and_place_are_inverse():
    atlas = Atlas.side_by_side([(4, 5), (6, 3), (2, 2)], border=5)
    values = np.array([[[1, 0], [3, 4], [5, 10], [0, 12], [1, 19]]], np.int32)
    index, local = atlas.locate(values, np)
    assert index.tolist() == [[0, 0, 1, 1, 2]]
    assert local.tolist() == [[[1, 0], [3, 4], [5, 0], [0, 2], [1, 1]]]
    np.testing.assert_array_equal(atlas.place(index, local, np), values)


def test_upsample_is_upsample_nnf_exemplar_by_exemplar():
    old = Atlas.side_by_side([(5, 4), (3, 6)], border=3)
    new = Atlas.side_by_side([(10, 7), (6, 11)], border=5)
    index = (np.random.default_rng(0).random((6, 7)) < 0.5).astype(np.int32)
    local = np.where(index[..., None] == 0, random_nnf((6, 7), (5, 4), 1, CPU),
                     random_nnf((6, 7), (3, 6), 2, CPU)).astype(np.int32)
    got = upsample(old.place(index, local, np), old, new, (12, 13), np)
    got_index, got_local = new.locate(got, np)
    parent = index[np.arange(12)[:, None] // 2, (np.arange(13)[None, :] * 7) // 13]
    np.testing.assert_array_equal(got_index, parent)
    for k in (0, 1):
        inside = np.minimum(local, np.array(old.shapes[k]) - 1)
        want = upsample_nnf(inside, (12, 13), new.shapes[k], CPU, shape_b_old=old.shapes[k])
        np.testing.assert_array_equal(got_local[parent == k], want[parent == k])
    single = Atlas.side_by_side([(5, 4)], border=3)
    np.testing.assert_array_equal(
        upsample(random_nnf((6, 7), (5, 4), 3, CPU), single,
                 Atlas.side_by_side([(10, 7)], 5), (11, 13), np),
        upsample_nnf(random_nnf((6, 7), (5, 4), 3, CPU), (11, 13), (10, 7), CPU,
                     shape_b_old=(5, 4)))


def test_one_search_over_two_exemplars_finds_each_half_in_its_exemplar():
    """A is B1's left half beside B2's right half: the search over the atlas (walls as labels)
    sends each half into its own exemplar, and the vote reads no wall."""
    rng = np.random.default_rng(4)
    b1, b2 = smooth_features(rng, 10, 12), smooth_features(rng, 9, 12)
    a = np.concatenate([b1[:9, :6], b2[:, 6:]], axis=1)
    atlas = Atlas.side_by_side([(10, 12), (9, 12)], border=3)
    maps = atlas.assemble([b1, b2], np)
    labels = search_labels(None, atlas.labels(), 0, CPU)
    start = random_nnf((9, 12), atlas.shape, 0, CPU)
    field, _ = patchmatch(a, a, maps, maps, start, patch_size=3, radius=100, iterations=6,
                          seed=2, labels=labels, backend=CPU)
    assert forbidden_share(field, labels, CPU) == 0.0
    index, local = atlas.locate(field, np)
    rows, cols = np.indices((9, 12))
    assert (index == (cols >= 6)).mean() > 0.95
    assert ((local[..., 0] == rows) & (local[..., 1] == cols)).mean() > 0.9
    voted = warp(maps, field, patch_size=3, backend=CPU, labels=labels)
    away_from_the_seam = np.abs(voted - a)[:, np.r_[0:4, 8:12]]
    assert np.median(away_from_the_seam) < 1e-6 and away_from_the_seam.mean() < 0.05
