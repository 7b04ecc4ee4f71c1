import numpy as np
import pytest

from gpuanalogy.backend import cpu_backend
from gpuanalogy.deconvolution import deconvolve


class Quadratic:
    """A stand-in sub-network: out = M x (linear), mid = 2 x; loss 0.5 |M x - t|^2."""

    def __init__(self, m):
        self.m = m

    def loss_and_grad(self, x, target):
        r = self.m @ x.ravel() - target.ravel()
        return 0.5 * float(r @ r), (self.m.T @ r).reshape(x.shape).astype(np.float32)

    def forward(self, x):
        return 2 * x, (self.m @ x.ravel()).reshape(-1, 1, 1)


def test_lbfgs_wiring_solves_a_least_squares_problem():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(30, 24)) + 3 * np.eye(30, 24)
    x_true = rng.normal(size=(2, 3, 4)).astype(np.float32)
    target = (m @ x_true.ravel()).reshape(30, 1, 1)
    mid, stats = deconvolve(Quadratic(m), np.zeros_like(x_true), target, max_iter=200,
                            history=4, backend=cpu_backend())
    np.testing.assert_allclose(mid, 2 * x_true, atol=1e-3)
    assert stats.final_loss < 1e-6 * stats.initial_loss
    assert stats.evaluations <= 400


def test_deconvolution_through_real_vgg_reduces_loss_and_recovers_features():
    features = pytest.importorskip("gpuanalogy.features")
    model = features.VGG19(None, "cpu")
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    image = np.stack([np.sin(6 * xx + 2 * yy), np.cos(5 * yy), xx * yy], -1) * 0.4 + 0.5
    image = image.astype(np.float32)
    truth = model.features(image)
    start = model.preprocess(np.clip(image + rng.normal(0, 0.15, image.shape), 0, 1).astype(np.float32))
    subnet = model.subnet(2)     # image -> relu1_1 -> relu2_1
    mid, stats = deconvolve(subnet, start, truth["relu2_1"], max_iter=60, history=4,
                            backend=model.backend)
    assert stats.final_loss < 0.1 * stats.initial_loss
    before = subnet.forward(start)[0]
    err_before = np.linalg.norm(before - truth["relu1_1"])
    err_after = np.linalg.norm(mid - truth["relu1_1"])
    assert err_after < 0.5 * err_before
