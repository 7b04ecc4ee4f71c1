"""L-BFGS on the backend's arrays (gpuanalogy.lbfgs) against SciPy's L-BFGS-B.

Every test runs on NumPy, and on CuPy too where a GPU is present (the ``xp`` fixture).
"""
import numpy as np
import pytest
from scipy.optimize import minimize as scipy_minimize, rosen, rosen_der

from gpuanalogy import lbfgs
from gpuanalogy.errors import NumericalError
from gpuanalogy.features import VGG19
from gpuanalogy.kernels import vectors


def _array_modules():
    modules = [pytest.param(np, id="numpy")]
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        modules.append(pytest.param(cupy, id="cupy"))
    except Exception:  # no CuPy, no driver or no GPU: the NumPy run covers the code
        pass
    return modules


@pytest.fixture(params=_array_modules())
def xp(request):
    return request.param


def _host(xp, array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


def _reference(fun64, x0, max_iter, history=4):
    """SciPy's L-BFGS-B on float64: the minimum to reach."""
    return scipy_minimize(fun64, x0.astype(np.float64), jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iter, "maxcor": history,
                                   "maxfun": 5 * max_iter})


@pytest.mark.parametrize("n, spread", [(10, 10.0), (5000, 100.0), (200_000, 4.0)])
def test_reaches_scipys_minimum_of_a_float32_quadratic(xp, n, spread):
    rng = np.random.default_rng(n)
    scale = rng.uniform(1.0, spread, n).astype(np.float32)
    center = rng.standard_normal(n).astype(np.float32)
    x0 = rng.standard_normal(n).astype(np.float32) * 3
    scale_d, center_d = xp.asarray(scale), xp.asarray(center)

    def fun(x):
        r = x - center_d
        grad = scale_d * r
        return 0.5 * float(xp.sum(r * grad, dtype=xp.float64)), grad

    def fun64(x):
        r = x - center
        return 0.5 * float(r @ (scale * r)), scale * r

    ours = lbfgs.minimize(fun, xp.asarray(x0), xp=xp, max_iter=300)
    theirs = _reference(fun64, x0, 300)
    start = fun64(x0.astype(np.float64))[0]
    assert ours.stop == lbfgs.CONVERGED
    assert ours.loss <= max(theirs.fun, 1e-6 * start)
    np.testing.assert_allclose(_host(xp, ours.x), center, atol=1e-2)
    assert ours.x.dtype == np.float32 and type(ours.x) is type(xp.asarray(x0))


def test_reaches_scipys_minimum_of_rosenbrock(xp):
    x0 = np.array([-1.2, 1.0] * 10, np.float32)

    def fun(x):
        x64 = _host(xp, x).astype(np.float64)
        return float(rosen(x64)), xp.asarray(rosen_der(x64).astype(np.float32))

    ours = lbfgs.minimize(fun, xp.asarray(x0), xp=xp, max_iter=1000)
    theirs = _reference(lambda x: (rosen(x), rosen_der(x)), x0, 1000)
    assert theirs.fun < 1e-6
    assert ours.loss < 1e-6
    np.testing.assert_allclose(_host(xp, ours.x), 1.0, atol=1e-3)


def test_stops_at_the_official_gradient_tolerance():
    scale = np.linspace(1, 3, 50, dtype=np.float32)
    result = lbfgs.minimize(lambda x: (0.5 * float(np.sum(scale * x * x)), scale * x),
                            np.ones(50, np.float32), xp=np, max_iter=100)
    assert result.stop == lbfgs.CONVERGED
    g = scale * result.x
    assert float(g @ g) < 1e-8 * max(1.0, float(result.x @ result.x))
    assert result.iterations < 100


def test_stops_after_max_iter_iterations():
    scale = np.logspace(0, 4, 1000).astype(np.float32)
    result = lbfgs.minimize(lambda x: (0.5 * float(np.sum(scale * x * x, dtype=np.float64)),
                                       scale * x),
                            np.ones(1000, np.float32), xp=np, max_iter=7)
    assert (result.iterations, result.stop) == (7, lbfgs.MAX_ITERATIONS)
    assert result.loss < result.initial_loss
    assert result.evaluations >= 8


