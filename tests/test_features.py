"""The public features API, the session factory and the on-disk model cache (CPU only)."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from gpuanalogy import runtime
from gpuanalogy.backend import cpu_backend, get_backend
from gpuanalogy.errors import InputError, ModelError
from gpuanalogy.features import VGG19, SubNetwork, vgg19_features
from gpuanalogy.vgg_graphs import LEVEL_NAMES, build_features_graph
from gpuanalogy.weights import load_default_weights

from reference_graphs import out_grad_graph
from test_vgg_graphs import random_weights, ref_features, relative_error, session


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test builds its models into its own empty cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GPUANALOGY_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def small_weights():
    return random_weights(divide=8, seed=21)


@pytest.fixture
def model(small_weights):
    return VGG19(small_weights, "cpu")


def test_features_shapes_dtypes_and_values(model, small_weights):
    rgb = np.random.default_rng(0).random((37, 53, 3), dtype=np.float32)
    feats = model.features(rgb)
    assert list(feats) == list(LEVEL_NAMES[1:])
    reference = ref_features(small_weights, rgb)
    sizes = [(37, 53), (19, 27), (10, 14), (5, 7), (3, 4)]
    for (name, got), size in zip(feats.items(), sizes):
        assert got.dtype == np.float32 and got.ndim == 3 and got.shape[1:] == size
        assert relative_error(got, reference[name]) < 1e-4
    assert model.provider == "CPUExecutionProvider"
    level0 = model.preprocess(rgb)
    assert level0.shape == (3, 37, 53) and level0.dtype == np.float32


def test_subnetwork_api(model):
    rgb = np.random.default_rng(1).random((23, 30, 3), dtype=np.float32)
    levels = [model.preprocess(rgb), *model.features(rgb).values()]
    for level in (2, 3, 4, 5):
        net = model.subnet(level)
        assert isinstance(net, SubNetwork) and model.subnet(level) is net
        names = (net.input_layer, net.mid_layer, net.output_layer)
        assert names == LEVEL_NAMES[level - 2:level + 1]
        x = levels[level - 2]
        mid, out = net.forward(x)
        assert relative_error(mid, levels[level - 1]) < 1e-5
        assert relative_error(out, levels[level]) < 1e-5
        assert net.output_shape(x.shape) == levels[level].shape
        loss, grad = net.loss_and_grad(x, np.zeros_like(out))
        assert isinstance(loss, float)
        assert loss == pytest.approx(0.5 * float(np.sum(out.astype(np.float64) ** 2)), rel=1e-6)
        assert grad.shape == x.shape and grad.dtype == np.float32
        # the gradient of <CNN(x), out> is that of 0.5 ||CNN(x) - 0||^2
        (vjp,) = session(out_grad_graph(model.weights, level)).run(
            ["grad"], {"x": x[None], "out_grad": out[None]})
        np.testing.assert_allclose(vjp[0], grad, rtol=1e-5, atol=1e-6 * np.abs(grad).max())
        with pytest.raises(ValueError, match="target") as info:   # a bug, not bad input
            net.loss_and_grad(x, out[:, :-1])
        assert not isinstance(info.value, InputError)
    for bad in (1, 6, 2.5):
        with pytest.raises(ValueError):
            model.subnet(bad)


def test_the_backend_chooses_winograds_form_for_the_sub_networks(small_weights, cache_dir):
    """A backend's ``winograd_channels`` reaches the sub-network graphs (cached apart from the
    direct ones), which give the direct ones' values and gradients to float32 rounding."""
    direct = VGG19(small_weights, dataclasses.replace(cpu_backend(), winograd_channels=0))
    fast = VGG19(small_weights, dataclasses.replace(cpu_backend(), winograd_channels=16))
    rgb = np.random.default_rng(2).random((29, 34, 3), dtype=np.float32)
    levels = [direct.preprocess(rgb), *direct.features(rgb).values()]
    for level in (4, 5):
        x, target = levels[level - 2], 0.9 * levels[level]
        loss, grad = direct.subnet(level).loss_and_grad(x, target)
        fast_loss, fast_grad = fast.subnet(level).loss_and_grad(x, target)
        assert fast_loss == pytest.approx(loss, rel=1e-5)
        assert np.linalg.norm(fast_grad - grad) < 1e-4 * np.linalg.norm(grad)
    names = sorted(path.name for path in cache_dir.glob("*subnet5*.onnx"))
    assert len(names) == 2 and "winograd0" in names[0] and "winograd16" in names[1]
    assert cpu_backend().winograd_channels > 0   # the CPU default uses the form


