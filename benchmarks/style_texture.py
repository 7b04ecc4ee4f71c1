"""How much of the exemplar's texture A' keeps, per stopping rule and output set, on style pairs.

    python benchmarks/style_texture.py --pair photo2style:A.png:BP.png [--pair ...]
                                       [--variants official/both,adaptive/both,adaptive/a_prime]
                                       [--ratio R] [--seed 0[,1,...]] [--crop 192]
                                       [--crops-out docs/examples]

Each pair runs under its preset (``photo2style``, ``style2style``; the preset's ratio unless
``--ratio``) once per variant (``STOP/OUTPUTS``), all in one process. For each A' the table
gives two texture measures against the exemplar B':

* Gram: the distance between the Gram matrices of VGG-19 relu1_1, relu2_1 and relu3_1 features
  (each ``F F^T / (H W)``), ``||G(A') - G(B')||_F / ||G(B')||_F``, averaged over the three
  layers: the style statistics of neural style transfer (lower: closer to the exemplar's);
* HF: the high-frequency energy of A' (mean squared difference from its Gaussian blur, sigma
  1.5 px) over the exemplar's (as ``benchmarks/output_modes.py``).

Each row's change is against the first variant of the same seed. The sub-network evaluations
of the deconvolutions and the seconds are printed too (the machine may be shared: the seconds
are not timings). The seed alone moves the Gram distance by several percent, so a bar on it is
read on several seeds: with ``--seed 0,1,2,3,4`` every pair runs every variant at each seed,
and a last table gives each variant's mean Gram distance over the seeds and its change against
the first variant's mean. With ``--crops-out``, a crop of ``--crop`` pixels of every variant's
A' (of the first seed), at full size (one output pixel a sheet pixel) side by side under its
label, is written per pair as ``<name>_crops.png``: the window where the first variant's A' has
the most high-frequency energy.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from gpuanalogy import AnalogyConfig, analogy
from gpuanalogy.checks import to_float_image
from gpuanalogy.features import VGG19
from gpuanalogy.images import read_image, write_image
from gpuanalogy.visualize import make_sheet

LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def gram_distance(model, image: np.ndarray, exemplar: np.ndarray) -> float:
    """Mean over :data:`LAYERS` of ``||G(image) - G(exemplar)||_F / ||G(exemplar)||_F``."""
    grams = []
    for picture in (image, exemplar):
        features = model.features(model.backend.asarray(to_float_image(picture, name="image")))
        grams.append({})
        for layer in LAYERS:
            f = np.asarray(model.backend.to_numpy(features[layer]), np.float64)
            f = f.reshape(f.shape[0], -1)
            grams[-1][layer] = f @ f.T / f.shape[1]
    return float(np.mean([np.linalg.norm(grams[0][k] - grams[1][k]) / np.linalg.norm(grams[1][k])
                          for k in LAYERS]))


def high_frequency(image: np.ndarray) -> float:
    """Mean squared difference between a uint8 image and its Gaussian blur (sigma 1.5 px)."""
    x = np.asarray(image, np.float64) / 255.0
    return float(np.mean((x - gaussian_filter(x, (1.5, 1.5, 0))) ** 2))


def busiest_crop(image: np.ndarray, side: int) -> tuple[int, int]:
    """The top-left corner of the ``side`` x ``side`` window of ``image`` with the most
    high-frequency energy (on a grid of quarter windows)."""
    x = np.asarray(image, np.float64) / 255.0
    energy = ((x - gaussian_filter(x, (1.5, 1.5, 0))) ** 2).sum(axis=2)
    h, w = energy.shape
    step = max(side // 4, 1)
    best = max(((energy[y:y + side, x0:x0 + side].sum(), y, x0)
                for y in range(0, max(h - side, 0) + 1, step)
                for x0 in range(0, max(w - side, 0) + 1, step)))
    return best[1], best[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", action="append", required=True,
                        help="PRESET:A:B_PRIME (a style preset and two image files)")
    parser.add_argument("--variants", default="official/both,adaptive/both,adaptive/a_prime")
    parser.add_argument("--ratio", type=float, help="instead of the preset's ratio")
    parser.add_argument("--lbfgs-iters", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", default="0",
                        help="the analogy's seed (config.seed), or several: 0,1,2,3,4")
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--crops-out", type=Path)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    model = VGG19(None, args.device)
    variants = [tuple(v.split("/")) for v in args.variants.split(",")]
    print(f"texture of A' against the exemplar: Gram distance (relu1_1-relu3_1, lower is "
          f"closer) and HF energy over the exemplar's; at most {args.lbfgs_iters} L-BFGS "
          f"iterations, device {model.backend.name}", flush=True)
    seeds = [int(seed) for seed in args.seed.split(",")]
    width = 24 if len(seeds) == 1 else 33   # "pair (preset) seed N"
    print(f"{'pair':{width}s} {'stop':9s} {'outputs':8s} {'Gram':>7s} {'change':>7s} {'HF':>6s} "
          f"{'change':>7s} {'evals':>6s} {'saved':>6s} {'sec':>7s}", flush=True)
    worst: dict[tuple[str, str], float] = {}
    grams: dict[tuple[str, str, str], list[float]] = {}
    for spec in args.pair:
        preset, a_path, b_path = spec.split(":", 2)
        a, b_prime = read_image(a_path), read_image(b_path)
        name = Path(a_path).stem.removesuffix("_A")
        hf_exemplar = high_frequency(b_prime)
        options = {"lbfgs_iterations": args.lbfgs_iters, "device": args.device}
        if args.ratio:
            options["ratio"] = args.ratio
        for seed in seeds:
            first = None
            images = []
            for stop, outputs in variants:
                config = AnalogyConfig.preset(preset, lbfgs_stop=stop, outputs=outputs, seed=seed,
                                              **options)
                start = time.perf_counter()
                result = analogy(a, b_prime, config, model=model)
                seconds = time.perf_counter() - start
                gram = gram_distance(model, result.a_prime, b_prime)
                hf = high_frequency(result.a_prime) / hf_exemplar
                evals = sum(s.evaluations for _, _, s in result.deconvolutions)
                first = first or (gram, hf, evals)
                change = gram / first[0] - 1
                grams.setdefault((name, stop, outputs), []).append(gram)
                if (stop, outputs) != variants[0]:
                    key = (stop, outputs)
                    worst[key] = max(worst.get(key, 0.0), change, key=abs)
                row = f"{name} ({preset})" + (f" seed {seed}" if len(seeds) > 1 else "")
                print(f"{row:{width}s} {stop:9s} {outputs:8s} {gram:7.4f} {change:+7.1%} "
                      f"{hf:6.3f} {hf / first[1] - 1:+7.1%} {evals:6d} "
                      f"{1 - evals / first[2]:6.1%} {seconds:7.1f}", flush=True)
                images.append((f"{stop}, {outputs}", result.a_prime))
            if args.crops_out and seed == seeds[0]:
                y, x = busiest_crop(images[0][1], args.crop)
                cells = [(label, image[y:y + args.crop, x:x + args.crop])
                         for label, image in images]
                args.crops_out.mkdir(parents=True, exist_ok=True)
                write_image(args.crops_out / f"{name}_crops.png",
                            make_sheet([cells], height=cells[0][1].shape[0]))
    for (stop, outputs), change in worst.items():
        print(f"largest Gram change, {stop}/{outputs} against {'/'.join(variants[0])}: "
              f"{change:+.1%}", flush=True)
    if len(seeds) > 1:
        print(f"mean Gram distance over seeds {args.seed}, and its change against "
              f"{'/'.join(variants[0])}'s mean:")
        for (name, stop, outputs), values in grams.items():
            mean = float(np.mean(values))
            reference = float(np.mean(grams[(name, *variants[0])]))
            print(f"{name:{width}s} {stop:9s} {outputs:8s} {mean:7.4f} "
                  f"{mean / reference - 1:+7.1%} (seed to seed {min(values):.4f}-"
                  f"{max(values):.4f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
