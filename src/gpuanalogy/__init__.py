"""gpuanalogy: visual attribute transfer through Deep Image Analogy (Liao et al., SIGGRAPH 2017).

    >>> import gpuanalogy                                          # doctest: +SKIP
    >>> result = gpuanalogy.analogy(a, b_prime)                    # doctest: +SKIP
    >>> result.a_prime, result.b, result.nnf_ab, result.nnf_ba     # doctest: +SKIP

Names are resolved on first use, so importing the package does not load ONNX Runtime or Numba.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "analogy": "pipeline", "AnalogyResult": "pipeline", "Progress": "pipeline",
    "working_shape": "sizes", "check_memory": "sizes", "memory_needed": "sizes",
    "AnalogyConfig": "config", "PRESETS": "config", "VideoConfig": "config",
    "video_analogy": "video", "Clip": "video", "FrameResult": "video",
    "vgg19_features": "features", "VGG19": "features",
    "Backend": "backend", "get_backend": "backend",
    "refine": "refinement", "wls_filter": "refinement",
    "upsample_colour_change": "upsampling",
    "nnf_to_color": "visualize", "make_sheet": "visualize",
    "read_image": "images", "write_image": "images",
    "GpuAnalogyError": "errors", "InputError": "errors", "ModelError": "errors",
    "DeviceMemoryError": "errors",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'gpuanalogy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
