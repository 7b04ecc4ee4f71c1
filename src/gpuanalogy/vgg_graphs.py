"""ONNX graphs of VGG-19: the feature pyramid and the deconvolution sub-networks.

Built with the ``onnx.helper`` API from a :class:`gpuanalogy.weights.VGG19Weights`; no training
framework is involved. Every spatial size is dynamic, and with ``weights.ceil_pool`` (Caffe's
rounding) odd sizes pool to ``ceil(n / 2)``.

Levels: 0 is ``data`` (the preprocessed image, 3 x H x W) and 1..5 are relu1_1 .. relu5_1. From
level k to level k + 1 the network applies the remaining convolutions of block k (3x3, pad 1, each
followed by ReLU), a 2x2 stride-2 max-pool and conv{k+1}_1 + ReLU; level 0 to 1 is conv1_1 + ReLU.

The sub-network for level L (2..5) maps features at L - 2 through L - 1 to L and returns the value
and the input-gradient of ``0.5 * ||out - target||^2``. Its backward pass is written by hand:

- conv input-gradient: a ``Conv`` with the spatially flipped, in/out-transposed kernel (pad 1),
  measured faster on ORT CPU than ``ConvTranspose`` with the forward weights (numbers at
  ``CONV_BACKWARD``; both are available);
- ReLU: the gradient is kept where the forward activation is positive (``Where(y > 0, g, 0)``);
- max-pool: ``MaxPool`` also returns its argmax ``Indices`` and ``MaxUnpool`` scatters the gradient
  back with ``output_shape`` set to the pre-pool shape, so ceil-mode (odd) sizes round-trip.
- no second forward pass: the backward reads the forward's own activations and indices.

The gradient reaching ``x`` is not masked by the sign of ``x``: ``x`` is the free variable.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "CONV_BACKWARD", "GRAPH_VERSION", "LEVEL_NAMES", "OPSET", "POOL_BACKWARD",
    "build_features_graph", "build_subnet_graph", "level_shape", "segment",
]

#: Bump whenever a builder changes what it emits: cached models are keyed on it.
GRAPH_VERSION = 1
OPSET = 18
LEVEL_NAMES = ("data", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

#: Which conv input-gradient the sub-networks use: "conv_transpose" (ConvTranspose with the forward
#: weights) or "flipped_conv" (Conv with the spatially flipped, in/out-transposed kernel). Measured
#: on ORT 1.32 CPU, 2 cores (shared, so noisy), random weights with the real VGG-19 channel counts,
#: one loss+gradient evaluation per sub-network at 224 x 224, best of 6 runs, seconds for
#: levels 2 / 3 / 4 / 5:
#:   conv_transpose  0.109 / 0.129 / 0.321 / 0.188   total 0.747
#:   flipped_conv    0.086 / 0.099 / 0.283 / 0.161   total 0.628   (16 % less)
#: A second session gave 0.781 vs 0.687 (12 % less). flipped_conv wins on every level; it stores a
#: second copy of each kernel in the model (about twice the file size and weight memory).
#: Gradients of the two agree to 6e-7 relative.
ConvBackward = Literal["conv_transpose", "flipped_conv"]
PoolBackward = Literal["max_unpool", "scatter"]
CONV_BACKWARD: ConvBackward = "flipped_conv"
#: How the max-pool gradient is scattered: "max_unpool" (MaxUnpool) or "scatter"
#: (ScatterElements on the flat tensor). Same results bit for bit and the same speed on ORT CPU
#: (within noise: totals of the two runs above were 0.747 / 0.781 s with MaxUnpool and
#: 0.657 / 0.820 s with ScatterElements, both with ConvTranspose). MaxUnpool is the default;
#: "scatter" is there for execution providers without a MaxUnpool kernel.
POOL_BACKWARD: PoolBackward = "max_unpool"

_BLOCKS = (
    ("conv1_1", "conv1_2"),
    ("conv2_1", "conv2_2"),
    ("conv3_1", "conv3_2", "conv3_3", "conv3_4"),
    ("conv4_1", "conv4_2", "conv4_3", "conv4_4"),
    ("conv5_1",),  # conv5_2..5_4 are never needed: relu5_1 is the top level
)

Step = tuple[str, str]  # ("conv", layer name) or ("pool", "")


def segment(level: int) -> tuple[Step, ...]:
    """The steps from level ``level - 1`` to ``level`` (1..5); each conv includes its ReLU."""
    if not 1 <= level <= 5:
        raise ValueError(f"level={level} is not a VGG-19 feature level; expected 1..5")
    if level == 1:
        return (("conv", "conv1_1"),)
    rest = tuple(("conv", name) for name in _BLOCKS[level - 2][1:])
    return (*rest, ("pool", ""), ("conv", _BLOCKS[level - 1][0]))


def level_shape(height: int, width: int, level: int, *, ceil_pool: bool) -> tuple[int, int]:
    """Spatial size of level ``level`` for an H x W image (level 0 is the image itself)."""
    for _ in range(max(level - 1, 0)):
        if ceil_pool:
            height, width = -(-height // 2), -(-width // 2)
        else:
            height, width = height // 2, width // 2
    return height, width


def _channels(weights: Any, level: int) -> int:
    if level == 0:
        return 3
    return int(weights.convs[_BLOCKS[level - 1][0]][0].shape[0])


def _preprocess_affine(preprocess: Any) -> tuple[np.ndarray, np.ndarray]:
    """(M, c) with ``preprocess.apply(rgb)[:, i, j] == M @ rgb[i, j] + c`` for every pixel.

    Read off ``apply`` itself on a four-pixel probe (black, red, green, blue), so the graph
    follows whatever channel order, scale, mean and std the weights declare.
    """
    probe = np.zeros((1, 5, 3), np.float32)
    probe[0, 1:4] = np.eye(3, dtype=np.float32)
    probe[0, 4] = (0.25, 0.5, 0.75)
    out = np.asarray(preprocess.apply(probe), dtype=np.float64).reshape(3, 5)
    offset = out[:, 0]
    matrix = out[:, 1:4] - offset[:, None]
    check = matrix @ probe[0, 4].astype(np.float64) + offset
    if not np.allclose(check, out[:, 4], rtol=1e-5, atol=1e-3):
        raise ValueError("weights.preprocess.apply is not a per-pixel affine map")
    return matrix.astype(np.float32), offset.astype(np.float32)


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, weights: Any) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}__{self._count}"

    def node(self, op: str, inputs: Sequence[str], n_out: int = 1, stem: str | None = None,
             outputs: Sequence[str] | None = None, **attrs: Any) -> list[str]:
        outs = list(outputs) if outputs is not None else [
            self.fresh(stem or op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=self.fresh(op), **attrs))
        return outs

    def const(self, name: str, array: np.ndarray) -> str:
        if name not in self._names:
            self._names.add(name)
            self.initializers.append(numpy_helper.from_array(np.asarray(array, order="C"), name))
        return name

    def conv_weights(self, layer: str) -> tuple[str, str]:
        w, b = self.weights.convs[layer]
        return (self.const(f"{layer}_W", np.asarray(w, np.float32)),
                self.const(f"{layer}_b", np.asarray(b, np.float32)))

    # forward --------------------------------------------------------------------------------
    def conv_relu(self, x: str, layer: str, output: str | None = None) -> str:
        w, b = self.conv_weights(layer)
        (pre,) = self.node("Conv", [x, w, b], stem=f"{layer}_pre", kernel_shape=[3, 3],
                           pads=[1, 1, 1, 1], strides=[1, 1])
        outs = [output] if output else None
        return self.node("Relu", [pre], stem=layer.replace("conv", "relu"), outputs=outs)[0]

    def pool(self, x: str, *, indices: bool) -> tuple[str, str | None]:
        attrs = dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=int(self.weights.ceil_pool))
        outs = self.node("MaxPool", [x], n_out=2 if indices else 1, stem="pool", **attrs)
        return outs[0], (outs[1] if indices else None)

    # backward -------------------------------------------------------------------------------
    def relu_backward(self, grad: str, y: str) -> str:
        zero = self.const("zero_f32", np.zeros((), np.float32))
        (positive,) = self.node("Greater", [y, zero], stem="mask")
        return self.node("Where", [positive, grad, zero], stem="grad")[0]

    def conv_backward(self, grad: str, layer: str, variant: str, output: str | None = None) -> str:
        outs = [output] if output else None
        attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
        if variant == "conv_transpose":
            w, _ = self.conv_weights(layer)
            return self.node("ConvTranspose", [grad, w], stem="grad", outputs=outs, **attrs)[0]
        w_np = np.asarray(self.weights.convs[layer][0], np.float32)
        flipped = self.const(f"{layer}_Wflip", w_np[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        return self.node("Conv", [grad, flipped], stem="grad", outputs=outs, **attrs)[0]

    def pool_backward(self, grad: str, indices: str, pooled_input: str, variant: str) -> str:
        (shape,) = self.node("Shape", [pooled_input], stem="pool_in_shape")
        if variant == "max_unpool":
            # With output_shape given, ONNX ignores pads for the output size, but ORT still
            # rejects an output_shape below (pooled - 1) * 2 + 2 - pads: pads = 1 at the end lowers
            # that floor to 2 * pooled - 1, so the odd sizes of ceil-mode pooling are accepted.
            # The indices are flat offsets into the pre-pool tensor, which is exactly the output.
            return self.node("MaxUnpool", [grad, indices, shape], stem="grad",
                             kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1])[0]
        # "scatter": the same scatter written as ScatterElements into a flat zero tensor.
        flat = self.const("flat_shape", np.array([-1], np.int64))
        (zeros,) = self.node("ConstantOfShape", [shape], stem="zeros",
                             value=numpy_helper.from_array(np.zeros(1, np.float32)))
        (zeros_flat,) = self.node("Reshape", [zeros, flat], stem="zeros_flat")
        (idx_flat,) = self.node("Reshape", [indices, flat], stem="idx_flat")
        (grad_flat,) = self.node("Reshape", [grad, flat], stem="grad_flat")
        (scattered,) = self.node("ScatterElements", [zeros_flat, idx_flat, grad_flat],
                                 stem="scattered", axis=0)
        return self.node("Reshape", [scattered, shape], stem="grad")[0]

    def model(self, name: str, inputs: list[onnx.ValueInfoProto],
              outputs: list[onnx.ValueInfoProto], kind: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="gpuanalogy")
        model.ir_version = min(model.ir_version, 9)  # readable by older onnxruntime releases
        helper.set_model_props(model, {
            "gpuanalogy.graph_version": str(GRAPH_VERSION),
            "gpuanalogy.kind": kind,
            "gpuanalogy.weights_digest": str(getattr(self.weights, "digest", "")),
            "gpuanalogy.weights_source": str(getattr(self.weights, "source", "")),
        })
        onnx.checker.check_model(model)
        return model


def _tensor(name: str, channels: int | str, height: str, width: str,
            elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, [1, channels, height, width])


def build_features_graph(weights: Any) -> onnx.ModelProto:
    """VGG-19 from an RGB image to relu1_1 .. relu5_1.

    Parameters
    ----------
    weights : VGG19Weights
        Conv weights, the preprocessing and the pooling rounding.

    Returns
    -------
    onnx.ModelProto
        Input ``image``, shape (1, 3, H, W) float32 RGB in [0, 1]; the preprocessing runs in the
        graph (as a 1x1 convolution). Outputs ``relu1_1`` .. ``relu5_1``, each (1, C, H_l, W_l).
    """
    g = _Graph(weights)
    matrix, offset = _preprocess_affine(weights.preprocess)
    pre_w = g.const("preprocess_W", matrix.reshape(3, 3, 1, 1))
    pre_b = g.const("preprocess_b", offset)
    (x,) = g.node("Conv", ["image", pre_w, pre_b], outputs=["data"], kernel_shape=[1, 1])
    outputs = []
    for level in range(1, 6):
        for step, layer in segment(level):
            if step == "pool":
                x, _ = g.pool(x, indices=False)
            elif layer == _BLOCKS[level - 1][0]:
                x = g.conv_relu(x, layer, output=LEVEL_NAMES[level])
            else:
                x = g.conv_relu(x, layer)
        outputs.append(_tensor(LEVEL_NAMES[level], _channels(weights, level),
                               f"H{level}", f"W{level}"))
    return g.model("vgg19_features", [_tensor("image", 3, "H", "W")], outputs, "features")


GradInput = Literal["target", "out_grad"]


def build_subnet_graph(weights: Any, level: int, *, grad_input: GradInput | None = "target",
                       conv_backward: ConvBackward = CONV_BACKWARD,
                       pool_backward: PoolBackward = POOL_BACKWARD) -> onnx.ModelProto:
    """The deconvolution sub-network: level ``level - 2`` -> ``level - 1`` -> ``level``.

    Parameters
    ----------
    weights : VGG19Weights
    level : int, 2..5
        The output level L.
    grad_input : {"target", "out_grad", None}
        ``"target"``: inputs ``x`` (1, C_{L-2}, H, W) and ``target`` (1, C_L, H_L, W_L); outputs
        ``mid``, ``out``, ``loss`` (float64 scalar, 0.5 * ||out - target||^2) and ``grad``
        (d loss / d x, shaped like ``x``).
        ``"out_grad"``: inputs ``x`` and ``out_grad`` (shaped like ``out``); outputs ``mid``,
        ``out`` and ``grad``, the gradient of <out, out_grad> with respect to ``x``.
        ``None``: input ``x``; outputs ``mid`` and ``out`` only.
    conv_backward : {"conv_transpose", "flipped_conv"}
        How the conv input-gradient is written (see ``CONV_BACKWARD``).
    pool_backward : {"max_unpool", "scatter"}
        How the max-pool gradient is scattered back (see ``POOL_BACKWARD``).

    Returns
    -------
    onnx.ModelProto
    """
    if not 2 <= level <= 5:
        raise ValueError(f"level={level} has no sub-network; expected 2..5")
    if conv_backward not in ("conv_transpose", "flipped_conv"):
        raise ValueError(f"conv_backward={conv_backward!r} is not supported. "
                         "Try 'conv_transpose' or 'flipped_conv'.")
    if pool_backward not in ("max_unpool", "scatter"):
        raise ValueError(f"pool_backward={pool_backward!r} is not supported. "
                         "Try 'max_unpool' or 'scatter'.")
    if grad_input not in ("target", "out_grad", None):
        raise ValueError(f"grad_input={grad_input!r} is not supported. "
                         "Try 'target', 'out_grad' or None.")
    g = _Graph(weights)
    # Forward, remembering what the backward pass needs: (kind, layer, input, output, indices).
    tape: list[tuple[str, str, str, str, str | None]] = []
    x = "x"
    for sub_level, final in ((level - 1, "mid"), (level, "out")):
        steps = segment(sub_level)
        for i, (step, layer) in enumerate(steps):
            last = i == len(steps) - 1
            if step == "pool":
                y, idx = g.pool(x, indices=grad_input is not None)
                tape.append(("pool", "", x, y, idx))
            else:
                y = g.conv_relu(x, layer, output=final if last else None)
                tape.append(("conv", layer, x, y, None))
            x = y

    c_in, c_mid, c_out = (_channels(weights, lv) for lv in (level - 2, level - 1, level))
    inputs = [_tensor("x", c_in, "H", "W")]
    outputs = [_tensor("mid", c_mid, "Hm", "Wm"), _tensor("out", c_out, "Ho", "Wo")]
    kind = f"subnet{level}"
    if grad_input is None:
        return g.model(f"vgg19_subnet{level}_forward", inputs, outputs, f"{kind}-forward")

    if grad_input == "target":
        inputs.append(_tensor("target", c_out, "Ho", "Wo"))
        (grad,) = g.node("Sub", ["out", "target"], stem="residual")
        (wide,) = g.node("Cast", [grad], stem="residual64", to=TensorProto.DOUBLE)
        (sq,) = g.node("ReduceSumSquare", [wide], stem="sumsq", keepdims=0)
        half = g.const("half_f64", np.array(0.5, np.float64))
        g.node("Mul", [sq, half], outputs=["loss"])
        outputs.append(helper.make_tensor_value_info("loss", TensorProto.DOUBLE, []))
    else:
        inputs.append(_tensor("out_grad", c_out, "Ho", "Wo"))
        grad = "out_grad"

    for n, (step, layer, x_in, y, idx) in enumerate(reversed(tape)):
        first = n == len(tape) - 1  # the step that consumed "x" itself
        if step == "pool":
            assert idx is not None
            grad = g.pool_backward(grad, idx, x_in, pool_backward)
        else:
            grad = g.relu_backward(grad, y)
            grad = g.conv_backward(grad, layer, conv_backward, output="grad" if first else None)
    outputs.append(_tensor("grad", c_in, "H", "W"))
    return g.model(f"vgg19_subnet{level}_{grad_input}", inputs, outputs,
                   f"{kind}-{grad_input}-{conv_backward}-{pool_backward}")
