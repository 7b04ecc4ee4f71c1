"""gpuanalogy: visual attribute transfer through Deep Image Analogy (Liao et al., SIGGRAPH 2017).

    >>> import gpuanalogy                                          # doctest: +SKIP
    >>> result = gpuanalogy.analogy(a, b_prime)                    # doctest: +SKIP
    >>> result.a_prime, result.b, result.nnf_ab, result.nnf_ba     # doctest: +SKIP

Names are resolved on first use, so importing the package does not load ONNX Runtime or Numba.
README.md's "Python API" lists every name exported here; the modules hold more
(docs/architecture.md).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# The public API: exactly the names README.md's "Python API" table documents (a test holds the
# two together). Each resolves in its module on first use.
_EXPORTS = {
    "analogy": "pipeline", "AnalogyResult": "pipeline", "SizeNotice": "pipeline",
    "level_preview": "pipeline", "LevelStep": "levels", "Progress": "timing",
    "AnalogyConfig": "config", "VideoConfig": "config", "PRESETS": "config",
    "working_shape": "sizes", "check_memory": "sizes",
    "video_analogy": "video", "Clip": "video", "FrameResult": "video",
    "vgg19_features": "features", "VGG19": "features", "load_network": "features",
    "Backend": "backend", "get_backend": "backend",
    "refine": "refinement",
    "read_image": "images", "write_image": "images", "read_field": "fields",
    "nnf_to_color": "visualize",
    "run_batch_on": "app.cluster", "read_pairs_csv": "app.pairs",
    "GpuAnalogyError": "errors", "InputError": "errors", "ModelError": "errors",
    "DeviceMemoryError": "errors", "NumericalError": "errors",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'gpuanalogy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
