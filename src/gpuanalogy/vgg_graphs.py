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
- ReLU: the gradient is kept where the forward activation is positive, as a multiplication by a
  0/1 mask (see ``RELU_BACKWARD``). A ReLU whose output is max-pooled is masked at the pooled
  resolution, before the unpooling: the gradient only reaches each window's argmax, whose value
  is the pooled value, so ``pooled > 0`` is the same mask on a tensor four times smaller;
- max-pool: ``MaxPool`` also returns its argmax ``Indices`` and ``MaxUnpool`` scatters the gradient
  back with ``output_shape`` set to the pre-pool shape, so ceil-mode (odd) sizes round-trip. Ties
  in a window give the whole gradient to the first maximum in row-major order (ONNX Runtime's
  ``Indices``), as before;
- no second forward pass: the backward reads the forward's own activations and indices.

Layout: ONNX Runtime's CPU provider rewrites the 3x3 convolutions into its blocked NCHWc kernels
(``ReorderInput``/``ReorderOutput`` around every node it cannot run blocked). The graphs are
written so that the full-resolution ReLU masks stay blocked (a depthwise 1x1 ``Conv`` with a
fused ``Clip`` and a same-shape ``Mul``, with symbolic shapes in ``value_info`` so that the
rewriter can prove the two operands alike); only the max-pool (``MaxPool`` with ``Indices`` and
``MaxUnpool`` have no blocked kernels), the loss and the graph outputs cross layouts.

The gradient reaching ``x`` is not masked by the sign of ``x``: ``x`` is the free variable.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "CONV_BACKWARD", "GRAPH_VERSION", "LEVEL_NAMES", "OPSET", "POOL_BACKWARD", "RELU_BACKWARD",
    "build_features_graph", "build_subnet_graph", "level_shape", "segment",
]

