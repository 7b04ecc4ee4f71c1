"""Command line: ``gpuanalogy run``, ``gpuanalogy batch`` and ``gpuanalogy demo``.

Each command parses, then makes one library call. Heavy imports (ONNX Runtime, Numba) wait until
a command runs, so ``--help`` and ``--version`` answer at once. Errors meant for the user print
one line and exit with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .config import OPTIMIZERS
from .errors import EXIT_ERROR, GpuAnalogyError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.handler(args)
    except GpuAnalogyError as exc:
        if args.debug:
            raise
        print(f"gpuanalogy: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gpuanalogy: interrupted", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse prints the whole usage first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gpuanalogy",
        description="Visual attribute transfer through Deep Image Analogy (Liao et al. 2017).")
    parser.add_argument("--version", action="version", version=f"gpuanalogy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="one pair: A and B' in, A' and B out")
    run.add_argument("a", metavar="A", help="structure image A")
    run.add_argument("b_prime", metavar="B'", help="structure image B' (its look goes to A')")
    run.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    _add_options(run)
    run.set_defaults(handler=_run)

    batch = commands.add_parser("batch", help="many pairs from a CSV or two folders")
    batch.add_argument("pairs", metavar="PAIRS",
                       help="CSV with columns a,b_prime[,preset,...] or a folder holding A/ and B/")
    batch.add_argument("b_folder", nargs="?", metavar="B_FOLDER",
                       help="with PAIRS a folder of A images: the folder of B' images (same names)")
    batch.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    _add_options(batch)
    batch.set_defaults(handler=_batch)

    demo = commands.add_parser("demo", help="run on a sample pair shipped by scikit-image")
    demo.add_argument("-o", "--output", default="out/demo", metavar="OUTDIR")
    _add_options(demo)
    demo.set_defaults(handler=_demo)
    return parser


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=("photo2style", "style2style", "style2photo", "photo2photo"),
                   help="the official settings for one of the four uses")
    p.add_argument("--blend", type=int, choices=(1, 2, 3), help="alpha preset (default 3)")
    p.add_argument("--ratio", type=float, help="scale after the size rule (default 1)")
    p.add_argument("--iters", type=int, help="PatchMatch iterations per level (default 10)")
    p.add_argument("--lbfgs-iters", type=int, help="L-BFGS iterations per deconvolution (100)")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="deconvolution optimiser: L-BFGS on the device's arrays (lbfgs, "
                        "default) or SciPy's L-BFGS-B (scipy, the reference)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--mask", choices=("sigmoid", "hard"), help="blend mask (default sigmoid)")
    p.add_argument("--upsample", choices=("cubic", "nnf"),
                   help="outputs back to the input size: resize the working-size result "
                        "(cubic, official) or vote input pixels through the upsampled field")
    p.add_argument("--refine", dest="refine", action="store_true", default=None,
                   help="apply the WLS photo refinement")
    p.add_argument("--no-refine", dest="refine", action="store_false")
    p.add_argument("--subpixel", dest="subpixel", action="store_true", default=None,
                   help="align the final fields to sub-pixel precision under a local colour "
                        "model before voting (for two photographs of one scene)")
    p.add_argument("--no-subpixel", dest="subpixel", action="store_false")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--weights", metavar="FILE",
                   help="a VGG-19 weights file (torchvision state dict) instead of the bundled one")
    p.add_argument("--save-levels", action="store_true", help="also write each level's A' and B")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def config_from_args(args: argparse.Namespace, preset: str | None = None,
                     base: Any = None) -> Any:
    """An AnalogyConfig: the preset (``preset`` or ``--preset``), or ``base``, plus the options."""
    from .config import config_from_options  # noqa: PLC0415

    return config_from_options(vars(args), preset=preset or args.preset, base=base)


class ProgressPrinter:
    """Prints one stderr line per stage: level, stage, steps done, elapsed seconds."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.start = time.perf_counter()

    def __call__(self, progress: Any) -> None:
        level = f"level {progress.level}" if progress.level else "output"
        elapsed = time.perf_counter() - self.start
        print(f"{self.prefix}[{progress.done + 1:2d}/{progress.total}] {level}: {progress.stage}"
              f"  ({elapsed:.1f} s)", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from . import io  # noqa: PLC0415
    from .runner import run_pair  # noqa: PLC0415

    config = config_from_args(args)
    a = io.read_image(args.a)
    b_prime = io.read_image(args.b_prime)
    io.check_output_dir(args.output)
    record = run_pair(a, b_prime, args.output, config, names=(args.a, args.b_prime),
                      save_levels=args.save_levels, on_progress=ProgressPrinter())
    _print_written(args.output, record)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from . import io  # noqa: PLC0415
    from .runner import DEMO_CONFIG, demo_pair, run_pair  # noqa: PLC0415

    config = config_from_args(args, base=DEMO_CONFIG)
    io.check_output_dir(args.output)
    a, b_prime, names = demo_pair()
    print(f"gpuanalogy demo: A = {names[0]}, B' = {names[1]}; preset photo2style, "
          f"ratio {config.ratio} (the official setting for faces)", file=sys.stderr)
    record = run_pair(a, b_prime, args.output, config, names=names,
                      save_levels=args.save_levels, on_progress=ProgressPrinter())
    _print_written(args.output, record)
    return 0


def _batch(args: argparse.Namespace) -> int:
    from .batch import run_batch  # noqa: PLC0415

    return run_batch(args)


def _print_written(outdir: str, record: dict) -> None:
    print(f"done in {record['seconds_total']:.1f} s on {record['device']}"
          f" (peak memory {record.get('peak_memory_mb', 0):.0f} MiB); wrote:", file=sys.stderr)
    for name in record["files"] + ["run.json"]:
        print(Path(outdir) / name)


if __name__ == "__main__":
    sys.exit(main())
