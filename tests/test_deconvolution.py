import dataclasses
import logging
import threading

import numpy as np
import pytest

from gpuanalogy import deconvolution
from gpuanalogy.backend import cpu_backend
from gpuanalogy.deconvolution import deconvolve, deconvolve_all


class Quadratic:
    """A stand-in sub-network: out = M x (linear), mid = 2 x; loss 0.5 |M x - t|^2."""

    def __init__(self, m):
        self.m = m
        self.threads = set()

    def loss_and_grad(self, x, target):
        self.threads.add(threading.get_ident())
        r = self.m @ x.ravel() - target.ravel()
        return 0.5 * float(r @ r), (self.m.T @ r).reshape(x.shape).astype(np.float32)

    def forward(self, x):
        return 2 * x, (self.m @ x.ravel()).reshape(-1, 1, 1)

    def side_by_side(self, lanes):
        return self


@pytest.mark.parametrize("optimizer", ["lbfgs", "scipy"])
def test_both_optimizers_solve_a_least_squares_problem_and_report_why_they_stopped(optimizer):
    rng = np.random.default_rng(0)
    m = rng.normal(size=(30, 24)) + 3 * np.eye(30, 24)
    x_true = rng.normal(size=(2, 3, 4)).astype(np.float32)
    target = (m @ x_true.ravel()).reshape(30, 1, 1)
    mid, stats = deconvolve(Quadratic(m), np.zeros_like(x_true), target, max_iter=200,
                            history=4, optimizer=optimizer, backend=cpu_backend())
    np.testing.assert_allclose(mid, 2 * x_true, atol=1e-3)
    assert stats.final_loss < 1e-6 * stats.initial_loss
    assert stats.iterations < 200 and stats.stop == "converged"
    assert stats.iterations <= stats.evaluations <= 400
    assert stats.optimizer == optimizer
    assert (stats.transfer_seconds == 0.0) == (optimizer == "lbfgs")


@pytest.mark.parametrize("optimizer", ["lbfgs", "scipy"])
def test_deconvolution_reports_max_iterations(optimizer):
    problem = _least_squares_problems(1)[0]
    _, stats = deconvolve(*problem, max_iter=3, history=4, optimizer=optimizer,
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


def _least_squares_problems(count):
    rng = np.random.default_rng(2)
    problems = []
    for _ in range(count):
        m = rng.normal(size=(30, 24)) + 3 * np.eye(30, 24)
        x_true = rng.normal(size=(2, 3, 4)).astype(np.float32)
        problems.append((Quadratic(m), np.zeros_like(x_true), (m @ x_true.ravel()).reshape(30, 1, 1)))
    return problems


def test_deconvolve_all_runs_the_problems_side_by_side_on_two_lanes():
    problems = _least_squares_problems(2)
    meet = threading.Barrier(2, timeout=10)   # broken unless both runs are in flight at once

    class Rendezvous(Quadratic):
        def loss_and_grad(self, x, target):
            if len(self.threads) == 0:
                meet.wait()
            return super().loss_and_grad(x, target)

    problems = [(Rendezvous(subnet.m), x0, target) for subnet, x0, target in problems]
    backend = dataclasses.replace(cpu_backend(), lanes=2)
    solved = deconvolve_all(problems, max_iter=200, backend=backend)
    for (subnet, x0, target), (mid, stats) in zip(problems, solved):
        alone, _ = deconvolve(Quadratic(subnet.m), x0, target, max_iter=200, backend=backend)
        np.testing.assert_array_equal(mid, alone)     # same answer, in the caller's order
        assert stats.lanes == 2
        assert threading.get_ident() not in subnet.threads   # ran on a worker thread
    assert problems[0][0].threads.isdisjoint(problems[1][0].threads)


def test_deconvolve_all_runs_one_at_a_time_without_lanes_or_memory(monkeypatch, caplog):
    problems = _least_squares_problems(2)
    deconvolve_all(problems, max_iter=5, backend=dataclasses.replace(cpu_backend(), lanes=1))
    assert problems[0][0].threads == problems[1][0].threads == {threading.get_ident()}

    problems = _least_squares_problems(2)
    monkeypatch.setattr(deconvolution, "available_memory", lambda: 1000)   # bytes
    with caplog.at_level(logging.INFO, logger="gpuanalogy"):
        deconvolve_all(problems, max_iter=5, backend=dataclasses.replace(cpu_backend(), lanes=2))
    assert problems[0][0].threads == problems[1][0].threads == {threading.get_ident()}
    assert "one at a time" in caplog.text


def test_side_by_side_deconvolutions_through_real_vgg_equal_one_at_a_time():
    features = pytest.importorskip("gpuanalogy.features")
    model = features.VGG19(None, dataclasses.replace(cpu_backend(), lanes=2))
    rng = np.random.default_rng(3)
    images = [rng.random((32, 40, 3), dtype=np.float32) for _ in range(4)]
    subnet = model.subnet(3)     # relu1_1 -> relu2_1 -> relu3_1
    problems = [(subnet, model.features(images[i])["relu1_1"],
                 model.features(images[i + 1])["relu3_1"]) for i in (0, 2)]
    together = deconvolve_all(problems, max_iter=15, backend=model.backend)
    assert "subnet3-target/2" in model._runners        # sessions with half the threads ran
    # One lane: sessions with all the threads, runs one after another; the answer is the same.
    alone = features.VGG19(None, dataclasses.replace(cpu_backend(), lanes=1))
    one_by_one = deconvolve_all([(alone.subnet(3), x0, target) for _, x0, target in problems],
                                max_iter=15, backend=alone.backend)
    for (mid_a, stats_a), (mid_b, stats_b) in zip(together, one_by_one):
        np.testing.assert_array_equal(mid_a, mid_b)
        assert stats_a.evaluations == stats_b.evaluations
        assert (stats_a.lanes, stats_b.lanes) == (2, 1)
        assert stats_a.final_loss == stats_b.final_loss < stats_a.initial_loss
