"""VGG-19 features and the deconvolution sub-networks, on ONNX Runtime.

:class:`VGG19` loads the weights once and opens one ONNX Runtime session per graph, lazily, from
models built by :mod:`gpuanalogy.vgg_graphs` and kept in the on-disk cache of
:mod:`gpuanalogy.runtime`. :func:`vgg19_features` is the one-call public entry point.
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Any

import numpy as np

from gpuanalogy.backend import Backend, DeviceName, get_backend
from gpuanalogy.errors import InputError
from gpuanalogy.runtime import (
    Runner, cached_model_path, create_session, make_runner)
from gpuanalogy.vgg_graphs import (
    LEVEL_NAMES, POOL_BACKWARD, build_features_graph, build_subnet_graph, level_shape)

__all__ = ["VGG19", "SubNetwork", "vgg19_features", "load_network", "network_for"]

FEATURE_LAYERS = LEVEL_NAMES[1:]  # relu1_1 .. relu5_1


def _resolve_weights(weights: Any) -> Any:
    if weights is None or isinstance(weights, (str, os.PathLike)):
        from gpuanalogy.weights import load_weights  # noqa: PLC0415 - reads model files

        return load_weights(weights)
    return weights


class VGG19:
    """VGG-19 on ONNX Runtime: loads the weights once, owns the sessions (built lazily).

    Parameters
    ----------
    weights : VGG19Weights, path or None
        ``None`` loads the default plain Caffe VGG-19; a path goes to
        :func:`gpuanalogy.weights.load_weights`.
    backend : Backend or {"auto", "cpu", "cuda"}
        Where arrays live and which ONNX Runtime provider is asked for.

    Attributes
    ----------
    weights : VGG19Weights
    backend : Backend
    provider : str
        The execution provider ONNX Runtime uses (e.g. ``"CPUExecutionProvider"``); reading it
        opens the features session if no session is open yet.
    """

    def __init__(self, weights: Any = None, backend: Backend | DeviceName = "auto") -> None:
        self.backend = get_backend(backend)
        self.weights = _resolve_weights(weights)
        self._runners: dict[str, Runner] = {}
        self._subnets: dict[int, SubNetwork] = {}
        # Where the provider has no MaxUnpool kernel (CUDA), ScatterElements (opset 18) gives
        # the same gradients bit for bit.
        self._pool_backward = POOL_BACKWARD if self.backend.max_unpool else "scatter"

    def __repr__(self) -> str:
        return (f"VGG19(weights={getattr(self.weights, 'source', '?')!r}, "
                f"backend={self.backend.name!r})")

    @property
    def provider(self) -> str:
        runner = next(iter(self._runners.values()), None) or self._runner("features")
        return runner.provider

    def _runner(self, kind: str) -> Runner:
        """The runner for graph ``kind``: "features" or "subnet<L>-target" (opened once)."""
        runner = self._runners.get(kind)
        if runner is None:
            path = cached_model_path(self._cache_kind(kind), self.weights,
                                     functools.partial(self._build, kind))
            session, provider = create_session(path, self.backend)
            runner = self._runners[kind] = make_runner(session, provider, self.backend)
        return runner

    def _cache_kind(self, kind: str) -> str:
        if kind == "features":
            return kind
        return f"{kind}-{self._pool_backward}-winograd{self.backend.winograd_channels}"

    def _build(self, kind: str) -> Any:
        if kind == "features":
            return build_features_graph(self.weights)
        level = int(kind.removeprefix("subnet").removesuffix("-target"))
        return build_subnet_graph(self.weights, level, pool_backward=self._pool_backward,
                                  winograd_channels=self.backend.winograd_channels)

    def release(self) -> None:
        """Close every open session (each holds its weights and a memory arena); graphs are
        reopened from the model cache on next use."""
        self._runners.clear()

    def preprocess(self, rgb: Any) -> Any:
        """Level 0: ``rgb`` (H, W, 3) float32 in [0, 1] -> network input (3, H, W) float32."""
        return self.weights.preprocess.apply(rgb, xp=self.backend.xp)

    def features(self, rgb: Any) -> dict[str, Any]:
        """relu1_1 .. relu5_1 of one image.

        Parameters
        ----------
        rgb : array, shape (H, W, 3), float32 in [0, 1], on ``backend.xp``

        Returns
        -------
        dict of str to array, shape (C_l, H_l, W_l), float32, on ``backend.xp``
            Keys ``"relu1_1"`` .. ``"relu5_1"``; with Caffe rounding H_l = ceil(H / 2**(l-1)).
        """
        xp = self.backend.xp
        image = xp.ascontiguousarray(xp.moveaxis(xp.asarray(rgb, dtype=xp.float32), 2, 0)[None])
        outputs = self._runner("features").run({"image": image}, FEATURE_LAYERS)
        return {name: out[0] for name, out in zip(FEATURE_LAYERS, outputs)}

    def subnet(self, level: int) -> SubNetwork:
        """The sub-network from level ``level - 2`` through ``level - 1`` to ``level`` (2..5)."""
        if not isinstance(level, (int, np.integer)) or not 2 <= level <= 5:
            raise ValueError(f"level={level!r} has no sub-network; expected 2, 3, 4 or 5")
        level = int(level)
        if level not in self._subnets:
            self._subnets[level] = SubNetwork(self, level)
        return self._subnets[level]


class SubNetwork:
    """CNN from level L-2 through L-1 to L, with its input-gradient (for the deconvolution).

    Attributes
    ----------
    level : int
        L, 2..5.
    input_layer, mid_layer, output_layer : str
        Names of levels L-2, L-1 and L (``"data"`` is the preprocessed image).
    """

    def __init__(self, model: VGG19, level: int) -> None:
        self._model = model
        self.level = level
        self.input_layer = LEVEL_NAMES[level - 2]
        self.mid_layer = LEVEL_NAMES[level - 1]
        self.output_layer = LEVEL_NAMES[level]

    def __repr__(self) -> str:
        return f"SubNetwork({self.input_layer} -> {self.mid_layer} -> {self.output_layer})"

    def _runner(self, mode: str) -> Runner:
        return self._model._runner(f"subnet{self.level}-{mode}")

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(C_L, H_L, W_L) of the output for an input of shape (C, H, W) at level L-2."""
        weights = self._model.weights
        h, w = x_shape[-2:]
        for level in (self.level - 1, self.level):
            if level >= 2:  # every step but data -> relu1_1 has one 2x2 pool
                h, w = level_shape(h, w, 2, ceil_pool=weights.ceil_pool)
        conv = weights.convs[f"conv{self.level}_1"][0]
        return int(conv.shape[0]), h, w

    def _check(self, x: Any, other: Any, name: str) -> None:
        """The pipeline's own shapes: a mismatch is a bug here, not the caller's input."""
        expected = self.output_shape(x.shape)
        if tuple(other.shape) != expected:
            raise ValueError(f"{name}: shape {tuple(other.shape)} does not match the "
                             f"{self.output_layer} output {expected} of an input of shape "
                             f"{tuple(x.shape)}")

    def loss_and_grad(self, x: Any, target: Any) -> tuple[float, Any]:
        """``0.5 * ||CNN(x) - target||^2`` and its gradient with respect to ``x``.

        Parameters
        ----------
        x : array, shape (C, H, W), float32
            Features at level L-2 (the preprocessed image for L = 2).
        target : array, shape (C_L, H_L, W_L), float32

        Returns
        -------
        loss : float
            The squares summed along each row in float32, the rows in float64.
        grad : array, shape (C, H, W), float32, on ``backend.xp``
        """
        self._check(x, target, "target")
        loss, grad = self._runner("target").run(
            {"x": x[None], "target": target[None]}, ("loss", "grad"))
        return float(loss), grad[0]

    def forward(self, x: Any) -> tuple[Any, Any]:
        """(mid, out): the activations at levels L-1 and L for ``x`` at level L-2.

        Runs the loss+gradient session with a zero target rather than a forward-only graph:
        the deconvolution calls this once per ~100 ``loss_and_grad``, and one session per level
        instead of two saves its weights and its memory arena (hundreds of MB at 448 px).
        """
        xp = self._model.backend.xp
        target = xp.zeros(self.output_shape(x.shape), dtype=xp.float32)
        mid, out = self._runner("target").run(
            {"x": x[None], "target": target[None]}, ("mid", "out"))
        return mid[0], out[0]

    def release(self) -> None:
        """Close this sub-network's sessions and free their memory (reopened on next use)."""
        prefix = f"subnet{self.level}-"
        for key in [k for k in self._model._runners if k.startswith(prefix)]:
            self._model._runners.pop(key, None)


