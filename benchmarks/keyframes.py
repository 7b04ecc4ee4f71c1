"""The keyframe propagation measured against known answers: guide weights, schedule and blend.

The clips of ``benchmarks/video.py`` (``panzoom``, ``object``) know where every pixel's content
is in every other frame (``Synthetic.where``). A keyframe's stylised output here is a stand-in
made without the network (``paint``: the frame's colours posterised and multiplied by a fixed
noise texture tied to the keyframe's pixels), so the true stylised frame t is that output
carried along the true motion (bilinear), wherever the keyframe shows frame t's content. Per
setting and clip the table gives, over the frames after the keyframe:

* ``truth error``: mean |output - true stylised frame| (0-255) where the keyframe shows the
  content;
* ``warping error``: as in ``benchmarks/video.py`` (consecutive outputs against the true
  motion, 0-255);
* ``detail``: mean |Laplacian| of the output over that of the true frame, same pixels (1 is as
  detailed, below 1 flatter);
* seconds per frame (motion search included), peak resident memory.

Rows ``forward`` propagate from frame 0; rows ``blend:<method>`` put keyframes at the first and
last frames and blend both sides' results (``gpuanalogy.propagation.blend``); rows
``driver:N`` run ``gpuanalogy.keyframes.keyframe_video`` with a keyframe every N frames (the
stand-in keyframes, consistent with each other), and their seconds are a propagated frame's
whole cost: both sides' motion and synthesis and the blend.

    python benchmarks/keyframes.py [--frames 12] [--size 240x320] [--clips panzoom,object]
                                   [--sweep weights|schedule|blend|all|none] [--driver N]

Timings are taken inside ``bench_lock`` (one benchmark at a time on the machine).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, laplace

sys.path.insert(0, str(Path(__file__).parent))
from _table import bench_lock  # noqa: E402
from video import Synthetic, moving_object, panzoom, sample, step_error  # noqa: E402

from gpuanalogy.memory import PeakMemory  # noqa: E402
from gpuanalogy.backend import get_backend  # noqa: E402
from gpuanalogy.config import Schedule  # noqa: E402
from gpuanalogy.keyframes import KeyedFrame, keyframe_video  # noqa: E402
from gpuanalogy.propagation import BLENDS, GuideWeights, Propagation, blend  # noqa: E402
from gpuanalogy.synthesis import SynthesisSettings  # noqa: E402


def paint(frame: np.ndarray, seed: int = 0) -> np.ndarray:
    """A stand-in stylised keyframe: posterised colours times a fixed noise texture, uint8."""
    levels = np.floor(frame.astype(np.float32) / 256.0 * 5.0) / 4.0 * 255.0
    noise = gaussian_filter(np.random.default_rng(seed).standard_normal(frame.shape[:2]), 1.2)
    texture = 1.0 + 0.9 * noise / noise.std() * 0.3
    return np.clip(levels * texture[..., None] + 20.0 * noise[..., None], 0, 255).astype(np.uint8)


def consistent(clip: Synthetic, style: np.ndarray, k: int) -> np.ndarray:
    """A stand-in for keyframe k consistent with keyframe 0's ``style``: that style carried
    along the true motion where frame 0 shows frame k's content, fresh paint elsewhere."""
    there, visible = clip.where(k, 0)
    carried = np.clip(np.rint(sample(style, *there)), 0, 255).astype(np.uint8)
    return np.where(visible[..., None], carried, paint(clip.frames[k], 2))


