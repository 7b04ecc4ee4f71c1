"""Seconds and peak memory of the stages above the working size, on camera-size photo pairs.

    python benchmarks/highres.py [--sizes 12,24] [--ratio 0.25] [--lbfgs-iters 2]
                                 [--old-size 1000x1500] [--device cpu]
                                 [--preset photo2style --upsample patchmatch]

Each pair is made here: scikit-image's coffee (A) and Chelsea the cat (B'), enlarged bicubically
to the size asked (12 MP: 4240 x 2832, 24 MP: 6000 x 4000) with a fine grain added (seeded noise,
one pixel wide), so the inputs have real full-resolution detail that a blur would lose.

For each pair, one photo2photo analogy (refinement on, new way: ``refine_upsample="guided"``)
runs with a small ratio and few L-BFGS iterations (the working-size part is not what is measured
here); its stages are timed from the progress callback, with the peak resident memory of each
(sampled, see ``_table.py``), and the whole run's peak (the kernel's high-water mark). The old
way (``refine_upsample="wls"``) is first put to the memory check, which says what it would need;
it runs where it fits: on one ``--old-size`` known-answer pair, both refinements run on their own,
timed, with each output's PSNR against the truth. With ``--preset photo2style`` (no refinement)
the pairs run with ``--upsample`` (e.g. ``patchmatch``: the fields refined at the input size) and
the old-against-new refinement pair is skipped; with ``patchmatch`` the previous schedule (one
PatchMatch pass at the input size: 5 x 5 patches, the whole propagation, a random search within
two working pixels) is timed on the run's own fields and estimates, as the old way.

Only one benchmark runs at a time on the machine: this one waits while
``/tmp/gpuanalogy-bench.lock`` exists, then holds it until it ends.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage import data

sys.path.insert(0, str(Path(__file__).parent))
from _table import Row, Stage, bench_lock, print_table  # noqa: E402

from gpuanalogy import AnalogyConfig, analogy  # noqa: E402
from gpuanalogy.memory import PeakMemory  # noqa: E402
from gpuanalogy.backend import get_backend  # noqa: E402
from gpuanalogy.config import UPSAMPLES  # noqa: E402
from gpuanalogy.errors import DeviceMemoryError  # noqa: E402
from gpuanalogy.features import VGG19  # noqa: E402
from gpuanalogy.images import resize_image  # noqa: E402
from gpuanalogy.pipeline import outputs_from_fields  # noqa: E402
from gpuanalogy.refinement import refine  # noqa: E402
from gpuanalogy.sizes import check_memory, working_shape  # noqa: E402
from gpuanalogy.texture import grid_scale, search, search_radius  # noqa: E402
from gpuanalogy.upsampling import refine_guided  # noqa: E402

SIZES = {12: (2832, 4240), 24: (4000, 6000)}   # megapixels: (H, W)
WORKING_STAGES = ("features", "patchmatch", "deconvolution", "subpixel")


def photo(image: np.ndarray, shape: tuple[int, int], seed: int) -> np.ndarray:
    """``image`` enlarged to ``shape`` (H, W) with a one-pixel grain: uint8 RGB."""
    big = resize_image(image, shape).astype(np.float32)
    big += np.random.default_rng(seed).normal(0.0, 6.0, big.shape).astype(np.float32)
    return np.clip(np.rint(big), 0, 255).astype(np.uint8)


class StageRecorder:
    """Progress callback: one ``_table.Stage`` per stage of the run, closed when the next starts."""

    def __init__(self, size: str, device: str) -> None:
        self.size, self.device = size, device
        self.current: Stage | None = None
        self.rows: list[Row] = []

    def __call__(self, progress) -> None:
        name = "working size" if progress.stage in WORKING_STAGES else progress.stage
        if self.current is not None and self.current.name == name:
            return
        self.close()
        self.current = Stage(name, image_size=self.size, device=self.device)
        self.current.__enter__()

    def close(self) -> None:
        if self.current is not None:
            self.current.__exit__(None, None, None)
            self.rows.append(self.current.row)
            self.current = None


def run_pair(megapixels: int, config: AnalogyConfig, model, device: str) -> list[Row]:
    shape = SIZES[megapixels]
    a = photo(data.coffee(), shape, seed=1)
    b_prime = photo(data.chelsea(), shape, seed=2)
    size = f"{shape[1]}x{shape[0]}"
    work = "x".join(map(str, working_shape(shape, config)[::-1]))
    rows = []
    if config.refine:
        old = config.replace(refine_upsample="wls")
        try:
            need = check_memory((shape, shape), old, on_host=model.backend.on_host)
            note = f"fits: needs {need.total / 1e9:.1f} GB, not run here"
        except DeviceMemoryError as error:
            note = f"refused before work: {error}"
        rows.append(Row("old way: refine_upsample=wls", 0.0, size, device, note=note))
    recorder = StageRecorder(size, device)
    with PeakMemory() as peak:
        start = time.perf_counter()
        result = analogy(a, b_prime, config, model=model, on_progress=recorder)
        recorder.close()
        seconds = time.perf_counter() - start
    for row in recorder.rows:
        if row.stage == "working size":
            row.note = f"works at {work}"
        rows.append(row)
    above = result.timings["output"] + result.timings.get("refinement", 0.0)
    estimate = check_memory((shape, shape), config, available=1 << 62).total
    rows.append(Row("whole run (new way)", seconds, size, device, int(peak.megabytes * 2**20),
                    note=f"above the working size {above:.1f} s; estimated peak "
                         f"{estimate / 2**20:,.0f} MiB"))
    if config.upsample == "patchmatch":
        rows.append(one_pass(a, b_prime, result.fields_work, config, model.backend, size, device))
    return rows


def one_pass(a: np.ndarray, b_prime: np.ndarray, fields, config: AnalogyConfig, backend,
             size: str, device: str) -> Row:
    """The old way of ``--upsample patchmatch``: both fields refined by one PatchMatch pass at
    the input size (5 x 5 patches, propagation 8-4-2-1, a random search within two working
    pixels) from the same upsampled fields and "cubic" estimates as the new way."""
    cubic = outputs_from_fields(a, b_prime, *fields, config.replace(upsample="cubic"), backend)
    scale = grid_scale(a.shape[:2], fields[0].shape_a)
    options = dict(patch_size=5, radius=search_radius(scale), backend=backend)
    with Stage("old way: one pass at the input size", image_size=size, device=device) as old:
        search(cubic.nnf_ab, a, cubic.a_prime, b_prime, cubic.b, **options)
        search(cubic.nnf_ba, b_prime, cubic.b, a, cubic.a_prime, **options)
    old.row.note = "the two refinements alone (no estimates, no votes)"
    return old.row


def retone(image: np.ndarray) -> np.ndarray:
    """A per-channel gain and offset that vary slowly over the image: float32 in [0, 1]."""
    height, width = image.shape[:2]
    y, x = np.ogrid[0:1:height * 1j, 0:1:width * 1j]
    gain = np.stack(np.broadcast_arrays(0.8 + 0.3 * x, 1.1 - 0.2 * y, 0.9 + 0.1 * x * y), -1)
    offset = np.stack(np.broadcast_arrays(0.05 * y, 0.02 - 0.04 * x, 0.06 * x), -1)
    return np.clip(gain * (image / 255.0) + offset, 0, 1).astype(np.float32)


def old_and_new(shape: tuple[int, int], device: str) -> list[Row]:
    """Both refinements on their own on a known-answer pair that the full WLS solve fits.

    The truth is the structure image re-toned (:func:`retone`); the output to refine has the
    truth's colours without its detail (the truth blurred, as a voted output is). The working
    size is the official one (ratio 1).
    """
    backend = get_backend(device, quiet=True)
    structure = photo(data.coffee(), shape, seed=1)
    truth = retone(structure)
    result = gaussian_filter(truth, (2.0, 2.0, 0))
    work_shape = working_shape(shape, AnalogyConfig())
    size = f"{shape[1]}x{shape[0]}"
    with Stage("old way: WLS over every pixel", image_size=size, device=device) as old:
        full = refine(result, structure)
    with Stage(f"new way: WLS at {work_shape[1]}x{work_shape[0]} + guided upsampling",
               image_size=size, device=device) as new:
        guided = refine_guided(np.rint(result * 255).astype(np.uint8),
                               structure.astype(np.float32) / 255, work_shape, backend=backend)
    for row, image in ((old.row, full * 255.0), (new.row, guided)):
        mse = np.mean((image - truth * 255.0) ** 2)
        row.note = f"PSNR against the truth {10 * np.log10(255 ** 2 / mse):.2f} dB"
    return [old.row, new.row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="12,24", help="megapixels, of 12 and 24")
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--lbfgs-iters", type=int, default=2)
    parser.add_argument("--old-size", default="1000x1500", help="HxW of the old-against-new pair")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", choices=("photo2photo", "photo2style"), default="photo2photo")
    parser.add_argument("--upsample", choices=UPSAMPLES, default="cubic")
    args = parser.parse_args()
    config = AnalogyConfig.preset(args.preset, ratio=args.ratio, device=args.device,
                                  lbfgs_iterations=args.lbfgs_iters, upsample=args.upsample)
    model = VGG19(None, args.device)
    device = model.backend.name
    with bench_lock("benchmarks/highres.py"):
        rows = [row for mp in map(int, args.sizes.split(","))
                for row in run_pair(mp, config, model, device)]
        if config.refine:
            old_shape = tuple(int(n) for n in args.old_size.split("x"))
            rows += old_and_new(old_shape, device)  # type: ignore[arg-type]
    print_table(rows, title=f"Above the working size ({args.preset}, ratio {args.ratio}, "
                            f"upsample {args.upsample}, {args.lbfgs_iters} L-BFGS iterations)")


if __name__ == "__main__":
    main()
