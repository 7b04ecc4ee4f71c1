"""L-BFGS on the backend's own arrays, with SciPy's MINPACK-2 line search on scalars.

The deconvolution minimises ``f(x) = 0.5 * ||CNN(x) - target||^2`` over feature maps of up to a
few million values. As the official implementation does with its CUDA L-BFGS, the vectors stay
where the network's gradient is produced (NumPy on the CPU, CuPy on the GPU) and are float32;
inner products are accumulated in float64 (see :func:`dot`). Only scalars cross to the host:
the loss, and ``phi'(alpha) = g(x + alpha d) . d`` for the line search.

The recursion (Nocedal & Wright, algorithm 7.4) keeps ``history`` pairs ``s = x_{k+1} - x_k``,
``y = g_{k+1} - g_k`` and starts from ``H0 = (s'y / y'y) I``. Each step length comes from
SciPy's port of MINPACK-2's DCSRCH (More and Thuente's strong-Wolfe search, the one inside
L-BFGS-B), driven through ``phi(alpha)`` / ``phi'(alpha)`` callbacks. The first step, along
-g, has no curvature to size it: for a loss with a known floor (the deconvolution's sum of
squares) it tries Polyak's step to that floor, which the search accepts at once where L-BFGS-B's
move by 1 takes it about six evaluations (docs/performance.md).

Official parameters: history 4, at most 100 iterations, c1 = 1e-4, c2 = 0.9, and a stop when
``||g||^2 < 1e-8 * max(1, ||x||^2)``. A stopping rule may end a run earlier: :class:`Settled`
once the variable has stopped moving by a share of itself, :class:`Plateau` once the loss has
stopped falling by a share of itself.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from scipy.linalg.blas import saxpy

from .errors import NumericalError

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
_RUN = 1024     # products summed in float32 before their sums are accumulated in float64


@dataclass(frozen=True)
class _Pair:
    """One correction pair: ``s = x_{k+1} - x_k``, ``y = g_{k+1} - g_k``, ``rho = 1 / s'y``
    and ``gamma = s'y / y'y`` (the scale of H0 when this pair is the newest)."""

    s: Any
    y: Any
    rho: float
    gamma: float


def dot(xp: ModuleType, a: Any, b: Any) -> float:
    """``a . b`` of two float32 vectors of shape (n,).

    The products of each run of 1024 consecutive elements are summed in float32 in one fused
    pass (``einsum``), and the runs' sums in float64: as fast as a float32 dot, with a rounding
    error near float32's epsilon however long the vectors (a plain float32 sum over millions
    of values loses about two more digits).
    """
    whole = a.size // _RUN * _RUN
    runs = xp.einsum("ij,ij->i", a[:whole].reshape(-1, _RUN), b[:whole].reshape(-1, _RUN))
    total = xp.sum(runs, dtype=xp.float64)
    if whole < a.size:
        total = total + xp.sum(a[whole:] * b[whole:], dtype=xp.float64)
    return float(total)


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
    scratch = xp.empty_like(x)
    loss, g = fun(x)
    evaluations = 1
    _check_finite(loss, "loss", evaluations)
    initial_loss = loss
    losses, moves = [loss], []
    pairs: deque[_Pair] = deque(maxlen=history)
    iterations = restarts = 0
    stop = MAX_ITERATIONS
    trial = xp.empty_like(x)
    while iterations < max_iter:
        gg = dot(xp, g, g)
        _check_finite(gg, "gradient", evaluations)
        if gg < tolerance * max(1.0, dot(xp, x, x)):
            stop = CONVERGED
            break
        if evaluations >= 5 * max_iter:
            stop = MAX_EVALUATIONS
            break
        d = _direction(xp, g, pairs, scratch)
        steepest = not pairs
        derphi0 = dot(xp, g, d)
        if derphi0 >= 0:           # rounding made the direction uphill: use -g
            d, steepest, derphi0 = -g, True, -gg
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
            _step_to(xp, x, d, alpha, out=trial)
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
            value = dot(xp, last["grad"], d)
            _check_finite(value, "gradient", evaluations)
            return value

        alpha = strong_wolfe_step(phi, derphi, loss, derphi0, step, c1=c1, c2=c2)
        if alpha is None:
            # A failed search: move to the lowest point it found, if any, and retry from
            # steepest descent; a failure from steepest descent ends the run at the best point.
            if "alpha" in best:
                x = _step_to(xp, x, d, best["alpha"], out=trial)
                trial = xp.empty_like(x)
                loss, g = best["loss"], best["grad"]
            elif steepest:
                stop = LINE_SEARCH_FAILED
                break
            pairs.clear()
            restarts += 1
            continue
        evaluate(alpha)
        # With the history full, the oldest pair leaves now and its vectors are reused (no new
        # pages to touch); a rejected new pair then leaves the history one shorter.
        s = y = None
        if len(pairs) == history:
            oldest = pairs.popleft()
            s, y = oldest.s, oldest.y
        s = xp.subtract(trial, x, out=s)           # the step actually taken, in float32
        y = xp.subtract(last["grad"], g, out=y)
        sy, yy = dot(xp, s, y), dot(xp, y, y)
        if sy > 1e-10 * yy:                        # keep H positive definite
            pairs.append(_Pair(s, y, 1.0 / sy, sy / yy))
        moves.append(float(np.sqrt(dot(xp, s, s) / max(dot(xp, trial, trial), _TINY))))
        x, trial = trial, x
        loss, g = last["loss"], last["grad"]
        iterations += 1
        losses.append(loss)
        if rule is not None and rule.reached(losses, moves):
            stop = rule.reason
            break
    return LbfgsResult(x, loss, initial_loss, iterations, evaluations, restarts, stop,
                       tuple(losses), tuple(moves))


def _step_to(xp: ModuleType, x: Any, d: Any, alpha: float, *, out: Any) -> Any:
    """``out = x + alpha * d`` in float32, without temporaries."""
    xp.multiply(d, xp.float32(alpha), out=out)
    out += x
    return out


def _direction(xp: ModuleType, g: Any, pairs: deque[_Pair], scratch: Any) -> Any:
    """``-H g`` by the two-loop recursion over the stored pairs (run on -g: H is linear)."""
    q = xp.negative(g)
    alphas = []
    for pair in reversed(pairs):
        a = pair.rho * dot(xp, pair.s, q)
        alphas.append(a)
        _axpy(xp, -a, pair.y, q, scratch)
    if pairs:
        q *= xp.float32(pairs[-1].gamma)            # H0 = (s'y / y'y) I of the newest pair
    for pair, a in zip(pairs, reversed(alphas)):
        b = pair.rho * dot(xp, pair.y, q)
        _axpy(xp, a - b, pair.s, q, scratch)
    return q


def _axpy(xp: ModuleType, a: float, x: Any, y: Any, scratch: Any) -> None:
    """``y += a * x`` in place. Contiguous NumPy float32 vectors go through BLAS's saxpy, one
    pass over memory instead of the two of a ufunc multiply and add; other arrays (CuPy) take
    the two ufunc passes through ``scratch``."""
    if (type(y) is np.ndarray and type(x) is np.ndarray and y.dtype == x.dtype == np.float32
            and y.flags.c_contiguous and x.flags.c_contiguous):
        saxpy(x, y, a=a)
    else:
        xp.multiply(x, xp.float32(a), out=scratch)
        y += scratch


def _check_finite(value: float, what: str, evaluation: int) -> None:
    if not np.isfinite(value):
        raise NumericalError(f"the {what} is {value} at evaluation {evaluation}")
