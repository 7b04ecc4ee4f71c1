"""Region masks and several exemplars on known answers, end to end (slow).

The cases are benchmarks/guided.py's (see its docstring), made here at 200 px and run at ratio
0.5 with 10 L-BFGS iterations to stay quick; the benchmark runs them at the official settings
and docs/performance.md ("Guided analogies") holds its figures.
"""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data
from skimage.transform import resize

from gpuanalogy import AnalogyConfig, analogy
from gpuanalogy.features import load_network

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::gpuanalogy.pipeline.SizeNotice")]
SIZE = 200
CONFIG = AnalogyConfig(ratio=0.5, lbfgs_iterations=10, device="cpu")

SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


def retone(image, kind):
    out = image[..., [2, 0, 1]] if kind == 0 else image @ SEPIA.T if kind == 1 else \
        image[..., [1, 2, 0]] @ SEPIA.T
    return np.clip((out - 0.5) * 1.4 + 0.5, 0, 1)


def rotated(image, degrees):
    """``image`` rotated about its centre (cubic, reflected borders) and the map p -> T(p)."""
    from scipy import ndimage

    h, w = image.shape[:2]
    t = np.deg2rad(degrees)
    matrix = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    centre = np.array([h / 2, w / 2])
    points = np.stack(np.mgrid[0:h, 0:w], -1).reshape(-1, 2).astype(float)
    source = (points - centre) @ np.linalg.inv(matrix).T + centre
    out = np.stack([ndimage.map_coordinates(image[..., c], source.T, order=3, mode="reflect")
                    for c in range(3)], -1).reshape(h, w, 3)
    return np.clip(out, 0, 1), lambda p: (p - centre) @ matrix.T + centre


def photo(name, shape):
    image = getattr(data, name)()
    h, w = image.shape[:2]
    side = min(h, w)
    crop = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    return resize(crop, shape, order=3, anti_aliasing=True)


def psnr(x, truth):
    x = x.astype(np.float64) / 255 if x.dtype == np.uint8 else x
    return 10 * np.log10(1.0 / np.mean((np.clip(x, 0, 1) - truth) ** 2))


@pytest.fixture(scope="module")
def model():
    return load_network(None, "cpu")


def test_masks_send_each_half_to_its_own_where_the_wrong_one_is_the_more_similar(model):
    half = SIZE // 2
    x = photo("chelsea", (SIZE, half))
    warped, forward = rotated(x, 4.0)
    a = np.concatenate([x, x], axis=1)
    b_prime = np.concatenate([retone(warped, 1), retone(x, 0)], axis=1)
    truth = np.concatenate([retone(x, 1), retone(x, 0)], axis=1)
    labels = np.where(np.arange(SIZE) < half, 1, 2)[None].repeat(SIZE, 0)
    true = np.stack(np.mgrid[0:SIZE, 0:SIZE], -1).astype(float)
    true[:, :half] = forward(true[:, :half].reshape(-1, 2)).reshape(SIZE, half, 2)
    inside = np.all((true >= 0) & (true <= [SIZE - 1, SIZE - 1]), -1)
    scores = {}
    for masked in (False, True):
        result = analogy(a.astype(np.float32), b_prime.astype(np.float32), CONFIG, model=model,
                         regions=(labels, labels) if masked else None)
        field = result.nnf_ab
        region = (field[..., 1] >= half) == (labels == 2)
        near = np.linalg.norm(field - true, axis=-1) <= 4     # two working pixels
        scores[masked] = (region.mean(), (region & near)[inside].mean(),
                          psnr(result.a_prime, truth))
    assert scores[True][0] == 1.0 and scores[False][0] < 0.9
    assert scores[True][1] >= 0.9 > scores[False][1]
    assert scores[True][2] >= scores[False][2] + 3


def test_two_exemplars_beat_each_alone_and_say_which_one_each_match_is_in(model):
    half = SIZE // 2
    p1, p2 = photo("coffee", (SIZE, SIZE)), photo("astronaut", (SIZE, SIZE))
    a = np.concatenate([p1[:, :half], p2[:, half:]], axis=1).astype(np.float32)
    exemplars = [retone(rotated(p1, 3.0)[0], 1).astype(np.float32),
                 retone(rotated(p2, -3.0)[0], 2).astype(np.float32)]
    truth = np.concatenate([retone(p1, 1)[:, :half], retone(p2, 2)[:, half:]], axis=1)
    both = analogy(a, exemplars, CONFIG, model=model)
    alone = [analogy(a, [exemplar], CONFIG, model=model) for exemplar in exemplars]
    assert len(both.b) == 2 and both.b[1].shape == (SIZE, SIZE, 3)
    assert both.exemplar_ab.shape == (SIZE, SIZE) and len(alone[0].b) == 1
    index = np.where(np.arange(SIZE) < half, 0, 1)[None]
    assert np.mean(both.exemplar_ab == index) >= 0.9
    assert all(psnr(both.a_prime, truth) >= psnr(one.a_prime, truth) + 2 for one in alone)