def test_public_vgg19_features_accepts_uint8_and_float(small_weights):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (33, 41, 3), dtype=np.uint8)
    from_uint8 = vgg19_features(image, weights=small_weights, device="cpu")
    from_float = vgg19_features(image.astype(np.float64) / 255, weights=small_weights,
                                device="cpu")
    assert set(from_uint8) == set(LEVEL_NAMES[1:])
    for name, value in from_uint8.items():
        assert isinstance(value, np.ndarray) and value.dtype == np.float32
        np.testing.assert_allclose(value, from_float[name], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bad, message", [
    (np.full((40, 40, 3), np.nan, np.float32), "NaN"),
    (np.zeros((40, 40, 3), np.int32), "dtype"),
    (np.zeros((40, 40, 5), np.uint8), "shape"),
    (np.zeros((3, 40, 40), np.uint8), "channels-first"),
    (np.full((40, 40, 3), 2.0, np.float32), r"\[0, 1\]"),
])
def test_public_vgg19_features_rejects_bad_images(small_weights, bad, message):
    with pytest.raises(InputError, match=message) as info:
        vgg19_features(bad, weights=small_weights, device="cpu")
    assert "\n" not in str(info.value)


# --- cache and sessions -----------------------------------------------------------------------

def test_cache_builds_once_reuses_and_rebuilds_corrupt_files(small_weights, cache_dir, caplog):
    builds = []

    def build():
        builds.append(1)
        return build_features_graph(small_weights)

    path = runtime.cached_model_path("features", small_weights, build)
    assert path.parent == cache_dir and path.is_file() and len(builds) == 1
    assert small_weights.digest[:24] in path.name
    assert runtime.cached_model_path("features", small_weights, build) == path
    assert len(builds) == 1  # reused, not rebuilt
    assert not list(cache_dir.glob("*.tmp"))  # temporary names were all moved into place

    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])  # a torn write
    with caplog.at_level(logging.WARNING, logger="gpuanalogy"):
        assert runtime.cached_model_path("features", small_weights, build) == path
    assert len(builds) == 2 and path.read_bytes() == original
    assert "corrupt" in caplog.text

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF  # same size, one bad byte
    path.write_bytes(bytes(flipped))
    runtime.cached_model_path("features", small_weights, build)
    assert len(builds) == 3 and path.read_bytes() == original

    path.with_name(path.name + ".sha256").unlink()  # sidecar lost: cannot vouch for the file
    runtime.cached_model_path("features", small_weights, build)
    assert len(builds) == 4
    session, provider = runtime.create_session(path, get_backend("cpu"))
    assert provider == "CPUExecutionProvider" and session.get_inputs()[0].name == "image"


def test_a_build_removes_cached_graphs_of_older_versions_only(small_weights, cache_dir):
    from gpuanalogy.vgg_graphs import GRAPH_VERSION

    digest = "0123456789abcdef01234567"
    stale = [cache_dir / f"vgg19-features-g{GRAPH_VERSION - 1}-{digest}.onnx",
             cache_dir / f"vgg19-subnet2-target-g{GRAPH_VERSION - 1}-{digest}.onnx.sha256"]
    kept = [cache_dir / f"vgg19-features-g{GRAPH_VERSION}-{digest}.onnx",   # other weights
            cache_dir / "notes.txt"]                                         # not ours
    cache_dir.mkdir(parents=True, exist_ok=True)
    for path in stale + kept:
        path.write_text("x")
    runtime.cached_model_path("features", small_weights,
                              lambda: build_features_graph(small_weights))
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)


