"""Motion between frames: carrying fields and maps against brute force, flows as motions, and
the PatchMatch motion search on a shifted texture."""
from __future__ import annotations

import numpy as np

from gpuanalogy.backend import get_backend
from gpuanalogy.fields import Field
from gpuanalogy.motion import (
    carry_field, carry_map, carry_positions, estimate_motion, motion_from_flow)

CPU = get_backend("cpu", quiet=True)


def random_field(rng, shape_a, shape_b):
    return np.stack([rng.integers(0, shape_b[0], shape_a), rng.integers(0, shape_b[1], shape_a)],
                    -1).astype(np.int32)


def test_carry_field_and_carry_map_read_the_previous_frame_where_the_motion_points():
    rng = np.random.default_rng(0)
    motion = Field(random_field(rng, (7, 9), (7, 9)), (7, 9))
    previous = Field(random_field(rng, (7, 9), (5, 6)), (5, 6))
    x = rng.normal(size=(4, 7, 9)).astype(np.float32)
    carried, moved = carry_field(previous, motion, CPU), carry_map(x, motion, CPU)
    for i in range(7):
        for j in range(9):
            r, c = motion.values[i, j]
            assert tuple(carried.values[i, j]) == tuple(previous.values[r, c])
            np.testing.assert_array_equal(moved[:, i, j], x[:, r, c])
    assert carried.shape_b == (5, 6) and moved.flags.c_contiguous


def test_carry_positions_moves_values_with_a_translation_and_clamps_into_the_frame():
    shape = (10, 12)
    grid = np.stack(np.meshgrid(np.arange(10), np.arange(12), indexing="ij"), -1)
    # The content moved 2 rows down and 3 columns left: backward motion is (-2, +3).
    motion = Field(np.clip(grid + [-2, 3], 0, [9, 11]).astype(np.int32), shape)
    into = Field(np.array([[[4, 5], [5, 8], [8, 2]]], np.int32), shape)
    carried = carry_positions(into, motion, CPU)
    assert carried.values.tolist() == [[[6, 2], [7, 5], [9, 0]]]   # the last one clamped


def test_a_flow_becomes_a_motion_at_every_level_scaled_to_its_grid():
    flow = np.zeros((64, 48, 2), np.float32)
    flow[..., 0], flow[..., 1] = 8.0, -4.0
    motion = motion_from_flow(flow, {1: (64, 48), 3: (16, 12)}, CPU)
    grid = np.stack(np.meshgrid(np.arange(16), np.arange(12), indexing="ij"), -1)
    expected = np.clip(grid + [2, -1], 0, [15, 11])
    np.testing.assert_array_equal(motion[3].values, expected)
    assert motion[1].values[10, 10].tolist() == [18, 6] and motion[1].shape_b == (64, 48)


def pooled(texture, level):
    factor = 2 ** (level - 1)
    c, h, w = texture.shape
    return texture.reshape(c, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def test_estimate_motion_finds_a_shift_of_a_texture_at_every_level():
    rng = np.random.default_rng(3)
    world = rng.random((6, 96, 160)).astype(np.float32)
    before, now = world[:, :, 32:128], world[:, :, 48:144]   # the camera panned 16 px right
    previous = {level: pooled(before, level) for level in range(1, 6)}
    current = {level: pooled(now, level) for level in range(1, 6)}
    motion = estimate_motion(current, previous, backend=CPU)
    for level in (1, 2, 3, 4):
        values = motion[level].values
        h, w = values.shape[:2]
        shift = 16 // 2 ** (level - 1)
        grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1)
        inside = (slice(1, h - 1), slice(1, w - 1 - shift))
        right = (values[inside] == (grid + [0, shift])[inside]).all(-1).mean()
        assert right >= 0.95, (level, right)
    assert motion[0] is motion[1]