def test_a_known_floor_sizes_the_first_step_polyak_style():
    """With ``lower_bound`` the first step tries (f - floor) / ||g||^2 along -g and, on a
    least-squares problem whose floor is reachable (as a deconvolution's nearly is) and far from
    unit scale, the search takes it at once; without a floor it starts from a move of 1 and
    needs several evaluations to grow it."""
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((120, 40)) / np.sqrt(120)).astype(np.float32)
    b = a @ (1e3 * rng.standard_normal(40)).astype(np.float32)
    points = []

    def fun(x):
        points.append(x.copy())
        r = (a @ x - b).astype(np.float64)
        return 0.5 * float(r @ r), (a.T @ (a @ x - b)).astype(np.float32)

    x0 = np.zeros(40, np.float32)
    f0, g0 = fun(x0)
    points.clear()
    floored = lbfgs.minimize(fun, x0, xp=np, max_iter=1, lower_bound=0.0)
    np.testing.assert_allclose(points[1], x0 - np.float32(f0 / float(g0 @ g0)) * g0, rtol=1e-5)
    assert floored.evaluations == 2
    unit = lbfgs.minimize(fun, x0, xp=np, max_iter=1)
    assert unit.evaluations >= 4
    assert floored.loss < unit.initial_loss


def test_a_failed_line_search_restarts_from_steepest_descent_then_stops_at_the_best_point():
    """A gradient that disagrees with the loss defeats every line search: the run restarts
    from steepest descent, stops with ``line_search_failed``, and keeps its lowest point."""
    calls = []

    def fun(x):
        calls.append(float(x @ x))
        return 0.5 * float(x @ x), np.float32(-0.1) * x       # the true gradient is +x

    x0 = np.ones(20, np.float32)
    result = lbfgs.minimize(fun, x0, xp=np, max_iter=50)
    assert result.stop == lbfgs.LINE_SEARCH_FAILED
    assert result.iterations == 0
    assert result.loss == result.initial_loss == 10.0       # nothing lower was ever found
    np.testing.assert_array_equal(result.x, x0)

    # Wrong only near the minimum: the lowest point found before the failure is kept.
    scale = np.linspace(1, 3, 20, dtype=np.float32)

    def fun2(x):
        value = 0.5 * float(x @ (scale * x))
        return value, (scale * x if value > 2.0 else -scale * x)

    result = lbfgs.minimize(fun2, x0 * 2, xp=np, max_iter=50)
    assert result.stop == lbfgs.LINE_SEARCH_FAILED
    assert result.restarts >= 1
    assert result.loss < result.initial_loss
    assert 0.5 * float(result.x @ (scale * result.x)) == pytest.approx(result.loss)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_loss_or_gradient_is_an_error(bad):
    def loss_goes_bad(x):
        value = 0.5 * float(x @ x)
        return (bad if value < 5.0 else value), x.copy()

    with pytest.raises(NumericalError, match="loss is (nan|inf)"):
        lbfgs.minimize(loss_goes_bad, np.ones(20, np.float32) * 2, xp=np, max_iter=50)

    def gradient_goes_bad(x):
        grad = x.copy()
        grad[3] = bad
        return 0.5 * float(x @ x), grad

    with pytest.raises(NumericalError, match="gradient"):
        lbfgs.minimize(gradient_goes_bad, np.ones(20, np.float32), xp=np, max_iter=50)


class DeviceArray(np.lib.mixins.NDArrayOperatorsMixin):
    """An array that lives "on a device": arithmetic, reductions (their results stay on the
    device too), item assignment and in-place updates work; every read to the host, as an
    array or as a float (each a synchronisation on a GPU), is counted, with its size."""

    reads: list[int] = []

    def __init__(self, data):
        self.data = data

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def __array__(self, dtype=None, copy=None):
        DeviceArray.reads.append(self.data.size)
        return self.data if dtype is None else self.data.astype(dtype)

    def __float__(self):
        DeviceArray.reads.append(self.data.size)
        return float(self.data)

    def __setitem__(self, index, value):
        self.data[index] = _unwrap(value)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        inputs = [_unwrap(v) for v in inputs]
        if out is not None:
            kwargs["out"] = tuple(_unwrap(v) for v in out)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        return out[0] if out is not None else _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        args = [_unwrap(v) for v in args]
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        return _wrap(func(*args, **kwargs))

    def copy(self):
        return DeviceArray(self.data.copy())

    def reshape(self, *shape):
        return DeviceArray(self.data.reshape(*shape))

    def __getitem__(self, index):
        return DeviceArray(self.data[index])

    def astype(self, dtype, copy=True):
        return DeviceArray(self.data.astype(dtype, copy=copy))


