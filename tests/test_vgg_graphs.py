"""The VGG-19 ONNX graphs against an independent NumPy reference and finite differences.

Random weights keep the real layer structure; most tests shrink the channel counts so that
every session runs in milliseconds.
"""
from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import pytest

from gpuanalogy import onnx_graph, vgg_graphs
from reference_graphs import forward_graph, out_grad_graph, reference_subnet_graph

CONV_CHANNELS = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512), ("conv5_4", 512, 512),
)


def random_weights(*, divide: int = 1, seed: int = 0, ceil_pool: bool = True,
                   torchvision: bool = False):
    """VGG19Weights with He-initialised random kernels; channel counts divided by ``divide``."""
    from gpuanalogy.preprocess import (  # noqa: PLC0415 - the module under test does not need it
        CAFFE_PREPROCESS, TORCHVISION_PREPROCESS)
    from gpuanalogy.weights import VGG19Weights  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    convs = {}
    for name, c_in, c_out in CONV_CHANNELS:
        c_in = c_in if c_in == 3 else c_in // divide
        c_out //= divide
        w = rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2.0 / (9 * c_in))
        convs[name] = (w.astype(np.float32), (0.1 * rng.standard_normal(c_out)).astype(np.float32))
    digest = hashlib.sha256()
    for w, b in convs.values():
        digest.update(w.tobytes() + b.tobytes())
    digest.update(repr((ceil_pool, torchvision)).encode())
    preprocess = TORCHVISION_PREPROCESS if torchvision else CAFFE_PREPROCESS
    return VGG19Weights(convs=convs, preprocess=preprocess, ceil_pool=ceil_pool,
                        source=f"random (seed {seed}, channels / {divide})",
                        digest=digest.hexdigest())


def session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


# --- independent NumPy reference --------------------------------------------------------------

def ref_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 cross-correlation, zero padding 1, plus bias; float64."""
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    out = np.einsum("chwkl,ockl->ohw", windows, w.astype(np.float64), optimize=True)
    return out + b[:, None, None]


def ref_conv_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`ref_conv`, then ReLU; float64."""
    return np.maximum(ref_conv(x, w, b), 0.0)


def ref_pool(x: np.ndarray, ceil_pool: bool) -> np.ndarray:
    c, h, w = x.shape
    if ceil_pool:
        x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2)), constant_values=-np.inf)
    else:
        x = x[:, : h - h % 2, : w - w % 2]
    c, h, w = x.shape
    return x.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))


def ref_features(weights, rgb: np.ndarray) -> dict[str, np.ndarray]:
    x = np.asarray(rgb, np.float64)
    if weights.preprocess.bgr:
        x = x[:, :, ::-1]
    x = (x * weights.preprocess.scale - np.array(weights.preprocess.mean)) / np.array(
        weights.preprocess.std)
    x = x.transpose(2, 0, 1)
    blocks = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 1))
    out = {}
    for block, n_convs in blocks:
        if block > 1:
            x = ref_pool(x, weights.ceil_pool)
        for i in range(1, n_convs + 1):
            x = ref_conv_relu(x, *weights.convs[f"conv{block}_{i}"])
            if i == 1:
                out[f"relu{block}_1"] = x
    return out


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# --- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ceil_pool, shape",
                         [(True, (20, 27)), (True, (37, 53)), (False, (21, 26))])
def test_features_graph_matches_numpy_reference(ceil_pool, shape):
    weights = random_weights(divide=8, seed=1, ceil_pool=ceil_pool)
    rgb = np.random.default_rng(2).random((*shape, 3), dtype=np.float32)
    outputs = session(vgg_graphs.build_features_graph(weights)).run(
        None, {"image": np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])})
    reference = ref_features(weights, rgb)
    for level, got in enumerate(outputs, start=1):
        name = vgg_graphs.LEVEL_NAMES[level]
        want = reference[name]
        assert got.shape == (1, *want.shape), name
        assert got.shape[2:] == vgg_graphs.level_shape(*shape, level, ceil_pool=ceil_pool)
        assert relative_error(got[0], want) < 1e-4, name


