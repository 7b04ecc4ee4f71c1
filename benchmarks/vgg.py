"""VGG-19 on ONNX Runtime: feature extraction and one loss+gradient per sub-network.

For each size, with the default (plain Caffe) weights:

- "open graph + first ..." rows: first use of a graph: build it (unless the model cache has
  it), open the ONNX Runtime session and run it once; "first ... at this size" rows: the first
  run of an open session at a new image size (ORT plans and grows its memory arena);
- "features": relu1_1 .. relu5_1 of one image (median of ``--repeat`` runs);
- "loss_and_grad L": one value+gradient of the sub-network L-2 -> L-1 -> L, the unit of work
  of the deconvolution's L-BFGS (about 100 of them per level and direction), median of runs.

    python benchmarks/vgg.py [--sizes 224,448] [--repeat 3] [--device cpu] [--cold]

``--cold`` builds every graph into a fresh temporary cache instead of the user's cache.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, Stage, print_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,448")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args(argv)
    if args.cold:
        os.environ["GPUANALOGY_CACHE_DIR"] = tempfile.mkdtemp(prefix="gpuanalogy-bench-")

    from gpuanalogy.backend import get_backend  # noqa: PLC0415
    from gpuanalogy.features import VGG19  # noqa: PLC0415
    from gpuanalogy.runtime import cache_dir, default_threads  # noqa: PLC0415

    try:
        from gpuanalogy.weights import load_default_weights  # noqa: PLC0415
    except ImportError:
        print("gpuanalogy.weights is not available: no real weights to benchmark", file=sys.stderr)
        return 1

    backend = get_backend(args.device)
    rows: list[Row] = []
    with Stage("load default weights", image_size="-", device=backend.name) as stage:
        weights = load_default_weights()
    rows.append(stage.row)
    model = VGG19(weights, backend)
    threads = default_threads()
    rng = np.random.default_rng(0)

    for size in (int(s) for s in args.sizes.split(",")):
        label = f"{size}x{size}"
        rgb = backend.asarray(rng.random((size, size, 3), dtype=np.float32))
        device = backend.name

        def stage(name: str) -> Stage:
            return Stage(name, image_size=label, device=device, sync=backend.synchronize)

        def first(kind: str, what: str) -> str:
            opened = kind in model._runners  # a session is open: only the size is new
            return f"first {what} at this size" if opened else f"open graph + first {what}"

        with stage(first("features", "features")) as s:
            feats = model.features(rgb)
        device = f"{backend.name} ({model.provider}, {threads} threads)"
        s.row.device = device
        rows.append(s.row)
        rows.append(_median(args.repeat, lambda: model.features(rgb), stage("features")))

        levels = [model.preprocess(rgb), *feats.values()]
        for level in (2, 3, 4, 5):
            net = model.subnet(level)
            x = backend.xp.ascontiguousarray(levels[level - 2])
            target = backend.xp.ascontiguousarray(levels[level] * 0.9)
            with stage(first(f"subnet{level}-target", f"loss_and_grad {level}")) as s:
                net.loss_and_grad(x, target)
            rows.append(s.row)
            rows.append(_median(args.repeat, lambda: net.loss_and_grad(x, target),
                                stage(f"loss_and_grad {level} ({net.input_layer} -> "
                                      f"{net.output_layer})")))

    machine = platform.processor() or platform.machine()
    print_table(rows, title=(f"VGG-19 on ONNX Runtime ({machine}, {os.cpu_count()} logical "
                             f"CPUs); model cache {cache_dir()}"))
    print("seconds: median of", args.repeat, "runs where repeated; memory: peak RSS during the "
          "stage (+ rise over its start)")
    return 0


def _median(repeat: int, fn, template: Stage) -> Row:
    """Run ``fn`` ``repeat`` times under one memory monitor; the row's seconds are the median."""
    times = []
    with template as stage:
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            if template.sync is not None:
                template.sync()
            times.append(time.perf_counter() - t0)
    row = stage.row
    row.seconds = statistics.median(times)
    row.note = f"min {min(times):.3f}" if repeat > 1 else ""
    return row


if __name__ == "__main__":
    sys.exit(main())
