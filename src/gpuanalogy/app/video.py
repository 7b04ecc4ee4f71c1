"""``gpuanalogy video FRAMES B' -o OUTDIR``: a clip in B''s look, frame after frame.

FRAMES is a folder of images (sorted by name) or a video file (:mod:`gpuanalogy.app.frames`).
Each frame is computed by :class:`gpuanalogy.video.Clip` (the frames after the first start from
the previous frame's work) and written as soon as it is done::

    OUTDIR/frames/<name>.png           A' (refined when the settings refine)
    OUTDIR/fields/<name>.nnf_ab.npy    the frame -> B' field, (H, W, 2) float32 (float16, or
                                       the working-size .npz, with --field-format)
    OUTDIR/fields/<name>.nnf_ba.npy    the B' -> frame field
    OUTDIR/fields/<name>.json          the frame's record, written last: the frame is complete
    OUTDIR/a_prime.mp4                 the frames as a video, when FRAMES was one
    OUTDIR/sheet.png                   first, middle and last frame: input, A', field
    OUTDIR/run.json                    settings and per-frame timings, rewritten after each frame

Every file is written to a temporary name and renamed. A rerun with the same inputs and settings
keeps the complete frames before the first missing one and continues there, from that frame's
predecessor's saved fields (:meth:`gpuanalogy.video.Clip.resume_after`). A frame that cannot be
read is reported by name and the others are still computed; the exit status is then 2.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AnalogyConfig, VideoConfig
from ..errors import EXIT_ERROR, GpuAnalogyError, InputError, printable
from ..fields import read_field
from ..files import as_json, check_output_dir, read_json, write_json
from ..images import read_image, write_image
from ..outputs import complete_record, versions, write_field
from ..visualize import make_sheet, nnf_to_color
from .frames import Frame, FrameSource, open_clip, write_video
from .options import config_from_options, result_key, video_config_from_options
from ..memory import PeakMemory
from .progress import BatchProgress
from .resume import exclusive, remove_leftovers

__all__ = ["command", "frame_complete"]


@dataclass
class _Outcome:
    """What happened to one frame, as the progress display reads it."""

    status: str = "skipped"
    seconds: float = 0.0
    error: str | None = None


def command(args: argparse.Namespace) -> int:
    config = config_from_options(vars(args))
    video = video_config_from_options(vars(args))
    source = open_clip(args.frames)
    b_prime = read_image(args.b_prime)
    out = check_output_dir(args.output)
    key = {"frames": os.path.abspath(source.source), "b_prime": os.path.abspath(args.b_prime),
           "config": result_key(config), "video": video.to_dict()}
    with exclusive(out):
        for folder in (out / "frames", out / "fields"):
            folder.mkdir(exist_ok=True)
            remove_leftovers(folder)
        return _run(source, (b_prime, os.fspath(args.b_prime)), out, key, config, video,
                    debug=args.debug)


def _run(source: FrameSource, exemplar: tuple[np.ndarray, str], out: Path, key: dict[str, Any],
         config: AnalogyConfig, video: VideoConfig, *, debug: bool) -> int:
    from ..video import Clip  # noqa: PLC0415 - loads the method only once the inputs are read

    frames = source.frames
    first = next((f.index for f in frames if not frame_complete(out, f, key)), len(frames))
    progress = BatchProgress(len(frames), to_run=len(frames) - first, unit="frame",
                             skip_first=first == 0)
    b_prime, name = exemplar
    clip = Clip(b_prime, config, video=video, name=name) if first < len(frames) else None
    records: list[dict[str, Any]] = []
    shown = {0, len(frames) // 2, len(frames) - 1}
    inputs: dict[int, np.ndarray] = {}
    previous: np.ndarray | None = None
    try:
        for frame, image in source.images():
            progress.start_pair(frame.index, frame.name)
            result = _Outcome()
            if isinstance(image, np.ndarray) and frame.index in shown:
                inputs[frame.index] = image
            if frame.index < first:
                records.append(_read_record(out, frame))
            elif isinstance(image, InputError):
                result.status, result.error = "failed", str(image)
                records.append({"name": frame.name, "index": frame.index, "status": "failed",
                                "error": str(image)})
            else:
                if frame.index == first and first > 0 and previous is not None:
                    clip.resume_after(previous, *_saved_fields(out, frames[first - 1]))
                record = _compute(clip, frame, image, source, out, key, progress, result, debug)
                records.append(record)
            if isinstance(image, np.ndarray):
                previous = image
            progress.end_pair(result)
            _write_run(out, key, source, records, config)
    finally:
        progress.close()
    written = [out / "frames" / f"{r['name']}.png" for r in records if r.get("status") == "ok"]
    if written:
        _write_sheet(out, frames, inputs)
    if source.is_video and len(written) == len(frames):
        write_video(out / "a_prime.mp4", written, source.fps)  # type: ignore[arg-type]
    _write_run(out, key, source, records, config, finished=True)
    failed = [r for r in records if r.get("status") == "failed"]
    return EXIT_ERROR if failed else 0


def _compute(clip: Any, frame: Frame, image: np.ndarray, source: FrameSource, out: Path,
             key: dict[str, Any], progress: BatchProgress, result: _Outcome,
             debug: bool) -> dict[str, Any]:
    """One frame computed and written (its record last); failures become the record."""
    label = printable(os.fspath(frame.path)) if frame.path else \
        f"{printable(os.fspath(source.source))} frame {frame.index + 1}"
    try:
        with PeakMemory() as peak:
            done = clip.frame(image, name=label, on_progress=progress.stage)
    except GpuAnalogyError as error:
        if debug:
            raise
        result.status, result.error = "failed", str(error)
        return {"name": frame.name, "index": frame.index, "status": "failed",
                "error": str(error)}
    analogy = done.result
    a_prime = analogy.a_prime_refined if analogy.a_prime_refined is not None else analogy.a_prime
    write_image(out / "frames" / f"{frame.name}.png", a_prime)
    files = [f"frames/{frame.name}.png"] + [
        "fields/" + write_field(out / "fields", f"{frame.name}.{field}", analogy, side,
                                clip.config.field_format)
        for side, field in enumerate(("nnf_ab", "nnf_ba"))]
    record = {"name": frame.name, "index": frame.index, "status": "ok", "key": key,
              "files": files, "warm": done.warm, "seconds": round(done.seconds, 3),
              "stages": {k: round(v, 3) for k, v in analogy.timings.items()},
              "peak_memory_mb": peak.megabytes, "device": analogy.device}
    write_json(_record_path(out, frame), record)
    result.status, result.seconds = "ok", done.seconds
    return record


def frame_complete(out: Path, frame: Frame, key: dict[str, Any]) -> bool:
    """Whether ``out`` holds this frame, made from the same inputs with the same settings."""
    record = complete_record(_record_path(out, frame), out)
    return record is not None and record.get("status") == "ok" and record.get("key") == as_json(key)


def _read_record(out: Path, frame: Frame) -> dict[str, Any]:
    return read_json(_record_path(out, frame)) or {}


def _record_path(out: Path, frame: Frame) -> Path:
    return out / "fields" / f"{frame.name}.json"


def _saved_fields(out: Path, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """A finished frame's two fields at the input sizes, in whatever format they were saved."""
    files = _read_record(out, frame)["files"]
    return read_field(out / files[1]), read_field(out / files[2])


