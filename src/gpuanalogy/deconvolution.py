"""Deconvolution: find features at level L-1 whose image under the network matches a target.

Given the target T at level L (B' features warped by the NNF), L-BFGS searches for features X at
level L-2 such that CNN_{L-2 -> L}(X) ~= T, and the reconstruction at level L-1 is
R = CNN_{L-2 -> L-1}(X). That is what the official implementation does; at the bottom level the
variable is the preprocessed image itself. The loss and gradient come from one ONNX Runtime run
of the sub-network graph.

When to stop (``config.LBFGS_STOPS``): ``"official"`` runs every iteration asked (the official
code stops only at a gradient tolerance it never reaches in practice); ``"adaptive"`` stops a
run once its variable has stopped moving by a share of itself (:data:`ADAPTIVE_STOP`, per
level), with the iterations asked as the cap, and runs none where a warp of the other image's
own features does as well (:func:`warps`: the top level, and B's level below it).

Two optimisers (``config.OPTIMIZERS``): ``"lbfgs"`` (default) runs L-BFGS on the backend's own
float32 arrays with SciPy's MINPACK-2 line search on scalars (:mod:`gpuanalogy.lbfgs`), as the
official code keeps its L-BFGS on the GPU; ``"scipy"`` is SciPy's L-BFGS-B, the reference, which
takes the vector to the host as float64 at every evaluation.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import minimize as scipy_minimize
from threadpoolctl import threadpool_limits

from . import lbfgs
from .backend import Backend
from .errors import NumericalError

#: Stopping rules a deconvolution takes (``gpuanalogy.lbfgs``).
Rule = lbfgs.Settled | lbfgs.Plateau

#: The adaptive stop (``lbfgs_stop="adaptive"``), by the level of the loop (the sub-network's
#: top level L; the deconvolution rebuilds L-1). At L = 5 and 4 a run ends once its variable
#: moved by less than 6 % of itself over the last 5 iterations (never before 10); at L = 3,
#: whose reconstruction (relu2_1) the level-2 search rests on, under 3 %: at 6 % a pair whose
#: search goes astray went further astray; the last one, at L = 2, whose variable is the image
#: and whose reconstruction the level-1 search (so the output's texture) rests on, runs every
#: iteration (None). Chosen by the outputs on known-answer and style pairs
#: (docs/performance.md, "When L-BFGS stops"): the loss still falls after the official 100
#: iterations, and a rule on it saves as much on photos but loses more of a style exemplar's
#: texture; a looser tolerance (8 %) does too.
_SETTLED = lbfgs.Settled(tol=0.06, window=5, min_iter=10)
ADAPTIVE_STOP: dict[int, Rule | None] = {
    5: _SETTLED, 4: _SETTLED, 3: dataclasses.replace(_SETTLED, tol=0.03), 2: None}

#: The levels of the loop at which an analogy under the adaptive stop runs no deconvolution,
#: by output (:func:`warps`). At L = 5 relu4_1, of which A' keeps 90 % of A's own where A
#: responds (blend 3), is the other image's relu4_1 warped by the field, on both sides. At L = 4
#: B's relu3_1 is A's own warped by the B' -> A field, as ``outputs="a_prime"`` makes every level
#: of B: warping A''s there too loses 0.2 dB of A' on the known answers, B's alone keeps both
#: outputs and saves B's costliest run left (docs/performance.md, "B's relu3_1 by a warp"). A
#: clip still deconvolves these, warm from the frame before (:mod:`gpuanalogy.video`).
ADAPTIVE_WARP: dict[str, frozenset[int]] = {"a_prime": frozenset({5}), "b": frozenset({5, 4})}


def warps(stop: str | Rule, level: int, output: str) -> bool:
    """Whether ``stop`` rebuilds level L-1 of ``output`` ("a_prime" or "b") at loop level
    ``level`` by warping the other image's own level L-1 through the field instead of a
    deconvolution (:data:`ADAPTIVE_WARP`)."""
    return stop == "adaptive" and level in ADAPTIVE_WARP[output]


def stop_rule(stop: str | Rule, level: int) -> Rule | None:
    """The rule of an ``lbfgs_stop`` name at loop level ``level`` ("adaptive": its
    :data:`ADAPTIVE_STOP` entry; "official": none), or the rule itself when given one."""
    if isinstance(stop, str):
        return ADAPTIVE_STOP[level] if stop == "adaptive" else None
    return stop


@dataclass(frozen=True)
class DeconvolutionStats:
    """What one L-BFGS run did and where its time went.

    ``seconds`` is the whole run; ``network_seconds`` the sub-network evaluations (value and
    gradient, on the backend's device, and the final forward pass to the reconstruction);
    ``transfer_seconds`` moving the vector between the backend and SciPy's float64 host copy
    (zero for ``"lbfgs"``, whose vectors stay put); the rest is the optimiser itself. ``stop``
    says why it ended (``gpuanalogy.lbfgs``: converged, settled, plateau, max_iterations,
    max_evaluations, line_search_failed), ``rule`` which stopping rule ran ("adaptive",
    "official", or "custom" for a rule given as such), ``max_iterations`` the cap it ran
    under, and ``restarts`` how often a failed line search restarted from steepest descent.
    ``losses`` is the loss at the start and after every iteration, ``moves`` every iteration's
    step relative to the point it reached.
    """

    iterations: int
    evaluations: int
    initial_loss: float
    final_loss: float
    seconds: float
    network_seconds: float = 0.0
    transfer_seconds: float = 0.0
    optimizer: str = "lbfgs"
    stop: str = lbfgs.MAX_ITERATIONS
    restarts: int = 0
    rule: str = "official"
    max_iterations: int = 0
    losses: tuple[float, ...] = ()
    moves: tuple[float, ...] = ()

    @property
    def optimizer_seconds(self) -> float:
        return self.seconds - self.network_seconds - self.transfer_seconds


class Deconvolved(NamedTuple):
    """What :func:`deconvolve` returns.

    reconstruction : array, shape (C_{L-1}, H_{L-1}, W_{L-1}), float32, on ``backend.xp``
        The rebuilt level L-1.
    variable : array, shape like ``x0``, float32, on ``backend.xp``
        The solution at level L-2 (a later deconvolution of a similar target can start there).
    stats : DeconvolutionStats
    """

    reconstruction: Any
    variable: Any
    stats: DeconvolutionStats


def deconvolve(subnet: Any, x0: Any, target: Any, *, max_iter: int = 100, history: int = 4,
               optimizer: str = "lbfgs", stop: str | Rule = "official",
               backend: Backend) -> Deconvolved:
    """Reconstruct level L-1 features whose forward pass to level L matches ``target``.

    Parameters
    ----------
    subnet : gpuanalogy.features.SubNetwork
        The sub-network from level L-2 to level L (``subnet.level`` is L) with
        ``loss_and_grad`` and ``forward``.
    x0 : array, shape (C, H, W), float32
        Starting point at level L-2 (officially the structure image's own features there).
    target : array, shape (C_L, H_L, W_L), float32
    max_iter, history : L-BFGS iterations and the number of stored correction pairs
        (official: 100 and 4).
    optimizer : {"lbfgs", "scipy"}
        See :data:`gpuanalogy.config.OPTIMIZERS`.
    stop : {"official", "adaptive"}, or a rule of :mod:`gpuanalogy.lbfgs`
        See :data:`gpuanalogy.config.LBFGS_STOPS`, or a rule of one's own (benchmarks try
        candidates so); ``max_iter`` is the cap either way.

    Returns
    -------
    Deconvolved
        The reconstruction at level L-1, the variable at level L-2, and the stats.

    Raises
    ------
    NumericalError
        The loss or its gradient became NaN or infinite; the message names the level.
    """
    start = time.perf_counter()
    solve = _on_backend if optimizer == "lbfgs" else _with_scipy
    # One BLAS thread while the optimiser and the network take turns: BLAS's idle worker
    # threads spin after each call and take the cores from the network's own thread pool
    # (measured: docs/performance.md).
    with threadpool_limits(limits=1, user_api="blas"):
        try:
            x, stats = solve(subnet, x0, target, max_iter=max_iter, history=history,
                             rule=stop_rule(stop, subnet.level), backend=backend)
        except NumericalError as exc:
            raise NumericalError(f"deconvolution of level {subnet.level - 1} "
                                 f"({subnet.mid_layer}): {exc}; the result would be NaN"
                                 ) from None
    forward_start = time.perf_counter()
    x = x.reshape(x0.shape)
    mid, _ = subnet.forward(x)
    backend.synchronize()
    end = time.perf_counter()
    return Deconvolved(mid, x, dataclasses.replace(
        stats, seconds=end - start, network_seconds=stats.network_seconds + end - forward_start,
        rule=stop if isinstance(stop, str) else "custom", max_iterations=max_iter))


def _timed(subnet: Any, target: Any, shape: tuple[int, ...], backend: Backend,
           spent: dict[str, float]) -> Callable[[Any], tuple[float, Any]]:
    """The objective on backend arrays of ``shape``, adding its seconds to spent["network"]."""

    def loss_and_grad(x: Any) -> tuple[float, Any]:
        t0 = time.perf_counter()
        loss, grad = subnet.loss_and_grad(x.reshape(shape), target)
        backend.synchronize()
        spent["network"] += time.perf_counter() - t0
        return float(loss), grad

    return loss_and_grad


def _on_backend(subnet: Any, x0: Any, target: Any, *, max_iter: int, history: int,
                rule: Rule | None, backend: Backend) -> tuple[Any, DeconvolutionStats]:
    """L-BFGS on the backend's float32 arrays (:func:`gpuanalogy.lbfgs.minimize`)."""
    xp = backend.xp
    spent = {"network": 0.0}
    objective = _timed(subnet, target, x0.shape, backend, spent)

    def flat(x: Any) -> tuple[float, Any]:
        loss, grad = objective(x)
        return loss, xp.ascontiguousarray(grad, dtype=xp.float32).reshape(-1)

    # The loss is a sum of squares: its floor, 0, sizes the first step (lbfgs.minimize).
    result = lbfgs.minimize(flat, xp.ascontiguousarray(x0, dtype=xp.float32).reshape(-1), xp=xp,
                            max_iter=max_iter, history=history, rule=rule, lower_bound=0.0)
    return result.x, DeconvolutionStats(
        result.iterations, result.evaluations, result.initial_loss, result.loss, 0.0,
        spent["network"], optimizer="lbfgs", stop=result.stop, restarts=result.restarts,
        losses=result.losses, moves=result.moves)


def _with_scipy(subnet: Any, x0: Any, target: Any, *, max_iter: int, history: int,
                rule: Rule | None, backend: Backend) -> tuple[Any, DeconvolutionStats]:
    """SciPy's L-BFGS-B on a float64 host copy of the vector (the reference)."""
    xp = backend.xp
    spent = {"network": 0.0, "transfer": 0.0}
    objective = _timed(subnet, target, x0.shape, backend, spent)
    first_loss: list[float] = []

    def loss_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        x = xp.asarray(flat, dtype=xp.float32)
        backend.synchronize()
        t1 = time.perf_counter()
        loss, grad = objective(x)
        t2 = time.perf_counter()
        grad = backend.to_numpy(grad).ravel().astype(np.float64)
        spent["transfer"] += (t1 - t0) + (time.perf_counter() - t2)
        if not np.isfinite(loss) or not np.isfinite(grad).all():
            raise NumericalError(f"the loss or its gradient is not finite at evaluation "
                                 f"{len(first_loss) + 1}")
        if not first_loss:
            first_loss.append(loss)
        return loss, grad

    # Each iteration's loss and relative step, for the stopping rule: SciPy calls back after
    # every iteration and ends the run when the callback raises StopIteration.
    x_start = backend.to_numpy(x0).ravel().astype(np.float64)
    losses: list[float] = []
    moves: list[float] = []
    previous = [x_start]
    stopped_by_rule: list[bool] = []

    def after_iteration(intermediate_result: Any) -> None:
        x = intermediate_result.x
        losses.append(float(intermediate_result.fun))
        moves.append(float(np.linalg.norm(x - previous[0]) / max(np.linalg.norm(x), 1e-15)))
        previous[0] = x.copy()
        if rule is not None and rule.reached(first_loss[:1] + losses, moves):
            stopped_by_rule.append(True)
            raise StopIteration

    # maxiter bounds the work; maxfun only guards against a line search that never ends.
    result = scipy_minimize(loss_and_grad, x_start, jac=True, method="L-BFGS-B",
                            callback=after_iteration,
                            options={"maxiter": max_iter, "maxcor": history,
                                     "maxfun": 5 * max_iter})
    if stopped_by_rule:
        stop = rule.reason  # type: ignore[union-attr]
    else:
        stop = {0: lbfgs.CONVERGED, 2: lbfgs.LINE_SEARCH_FAILED}.get(
            int(result.status),
            lbfgs.MAX_ITERATIONS if result.nit >= max_iter else lbfgs.MAX_EVALUATIONS)
    x = xp.asarray(result.x, dtype=xp.float32)
    return x, DeconvolutionStats(
        int(result.nit), int(result.nfev), first_loss[0] if first_loss else float("nan"),
        float(result.fun), 0.0, spent["network"], spent["transfer"], optimizer="scipy",
        stop=stop, losses=tuple(first_loss[:1] + losses), moves=tuple(moves))
