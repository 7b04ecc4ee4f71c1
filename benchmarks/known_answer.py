"""Known-answer analogies: B' is A warped and re-toned, so the true A', B and NNF are known.

For each photo shipped by scikit-image, A is the photo at SIZE x SIZE; B' is A under a small
similarity warp T (rotation up to 5 degrees, scale up to 6 %, shift up to 6 %) and a strong
re-tone (channel swap, sepia, contrast). Then the true outputs are

    A' = retone(A)        (A's layout, B''s colours)
    B  = A warped by T    (B''s layout, A's colours)
    nnf_ab(p) = T(p)      (where T(p) lies inside B')

The table gives PSNR / SSIM of A' and B against these, next to the "copy A" and "copy B'"
baselines, and the NNF endpoint error in pixels.

    python benchmarks/known_answer.py [--size 256] [--ratio 1] [--photos astronaut,chelsea]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from gpuanalogy import AnalogyConfig, analogy
from gpuanalogy.features import VGG19

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@dataclass(frozen=True)
class Similarity:
    """q = scale * R(angle) (p - centre) + centre + shift, in (row, col) pixels."""

    angle_deg: float
    scale: float
    shift: tuple[float, float]
    centre: tuple[float, float]

    def matrix(self) -> np.ndarray:
        t = np.deg2rad(self.angle_deg)
        return self.scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])

    def forward(self, points: np.ndarray) -> np.ndarray:
        c = np.asarray(self.centre)
        return (points - c) @ self.matrix().T + c + np.asarray(self.shift)

    def inverse(self, points: np.ndarray) -> np.ndarray:
        c = np.asarray(self.centre)
        return (points - c - np.asarray(self.shift)) @ np.linalg.inv(self.matrix()).T + c


def warp_image(image: np.ndarray, transform: Similarity) -> np.ndarray:
    """out(q) = image(T^-1(q)), cubic, borders reflected (float in [0, 1])."""
    h, w = image.shape[:2]
    grid = np.stack(np.mgrid[0:h, 0:w], axis=-1).reshape(-1, 2).astype(np.float64)
    source = transform.inverse(grid).T
    channels = [ndimage.map_coordinates(image[..., c], source, order=3, mode="reflect")
                for c in range(image.shape[2])]
    return np.clip(np.stack(channels, axis=-1).reshape(h, w, -1), 0, 1)


SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


def retone(image: np.ndarray, kind: int) -> np.ndarray:
    """Three strong colour changes: channel swap, sepia, and both with a contrast stretch."""
    if kind == 0:
        out = image[..., [2, 0, 1]]
    elif kind == 1:
        out = image @ SEPIA.T
    else:
        out = image[..., [1, 2, 0]] @ SEPIA.T
    return np.clip((out - 0.5) * 1.4 + 0.5, 0, 1)


def make_case(name: str, size: int, rng: np.random.Generator, kind: int):
    photo = getattr(data, name)()
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    h, w = photo.shape[:2]
    side = min(h, w)
    crop = photo[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    a = resize(crop, (size, size), order=3, anti_aliasing=True).astype(np.float64)
    t = Similarity(angle_deg=rng.uniform(-5, 5), scale=1 + rng.uniform(-0.06, 0.06),
                   shift=tuple(rng.uniform(-0.06, 0.06, 2) * size), centre=(size / 2, size / 2))
    b_true = warp_image(a, t)          # B' layout, A colours
    b_prime = retone(b_true, kind)
    a_prime_true = retone(a, kind)     # A layout, B' colours
    return a, b_prime, a_prime_true, b_true, t


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def scores(x: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    x, truth = to_u8(x) if x.dtype != np.uint8 else x, to_u8(truth)
    return (peak_signal_noise_ratio(truth, x, data_range=255),
            structural_similarity(truth, x, channel_axis=2, data_range=255))


def endpoint_error(nnf_ab: np.ndarray, t: Similarity, size: int) -> float:
    grid = np.stack(np.mgrid[0:size, 0:size], axis=-1).reshape(-1, 2).astype(np.float64)
    truth = t.forward(grid)
    inside = np.all((truth >= 0) & (truth <= size - 1), axis=1)
    err = np.linalg.norm(nnf_ab.reshape(-1, 2) - truth, axis=1)
    return float(np.median(err[inside]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ratio", type=float, default=1.0)
    parser.add_argument("--photos", default=",".join(PHOTOS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--lbfgs-iters", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refine", choices=("off", "on", "both"), default="off")
    args = parser.parse_args()

    config = AnalogyConfig(ratio=args.ratio, device=args.device, lbfgs_iterations=args.lbfgs_iters)
    model = VGG19(None, args.device)
    rng = np.random.default_rng(args.seed)
    rows = []
    header = (f"{'photo':10s} {'refine':6s} {'A-prime PSNR/SSIM':>18s} {'B PSNR/SSIM':>16s} "
              f"{'copy A: A-prime/B':>18s} {'copy B-prime: A-prime/B':>24s} {'EPE med':>8s} {'sec':>6s}")
    print(f"known-answer analogies: {args.size} px, ratio {args.ratio}, "
          f"L-BFGS {args.lbfgs_iters} iterations, device {model.backend.name}", flush=True)
    print(header, flush=True)
    for i, name in enumerate(args.photos.split(",")):
        a, b_prime, a_prime_true, b_true, t = make_case(name, args.size, rng, kind=i % 3)
        start = time.perf_counter()
        result = analogy(a.astype(np.float32), b_prime.astype(np.float32), config, model=model)
        seconds = time.perf_counter() - start
        epe = endpoint_error(result.nnf_ab, t, args.size)
        copy_a = (scores(a, a_prime_true)[0], scores(a, b_true)[0])
        copy_b = (scores(b_prime, a_prime_true)[0], scores(b_prime, b_true)[0])
        variants = {"off": [("off", result.a_prime, result.b)]}
        if args.refine != "off":
            from gpuanalogy.refinement import refine
            variants["on"] = [("on", refine(result.a_prime, to_u8(a)), refine(result.b, to_u8(b_prime)))]
        chosen = variants["off"] * (args.refine in ("off", "both")) + variants.get("on", [])
        for refine_flag, a_prime, b in chosen:
            ap, bq = scores(a_prime, a_prime_true), scores(b, b_true)
            rows.append((name, refine_flag, ap, bq, epe))
            print(f"{name:10s} {refine_flag:6s} {ap[0]:8.2f} / {ap[1]:.3f}  {bq[0]:7.2f} / {bq[1]:.3f}"
                  f"  {copy_a[0]:7.2f} / {copy_a[1]:6.2f}  {copy_b[0]:10.2f} / {copy_b[1]:8.2f}"
                  f"    {epe:6.2f} {seconds:6.1f}", flush=True)
    for flag in sorted({r[1] for r in rows}):
        sel = [r for r in rows if r[1] == flag]
        print(f"{'mean':10s} {flag:6s} {np.mean([r[2][0] for r in sel]):8.2f} / "
              f"{np.mean([r[2][1] for r in sel]):.3f}  {np.mean([r[3][0] for r in sel]):7.2f} / "
              f"{np.mean([r[3][1] for r in sel]):.3f}  median EPE {np.median([r[4] for r in sel]):.2f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
