"""When should a deconvolution's L-BFGS stop? Loss trajectories, and candidate rules by outputs.

    python benchmarks/lbfgs_stop.py record  --out official.json [--ratio 0.5] [--size 256]
                                            [--style PRESET:A:B_PRIME ...]
    python benchmarks/lbfgs_stop.py simulate official.json [more.json ...]
    python benchmarks/lbfgs_stop.py run --rule RULE --out rule.json [--ratio 0.5] [...]
    python benchmarks/lbfgs_stop.py compare official.json rule.json [...]

``record`` runs the known-answer cases of ``benchmarks/known_answer.py`` (and any style pairs,
under their preset) with the official stop and keeps, for every deconvolution (levels 5..2,
both outputs), the loss after every L-BFGS iteration, with the outputs and their scores.
``simulate`` reads such files and prints, for candidate plateau rules (``gpuanalogy.lbfgs
.Plateau``: stop once ``f_{k-w} - f_k < tol * f_k``), where each would stop on the recorded
trajectories: the share of iterations kept, the mean per level, and how far above the
official end its loss is. The loss still falls after 100 iterations, so this only ranks
rules by cost; ``run`` makes the analogies again under a candidate rule and ``compare`` sets
their outputs against the official ones: A' and B PSNR and the NNF error against the known
answers, and for style pairs the texture of A' against the exemplar
(``style_texture.gram_distance``: Gram matrices of relu1_1-relu3_1). RULE is
``TOL[,WINDOW[,MIN_ITER]]`` for every level, or ``L5=TOL/L4=TOL/L3=TOL/L2=TOL[,WINDOW[,MIN_ITER]]``
per level of the loop (the sub-network's top level; ``0`` never stops early); a TOL written
``lTOL`` is a :class:`gpuanalogy.lbfgs.Plateau` (the loss, the default), ``sTOL`` a
:class:`gpuanalogy.lbfgs.Settled` (the variable's relative step).

The runs are quality measurements (run them under ``nice``), not timings.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from known_answer import PHOTOS, make_case, scores, true_fields  # noqa: E402
from style_texture import gram_distance, high_frequency  # noqa: E402

from gpuanalogy import AnalogyConfig  # noqa: E402
from gpuanalogy.checks import to_float_image  # noqa: E402
from gpuanalogy.deconvolution import Deconvolved  # noqa: E402
from gpuanalogy.features import VGG19  # noqa: E402
from gpuanalogy.images import read_image  # noqa: E402
from gpuanalogy.deconvolution import Rule  # noqa: E402
from gpuanalogy.lbfgs import Plateau, Settled  # noqa: E402
from gpuanalogy.levels import (  # noqa: E402
    LevelSolver, Pyramids, coarse_to_fine, initial_fields, pyramid)
from gpuanalogy.pipeline import AnalogyResult, render, run_stages, working_images  # noqa: E402
from gpuanalogy.timing import Clock, StepReporter  # noqa: E402

LOOP_LEVELS = (5, 4, 3, 2)


def parse_rule(text: str) -> dict[int, Rule | None]:
    """A RULE argument (see the module) as loop level -> rule (None: the official stop)."""
    if text == "official":
        return dict.fromkeys(LOOP_LEVELS)
    parts = text.split(",")
    window = int(parts[1]) if len(parts) > 1 else 5
    min_iter = int(parts[2]) if len(parts) > 2 else 10
    if "=" in parts[0]:
        tols = dict(p.split("=") for p in parts[0].split("/"))
        tols = {int(k[1:]): v for k, v in tols.items()}
    else:
        tols = dict.fromkeys(LOOP_LEVELS, parts[0])

    def one(value: str) -> Rule | None:
        kind = Settled if value.startswith("s") else Plateau
        tol = float(value.lstrip("sl"))
        return kind(tol, window, min_iter) if tol > 0 else None
    return {level: one(value) for level, value in tols.items()}


class _RuleSolver(LevelSolver):
    """The method's step with a candidate rule per level (``rules``: loop level -> rule)."""

    def __init__(self, *args: Any, rules: dict[int, Rule | None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rules = rules

    def deconvolve(self, level: int, output: str, x0: Any, target: Any,
                   max_iter: int | None = None) -> Deconvolved:
        from gpuanalogy.deconvolution import deconvolve  # noqa: PLC0415

        rule = self.rules.get(level)
        return deconvolve(self.model.subnet(level), x0, target,
                          max_iter=self.config.lbfgs_iterations if max_iter is None else max_iter,
                          history=self.config.lbfgs_history, optimizer=self.config.optimizer,
                          stop="official" if rule is None else rule, backend=self.backend)


def run_analogy(model: Any, a: np.ndarray, b_prime: np.ndarray, config: AnalogyConfig,
                rules: dict[int, Rule | None]) -> AnalogyResult:
    """:func:`gpuanalogy.analogy` with ``rules`` for the deconvolutions."""
    backend = model.backend
    clock = Clock(backend)
    report = StepReporter(None, run_stages(config))
    images = (working_images("a", to_float_image(a, name="a"), config),
              working_images("b_prime", to_float_image(b_prime, name="b_prime"), config))
    pyramids = Pyramids(*(pyramid(model, backend.asarray(i.work)) for i in images))
    pyramids.a_prime[5], pyramids.b[5] = pyramids.a[5], pyramids.b_prime[5]
    solver = _RuleSolver(model, pyramids, config, images=images, clock=clock, report=report,
                         rules=rules)
    report("features", 5)
    steps = coarse_to_fine(solver, *initial_fields(pyramids, config, backend))
    return render(*images, steps, config, backend, clock=clock, report=report)


def _cases(args: argparse.Namespace):
    """(name, kind, a, b_prime, config, truth) for the known-answer photos and style pairs."""
    rng = np.random.default_rng(0)
    base = dict(ratio=args.ratio, lbfgs_iterations=args.lbfgs_iters, device=args.device)
    for i, name in enumerate(PHOTOS):
        a, b_prime, a_true, b_true, t = make_case(name, args.size, rng, kind=i % 3)
        if name in args.photos.split(","):
            yield (name, "known", a.astype(np.float32), b_prime.astype(np.float32),
                   AnalogyConfig(**base), (a_true, b_true, true_fields(t, args.size)))
    for spec in args.style or ():
        preset, a_path, b_path = spec.split(":", 2)
        yield (Path(a_path).stem.removesuffix("_A"), "style", read_image(a_path),
               read_image(b_path), AnalogyConfig.preset(preset, **base), None)


def cmd_run(args: argparse.Namespace) -> None:
    rules = parse_rule(args.rule)
    model = VGG19(None, args.device)
    records = []
    folder = Path(args.out).with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    for name, kind, a, b_prime, config, truth in _cases(args):
        start = time.perf_counter()
        result = run_analogy(model, a, b_prime, config, rules)
        record: dict[str, Any] = {
            "case": name, "kind": kind, "seconds": time.perf_counter() - start,
            "deconvolutions": [{"level": level, "output": out, "iterations": s.iterations,
                                "evaluations": s.evaluations, "stop": s.stop,
                                "losses": list(s.losses)}
                               for level, out, s in result.deconvolutions]}
        if truth is not None:
            a_true, b_true, (ab_true, ba_true, valid_a, valid_b) = truth
            record.update(a_prime_psnr=scores(result.a_prime, a_true, valid_a)[0],
                          b_psnr=scores(result.b, b_true, valid_b)[0],
                          epe=[float(np.median(np.linalg.norm(f - t, axis=-1)[v]))
                               for f, t, v in ((result.nnf_ab, ab_true, valid_a),
                                               (result.nnf_ba, ba_true, valid_b))])
        else:
            record.update(gram=gram_distance(model, result.a_prime, b_prime),
                          hf=high_frequency(result.a_prime) / high_frequency(b_prime))
        np.savez_compressed(folder / f"{name}.npz", a_prime=result.a_prime)
        records.append(record)
        print(f"{name:12s} " + (f"A' {record['a_prime_psnr']:.2f} B {record['b_psnr']:.2f}"
                                if kind == "known" else
                                f"Gram {record['gram']:.4f} HF {record['hf']:.3f}")
              + f" evals {sum(d['evaluations'] for d in record['deconvolutions'])}"
              f" {record['seconds']:.0f} s", flush=True)
        Path(args.out).write_text(json.dumps({"rule": args.rule, "records": records}))


def stop_at(losses: list[float], rule: Plateau) -> int:
    """The iteration at which ``rule`` stops a run with these losses (the last if never)."""
    for k in range(1, len(losses)):
        if rule.reached(losses[:k + 1], ()):
            return k
    return len(losses) - 1


def cmd_simulate(args: argparse.Namespace) -> None:
    records = [r for f in args.files for r in json.loads(Path(f).read_text())["records"]]
    print(f"{'tol, window':14s} {'iterations kept':>15s}   mean iterations at loop level "
          f"5 / 4 / 3 / 2   loss at the stop over the official end - 1 (median / max) per level")
    for tol in (0.1, 0.05, 0.03, 0.02, 0.01, 0.005):
        for window in (5, 10):
            rule = Plateau(tol, window, 10)
            kept = {lv: [] for lv in LOOP_LEVELS}
            gaps = {lv: [] for lv in LOOP_LEVELS}
            total = 0
            for record in records:
                for d in record["deconvolutions"]:
                    k, n = stop_at(d["losses"], rule), len(d["losses"]) - 1
                    kept[d["level"] + 1].append(k)
                    gaps[d["level"] + 1].append(d["losses"][k] / d["losses"][n] - 1)
                    total += n
            share = sum(map(sum, kept.values())) / total
            print(f"{tol:<6g} {window:<7d} {share:15.1%}   "
                  + " / ".join(f"{np.mean(kept[lv]):5.1f}" for lv in LOOP_LEVELS) + "   "
                  + "  ".join(f"{np.median(gaps[lv]):.3f}/{np.max(gaps[lv]):.3f}"
                              for lv in LOOP_LEVELS))


def cmd_compare(args: argparse.Namespace) -> None:
    def load(path: str) -> tuple[dict[str, Any], Path]:
        data = json.loads(Path(path).read_text())["records"]
        return {r["case"]: r for r in data}, Path(path).with_suffix("")

    reference, ref_folder = load(args.files[0])
    for path in args.files[1:]:
        runs, folder = load(path)
        print(f"== {Path(path).stem} against {Path(args.files[0]).stem}")
        delta_ap, delta_b, grams, used, base = [], [], [], 0, 0
        for case, run in runs.items():
            ref = reference.get(case)
            if ref is None:
                continue
            evals = sum(d["evaluations"] for d in run["deconvolutions"])
            evals_ref = sum(d["evaluations"] for d in ref["deconvolutions"])
            used, base = used + evals, base + evals_ref
            with np.load(folder / f"{case}.npz") as x, np.load(ref_folder / f"{case}.npz") as y:
                mse = np.mean((x["a_prime"].astype(np.float64) - y["a_prime"]) ** 2)
            same = 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))
            iterations = "/".join(str(d["iterations"]) for d in run["deconvolutions"])
            if run["kind"] == "known":
                delta_ap.append(run["a_prime_psnr"] - ref["a_prime_psnr"])
                delta_b.append(run["b_psnr"] - ref["b_psnr"])
                text = (f"A' {run['a_prime_psnr']:.2f} ({delta_ap[-1]:+.2f}) B {run['b_psnr']:.2f} "
                        f"({delta_b[-1]:+.2f}) EPE {run['epe'][0]:.2f}/{run['epe'][1]:.2f} "
                        f"(official {ref['epe'][0]:.2f}/{ref['epe'][1]:.2f})")
            else:
                grams.append(run["gram"] / ref["gram"] - 1)
                text = (f"Gram {run['gram']:.4f} ({grams[-1]:+.1%}) HF {run['hf']:.3f} "
                        f"(official {ref['hf']:.3f})")
            print(f"{case:12s} {text}; A' against official's {same:.1f} dB; evaluations "
                  f"{evals}/{evals_ref} ({1 - evals / evals_ref:.0%} saved); iterations "
                  f"{iterations}")
        if delta_ap:
            print(f"mean change: A' {np.mean(delta_ap):+.3f} dB, B {np.mean(delta_b):+.3f} dB")
        if grams:
            print(f"largest Gram change: {max(grams, key=abs):+.1%}")
        print(f"evaluations saved: {1 - used / max(base, 1):.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("record", "run"):
        command = sub.add_parser(name)
        command.add_argument("--out", required=True, help="a .json file (outputs beside it)")
        command.add_argument("--ratio", type=float, default=0.5)
        command.add_argument("--size", type=int, default=256)
        command.add_argument("--lbfgs-iters", type=int, default=100)
        command.add_argument("--photos", default=",".join(PHOTOS))
        command.add_argument("--style", action="append", help="PRESET:A:B_PRIME")
        command.add_argument("--device", default="auto")
        if name == "run":
            command.add_argument("--rule", required=True)
    for name in ("simulate", "compare"):
        sub.add_parser(name).add_argument("files", nargs="+")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.command == "record":
        args.rule = "official"
    {"record": cmd_run, "run": cmd_run, "simulate": cmd_simulate,
     "compare": cmd_compare}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
