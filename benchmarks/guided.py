"""Guided analogies measured: region masks and several exemplars on known answers, colour or
texture only, and what masks and exemplars cost.

    python benchmarks/guided.py quality [--size 200] [--lbfgs-iters 100] [--out out/guided]
    python benchmarks/guided.py transfer [--size 200] [--lbfgs-iters 100] [--out out/guided]
    python benchmarks/guided.py cost [--size 200] [--lbfgs-iters 100] [--exemplars 1,2,3]
    python benchmarks/guided.py memory [--size 200] [--lbfgs-iters 5] [--exemplars 1,2,3]

Known answers (photos shipped by scikit-image, re-toned and warped as in known_answer.py):

* **masks**: X is a photo's half; A = [X | X]; B' = [retone_1(T(X)) | retone_0(X)], T a small
  similarity warp. By the labels (left | right on both sides) A's left half belongs to B''s
  left half, although B''s right half holds an unwarped copy of it: the wrong match is the
  more similar. The true A' is [retone_1(X) | retone_0(X)] and the true field T on the left,
  the identity on the right. A match is correct when it lies in the right half of B' and
  within 3 px of the true position.
* **exemplars**: A = [P1's left half | P2's right half] of two photos; B'_1 = retone_1(T_1(P1)),
  B'_2 = retone_2(T_2(P2)). The true A' is [retone_1(P1) | retone_2(P2)] on those halves and
  the true exemplar index 0 on the left, 1 on the right. A' with both exemplars against each
  exemplar alone.
* **transfer**: an A' made "colour" and "texture" by ``gpuanalogy.colour.transfer``, exactly
  as ``--transfer`` does after the method: L* of the colour output against A's, a*b* of the
  texture output against A's. Two A': the masks case's (with masks; B' re-toned, so its
  texture is A's own) and an **engraving** case, where B' is the photo warped and drawn as
  blue-ink hatching on cream paper (:func:`engraving`): a texture that lives in the lightness,
  so "colour" (A's lightness) drops the strokes and "texture" keeps them in A's colours.

``quality`` writes the side-by-side pictures regions.png and exemplars.png, ``transfer``
transfer.png, into ``--out``. ``cost`` times, under the benchmark lock, the masks case without and with masks and
the exemplars case with 1, 2 and 3 exemplars (the third a re-toned third photo), with the peak
resident memory of each run and the machine's load. ``memory`` runs the exemplars case once per
number of exemplars, each in a fresh process (``peak``), and prints its peak resident memory
against the memory check's estimate (``sizes.memory_needed``); not a timing.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from skimage import data
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).parent))
from _table import bench_lock  # noqa: E402
from known_answer import Similarity, retone, to_u8, warp_image  # noqa: E402

from gpuanalogy import AnalogyConfig, analogy  # noqa: E402
from gpuanalogy.colour import srgb_to_lab, transfer  # noqa: E402
from gpuanalogy.features import load_network  # noqa: E402
from gpuanalogy.images import write_image  # noqa: E402
from gpuanalogy.memory import PeakMemory  # noqa: E402
from gpuanalogy.sizes import memory_needed  # noqa: E402
from gpuanalogy.visualize import make_sheet  # noqa: E402


def photo(name: str, shape: tuple[int, int]) -> np.ndarray:
    """A scikit-image photo, centre-cropped to the aspect of ``shape`` and resized, float."""
    image = getattr(data, name)()
    h, w = image.shape[:2]
    aspect = shape[1] / shape[0]
    ch, cw = (h, int(h * aspect)) if w >= h * aspect else (int(w / aspect), w)
    crop = image[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
    return resize(crop, shape, order=3, anti_aliasing=True).astype(np.float64)


def grid(shape: tuple[int, int]) -> np.ndarray:
    return np.stack(np.mgrid[0:shape[0], 0:shape[1]], axis=-1).astype(np.float64)


def masks_case(size: int):
    half = size // 2
    x = photo("chelsea", (size, half))
    t = Similarity(4.0, 1.05, (2.0, -2.0), (size / 2, half / 2))
    a = np.concatenate([x, x], axis=1)
    b_prime = np.concatenate([retone(warp_image(x, t), 1), retone(x, 0)], axis=1)
    truth = np.concatenate([retone(x, 1), retone(x, 0)], axis=1)
    field = grid((size, size))
    field[:, :half] = t.forward(grid((size, half)).reshape(-1, 2)).reshape(size, half, 2)
    valid = np.ones((size, size), bool)
    valid[:, :half] = np.all((field[:, :half] >= 0) & (field[:, :half] <= [size - 1, half - 1]),
                             axis=-1)
    labels = np.where(np.arange(size) < half, 1, 2)[None].repeat(size, 0).astype(np.int32)
    return a, b_prime, truth, field, valid, labels


def exemplars_case(size: int, third: bool = False):
    half = size // 2
    p1, p2 = photo("coffee", (size, size)), photo("astronaut", (size, size))
    t1 = Similarity(3.0, 1.04, (3.0, 2.0), (size / 2, size / 2))
    t2 = Similarity(-3.0, 0.97, (-2.0, 3.0), (size / 2, size / 2))
    a = np.concatenate([p1[:, :half], p2[:, half:]], axis=1)
    exemplars = [retone(warp_image(p1, t1), 1), retone(warp_image(p2, t2), 2)]
    if third:
        exemplars.append(retone(photo("rocket", (size, size)), 0))
    truth = np.concatenate([retone(p1, 1)[:, :half], retone(p2, 2)[:, half:]], axis=1)
    index = np.where(np.arange(size) < half, 0, 1)[None].repeat(size, 0)
    return a, exemplars, truth, index


def engraving(image: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3 in [0, 1]) drawn as blue-ink diagonal hatching on cream paper: the
    strokes (a 6-pixel period) thicken where the image is dark."""
    h, w = image.shape[:2]
    light = image @ np.array([0.299, 0.587, 0.114])
    y, x = np.mgrid[0:h, 0:w]
    distance = np.abs(((x + y) % 6) / 6.0 - 0.5) * 2      # 0 on a stroke's centre line
    ink = np.clip(((1.0 - light) ** 2 * 0.9 + 0.03 - distance) * 4, 0, 1)[..., None]
    paper, blue = np.array([0.96, 0.92, 0.80]), np.array([0.10, 0.16, 0.45])
    return paper * (1 - ink) + blue * ink


