"""A small builder of ONNX graphs for convolutional networks and their hand-written backward.

:class:`GraphBuilder` accumulates nodes and initializers under unique names and remembers the
(channels, symbolic height, symbolic width) of every 4-D tensor, so the model declares them in
``value_info`` (ONNX Runtime's layout optimiser needs to prove tensors alike). Its layer methods
write a 3x3 convolution with ReLU, a 2x2 max-pool and the input-gradients of each;
:mod:`gpuanalogy.vgg_graphs` assembles VGG-19 from them.

A 3x3 convolution between many channels may be written in Winograd's minimal filtering form
F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016)
instead of as one ``Conv``: each 6x6 input tile (tiles step by 4) and each 3x3 kernel are taken
to a 6x6 transform domain, where the convolution is 36 independent channel products (one batched
``MatMul``), and back to a 4x4 output tile. That is 36 multiplications per channel pair and
output tile instead of 144; the transforms cost per channel and tile, not per pair, so the form
pays off only between many channels (``winograd_channels``; docs/performance.md). Its float32
rounding is about ten times the direct form's (the transforms' coefficients reach 8 and 1/24);
the deconvolution's L-BFGS does not tell the two apart (docs/performance.md).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["OPSET", "GraphBuilder", "halved", "tensor_info", "winograd_matrices"]

OPSET = 18

_TILE, _STEP = 6, 4   # F(4x4, 3x3): 6x6 input tiles give 4x4 output tiles


def winograd_matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B^T, G, A^T) of F(4x4, 3x3) in float64, from the interpolation points 0, 1, -1, 2, -2
    and infinity: for a 6x6 input tile d and a 3x3 kernel k, the 4x4 output tile of their
    correlation is ``A^T [(G k G^T) * (B^T d B)] A`` (``*`` elementwise)."""
    bt = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
    g = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)
    at = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                   [0, 1, -1, 8, -8, 1]], np.float64)
    return bt, g, at


