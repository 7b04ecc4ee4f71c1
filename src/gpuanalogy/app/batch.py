"""``gpuanalogy batch``: many pairs with one loaded network, resumable after a crash or a kill.

The pairs come from a CSV file or two folders (:mod:`gpuanalogy.app.pairs`); each is computed
into its own folder under OUTDIR as ``run`` writes it, by the protocol of
:mod:`gpuanalogy.app.resume`, so a rerun computes only what is missing. One pair's failure (an
unreadable image, the GPU out of memory) is recorded and the batch goes on. The exit status is
2 when a pair failed on bad input (as ``run`` exits for it), else 1 when a pair failed for
another reason (the GPU out of memory, an unwritable folder, an internal error), else 0.

With ``--workers`` or ``--scheduler`` the pairs are computed on a Dask cluster
(:mod:`gpuanalogy.app.cluster`), and this process still writes every folder by the same steps:
:func:`plan`, :func:`read_inputs`, :func:`write_into_place` and :func:`pair_outcome`.

``OUTDIR/summary.json`` is rewritten (atomically) after every pair: one entry per pair with its
status (``ok``, ``skipped``, ``failed`` or, while the batch runs, ``pending``), seconds, and the
one-line error of a failed pair.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..config import AnalogyConfig
from ..errors import EXIT_ERROR, GpuAnalogyError, InputError, error_reason, printable
from ..features import load_network
from ..files import check_output_dir, write_json
from ..images import read_image
from . import pair as pair_module
from .options import config_from_options
from .pairs import SUMMARY, Pair, pairs_from_argument
from .progress import BatchProgress
from .resume import PARTIAL, exclusive, move_into_place, remove_leftovers, remove_tree, up_to_date

__all__ = ["PairResult", "run_pairs", "plan", "read_inputs", "write_into_place",
           "pair_outcome", "summary_table", "command"]


@dataclass
class PairResult:
    """What happened to one pair: status ``ok``, ``skipped``, ``failed`` or ``pending``."""

    pair: Pair
    status: str = "pending"
    seconds: float = 0.0
    error: str | None = None
    bad_input: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.pair.name, "a": os.fspath(self.pair.a),
                "b_prime": os.fspath(self.pair.b_prime), "line": self.pair.line,
                "status": self.status, "seconds": round(self.seconds, 3), "error": self.error,
                "bad_input": self.bad_input, "warnings": self.warnings}


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
        results = plan(pairs, out, save_levels)
        progress = progress or BatchProgress(len(pairs))
        progress.total = len(pairs)
        progress.to_run = sum(r.status == "pending" for r in results)
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


def plan(pairs: Sequence[Pair], out: Path, save_levels: bool) -> list[PairResult]:
    """Clear what a killed batch left in ``out`` and mark the pairs already complete there.

    Call it holding :func:`gpuanalogy.app.resume.exclusive`. The pairs to compute stay
    ``pending``, each with a warning when an outdated folder of it is to be replaced.
    """
    remove_leftovers(out)
    results = [PairResult(pair) for pair in pairs]
    for result in results:
        done, why = up_to_date(out / result.pair.name, result.pair, save_levels)
        if done:
            result.status = "skipped"
        elif why != "not computed yet":
            result.warnings.append(f"computed again: {why}")
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
        a, b_prime = read_inputs(result, progress)

        def compute(partial: Path) -> None:
            progress.clear()  # run_pair may print a notice of its own
            pair_module.run_pair(a, b_prime, partial, pair.config, names=pair.inputs,
                                 model=model, save_levels=save_levels, on_progress=progress.stage)

        write_into_place(out, pair.name, compute)
        result.status = "ok"


def read_inputs(result: PairResult, progress: "BatchProgress") -> tuple[np.ndarray, np.ndarray]:
    """A pair's two images; their decoding warnings go to ``result`` and ``progress``.

    Also shows the warnings :func:`plan` gave the pair.
    """
    for note in result.warnings:
        progress.notice(f"{result.pair.name}: {note}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = read_image(result.pair.a)
        b_prime = read_image(result.pair.b_prime)
    for warning in caught:
        text = " ".join(str(warning.message).split())
        result.warnings.append(text)
        progress.notice(f"warning: {text}")
    return a, b_prime


def write_into_place(out: Path, name: str, write: Callable[[Path], None]) -> None:
    """``write(folder)`` into ``.<name>.partial``, then rename it to ``out/<name>``.

    Whatever happens, no ``.partial`` folder is left behind.
    """
    final = out / name
    partial = out / f".{name}{PARTIAL}"
    remove_tree(partial)
    try:
        partial.mkdir()
        write(partial)
        move_into_place(partial, final)
    finally:
        remove_tree(partial)


@contextlib.contextmanager
def pair_outcome(result: PairResult, out: Path, progress: "BatchProgress", debug: bool
                 ) -> Iterator[None]:
    """Record a failure of the block working on ``result``'s pair: status ``failed`` with a
    one-line reason (``bad_input`` for an InputError); add the block's seconds either way.

    Errors stop here, so one pair's failure never loses the others.
    """
    start = time.perf_counter()
    try:
        yield
    except (GpuAnalogyError, OSError) as error:
        result.status = "failed"
        result.bad_input = isinstance(error, InputError)
        result.error = error_reason(error) if isinstance(error, OSError) else _one_line(error)
        if isinstance(error, OSError):
            final = out / result.pair.name
            result.error = f"cannot write {printable(os.fspath(final))}: {result.error}"
        if debug:
            progress.clear()
            traceback.print_exc()
    except Exception as error:  # noqa: BLE001 - one pair's bug must not lose the others
        result.status = "failed"
        result.error = (f"internal error: {type(error).__name__}: {_one_line(error)} "
                        f"(rerun with --debug for the traceback)")
        if debug:
            progress.clear()
            traceback.print_exc()
    result.seconds += time.perf_counter() - start


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


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
    ``scheduler_file``: all None in process; :mod:`gpuanalogy.app.cluster`).
    """
    started = time.perf_counter()
    options = vars(args)
    config_from_options(options)   # refuses a bad command-line value before anything else
    progress_stream = sys.stderr

    def notice(text: str) -> None:
        print(f"gpuanalogy: {text}", file=progress_stream, flush=True)

    pairs = pairs_from_argument(args.pairs, args.b_folder,
                                lambda preset: config_from_options(options, preset=preset),
                                on_notice=notice)

    out = check_output_dir(args.output)

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
        results = run_pairs(pairs, out, save_levels=args.save_levels, on_update=write_summary,
                            debug=args.debug)
    else:
        from .cluster import open_client, run_batch_on  # noqa: PLC0415 - it imports this module

        with open_client(workers=args.workers, scheduler=args.scheduler,
                         scheduler_file=args.scheduler_file, on_notice=notice) as client:
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
