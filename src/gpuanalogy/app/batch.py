"""``gpuanalogy batch``: many pairs with one loaded network, resumable after a crash or a kill.

The pairs come from a CSV file or two folders (:mod:`gpuanalogy.app.pairs`); each is computed
into its own folder under OUTDIR as ``run`` writes it, by the protocol of
:mod:`gpuanalogy.app.resume`, so a rerun computes only what is missing. One pair's failure (an
unreadable image, the GPU out of memory) is recorded and the batch goes on. The exit status is
2 when a pair failed on bad input (as ``run`` exits for it), else 1 when a pair failed for
another reason (the GPU out of memory, an unwritable folder, an internal error), else 0.

With ``--workers`` or ``--scheduler`` the pairs are computed on a Dask cluster
(:mod:`gpuanalogy.app.cluster`), and this process still writes every folder by the same steps
of :mod:`gpuanalogy.app.pair`: ``plan``, ``read_inputs``, ``write_into_place`` and
``pair_outcome``.

``OUTDIR/summary.json`` is rewritten (atomically) after every pair: one entry per pair with its
status (``ok``, ``skipped``, ``failed`` or, while the batch runs, ``pending``), seconds, and the
one-line error of a failed pair.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import AnalogyConfig
from ..errors import EXIT_ERROR
from ..features import load_network
from ..files import check_output_dir, output_folder, write_json
from . import pair as pair_module
from .client import open_client
from .cluster import run_batch_on
from .options import config_from_options
from .pair import PairResult, pair_outcome, plan, read_inputs, write_into_place
from .pairs import SUMMARY, Pair, pairs_from_argument
from .progress import BatchProgress, print_notice
from .resume import exclusive

__all__ = ["run_pairs", "summary_table", "command"]


def run_pairs(pairs: Sequence[Pair], outdir: str | os.PathLike[str], *,
              load_model: Callable[[AnalogyConfig], Any] | None = None,
              save_levels: bool = False, progress: "BatchProgress | None" = None,
              on_update: Callable[[list[PairResult]], None] | None = None,
              debug: bool = False) -> list[PairResult]:
    """Compute every pair not already complete in ``outdir``, each into ``outdir/<name>``.

    Parameters
    ----------
    pairs : sequence of Pair
        With unique names.
    outdir : str or os.PathLike
        Created if needed. What a killed batch left in it (``.*.partial`` folders, temporary
        files) is removed first.
    load_model : callable, optional
        ``load_model(config)`` returns the network, called once, at the first pair that needs
        computing. Defaults to ``gpuanalogy.features.load_network(config.weights,
        config.device)``.
    save_levels : bool
        Also write each level's A' and B.
    progress : BatchProgress, optional
        The display; by default one on stderr.
    on_update : callable, optional
        Called with all results (pending ones included) after each pair.
    debug : bool
        Print the traceback of each failed pair.

    Returns
    -------
    list of PairResult
        In the order of ``pairs``.

    Raises
    ------
    InputError
        ``outdir`` cannot be written, or another batch is writing to it.
    ModelError
        The network could not be loaded (every pair would fail).
    """
    out = check_output_dir(outdir)
    with exclusive(out):
        results, progress = plan(pairs, out, save_levels, progress)
        model, loaded = None, False
        try:
            for index, result in enumerate(results):
                progress.start_pair(index, result.pair.name)
                if result.status != "skipped":
                    if not loaded:
                        model, loaded = _load(result.pair.config, load_model), True
                    _run_one(result, out, model, save_levels, progress, debug)
                progress.end_pair(result)
                if on_update:
                    on_update(results)
        finally:
            progress.close()   # an interruption's message starts on a clean line
    return results


def _load(config: AnalogyConfig, load_model: Callable[[AnalogyConfig], Any] | None) -> Any:
    if load_model is not None:
        return load_model(config)
    return load_network(config.weights, config.device)


def _run_one(result: PairResult, out: Path, model: Any, save_levels: bool,
             progress: "BatchProgress", debug: bool) -> None:
    """Compute one pair into its folder; record the outcome."""
    pair = result.pair
    with pair_outcome(result, out, progress, debug):
        a, b_prime, regions = read_inputs(result, progress)

        def compute(partial: Path) -> None:
            progress.clear()  # run_pair may print a notice of its own
            pair_module.run_pair(a, b_prime, partial, pair.config, names=pair.inputs,
                                 regions=regions, model=model, save_levels=save_levels,
                                 on_progress=progress.stage)

        write_into_place(out, pair.name, compute)
        result.status = "ok"


def summary_table(results: Iterable[PairResult]) -> str:
    """The end-of-batch table: pair, status, seconds, message."""
    rows = [("pair", "status", "seconds", "message")]
    rows += [(r.pair.name, r.status, f"{r.seconds:.1f}", r.error or "") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for name, status, seconds, message in rows:
        line = f"{name:<{widths[0]}}  {status:<{widths[1]}}  {seconds:>{widths[2]}}  {message}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    """The ``gpuanalogy batch`` command; returns the exit status (see the module docstring).

    ``args`` is the parsed command line: ``pairs``, ``b_folder``, ``output``, the settings
    options, ``save_levels``, ``debug`` and where to run (``workers``, ``scheduler``,
    ``scheduler_file``: all None in process; ``connect_timeout``; :mod:`gpuanalogy.app.client`).
    """
    started = time.perf_counter()
    options = vars(args)
    config_from_options(options)   # refuses a bad command-line value before anything else
    pairs = pairs_from_argument(args.pairs, args.b_folder,
                                lambda preset: config_from_options(options, preset=preset),
                                on_notice=print_notice)
    with output_folder(args.output) as out:   # gone again if the batch fails having written nothing

        def write_summary(results: list[PairResult], finished: bool = False) -> None:
            counts = {status: sum(r.status == status for r in results)
                      for status in ("ok", "skipped", "failed", "pending")}
            write_json(out / SUMMARY, {
                "gpuanalogy": __version__,
                "pairs": os.fspath(args.pairs),
                "b_folder": None if args.b_folder is None else os.fspath(args.b_folder),
                "output": os.fspath(out),
                "finished": finished,
                "seconds": round(time.perf_counter() - started, 3),
                "counts": counts,
                "results": [r.to_dict() for r in results],
            })

        if args.workers is None and args.scheduler is None and args.scheduler_file is None:
            results = run_pairs(pairs, out, save_levels=args.save_levels,
                                on_update=write_summary, debug=args.debug)
        else:
            with open_client(workers=args.workers, scheduler=args.scheduler,
                             scheduler_file=args.scheduler_file,
                             connect_timeout=args.connect_timeout,
                             on_notice=print_notice) as client:
                results = run_batch_on(client, pairs, out, save_levels=args.save_levels,
                                       on_update=write_summary, debug=args.debug)
    write_summary(results, finished=True)
    failed = [r for r in results if r.status == "failed"]
    print(summary_table(results))
    counts = ", ".join(f"{sum(r.status == s for r in results)} {s}"
                       for s in ("ok", "skipped", "failed"))
    print(f"{len(results)} pairs: {counts} in {time.perf_counter() - started:.1f} s; "
          f"summary in {out / SUMMARY}", file=sys.stderr)
    if any(r.bad_input for r in failed):
        return EXIT_ERROR
    return 1 if failed else 0
