import numpy as np
import pytest

from gpuanalogy.blending import ALPHA_PRESETS, alpha_for_level, blend, response_mask


def test_alpha_presets_follow_the_official_table():
    assert alpha_for_level(3, 4) == 0.9 and alpha_for_level(3, 1) == 0.2
    assert [alpha_for_level(2, lv) for lv in (4, 3, 2, 1)] == [0.8, 0.7, 0.6, 0.1]
    assert ALPHA_PRESETS[1] == (0.7, 0.6, 0.5, 0.0)


def _features():
    rng = np.random.default_rng(0)
    f = np.zeros((8, 10, 12), np.float32)
    f[:, 3:6, 4:9] = rng.uniform(1, 2, (8, 3, 5))   # a strong block on a silent background
    f[:, 0, 0] = 0.05                                 # a faint pixel just above zero
    return f


@pytest.mark.parametrize("kind", ["sigmoid", "hard"])
def test_mask_is_high_on_strong_response_and_low_elsewhere(kind):
    mask = response_mask(_features(), kind=kind, xp=np)
    assert mask.shape == (1, 10, 12) and mask.dtype == np.float32
    assert mask.min() >= 0 and mask.max() <= 1
    assert mask[0, 3:6, 4:9].min() > 0.99
    assert mask[0, 8:, :].max() < 0.01
    assert mask[0, 0, 0] < 0.01


def test_sigmoid_mask_is_half_at_the_threshold():
    f = np.zeros((1, 1, 3), np.float32)
    f[0, 0] = [0.0, np.sqrt(0.05), 1.0]               # normalised energies 0, 0.05, 1
    mask = response_mask(f, kind="sigmoid", k=300, tau=0.05, xp=np)
    np.testing.assert_allclose(mask[0, 0], [1 / (1 + np.exp(15)), 0.5, 1.0], atol=1e-6)


def test_blend_mixes_by_weight():
    s, r = np.full((2, 3, 3), 4.0, np.float32), np.zeros((2, 3, 3), np.float32)
    w = np.array([[[0.0, 0.5, 1.0]] * 3], np.float32)
    np.testing.assert_allclose(blend(s, r, w)[1], [[0, 2, 4]] * 3)