_NETWORKS: dict[tuple[str | None, str], VGG19] = {}
_NETWORKS_LOCK = threading.Lock()


def load_network(weights: Any = None, device: Backend | DeviceName = "auto") -> VGG19:
    """The VGG-19 for ``weights`` on ``device``, loaded once per process and kept.

    With ``weights`` None (the bundled Caffe VGG-19) or a path, and ``device`` a name, every
    call of this process gets the network the first one loaded (one per weights file and
    device: :func:`gpuanalogy.analogy` without a ``model``, a batch, a cluster worker,
    :func:`vgg19_features`). Loaded weights or a :class:`Backend` object give a new network.
    """
    if not isinstance(device, str) or not (weights is None
                                           or isinstance(weights, (str, os.PathLike))):
        return VGG19(weights, device)
    key = (None if weights is None else os.fspath(weights), device)
    with _NETWORKS_LOCK:
        if key not in _NETWORKS:
            _NETWORKS[key] = VGG19(weights, device)  # type: ignore[arg-type]
        return _NETWORKS[key]


def network_for(model: Any, device: Backend | DeviceName, weights: Any = None) -> Any:
    """The network to run: ``model`` when it runs where ``device`` says, else
    :func:`load_network` of ``weights`` on ``device`` when ``model`` is None.

    Raises
    ------
    InputError
        ``model`` runs on another device than the one ``device`` names.
    """
    if model is None:
        return load_network(weights, device)
    wanted = get_backend(device, quiet=True) if not isinstance(device, Backend) else device
    if device != "auto" and model.backend.name != wanted.name:
        raise InputError(f"the model given runs on {model.backend.name} but device "
                         f"{getattr(device, 'name', device)!r} was asked for; pass a model "
                         f"made for that device, or none")
    return model


