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

With ``--keyframes auto|N|LIST`` only the keyframes are whole analogies; the other frames are
synthesised from their neighbouring keyframes (:mod:`gpuanalogy.keyframes`) and written when
the keyframe after them is done (a keyframe comes before the frames it closes). A propagated
frame has no B' -> frame field; its ``nnf_ab`` leads through its nearer keyframe. Every record
says whether the frame is a keyframe, and a propagated frame's its keyframes, its seconds and
its unexplained share; run.json lists the keyframes and the mean seconds of each kind. A rerun
reads the complete keyframes back (they stay keyframes and are never recomputed) and
synthesises the unfinished stretches' frames again from them, writing only the missing ones.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import VIDEO_OUTPUTS, VIDEO_UPSAMPLE, AnalogyConfig, VideoConfig
from ..errors import EXIT_ERROR, GpuAnalogyError, InputError, printable
from ..fields import read_field
from ..files import as_json, output_folder, read_json, write_json
from ..images import read_image, write_image
from ..outputs import complete_record, versions, write_field, write_field_values
from ..visualize import make_sheet, nnf_to_color
from .frames import Frame, FrameSource, open_clip, write_video
from .options import config_from_options, result_key, video_config_from_options
from ..memory import PeakMemory
from .progress import BatchProgress, showing_notices
from .resume import exclusive, remove_leftovers

__all__ = ["command", "frame_complete"]


@dataclass
class _Outcome:
    """What happened to one frame, as the progress display reads it."""

    status: str = "skipped"
    seconds: float = 0.0
    error: str | None = None


