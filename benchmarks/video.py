"""A clip in one exemplar's look: frame by frame, gpuanalogy.video, and gpuanalogy.keyframes.

Two clips are made here, each with its true motion known exactly:

* ``panzoom``: a camera panning right and zooming in over scikit-image's astronaut photo
  (frame t samples the photo at ``centre_t + scale_t * (p - m)``, bilinear);
* ``object``: Chelsea the cat's face, cut as a disc, gliding over a still background (a
  crop of scikit-image's coffee photo) along a curved path.

The methods (``--methods``): ``frame by frame`` (independent analogies), ``video`` (today's
video mode; ``video:UPSAMPLE`` with another ``--upsample``; ``video@STOP/OUTPUTS`` with another
``lbfgs_stop`` and ``outputs``, every frame's deconvolutions under that rule) and ``keyframes:SPEC`` (whole
analogies at the keyframes SPEC names, N, auto or ``i;j;...``, the frames between propagated:
``gpuanalogy.keyframes``). All run with the same settings (``--preset`` and ``--ratio``; the
video's frames after the first use ``VideoConfig``'s defaults) and one loaded network; the
whole-analogy methods run frame t of each back to back so that a busy machine slows them alike,
then each keyframe method runs the clip on its own. The table gives, per clip and method:

* seconds of the first frame and per frame after it (for keyframes: all frames after the first,
  keyframes included), and the median seconds of a propagated frame;
* the temporal warping error: mean |O_t(p) - O_{t-1}(p + flow_t(p))| over the colour channels
  (0-255) and the pixels p visible in both frames, with the true backward flow and bilinear
  sampling, averaged over t; the input frames' own error (interpolation alone) is the floor;
* ``entering detail``: mean |Laplacian| of the output over the content that was not in the
  first frame, over the last third of the clip (lower is flatter);
* the peak resident memory of each frame (min - max over the frames after the first; for a
  keyframe method, the run's).

A strip of frames (inputs, then each method) is written to ``--strip`` for docs/.

    python benchmarks/video.py [--frames 24] [--size 240x320] [--ratio 0.5]
                               [--preset photo2style] [--upsample cubic]
                               [--clips panzoom,object] [--methods "frame by frame,video"]
                               [--strip DIR]

Only one benchmark runs at a time on the machine: this one waits while
``/tmp/gpuanalogy-bench.lock`` exists, then holds it until it ends.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import laplace, map_coordinates
from skimage import data

sys.path.insert(0, str(Path(__file__).parent))
from _table import bench_lock  # noqa: E402

from gpuanalogy import AnalogyConfig, analogy  # noqa: E402
from gpuanalogy.memory import PeakMemory  # noqa: E402
from gpuanalogy.features import VGG19  # noqa: E402
from gpuanalogy.images import write_image  # noqa: E402
from gpuanalogy.config import Schedule  # noqa: E402
from gpuanalogy.keyframes import KeyedFrame, keyframe_video  # noqa: E402
from gpuanalogy.video import Clip  # noqa: E402
from gpuanalogy.visualize import make_sheet  # noqa: E402


@dataclass
class Synthetic:
    """A clip with its true backward flows: frames (H, W, 3) uint8, flows[t] (H, W, 2) for
    t >= 1 (row, col displacement from frame t to frame t-1) and where they are valid;
    ``where(t, k)`` gives, for every pixel of frame t, the (row, col) of its content in frame
    k, (2, H, W) float32, and whether frame k shows it, (H, W) bool."""

    name: str
    exemplar: np.ndarray
    frames: list[np.ndarray] = field(default_factory=list)
    flows: list[np.ndarray | None] = field(default_factory=list)
    visible: list[np.ndarray | None] = field(default_factory=list)
    where: Callable[[int, int], tuple[np.ndarray, np.ndarray]] | None = None


def sample(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` (H, W, C) at float coordinates: float32 (..., C)."""
    return np.stack([map_coordinates(image[..., c].astype(np.float32), [rows, cols], order=1,
                                     mode="nearest") for c in range(image.shape[2])], axis=-1)


