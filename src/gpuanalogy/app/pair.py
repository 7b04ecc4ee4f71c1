"""One pair: from images in memory to a complete output folder, as every command does it.

:func:`run_pair` is :func:`compute_pair` then :func:`write_pair` (``run`` and ``demo``); a batch
on a cluster computes on a worker and writes on the client. The steps a batch takes around each
pair, in process (:mod:`gpuanalogy.app.batch`) or on a cluster (:mod:`gpuanalogy.app.cluster`),
are here too: :func:`plan` what is left to compute, :func:`read_inputs`, :func:`write_into_place`
by the protocol of :mod:`gpuanalogy.app.resume`, and :func:`pair_outcome` to record a failure
as a :class:`PairResult`.
"""
from __future__ import annotations

import contextlib
import os
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AnalogyConfig
from ..errors import GpuAnalogyError, InputError, error_reason, printable
from ..images import read_image, read_labels
from ..memory import PeakMemory
from ..outputs import versions, write_result
from ..levels import LevelStep
from ..pipeline import AnalogyResult, Progress, analogy, level_preview
from .pairs import Pair
from .progress import BatchProgress, print_notice, showing_notices
from .resume import PARTIAL, move_into_place, remove_leftovers, remove_tree, up_to_date

__all__ = ["run_pair", "Regions", "read_regions", "ComputedPair", "compute_pair", "write_pair",
           "PairResult", "plan", "read_inputs", "write_into_place", "pair_outcome"]


