"""Guided patch synthesis (gpuanalogy.synthesis): known answers on textured frames."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from gpuanalogy.backend import cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.synthesis import (
    Guide, SynthesisSettings, edges, match, positions, synthesize)

CPU = cpu_backend()


def texture(shape: tuple[int, int], seed: int, channels: int = 3) -> np.ndarray:
    """A smooth random colour texture in [0, 1] (every patch distinct), float32."""
    noise = np.random.default_rng(seed).standard_normal((*shape, channels))
    smooth = gaussian_filter(noise, (1.0, 1.0, 0))
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return smooth.astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def test_the_keyframe_itself_is_reproduced_exactly():
    key = texture((60, 72), 1)
    style = to_uint8(texture((60, 72), 2))
    scale = 72.0
    guides = [Guide(key, key, 2.0), Guide(edges(key), edges(key), 0.5),
              Guide(positions((60, 72), scale), positions((60, 72), scale), 0.5),
              Guide(style / np.float32(255), style / np.float32(255), 0.03)]
    done = synthesize(style, guides, backend=CPU)
    np.testing.assert_array_equal(np.rint(done.image).astype(np.uint8), style)
    np.testing.assert_array_equal(done.nnf, np.moveaxis(np.mgrid[0:60, 0:72], 0, -1))
    assert float(done.error.max()) == 0.0


def test_a_translation_is_found_from_the_identity():
    """Target = keyframe moved by (3, -4): the search finds the shift and votes the style
    moved with it, with no start but the identity (two iterations with the whole jump
    flooding at the finer levels, so that what the random search finds there spreads: the
    propagation's lighter default relies on a start carried from the frame before)."""
    world = texture((70, 90), 3)
    key, frame = world[:60, 8:88], world[3:63, 4:84]       # frame(p) = key(p + (3, -4))
    style = to_uint8(texture((60, 80), 4))
    done = synthesize(style, [Guide(key, frame, 1.0)],
                      settings=SynthesisSettings(iterations=2, jumps=(8, 4, 2, 1)), backend=CPU)
    true = np.zeros_like(style)
    true[:57, 4:] = style[3:, :76]
    interior = (slice(3, 54), slice(7, 77))
    equal = (np.rint(done.image).astype(np.uint8) == true).all(axis=2)[interior]
    assert equal.mean() >= 0.95


def test_the_positional_guide_picks_among_equal_patches():
    """A keyframe made of one tile repeated: colours alone cannot tell the copies apart, the
    positions carried by the caller can."""
    tile = texture((12, 12), 5)
    key = np.tile(tile, (5, 6, 1))                        # 60 x 72, period 12
    style = to_uint8(texture((60, 72), 6))
    where = positions((60, 72), 72.0)
    wanted = np.roll(where, (12, 12), axis=(0, 1))        # each pixel should show a copy away
    guides = [Guide(key, key, 1.0), Guide(where, wanted, 4.0)]
    done = synthesize(style, guides, settings=SynthesisSettings(levels=1, coarse_iterations=6),
                      backend=CPU)
    grid = np.moveaxis(np.mgrid[0:60, 0:72], 0, -1)
    target = (grid - 12) % np.array([60, 72])
    inner = (slice(14, 46), slice(14, 58))                 # away from the wrap's seam
    assert (done.nnf[inner] == target[inner]).all(axis=2).mean() >= 0.95


def test_match_returns_a_field_and_its_energy():
    key = texture((40, 48), 7)
    field, energy = match([Guide(key, key, 1.0)], backend=CPU)
    assert field.shape_b == (40, 48)
    assert field.values.shape == (40, 48, 2) and energy.shape == (40, 48)
    assert float(np.asarray(energy).max()) == 0.0


def test_guides_on_different_grids_and_negative_weights_are_refused():
    key = texture((30, 40), 8)
    with pytest.raises(InputError, match="guide maps"):
        match([Guide(key, key[:20], 1.0), Guide(key[:, :30], key, 1.0)], backend=CPU)
    with pytest.raises(InputError, match="positive weight"):
        match([Guide(key, key, -1.0)], backend=CPU)
    with pytest.raises(InputError, match="positive weight"):
        match([Guide(key, key, 0.0)], backend=CPU)
    with pytest.raises(InputError, match="start field"):
        match([Guide(key, key, 1.0)], start=np.zeros((3, 3, 2), np.int32), backend=CPU)
    with pytest.raises(InputError, match="style"):
        synthesize(key[:10], [Guide(key, key, 1.0)], backend=CPU)
    with pytest.raises(InputError):
        SynthesisSettings(patch_size=4)


def test_positions_and_edges():
    where = positions((3, 4), 4.0)
    assert where.shape == (3, 4, 2) and where.dtype == np.float32
    assert where[2, 3].tolist() == [0.5, 0.75]
    flat = np.full((20, 20, 3), 128, np.uint8)
    assert np.abs(edges(flat)).max() < 1e-6 and edges(flat).shape == (20, 20, 1)
