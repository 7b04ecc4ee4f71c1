"""VGG-19 on ONNX Runtime: feature extraction and one loss+gradient per sub-network.

For each size, with the default (plain Caffe) weights:

- "open graph + first ..." rows: first use of a graph: build it (unless the model cache has
  it), open the ONNX Runtime session and run it once; "first ... at this size" rows: the first
  run of an open session at a new image size (ORT plans and grows its memory arena);
- "features": relu1_1 .. relu5_1 of one image (median of ``--repeat`` runs);
- "loss_and_grad L": one value+gradient of the sub-network L-2 -> L-1 -> L, the unit of work
  of the deconvolution's L-BFGS (about 100 of them per level and direction), median of runs.

    python benchmarks/vgg.py [--sizes 224,448] [--repeat 3] [--device cpu] [--cold] [--profile]
                             [--winograd-channels N]

``--cold`` builds every graph into a fresh temporary cache instead of the user's cache.
``--winograd-channels`` overrides the backend's threshold for Winograd's form of the
sub-networks' convolutions (``Backend.winograd_channels``; 0: every convolution direct).
``--profile`` also runs each sub-network under ONNX Runtime's profiler and prints where one
loss_and_grad spends its time per operator type: each node's minimum over the runs, summed, so
the shares hold on a machine that another process keeps busy (the wall-clock rows do not).

Graph version 2 (blocked-layout ReLU masks, ReLU before each max-pool masked at the pooled
resolution, no float64 copy of the residual) against version 1 (``Where`` after every ReLU),
one loss_and_grad, ORT 1.32 CPU, 2 cores (AVX-512), real weights, interleaved runs of the two
graphs, milliseconds, min of 15 / 10 / 5 runs at 128 / 224 / 448 px; another process kept 1-2
of the 2 cores busy (load average 3.1-4.2), so the absolute numbers are inflated and the ratios
carry a few percent of noise (the convolution-bound levels 4-5 at 128 px did not change):

    size  level   v1 (min)   v2 (min)   v2 / v1
     128    2        82         62      0.75
     128    3        88         68      0.77
     128    4       118        117      0.99
     128    5       137        138      1.01
     224    2       209        151      0.72
     224    3       243        207      0.85
     224    4       306        282      0.92
     224    5       344        352      1.02
     448    2       671        492      0.73
     448    3       893        754      0.84
     448    4      1084        968      0.89
     448    5      1272       1157      0.91

Less sensitive to the load, each node's minimum over interleaved runs, summed: everything but
the 3x3 convolutions (v2's depthwise mask convolutions counted in) took 85 / 73 / 34 / 19 ms
(v1) and 41 / 49 / 17 / 10 ms (v2) at 224 px, 27 / 26 / 9 / 6 ms and 14 / 17 / 6 / 2 ms at 128
px, levels 2 / 3 / 4 / 5. In the one idle spell seen (load below 1), level 2 at 224 px took 78
ms with ``Where`` after every ReLU and 53 ms with version 2. Per-node profiles of version 2 at
224 px: convolutions are 66 / 73 / 90 / 97 % of levels 2 / 3 / 4 / 5 and run at about one core's
AVX-512 peak per thread; the rest is mostly ``MaxPool`` with ``Indices`` (ONNX Runtime's generic
loop without a blocked kernel, 10-15x slower than its index-free pooling) and ``MaxUnpool``.
Tried and left out: ConvTranspose for the 3-channel input-gradient of level 2 (no gain); a
blocked max-pool backward (compare with the upsampled pooled value, ties sharing the gradient,
even sizes only): 2 / 9 % less on levels 2 / 3 at 224 px, 7 % more / 8 % less at 128 px, nothing
on levels 4-5, so not worth a second graph per level for odd sizes and a new tie rule; intra-op
spinning off, arena or memory patterns off, session.dynamic_block_base (see
runtime.create_session).
"""
from __future__ import annotations

import argparse
import dataclasses
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
    parser.add_argument("--profile", action="store_true",
                        help="per-operator time of each loss_and_grad from ORT's profiler")
    parser.add_argument("--winograd-channels", type=int,
                        help="Winograd's form between at least this many channels (0: never); "
                             "default: the backend's own")
    args = parser.parse_args(argv)
    if args.cold:
        os.environ["GPUANALOGY_CACHE_DIR"] = tempfile.mkdtemp(prefix="gpuanalogy-bench-")

    from gpuanalogy.backend import get_backend  # noqa: PLC0415
    from gpuanalogy.features import VGG19  # noqa: PLC0415
    from gpuanalogy.backend import default_threads  # noqa: PLC0415
    from gpuanalogy.runtime import cache_dir  # noqa: PLC0415
    profiles: list[str] = []

    try:
        from gpuanalogy.weights import load_default_weights  # noqa: PLC0415
    except ImportError:
        print("gpuanalogy.weights is not available: no real weights to benchmark", file=sys.stderr)
        return 1

    backend = get_backend(args.device)
    if args.winograd_channels is not None:
        backend = dataclasses.replace(backend, winograd_channels=args.winograd_channels)
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
            if args.profile:
                profiles.append(_profile(model, level, x, target, label, max(args.repeat, 3)))

    machine = platform.processor() or platform.machine()
    print_table(rows, title=(f"VGG-19 on ONNX Runtime ({machine}, {os.cpu_count()} logical "
                             f"CPUs, Winograd from {backend.winograd_channels} channels); "
                             f"model cache {cache_dir()}"))
    print("seconds: median of", args.repeat, "runs where repeated; memory: peak RSS during the "
          "stage (+ rise over its start)")
    if profiles:
        print("\nONNX Runtime profile of one loss_and_grad (each node's minimum over the runs, "
              "summed per operator type):")
        print("\n".join(profiles))
    return 0


def _profile(model, level: int, x, target, label: str, runs: int) -> str:
    """One line: the sub-network's per-operator time under ORT's profiler."""
    from _profile import profile_by_op  # noqa: PLC0415
    from gpuanalogy.runtime import cached_model_path, create_session  # noqa: PLC0415

    kind = f"subnet{level}-target"
    path = cached_model_path(model._cache_kind(kind), model.weights,
                             lambda: model._build(kind))
    with tempfile.TemporaryDirectory(prefix="gpuanalogy-profile-") as folder:
        session, _ = create_session(path, model.backend, profile_prefix=str(Path(folder) / "p"))
        feeds = {"x": np.ascontiguousarray(model.backend.to_numpy(x))[None],
                 "target": np.ascontiguousarray(model.backend.to_numpy(target))[None]}
        for _ in range(runs + 1):
            session.run(["loss", "grad"], feeds)
        seconds, _ = profile_by_op(session.end_profiling())
    total = sum(seconds.values())
    parts = ", ".join(f"{op} {100 * t / total:.0f}%" for op, t in seconds.items()
                      if t >= 0.01 * total)
    return f"  {label} level {level}: {1e3 * total:7.1f} ms  {parts}"


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