def test_features_graph_real_channel_counts_and_torchvision_preprocess():
    weights = random_weights(divide=1, seed=3, torchvision=True)
    rgb = np.random.default_rng(4).random((20, 27, 3), dtype=np.float32)
    outputs = session(vgg_graphs.build_features_graph(weights)).run(
        None, {"image": np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])})
    reference = ref_features(weights, rgb)
    for name, got in zip(vgg_graphs.LEVEL_NAMES[1:], outputs):
        assert got.shape[1] == reference[name].shape[0]
        assert relative_error(got[0], reference[name]) < 1e-4, name


def _subnet_inputs(weights, level: int, shape=(19, 23), seed: int = 0):
    """x at level L-2 with both signs (so pre-activations go negative), a target at level L."""
    rng = np.random.default_rng(seed)
    h, w = vgg_graphs.level_shape(*shape, level - 2, ceil_pool=weights.ceil_pool)
    c_in = 3 if level == 2 else weights.convs[f"conv{level - 2}_1"][0].shape[0]
    x = rng.standard_normal((1, c_in, h, w)).astype(np.float32)
    if level > 2:
        x = np.abs(x) * (rng.random(x.shape) < 0.7) - 0.1  # ReLU-like, with negatives too
        x = x.astype(np.float32)
    return x, rng


def ref_subnet(weights, level: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mid, out) of the sub-network in float64, from the NumPy reference layers."""
    values = []
    for sub_level in (level - 1, level):
        for step, layer in vgg_graphs.segment(sub_level):
            x = ref_pool(x, weights.ceil_pool) if step == "pool" else ref_conv_relu(
                x, *weights.convs[layer])
        values.append(x)
    return values[0], values[1]


def _check_gradient(grad, x, rng, graph_value, ref_value):
    """Directional derivatives of ``grad`` against central differences.

    The loss is piecewise quadratic in ``x`` (ReLU and max-pool choices switch pieces), so a
    central difference is exact within a piece and off when its step crosses kinks. Measured on
    these inputs: with a step of 1e-2 of the input's RMS the difference quotient misses the
    exact derivative by up to ~5 % of the gradient's scale on the deep levels' tiny maps (for the
    float64 reference as much as for the graph), while with a step of 1e-6 the float64 reference
    agrees with the graph's gradient to ~1e-6. Hence:

    - the gradient against float64 differences of the NumPy reference network (whose forward
      equals the graph's to 1e-5) with a step of 1e-6: dense random directions and single
      coordinates, within 1e-3;
    - float64 differences of the float32 graph itself with a step of 1e-2, single coordinates
      (the unchanged terms cancel exactly in the float64 sum): equal to the reference's
      difference quotient at the same step, kinks included, within 1e-2 of the gradient scale.
    """
    grad = grad.astype(np.float64)
    scale = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    g_scale = float(np.abs(grad).max())

    def quotient(value, d, h):
        return (value(x + h * scale * d) - value(x - h * scale * d)) / (2 * h * scale)

    for _ in range(2):
        d = rng.standard_normal(x.shape)
        assert float(np.sum(grad * d)) == pytest.approx(quotient(ref_value, d, 1e-6), rel=1e-3)
    for i in rng.choice(x.size, 6, replace=False):
        d = np.zeros(x.shape)
        d.flat[i] = 1.0
        assert grad.flat[i] == pytest.approx(quotient(ref_value, d, 1e-6), rel=1e-3,
                                             abs=1e-5 * g_scale)
        assert quotient(graph_value, d, 1e-2) == pytest.approx(
            quotient(ref_value, d, 1e-2), rel=1e-2, abs=1e-2 * g_scale)


@pytest.mark.parametrize("winograd_channels", [0, 16])
@pytest.mark.parametrize("level", [2, 3, 4, 5])
def test_subnet_gradient_matches_finite_differences(level, winograd_channels):
    """Also with Winograd's form for every convolution between 16 channels or more (at these
    channel counts: conv2_2 and everything from conv3_1 on)."""
    weights = random_weights(divide=8, seed=5)
    net = session(vgg_graphs.build_subnet_graph(weights, level,
                                                winograd_channels=winograd_channels))
    x, rng = _subnet_inputs(weights, level, seed=level)
    mid, out = session(forward_graph(weights, level)).run(
        None, {"x": x})
    ref_mid, ref_out = ref_subnet(weights, level, x[0].astype(np.float64))
    assert relative_error(mid[0], ref_mid) < 1e-5 and relative_error(out[0], ref_out) < 1e-5
    target = (out * rng.random(out.shape) + 0.1 * rng.standard_normal(out.shape)).astype(
        np.float32)

    mid2, out2, value, grad = net.run(None, {"x": x, "target": target})
    if winograd_channels:
        assert relative_error(mid2, mid) < 1e-5 and relative_error(out2, out) < 1e-5
    else:
        assert np.array_equal(mid2, mid) and np.array_equal(out2, out)
    assert value.shape == () and value.dtype == np.float64
    assert value == pytest.approx(0.5 * np.sum((out.astype(np.float64) - target) ** 2), rel=1e-6)
    assert grad.shape == x.shape and grad.dtype == np.float32
    # The random input exercises ReLU masks and pooling: a good share of units is off.
    assert 0.1 < np.mean(mid == 0) < 0.9 and 0.1 < np.mean(out == 0) < 0.9

    def graph_loss(z: np.ndarray) -> float:
        return float(net.run(["loss"], {"x": z.astype(np.float32), "target": target})[0])

    def ref_loss(z: np.ndarray) -> float:
        return 0.5 * float(np.sum((ref_subnet(weights, level, z[0])[1] - target[0]) ** 2))

    _check_gradient(grad, x, rng, graph_loss, ref_loss)


def _conv_graph(c: int, k: int, winograd_channels: int, with_bias: bool, seed: int = 0):
    """One 3x3 convolution (``GraphBuilder.conv3x3``) of a 1 x c x H x W input, its weight
    and bias."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32) if with_bias else None
    g = onnx_graph.GraphBuilder(None, winograd_channels=winograd_channels)
    g.dims["x"] = (c, "H", "W")
    g.conv3x3("x", "layer", w, b, output="y")
    model = g.model("conv", [onnx_graph.tensor_info("x", c, "H", "W")],
                    [onnx_graph.tensor_info("y", k, "H", "W")], {})
    return model, w, b


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (4, 4), (5, 7), (8, 12), (13, 9)])
def test_winograd_convolution_matches_the_direct_one_at_any_size(shape, with_bias):
    """F(4x4, 3x3) pads to whole 4x4 tiles and crops back: every size, tiles or not, gives
    the zero-padded correlation, to float32 rounding of its transforms."""
    c, k = 5, 6
    model, w, b = _conv_graph(c, k, winograd_channels=5, with_bias=with_bias)
    assert "MatMul" in {n.op_type for n in model.graph.node}   # the Winograd form was written
    x = np.random.default_rng(1).standard_normal((1, c, *shape)).astype(np.float32) * 10
    (y,) = session(model).run(None, {"x": x})
    ref = ref_conv(x[0], w, b if with_bias else np.zeros(k, np.float32))
    assert y.shape == (1, k, *shape)
    assert relative_error(y[0], ref) < 2e-5


