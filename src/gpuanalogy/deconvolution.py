"""Deconvolution: find features at level L-1 whose image under the network matches a target.

Given the target T at level L (B' features warped by the NNF), L-BFGS searches for features X at
level L-2 such that CNN_{L-2 -> L}(X) ~= T, and the reconstruction at level L-1 is
R = CNN_{L-2 -> L-1}(X). That is what the official implementation does; at the bottom level the
variable is the preprocessed image itself. SciPy owns the optimiser; the loss and gradient come
from one ONNX Runtime run of the sub-network graph, and only the flat float64 vector crosses to
the host.

:func:`deconvolve_all` runs a level's independent deconvolutions (A' and B) side by side when
the backend has lanes for them and the machine has the memory.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from .backend import Backend

log = logging.getLogger("gpuanalogy")

# Host memory one more concurrent L-BFGS run adds, per value of its variable: SciPy's workspace
# ((2 * history + 5) float64 vectors), its wrapper's and our copies, ONNX Runtime's activations.
# Measured 260-330 bytes at 224, 256 and 448 px (docs/performance.md).
SIDE_BY_SIDE_BYTES_PER_VALUE = 340


@dataclass(frozen=True)
class DeconvolutionStats:
    """What one L-BFGS run did and where its time went.

    ``seconds`` is the whole run; ``network_seconds`` the sub-network evaluations (value and
    gradient, on the backend's device); ``transfer_seconds`` moving the vector to the device
    and the gradient back as float64; the rest is SciPy's optimiser itself (and, side by side,
    waiting for Python's lock). ``lanes`` is how many runs were in flight together: 1 alone,
    2 side by side (see :func:`deconvolve_all`).
    """

    iterations: int
    evaluations: int
    initial_loss: float
    final_loss: float
    seconds: float
    network_seconds: float = 0.0
    transfer_seconds: float = 0.0
    lanes: int = 1

    @property
    def optimizer_seconds(self) -> float:
        return self.seconds - self.network_seconds - self.transfer_seconds


def deconvolve(subnet: Any, x0: Any, target: Any, *, max_iter: int = 100, history: int = 4,
               backend: Backend) -> tuple[Any, DeconvolutionStats]:
    """Reconstruct level L-1 features whose forward pass to level L matches ``target``.

    Parameters
    ----------
    subnet : gpuanalogy.features.SubNetwork
        The sub-network from level L-2 to level L with ``loss_and_grad`` and ``forward``.
    x0 : array, shape (C, H, W), float32
        Starting point at level L-2 (officially the structure image's own features there).
    target : array, shape (C_L, H_L, W_L), float32
    max_iter, history : L-BFGS iterations and the number of stored correction pairs
        (official: 100 and 4).

    Returns
    -------
    reconstruction : array, shape (C_{L-1}, H_{L-1}, W_{L-1}), float32, on ``backend.xp``
    stats : DeconvolutionStats
    """
    start = time.perf_counter()
    xp = backend.xp
    shape = x0.shape
    first_loss: list[float] = []
    spent = {"network": 0.0, "transfer": 0.0}

    def loss_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        x = xp.asarray(flat.reshape(shape), dtype=xp.float32)
        backend.synchronize()
        t1 = time.perf_counter()
        loss, grad = subnet.loss_and_grad(x, target)
        backend.synchronize()
        t2 = time.perf_counter()
        grad = backend.to_numpy(grad).ravel().astype(np.float64)
        spent["network"] += t2 - t1
        spent["transfer"] += (t1 - t0) + (time.perf_counter() - t2)
        if not first_loss:
            first_loss.append(float(loss))
        return float(loss), grad

    x_start = backend.to_numpy(x0).ravel().astype(np.float64)
    # maxiter bounds the work; maxfun only guards against a line search that never ends (we
    # measure about 1.06 evaluations per iteration).
    result = minimize(loss_and_grad, x_start, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "maxcor": history, "maxfun": 5 * max_iter})
    x = xp.asarray(result.x.reshape(shape), dtype=xp.float32)
    mid, _ = subnet.forward(x)
    stats = DeconvolutionStats(int(result.nit), int(result.nfev),
                               first_loss[0] if first_loss else float("nan"),
                               float(result.fun), time.perf_counter() - start,
                               spent["network"], spent["transfer"])
    return mid, stats


def deconvolve_all(problems: Sequence[tuple[Any, Any, Any]], *, max_iter: int = 100,
                   history: int = 4, backend: Backend) -> list[tuple[Any, DeconvolutionStats]]:
    """:func:`deconvolve` each ``(subnet, x0, target)``, side by side where possible.

    The problems are independent, so up to ``backend.lanes`` of them run at once on threads,
    each sub-network on sessions with a matching share of the cores (``subnet.side_by_side``).
    They run one after another, with all the cores each, when the backend has one lane or
    when another run's memory (estimated from the largest variable) would take more than half
    of the memory available now. Each result is the same either way.
    """
    lanes = min(backend.lanes, len(problems))
    if lanes > 1:
        largest = max(int(np.prod(x0.shape)) for _, x0, _ in problems)
        extra = (lanes - 1) * largest * SIDE_BY_SIDE_BYTES_PER_VALUE
        available = available_memory()
        if available is not None and extra > available // 2:
            log.info("deconvolutions run one at a time: side by side they would need %.1f GiB "
                     "more, %.1f GiB is available", extra / 2**30, available / 2**30)
            lanes = 1

    def solve(problem: tuple[Any, Any, Any]) -> tuple[Any, DeconvolutionStats]:
        subnet, x0, target = problem
        return deconvolve(subnet, x0, target, max_iter=max_iter, history=history,
                          backend=backend)

    if lanes == 1:
        return [solve(problem) for problem in problems]
    shared = [(subnet.side_by_side(lanes), x0, target) for subnet, x0, target in problems]
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="deconvolution") as pool:
        return [(mid, dataclasses.replace(stats, lanes=lanes))
                for mid, stats in pool.map(solve, shared)]


def available_memory() -> int | None:
    """Bytes of host memory available to new allocations now, or None when unknown."""
    try:
        import psutil  # noqa: PLC0415 - optional

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