def test_model_rebuilds_a_corrupt_cached_graph(small_weights, cache_dir):
    rgb = np.random.default_rng(3).random((20, 27, 3), dtype=np.float32)
    expected = VGG19(small_weights, "cpu").features(rgb)
    (path,) = cache_dir.glob("vgg19-features-*.onnx")
    path.write_bytes(b"not an onnx model")
    again = VGG19(small_weights, "cpu").features(rgb)
    for name, value in again.items():
        np.testing.assert_array_equal(value, expected[name])


def test_cache_key_separates_weights_and_kinds(cache_dir):
    a, b = random_weights(divide=16, seed=1), random_weights(divide=16, seed=2)
    path_a = runtime.cached_model_path("features", a, lambda: build_features_graph(a))
    path_b = runtime.cached_model_path("features", b, lambda: build_features_graph(b))
    assert path_a != path_b
    with pytest.raises(ValueError, match="kind"):
        runtime.cached_model_path("../escape", a, lambda: build_features_graph(a))


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("GPUANALOGY_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.cache_dir() == tmp_path / "xdg" / "gpuanalogy"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert runtime.cache_dir().parts[-2:] == (".cache", "gpuanalogy")


def test_create_session_errors(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 definitely not protobuf")
    with pytest.raises(ModelError, match="garbage.onnx") as info:
        runtime.create_session(garbage, get_backend("cpu"))
    assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="not found"):
        runtime.create_session(tmp_path / "missing.onnx", get_backend("cpu"))


def test_create_session_falls_back_to_cpu_when_cuda_is_missing(small_weights, caplog):
    from dataclasses import replace  # noqa: PLC0415

    path = runtime.cached_model_path("features", small_weights,
                                     lambda: build_features_graph(small_weights))
    wants_cuda = replace(get_backend("cpu"),
                         ort_providers=(("CUDAExecutionProvider", {"device_id": 0}),
                                        "CPUExecutionProvider"))
    import onnxruntime as ort  # noqa: PLC0415

    _, provider = runtime.create_session(path, wants_cuda)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
    else:
        assert provider == "CPUExecutionProvider"


# --- the real weights -------------------------------------------------------------------------

def test_default_weights_match_numpy_reference():
    weights = load_default_weights()   # the bundled weights are a dependency: never skipped
    rgb = np.random.default_rng(4).random((20, 27, 3), dtype=np.float32)
    feats = VGG19(weights, "cpu").features(rgb)
    reference = ref_features(weights, rgb)
    for name, value in feats.items():
        assert value.shape == reference[name].shape
        assert relative_error(value, reference[name]) < 1e-4, name


def test_release_closes_sessions_and_they_reopen(model):
    rgb = np.random.default_rng(5).random((20, 27, 3), dtype=np.float32)
    x = model.features(rgb)["relu1_1"]
    net = model.subnet(3)
    mid, out = net.forward(x)
    net.release()
    assert not any(kind.startswith("subnet3") for kind in model._runners)
    again = net.forward(x)
    np.testing.assert_array_equal(again[1], out)
    model.release()
    assert not model._runners
    np.testing.assert_array_equal(model.subnet(3).forward(x)[0], mid)


def test_bound_runner_gives_the_plain_runner_results(tmp_path, monkeypatch):
    """I/O binding (the GPU path) exercised on ORT's CPU device: same outputs as plain run."""
    from gpuanalogy.backend import cpu_backend
    from gpuanalogy.runtime import BoundRunner

    monkeypatch.setenv("GPUANALOGY_CACHE_DIR", str(tmp_path))
    model = VGG19(None, "cpu")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 2, (64, 20, 23)).astype(np.float32)
    target = rng.uniform(0, 2, model.subnet(3).output_shape(x.shape)).astype(np.float32)
    plain = model._runner("subnet3-target")
    bound = BoundRunner(plain.session, plain.provider, cpu_backend(), device_type="cpu")
    names = ("mid", "out", "loss", "grad")
    feeds = {"x": x[None], "target": target[None]}
    for got, want in zip(bound.run(feeds, names), plain.run(feeds, names)):
        np.testing.assert_array_equal(got, want)
