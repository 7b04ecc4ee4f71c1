"""Make the README's examples: one analogy per preset, from photos scikit-image ships.

The photos are the astronaut portrait (NASA, public domain) and Chelsea the cat (CC0). No
artwork ships with any of our dependencies, so the "style" images are made here from those
photos with two simple Pillow filters (a flat poster-paint look and a sepia ink sketch); they
are labelled as such in the sheets.

    python tools/make_examples.py [--out docs/examples] [--presets photo2style,...]

Writes ``<preset>.png`` (the sheet: A, B', A', B and, for photo presets, the refined outputs)
and prints the run's seconds per stage.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from skimage import data

from gpuanalogy import AnalogyConfig, analogy, write_image
from gpuanalogy.visualize import make_sheet
from gpuanalogy.features import VGG19


def poster_paint(image: np.ndarray) -> np.ndarray:
    """Flat, saturated colour patches: a mode filter, smoothed, posterised to 3 bits."""
    img = Image.fromarray(image).filter(ImageFilter.ModeFilter(9)).filter(ImageFilter.SMOOTH_MORE)
    return np.asarray(ImageEnhance.Color(ImageOps.posterize(img, 3)).enhance(1.8))


def ink_sketch(image: np.ndarray) -> np.ndarray:
    """Sepia ink: three grey tones under inverted edges, on warm paper."""
    grey = Image.fromarray(image).convert("L").filter(ImageFilter.SMOOTH)
    tones = ImageOps.posterize(ImageOps.autocontrast(grey), 2)
    edges = ImageOps.invert(grey.filter(ImageFilter.FIND_EDGES)).point(lambda v: v if v > 215 else 40)
    ink = np.minimum(np.asarray(tones, np.float32), np.asarray(edges, np.float32)) / 255.0
    paper, sepia = np.array([245, 232, 205], np.float32), np.array([70, 45, 25], np.float32)
    return (sepia + (paper - sepia) * ink[..., None]).astype(np.uint8)


def face() -> np.ndarray:
    return np.asarray(Image.fromarray(data.astronaut()[20:320, 110:410]).resize((256, 256), Image.LANCZOS))


def cat() -> np.ndarray:
    return np.asarray(Image.fromarray(data.chelsea()[:, 75:375]).resize((256, 256), Image.LANCZOS))


# preset -> (A, B', label A, label B')
EXAMPLES = {
    "photo2style": lambda: (face(), poster_paint(cat()), "A: photo", "B': poster filter"),
    "style2style": lambda: (ink_sketch(face()), poster_paint(cat()), "A: ink filter",
                            "B': poster filter"),
    "style2photo": lambda: (poster_paint(cat()), cat()[:, ::-1].copy(), "A: poster filter",
                            "B': photo (mirrored)"),
    "photo2photo": lambda: (face(), cat(), "A: photo", "B': photo"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/examples")
    parser.add_argument("--presets", default=",".join(EXAMPLES))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    out = Path(args.out)
    model = VGG19(None, args.device)
    for preset in args.presets.split(","):
        a, b_prime, label_a, label_b = EXAMPLES[preset]()
        config = AnalogyConfig.preset(preset, device=args.device)
        start = time.perf_counter()
        r = analogy(a, b_prime, config, model=model)
        seconds = time.perf_counter() - start
        row = [(label_a, a), (label_b, b_prime), ("A'", r.a_prime), ("B", r.b)]
        if r.a_prime_refined is not None:
            row += [("A' refined", r.a_prime_refined), ("B refined", r.b_refined)]
        write_image(out / f"{preset}.png", make_sheet([row], height=200))
        print(f"{preset}: blend {config.blend}, ratio {config.ratio}, refine {config.refine}: "
              f"{seconds:.0f} s on {model.backend.name}; "
              + ", ".join(f"{k} {v:.1f}" for k, v in r.timings.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
