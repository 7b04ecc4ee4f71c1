"""``gpuanalogy``: the entry point, which parses the command line and runs one command.

Each command is a module of this package with a ``command(args) -> int``, imported only once it
runs, so ``--help`` and ``--version`` answer at once (no ONNX Runtime, no Numba). Errors meant
for the user print one line and exit with status 2; ``--debug`` shows the traceback instead.
Notices print as one line each (:func:`gpuanalogy.app.progress.showing_notices`).

SIGTERM (what ``kill``, systemd, Docker and batch schedulers send) stops a command as SIGINT
(Ctrl-C) does: it raises :class:`Terminated`, a ``KeyboardInterrupt``, where the program is, so
the same clean-up runs (partial folders removed, finished pairs and frames kept, a cluster's
futures cancelled); the exit status is 143 instead of 130. A second SIGTERM ends the process
at once.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from typing import Any

from .. import __version__
from ..errors import EXIT_ERROR, GpuAnalogyError
from .options import OPTIONS, VIDEO_OPTIONS, add_cluster_options, add_options
from .progress import print_notice, showing_notices

#: Exit statuses of an interrupted command: 128 + the signal's number, as a shell reports it.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread wherever it is, to stop as an interruption does."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        with showing_notices(print_notice):
            return importlib.import_module(f"{__package__}.{args.command}").command(args)
    except GpuAnalogyError as exc:
        if args.debug:
            raise
        print(f"gpuanalogy: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as interruption:
        if isinstance(interruption, Terminated):
            print("gpuanalogy: terminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        print("gpuanalogy: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _terminate(_signum: int, _frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # a second SIGTERM ends the process at once
    raise Terminated


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse prints the whole usage first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gpuanalogy",
        description="Visual attribute transfer through Deep Image Analogy (Liao et al. 2017).")
    parser.add_argument("--version", action="version", version=f"gpuanalogy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="one pair: A and B' in, A' and B out")
    run.add_argument("a", metavar="A", help="structure image A (A' keeps its layout)")
    run.add_argument("b_prime", metavar="B'", nargs="+",
                     help="appearance exemplar B' (its look goes to A'; its layout is B's); "
                          "several exemplars give one search over all of them, and a B each")
    run.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")

    batch = commands.add_parser("batch", help="many pairs from a CSV or two folders")
    batch.add_argument("pairs", metavar="PAIRS",
                       help="CSV with columns a,b_prime[,preset,...] or a folder holding A/ and B/")
    batch.add_argument("b_folder", nargs="?", metavar="B_FOLDER",
                       help="with PAIRS a folder of A images: the folder of B' images (same names)")
    batch.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    add_cluster_options(batch)

    video = commands.add_parser("video", help="a clip in one exemplar's look, frame after frame")
    video.add_argument("frames", metavar="FRAMES",
                       help="a folder of frames (sorted by name) or a video file (needs the "
                            "video extra)")
    video.add_argument("b_prime", metavar="B'", help="appearance exemplar B'")
    video.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    add_options(video, VIDEO_OPTIONS)

    demo = commands.add_parser("demo", help="run on a sample pair shipped by scikit-image")
    demo.add_argument("-o", "--output", default="out/demo", metavar="OUTDIR")

    serve = commands.add_parser("serve", help="a local web page and HTTP API (the web extra)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any)")
    serve.add_argument("--max-upload-mb", type=float, default=50, metavar="MB",
                       help="largest request (both images and the settings) in MiB (50)")
    serve.add_argument("--max-pixels", type=int, default=12_000_000, metavar="N",
                       help="largest image in pixels, checked on its header (12,000,000)")
    serve.add_argument("--max-queue", type=int, default=8, metavar="N",
                       help="jobs that may wait at once (8)")
    serve.add_argument("--keep-minutes", type=float, default=60, metavar="M",
                       help="how long a finished job's files stay (60)")
    add_options(serve, tuple(o for o in OPTIONS if not o.csv))   # the server's own settings
    serve.add_argument("--debug", action="store_true", help="show tracebacks")

    for command in (run, batch, demo, video):
        add_options(command, inputs=command in (run, batch))
        if command is not video:
            command.add_argument("--save-levels", action="store_true",
                                 help="also write each level's A' and B")
        command.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


if __name__ == "__main__":
    sys.exit(main())