def _unwrap(value):
    return value.data if isinstance(value, DeviceArray) else value


def _wrap(value):
    return DeviceArray(np.asarray(value)) if isinstance(value, (np.ndarray, np.generic)) else value


def test_only_scalars_leave_the_device_inside_the_loop_a_few_reads_per_step():
    scale = np.logspace(0, 2, 3000).astype(np.float32)

    def fun(x):        # the objective itself computes "on the device", on x.data
        grad = scale * x.data
        return 0.5 * float(np.sum(x.data * grad, dtype=np.float64)), DeviceArray(grad)

    x0 = DeviceArray(np.ones(3000, np.float32))
    DeviceArray.reads = []
    result = lbfgs.minimize(fun, x0, xp=np, max_iter=40, history=4)
    assert result.iterations > 5 and result.loss < 1e-3 * result.initial_loss
    assert isinstance(result.x, DeviceArray)
    # The start's g.g and x.x, one g.d per line-search evaluation, and one transfer of a
    # step's inner products (3 x (2 history + 1) values): never a vector.
    assert max(DeviceArray.reads) == 3 * (2 * 4 + 1)
    assert len(DeviceArray.reads) <= 2 + result.evaluations + result.iterations
    assert DeviceArray.reads.count(27) == result.iterations

    np.asarray(result.x)            # the counter does count a real conversion
    assert DeviceArray.reads[-1] == 3000


def test_scipy_still_offers_the_minpack2_line_search_we_wrap():
    """``strong_wolfe_step`` imports SciPy's private DCSRCH; this fails first if SciPy moves it."""
    from scipy.optimize._dcsrch import DCSRCH  # noqa: F401

    # phi(a) = (a - 2)^2: the strong Wolfe step from 0 along a descent direction.
    step = lbfgs.strong_wolfe_step(lambda a: (a - 2.0) ** 2, lambda a: 2 * (a - 2.0),
                                   4.0, -4.0, 1.0, c1=1e-4, c2=0.9)
    assert step is not None
    assert (step - 2.0) ** 2 <= 4.0 - 1e-4 * step * 4.0          # sufficient decrease
    assert abs(2 * (step - 2.0)) <= 0.9 * 4.0                     # curvature


@pytest.fixture(scope="module")
def vgg():
    return VGG19(None, "cpu")


@pytest.fixture(scope="module")
def photos():
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    # 80 x 64: small enough for CI, large enough that level 5's maps (5 x 4) are not degenerate;
    # at 56 x 48 (3 x 3) the first step's size decides most of that level's end.
    def small(image):
        return np.asarray(Image.fromarray(image).resize((80, 64), Image.BICUBIC),
                          np.float32) / 255

    return small(data.astronaut()), small(data.chelsea())


STARTS = 5          # the real start and four copies perturbed by one part in a million


@pytest.fixture(scope="module")
def final_losses(vgg, photos):
    """Final losses of 100 iterations of each optimiser from STARTS nearby starting points, per
    level: the structure image's own features at L-2 as the start, the other photo's level-L
    features as the target (the deconvolution's real problem).

    One start is not enough to compare two optimisers here: a relative change of 1e-6 in the
    start moves SciPy's own final loss by several percent (measured up to 7 % at 56 x 48; at
    80 x 64 its five runs of level 2 ended between 4.3e4 and 6.4e4), so the comparison is
    between means over the same starts."""
    from gpuanalogy.backend import cpu_backend
    from gpuanalogy.deconvolution import deconvolve

    names = {0: "data", 1: "relu1_1", 2: "relu2_1", 3: "relu3_1", 4: "relu4_1", 5: "relu5_1"}
    structure, appearance = (vgg.features(p) for p in photos)
    structure["data"] = vgg.preprocess(photos[0])
    rng = np.random.default_rng(7)
    losses = {}
    for level in (2, 3, 4, 5):
        x0, target = structure[names[level - 2]], appearance[names[level]]
        starts = [x0] + [(x0 * (1 + 1e-6 * rng.standard_normal(x0.shape))).astype(np.float32)
                         for _ in range(STARTS - 1)]
        subnet = vgg.subnet(level)
        for optimizer in ("lbfgs", "scipy"):
            runs = [deconvolve(subnet, start, target, max_iter=100, history=4,
                               optimizer=optimizer, backend=cpu_backend()).stats
                    for start in starts]
            losses[level, optimizer] = runs
    return losses