def vgg19_features(image: Any, *, weights: Any = None,
                   device: DeviceName | Backend = "auto") -> dict[str, np.ndarray]:
    """VGG-19 activations relu1_1 .. relu5_1 of an RGB image.

    Parameters
    ----------
    image : array, shape (H, W, 3), uint8 or float in [0, 1]
        Also greyscale (H, W) and RGBA, as :func:`gpuanalogy.checks.to_float_image` accepts.
    weights : VGG19Weights, path or None
        ``None``: the plain Caffe VGG-19 (Caffe preprocessing, ceil-mode pooling).
    device : {"auto", "cpu", "cuda"} or Backend

    Returns
    -------
    dict of str to ndarray, shape (C_l, H_l, W_l), float32
        ``"relu1_1"`` (64 channels, H x W) .. ``"relu5_1"`` (512 channels, H/16 x W/16,
        rounded up).

    Raises
    ------
    InputError
        Unsupported dtype or shape, too small, NaN/infinite values or floats outside [0, 1].
    ModelError
        The weights cannot be loaded.

    Examples
    --------
    >>> import numpy as np
    >>> feats = vgg19_features(np.zeros((64, 48, 3), np.uint8))      # doctest: +SKIP
    >>> feats["relu3_1"].shape                                        # doctest: +SKIP
    (256, 16, 12)
    """
    from gpuanalogy.checks import to_float_image  # noqa: PLC0415

    rgb = to_float_image(image, name="image")
    model = load_network(weights, device)
    feats = model.features(model.backend.asarray(rgb))
    return {name: model.backend.to_numpy(value) for name, value in feats.items()}
