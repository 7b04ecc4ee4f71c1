"""``gpuanalogy batch`` on a Dask cluster, through the client :mod:`gpuanalogy.app.client` opens.

The client (this process) does everything that touches files: it reads the pairs, finds what is
already complete (:func:`gpuanalogy.app.pair.plan`), reads each pair's two images and sends them;
a worker computes the analogy with the network it keeps for every pair
(:func:`compute_on_worker`) and sends the results back; the client writes each pair's folder by
the protocol of :mod:`gpuanalogy.app.resume`. No file system is shared, and a killed client
resumes as a batch in process does.

Failures: an error of the method about the pair (bad input, the device out of memory) comes back
as a value and is recorded as in process, never retried. A worker that dies while it holds a
pair makes the scheduler give the pair to another worker (up to Dask's
``distributed.scheduler.allowed-failures`` deaths, 3 by default; then the pair fails with
``KilledWorker``). Any other exception is retried ``retries`` times, on any worker.

``distributed`` is imported only when a cluster is used, so ``batch`` in process and
``--help`` never load it.
"""
from __future__ import annotations

import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import AnalogyConfig
from ..errors import GpuAnalogyError
from ..features import load_network
from ..files import check_output_dir
from . import pair as pair_module
from .client import import_extra
from .pair import PairResult, pair_outcome, plan, read_inputs, write_into_place
from .pairs import Pair
from .progress import BatchProgress
from .resume import exclusive

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["run_batch_on", "compute_on_worker", "WorkerResult"]


def run_batch_on(client: "Client", pairs: Sequence[Pair], outdir: str | os.PathLike[str], *,
                 save_levels: bool = False, progress: BatchProgress | None = None,
                 on_update: Callable[[list[PairResult]], None] | None = None,
                 debug: bool = False, retries: int = 1) -> list[PairResult]:
    """Compute every pair not already complete in ``outdir`` on ``client``'s cluster.

    What :func:`gpuanalogy.app.batch.run_pairs` does in process, with the same folders, resume
    and results; the pairs run on the workers, the client writes. A few more pairs than the
    cluster has threads are in flight at a time, so the client holds few images.

    Parameters
    ----------
    client : distributed.Client
    pairs : sequence of Pair
        With unique names.
    outdir : str or os.PathLike
        Written by this process only; the workers need no access to it.
    save_levels, progress, on_update, debug
        As for :func:`gpuanalogy.app.batch.run_pairs`.
    retries : int
        How many times a pair is run again after an exception that is not an error of the
        method (a worker's death is handled by the scheduler; see the module docstring).

    Returns
    -------
    list of PairResult
        In the order of ``pairs``.

    Examples
    --------
    >>> from distributed import Client, LocalCluster                       # doctest: +SKIP
    >>> from gpuanalogy.app.pairs import read_pairs_csv                    # doctest: +SKIP
    >>> with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:  # doctest: +SKIP
    ...     results = run_batch_on(client, read_pairs_csv("pairs.csv"), "out")
    """
    distributed = import_extra("distributed", "dask[distributed]", "distributed")
    out = check_output_dir(outdir)
    with exclusive(out):
        results, progress = plan(pairs, out, save_levels, progress)
        waiting = deque(i for i, r in enumerate(results) if r.status == "pending")
        for index, result in enumerate(results):
            if result.status == "skipped":
                progress.start_pair(index, result.pair.name)
                progress.end_pair(result)
        sent: dict[Any, tuple[int, np.ndarray, np.ndarray]] = {}
        running = distributed.as_completed()
        try:
            while waiting or sent:
                while waiting and len(sent) < 2 * max(sum(client.nthreads().values()), 1):
                    index = waiting.popleft()
                    submitted = _send(client, results[index], index, progress, out, debug,
                                      save_levels, retries)
                    if submitted is None:
                        _finished(results, index, progress, on_update)
                    else:
                        future, a, b_prime = submitted
                        sent[future] = (index, a, b_prime)
                        running.add(future)
                progress.in_flight(len(sent))
                if sent:
                    future = next(running)
                    index, a, b_prime = sent.pop(future)
                    _write(results[index], future, a, b_prime, out, progress, debug)
                    _finished(results, index, progress, on_update)
        finally:
            for future in sent:
                future.cancel()
            progress.close()
    return results


def _send(client: "Client", result: PairResult, index: int, progress: BatchProgress,
          out: Path, debug: bool, save_levels: bool, retries: int
          ) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """Read a pair's images and submit it: its future and images, or None when reading them
    failed (recorded in ``result``)."""
    progress.start_pair(index, result.pair.name)
    with pair_outcome(result, out, progress, debug):
        a, b_prime, regions = read_inputs(result, progress)
        future = client.submit(compute_on_worker, a, b_prime, result.pair.config,
                               result.pair.inputs, save_levels, regions, retries=retries,
                               key=f"analogy-{result.pair.name}-{uuid.uuid4().hex[:8]}")
        return future, a, b_prime
    return None


def _write(result: PairResult, future: Any, a: np.ndarray, b_prime: np.ndarray, out: Path,
           progress: BatchProgress, debug: bool) -> None:
    """Write a pair the cluster sent back, or record its failure."""
    with pair_outcome(result, out, progress, debug):
        sent: WorkerResult = future.result()
        result.seconds += sent.seconds
        for text in sent.notices:
            progress.show_notice(text)
        if sent.error is not None:
            raise sent.error
        write_into_place(out, result.pair.name, lambda partial: pair_module.write_pair(
            partial, sent.pair, a, b_prime, result.pair.config))
        result.status = "ok"


def _finished(results: list[PairResult], index: int, progress: BatchProgress,
              on_update: Callable[[list[PairResult]], None] | None) -> None:
    progress.start_pair(index, results[index].pair.name)
    progress.end_pair(results[index])
    if on_update:
        on_update(results)


@dataclass
class WorkerResult:
    """What a worker sends back for one pair: the computed pair or the method's error about it,
    the notices it gave (the size rule's), and the seconds it took."""

    pair: pair_module.ComputedPair | None = None
    error: GpuAnalogyError | None = None
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0


def compute_on_worker(a: np.ndarray, b_prime: Any, config: AnalogyConfig,
                      names: tuple[str, ...], save_levels: bool,
                      regions: pair_module.Regions | None = None) -> WorkerResult:
    """One pair on a worker, with the network this process keeps
    (:func:`gpuanalogy.features.load_network`)."""
    sent = WorkerResult()
    start = time.perf_counter()
    try:
        sent.pair = pair_module.compute_pair(a, b_prime, config, names=names, regions=regions,
                                             model=load_network(config.weights, config.device),
                                             save_levels=save_levels,
                                             on_notice=sent.notices.append)
    except GpuAnalogyError as error:
        sent.error = error
    sent.seconds = time.perf_counter() - start
    return sent
