"""Window means and the per-pixel 3 x 3 inverse, against brute force."""
import numpy as np

from gpuanalogy import box_filter


def test_box_mean_is_the_mean_over_the_clipped_window():
    rng = np.random.default_rng(6)
    for shape, half in (((2, 9, 11), 2), ((1, 3, 9), 1), ((3, 1, 1), 2), ((2, 2, 2), 5)):
        x = rng.random(shape)
        expected = np.empty_like(x)
        for i in range(shape[1]):
            for j in range(shape[2]):
                expected[:, i, j] = x[:, max(0, i - half):i + half + 1,
                                      max(0, j - half):j + half + 1].mean(axis=(1, 2))
        np.testing.assert_allclose(box_filter.box_mean(x, half, np), expected, atol=1e-12)


def test_inverse_symmetric3_inverts_each_pixels_matrix():
    rng = np.random.default_rng(7)
    root = rng.normal(size=(5, 4, 3, 3))
    matrices = root @ np.swapaxes(root, -1, -2) + 0.1 * np.eye(3)   # positive definite
    upper = {(a, b): matrices[..., a, b] for a, b in box_filter.UPPER_TRIANGLE}
    inverse = np.stack([np.stack(row, -1) for row in box_filter.inverse_symmetric3(upper)], -2)
    np.testing.assert_allclose(inverse @ matrices, np.broadcast_to(np.eye(3), matrices.shape),
                               atol=1e-9)