def panzoom(count: int, shape: tuple[int, int]) -> Synthetic:
    photo = data.astronaut()
    h, w = shape
    clip = Synthetic("panzoom", data.chelsea())
    grid = np.mgrid[0:h, 0:w].astype(np.float32)
    middle = np.array([(h - 1) / 2, (w - 1) / 2], np.float32)[:, None, None]

    def camera(t: int) -> tuple[np.ndarray, float]:
        u = t / max(count - 1, 1)
        return np.array([256.0, 200.0 + 112.0 * u], np.float32)[:, None, None], 1.2 - 0.2 * u

    for t in range(count):
        centre, scale = camera(t)
        world = centre + scale * (grid - middle)
        clip.frames.append(np.clip(np.rint(sample(photo, *world)), 0, 255).astype(np.uint8))
        if t == 0:
            clip.flows.append(None)
            clip.visible.append(None)
            continue
        before_centre, before_scale = camera(t - 1)
        before = middle + (world - before_centre) / before_scale
        clip.flows.append(np.moveaxis(before - grid, 0, -1))
        clip.visible.append((before[0] >= 0) & (before[0] <= h - 1) & (before[1] >= 0)
                            & (before[1] <= w - 1))

    def where(t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        (centre, scale), (key_centre, key_scale) = camera(t), camera(k)
        there = middle + (centre + scale * (grid - middle) - key_centre) / key_scale
        return there, ((there[0] >= 0) & (there[0] <= h - 1) & (there[1] >= 0)
                       & (there[1] <= w - 1))

    clip.where = where
    return clip


def moving_object(count: int, shape: tuple[int, int]) -> Synthetic:
    h, w = shape
    background = data.coffee()[40:40 + h, 100:100 + w].astype(np.float32)
    cat = data.chelsea().astype(np.float32)
    radius = min(h, w) * 0.28
    clip = Synthetic("object", data.astronaut())
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)

    def centre(t: int) -> tuple[float, float]:
        u = t / max(count - 1, 1)
        return h * (0.5 + 0.12 * np.sin(2 * np.pi * u)), w * (0.3 + 0.4 * u)

    inside_before = None
    for t in range(count):
        cy, cx = centre(t)
        inside = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2
        face = sample(cat, rows - cy + 100.0, cols - cx + 230.0)   # the face around (100, 230)
        frame = np.where(inside[..., None], face, background)
        clip.frames.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
        if t == 0:
            clip.flows.append(None)
            clip.visible.append(None)
        else:
            by, bx = centre(t - 1)
            flow = np.zeros((h, w, 2), np.float32)
            flow[inside] = (by - cy, bx - cx)
            # Visible in both: the disc (it only moves), and background not under the disc
            # in the previous frame.
            clip.flows.append(flow)
            clip.visible.append(inside | ~inside_before)
        inside_before = inside

    def where(t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        (cy, cx), (ky, kx) = centre(t), centre(k)
        inside = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2
        inside_key = (rows - ky) ** 2 + (cols - kx) ** 2 <= radius ** 2
        there = np.stack([np.where(inside, rows - cy + ky, rows),
                          np.where(inside, cols - cx + kx, cols)])
        return there, np.where(inside, True, ~inside_key)

    clip.where = where
    return clip


def step_error(frames: list[np.ndarray], clip: Synthetic, t: int) -> float:
    """Mean |O_t - O_{t-1} warped by the true flow| over the pixels visible in both (0-255)."""
    h, w = frames[t].shape[:2]
    where = np.mgrid[0:h, 0:w].astype(np.float32) + np.moveaxis(clip.flows[t], -1, 0)
    warped = sample(frames[t - 1], *where)
    diff = np.abs(frames[t].astype(np.float32) - warped).mean(axis=-1)
    return float(diff[clip.visible[t]].mean())


def warping_error(frames: list[np.ndarray], clip: Synthetic) -> float:
    """:func:`step_error` averaged over t >= 1."""
    return float(np.mean([step_error(frames, clip, t) for t in range(1, len(frames))]))


@dataclass
class Run:
    outputs: list[np.ndarray] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)
    keyframes: list[int] = field(default_factory=list)


