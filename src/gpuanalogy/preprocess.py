"""How an RGB image becomes the input of a VGG-19, for the weights it was trained with.

Caffe's VGG-19 takes BGR in [0, 255] less the channel means; torchvision's takes RGB in [0, 1]
normalised by the ImageNet means and deviations. :class:`Preprocess` holds either, and
:class:`~gpuanalogy.weights.VGG19Weights` carries the one that goes with its kernels.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["CAFFE_PREPROCESS", "TORCHVISION_PREPROCESS", "Preprocess"]


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image in [0, 1] becomes the network input (level 0).

    ``x = (rgb[..., order] * scale - mean) / std``, channels first.

    Attributes
    ----------
    bgr : bool
        Reverse the channels (Caffe weights expect BGR).
    scale : float
        255 for Caffe weights, 1 for torchvision weights.
    mean, std : tuple of 3 floats
        In network channel order, in the units after scaling.
    """

    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def apply(self, rgb: Any, xp: ModuleType = np) -> Any:
        """Turn an image into the network input.

        Parameters
        ----------
        rgb : array, shape (H, W, 3)
            RGB in [0, 1] (NumPy or CuPy, any float dtype).
        xp : module
            ``numpy`` or ``cupy``: the array module of ``rgb`` and of the result.

        Returns
        -------
        array, shape (3, H, W), float32, C-contiguous

        Raises
        ------
        InputError
            If ``rgb`` is not H x W x 3.
        """
        rgb = xp.asarray(rgb, dtype=xp.float32)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputError(f"image has shape {tuple(rgb.shape)}; expected (height, width, 3) RGB")
        x = rgb[:, :, ::-1] if self.bgr else rgb
        mean = xp.asarray(self.mean, dtype=xp.float32)
        std = xp.asarray(self.std, dtype=xp.float32)
        x = (x * xp.float32(self.scale) - mean) / std
        return xp.ascontiguousarray(x.transpose(2, 0, 1))

    def invert(self, x: Any, xp: ModuleType = np) -> Any:
        """Undo :meth:`apply`: a (3, H, W) network input back to an (H, W, 3) RGB image (not clipped)."""
        x = xp.asarray(x, dtype=xp.float32)
        if x.ndim != 3 or x.shape[0] != 3:
            raise InputError(f"network input has shape {tuple(x.shape)}; expected (3, height, width)")
        mean = xp.asarray(self.mean, dtype=xp.float32)[:, None, None]
        std = xp.asarray(self.std, dtype=xp.float32)[:, None, None]
        rgb = ((x * std + mean) / xp.float32(self.scale)).transpose(1, 2, 0)
        return xp.ascontiguousarray(rgb[:, :, ::-1] if self.bgr else rgb)


CAFFE_PREPROCESS = Preprocess(bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
TORCHVISION_PREPROCESS = Preprocess(
    bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)
