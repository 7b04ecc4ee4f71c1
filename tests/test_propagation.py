"""A keyframe carried along a clip (gpuanalogy.propagation): known answers."""
from __future__ import annotations

import numpy as np
import pytest

from gpuanalogy.backend import cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.propagation import (
    Propagation, blend, frame_motion, screened_poisson, unexplained)
from gpuanalogy.synthesis import Synthesis
from test_synthesis import texture, to_uint8

CPU = cpu_backend()


def test_a_frame_equal_to_the_keyframe_is_the_keyframe_s_style():
    key = to_uint8(texture((56, 64), 11))
    style = to_uint8(texture((56, 64), 12))
    chain = Propagation(key, style, backend=CPU)
    for _ in range(2):   # and again from its own result
        np.testing.assert_array_equal(to_uint8(chain.step(key).image), style)


@pytest.mark.parametrize("given_flow", [False, True])
def test_a_pure_translation_carries_the_style_with_it(given_flow):
    """Frames t = 1, 2 show the keyframe's content moved by (2, 3) per frame; the propagated
    frame equals the style moved alike on at least 95 % of the interior."""
    world = to_uint8(texture((72, 96), 13))
    frames = [np.ascontiguousarray(world[8 - 2 * t:64 - 2 * t, 12 - 3 * t:88 - 3 * t])
              for t in range(3)]                        # frame t (p) = frame 0 (p - t (2, 3))
    style = to_uint8(texture((56, 76), 14))
    chain = Propagation(frames[0], style, backend=CPU)
    for t in (1, 2):
        flow = np.broadcast_to(np.float32([-2, -3]), (56, 76, 2)) if given_flow else None
        done = chain.step(frames[t], flow=flow)
        dy, dx = 2 * t, 3 * t
        true = np.zeros_like(style)
        true[dy:, dx:] = style[:56 - dy, :76 - dx]
        interior = (slice(dy + 3, 53), slice(dx + 3, 73))
        equal = (to_uint8(done.image) == true).all(axis=2)[interior]
        assert equal.mean() >= 0.95, (t, equal.mean())


def test_frame_motion_finds_a_translation():
    world = texture((60, 80), 15)
    previous, current = world[4:52, 4:68], world[2:50, 7:71]   # current(p) = previous(p + (-2, 3))
    motion = frame_motion(current, previous, backend=CPU)
    grid = np.moveaxis(np.mgrid[0:48, 0:64], 0, -1)
    inner = (slice(4, 44), slice(2, 56))
    assert ((motion - grid)[inner] == [-2, 3]).all(axis=2).mean() >= 0.95


def _synthesis(image: np.ndarray, error: float) -> Synthesis:
    shape = image.shape[:2]
    return Synthesis(image, np.zeros((*shape, 2), np.int32), np.full(shape, error, np.float32))


@pytest.mark.parametrize("method", ["error", "poisson"])
def test_blend_of_agreeing_sides_is_their_image(method):
    image = texture((30, 40), 16)
    mixed = blend(_synthesis(image, 0.01), _synthesis(image, 0.02), share=0.3, method=method)
    np.testing.assert_allclose(mixed, image, atol=1e-5)


@pytest.mark.parametrize("method", ["error", "poisson"])
def test_blend_follows_the_side_with_the_lower_error(method):
    good, bad = texture((30, 40), 17), texture((30, 40), 18)
    mixed = blend(_synthesis(good, 1e-6), _synthesis(bad, 1.0), share=0.5, method=method)
    assert np.abs(mixed - good).mean() < 0.01 < np.abs(mixed - bad).mean()


def test_screened_poisson_solves_its_system():
    rng = np.random.default_rng(19)
    data, gy, gx = (rng.random(s) for s in ((9, 11, 2), (8, 11, 2), (9, 10, 2)))
    u = screened_poisson(data, gy, gx, 0.3)
    # the gradient of the energy vanishes: 0.3 (u - data) + D^T (D u - g) = 0
    residual = 0.3 * (u - data)
    ry, rx = np.diff(u, axis=0) - gy, np.diff(u, axis=1) - gx
    residual[:-1] -= ry
    residual[1:] += ry
    residual[:, :-1] -= rx
    residual[:, 1:] += rx
    assert np.abs(residual).max() < 1e-10


def test_unexplained_grows_with_content_the_keyframe_lacks():
    key = to_uint8(texture((60, 80), 20))
    grid = np.moveaxis(np.mgrid[0:60, 0:80], 0, -1).astype(np.int32)
    assert unexplained(key, key, grid) == 0.0
    moved = np.ascontiguousarray(np.roll(key, (3, -2), axis=(0, 1)))
    shifted = (grid - [3, -2]) % [60, 80]
    assert unexplained(moved, key, shifted) < 0.12               # only the wrapped seams
    chain = Propagation(key, key, backend=CPU)
    frame = key.copy()
    frame[10:40, 20:60] = to_uint8(texture((30, 40), 21)) // 3  # new dark content, 25 %
    assert 0.15 < unexplained(frame, key, chain.step(frame).nnf) < 0.35
    scattered = np.random.default_rng(1).integers(0, 60, (60, 80, 2)).astype(np.int32)
    assert unexplained(key, key, scattered) == 1.0


def test_bad_inputs_are_refused():
    key = to_uint8(texture((40, 48), 22))
    with pytest.raises(InputError, match="style"):
        Propagation(key, key[:36], backend=CPU)
    chain = Propagation(key, key, backend=CPU)
    with pytest.raises(InputError, match="differs"):
        chain.step(key[:36])
    with pytest.raises(InputError, match="blend"):
        blend(_synthesis(key / 255.0, 0), _synthesis(key / 255.0, 0), method="median")