@pytest.mark.parametrize("level", [2, 3, 4, 5])
def test_each_vgg_subnetwork_ends_within_scipys_own_spread(final_losses, level):
    ours, theirs = final_losses[level, "lbfgs"], final_losses[level, "scipy"]
    for run in ours:
        assert run.transfer_seconds == 0.0 and run.optimizer == "lbfgs"
        assert run.iterations == 100 or run.stop != "max_iterations"
        assert run.final_loss < 0.5 * run.initial_loss
    assert ours[0].initial_loss == pytest.approx(theirs[0].initial_loss, rel=1e-5)
    # Our mean final loss lies within the range SciPy's own runs span from the same starts.
    assert np.mean([r.final_loss for r in ours]) <= max(r.final_loss for r in theirs)


def test_vgg_subnetworks_end_on_average_within_1_percent_of_scipys_loss(final_losses):
    """Over the four sub-networks and STARTS starts each: the geometric mean of (our mean final
    loss / SciPy's mean final loss) is at most 1.01."""
    ratios = [np.mean([r.final_loss for r in final_losses[level, "lbfgs"]])
              / np.mean([r.final_loss for r in final_losses[level, "scipy"]])
              for level in (2, 3, 4, 5)]
    assert np.exp(np.mean(np.log(ratios))) <= 1.01, ratios


@pytest.mark.parametrize("n", [5000, 3 * vectors.RUN])
def test_vector_kernels_match_float64_and_the_array_module_path(n):
    """The Numba kernels and the array-module path of the same operations against float64
    arithmetic: two pairs stored one after the other, with a free slot whose stale (NaN) rows
    must never be read."""
    rng = np.random.default_rng(3)
    points, grads = (rng.standard_normal((3, n)).astype(np.float32) for _ in range(2))
    f64 = np.float64
    s, y = np.diff(points.astype(f64), axis=0), np.diff(grads.astype(f64), axis=0)
    basis = np.stack([s[0], y[0], s[1], y[1]])          # rows 0-3: slots 0 and 1
    for impl, on in ((vectors, lambda v: v), (lbfgs._ArrayOps(np), DeviceArray)):
        rows = impl.new_rows(6, on(points[0]))
        _unwrap(rows)[...] = np.nan
        for slot in (0, 1):
            live = np.repeat(np.arange(3) <= slot, 2)
            products = impl.add_pair(rows, slot, on(points[slot + 1]), on(points[slot]),
                                     on(grads[slot + 1]), on(grads[slot]), live)
            expected = np.zeros((3, 7))
            expected[:, :2 * slot + 2] = (np.stack([s[slot], y[slot], grads[slot + 1]])
                                          @ basis[:2 * slot + 2].T)
            expected[0, 6] = points[slot + 1] @ points[slot + 1].astype(f64)
            expected[2, 6] = grads[slot + 1] @ grads[slot + 1].astype(f64)
            np.testing.assert_allclose(products, expected, rtol=1e-5, atol=1e-5 * n)
        coefficients = np.array([0.5, -2.0, 0.25, 1.5, 0.0, 0.0], np.float32)
        out = on(np.empty(n, np.float32))
        impl.combine(rows, coefficients, on(grads[2]), -0.75, out)
        np.testing.assert_allclose(_unwrap(out), coefficients[:4] @ basis - 0.75 * grads[2],
                                   rtol=1e-5, atol=1e-5)
        impl.step_to(on(points[0]), on(grads[0]), 0.3, out)
        np.testing.assert_allclose(_unwrap(out), points[0] + np.float32(0.3) * grads[0],
                                   rtol=1e-6, atol=1e-6)
        exact = points[0] @ grads[0].astype(f64)
        assert abs(impl.dot(on(points[0]), on(grads[0])) - exact) <= 1e-6 * n


def test_vector_kernels_let_a_nan_through():
    a = np.ones(3 * vectors.RUN + 5, np.float32)
    a[-2] = np.nan
    assert np.isnan(vectors.dot(a, a))


