"""Stage timings of one whole analogy on the embedded defaults, with the VGG work counted.

    python benchmarks/pipeline.py [--sizes 224,448] [--ratio 1] [--lbfgs-iters 100] [--device auto]
                                  [--preset photo2photo] [--subpixel]
                                  [--optimizer lbfgs,scipy] [--cases 256@0.5,448@1]
                                  [--lbfgs-stop official,adaptive] [--outputs both,a_prime]
                                  [--winograd-channels 256,0]

The pair is scikit-image's astronaut (A) and Chelsea the cat (B'), each resized to SIZE x SIZE.
Peak memory is the process's resident high-water mark over the whole run (reset at the start
on Linux). The VGG work of the deconvolution is counted from the layer shapes: every L-BFGS
evaluation runs the sub-network forward and its input-gradient backward, 2 x 2 x k^2 C_in C_out
H W floating-point operations per 3x3 convolution in the direct form; the table gives the rate
achieved (with Winograd's form, ``Backend.winograd_channels``, fewer are done: the rate is then
the direct-equivalent one).
With several optimisers (``--optimizer lbfgs,scipy``), stopping rules (``--lbfgs-stop``) or
output sets (``--outputs``) each size runs once per combination, one after the other in the
same process, so the variants are compared in the same hour; a last table sets each against the
official stop with both outputs at the same size (the share of sub-network evaluations saved).
``--winograd-channels`` runs each with each threshold of Winograd's form (0: never; default:
the backend's own). ``--cases`` gives SIZE@RATIO pairs instead of ``--sizes`` at one
``--ratio``. The runs hold ``_table.bench_lock`` (one timing run at a time on the machine) and
the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
from skimage import data
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).parent))
from _table import Row, bench_lock, print_table  # noqa: E402

from gpuanalogy import AnalogyConfig, analogy  # noqa: E402
from gpuanalogy.config import LBFGS_STOPS, OPTIMIZERS, OUTPUTS  # noqa: E402
from gpuanalogy.backend import get_backend  # noqa: E402
from gpuanalogy.features import VGG19  # noqa: E402
from gpuanalogy.memory import PeakMemory  # noqa: E402
from gpuanalogy.vgg_graphs import level_shape, segment  # noqa: E402


def subnet_flops(weights, level: int, shape: tuple[int, int]) -> float:
    """FLOPs of one forward + input-gradient pass of the level-(L-2 -> L) sub-network."""
    total = 0.0
    for step_level in (level - 1, level):
        h, w = level_shape(*shape, step_level - 1, ceil_pool=weights.ceil_pool)
        for kind, name in segment(step_level):
            if kind == "pool":
                h, w = -(-h // 2), -(-w // 2)
                continue
            c_out, c_in, kh, kw = weights.convs[name][0].shape
            total += 2.0 * 2.0 * kh * kw * c_in * c_out * h * w
    return total


def pair(size: int) -> tuple[np.ndarray, np.ndarray]:
    def fit(img):
        return (resize(img, (size, size), order=3, anti_aliasing=True) * 255).astype(np.uint8)
    return fit(data.astronaut()), fit(data.chelsea()[:, 75:375])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,448")
    parser.add_argument("--ratio", type=float, default=1.0)
    parser.add_argument("--lbfgs-iters", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", choices=("photo2style", "style2style", "style2photo",
                                             "photo2photo"),
                        help="start from a preset's settings (default: the plain defaults)")
    parser.add_argument("--subpixel", action="store_true", help="with the sub-pixel alignment")
    parser.add_argument("--optimizer", default="lbfgs",
                        help="deconvolution optimisers to run, comma-separated: "
                             + ", ".join(OPTIMIZERS))
    parser.add_argument("--cases", help="SIZE@RATIO pairs, comma-separated (instead of "
                                        "--sizes and --ratio)")
    parser.add_argument("--lbfgs-stop", default="adaptive",
                        help="stopping rules to run, comma-separated: " + ", ".join(LBFGS_STOPS))
    parser.add_argument("--outputs", default="both",
                        help="output sets to run, comma-separated: " + ", ".join(OUTPUTS))
    parser.add_argument("--winograd-channels",
                        help="thresholds of Winograd's form to run, comma-separated "
                             "(0: never; default: the backend's own)")
    args = parser.parse_args()

    backend = get_backend(args.device)
    thresholds = ([int(v) for v in args.winograd_channels.split(",")]
                  if args.winograd_channels else [backend.winograd_channels])
    models = {v: VGG19(None, dataclasses.replace(backend, winograd_channels=v))
              for v in thresholds}
    device = f"{backend.name} ({models[thresholds[0]].provider})"
    cases = ([(int(c.split("@")[0]), float(c.split("@")[1])) for c in args.cases.split(",")]
             if args.cases else [(int(size), args.ratio) for size in args.sizes.split(",")])
    runs = [(size, ratio, optimizer, stop, outputs, winograd) for size, ratio in cases
            for optimizer in args.optimizer.split(",") for stop in args.lbfgs_stop.split(",")
            for outputs in args.outputs.split(",") for winograd in thresholds]
    with bench_lock("benchmarks/pipeline.py"):
        print(f"load average before: {_load()}", flush=True)
        summary = [_run(models[run[-1]], device, args, *run) for run in runs]
        print(f"load average after: {_load()}", flush=True)
    _print_summary(summary)
    return 0


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def _run(model, device: str, args: argparse.Namespace, size: int, ratio: float,
         optimizer_name: str, stop: str, outputs: str, winograd: int) -> dict:
    """One analogy of the astronaut / Chelsea pair at ``size``: its stage table, and a
    summary row."""
    a, b_prime = pair(size)
    options = dict(ratio=ratio, lbfgs_iterations=args.lbfgs_iters, device=args.device,
                   subpixel=args.subpixel, optimizer=optimizer_name, lbfgs_stop=stop,
                   outputs=outputs)
    config = (AnalogyConfig.preset(args.preset, **options) if args.preset
              else AnalogyConfig(**options))
    analogy(a[:64, :64], b_prime[:64, :64], config.replace(min_side=32, lbfgs_iterations=2),
            model=model)   # warm-up: graph sessions and Numba compilation
    with PeakMemory() as peak:
        result = analogy(a, b_prime, config, model=model)
    work = "x".join(map(str, result.working_shapes["a"]))
    label = f"{size}x{size} (work {work})"
    rows = [Row(stage, seconds, label, device) for stage, seconds in result.timings.items()]
    total = sum(result.timings.values())
    flops = sum(subnet_flops(model.weights, level + 1,
                             result.working_shapes["a" if side == "a_prime" else "b_prime"])
                * stats.evaluations for level, side, stats in result.deconvolutions)
    deconv = result.timings["deconvolution"]
    evals = sum(s.evaluations for _, _, s in result.deconvolutions)
    rows.append(Row("total", total, label, device, peak_bytes=int(peak.megabytes * 2**20)))
    print_table(rows, title=f"analogy at {size}x{size}, ratio {ratio}, "
                            f"L-BFGS at most {args.lbfgs_iters} iterations ({optimizer_name}, "
                            f"stop {stop}), outputs {outputs}, preset {args.preset}, "
                            f"subpixel {args.subpixel}, Winograd from {winograd} channels")
    network = sum(s.network_seconds for _, _, s in result.deconvolutions)
    transfer = sum(s.transfer_seconds for _, _, s in result.deconvolutions)
    optimizer = sum(s.optimizer_seconds for _, _, s in result.deconvolutions)
    print(f"VGG work in L-BFGS: {flops / 1e12:.2f} TFLOP in {evals} evaluations "
          f"({flops / deconv / 1e9:.0f} GFLOP/s over the deconvolution stage, "
          f"{100 * deconv / total:.0f} % of the total)", flush=True)
    print(f"deconvolution split: "
          f"sub-network evaluations {network:.1f} s "
          f"({flops / max(network, 1e-9) / 1e9:.0f} GFLOP/s), vector transfers and float64 "
          f"conversion {transfer:.1f} s, the optimiser itself ({optimizer_name}) "
          f"{optimizer:.1f} s; "
          f"PatchMatch {result.timings['patchmatch']:.1f} s", flush=True)
    print("iterations per deconvolution: " + ", ".join(
        f"{side} L{level} {s.iterations} ({s.stop})" for level, side, s in result.deconvolutions)
        + f"; load average {_load()}\n", flush=True)
    return {"size": size, "ratio": ratio, "optimizer": optimizer_name, "stop": stop,
            "outputs": outputs, "winograd": winograd, "total": total, "deconvolution": deconv,
            "patchmatch": result.timings["patchmatch"], "evaluations": evals,
            "peak_mb": peak.megabytes}


def _print_summary(summary: list[dict]) -> None:
    """Each run against the official stop with both outputs of its size, ratio, optimiser and
    Winograd threshold."""
    print(f"{'case':14s} {'optimizer':9s} {'stop':9s} {'outputs':8s} {'winograd':>8s} "
          f"{'total':>8s} {'deconv':>8s} {'PatchMatch':>10s} {'evals':>6s} {'saved':>6s} "
          f"{'peak':>9s}")
    for row in summary:
        base = next((r for r in summary if (r["size"], r["ratio"], r["optimizer"]) ==
                     (row["size"], row["ratio"], row["optimizer"])
                     and r["winograd"] == row["winograd"]
                     and (r["stop"], r["outputs"]) == ("official", "both")), None)
        saved = f"{1 - row['evaluations'] / base['evaluations']:6.1%}" if base else "     -"
        print(f"{row['size']:>4d} @ {row['ratio']:<6g} {row['optimizer']:9s} {row['stop']:9s} "
              f"{row['outputs']:8s} {row['winograd']:8d} {row['total']:7.1f}s "
              f"{row['deconvolution']:7.1f}s "
              f"{row['patchmatch']:9.1f}s {row['evaluations']:6d} {saved} "
              f"{row['peak_mb']:6.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