class GraphBuilder:
    """Accumulates nodes and initializers with unique names, and the shape of every 4-D tensor
    (channels and symbolic spatial dimensions) for the value_info of the model."""

    def __init__(self, weights: Any, *, winograd_channels: int = 0) -> None:
        self.weights = weights   # convs: layer -> (W, b); ceil_pool: Caffe's pooling rounding
        # 3x3 convolutions with at least this many input and output channels take Winograd's
        # form (0: none do).
        self.winograd_channels = winograd_channels
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

    def conv3x3(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray | None = None,
                stem: str = "conv", output: str | None = None) -> str:
        """``x`` correlated with ``weight`` (K x C x 3 x 3, pad 1, stride 1), plus ``bias`` (K),
        stored as ``<name>_W`` and ``<name>_b``: Winograd's form when K and C both reach
        ``winograd_channels``, else one ``Conv``."""
        k, c = weight.shape[:2]
        if self.winograd_channels and min(k, c) >= self.winograd_channels:
            y = self._winograd(x, name, weight, bias, stem, output)
        else:
            inputs = [x, self.const(f"{name}_W", np.asarray(weight, np.float32))]
            if bias is not None:
                inputs.append(self.const(f"{name}_b", np.asarray(bias, np.float32)))
            (y,) = self.node("Conv", inputs, stem=stem, outputs=[output] if output else None,
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
        if x in self.dims:
            self.dims[y] = (int(k), *self.dims[x][1:])
        return y

    def _winograd(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray | None,
                  stem: str, output: str | None) -> str:
        """:meth:`conv3x3` as F(4x4, 3x3) on ONNX operators, for any spatial size (the input is
        padded to whole tiles and the output cropped back)."""
        k, c = weight.shape[:2]
        bt, g, at = winograd_matrices()
        tiles_in = self.const("winograd_BT", np.einsum("iu,jv->ijuv", bt, bt).reshape(
            _TILE * _TILE, 1, _TILE, _TILE).astype(np.float32))
        tiles_out = self.const("winograd_AT", np.einsum("pi,qj->pqij", at, at).reshape(
            _STEP * _STEP, _TILE * _TILE).astype(np.float32))

        def ints(label: str, values: list[int]) -> str:
            return self.const(f"winograd_{label}", np.array(values, np.int64))

        kernel = self.const(f"{name}_winograd", np.einsum(
            "iu,kcuv,jv->ijkc", g, np.asarray(weight, np.float64), g).reshape(
            _TILE * _TILE, k, c).astype(np.float32))

        # Pad 1 before, 1 + (-size mod 4) after: whole tiles, the convolution's own border.
        (shape,) = self.node("Shape", [x], stem=f"{stem}_shape")
        (size,) = self.node("Slice", [shape, ints("2", [2]), ints("4", [4])], stem=f"{stem}_hw")
        (short,) = self.node("Neg", [size], stem=f"{stem}_neg")
        (extra,) = self.node("Mod", [short, ints("step", [_STEP])], stem=f"{stem}_extra")
        (after,) = self.node("Add", [extra, ints("ones", [1, 1])], stem=f"{stem}_after")
        (pads,) = self.node("Concat", [ints("before", [0, 0, 1, 1]), ints("zeros", [0, 0]), after],
                            stem=f"{stem}_pads", axis=0)
        (padded,) = self.node("Pad", [x, pads], stem=f"{stem}_padded")
        # Input tiles to the transform domain: each channel as an image of its own (1 x C x H x W
        # -> C x 1 x H x W), correlated with the 36 basis kernels B^T e_i e_j^T B at stride 4.
        (planes,) = self.node("Reshape", [padded, ints("planes", [-1, 1, 0, 0])],
                              stem=f"{stem}_planes")
        (v,) = self.node("Conv", [planes, tiles_in], stem=f"{stem}_v",
                         kernel_shape=[_TILE, _TILE], strides=[_STEP, _STEP])
        (grid,) = self.node("Shape", [v], stem=f"{stem}_vshape")
        (grid,) = self.node("Slice", [grid, ints("2", [2]), ints("4", [4])], stem=f"{stem}_grid")
        (v,) = self.node("Reshape", [v, ints("flat_tiles", [0, 0, -1])], stem=f"{stem}_vflat")
        (v,) = self.node("Transpose", [v], stem=f"{stem}_vt", perm=[1, 0, 2])  # 36 x C x tiles
        (m,) = self.node("MatMul", [kernel, v], stem=f"{stem}_m")              # 36 x K x tiles
        (m,) = self.node("Reshape", [m, ints("rows", [_TILE * _TILE, -1])], stem=f"{stem}_mflat")
        (y,) = self.node("MatMul", [tiles_out, m], stem=f"{stem}_tiles")       # 16 x K*tiles
        # 16 x K x tiles is DepthToSpace's "DCR" layout of 1 x K x 4h x 4w: channel
        # (4 p + q) K + k of a tile holds its output pixel (p, q) of channel k.
        (split,) = self.node("Concat", [ints(f"blocks_{k}", [1, _STEP * _STEP * k]), grid],
                             stem=f"{stem}_split", axis=0)
        (y,) = self.node("Reshape", [y, split], stem=f"{stem}_blocks")
        (y,) = self.node("DepthToSpace", [y], stem=f"{stem}_ywhole", blocksize=_STEP,
                         mode="DCR")
        last = [output] if output and bias is None else None
        (y,) = self.node("Slice", [y, ints("zeros", [0, 0]), size, ints("23", [2, 3])],
                         stem=stem, outputs=last)
        if bias is not None:
            b = self.const(f"{name}_b", np.asarray(bias, np.float32).reshape(1, k, 1, 1))
            (y,) = self.node("Add", [y, b], stem=stem, outputs=[output] if output else None)
        return y

    # forward --------------------------------------------------------------------------------
    def conv_relu(self, x: str, layer: str, output: str | None = None) -> str:
        w, b = self.weights.convs[layer]
        pre = self.conv3x3(x, layer, np.asarray(w, np.float32),
                           np.asarray(b, np.float32), stem=f"{layer}_pre")
        outs = [output] if output else None
        y = self.node("Relu", [pre], stem=layer.replace("conv", "relu"), outputs=outs)[0]
        if pre in self.dims:
            self.dims[y] = self.dims[pre]
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
        (m,) = self.node("Cast", [positive], stem="mask", to=TensorProto.FLOAT, like=y)
        return self.node("Mul", [grad, m], stem="grad", like=y)[0]

    def conv_backward(self, grad: str, layer: str, like: str, output: str | None = None) -> str:
        """The input-gradient of ``layer``'s 3x3 convolution: the convolution (:meth:`conv3x3`)
        with the spatially flipped, in/out-transposed kernel."""
        w_np = np.asarray(self.weights.convs[layer][0], np.float32)
        flipped = np.ascontiguousarray(w_np[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        y = self.conv3x3(grad, f"{layer}_flipped", flipped, stem="grad", output=output)
        self.dims[y] = self.dims[like]
        return y

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