def run_pair(a: np.ndarray, b_prime: Any, outdir: str | os.PathLike,
             config: AnalogyConfig, *, names: tuple[str, ...] = ("a", "b_prime"),
             regions: Regions | None = None, model: Any = None, save_levels: bool = False,
             on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Run the analogy on ``a`` and ``b_prime`` (H x W x 3 uint8, or a list of exemplars)
    and write ``outdir``.

    ``regions`` are the region masks and their files (:func:`read_regions`). Says on stderr
    when the size rule reduces an input. With ``save_levels`` each level's A' and B are voted
    as the loop finishes it and written too. Returns the run.json record.
    """
    computed = compute_pair(a, b_prime, config, names=names, regions=regions, model=model,
                            save_levels=save_levels, on_progress=on_progress)
    return write_pair(outdir, computed, a, b_prime, config)


@dataclass(frozen=True)
class Regions:
    """A pair's region masks as read (``analogy(regions=labels)``) and their files."""

    labels: tuple[Any, Any]
    files: tuple[str | None, tuple[str, ...]]


def read_regions(regions_a: str | os.PathLike | None,
                 regions_b: Sequence[str | os.PathLike], exemplars: int, *,
                 names: tuple[str, Sequence[str]] | None = None,
                 max_pixels: int | None = None) -> Regions | None:
    """The region masks of A and of each of ``exemplars`` exemplars, read from their files
    (:func:`gpuanalogy.images.read_labels`, with ``max_pixels``); None when no file is given.
    ``names`` (A's, then the exemplars') are what the files are called in messages and
    run.json, by default their paths (a server names its uploads).

    Raises
    ------
    InputError
        One side's masks without the other's, or another number of exemplar masks than
        exemplars; an unreadable file.
    """
    if regions_a is None and not regions_b:
        return None
    if regions_a is None or not regions_b:
        raise InputError("region masks need both sides: --regions-a for A and --regions-b "
                         "for B' (black / 0 where a region matches freely)")
    if len(regions_b) != exemplars:
        raise InputError(f"--regions-b names {len(regions_b)} label images for {exemplars} "
                         f"exemplars; give one per exemplar, in their order")
    name_a, names_b = names or (os.fspath(regions_a), [os.fspath(p) for p in regions_b])
    labels_b = [read_labels(path, name=name, max_pixels=max_pixels)
                for path, name in zip(regions_b, names_b)]
    return Regions((read_labels(regions_a, name=name_a, max_pixels=max_pixels),
                    labels_b if exemplars > 1 else labels_b[0]), (name_a, tuple(names_b)))


@dataclass
class ComputedPair:
    """One pair's results in memory, all that :func:`write_pair` needs besides the inputs.

    Attributes
    ----------
    result : AnalogyResult
    levels : dict
        Level -> (A', B) previews; empty unless ``save_levels``.
    extra : dict
        run.json's entries about the run: input paths, seconds, peak memory, provider and the
        versions of the process that computed it.
    """

    result: AnalogyResult
    levels: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def compute_pair(a: np.ndarray, b_prime: Any, config: AnalogyConfig, *,
                 names: tuple[str, ...] = ("a", "b_prime"), regions: Regions | None = None,
                 model: Any = None, save_levels: bool = False,
                 on_progress: Callable[[Progress], None] | None = None,
                 on_notice: Callable[[str], None] | None = None,
                 on_level: Callable[[int, np.ndarray, np.ndarray], None] | None = None
                 ) -> ComputedPair:
    """The analogy of one pair, with what run.json records about the run.

    ``on_notice`` receives the method's notices (the size rule's), naming the input files; by
    default they print on stderr at once, one line each. The memory check's refusal names the
    input files too. ``on_level(level, a_prime, b)`` receives each level's previews (uint8,
    input sizes) as the loop finishes it (``gpuanalogy.pipeline.level_preview``).
    """
    levels: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def preview(step: LevelStep) -> None:
        images = level_preview(step, config)
        if save_levels:
            levels[step.level] = images
        if on_level is not None:
            on_level(step.level, *images)

    peak = PeakMemory()
    with peak, showing_notices(on_notice or print_notice):
        start = time.perf_counter()
        result = analogy(a, b_prime, config, names=names, model=model, on_progress=on_progress,
                         regions=None if regions is None else regions.labels,
                         on_level=preview if save_levels or on_level else None)
        wall = time.perf_counter() - start
    inputs: dict[str, Any] = {"a": str(names[0]), "b_prime": [str(n) for n in names[1:]]
                              if isinstance(b_prime, list) else str(names[1])}
    if regions is not None:
        inputs.update(regions_a=regions.files[0], regions_b=list(regions.files[1]))
    extra = {"inputs": inputs,
             "seconds_wall": round(wall, 3), "peak_memory_mb": peak.megabytes,
             "onnxruntime_provider": getattr(model, "provider", None) or result.device,
             "versions": versions()}
    return ComputedPair(result, levels, extra)


def write_pair(outdir: str | os.PathLike, computed: ComputedPair, a: np.ndarray,
               b_prime: Any, config: AnalogyConfig) -> dict[str, Any]:
    """Write a computed pair's folder (run.json last); returns the run.json record."""
    return write_result(outdir, computed.result, a=a, b_prime=b_prime, config=config,
                        extra=computed.extra, levels=computed.levels)


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
        exemplars = [os.fspath(p) for p in (self.pair.b_prime, *self.pair.others)]
        return {"name": self.pair.name, "a": os.fspath(self.pair.a),
                "b_prime": exemplars if self.pair.others else exemplars[0],
                "line": self.pair.line,
                "status": self.status, "seconds": round(self.seconds, 3), "error": self.error,
                "bad_input": self.bad_input, "warnings": self.warnings}


def plan(pairs: Sequence[Pair], out: Path, save_levels: bool,
         progress: BatchProgress | None = None) -> tuple[list[PairResult], BatchProgress]:
    """Clear what a killed batch left in ``out`` and mark the pairs already complete there.

    Call it holding :func:`gpuanalogy.app.resume.exclusive`. The pairs to compute stay
    ``pending``, each with a warning when an outdated folder of it is to be replaced. Returns
    the results and ``progress`` (by default a display on stderr) told how many pairs there are
    and how many to compute.
    """
    remove_leftovers(out)
    results = [PairResult(pair) for pair in pairs]
    for result in results:
        done, why = up_to_date(out / result.pair.name, result.pair, save_levels)
        if done:
            result.status = "skipped"
        elif why != "not computed yet":
            result.warnings.append(f"computed again: {why}")
    progress = progress or BatchProgress(len(pairs))
    progress.total = len(pairs)
    progress.to_run = sum(r.status == "pending" for r in results)
    return results, progress


def read_inputs(result: PairResult, progress: BatchProgress
                ) -> tuple[np.ndarray, Any, Regions | None]:
    """A pair's images (the exemplars a list when there are several) and region masks; their
    decoding warnings go to ``result`` and ``progress``.

    Also shows the warnings :func:`plan` gave the pair.
    """
    for note in result.warnings:
        progress.show_notice(f"{result.pair.name}: {note}")
    pair = result.pair
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = read_image(pair.a)
        exemplars = [read_image(path) for path in (pair.b_prime, *pair.others)]
        regions = read_regions(pair.regions_a, pair.regions_b, len(exemplars))
    for warning in caught:
        text = " ".join(str(warning.message).split())
        result.warnings.append(text)
        progress.show_notice(text)
    return a, exemplars if pair.others else exemplars[0], regions


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
def pair_outcome(result: PairResult, out: Path, progress: BatchProgress, debug: bool
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
        result.error = error_reason(error)
        if isinstance(error, OSError):
            final = out / result.pair.name
            result.error = f"cannot write {printable(os.fspath(final))}: {result.error}"
        if debug:
            progress.clear()
            traceback.print_exc()
    except Exception as error:  # noqa: BLE001 - one pair's bug must not lose the others
        result.status = "failed"
        result.error = (f"internal error: {type(error).__name__}: {error_reason(error)} "
                        f"(rerun with --debug for the traceback)")
        if debug:
            progress.clear()
            traceback.print_exc()
    result.seconds += time.perf_counter() - start