def test_dot_accumulates_long_vectors_to_float32_precision():
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal(3_000_001).astype(np.float32) + 0.1 for _ in range(2))
    exact = float(np.dot(a.astype(np.float64), b.astype(np.float64)))
    assert abs(lbfgs.dot(np, a, b) - exact) <= 1e-6 * abs(exact)


def _slow_quadratic(n=2000, floor=0.0):
    """floor + 0.5 x' diag(scale) x with condition number 1e4: without a floor its loss keeps
    falling by a share of itself for hundreds of iterations; with one (a least-squares problem
    with a residual) the relative decrease fades."""
    scale = np.logspace(0, 4, n).astype(np.float32)
    return (lambda x: (floor + 0.5 * float(np.sum(scale * x * x, dtype=np.float64)), scale * x),
            np.ones(n, np.float32))


def test_plateau_stops_on_a_quadratic_at_the_first_iteration_the_decrease_falls_under_tol():
    fun, x0 = _slow_quadratic(floor=100.0)
    rule = lbfgs.Plateau(tol=0.01, window=5, min_iter=10)
    stopped = lbfgs.minimize(fun, x0, xp=np, max_iter=300, rule=rule)
    full = lbfgs.minimize(fun, x0, xp=np, max_iter=300)
    k = stopped.iterations
    assert stopped.stop == lbfgs.PLATEAU and 10 <= k < full.iterations
    # The same iterates as the run without the rule, up to the stop.
    assert stopped.losses == full.losses[:k + 1]
    assert stopped.loss == full.losses[k]
    f = full.losses
    assert f[k - 5] - f[k] < 0.01 * f[k]                         # under the threshold at k
    assert all(f[j - 5] - f[j] >= 0.01 * f[j] for j in range(10, k))   # and not before
    assert f[-1] < f[k]                                          # the loss was still falling


def test_settled_stops_on_a_quadratic_at_the_first_iteration_x_moved_less_than_tol():
    fun, x0 = _slow_quadratic()
    rule = lbfgs.Settled(tol=0.05, window=5, min_iter=10)
    stopped = lbfgs.minimize(fun, x0, xp=np, max_iter=300, rule=rule)
    full = lbfgs.minimize(fun, x0, xp=np, max_iter=300)
    k = stopped.iterations
    assert stopped.stop == lbfgs.SETTLED and 10 <= k < full.iterations
    assert stopped.moves == full.moves[:k] and stopped.losses == full.losses[:k + 1]
    m = full.moves
    assert sum(m[k - 5:k]) < 0.05                                # under the threshold at k
    assert all(sum(m[j - 5:j]) >= 0.05 for j in range(10, k))    # and not before
    # A move is the step over the norm of the point reached: check one against the iterates.
    one = lbfgs.minimize(fun, x0, xp=np, max_iter=1)
    two = lbfgs.minimize(fun, x0, xp=np, max_iter=2)
    assert m[1] == pytest.approx(np.linalg.norm(two.x - one.x) / np.linalg.norm(two.x),
                                 rel=1e-5)
    assert full.losses[-1] < full.losses[k]                      # the loss was still falling


@pytest.mark.parametrize("rule_type", [lbfgs.Settled, lbfgs.Plateau])
def test_a_rule_never_stops_before_min_iter_nor_before_a_window(rule_type):
    fun, x0 = _slow_quadratic()
    for min_iter in (3, 10, 17):
        rule = rule_type(tol=1e6, window=2, min_iter=min_iter)     # always "done"
        result = lbfgs.minimize(fun, x0, xp=np, max_iter=100, rule=rule)
        assert (result.iterations, result.stop) == (min_iter, rule.reason)
    rule = rule_type(tol=1e6, window=8, min_iter=3)
    assert lbfgs.minimize(fun, x0, xp=np, max_iter=100, rule=rule).iterations == 8


def test_without_a_rule_every_iteration_asked_is_made():
    fun, x0 = _slow_quadratic()
    for max_iter in (1, 37, 100):
        result = lbfgs.minimize(fun, x0, xp=np, max_iter=max_iter)
        assert (result.iterations, result.stop) == (max_iter, lbfgs.MAX_ITERATIONS)
        assert len(result.losses) == max_iter + 1 and len(result.moves) == max_iter
