"""L-BFGS on the backend's own arrays, with SciPy's MINPACK-2 line search on scalars.

The deconvolution minimises ``f(x) = 0.5 * ||CNN(x) - target||^2`` over feature maps of up to a
few million values. As the official implementation does with its CUDA L-BFGS, the vectors stay
where the network's gradient is produced (NumPy on the CPU, CuPy on the GPU) and are float32;
inner products are accumulated in float64 (see :func:`dot`). Only scalars cross to the host:
the loss, ``phi'(alpha) = g(x + alpha d) . d`` for the line search, and each step's inner
products of the correction pairs (in one transfer).

The recursion (Nocedal & Wright, algorithm 7.4; ``history`` pairs ``s = x_{k+1} - x_k``,
``y = g_{k+1} - g_k``, ``H0 = (s'y / y'y) I``) runs on coefficients, not on vectors
("vector-free" L-BFGS, Chen et al., NeurIPS 2014): ``-H g`` is a combination of the pairs and
``g``, and the recursion needs only their inner products. On NumPy, ``kernels.vectors`` writes
a step's pair and takes the products of s, y and g with every stored vector in one pass, and
forms the direction in one more (the recursion on vectors makes four per pair); on CuPy the
module's own operations do the same in several. Step lengths come from SciPy's port of
MINPACK-2's DCSRCH (More and Thuente's strong-Wolfe search, the one inside L-BFGS-B) through
``phi(alpha)`` / ``phi'(alpha)`` callbacks. The first step, along -g, has no curvature to size
it: for a loss with a floor (a sum of squares) it tries Polyak's step to that floor, which the
search accepts at once where L-BFGS-B's move by 1 takes about six (docs/performance.md).

Official parameters: history 4, at most 100 iterations, c1 = 1e-4, c2 = 0.9, and a stop when
``||g||^2 < 1e-8 * max(1, ||x||^2)``. A stopping rule may end a run earlier: :class:`Settled`
once the variable, :class:`Plateau` once the loss, stops changing by a share of itself.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from .backend import to_host
from .errors import NumericalError
from .kernels import vectors

# Why a run stopped (LbfgsResult.stop).
CONVERGED = "converged"              # ||g||^2 < tolerance * max(1, ||x||^2)
MAX_ITERATIONS = "max_iterations"
MAX_EVALUATIONS = "max_evaluations"  # the line searches together used 5 * max_iter evaluations
LINE_SEARCH_FAILED = "line_search_failed"   # also from steepest descent: the best point is kept
SETTLED = "settled"                  # x moved by less than a share of itself lately (Settled)
PLATEAU = "plateau"                  # the loss fell by less than a share of itself lately (Plateau)

# Step bounds and the relative interval tolerance of L-BFGS-B's own line search.
_STEP_MIN, _STEP_MAX, _STEP_XTOL = 0.0, 1e10, 0.1
_SEARCH_EVALUATIONS = 20             # evaluations one line search may use (as in L-BFGS-B)


@dataclass(frozen=True)
class LbfgsResult:
    """The outcome of :func:`minimize`.

    Attributes
    ----------
    x : array, shape (n,), float32, on the array module of ``x0``
        The point with the lowest loss evaluated.
    loss, initial_loss : float
        f(x) and f(x0).
    iterations, evaluations : int
        Accepted steps, and calls of the objective (the start included).
    restarts : int
        Line searches that failed and were retried from steepest descent.
    stop : str
        ``"converged"``, ``"settled"``, ``"plateau"``, ``"max_iterations"``,
        ``"max_evaluations"`` or ``"line_search_failed"``.
    losses : tuple of float
        f(x0) and the loss after every iteration (``iterations + 1`` values).
    moves : tuple of float
        Every iteration's step relative to the point it reached, ``||x_k - x_{k-1}|| / ||x_k||``
        (``iterations`` values).
    """

    x: Any
    loss: float
    initial_loss: float
    iterations: int
    evaluations: int
    restarts: int
    stop: str
    losses: tuple[float, ...] = ()
    moves: tuple[float, ...] = ()


@dataclass(frozen=True)
class Settled:
    """A stop for a variable that no longer moves enough to change what is made of it.

    After iteration k, with k at least ``min_iter`` and ``window``, the run ends when the last
    ``window`` steps, each relative to the point it reached, sum to less than ``tol``:
    ``sum ||x_j - x_{j-1}|| / ||x_j|| < tol`` over j = k - window + 1 .. k. The path bounds
    the distance, so x moved by less than about ``tol`` of itself over the window. ``min_iter``
    keeps a run from stopping in its first iterations, while L-BFGS is still gathering its
    curvature pairs.
    """

    tol: float
    window: int = 5
    min_iter: int = 10
    reason: ClassVar[str] = SETTLED

    def reached(self, losses: Sequence[float], moves: Sequence[float]) -> bool:
        """Whether a run with these ``losses`` (f_0 .. f_k) and ``moves`` (k relative steps)
        stops after iteration k."""
        k = len(moves)
        return k >= max(self.min_iter, self.window) and sum(moves[k - self.window:]) < self.tol


@dataclass(frozen=True)
class Plateau:
    """A stop for a loss that still falls, but by too little to matter.

    After iteration k, with k at least ``min_iter`` and ``window``, the run ends when
    ``f_{k-window} - f_k < tol * |f_k|``: the last ``window`` iterations together took off less
    than ``tol`` of what is left. ``min_iter`` keeps a run from stopping in its first
    iterations, while L-BFGS is still gathering its curvature pairs.
    """

    tol: float
    window: int = 5
    min_iter: int = 10
    reason: ClassVar[str] = PLATEAU

    def reached(self, losses: Sequence[float], moves: Sequence[float]) -> bool:
        """Whether a run with these ``losses`` (f_0 .. f_k) and ``moves`` stops after k."""
        k = len(losses) - 1
        if k < max(self.min_iter, self.window):
            return False
        return losses[k - self.window] - losses[k] < self.tol * abs(losses[k])


_TINY = 1e-30   # the smallest ||x||^2 a relative step is taken against


def dot(xp: ModuleType, a: Any, b: Any, *, to_host: bool = True) -> Any:
    """``a . b`` of two float32 vectors of shape (n,): a float, or with ``to_host=False`` a
    float64 0-d array (or scalar) of ``xp``, left where it is (no transfer).

    Each run of 1024 products is summed in float32 in one fused pass (``einsum``), the runs'
    sums in float64: as fast as a float32 dot, with an error near float32's epsilon however
    long the vectors (a plain float32 sum over millions of values loses about two digits more).
    """
    whole = a.size // vectors.RUN * vectors.RUN
    runs = xp.einsum("ij,ij->i", a[:whole].reshape(-1, vectors.RUN),
                     b[:whole].reshape(-1, vectors.RUN))
    total = xp.sum(runs, dtype=xp.float64)
    if whole < a.size:
        total = total + xp.sum(a[whole:] * b[whole:], dtype=xp.float64)
    return float(total) if to_host else total


def strong_wolfe_step(phi: Callable[[float], float], derphi: Callable[[float], float],
                      phi0: float, derphi0: float, step: float, *, c1: float,
                      c2: float) -> float | None:
    """A step length satisfying the strong Wolfe conditions, or None when none was found.

    SciPy's DCSRCH (``scipy.optimize._dcsrch``, the line search of L-BFGS-B) is the only
    implementation used; it is private in SciPy, so this is the one place that names it.
    """
    from scipy.optimize._dcsrch import DCSRCH  # noqa: PLC0415 - private: named only here

    search = DCSRCH(phi, derphi, ftol=c1, gtol=c2, xtol=_STEP_XTOL, stpmin=_STEP_MIN,
                    stpmax=_STEP_MAX)
    found, _, _, _ = search(step, phi0=phi0, derphi0=derphi0, maxiter=_SEARCH_EVALUATIONS)
    return None if found is None else float(found)


def minimize(fun: Callable[[Any], tuple[float, Any]], x0: Any, *, xp: ModuleType,
             max_iter: int = 100, history: int = 4, c1: float = 1e-4, c2: float = 0.9,
             tolerance: float = 1e-8, rule: Settled | Plateau | None = None,
             lower_bound: float | None = None) -> LbfgsResult:
    """Minimise ``fun`` from ``x0`` by L-BFGS with a strong-Wolfe line search.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (loss, grad)``: a Python float and an array shaped like ``x`` (float32,
        same array module). It may keep references to ``x`` only until it returns.
    x0 : array, shape (n,), float32
        Starting point, on the array module ``xp`` (not modified).
    xp : module
        ``numpy`` or ``cupy`` (anything with their ufuncs, ``sum`` and ``einsum``).
    max_iter, history : int
        Iterations (accepted steps) and stored correction pairs.
    c1, c2 : float
        Sufficient-decrease and curvature constants of the strong Wolfe conditions.
    tolerance : float
        Stop when ``||g||^2 < tolerance * max(1, ||x||^2)``.
    rule : Settled, Plateau or None
        Also stop once it says so (its ``reached(losses, moves)``, asked after every
        iteration); None runs until ``max_iter`` (or the tolerance), as the official code.
    lower_bound : float, optional
        A value ``fun`` never goes below (0 for a sum of squares). A steepest-descent step
        (the first, and after a failed search) then first tries the step at which the loss's
        linear model reaches it, ``(f - lower_bound) / ||g||^2`` (Polyak's step); without one it
        moves x by 1, as L-BFGS-B does, and the search may take several evaluations to grow
        that step to the problem's scale.

    Raises
    ------
    NumericalError
        ``fun`` returned a NaN or infinite loss, or a gradient with NaN or infinity.
    """
    x = x0.astype(xp.float32, copy=True)
    ops = _operations(xp, x)
    loss, g = fun(x)
    evaluations = 1
    _check_finite(loss, "loss", evaluations)
    initial_loss = loss
    losses, moves = [loss], []
    pairs = _Pairs(ops, history, x)
    gg, xx = ops.dot(g, g), ops.dot(x, x)
    iterations = restarts = 0
    stop = MAX_ITERATIONS
    d, trial = xp.empty_like(x), xp.empty_like(x)
    while iterations < max_iter:
        _check_finite(gg, "gradient", evaluations)
        if gg < tolerance * max(1.0, xx):
            stop = CONVERGED
            break
        if evaluations >= 5 * max_iter:
            stop = MAX_EVALUATIONS
            break
        coefficients, g_coefficient = pairs.direction()
        steepest = not pairs
        derphi0 = float(coefficients @ pairs.with_g) + g_coefficient * gg
        if derphi0 >= 0:           # rounding made the direction uphill: use -g
            coefficients[:], g_coefficient, steepest, derphi0 = 0.0, -1.0, True, -gg
        ops.combine(pairs.rows, coefficients.astype(np.float32), g, g_coefficient, d)
        # Quasi-Newton steps try the step itself; steepest descent tries Polyak's step when the
        # loss has a known floor, else a move of x by 1 (L-BFGS-B's choice).
        if not steepest:
            step = 1.0
        elif lower_bound is not None and loss > lower_bound:
            step = (loss - lower_bound) / gg
        else:
            step = 1.0 / np.sqrt(gg)
        last: dict[str, Any] = {}
        best: dict[str, Any] = {"loss": loss}

        def evaluate(alpha: float) -> None:
            nonlocal evaluations
            if last.get("alpha") == alpha:
                return
            ops.step_to(x, d, alpha, trial)
            value, grad = fun(trial)
            evaluations += 1
            _check_finite(value, "loss", evaluations)
            last.update(alpha=alpha, loss=value, grad=grad)
            if value < best["loss"]:
                best.update(last)

        def phi(alpha: float) -> float:
            evaluate(alpha)
            return last["loss"]

        def derphi(alpha: float) -> float:
            evaluate(alpha)
            value = ops.dot(last["grad"], d)
            _check_finite(value, "gradient", evaluations)
            return value

        alpha = strong_wolfe_step(phi, derphi, loss, derphi0, step, c1=c1, c2=c2)
        if alpha is None:
            # A failed search: move to the lowest point it found, if any, and retry from
            # steepest descent; a failure from steepest descent ends the run at the best point.
            if "alpha" in best:
                x = ops.step_to(x, d, best["alpha"], trial)
                trial = xp.empty_like(x)
                loss, g = best["loss"], best["grad"]
                gg, xx = ops.dot(g, g), ops.dot(x, x)
            elif steepest:
                stop = LINE_SEARCH_FAILED
                break
            pairs.clear()
            restarts += 1
            continue
        evaluate(alpha)
        ss, xx, gg = pairs.add(trial, x, last["grad"], g)
        moves.append(float(np.sqrt(ss / max(xx, _TINY))))
        x, trial = trial, x
        loss, g = last["loss"], last["grad"]
        iterations += 1
        losses.append(loss)
        if rule is not None and rule.reached(losses, moves):
            stop = rule.reason
            break
    return LbfgsResult(x, loss, initial_loss, iterations, evaluations, restarts, stop,
                       tuple(losses), tuple(moves))


class _Pairs:
    """Up to ``history`` correction pairs, slot j's ``s`` and ``y`` in rows 2j and 2j + 1 of
    ``rows`` (on the device, laid out by ``ops``), and on the host every inner product the
    two-loop recursion needs: ``gram`` among the rows, ``with_g`` of the rows with the current
    gradient (float64). Rows of a free slot keep stale values; their coefficients are 0."""

    def __init__(self, ops: Any, history: int, like: Any) -> None:
        self.ops, self.rows = ops, ops.new_rows(2 * history, like)
        self.gram = np.zeros((2 * history, 2 * history))
        self.with_g = np.zeros(2 * history)
        self.order: deque[int] = deque()              # slots in use, oldest first
        self.free = list(range(history - 1, -1, -1))

    def __bool__(self) -> bool:
        return bool(self.order)

    def clear(self) -> None:
        self.free += self.order
        self.order.clear()

    def add(self, trial: Any, x: Any, grad: Any, g: Any) -> tuple[float, float, float]:
        """Store ``s = trial - x``, ``y = grad - g`` (the oldest pair leaves when all slots are
        used) and take their products; the pair is kept only where ``s'y > 1e-10 y'y``, which
        keeps H positive definite. Returns ``s . s``, ``trial . trial`` and ``grad . grad``."""
        slot = self.free.pop() if self.free else self.order.popleft()
        live = np.repeat([j in self.order or j == slot for j in range(len(self.with_g) // 2)], 2)
        products = self.ops.add_pair(self.rows, slot, trial, x, grad, g, live)
        for row, of in ((2 * slot, products[0, :-1]), (2 * slot + 1, products[1, :-1])):
            self.gram[row, :] = self.gram[:, row] = of
        self.with_g[:] = products[2, :-1]
        sy, yy = products[0, 2 * slot + 1], products[1, 2 * slot + 1]
        (self.order if sy > 1e-10 * yy else self.free).append(slot)
        return float(products[0, 2 * slot]), float(products[0, -1]), float(products[2, -1])

    def direction(self) -> tuple[np.ndarray, float]:
        """``-H g`` as coefficients of the rows and of ``g``, by the two-loop recursion on the
        inner products: a vector ``q = rows' c + c_g g`` has ``q . rows[k] = (gram c)_k +
        c_g with_g_k``."""
        c, c_g = np.zeros(len(self.with_g)), -1.0

        def q_dot(row: int) -> float:
            return float(self.gram[row] @ c) + c_g * self.with_g[row]

        alphas = {}
        for j in reversed(self.order):
            alphas[j] = q_dot(2 * j) / self.gram[2 * j, 2 * j + 1]       # rho s'q
            c[2 * j + 1] -= alphas[j]
        if self.order:                          # H0 = (s'y / y'y) I of the newest pair
            s_row, y_row = 2 * self.order[-1], 2 * self.order[-1] + 1
            gamma = self.gram[s_row, y_row] / self.gram[y_row, y_row]
            c, c_g = c * gamma, c_g * gamma
        for j in self.order:
            beta = q_dot(2 * j + 1) / self.gram[2 * j, 2 * j + 1]         # rho y'q
            c[2 * j] += alphas[j] - beta
        return c, c_g


def _operations(xp: ModuleType, x: Any) -> Any:
    """The vector operations of a step: the kernels of ``gpuanalogy.kernels.vectors`` for
    contiguous NumPy float32 vectors, the array module's own operations otherwise."""
    if type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous:
        return vectors
    return _ArrayOps(xp)


class _ArrayOps:
    """``kernels.vectors``' operations by an array module's own functions (several passes)."""

    def __init__(self, xp: ModuleType) -> None:
        self.xp = xp

    def dot(self, a: Any, b: Any) -> float:
        return dot(self.xp, a, b)

    def new_rows(self, count: int, like: Any) -> Any:
        return self.xp.empty_like(like, shape=(count, like.size))

    def step_to(self, x: Any, d: Any, alpha: float, out: Any) -> Any:
        self.xp.multiply(d, self.xp.float32(alpha), out=out)
        out += x
        return out

    def combine(self, rows: Any, coefficients: np.ndarray, g: Any, g_coefficient: float,
                out: Any) -> Any:
        self.xp.multiply(g, self.xp.float32(g_coefficient), out=out)
        for k in np.flatnonzero(coefficients):
            out += rows[k] * self.xp.float32(coefficients[k])
        return out

    def add_pair(self, rows: Any, slot: int, trial: Any, x: Any, grad: Any, g: Any,
                 live: np.ndarray) -> np.ndarray:
        xp, s, y = self.xp, rows[2 * slot], rows[2 * slot + 1]
        xp.subtract(trial, x, out=s)
        xp.subtract(grad, g, out=y)
        products = xp.zeros_like(s, shape=(3, len(live) + 1), dtype=xp.float64)
        for k in np.flatnonzero(live):
            for i, v in enumerate((s, y, grad)):
                products[i, k] = dot(xp, v, rows[k], to_host=False)
        products[0, -1] = dot(xp, trial, trial, to_host=False)
        products[2, -1] = dot(xp, grad, grad, to_host=False)
        return to_host(products)  # one read


def _check_finite(value: float, what: str, evaluation: int) -> None:
    if not np.isfinite(value):
        raise NumericalError(f"the {what} is {value} at evaluation {evaluation}")
