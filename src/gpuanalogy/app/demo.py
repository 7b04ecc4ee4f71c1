"""``gpuanalogy demo``: the method on a sample pair that scikit-image ships."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..config import AnalogyConfig
from ..errors import InputError
from ..files import output_folder
from .options import config_from_options
from .pair import run_pair
from .progress import ProgressPrinter, print_written

DEMO_CONFIG = AnalogyConfig.preset("photo2style", ratio=0.5, outputs="both")
"""The official photo-to-style setting for faces (ratio 0.5), which the demo pair is, with
both outputs: the demo shows the method's two analogies (the preset itself makes A' alone)."""


def demo_pair() -> tuple[np.ndarray, np.ndarray, tuple[str, str]]:
    """The demo pair, both shipped by scikit-image: a face to a cat's face.

    A is the astronaut portrait (NASA, public domain) cropped to head and shoulders; B' is
    Chelsea the cat (CC0) cropped to her face. Both are 300 x 300 x 3 uint8.
    """
    try:
        from skimage import data  # noqa: PLC0415 - an optional dependency
    except ImportError as exc:
        raise InputError("the demo needs scikit-image: pip install 'gpuanalogy[examples]'") from exc
    return (data.astronaut()[20:320, 110:410], data.chelsea()[:, 75:375],
            ("skimage astronaut (face crop)", "skimage chelsea (face crop)"))


def command(args: argparse.Namespace) -> int:
    printer = ProgressPrinter()
    config = config_from_options(vars(args), base=DEMO_CONFIG)
    with output_folder(args.output):
        a, b_prime, names = demo_pair()
        print(f"gpuanalogy demo: A = {names[0]}, B' = {names[1]}; preset photo2style, "
              f"ratio {config.ratio} (the official setting for faces)", file=sys.stderr)
        record = run_pair(a, b_prime, args.output, config, names=names,
                          save_levels=args.save_levels, on_progress=printer)
    print_written(args.output, record, printer.elapsed())
    return 0
