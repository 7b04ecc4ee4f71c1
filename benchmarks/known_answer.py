"""Known-answer analogies: B' is A warped and re-toned, so the true A', B and NNF are known.

For each photo shipped by scikit-image, A is the photo at SIZE x SIZE; B' is A under a small
similarity warp T (rotation up to 5 degrees, scale up to 6 %, shift up to 6 %) and a strong
re-tone (channel swap, sepia, contrast). Then the true outputs are

    A' = retone(A)        (A's layout, B''s colours)
    B  = A warped by T    (B''s layout, A's colours)
    nnf_ab(p) = T(p)      (where T(p) lies inside B')

The table gives PSNR / SSIM of A' and B against these, next to the "copy A" and "copy B'"
baselines, and the NNF endpoint error in pixels. Scores count the pixels that have a true
counterpart (for A': T(p) inside B'; for B: T^-1(q) inside A): with a 6 % shift a band of up to
15 px along two sides has none, and B' holds reflected content there. Whole-image PSNRs are
printed too. The "oracle" column is the ceiling of any integer NNF: the true field rounded to
whole pixels, voted with the same 3x3 patches.

"Subpixel" rows align the final fields to sub-pixel precision (``gpuanalogy.subpixel``, on in
the photo2photo preset) before voting; ``--subpixel both`` runs each case twice, without and
with it, from the same seed (the searches are identical up to that stage). ``--optimizer both``
runs each case with each deconvolution optimiser (ours and SciPy's L-BFGS-B reference);
``--lbfgs-stop both`` with each stopping rule (official, adaptive) and ``--outputs all`` with
both analogies and with A' alone (``a_prime``: B is not made, so it has no score); the
"evals" column counts the deconvolutions' sub-network evaluations.

    python benchmarks/known_answer.py [--size 256] [--ratio 1] [--photos astronaut,chelsea]
                                      [--refine off|on|both] [--upsample cubic|nnf]
                                      [--subpixel off|on|both] [--deconv-start own|warped]
                                      [--optimizer lbfgs|scipy|both]
                                      [--lbfgs-stop adaptive|official|both]
                                      [--outputs both|a_prime|all]
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
from gpuanalogy.config import LBFGS_STOPS, OPTIMIZERS, OUTPUTS
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


def make_case(name: str, size: int, rng: np.random.Generator, kind: int,
              grain_seed: int | None = None):
    """A, B', the true A' and B, and the warp of one case; ``grain_seed`` adds ``highres.photo``'s
    one-pixel grain to A (detail that an enlarged photo lacks) before B' is made from it."""
    photo = getattr(data, name)()
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    h, w = photo.shape[:2]
    side = min(h, w)
    crop = photo[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    a = resize(crop, (size, size), order=3, anti_aliasing=True).astype(np.float64)
    if grain_seed is not None:
        from highres import photo as with_grain  # noqa: PLC0415

        a = with_grain(to_u8(a), a.shape[:2], grain_seed).astype(np.float64) / 255.0
    t = Similarity(angle_deg=rng.uniform(-5, 5), scale=1 + rng.uniform(-0.06, 0.06),
                   shift=tuple(rng.uniform(-0.06, 0.06, 2) * size), centre=(size / 2, size / 2))
    b_true = warp_image(a, t)          # B' layout, A colours
    b_prime = retone(b_true, kind)
    a_prime_true = retone(a, kind)     # A layout, B' colours
    return a, b_prime, a_prime_true, b_true, t


def to_u8(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.uint8 else np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def scores(x: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> tuple[float, float, float]:
    """(PSNR over the valid pixels, SSIM over the valid pixels, PSNR over the whole image)."""
    x, truth = to_u8(x).astype(np.float64), to_u8(truth).astype(np.float64)
    sq = (x - truth) ** 2
    _, ssim_map = structural_similarity(truth, x, channel_axis=2, data_range=255, full=True)
    return (10 * np.log10(255.0 ** 2 / sq[valid].mean()), float(ssim_map[valid].mean()),
            10 * np.log10(255.0 ** 2 / sq.mean()))


def true_fields(t: Similarity, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """nnf_ab = T(p), nnf_ba = T^-1(q) (float, size x size x 2) and where each lands inside."""
    grid = np.stack(np.mgrid[0:size, 0:size], axis=-1).reshape(-1, 2).astype(np.float64)
    ab, ba = t.forward(grid), t.inverse(grid)
    inside = [np.all((f >= 0) & (f <= size - 1), axis=1).reshape(size, size) for f in (ab, ba)]
    return ab.reshape(size, size, 2), ba.reshape(size, size, 2), inside[0], inside[1]


def oracle(source: np.ndarray, field: np.ndarray) -> np.ndarray:
    """``source`` voted (3x3) through the true field rounded to whole pixels."""
    from gpuanalogy.backend import cpu_backend
    from gpuanalogy.nnf import warp

    size = source.shape[0]
    nnf = np.clip(np.rint(field), 0, size - 1).astype(np.int32)
    return warp(source.astype(np.float32), nnf, patch_size=3, backend=cpu_backend())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ratio", type=float, default=1.0)
    parser.add_argument("--photos", default=",".join(PHOTOS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--lbfgs-iters", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refine", choices=("off", "on", "both"), default="off")
    parser.add_argument("--upsample", choices=("cubic", "nnf"), default="cubic",
                        help="how outputs come back to the input size when ratio != 1")
    parser.add_argument("--subpixel", choices=("off", "on", "both"), default="off")
    parser.add_argument("--deconv-start", choices=("own", "warped"), default="own")
    parser.add_argument("--optimizer", choices=(*OPTIMIZERS, "both"), default="lbfgs")
    parser.add_argument("--lbfgs-stop", choices=(*LBFGS_STOPS, "both"), default="adaptive")
    parser.add_argument("--outputs", choices=(*OUTPUTS, "all"), default="both")
    args = parser.parse_args()

    config = AnalogyConfig(ratio=args.ratio, device=args.device, lbfgs_iterations=args.lbfgs_iters,
                           upsample=args.upsample, deconv_start=args.deconv_start)
    subpixel = {"off": (False,), "on": (True,), "both": (False, True)}[args.subpixel]
    optimizers = OPTIMIZERS if args.optimizer == "both" else (args.optimizer,)
    stops = LBFGS_STOPS[::-1] if args.lbfgs_stop == "both" else (args.lbfgs_stop,)
    made = OUTPUTS if args.outputs == "all" else (args.outputs,)
    variants = [(optimizer, aligned, stop, outputs) for optimizer in optimizers
                for aligned in subpixel for stop in stops for outputs in made]
    model = VGG19(None, args.device)
    rng = np.random.default_rng(args.seed)
    rows = []
    print(f"known-answer analogies: {args.size} px, ratio {args.ratio} ({args.upsample}), "
          f"L-BFGS at most {args.lbfgs_iters} iterations, deconvolution start "
          f"{args.deconv_start}, "
          f"device {model.backend.name}; PSNR in dB over pixels with a true counterpart "
          "(whole image in brackets); EPE: median of nnf_ab / nnf_ba", flush=True)
    print(f"{'photo':10s} {'optim':5s} {'subpx':5s} {'stop':8s} {'outputs':7s} {'refine':6s} "
          f"{'A-prime PSNR/SSIM':>24s} {'B PSNR/SSIM':>24s} {'copy A':>12s} {'copy B-prime':>13s}"
          f" {'oracle':>12s} {'EPE ab/ba':>11s} {'evals':>5s} {'sec':>6s}"
          f"\n{'':46s} {'':>24s} {'':>24s} {'(A-prime/B)':>12s} {'(A-prime/B)':>13s}"
          f" {'(A-prime/B)':>12s}", flush=True)
    for i, name in enumerate(args.photos.split(",")):
        a, b_prime, a_prime_true, b_true, t = make_case(name, args.size, rng, kind=i % 3)
        nnf_ab_true, nnf_ba_true, valid_a, valid_b = true_fields(t, args.size)
        base = {"copy A": (scores(a, a_prime_true, valid_a)[0], scores(a, b_true, valid_b)[0]),
                "copy B'": (scores(b_prime, a_prime_true, valid_a)[0],
                            scores(b_prime, b_true, valid_b)[0]),
                "oracle": (scores(oracle(b_prime, nnf_ab_true), a_prime_true, valid_a)[0],
                           scores(oracle(a, nnf_ba_true), b_true, valid_b)[0])}
        for optimizer, aligned, stop, made_outputs in variants:
            start = time.perf_counter()
            result = analogy(a.astype(np.float32), b_prime.astype(np.float32),
                             config.replace(subpixel=aligned, optimizer=optimizer,
                                            lbfgs_stop=stop, outputs=made_outputs), model=model)
            seconds = time.perf_counter() - start
            evals = sum(s.evaluations for _, _, s in result.deconvolutions)
            epe = tuple(float(np.median(np.linalg.norm(field - truth, axis=-1)[valid]))
                        for field, truth, valid in ((result.nnf_ab, nnf_ab_true, valid_a),
                                                    (result.nnf_ba, nnf_ba_true, valid_b)))
            outputs = []
            if args.refine in ("off", "both"):
                outputs.append(("off", result.a_prime, result.b))
            if args.refine in ("on", "both"):
                from gpuanalogy.refinement import refine
                outputs.append(("on", refine(result.a_prime, to_u8(a)),
                                None if result.b is None else refine(result.b, to_u8(b_prime))))
            for flag, a_prime, b in outputs:
                ap = scores(a_prime, a_prime_true, valid_a)
                bq = scores(b, b_true, valid_b) if b is not None else (np.nan,) * 3
                rows.append((name, optimizer, "on" if aligned else "off", flag, ap, bq, epe,
                             stop, made_outputs))
                print(f"{name:10s} {optimizer:5s} {rows[-1][2]:5s} {stop:8s} {made_outputs:7s} "
                      f"{flag:6s} {ap[0]:6.2f} [{ap[2]:5.2f}] / "
                      f"{ap[1]:.3f}  {bq[0]:6.2f} [{bq[2]:5.2f}] / {bq[1]:.3f}"
                      + "".join(f"  {base[k][0]:5.2f}/{base[k][1]:5.2f}" for k in base)
                      + f"  {epe[0]:5.2f}/{epe[1]:5.2f} {evals:5d} {seconds:6.1f}", flush=True)
    for key in sorted({(*r[1:4], *r[7:9]) for r in rows}):
        sel = [r for r in rows if (*r[1:4], *r[7:9]) == key]
        print(f"{'mean':10s} {key[0]:5s} {key[1]:5s} {key[3]:8s} {key[4]:7s} {key[2]:6s} A' "
              f"{np.mean([r[4][0] for r in sel]):.2f} dB"
              f" / SSIM {np.mean([r[4][1] for r in sel]):.3f}, B "
              f"{np.mean([r[5][0] for r in sel]):.2f} dB / SSIM "
              f"{np.mean([r[5][1] for r in sel]):.3f}, median EPE "
              f"{np.median([r[6][0] for r in sel]):.2f} / {np.median([r[6][1] for r in sel]):.2f}"
              " px", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
