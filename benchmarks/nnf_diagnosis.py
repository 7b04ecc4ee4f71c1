"""Where the known-answer NNF error comes from: the search, or the energy it minimises?

Runs one known-answer case (``known_answer.make_case``) and records, at each level, the four
normalised feature maps PatchMatch saw and the field it started from and returned. For every
level it prints, over the pixels whose true match lies inside B' (3 px from the border):

- median endpoint error (feature pixels) and the share of exact whole-pixel matches, for the
  field the level started from (the upsampled coarser one) and the field it found;
- the mean patch energy (``nnf.nnf_energy``: A/B term + A'/B' term) of the found field, of the
  true field rounded to whole pixels, and of the best global 1-pixel shift of the true field.

If the found field's energy is below the true field's, no search can fix the error: the energy
prefers the wrong field. The levels are recorded by an ``on_level`` hook of ``analogy``.

    python benchmarks/nnf_diagnosis.py [--size 256] [--photo astronaut]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import known_answer  # noqa: E402

from gpuanalogy import AnalogyConfig, analogy  # noqa: E402
from gpuanalogy.features import VGG19  # noqa: E402
from gpuanalogy.levels import LevelStep  # noqa: E402
from gpuanalogy.nnf import nnf_energy  # noqa: E402
from gpuanalogy.patchmatch import normalize_features  # noqa: E402


def record_searches(a: np.ndarray, b_prime: np.ndarray, config: AnalogyConfig) -> dict:
    """level -> the normalised maps (a, a_prime, b, b_prime), start and found nnf_ab."""
    seen: dict[int, dict] = {}

    def record(step: LevelStep) -> None:
        backend, maps = step.backend, step.pyramids
        seen[step.level] = {
            "maps": [backend.to_numpy(normalize_features(side[step.level], backend))
                     for side in (maps.a, maps.a_prime, maps.b, maps.b_prime)],
            "start": backend.to_numpy(step.start_ab.values).copy(),
            "found": backend.to_numpy(step.nnf_ab.values).copy()}

    analogy(a, b_prime, config, model=VGG19(None, config.device), on_level=record)
    return seen


def true_field(transform: known_answer.Similarity, size: int, shape: tuple[int, int]):
    """The warp in the feature pixels of a level: centres mapped through T, centre-aligned."""
    h, w = shape
    scale = np.array([size / h, size / w])
    grid = np.stack(np.mgrid[0:h, 0:w], axis=-1).reshape(-1, 2).astype(np.float64)
    mapped = transform.forward((grid + 0.5) * scale - 0.5)
    field = ((mapped + 0.5) / scale - 0.5).reshape(h, w, 2)
    inside = np.all((field >= 3) & (field <= np.array([h, w]) - 4), axis=-1)
    return field, inside


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--photo", default="astronaut")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    a, b_prime, _, _, transform = known_answer.make_case(args.photo, args.size, rng, kind=0)
    config = AnalogyConfig(device="cpu")
    seen = record_searches(a.astype(np.float32), b_prime.astype(np.float32), config)
    backend = VGG19(None, "cpu").backend

    print(f"NNF diagnosis: {args.photo}, {args.size} px, default settings; EPE in feature "
          "pixels, energy = A/B + A'/B' mean patch energy")
    print(f"{'level':>5s} {'size':>9s} {'start EPE/exact':>16s} {'found EPE/exact':>16s}"
          f" {'E found':>14s} {'E true':>14s} {'E best shift':>18s}")
    for level in sorted(seen, reverse=True):
        maps, start, found = seen[level]["maps"], seen[level]["start"], seen[level]["found"]
        field, inside = true_field(transform, args.size, maps[0].shape[:2])
        patch = config.patch_sizes[level - 1]
        zero_a, zero_b = np.zeros_like(maps[0]), np.zeros_like(maps[2])

        def energy(nnf: np.ndarray) -> tuple[float, float]:
            ab = nnf_energy(maps[0], zero_a, maps[2], zero_b, nnf, patch, backend)[inside]
            pp = nnf_energy(zero_a, maps[1], zero_b, maps[3], nnf, patch, backend)[inside]
            return float(ab.mean()), float(pp.mean())

        def rounded(offset: tuple[int, int]) -> np.ndarray:
            limit = np.array(maps[2].shape[:2]) - 1
            return np.clip(np.rint(field + offset), 0, limit).astype(np.int32)

        def accuracy(nnf: np.ndarray) -> str:
            err = (nnf - field)[inside]
            exact = np.all(np.rint(err) == 0, axis=-1).mean()
            return f"{np.median(np.linalg.norm(err, axis=-1)):5.2f} / {exact:4.0%}"

        shifts = {(dy, dx): sum(energy(rounded((dy, dx)))) for dy in (-1, 0, 1)
                  for dx in (-1, 0, 1) if (dy, dx) != (0, 0)}
        best = min(shifts, key=shifts.get)
        e_found, e_true = energy(found), energy(rounded((0, 0)))
        print(f"{level:5d} {'x'.join(map(str, maps[0].shape[:2])):>9s} {accuracy(start):>16s}"
              f" {accuracy(found):>16s} {sum(e_found):6.3f} ({e_found[0]:.3f})"
              f" {sum(e_true):6.3f} ({e_true[0]:.3f}) {shifts[best]:6.3f} at {best}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