def test_winograd_form_only_between_enough_channels():
    """Below ``winograd_channels`` on either side, a convolution stays one ``Conv``."""
    for c, k, threshold, winograd in [(5, 6, 5, True), (5, 6, 6, False), (6, 5, 6, False),
                                      (5, 6, 0, False)]:
        model, _, _ = _conv_graph(c, k, winograd_channels=threshold, with_bias=True)
        ops = [n.op_type for n in model.graph.node]
        assert ("MatMul" in ops) is winograd and (ops == ["Conv"]) is not winograd


def test_winograd_matrices_compute_the_correlation():
    """A^T [(G k G^T) * (B^T d B)] A is the 4x4 valid correlation of a 6x6 tile d with k."""
    bt, g, at = onnx_graph.winograd_matrices()
    rng = np.random.default_rng(2)
    d, kernel = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    fast = at @ ((g @ kernel @ g.T) * (bt @ d @ bt.T)) @ at.T
    windows = np.lib.stride_tricks.sliding_window_view(d, (3, 3))
    assert np.allclose(fast, np.einsum("hwkl,kl->hw", windows, kernel), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("level", [2, 3, 4, 5])
def test_subnet_out_grad_variant(level):
    weights = random_weights(divide=8, seed=6)
    x, rng = _subnet_inputs(weights, level, shape=(17, 21), seed=10 + level)
    vjp = session(out_grad_graph(weights, level))
    loss_net = session(vgg_graphs.build_subnet_graph(weights, level))
    fwd = session(forward_graph(weights, level))
    _, out = fwd.run(None, {"x": x})
    out_grad = rng.standard_normal(out.shape).astype(np.float32)
    mid, out2, grad = vjp.run(None, {"x": x, "out_grad": out_grad})
    assert np.array_equal(out2, out) and grad.shape == x.shape

    def graph_inner(z: np.ndarray) -> float:
        out_z = fwd.run(["out"], {"x": z.astype(np.float32)})[0]
        return float(np.sum(out_z.astype(np.float64) * out_grad))

    def ref_inner(z: np.ndarray) -> float:
        return float(np.sum(ref_subnet(weights, level, z[0])[1] * out_grad[0]))

    _check_gradient(grad, x, rng, graph_inner, ref_inner)
    # With out_grad = out - target the two variants give the same gradient.
    target = out - out_grad
    (same,) = vjp.run(["grad"], {"x": x, "out_grad": out - target})
    (ref,) = loss_net.run(["grad"], {"x": x, "target": target})
    assert relative_error(same, ref) < 1e-5


@pytest.mark.parametrize("level", [2, 3, 4, 5])
def test_subnet_values_equal_features_graph(level):
    weights = random_weights(divide=8, seed=7)
    rgb = np.random.default_rng(8).random((37, 53, 3), dtype=np.float32)
    feats = session(vgg_graphs.build_features_graph(weights)).run(
        None, {"image": np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])})
    levels = [weights.preprocess.apply(rgb)[None], *feats]
    net = session(vgg_graphs.build_subnet_graph(weights, level))
    mid, out, loss, grad = net.run(None, {"x": levels[level - 2], "target": levels[level]})
    assert relative_error(mid, levels[level - 1]) < 1e-5
    assert relative_error(out, levels[level]) < 1e-5
    assert loss < 1e-6 * float(np.sum(levels[level].astype(np.float64) ** 2))
    assert grad.shape == levels[level - 2].shape


