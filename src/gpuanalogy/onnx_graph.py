"""A small builder of ONNX graphs for convolutional networks and their hand-written backward.

:class:`GraphBuilder` accumulates nodes and initializers under unique names and remembers the
(channels, symbolic height, symbolic width) of every 4-D tensor, so the model declares them in
``value_info`` (ONNX Runtime's layout optimiser needs to prove tensors alike). Its layer methods
write a 3x3 convolution with ReLU, a 2x2 max-pool and the input-gradients of each;
:mod:`gpuanalogy.vgg_graphs` assembles VGG-19 from them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["OPSET", "GraphBuilder", "halved", "tensor_info"]

OPSET = 18


class GraphBuilder:
    """Accumulates nodes and initializers with unique names, and the shape of every 4-D tensor
    (channels and symbolic spatial dimensions) for the value_info of the model."""

    def __init__(self, weights: Any) -> None:
        self.weights = weights   # convs: layer -> (W, b); ceil_pool: Caffe's pooling rounding
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
            self.dims[outs[0]] = (c, halved(h), halved(w))
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
              outputs: list[onnx.ValueInfoProto], properties: dict[str, str]) -> onnx.ModelProto:
        """The checked model, with a value_info for every 4-D tensor and ``properties`` as
        its metadata."""
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        declared = {v.name for v in (*inputs, *outputs)}
        graph.value_info.extend(tensor_info(n, c, h, w) for n, (c, h, w) in self.dims.items()
                                if n not in declared)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="gpuanalogy")
        model.ir_version = min(model.ir_version, 9)  # readable by older onnxruntime releases
        helper.set_model_props(model, properties)
        onnx.checker.check_model(model)
        return model


def halved(dim: str) -> str:
    """Symbolic name of a spatial size after one 2x2 pooling: H -> H_2 -> H_4 ..."""
    stem, _, factor = dim.partition("_")
    return f"{stem}_{2 * int(factor or 1)}"


def tensor_info(name: str, channels: int | str, height: str, width: str,
            elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, [1, channels, height, width])
