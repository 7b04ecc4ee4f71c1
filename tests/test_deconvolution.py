import numpy as np
import pytest

from gpuanalogy.backend import cpu_backend
from gpuanalogy.deconvolution import deconvolve
from gpuanalogy.features import VGG19


class Quadratic:
    """A stand-in sub-network: out = M x (linear), mid = 2 x; loss 0.5 |M x - t|^2 (in the
    place of the level-3 one, whose adaptive stop is a plateau rule)."""

    level = 3

    def __init__(self, m):
        self.m = m

    def loss_and_grad(self, x, target):
        r = self.m @ x.ravel() - target.ravel()
        return 0.5 * float(r @ r), (self.m.T @ r).reshape(x.shape).astype(np.float32)

    def forward(self, x):
        return 2 * x, (self.m @ x.ravel()).reshape(-1, 1, 1)


@pytest.mark.parametrize("optimizer", ["lbfgs", "scipy"])
def test_both_optimizers_solve_a_least_squares_problem_and_report_why_they_stopped(optimizer):
    rng = np.random.default_rng(0)
    m = rng.normal(size=(30, 24)) + 3 * np.eye(30, 24)
    x_true = rng.normal(size=(2, 3, 4)).astype(np.float32)
    target = (m @ x_true.ravel()).reshape(30, 1, 1)
    mid, x, stats = deconvolve(Quadratic(m), np.zeros_like(x_true), target, max_iter=200,
                               history=4, optimizer=optimizer, backend=cpu_backend())
    np.testing.assert_allclose(mid, 2 * x_true, atol=1e-3)
    np.testing.assert_allclose(x, x_true, atol=1e-3)
    assert x.shape == x_true.shape and x.dtype == np.float32
    assert stats.final_loss < 1e-6 * stats.initial_loss
    assert stats.iterations < 200 and stats.stop == "converged"
    assert stats.iterations <= stats.evaluations <= 400
    assert stats.optimizer == optimizer
    assert (stats.transfer_seconds == 0.0) == (optimizer == "lbfgs")


@pytest.mark.parametrize("optimizer", ["lbfgs", "scipy"])
def test_deconvolution_reports_max_iterations(optimizer):
    problem = _least_squares_problems(1)[0]
    _, _, stats = deconvolve(*problem, max_iter=3, history=4, optimizer=optimizer,
                          backend=cpu_backend())
    assert stats.iterations == 3 and stats.stop == "max_iterations"


class Exploding(Quadratic):
    """Finite at the start, NaN once x moves: a sub-network whose arithmetic breaks down."""

    level, mid_layer = 4, "relu3_1"

    def loss_and_grad(self, x, target):
        loss, grad = super().loss_and_grad(x, target)
        return (loss, grad) if not np.any(x) else (float("nan"), grad * np.nan)


@pytest.mark.parametrize("optimizer", ["lbfgs", "scipy"])
def test_a_nan_loss_stops_the_deconvolution_with_an_error_naming_the_level(optimizer):
    from gpuanalogy.errors import NumericalError

    subnet, x0, target = _least_squares_problems(1)[0]
    with pytest.raises(NumericalError, match=r"level 3 \(relu3_1\)"):
        deconvolve(Exploding(subnet.m), x0, target, max_iter=10, history=4,
                   optimizer=optimizer, backend=cpu_backend())


def test_deconvolution_through_real_vgg_reduces_loss_and_recovers_features():
    model = VGG19(None, "cpu")
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    image = np.stack([np.sin(6 * xx + 2 * yy), np.cos(5 * yy), xx * yy], -1) * 0.4 + 0.5
    image = image.astype(np.float32)
    truth = model.features(image)
    start = model.preprocess(np.clip(image + rng.normal(0, 0.15, image.shape), 0, 1).astype(np.float32))
    subnet = model.subnet(2)     # image -> relu1_1 -> relu2_1
    mid, _, stats = deconvolve(subnet, start, truth["relu2_1"], max_iter=60, history=4,
                            backend=model.backend)
    assert stats.final_loss < 0.1 * stats.initial_loss
    before = subnet.forward(start)[0]
    err_before = np.linalg.norm(before - truth["relu1_1"])
    err_after = np.linalg.norm(mid - truth["relu1_1"])
    assert err_after < 0.5 * err_before


def _least_squares_problems(count):
    rng = np.random.default_rng(2)
    problems = []
    for _ in range(count):
        m = rng.normal(size=(30, 24)) + 3 * np.eye(30, 24)
        x_true = rng.normal(size=(2, 3, 4)).astype(np.float32)
        problems.append((Quadratic(m), np.zeros_like(x_true), (m @ x_true.ravel()).reshape(30, 1, 1)))
    return problems


def _slow_problem(residual):
    """A least-squares deconvolution that L-BFGS needs hundreds of iterations for (singular
    values 1 to 1000), with a target ``residual`` away from the network's range, so that with
    a residual the loss levels off at a floor."""
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(400, 400)))
    m = (q * np.logspace(0, 3, 400))[:, :300]
    x_true = rng.normal(size=(3, 10, 10)).astype(np.float32)
    off_range = q[:, 300:] @ rng.normal(size=100)
    target = m @ x_true.ravel() + residual * off_range / np.linalg.norm(off_range)
    return Quadratic(m), np.zeros_like(x_true), target.reshape(400, 1, 1)


@pytest.mark.parametrize("optimizer", ["lbfgs", "scipy"])
def test_official_makes_exactly_the_iterations_asked(optimizer):
    for max_iter in (7, 40):
        _, _, stats = deconvolve(*_slow_problem(30.0), max_iter=max_iter, history=4,
                                 optimizer=optimizer, stop="official", backend=cpu_backend())
        assert (stats.iterations, stats.stop) == (max_iter, "max_iterations")
        assert (stats.rule, stats.max_iterations) == ("official", max_iter)
        assert len(stats.losses) == max_iter + 1


@pytest.mark.parametrize("optimizer", ["lbfgs", "scipy"])
def test_adaptive_stops_once_the_variable_settles(optimizer):
    from gpuanalogy.deconvolution import ADAPTIVE_STOP

    rule = ADAPTIVE_STOP[Quadratic.level]
    first = max(rule.min_iter, rule.window)
    _, _, stats = deconvolve(*_slow_problem(30.0), max_iter=300, history=4, optimizer=optimizer,
                             stop="adaptive", backend=cpu_backend())
    k, m = stats.iterations, stats.moves
    assert (stats.stop, stats.rule, stats.max_iterations) == (rule.reason, "adaptive", 300)
    assert first <= k < 300 and len(m) == k and len(stats.losses) == k + 1
    assert sum(m[k - rule.window:]) < rule.tol
    assert all(sum(m[j - rule.window:j]) >= rule.tol for j in range(first, k))
    # The same run to the cap goes on lowering the loss, by little.
    _, _, full = deconvolve(*_slow_problem(30.0), max_iter=300, history=4, optimizer=optimizer,
                            stop="official", backend=cpu_backend())
    assert full.losses[:k + 1] == pytest.approx(stats.losses, rel=1e-6)
    assert full.final_loss < stats.final_loss


def test_adaptive_runs_the_image_level_to_the_cap():
    """At level 2 (the image is the variable) the adaptive stop is the official one."""
    problem = _slow_problem(30.0)
    problem[0].level = 2
    _, _, stats = deconvolve(*problem, max_iter=40, history=4, stop="adaptive",
                             backend=cpu_backend())
    assert (stats.iterations, stats.stop, stats.rule) == (40, "max_iterations", "adaptive")
