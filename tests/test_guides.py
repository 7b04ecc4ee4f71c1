"""A run's guides: region labels on every grid, atlas walls, the user's label images checked."""
from __future__ import annotations

import numpy as np
import pytest

from gpuanalogy import AnalogyConfig
from gpuanalogy.backend import cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.guides import Guides, guides_for
from gpuanalogy.regions import WALL
from gpuanalogy.sizes import memory_needed

CPU = cpu_backend()


def halves(shape, left=1, right=2):
    ids = np.full(shape, left, np.int32)
    ids[:, shape[1] // 2:] = right
    return ids


def test_no_masks_and_one_exemplar_need_no_guides():
    shapes = [((40, 50), (40, 50)), ((30, 60), (30, 60))]
    assert guides_for(None, shapes, ("a", "b")) is None
    zeros = np.zeros((40, 50), np.int32), np.zeros((30, 60), np.int32)
    assert guides_for(zeros, shapes, ("a", "b")) is None     # nothing labelled


def test_labels_on_every_grid_of_one_exemplar():
    shapes = [((80, 64), (40, 32)), ((60, 48), (30, 24))]
    guides = guides_for((halves((80, 64)), halves((60, 48), 2, 1)), shapes, ("a", "b"))
    np.testing.assert_array_equal(guides.side("a", (80, 64)), halves((80, 64)))   # input size
    np.testing.assert_array_equal(guides.side("a", (40, 32)), halves((40, 32)))   # working
    np.testing.assert_array_equal(guides.side("a", (3, 2)), [[1, 2]] * 3)        # a level
    np.testing.assert_array_equal(guides.side("b", (2, 2)), [[2, 1]] * 2)
    ab = guides.labels("ab", (3, 2), (2, 2), CPU)
    assert ab.labels_p.tolist() == [[1, 2]] * 3 and ab.labels_q.tolist() == [[2, 1]] * 2
    ba = guides.labels("ba", (3, 2), (2, 2), CPU)
    assert ba.labels_p.tolist() == [[2, 1]] * 2 and ba.labels_q.tolist() == [[1, 2]] * 3
    assert guides.labels("ab", (3, 2), (2, 2), CPU) is ab        # made once


def test_an_atlas_has_walls_on_every_grid_and_its_exemplars_labels():
    shapes = [((64, 64), (64, 64)), ((48, 40), (48, 40)), ((64, 30), (64, 30))]
    guides = guides_for(None, shapes, ("a", "b1", "b2"))
    work, _ = guides.atlas
    assert work.origins == (0, 80) and work.shape == (64, 112)
    walls = guides.side("b", work.shape)
    assert (walls[:48, :40] == 0).all() and (walls[48:, :40] == WALL).all()
    assert (walls[:, 40:80] == WALL).all() and (walls[:, 80:110] == 0).all()
    level5 = guides.side("b", (4, 7))
    assert level5.tolist() == [[0, 0, 0, WALL, WALL, 0, 0]] * 3 + [[WALL] * 5 + [0, 0]]
    assert guides.labels("ba", (4, 4), (4, 7), CPU) is None          # A unlabelled: free
    ab = guides.labels("ab", (4, 4), (4, 7), CPU)
    assert ab.labels_p.shape == (0, 0) and (ab.labels_q == level5).all()
    # with masks: each exemplar's labels in its slot
    masked = guides_for((halves((64, 64)), [halves((48, 40)), np.full((64, 30), 2)]), shapes,
                        ("a", "b1", "b2"))
    placed = masked.side("b", work.shape)
    assert (placed[:48, :20] == 1).all() and (placed[:48, 20:40] == 2).all()
    assert (placed[:, 80:110] == 2).all() and (placed[:, 40:80] == WALL).all()
    assert masked.exemplar(1).side("b", (64, 30)).tolist() == np.full((64, 30), 2).tolist()


def test_bad_label_images_are_named():
    shapes = [((40, 50), (40, 50)), ((30, 60), (30, 60))]
    names = ("cat.png", "ink.png")
    with pytest.raises(InputError, match=r"^the regions of ink\.png: 50x30 labels for a 60x30"):
        guides_for((halves((40, 50)), halves((30, 50))), shapes, names)
    with pytest.raises(InputError, match="label 3 is not in the regions of ink.png"):
        guides_for((halves((40, 50), 1, 3), halves((30, 60))), shapes, names)
    colours = np.zeros((30, 60, 3), np.uint8)
    with pytest.raises(InputError, match="colour and integer label images do not mix"):
        guides_for((halves((40, 50)), colours), shapes, names)
    red = np.zeros((40, 50, 3), np.uint8)
    red[:, :10] = (255, 0, 0)
    with pytest.raises(InputError, match="#ff0000 is not in"):
        guides_for((red, colours), shapes, names)
    with pytest.raises(InputError, match="2 label images for the exemplars, but 1"):
        guides_for((halves((40, 50)), [halves((30, 60))] * 2), shapes, names)


def test_the_memory_check_counts_every_exemplar_and_the_walls():
    config = AnalogyConfig()
    one = memory_needed(((400, 400), (400, 400)), config)
    two = memory_needed(((400, 400), (400, 400), (400, 400)), config)
    three = memory_needed(((400, 400), (400, 400), (400, 400), (400, 400)), config)
    assert one.total < two.total < three.total
    step = 5 * 1024 * 400 * 400     # one more exemplar's working pixels at least
    assert two.total - one.total > step and three.total - two.total > step
