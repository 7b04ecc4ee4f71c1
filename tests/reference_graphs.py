"""Sub-network graphs the tests compare the package's against: forward only, the vector-Jacobian
product, and the reference formulations of the backward pass (``ConvTranspose`` with the forward
weights, ``Where(y > 0, g, 0)`` after every ReLU: graph version 1's).

They reuse the package's forward pass and loss (``vgg_graphs.subnet_forward``,
``vgg_graphs.subnet_loss``) and write only the backward pass their own way.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from gpuanalogy.onnx_graph import GraphBuilder, tensor_info
from gpuanalogy.vgg_graphs import subnet_forward, subnet_loss


def forward_graph(weights: Any, level: int) -> onnx.ModelProto:
    """Input ``x``; outputs ``mid`` and ``out``."""
    g = GraphBuilder(weights)
    subnet_forward(g, level, indices=False)
    return g.model("forward", [tensor_info("x", *g.dims["x"])],
                   [tensor_info("mid", *g.dims["mid"]), tensor_info("out", *g.dims["out"])], {})


def reference_subnet_graph(weights: Any, level: int, *, conv_backward: str = "conv_transpose",
                           pool_backward: str = "max_unpool") -> onnx.ModelProto:
    """The loss graph of ``vgg_graphs.build_subnet_graph`` (same inputs and outputs) with
    ``Where`` masks after every ReLU and the conv gradient as ``conv_backward`` says
    ("conv_transpose" or "flipped_conv")."""
    g = GraphBuilder(weights)
    tape = subnet_forward(g, level, indices=True)
    inputs = [tensor_info("x", *g.dims["x"]), tensor_info("target", *g.dims["out"])]
    outputs = [tensor_info("mid", *g.dims["mid"]), tensor_info("out", *g.dims["out"])]
    _backward(g, tape, subnet_loss(g, outputs), conv_backward, pool_backward)
    outputs.append(tensor_info("grad", *g.dims["x"]))
    return g.model("reference", inputs, outputs, {})


def out_grad_graph(weights: Any, level: int) -> onnx.ModelProto:
    """Inputs ``x`` and ``out_grad`` (shaped like ``out``); outputs ``mid``, ``out`` and
    ``grad``, the gradient of <out, out_grad> with respect to ``x``."""
    g = GraphBuilder(weights)
    tape = subnet_forward(g, level, indices=True)
    g.dims["out_grad"] = g.dims["out"]
    _backward(g, tape, "out_grad", "flipped_conv", "max_unpool")
    return g.model("out_grad", [tensor_info("x", *g.dims["x"]),
                                tensor_info("out_grad", *g.dims["out"])],
                   [tensor_info(name, *g.dims[name]) for name in ("mid", "out", "grad")], {})


def _backward(g: GraphBuilder, tape: list, grad: str, conv_backward: str,
              pool_backward: str) -> None:
    zero = g.const("zero_f32", np.zeros((), np.float32))
    for n, (step, layer, x_in, y, idx) in enumerate(reversed(tape)):
        if step == "pool":
            grad = g.pool_backward(grad, idx, x_in, pool_backward)
            continue
        (positive,) = g.node("Greater", [y, zero], stem="positive")
        (grad,) = g.node("Where", [positive, grad, zero], stem="grad", like=y)
        output = ["grad"] if n == len(tape) - 1 else None
        if conv_backward == "flipped_conv":
            grad = g.conv_backward(grad, layer, like=x_in, output=output and output[0])
        else:
            w, _ = g.conv_weights(layer)
            (grad,) = g.node("ConvTranspose", [grad, w], stem="grad", outputs=output, like=x_in,
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
