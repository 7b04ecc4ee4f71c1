"""``gpuanalogy run A B' -o OUTDIR``: one pair, read from files, written to a folder."""
from __future__ import annotations

import argparse

from ..files import output_folder
from ..images import read_image
from .options import config_from_options
from .pair import run_pair
from .progress import ProgressPrinter, print_written


def command(args: argparse.Namespace) -> int:
    printer = ProgressPrinter()
    config = config_from_options(vars(args))
    a = read_image(args.a)
    b_prime = read_image(args.b_prime)
    with output_folder(args.output):   # gone again if the run fails before writing
        record = run_pair(a, b_prime, args.output, config, names=(args.a, args.b_prime),
                          save_levels=args.save_levels, on_progress=printer)
    print_written(args.output, record, printer.elapsed())
    return 0
