"""Every way back to the input size, from one search: known-answer pairs at 1024-2048 px.

    python benchmarks/output_modes.py [--sizes 1024,2048] [--ratio 0.5] [--lbfgs-iters 20]
                                      [--photos astronaut,chelsea,coffee,rocket]
                                      [--modes cubic,ruled,nnf,patchmatch,guided,wls]
                                      [--refine-output cubic] [--pair A.png,B.png] [--cache DIR]

Each known-answer pair is ``known_answer.make_case``'s (a scikit-image photo, B' = A under a
small similarity warp and a strong re-tone, so A' and B are known) made at SIZE x SIZE, with
``highres.photo``'s one-pixel grain on the photo so that the input has detail the working size
cannot hold. The analogy runs ONCE per pair (photo2style settings, ``--ratio``, few L-BFGS
iterations); its level-1 fields (from the ``on_level`` hook) then give every output through
``gpuanalogy.pipeline.outputs_from_fields``:

``cubic``       voted at the working size, resized (ours, and the official way at ratio 1);
``ruled``       the official way at a ratio below 1: the field brought to the size-ruled image,
                that image's pixels voted, the result resized to the input size;
``nnf``         the field brought to the input size, the input's pixels voted;
``patchmatch``  that field refined at the input size on image patches, then voting;
``guided``      the photo refinement: the output reduced to the size-ruled size, refined there and
                its colour change carried up by the guided upsampling;
``wls``         the photo refinement solved over every input pixel, where the memory check says
                it fits in half the free memory.

The two refinements refine the ``--refine-output`` mode's output: "cubic" by default, the
refinement presets' own (photo2photo, style2photo).

Columns: PSNR of A' and B against the truth over the pixels that have a true counterpart, the
high-frequency energy of A' relative to the exemplar B''s (mean squared difference from a
Gaussian blur of sigma 1.5; the true A''s ratio is printed per pair), and the seconds each
output took beyond the shared search. ``--pair`` adds a real pair (no truth: energies only).
``--cache DIR`` keeps each pair's level-1 fields there, so a second run skips the searches.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).parent))
from known_answer import make_case, scores, to_u8, true_fields  # noqa: E402

from gpuanalogy import AnalogyConfig, analogy  # noqa: E402
from gpuanalogy.backend import cpu_backend  # noqa: E402
from gpuanalogy.errors import DeviceMemoryError  # noqa: E402
from gpuanalogy.fields import Field  # noqa: E402
from gpuanalogy.features import VGG19  # noqa: E402
from gpuanalogy.images import read_image, resize_image  # noqa: E402
from gpuanalogy.memory import available_bytes  # noqa: E402
from gpuanalogy.pipeline import outputs_from_fields  # noqa: E402
from gpuanalogy.sizes import check_memory, working_shape  # noqa: E402

MODES = ("cubic", "ruled", "nnf", "patchmatch", "guided", "wls")


def high_frequency(image: np.ndarray) -> float:
    """Mean squared difference between an image (uint8 or [0, 1]) and its Gaussian blur."""
    x = image / 255.0 if image.dtype == np.uint8 else np.asarray(image, np.float64)
    return float(np.mean((x - gaussian_filter(x, (1.5, 1.5, 0))) ** 2))


def search(model, a: np.ndarray, b_prime: np.ndarray, config: AnalogyConfig,
           cache: Path | None = None) -> tuple[tuple[Field, Field], float]:
    """The level-1 fields of one analogy (from ``cache`` when it holds them), and the seconds."""
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            return (Field(data["ab"], tuple(data["shape_ab"])),
                    Field(data["ba"], tuple(data["shape_ba"]))), 0.0
    found = {}

    def keep(step) -> None:
        if step.level == 1:
            found["step"] = step

    start = time.perf_counter()
    analogy(a, b_prime, config, model=model, on_level=keep)
    seconds = time.perf_counter() - start
    fields = (found["step"].nnf_ab, found["step"].nnf_ba)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, ab=fields[0].values, ba=fields[1].values, shape_ab=fields[0].shape_b,
                 shape_ba=fields[1].shape_b)
    return fields, seconds


def derive(mode: str, fields: tuple[Field, Field], a: np.ndarray, b_prime: np.ndarray,
           config: AnalogyConfig, refine_output: str = "cubic"
           ) -> tuple[np.ndarray, np.ndarray] | None:
    """A' and B of one output mode from the level-1 fields (None: the full solve cannot fit);
    the refinements refine the ``refine_output`` mode's output."""
    backend = cpu_backend()
    if mode == "ruled":
        ruled = [working_shape(x.shape[:2], config.replace(ratio=1.0)) for x in (a, b_prime)]
        small = [np.clip(resize_image(x.astype(np.float32), s), 0, 1)
                 for x, s in zip((a, b_prime), ruled)]
        result = outputs_from_fields(*small, *fields,
                                     config.replace(upsample="nnf"), backend)
        return tuple(to_u8(np.clip(resize_image(out.astype(np.float32) / 255, x.shape[:2]), 0, 1))
                     for out, x in ((result.a_prime, a), (result.b, b_prime)))
    if mode in ("guided", "wls"):
        refined = config.replace(refine=True, refine_upsample=mode, upsample=refine_output)
        if mode == "wls":
            try:
                check_memory((a.shape[:2], b_prime.shape[:2]), refined,
                             available=(available_bytes() or 0) // 2)
            except DeviceMemoryError:
                return None
        result = outputs_from_fields(a, b_prime, *fields, refined, backend)
        return result.a_prime_refined, result.b_refined
    result = outputs_from_fields(a, b_prime, *fields, config.replace(upsample=mode), backend)
    return result.a_prime, result.b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,2048")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--lbfgs-iters", type=int, default=20)
    parser.add_argument("--photos", default="astronaut,chelsea,coffee,rocket")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--refine-output", default="cubic", choices=("cubic", "nnf", "patchmatch"),
                        help="the output the guided and wls refinements refine")
    parser.add_argument("--pair", default="", help="A,B' files: a real pair, energies only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", type=Path, help="a folder for the searches' fields")
    args = parser.parse_args()
    config = AnalogyConfig.preset("photo2style", ratio=args.ratio, device=args.device,
                                  lbfgs_iterations=args.lbfgs_iters)
    modes = args.modes.split(",")
    model = VGG19(None, args.device)
    print(f"output modes from one search: photo2style, ratio {args.ratio}, "
          f"{args.lbfgs_iters} L-BFGS iterations, device {model.backend.name}; PSNR in dB over "
          "pixels with a true counterpart; HF: A' high-frequency energy / the exemplar's",
          flush=True)
    print(f"{'pair':22s} {'mode':10s} {'A-prime':>8s} {'B':>7s} {'HF':>6s} {'sec':>7s}")
    table: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
    cases = [(name, size) for size in map(int, args.sizes.split(","))
             for name in args.photos.split(",") if name]
    rng = np.random.default_rng(0)
    for i, (name, size) in enumerate(cases):
        a, b_prime, a_prime_true, b_true, t = make_case(name, size, rng, kind=i % 3,
                                                        grain_seed=i)
        _, _, valid_a, valid_b = true_fields(t, size)
        a32, bp32 = a.astype(np.float32), b_prime.astype(np.float32)
        cache = (args.cache / f"{name}_{size}_r{args.ratio}_l{args.lbfgs_iters}.npz"
                 if args.cache else None)
        fields, seconds = search(model, a32, bp32, config, cache)
        label = f"{name} {size}"
        hf_exemplar = high_frequency(b_prime)
        print(f"{label:22s} {'search':10s} {'':>8s} {'':>7s} "
              f"{high_frequency(a_prime_true) / hf_exemplar:6.2f} {seconds:7.1f}  (truth's HF)",
              flush=True)
        for mode in modes:
            start = time.perf_counter()
            outputs = derive(mode, fields, a32, bp32, config, args.refine_output)
            seconds = time.perf_counter() - start
            if outputs is None:
                print(f"{label:22s} {mode:10s} does not fit in half the free memory", flush=True)
                continue
            ap = scores(outputs[0], a_prime_true, valid_a)[0]
            bq = scores(outputs[1], b_true, valid_b)[0]
            hf = high_frequency(outputs[0]) / hf_exemplar
            table[mode].append((ap, bq, hf))
            print(f"{label:22s} {mode:10s} {ap:8.2f} {bq:7.2f} {hf:6.2f} {seconds:7.1f}",
                  flush=True)
    for mode, rows in table.items():
        if rows:
            ap, bq, hf = np.mean(rows, axis=0)
            print(f"{'mean of ' + str(len(rows)):22s} {mode:10s} {ap:8.2f} {bq:7.2f} {hf:6.2f}")
    if args.pair:
        real_pair(model, args.pair.split(","), config, modes, args.refine_output)
    return 0


def real_pair(model, paths: list[str], config: AnalogyConfig, modes: list[str],
              refine_output: str) -> None:
    """A real pair: each mode's A' high-frequency energy relative to the exemplar's."""
    a, b_prime = (read_image(p).astype(np.float32) / 255.0 for p in paths)
    fields, seconds = search(model, a, b_prime, config)
    hf_exemplar = high_frequency(b_prime)
    print(f"\n{Path(paths[0]).name} / {Path(paths[1]).name} ({a.shape[1]}x{a.shape[0]}, "
          f"search {seconds:.1f} s): A' high-frequency energy / the exemplar's")
    for mode in modes:
        outputs = derive(mode, fields, a, b_prime, config, refine_output)
        if outputs is not None:
            print(f"  {mode:10s} {high_frequency(outputs[0]) / hf_exemplar:6.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
