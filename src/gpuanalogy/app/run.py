"""``gpuanalogy run A B' [B' ...] -o OUTDIR``: one pair (A and one exemplar or several), read
from files with any region masks, written to a folder."""
from __future__ import annotations

import argparse

from ..files import output_folder
from ..images import read_image
from .options import config_from_options
from .pair import read_regions, run_pair
from .progress import ProgressPrinter, print_written


def command(args: argparse.Namespace) -> int:
    printer = ProgressPrinter()
    config = config_from_options(vars(args))
    a = read_image(args.a)
    exemplars = [read_image(path) for path in args.b_prime]
    regions = read_regions(args.regions_a, args.regions_b or (), len(exemplars))
    with output_folder(args.output):   # gone again if the run fails before writing
        record = run_pair(a, exemplars if len(exemplars) > 1 else exemplars[0], args.output,
                          config, names=(args.a, *args.b_prime), regions=regions,
                          save_levels=args.save_levels, on_progress=printer)
    print_written(args.output, record, printer.elapsed())
    return 0