def run_clip(clip: Synthetic, config: AnalogyConfig, model: VGG19,
             methods: list[str]) -> dict[str, Run]:
    """Every method on the clip: the whole-analogy methods frame t of each back to back, then
    each keyframe method on its own (it holds frames and returns them out of order)."""
    configs = {name: method_config(name, config) for name in methods
               if name.startswith("video") or name == "frame by frame"}
    runs = {name: Run() for name in configs}
    clips = {name: Clip(clip.exemplar, configs[name], model=model) for name in configs
             if name.startswith("video")}
    for t, frame in enumerate(clip.frames):
        for name, run in runs.items():
            with PeakMemory() as peak:
                start = time.perf_counter()
                result = (clips[name].frame(frame).result if name in clips else
                          analogy(frame, clip.exemplar, configs[name], model=model))
                seconds = time.perf_counter() - start
            run.outputs.append(result.a_prime)
            run.seconds.append(seconds)
            run.peaks.append(peak.megabytes)
        report = ", ".join(
            f"{name} {run.seconds[-1]:.1f} s" + (
                f" (warping error {step_error(run.outputs, clip, t):.2f})" if t else "")
            for name, run in runs.items())
        print(f"{clip.name} frame {t + 1}/{len(clip.frames)}: {report}", file=sys.stderr,
              flush=True)
    for name in methods:
        if name.startswith("keyframes:"):
            runs[name] = run_keyframes(clip, config, model, name.split(":", 1)[1])
    return runs


def method_config(name: str, config: AnalogyConfig) -> AnalogyConfig:
    """The settings of a whole-analogy method: ``video[:UPSAMPLE][@STOP/OUTPUTS]``."""
    name, _, variant = name.partition("@")
    if ":" in name:
        config = config.replace(upsample=name.split(":")[1])
    if variant:
        stop, outputs = variant.split("/")
        config = config.replace(lbfgs_stop=stop, outputs=outputs)
    return config


def run_keyframes(clip: Synthetic, config: AnalogyConfig, model: VGG19, spec: str) -> Run:
    """``gpuanalogy.keyframes`` with keyframes by ``spec`` (N, auto or a list)."""
    video = Clip(clip.exemplar, config, model=model)

    def stylise(index: int, frame: np.ndarray) -> KeyedFrame:
        done = video.frame(frame)
        return KeyedFrame(index, done.result.a_prime, done.result.nnf_ab, True,
                          seconds=done.seconds)

    run, found = Run(), {}
    with PeakMemory() as peak:
        for made in keyframe_video(enumerate(clip.frames), stylise, Schedule.parse(spec),
                                   backend=model.backend):
            found[made.index] = made
            kind = "keyframe" if made.keyframe else f"from {made.sources}"
            print(f"{clip.name} keyframes:{spec} frame {made.index + 1}: {kind} "
                  f"{made.seconds:.2f} s", file=sys.stderr, flush=True)
    for t in range(len(clip.frames)):
        run.outputs.append(found[t].a_prime)
        run.seconds.append(found[t].seconds)
        run.peaks.append(peak.megabytes)
        if found[t].keyframe:
            run.keyframes.append(t)
    return run