def _write_run(out: Path, key: dict[str, Any], source: FrameSource,
               records: list[dict[str, Any]], config: AnalogyConfig,
               finished: bool = False) -> None:
    done = [r for r in records if r.get("status") == "ok"]
    warm = [r["seconds"] for r in done if r.get("warm")]
    write_json(out / "run.json", {
        "command": "video", "finished": finished, "inputs": {"frames": key["frames"],
                                                             "b_prime": key["b_prime"]},
        "config": config.to_dict(), "video": key["video"],
        "frame_count": len(source.frames), "frames_done": len(done),
        "frames_failed": [r["name"] for r in records if r.get("status") == "failed"],
        "seconds_first_frame": done[0]["seconds"] if done and not done[0].get("warm") else None,
        "seconds_per_frame_after_first": round(sum(warm) / len(warm), 3) if warm else None,
        "peak_memory_mb_max": max((r.get("peak_memory_mb", 0) for r in done), default=None),
        "frames": [{k: v for k, v in r.items() if k != "key"} for r in records],
        "versions": versions()})


def _write_sheet(out: Path, frames: list[Frame], inputs: dict[int, np.ndarray]) -> None:
    """First, middle and last frame: the input, A' and the frame -> B' field's colours."""
    rows = []
    for index in sorted(inputs):
        name = frames[index].name
        try:
            a_prime = read_image(out / "frames" / f"{name}.png")
            nnf_ab, nnf_ba = _saved_fields(out, frames[index])
        except (InputError, OSError, ValueError, KeyError):
            continue
        rows.append([(name, inputs[index]), ("A'", a_prime),
                     ("NNF A->B'", nnf_to_color(nnf_ab, nnf_ba.shape[:2]))])
    if rows:
        write_image(out / "sheet.png", make_sheet(rows))
