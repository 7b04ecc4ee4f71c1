"""benchmarks/_profile.py: ONNX Runtime profiles summed per operator type."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gpuanalogy import runtime
from gpuanalogy.backend import get_backend
from gpuanalogy.vgg_graphs import build_features_graph
from test_vgg_graphs import random_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _profile import profile_by_op  # noqa: E402


def test_create_session_profile_and_profile_by_op(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUANALOGY_CACHE_DIR", str(tmp_path / "cache"))
    small_weights = random_weights(divide=8, seed=21)
    path = runtime.cached_model_path("features", small_weights,
                                     lambda: build_features_graph(small_weights))
    session, _ = runtime.create_session(path, get_backend("cpu"),
                                        profile_prefix=str(tmp_path / "prof"))
    image = np.random.default_rng(6).random((1, 3, 20, 27), dtype=np.float32)
    for _ in range(3):
        session.run(None, {"image": image})
    profile = session.end_profiling()
    assert str(profile).startswith(str(tmp_path / "prof"))
    seconds, runs = profile_by_op(profile)
    assert runs == 3
    assert "Conv" in seconds and all(t >= 0 for t in seconds.values())
    assert list(seconds.values()) == sorted(seconds.values(), reverse=True)
