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
  faster on ORT CPU than ``ConvTranspose`` with the forward weights (the tests keep that one as
  a reference, with the same gradients to float32 rounding; ``benchmarks/vgg.py`` times them);
- ReLU: the gradient is kept where the forward activation is positive, as a multiplication by a
  0/1 mask: ``Clip(2**127 * y, 0, 1)`` at full resolution (a depthwise 1x1 ``Conv`` that ONNX
  Runtime fuses with the ``Clip`` and keeps, like the ``Mul``, in its blocked layout), exactly 0
  or 1 for every ``y`` but subnormals below 2**-127, and ``Cast(y > 0)`` on the output level. A
  ReLU whose output is max-pooled is masked at the pooled resolution, before the unpooling: the
  gradient only reaches each window's argmax, whose value is the pooled value, so ``pooled > 0``
  is the same mask on a tensor four times smaller. The same gradient bit for bit as
  ``Where(y > 0, g, 0)`` after every ReLU (graph version 1, the tests' reference);
- max-pool: ``MaxPool`` also returns its argmax ``Indices`` and ``MaxUnpool`` scatters the gradient
  back with ``output_shape`` set to the pre-pool shape, so ceil-mode (odd) sizes round-trip
  (``ScatterElements`` on the flat tensor where the provider lacks ``MaxUnpool``: the same
  results bit for bit). Ties in a window give the whole gradient to the first maximum in
  row-major order (ONNX Runtime's ``Indices``);
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

from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper

from .onnx_graph import OPSET, GraphBuilder, tensor_info

__all__ = [
    "GRAPH_VERSION", "LEVEL_NAMES", "OPSET", "POOL_BACKWARD", "build_features_graph",
    "build_subnet_graph", "subnet_forward", "subnet_loss", "level_shape", "segment",
]

#: Bump whenever a builder changes what it emits: cached models are keyed on it.
GRAPH_VERSION = 5
LEVEL_NAMES = ("data", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

PoolBackward = Literal["max_unpool", "scatter"]
#: How the max-pool gradient is scattered: "max_unpool" (MaxUnpool) or, for execution providers
#: without a MaxUnpool kernel (CUDA), "scatter" (ScatterElements on the flat tensor).
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
    g = GraphBuilder(weights)
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
        outputs.append(tensor_info(LEVEL_NAMES[level], _channels(weights, level),
                               f"H{level}", f"W{level}"))
    return g.model("vgg19_features", [tensor_info("image", 3, "H", "W")], outputs,
                   _properties(weights, "features"))


def build_subnet_graph(weights: Any, level: int, *, pool_backward: PoolBackward = POOL_BACKWARD,
                       winograd_channels: int = 0) -> onnx.ModelProto:
    """The deconvolution sub-network: level ``level - 2`` -> ``level - 1`` -> ``level``.

    Parameters
    ----------
    weights : VGG19Weights
    level : int, 2..5
        The output level L.
    pool_backward : {"max_unpool", "scatter"}
        How the max-pool gradient is scattered back (see ``POOL_BACKWARD``).
    winograd_channels : int
        3x3 convolutions, forward and backward, with at least this many input and output
        channels are written in Winograd's form (:mod:`gpuanalogy.onnx_graph`); 0: none.

    Returns
    -------
    onnx.ModelProto
        Inputs ``x`` (1, C_{L-2}, H, W) and ``target`` (1, C_L, H_L, W_L); outputs ``mid``,
        ``out``, ``loss`` (float64 scalar, 0.5 * ||out - target||^2, the squares summed along
        each row in float32 and the rows in float64) and ``grad`` (d loss / d x, shaped like
        ``x``).
    """
    if pool_backward not in ("max_unpool", "scatter"):
        raise ValueError(f"pool_backward={pool_backward!r} is not supported. "
                         "Try 'max_unpool' or 'scatter'.")
    g = GraphBuilder(weights, winograd_channels=winograd_channels)
    tape = subnet_forward(g, level, indices=True)
    inputs = [tensor_info("x", *g.dims["x"]), tensor_info("target", *g.dims["out"])]
    outputs = [tensor_info("mid", *g.dims["mid"]), tensor_info("out", *g.dims["out"])]
    grad = subnet_loss(g, outputs)
    masked = False  # the ReLU before a max-pool, already masked at the pooled resolution
    for n, (step, layer, x_in, y, idx) in enumerate(reversed(tape)):
        if step == "pool":
            # Only each window's argmax receives gradient, and its value is the pooled value.
            grad = g.relu_backward(grad, y, "cast")
            masked = True
            grad = g.pool_backward(grad, idx, x_in, pool_backward)
        else:
            if not masked:
                grad = g.relu_backward(grad, y, "cast" if n == 0 else "conv")
            masked = False
            grad = g.conv_backward(grad, layer, like=x_in,
                                   output="grad" if n == len(tape) - 1 else None)
    outputs.append(tensor_info("grad", *g.dims["x"]))
    return g.model(f"vgg19_subnet{level}_target", inputs, outputs,
                   _properties(weights, f"subnet{level}-target-{pool_backward}"
                               f"-winograd{winograd_channels}"))


#: One forward step of a sub-network, for its backward pass:
#: (kind "conv" or "pool", layer, input, output, max-pool indices or None).
TapeStep = tuple[str, str, str, str, "str | None"]


def subnet_forward(g: GraphBuilder, level: int, *, indices: bool) -> list[TapeStep]:
    """The forward pass of the sub-network for ``level`` (2..5) from input ``x`` to ``mid``
    (level L-1) and ``out`` (level L), written into ``g``; returns its steps in order.

    ``indices`` keeps each max-pool's argmax for a backward pass.
    """
    if not 2 <= level <= 5:
        raise ValueError(f"level={level} has no sub-network; expected 2..5")
    g.dims["x"] = (_channels(g.weights, level - 2), "H", "W")
    tape: list[TapeStep] = []
    x = "x"
    for sub_level, final in ((level - 1, "mid"), (level, "out")):
        steps = segment(sub_level)
        for i, (step, layer) in enumerate(steps):
            if step == "pool":
                y, idx = g.pool(x, indices=indices)
                tape.append(("pool", "", x, y, idx))
            else:
                y = g.conv_relu(x, layer, output=final if i == len(steps) - 1 else None)
                tape.append(("conv", layer, x, y, None))
            x = y
    return tape


def subnet_loss(g: GraphBuilder, outputs: list[onnx.ValueInfoProto]) -> str:
    """``loss = 0.5 * ||out - target||^2`` written into ``g`` (and added to ``outputs``);
    returns the name of its gradient with respect to ``out`` (the residual)."""
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
    return grad


def _properties(weights: Any, kind: str) -> dict[str, str]:
    """The metadata every model carries: graph version, kind and the weights it holds."""
    return {
        "gpuanalogy.graph_version": str(GRAPH_VERSION),
        "gpuanalogy.kind": kind,
        "gpuanalogy.weights_digest": str(getattr(weights, "digest", "")),
        "gpuanalogy.weights_source": str(getattr(weights, "source", "")),
    }