#: Bump whenever a builder changes what it emits: cached models are keyed on it.
GRAPH_VERSION = 2
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
#: How the ReLU gradient is masked. "mask_conv": multiply by ``Clip(2**127 * y, 0, 1)`` (a
#: depthwise 1x1 ``Conv`` that ONNX Runtime fuses with the ``Clip`` and runs in its blocked NCHWc
#: layout, followed by a same-layout ``Mul``) at full resolution, by ``Cast(y > 0)`` at the
#: pooled resolution and on the output level (there the tensors are in plain NCHW anyway).
#: ``2**127 * y >= 1`` for every ``y >= 2**-127``, so the mask is exactly 0 or 1 except for
#: subnormal activations below 2**-127 (about 5.9e-39), which get a factor below 1.
#: "where": ``Where(y > 0, g, 0)`` after every ReLU at full resolution, the formulation of graph
#: version 1, kept as the reference: both give the same gradient bit for bit (up to the sign of
#: zeros). Measured on ORT 1.32 CPU (2 cores, AVX-512), one loss+gradient evaluation with the real
#: weights, 224 x 224, levels 2 / 3 / 4 / 5: with "where", per-node profiles put ``Where`` at
#: 28 / 16 / 7 / 3 % of the time and the layout reorders at another 11 / 8 / 4 / 2 %; everything
#: but the 3x3 convolutions took 85 / 73 / 34 / 19 ms per evaluation with "where" and
#: 41 / 49 / 17 / 10 ms with "mask_conv" (each node's minimum over 8 interleaved runs on a busy
#: machine, summed). ``benchmarks/vgg.py``'s docstring has the wall-clock before/after table.
ReluBackward = Literal["mask_conv", "where"]
RELU_BACKWARD: ReluBackward = "mask_conv"

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
    """Accumulates nodes and initializers with unique names, and the shape of every 4-D tensor
    (channels and symbolic spatial dimensions) for the value_info of the model."""

    def __init__(self, weights: Any) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._count = 0
        self.dims: dict[str, tuple[int, str, str]] = {}

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}__{self._count}"

    def node(self, op: str, inputs: Sequence[str], n_out: int = 1, stem: str | None = None,
             outputs: Sequence[str] | None = None, like: str | None = None,
             **attrs: Any) -> list[str]:
        outs = list(outputs) if outputs is not None else [
            self.fresh(stem or op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=self.fresh(op), **attrs))
        if like is not None:
            self.dims[outs[0]] = self.dims[like]
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
        y = self.node("Relu", [pre], stem=layer.replace("conv", "relu"), outputs=outs)[0]
        if x in self.dims:
            _, h, w_ = self.dims[x]
            self.dims[pre] = self.dims[y] = (int(self.weights.convs[layer][0].shape[0]), h, w_)
        return y

    def pool(self, x: str, *, indices: bool) -> tuple[str, str | None]:
        attrs = dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=int(self.weights.ceil_pool))
        outs = self.node("MaxPool", [x], n_out=2 if indices else 1, stem="pool", **attrs)
        if x in self.dims:
            c, h, w = self.dims[x]
            self.dims[outs[0]] = (c, _halved(h), _halved(w))
        return outs[0], (outs[1] if indices else None)

    # backward -------------------------------------------------------------------------------
    def relu_backward(self, grad: str, y: str, mask: str) -> str:
        """``grad`` where ``y > 0``, else 0; ``mask`` picks the formulation:

        - ``"where"``: ``Where(y > 0, grad, 0)``;
        - ``"cast"``: ``grad * Cast(y > 0)``;
        - ``"conv"``: ``grad * Clip(2**127 * y, 0, 1)`` with the scaling as a depthwise 1x1 conv,
          which ONNX Runtime fuses with the Clip and keeps, like the Mul, in its NCHWc layout.
          ``y`` is a ReLU output (``y >= 0``).
        """
        zero = self.const("zero_f32", np.zeros((), np.float32))
        if mask == "conv":
            channels = self.dims[y][0]
            scale = self.const(f"mask_scale_{channels}",
                               np.full((channels, 1, 1, 1), 2.0 ** 127, np.float32))
            (scaled,) = self.node("Conv", [y, scale], stem="mask_scaled", group=channels,
                                  kernel_shape=[1, 1], like=y)
            one = self.const("one_f32", np.ones((), np.float32))
            (m,) = self.node("Clip", [scaled, zero, one], stem="mask", like=y)
            return self.node("Mul", [grad, m], stem="grad", like=y)[0]
        (positive,) = self.node("Greater", [y, zero], stem="positive")
        if mask == "where":
            return self.node("Where", [positive, grad, zero], stem="grad", like=y)[0]
        (m,) = self.node("Cast", [positive], stem="mask", to=TensorProto.FLOAT, like=y)
        return self.node("Mul", [grad, m], stem="grad", like=y)[0]

    def conv_backward(self, grad: str, layer: str, variant: str, like: str,
                      output: str | None = None) -> str:
        outs = [output] if output else None
        attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
        if variant == "conv_transpose":
            w, _ = self.conv_weights(layer)
            return self.node("ConvTranspose", [grad, w], stem="grad", outputs=outs, like=like,
                             **attrs)[0]
        w_np = np.asarray(self.weights.convs[layer][0], np.float32)
        flipped = self.const(f"{layer}_Wflip", w_np[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        return self.node("Conv", [grad, flipped], stem="grad", outputs=outs, like=like,
                         **attrs)[0]

    def pool_backward(self, grad: str, indices: str, pooled_input: str, variant: str) -> str:
        (shape,) = self.node("Shape", [pooled_input], stem="pool_in_shape")
        if variant == "max_unpool":
            # With output_shape given, ONNX ignores pads for the output size, but ORT still
            # rejects an output_shape below (pooled - 1) * 2 + 2 - pads: pads = 1 at the end lowers
            # that floor to 2 * pooled - 1, so the odd sizes of ceil-mode pooling are accepted.
            # The indices are flat offsets into the pre-pool tensor, which is exactly the output.
            return self.node("MaxUnpool", [grad, indices, shape], stem="grad", like=pooled_input,
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
        return self.node("Reshape", [scattered, shape], stem="grad", like=pooled_input)[0]

    def model(self, name: str, inputs: list[onnx.ValueInfoProto],
              outputs: list[onnx.ValueInfoProto], kind: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        declared = {v.name for v in (*inputs, *outputs)}
        graph.value_info.extend(_tensor(n, c, h, w) for n, (c, h, w) in self.dims.items()
                                if n not in declared)
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


def _halved(dim: str) -> str:
    """Symbolic name of a spatial size after one 2x2 pooling: H -> H_2 -> H_4 ..."""
    stem, _, factor = dim.partition("_")
    return f"{stem}_{2 * int(factor or 1)}"


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
                       pool_backward: PoolBackward = POOL_BACKWARD,
                       relu_backward: ReluBackward = RELU_BACKWARD) -> onnx.ModelProto:
    """The deconvolution sub-network: level ``level - 2`` -> ``level - 1`` -> ``level``.

    Parameters
    ----------
    weights : VGG19Weights
    level : int, 2..5
        The output level L.
    grad_input : {"target", "out_grad", None}
        ``"target"``: inputs ``x`` (1, C_{L-2}, H, W) and ``target`` (1, C_L, H_L, W_L); outputs
        ``mid``, ``out``, ``loss`` (float64 scalar, 0.5 * ||out - target||^2, the squares summed
        along each row in float32 and the rows in float64) and ``grad``
        (d loss / d x, shaped like ``x``).
        ``"out_grad"``: inputs ``x`` and ``out_grad`` (shaped like ``out``); outputs ``mid``,
        ``out`` and ``grad``, the gradient of <out, out_grad> with respect to ``x``.
        ``None``: input ``x``; outputs ``mid`` and ``out`` only.
    conv_backward : {"conv_transpose", "flipped_conv"}
        How the conv input-gradient is written (see ``CONV_BACKWARD``).
    pool_backward : {"max_unpool", "scatter"}
        How the max-pool gradient is scattered back (see ``POOL_BACKWARD``).
    relu_backward : {"mask_conv", "where"}
        How the ReLU gradient is masked (see ``RELU_BACKWARD``); the same gradient either way.

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
    if relu_backward not in ("mask_conv", "where"):
        raise ValueError(f"relu_backward={relu_backward!r} is not supported. "
                         "Try 'mask_conv' or 'where'.")
    if grad_input not in ("target", "out_grad", None):
        raise ValueError(f"grad_input={grad_input!r} is not supported. "
                         "Try 'target', 'out_grad' or None.")
    g = _Graph(weights)
    c_in, c_mid, c_out = (_channels(weights, lv) for lv in (level - 2, level - 1, level))
    g.dims["x"] = (c_in, "H", "W")
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

    inputs = [_tensor("x", c_in, "H", "W")]
    outputs = [_tensor("mid", *g.dims["mid"]), _tensor("out", *g.dims["out"])]
    kind = f"subnet{level}"
    if grad_input is None:
        return g.model(f"vgg19_subnet{level}_forward", inputs, outputs, f"{kind}-forward")

    if grad_input == "target":
        inputs.append(_tensor("target", *g.dims["out"]))
        g.dims["target"] = g.dims["out"]
        (grad,) = g.node("Sub", ["out", "target"], stem="residual", like="out")
        # Squares summed along each row in float32 (W_L terms), the rows in float64: the float64
        # Cast of the whole residual cost more than the rest of the loss.
        axes = g.const("axes_w", np.array([3], np.int64))
        (rows,) = g.node("ReduceSumSquare", [grad, axes], stem="row_sumsq", keepdims=0)
        (wide,) = g.node("Cast", [rows], stem="row_sumsq64", to=TensorProto.DOUBLE)
        (sq,) = g.node("ReduceSum", [wide], stem="sumsq", keepdims=0)
        half = g.const("half_f64", np.array(0.5, np.float64))
        g.node("Mul", [sq, half], outputs=["loss"])
        outputs.append(helper.make_tensor_value_info("loss", TensorProto.DOUBLE, []))
    else:
        inputs.append(_tensor("out_grad", *g.dims["out"]))
        g.dims["out_grad"] = g.dims["out"]
        grad = "out_grad"

    reference = relu_backward == "where"
    masked = False  # the ReLU before a max-pool, already masked at the pooled resolution
    for n, (step, layer, x_in, y, idx) in enumerate(reversed(tape)):
        first = n == len(tape) - 1  # the step that consumed "x" itself
        if step == "pool":
            assert idx is not None
            if not reference:
                # Only each window's argmax receives gradient, and its value is the pooled value.
                grad = g.relu_backward(grad, y, "cast")
                masked = True
            grad = g.pool_backward(grad, idx, x_in, pool_backward)
        else:
            if not masked:
                mask = "where" if reference else "cast" if n == 0 else "conv"
                grad = g.relu_backward(grad, y, mask)
            masked = False
            grad = g.conv_backward(grad, layer, conv_backward, like=x_in,
                                   output="grad" if first else None)
    outputs.append(_tensor("grad", c_in, "H", "W"))
    return g.model(f"vgg19_subnet{level}_{grad_input}", inputs, outputs,
                   f"{kind}-{grad_input}-{conv_backward}-{pool_backward}-{relu_backward}")
