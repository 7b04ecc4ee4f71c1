"""benchmarks/gpu_check.sh: the device check's dry run on the CPU, so it cannot rot before a
GPU is lent, and the helpers it relies on there."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402

STAGES = ("features", "patchmatch", "warping", "deconvolution", "blending", "nnf upsampling",
          "output", "- sub-network evaluations", "- vector transfers", "- optimiser itself",
          "total")


@pytest.mark.slow
def test_cpu_dry_run_writes_the_table_and_the_log(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, GPU_CHECK_PYTHON=sys.executable)
    env.pop("OUT", None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]

    log = (out / "gpu_check.log").read_text()
    for number in range(1, 7):
        assert f"== step {number}/6" in log
    assert "tests/test_cuda_kernels.py: " in log and " passed" in log
    assert "network provider: network on ONNX Runtime's CPUExecutionProvider" in log
    assert "status: passed" in log

    table = (out / "gpu_check_table.md").read_text()
    assert "- network provider: network on ONNX Runtime's CPUExecutionProvider" in table
    assert "| tests/test_cuda_kernels.py |" in table
    assert "verdict: PASSED" in table
    for size in ("48x48", "64x48"):
        rows = [line for line in table.splitlines() if f"| {size} (work {size})" in line]
        for stage in STAGES:
            assert any(line.startswith(f"| {stage}") for line in rows), (size, stage)
        assert all(line.endswith("| cpu | CPUExecutionProvider |") for line in rows)

    report = json.loads((out / "gpu_check.json").read_text())
    assert report["status"] == "passed" and report["mode"] == "cpu dry run"
    assert [run["size"] for run in report["stages"]] == ["48x48", "64x48"]
    assert report["compare"]["ok"]
    assert report["compare"]["backends"]["a_prime_psnr"] == "inf"   # two CPU backends agree


def test_psnr_and_equal_share():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert math.isinf(gpu_check.psnr(a, b))
    b[0, 0, 0] = 255
    assert gpu_check.psnr(a, b) == pytest.approx(10 * math.log10(48))
    f = np.zeros((2, 3, 2), np.float32)
    g = f.copy()
    g[0, 0, 1] = 1
    assert gpu_check.equal_share(f, g) == pytest.approx(5 / 6)


def test_required_levels_follow_the_seed_baseline_with_caps():
    assert gpu_check.required_psnr(24.0) == 23.0
    assert gpu_check.required_psnr(math.inf) == 30.0
    assert gpu_check.required_share(0.4) == pytest.approx(0.38)
    assert gpu_check.required_share(1.0) == 0.9


def test_sizes_and_the_deadline():
    assert gpu_check.parse_size("224") == (224, 224)
    assert gpu_check.parse_size("700x500") == (700, 500)
    with pytest.raises(ValueError):
        gpu_check.parse_size("1x2x3")
    assert gpu_check.fits(10, 480, None, 224 * 224) == (True, 0.0)
    assert gpu_check.fits(500, 480, None, 224 * 224)[0] is False
    ok, estimate = gpu_check.fits(100, 480, (50.0, 224 * 224), 448 * 448)
    assert ok and estimate == pytest.approx(220.0)
    ok, estimate = gpu_check.fits(300, 480, (200.0, 448 * 448), 700 * 500)
    assert not ok and estimate == pytest.approx(1.1 * 200 * 350000 / 200704)


def test_a_split_wheel_is_joined_only_when_complete_and_intact(tmp_path, capsys):
    wheel = tmp_path / "onnxruntime_gpu-9.9-cp312-cp312-manylinux_2_28_x86_64.whl"
    data = np.random.default_rng(0).integers(0, 256, int(2.5 * 2**20), np.uint8).tobytes()
    wheel.write_bytes(data)
    parts = tmp_path / "ort"
    gpu_check.split_wheel(wheel, parts, part_mib=1)
    assert len(list(parts.glob("*.part-*"))) == 3
    gpu_check.join_parts(parts, tmp_path / "joined")
    assert (tmp_path / "joined" / wheel.name).read_bytes() == data

    (parts / f"{wheel.name}.part-01").write_bytes(b"torn")
    gpu_check.join_parts(parts, tmp_path / "torn")
    assert not (tmp_path / "torn" / wheel.name).exists()
    (parts / f"{wheel.name}.part-01").unlink()
    gpu_check.join_parts(parts, tmp_path / "missing")
    assert not (tmp_path / "missing" / wheel.name).exists()
    text = capsys.readouterr().out
    assert "do not match the checksum" in text and "parts missing (" in text


def test_carried_weights_are_checked_against_their_digest(tmp_path):
    from gpuanalogy.weights import VGG19_CONVS

    rng = np.random.default_rng(1)
    state = {f"{name}_{part}": rng.standard_normal(3).astype(np.float32)
             for name in VGG19_CONVS for part in ("W", "b")}
    good = tmp_path / "good.npz"
    np.savez(good, used_digest=np.str_(gpu_check.used_digest(state)), **state)
    assert gpu_check.check_exported_weights(good) == gpu_check.used_digest(state)
    state["conv3_1_W"][0] += 1
    bad = tmp_path / "bad.npz"
    np.savez(bad, used_digest=np.str_(gpu_check.used_digest(
        {**state, "conv3_1_W": state["conv3_1_W"] - 1})), **state)
    with pytest.raises(SystemExit, match="do not match"):
        gpu_check.check_exported_weights(bad)


def test_the_script_prints_its_instructions():
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--help"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert "--export-weights .whl/vgg19_caffe_relu5_1.npz" in done.stdout
    assert 'carry=[".whl"], timeout_s=570' in done.stdout


def test_the_provider_is_stated_for_each_case():
    assert "CUDA provider" in gpu_check.provider_statement("cuda", "CUDAExecutionProvider")
    fallback = gpu_check.provider_statement("cuda", "CPUExecutionProvider")
    assert "CPUExecutionProvider" in fallback and "no usable CUDA provider" in fallback
    assert "on the GPU" in fallback
    assert "dry run" in gpu_check.provider_statement("cpu", "CPUExecutionProvider")


def test_the_sampler_keeps_peaks_per_stage(monkeypatch):
    readings = iter(range(10**6))
    monkeypatch.setattr(gpu_check, "_gpu_memory_reader", lambda: lambda: next(readings))

    class Step:
        def __init__(self, stage):
            self.stage = stage

    import time

    with gpu_check.Sampler(gpu=True, interval=0.001) as sampler:
        time.sleep(0.02)
        sampler.on_progress(Step("patchmatch"))
        time.sleep(0.02)
    assert set(sampler.host) == {"setup", "patchmatch"} == set(sampler.device)
    assert sampler.device["patchmatch"] > sampler.device["setup"]
    assert sampler.device_peak == sampler.device["patchmatch"]
    assert all(value > 0 for value in sampler.host.values())