@pytest.mark.parametrize("conv_backward", ["conv_transpose", "flipped_conv"])
@pytest.mark.parametrize("pool_backward", ["max_unpool", "scatter"])
@pytest.mark.parametrize("ceil_pool", [True, False])
def test_backward_variants_agree(conv_backward, pool_backward, ceil_pool):
    weights = random_weights(divide=16, seed=9, ceil_pool=ceil_pool)
    x, rng = _subnet_inputs(weights, 3, shape=(15, 18), seed=11)
    base = session(reference_subnet_graph(weights, 3))
    other = session(reference_subnet_graph(weights, 3, conv_backward=conv_backward,
                                           pool_backward=pool_backward))
    package = session(vgg_graphs.build_subnet_graph(weights, 3, pool_backward=pool_backward))
    target = rng.standard_normal((1, weights.convs["conv3_1"][0].shape[0],
                                  *vgg_graphs.level_shape(15, 18, 3, ceil_pool=ceil_pool)))
    feeds = {"x": x, "target": target.astype(np.float32)}
    assert relative_error(other.run(["grad"], feeds)[0], base.run(["grad"], feeds)[0]) < 1e-5
    assert relative_error(package.run(["grad"], feeds)[0], base.run(["grad"], feeds)[0]) < 1e-5


def _tied_inputs(weights, level: int, shape, seed: int):
    """x at level L-2 whose top-left quarter is constant, so that equal activations fill whole
    max-pool windows there (ties at positive values as well as at zero)."""
    x, rng = _subnet_inputs(weights, level, shape=shape, seed=seed)
    h, w = x.shape[2:]
    x[:, :, : h // 2, : w // 2] = np.abs(x[:, :, :1, :1]) + 0.05
    return x, rng


@pytest.mark.parametrize("level", [2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(38, 44), (37, 51)])
def test_relu_backward_variants_give_the_same_gradient_bit_for_bit(level, shape):
    """The blocked-layout masks ("mask_conv", with the ReLU before each max-pool masked at the
    pooled resolution) against graph version 1's ``Where(y > 0, g, 0)`` after every ReLU.

    Channels divided by 4 only, so every layer has a multiple of 16 channels and ONNX Runtime
    runs the convolutions and masks in its NCHWc layout, as with the real weights. Odd sizes
    exercise ceil-mode pooling; the constant region exercises ties in the max-pool windows, which
    both variants give to the same (first) element.
    """
    weights = random_weights(divide=4, seed=12)
    x, rng = _tied_inputs(weights, level, shape, seed=20 + level)
    fast = session(vgg_graphs.build_subnet_graph(weights, level))
    reference = session(reference_subnet_graph(weights, level, conv_backward="flipped_conv"))
    _, out = session(forward_graph(weights, level)).run(
        None, {"x": x})
    target = (out * rng.random(out.shape)).astype(np.float32)
    feeds = {"x": x, "target": target}
    mid, out2, loss, grad = fast.run(None, feeds)
    mid_r, out_r, loss_r, grad_r = reference.run(None, feeds)
    assert np.array_equal(mid, mid_r) and np.array_equal(out2, out_r)
    assert np.array_equal(grad, grad_r)
    assert loss == pytest.approx(loss_r, rel=1e-12)
    assert loss == pytest.approx(0.5 * np.sum((out.astype(np.float64) - target) ** 2), rel=1e-6)
    assert np.abs(grad).max() > 0


def test_relu_mask_conv_is_exactly_zero_or_one():
    """``Clip(2**127 * y, 0, 1)`` is exactly 1 for every y >= 2**-127 (normal floats included)
    and exactly 0 at y = 0, so ``grad * mask`` is ``grad`` or zero."""
    g = onnx_graph.GraphBuilder(random_weights(divide=16))
    g.dims["y"] = (16, "H", "W")
    g.dims["g"] = (16, "H", "W")
    out = g.relu_backward("g", "y", "conv")
    g.node("Identity", [out], outputs=["masked"])
    tensor = onnx_graph.tensor_info
    model = g.model("mask", [tensor("g", 16, "H", "W"), tensor("y", 16, "H", "W")],
                    [tensor("masked", 16, "H", "W")], {})
    values = np.array([0.0, 2.0 ** -127, 2.0 ** -126, 1e-30, 1e-7, 1.0, 3e4, 3.4e38], np.float32)
    y = np.resize(values, (1, 16, 5, 8)).astype(np.float32)
    grad = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    (masked,) = session(model).run(None, {"g": grad, "y": y})
    assert np.array_equal(masked, np.where(y > 0, grad, 0.0))


def test_relu_masks_stay_in_the_blocked_layout(tmp_path):
    """ONNX Runtime's NCHWc rewrite keeps the full-resolution masks blocked: fewer layout
    reorders than with ``Where`` (which has no blocked kernel), and no ``Where`` at all."""
    import onnx  # noqa: PLC0415

    weights = random_weights(divide=4, seed=13)

    def optimized(build=vgg_graphs.build_subnet_graph):
        path = tmp_path / f"opt{len(list(tmp_path.iterdir()))}.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(path)
        options.log_severity_level = 3
        ort.InferenceSession(build(weights, 4).SerializeToString(), options,
                             providers=["CPUExecutionProvider"])
        return [node.op_type for node in onnx.load(str(path)).graph.node]

    reference = optimized(lambda w, level: reference_subnet_graph(w, level,
                                                                  conv_backward="flipped_conv"))
    reorders = ("ReorderInput", "ReorderOutput")
    if not any(op in reorders for op in reference):
        pytest.skip("this CPU gets no NCHWc rewrite from onnxruntime")
    fast = optimized()
    assert "Where" not in fast
    assert sum(op in reorders for op in fast) < sum(op in reorders for op in reference)


def test_segments_and_bad_arguments():
    assert vgg_graphs.segment(1) == (("conv", "conv1_1"),)
    assert vgg_graphs.segment(4) == (("conv", "conv3_2"), ("conv", "conv3_3"),
                                     ("conv", "conv3_4"), ("pool", ""), ("conv", "conv4_1"))
    assert vgg_graphs.level_shape(37, 53, 5, ceil_pool=True) == (3, 4)
    assert vgg_graphs.level_shape(37, 53, 5, ceil_pool=False) == (2, 3)
    weights = random_weights(divide=16)
    for bad in (1, 6):
        with pytest.raises(ValueError, match="sub-network"):
            vgg_graphs.build_subnet_graph(weights, bad)
    with pytest.raises(ValueError, match="pool_backward"):
        vgg_graphs.build_subnet_graph(weights, 3, pool_backward="sum")
    model = vgg_graphs.build_subnet_graph(weights, 3)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["gpuanalogy.weights_digest"] == weights.digest
    assert props["gpuanalogy.graph_version"] == str(vgg_graphs.GRAPH_VERSION)