def entering_detail(outputs: list[np.ndarray], clip: Synthetic) -> float:
    """Mean |Laplacian| of the output's grey (0-255) over the content that was not in frame 0,
    over the last third of the clip: how much texture the content entering the frame gets."""
    values = []
    for t in range(2 * len(outputs) // 3, len(outputs)):
        _, visible = clip.where(t, 0)
        grey = outputs[t].astype(np.float32).mean(axis=2)
        if (~visible).sum() >= 100:
            values.append(float(np.abs(laplace(grey))[~visible].mean()))
    return float(np.mean(values)) if values else float("nan")


def strip(clip: Synthetic, runs: dict[str, Run], folder: Path) -> Path:
    picks = sorted({0, len(clip.frames) // 3, 2 * len(clip.frames) // 3, len(clip.frames) - 1})
    rows = [[(f"input t={t}", clip.frames[t]) for t in picks]]
    for name, run in runs.items():
        rows.append([(f"{name} t={t}", run.outputs[t]) for t in picks])
    path = folder / f"video_{clip.name}.png"
    write_image(path, make_sheet(rows, height=160))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="240x320", help="H x W of the frames")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--preset", default="photo2style")
    parser.add_argument("--upsample", default="cubic",
                        help="how outputs reach the frame size (cubic: as measured in docs/)")
    parser.add_argument("--clips", default="panzoom,object")
    parser.add_argument("--methods", default="frame by frame,video",
                        help="comma-separated: 'frame by frame', 'video', 'video:UPSAMPLE', "
                             "'keyframes:N|auto|i;j;...'")
    parser.add_argument("--strip", type=Path, default=Path("out/bench_video"))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.size.lower().split("x"))
    config = AnalogyConfig.preset(args.preset, ratio=args.ratio, upsample=args.upsample,
                                  device="cpu")
    methods = [m.strip().replace(";", ",") for m in args.methods.split(",")]
    args.strip.mkdir(parents=True, exist_ok=True)
    makers = {"panzoom": panzoom, "object": moving_object}
    table = []
    with bench_lock("benchmarks/video.py"):
        load = os.getloadavg()
        model = VGG19(config.weights, "cpu")
        for name in args.clips.split(","):
            clip = makers[name](args.frames, shape)
            runs = run_clip(clip, config, model, methods)
            floor = warping_error(clip.frames, clip)
            for method, run in runs.items():
                steps = [step_error(run.outputs, clip, t) for t in range(1, len(run.outputs))]
                print(f"{name} {method}: warping error per frame "
                      f"{', '.join(f'{e:.2f}' for e in steps)}", file=sys.stderr, flush=True)
                after = run.seconds[1:]
                propagated = [s for t, s in enumerate(run.seconds) if t not in run.keyframes]
                table.append({
                    "clip": name, "method": method, "frames": len(run.seconds),
                    "keyframes": run.keyframes or None,
                    "first_s": run.seconds[0], "per_frame_s": float(np.mean(after)),
                    "propagated_s": float(np.median(propagated)) if run.keyframes else None,
                    "warp_error": warping_error(run.outputs, clip), "input_floor": floor,
                    "entering_detail": entering_detail(run.outputs, clip),
                    "peak_min_mb": min(run.peaks[1:]), "peak_max_mb": max(run.peaks[1:])})
            print(f"wrote {strip(clip, runs, args.strip)}", file=sys.stderr)
        load = (load, os.getloadavg())
    size = f"{shape[1]}x{shape[0]} (ratio {args.ratio})"
    print(f"\nvideo benchmark: preset {args.preset}, upsample {args.upsample}, {size}, cpu, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load average at start / end "
          f"{load[0][0]:.1f} / {load[1][0]:.1f}\n")
    print("| clip | method | frames | keyframes | first frame (s) | s/frame after first | "
          "propagated s/frame | warping error | input's own | entering detail | "
          "peak MiB per frame | image size | device |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        keys = ", ".join(map(str, row["keyframes"])) if row["keyframes"] else "all"
        propagated = f"{row['propagated_s']:.2f}" if row["propagated_s"] is not None else "-"
        print(f"| {row['clip']} | {row['method']} | {row['frames']} | {keys} | "
              f"{row['first_s']:.1f} | {row['per_frame_s']:.2f} | {propagated} | "
              f"{row['warp_error']:.2f} | {row['input_floor']:.2f} | "
              f"{row['entering_detail']:.2f} | {row['peak_min_mb']:.0f}-{row['peak_max_mb']:.0f} "
              f"| {size} | cpu |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