def command(args: argparse.Namespace) -> int:
    options = vars(args)
    for name, default in (("upsample", VIDEO_UPSAMPLE), ("outputs", VIDEO_OUTPUTS)):
        if options.get(name) is None:   # the video's own defaults (config.VIDEO_*)
            options = {**options, name: default}
    config = config_from_options(options)
    video = video_config_from_options(vars(args))
    source = open_clip(args.frames)
    b_prime = read_image(args.b_prime)
    key = {"frames": os.path.abspath(source.source), "b_prime": os.path.abspath(args.b_prime),
           "config": result_key(config), "video": video.to_dict()}
    with output_folder(args.output) as out, exclusive(out):   # gone if it fails unwritten
        for folder in (out, out / "frames", out / "fields"):   # run.json's temp files too
            folder.mkdir(exist_ok=True)
            remove_leftovers(folder)
        runner = _run if video.schedule() is None else _run_keyframes
        return runner(source, (b_prime, os.fspath(args.b_prime)), out, key, config, video,
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
    with showing_notices(progress.show_notice):   # above the status line
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
    return _finish(out, key, source, records, config, inputs, b_prime.shape[:2])


def _finish(out: Path, key: dict[str, Any], source: FrameSource, records: list[dict[str, Any]],
            config: AnalogyConfig, inputs: dict[int, np.ndarray],
            shape_b: tuple[int, int]) -> int:
    """The sheet, the video file and the final run.json; the exit status."""
    records = sorted(records, key=lambda r: r["index"])
    written = [out / "frames" / f"{r['name']}.png" for r in records if r.get("status") == "ok"]
    if written:
        _write_sheet(out, source.frames, inputs, shape_b)
    if source.is_video and len(written) == len(source.frames):
        write_video(out / "a_prime.mp4", written, source.fps)  # type: ignore[arg-type]
    _write_run(out, key, source, records, config, finished=True)
    failed = [r for r in records if r.get("status") == "failed"]
    return EXIT_ERROR if failed else 0


def _run_keyframes(source: FrameSource, exemplar: tuple[np.ndarray, str], out: Path,
                   key: dict[str, Any], config: AnalogyConfig, video: VideoConfig, *,
                   debug: bool) -> int:
    """The clip with whole analogies at the keyframes only (see the module docstring)."""
    from ..backend import get_backend  # noqa: PLC0415 - the method only once inputs are read
    from ..keyframes import KeyedFrame, keyframe_video  # noqa: PLC0415
    from ..video import Clip  # noqa: PLC0415

    frames, (b_prime, name) = source.frames, exemplar
    done = {f.index: _read_record(out, f) for f in frames if frame_complete(out, f, key)}
    schedule = video.schedule()
    known = {i for i, record in done.items() if record.get("keyframe")}
    schedule = replace(schedule, listed=tuple(sorted(set(schedule.listed) | known)))  # type: ignore[arg-type]
    progress = BatchProgress(len(frames), to_run=len(frames) - len(done), unit="frame")
    records = list(done.values())
    shown = {0, len(frames) // 2, len(frames) - 1}
    inputs: dict[int, np.ndarray] = {}
    clips: list[Any] = []

    def readable() -> Any:
        for frame, image in source.images():
            if isinstance(image, InputError):
                records.append({"name": frame.name, "index": frame.index, "status": "failed",
                                "error": str(image)})
                progress.start_pair(frame.index, frame.name)
                progress.end_pair(_Outcome("failed", error=str(image)))
                continue
            if frame.index in shown:
                inputs[frame.index] = image
            yield frame.index, image

    def stylise(index: int, image: np.ndarray) -> KeyedFrame:
        frame = frames[index]
        if index in done:   # a finished keyframe, read back
            files = done[index]["files"]
            return KeyedFrame(index, read_image(out / files[0]), read_field(out / files[1]),
                              True, seconds=done[index]["seconds"])
        progress.start_pair(index, frame.name)
        if not clips:
            clips.append(Clip(b_prime, config, video=video, name=name))
        outcome = _Outcome()
        record = _compute(clips[0], frame, image, source, out, key, progress, outcome, debug,
                          extra={"keyframe": True})
        records.append(record)
        if outcome.status != "ok":
            raise GpuAnalogyError(f"keyframe {frame.name}: {outcome.error}")
        analogy = record.pop("result")
        return KeyedFrame(index, analogy.a_prime_refined if analogy.a_prime_refined is not None
                          else analogy.a_prime, analogy.nnf_ab, True, seconds=outcome.seconds)

    backend = get_backend(config.device, quiet=True)
    with showing_notices(progress.show_notice):   # above the status line
        try:
            for made in keyframe_video(readable(), stylise, schedule, backend=backend,
                                       seed=config.seed):
                frame = frames[made.index]
                if made.index in done:
                    progress.start_pair(made.index, frame.name)
                    progress.end_pair(_Outcome())
                elif made.keyframe:
                    progress.end_pair(_Outcome("ok", made.seconds))
                else:
                    progress.start_pair(made.index, frame.name)
                    records.append(_write_propagated(out, frame, made, frames, key, backend,
                                                     config.field_format, b_prime.shape[:2]))
                    progress.end_pair(_Outcome("ok", made.seconds))
                _write_run(out, key, source, records, config)
        except GpuAnalogyError as error:
            if debug:
                raise
            progress.notice(f"stopped: {error}")
        finally:
            progress.close()
    return _finish(out, key, source, records, config, inputs, b_prime.shape[:2])


def _write_propagated(out: Path, frame: Frame, made: Any, frames: list[Frame],
                      key: dict[str, Any], backend: Any, field_format: str,
                      shape_b: tuple[int, int]) -> dict[str, Any]:
    """A propagated frame's image, its frame -> B' field (as the keyframes' are written; it
    has no working-size field, so "working" writes it in float32) and its record (last)."""
    write_image(out / "frames" / f"{frame.name}.png", made.a_prime)
    field = write_field_values(out / "fields", f"{frame.name}.nnf_ab", made.nnf_ab,
                               "float32" if field_format == "working" else field_format, None,
                               shape_b)
    record = {"name": frame.name, "index": frame.index, "status": "ok", "key": key,
              "files": [f"frames/{frame.name}.png", f"fields/{field}"],
              "keyframe": False, "sources": [frames[i].name for i in made.sources],
              "seconds": round(made.seconds, 3), "unexplained": round(made.unexplained, 4),
              "device": backend.name}
    write_json(_record_path(out, frame), record)
    return record


def _compute(clip: Any, frame: Frame, image: np.ndarray, source: FrameSource, out: Path,
             key: dict[str, Any], progress: BatchProgress, result: _Outcome,
             debug: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One frame computed and written (its record last, with ``extra``); failures become the
    record. With ``extra``, the returned record also holds the analogy under "result" (not
    written)."""
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
              "peak_memory_mb": peak.megabytes, "device": analogy.device, **(extra or {})}
    write_json(_record_path(out, frame), record)
    result.status, result.seconds = "ok", done.seconds
    return {**record, "result": analogy} if extra else record


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
        **_keyframe_summary(done),
        "frames": [{k: v for k, v in r.items() if k != "key"}
                   for r in sorted(records, key=lambda r: r["index"])],
        "versions": versions()})


def _keyframe_summary(done: list[dict[str, Any]]) -> dict[str, Any]:
    """run.json's keyframe entries (none in the mode where every frame is an analogy)."""
    if not any("keyframe" in r for r in done):
        return {}
    keys = [r for r in done if r.get("keyframe")]
    propagated = [r["seconds"] for r in done if not r.get("keyframe")]
    return {"keyframes": [r["name"] for r in sorted(keys, key=lambda r: r["index"])],
            "seconds_per_keyframe": round(sum(r["seconds"] for r in keys) / len(keys), 3)
            if keys else None,
            "seconds_per_propagated_frame": round(sum(propagated) / len(propagated), 3)
            if propagated else None}


def _write_sheet(out: Path, frames: list[Frame], inputs: dict[int, np.ndarray],
                 shape_b: tuple[int, int]) -> None:
    """First, middle and last frame: the input, A' and the frame -> B' field's colours."""
    rows = []
    for index in sorted(inputs):
        name = frames[index].name
        try:
            a_prime = read_image(out / "frames" / f"{name}.png")
            nnf_ab = read_field(out / _read_record(out, frames[index])["files"][1])
        except (InputError, OSError, ValueError, KeyError, IndexError):
            continue
        rows.append([(name, inputs[index]), ("A'", a_prime),
                     ("NNF A->B'", nnf_to_color(nnf_ab, shape_b))])
    if rows:
        write_image(out / "sheet.png", make_sheet(rows))