def truth(clip: Synthetic, style: np.ndarray, t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The true stylised frame t from keyframe k's ``style``, and where the keyframe shows it."""
    there, visible = clip.where(t, k)
    return sample(style, *there), visible


def detail(image: np.ndarray, reference: np.ndarray, where: np.ndarray) -> float:
    def energy(x: np.ndarray) -> float:
        grey = x.astype(np.float32).mean(axis=2)
        return float(np.abs(laplace(grey))[where].mean())
    return energy(image) / energy(reference)


def forward(clip: Synthetic, style: np.ndarray, weights: GuideWeights,
            settings: SynthesisSettings, backend) -> tuple[list[np.ndarray], list[float], float]:
    """Frames 1.. from keyframe 0: outputs (uint8, the keyframe's first), seconds, peak MiB."""
    chain = Propagation(clip.frames[0], style, weights=weights, settings=settings,
                        backend=backend)
    outputs, seconds, peak_mb = [style], [], 0.0
    for frame in clip.frames[1:]:
        with PeakMemory() as peak:
            start = time.perf_counter()
            done = chain.step(frame)
            seconds.append(time.perf_counter() - start)
        peak_mb = max(peak_mb, peak.megabytes)
        outputs.append(to_uint8(done.image))
    return outputs, seconds, peak_mb


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def syntheses(clip: Synthetic, key: int, style: np.ndarray, weights: GuideWeights,
              settings: SynthesisSettings, backend) -> dict:
    """Every frame but ``key`` (the first or the last) synthesised from it: t -> Synthesis."""
    chain = Propagation(clip.frames[key], style, weights=weights, settings=settings,
                        backend=backend)
    order = range(1, len(clip.frames)) if key == 0 else range(len(clip.frames) - 2, -1, -1)
    return {t: chain.step(clip.frames[t]) for t in order}


def score(clip: Synthetic, outputs: list[np.ndarray], styles: dict[int, np.ndarray]) -> dict:
    """Truth error and detail against the nearest keyframe's truth; warping error."""
    errors, details = [], []
    for t in range(len(outputs)):
        if t in styles:
            continue
        k = min(styles, key=lambda key: abs(key - t))
        true, visible = truth(clip, styles[k], t, k)
        if visible.sum() < 100:
            continue
        errors.append(float(np.abs(outputs[t].astype(np.float32) - true).mean(-1)[visible]
                            .mean()))
        details.append(detail(outputs[t], true, visible))
    warp = float(np.mean([step_error(outputs, clip, t) for t in range(1, len(outputs))]))
    return {"truth": float(np.mean(errors)), "warp": warp, "detail": float(np.mean(details))}


def driver(clip: Synthetic, first: np.ndarray, every: int, backend) -> dict:
    """The clip driver with stand-in keyframes every ``every`` frames: errors and the median
    seconds of a propagated frame (both sides and the blend)."""
    styles = {0: first}

    def stylise(index: int, frame: np.ndarray) -> KeyedFrame:
        styles[index] = first if index == 0 else consistent(clip, first, index)
        grid = np.moveaxis(np.mgrid[0:frame.shape[0], 0:frame.shape[1]], 0, -1)
        return KeyedFrame(index, styles[index], grid.astype(np.float32), True)

    made = {}
    with PeakMemory() as peak:
        for done in keyframe_video(enumerate(clip.frames), stylise, Schedule(every=every),
                                   backend=backend):
            made[done.index] = done
    outputs = [made[t].a_prime for t in range(len(clip.frames))]
    seconds = [f.seconds for f in made.values() if not f.keyframe]
    return {"clip": clip.name, "setting": "default", "method": f"driver:{every}",
            "s": float(np.median(seconds)), "peak": peak.megabytes,
            **score(clip, outputs, styles)}


def settings_sweep(sweep: str) -> list[tuple[str, GuideWeights, SynthesisSettings]]:
    w, s = GuideWeights(), SynthesisSettings()
    rows = [("default", w, s)] if sweep != "none" else []
    if sweep in ("weights", "all"):
        rows += [(f"colour {v}", replace(w, colour=v), s) for v in (1.0, 4.0)]
        rows += [(f"edges {v}", replace(w, edges=v), s) for v in (0.0, 2.0)]
        rows += [(f"position {v}", replace(w, position=v), s) for v in (0.0, 0.1, 2.0, 10.0)]
        rows += [(f"temporal {v}", replace(w, temporal=v), s) for v in (0.0, 0.01, 0.1, 0.5)]
    if sweep in ("schedule", "all"):
        rows += [("patch 3", w, replace(s, patch_size=3)),
                 ("patch 7", w, replace(s, patch_size=7)),
                 ("levels 1", w, replace(s, levels=1)),
                 ("levels 2", w, replace(s, levels=2)),
                 ("iterations 1", w, replace(s, iterations=1)),
                 ("iterations 1, jumps 2 1", w, replace(s, iterations=1, jumps=(2, 1))),
                 ("jumps 8 4 2 1", w, replace(s, jumps=(8, 4, 2, 1))),
                 ("iterations 4", w, replace(s, iterations=4))]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", default="240x320", help="H x W of the frames")
    parser.add_argument("--clips", default="panzoom,object")
    parser.add_argument("--sweep", default="all", choices=("weights", "schedule", "blend",
                                                           "all", "none"))
    parser.add_argument("--driver", type=int, default=0,
                        help="also run the clip driver with a keyframe every N frames")
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.size.lower().split("x"))
    backend = get_backend("cpu")
    makers = {"panzoom": panzoom, "object": moving_object}
    rows = []
    with bench_lock("benchmarks/keyframes.py"):
        load = os.getloadavg()
        for name in args.clips.split(","):
            clip = makers[name](args.frames, shape)
            first = paint(clip.frames[0], 1)
            last = consistent(clip, first, len(clip.frames) - 1)
            for label, weights, settings in settings_sweep(args.sweep):
                outputs, seconds, peak = forward(clip, first, weights, settings, backend)
                rows.append({"clip": name, "setting": label, "method": "forward",
                             "s": float(np.median(seconds)), "peak": peak,
                             **score(clip, outputs, {0: first})})
                print(rows[-1], file=sys.stderr, flush=True)
            if args.sweep in ("blend", "all"):
                weights, settings = GuideWeights(), SynthesisSettings()
                n = len(clip.frames) - 1
                fronts = syntheses(clip, 0, first, weights, settings, backend)
                behind = syntheses(clip, n, last, weights, settings, backend)
                for method in BLENDS:
                    outputs = [first]
                    for t in range(1, n):
                        mixed = blend(fronts[t], behind[t], share=1 - t / n, method=method)
                        outputs.append(to_uint8(mixed))
                    outputs.append(last)
                    rows.append({"clip": name, "setting": "default", "method": f"blend:{method}",
                                 "s": float("nan"), "peak": float("nan"),
                                 **score(clip, outputs, {0: first, n: last})})
                    print(rows[-1], file=sys.stderr, flush=True)
            if args.driver:
                rows.append(driver(clip, first, args.driver, backend))
                print(rows[-1], file=sys.stderr, flush=True)
        load = (load, os.getloadavg())
    print(f"\nkeyframe propagation, {shape[1]}x{shape[0]}, {args.frames} frames, cpu, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load average at start / end {load[0][0]:.1f} / "
          f"{load[1][0]:.1f}\n")
    print("| clip | setting | method | truth error | warping error | detail | s/frame | "
          "peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['setting']} | {r['method']} | {r['truth']:.2f} | "
              f"{r['warp']:.2f} | {r['detail']:.2f} | {r['s']:.2f} | {r['peak']:.0f} |")


if __name__ == "__main__":
    main()