def psnr(x: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> float:
    error = (to_u8(x).astype(np.float64) - to_u8(truth)) ** 2
    error = error if where is None else error[where]
    return float(10 * np.log10(255.0 ** 2 / error.mean()))


def quality(args: argparse.Namespace, config: AnalogyConfig, model) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = args.size
    print(f"guided analogies, known answers: {size} px, L-BFGS {config.lbfgs_iterations}, "
          f"device {model.backend.name}", flush=True)

    # Region masks.
    a, b_prime, truth, field, valid, labels = masks_case(size)
    runs = {}
    for masked in (False, True):
        start = time.perf_counter()
        result = analogy(a.astype(np.float32), b_prime.astype(np.float32), config, model=model,
                         regions=(labels, labels) if masked else None)
        seconds = time.perf_counter() - start
        found = result.nnf_ab
        region = (found[..., 1] >= size // 2) == (labels == 2)
        close = np.linalg.norm(found - field, axis=-1) <= 3
        runs[masked] = result
        print(f"masks {'on ' if masked else 'off'}: correct matches "
              f"{100 * np.mean((region & close)[valid]):.1f} % (right half "
              f"{100 * region.mean():.1f} %), A' PSNR {psnr(result.a_prime, truth):.2f} dB "
              f"(valid {psnr(result.a_prime, truth, valid):.2f}), {seconds:.0f} s", flush=True)
    grey = lambda ids: np.repeat((ids * 100).astype(np.uint8)[..., None], 3, -1)  # noqa: E731
    write_image(out / "regions.png", make_sheet([
        [("A", to_u8(a)), ("B'", to_u8(b_prime)), ("labels of A and B'", grey(labels)),
         ("true A'", to_u8(truth))],
        [("A' without masks", runs[False].a_prime), ("A' with masks", runs[True].a_prime)]]))

    # Several exemplars.
    a, exemplars, truth, index = exemplars_case(size)
    inputs = [e.astype(np.float32) for e in exemplars]
    scores = {}
    for name, given in (("both", inputs), ("B'1 only", inputs[:1]), ("B'2 only", inputs[1:])):
        start = time.perf_counter()
        result = analogy(a.astype(np.float32), given, config, model=model)
        seconds = time.perf_counter() - start
        scores[name] = (psnr(result.a_prime, truth), result)
        right = ("" if len(given) == 1 else
                 f", exemplar index right on {100 * np.mean(result.exemplar_ab == index):.1f} %")
        print(f"exemplars {name}: A' PSNR {scores[name][0]:.2f} dB{right}, {seconds:.0f} s",
              flush=True)
    both = scores["both"][1]
    palette = np.array([[230, 25, 75], [60, 180, 75]], np.uint8)
    write_image(out / "exemplars.png", make_sheet([
        [("A", to_u8(a)), ("B'1", to_u8(exemplars[0])), ("B'2", to_u8(exemplars[1])),
         ("true A'", to_u8(truth))],
        [("A' from both", both.a_prime), ("exemplar of each match (red 1, green 2)",
                                          palette[both.exemplar_ab]),
         ("A' from B'1 only", scores["B'1 only"][1].a_prime),
         ("A' from B'2 only", scores["B'2 only"][1].a_prime)]]))
    print(f"pictures in {out}", flush=True)


def transfer_quality(args: argparse.Namespace, config: AnalogyConfig, model) -> None:
    """Colour or texture only (``--transfer``) on the masks case's A' and the engraving's."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = args.size
    a, b_prime, _, _, _, labels = masks_case(size)
    x = photo("chelsea", (size, size))
    etched = engraving(warp_image(x, Similarity(3.0, 1.03, (2.0, -1.0), (size / 2, size / 2))))
    rows = []
    for name, (a, b_prime, regions) in {
            "re-toned": (a, b_prime, (labels, labels)),
            "engraving": (x, etched, None)}.items():
        start = time.perf_counter()
        made = analogy(a.astype(np.float32), b_prime.astype(np.float32), config, model=model,
                       regions=regions).a_prime
        seconds = time.perf_counter() - start
        a_u8 = to_u8(a)
        colour, texture = transfer(a_u8, made, "colour"), transfer(a_u8, made, "texture")
        lab = {key: srgb_to_lab(image / np.float32(255)) for key, image in
               (("a", a_u8), ("all", made), ("colour", colour), ("texture", texture))}

        def l_psnr(x: str, y: str) -> float:
            return float(10 * np.log10(100.0 ** 2 / np.mean((lab[x][..., 0]
                                                              - lab[y][..., 0]) ** 2)))

        chroma = np.abs(lab["texture"][..., 1:] - lab["a"][..., 1:])
        chroma_all = np.abs(lab["all"][..., 1:] - lab["a"][..., 1:])
        print(f"transfer, {name}: colour L* PSNR against A {l_psnr('colour', 'a'):.1f} dB "
              f"(all: {l_psnr('all', 'a'):.1f} dB); texture a*b* against A mean "
              f"{chroma.mean():.2f} / 99th pct {np.percentile(chroma, 99):.2f} (all: mean "
              f"{chroma_all.mean():.2f}); texture L* against A' all "
              f"{l_psnr('texture', 'all'):.1f} dB; {seconds:.0f} s", flush=True)
        rows.append([(f"A ({name})", a_u8), ("B'", to_u8(b_prime)), ("A' (all)", made),
                     ("A' colour: A's lightness", colour),
                     ("A' texture: A's colours", texture)])
    write_image(out / "transfer.png", make_sheet(rows))
    print(f"pictures in {out}", flush=True)


def kernel_cost(side: int, repeat: int = 3) -> None:
    """PatchMatch (10 iterations, 5 x 5 patches, radius 4, like relu1_1) and the vote on
    random unit features of ``side`` x ``side`` x 64, without and with labels (two halves each
    side, swapped): the kernels' own cost of the masks, median of ``repeat`` runs."""
    from gpuanalogy.backend import cpu_backend  # noqa: PLC0415
    from gpuanalogy.nnf import random_nnf, warp  # noqa: PLC0415
    from gpuanalogy.patchmatch import normalize_features, patchmatch  # noqa: PLC0415
    from gpuanalogy.regions import search_labels  # noqa: PLC0415

    cpu = cpu_backend()
    rng = np.random.default_rng(0)
    maps = [normalize_features(rng.standard_normal((64, side, side)).astype(np.float32), cpu)
            for _ in range(4)]
    ids = np.where(np.arange(side) < side // 2, 1, 2)[None].repeat(side, 0).astype(np.int32)
    labelled = search_labels(ids, 3 - ids, 2, cpu)
    start = random_nnf((side, side), (side, side), 0, cpu)
    for name, labels in (("no labels", None), ("labels", labelled)):
        times = {"patchmatch": [], "vote": []}
        for _ in range(repeat + 1):    # the first compiles or loads the kernels
            begin = time.perf_counter()
            found, _ = patchmatch(*maps, start, patch_size=5, radius=4, iterations=10, seed=0,
                                  labels=labels, backend=cpu)
            middle = time.perf_counter()
            warp(maps[2], found, patch_size=5, backend=cpu, labels=labels)
            times["patchmatch"].append(middle - begin)
            times["vote"].append(time.perf_counter() - middle)
        print(f"kernels {side}x{side}x64, {name}: patchmatch "
              f"{np.median(times['patchmatch'][1:]):.3f} s, vote "
              f"{np.median(times['vote'][1:]):.4f} s", flush=True)


def cost(args: argparse.Namespace, config: AnalogyConfig, model) -> None:
    size = args.size
    a, b_prime, _, _, _, labels = masks_case(size)
    ea, exemplars, _, _ = exemplars_case(size, third=True)
    cases = [("masks off", a, b_prime, None), ("masks on", a, b_prime, (labels, labels))]
    cases += [(f"{k} exemplar{'s' if k > 1 else ''}", ea,
               exemplars[0] if k == 1 else exemplars[:k], None)
              for k in (int(n) for n in args.exemplars.split(","))]
    with bench_lock("guided.py cost"):
        load = os.getloadavg()
        print(f"guided analogies, cost: {size} px inputs, L-BFGS {config.lbfgs_iterations}, "
              f"device {model.backend.name}, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
              flush=True)
        kernel_cost(224)
        print(f"{'case':14s} {'seconds':>8s} {'patchmatch':>10s} {'deconv':>8s} "
              f"{'output':>7s} {'peak MiB':>9s}", flush=True)
        for name, x, y, regions in cases:
            peak = PeakMemory()
            with peak:
                start = time.perf_counter()
                result = analogy(x.astype(np.float32), y if not isinstance(y, list)
                                 else [e.astype(np.float32) for e in y], config, model=model,
                                 regions=regions)
                seconds = time.perf_counter() - start
            t = result.timings
            print(f"{name:14s} {seconds:8.1f} {t.get('patchmatch', 0):10.1f} "
                  f"{t.get('deconvolution', 0):8.1f} {t.get('output', 0):7.1f} "
                  f"{peak.megabytes:9.0f}", flush=True)
        load = os.getloadavg()
        print(f"load after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)


def peak(args: argparse.Namespace, config: AnalogyConfig, model) -> None:
    """One run of the exemplars case with ``--exemplars`` (one number) exemplars in this
    process: its peak resident memory (the process's, model included) and the estimate."""
    k = int(args.exemplars)
    a, exemplars, _, _ = exemplars_case(args.size, third=True)
    given = [e.astype(np.float32) for e in exemplars[:k]]
    need = memory_needed((a.shape[:2], *[g.shape[:2] for g in given]), config).total / 2**20
    analogy(a.astype(np.float32), given if k > 1 else given[0], config, model=model)
    used = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.size} px, {k} exemplar{'s' if k > 1 else ''}: peak {used:,.0f} MiB, estimate "
          f"{need:,.0f} MiB ({100 * (need / used - 1):+.0f} %)", flush=True)


def memory(args: argparse.Namespace) -> None:
    """:func:`peak` for each number of ``--exemplars``, each in a fresh process."""
    print(f"guided analogies, memory: {args.size} px, L-BFGS {args.lbfgs_iters}, load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    for k in args.exemplars.split(","):
        subprocess.run([sys.executable, __file__, "peak", "--size", str(args.size),
                        "--lbfgs-iters", str(args.lbfgs_iters), "--iters", str(args.iters),
                        "--exemplars", k, "--device", args.device], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("quality", "transfer", "cost", "memory", "peak"))
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--lbfgs-iters", type=int, default=100)
    parser.add_argument("--exemplars", default="1,2,3")
    parser.add_argument("--iters", type=int, default=10, help="PatchMatch iterations")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="out/guided")
    args = parser.parse_args()
    if args.part == "memory":
        memory(args)
        return 0
    config = AnalogyConfig(lbfgs_iterations=args.lbfgs_iters,
                           patchmatch_iterations=args.iters, device=args.device)
    model = load_network(None, args.device)
    parts = {"quality": quality, "transfer": transfer_quality, "cost": cost, "peak": peak}
    parts[args.part](args, config, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
