"""Deep Image Analogy (Liao et al., SIGGRAPH 2017): the coarse-to-fine loop.

Read top-down, this module is DESIGN.md's algorithm:

1. bring A and B' to the working size and extract VGG-19 features at levels 5..1;
2. at the top, A' borrows A's features and B borrows B''s;
3. for L = 5 down to 1: search both NNFs with PatchMatch over both pairs of maps; then, above
   the bottom level, reconstruct level L-1 of A' (and of B) by deconvolving the other image's
   level-L features warped by the NNF, blend that with the structure image's own features, and
   upsample the NNFs;
4. the level-1 NNFs (optionally aligned to sub-pixel precision, our addition) vote the output
   pixels, which go back to the input sizes;
5. optionally, the WLS photo refinement.

Each stage lives in its own module; this one only wires them.
"""
from __future__ import annotations

import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import io, nnf as nnf_ops, subpixel
from .blending import alpha_for_level, blend, response_mask
from .config import AnalogyConfig
from .deconvolution import DeconvolutionStats, deconvolve_all
from .patchmatch import normalize_features, patchmatch
from .refinement import refine

LEVELS = (5, 4, 3, 2, 1)


class SizeNotice(UserWarning):
    """An input is processed below its own size (the size rule or ``ratio``)."""

LAYERS = {1: "relu1_1", 2: "relu2_1", 3: "relu3_1", 4: "relu4_1", 5: "relu5_1"}


@dataclass(frozen=True)
class Progress:
    """One step of the run, for progress displays: ``done`` of ``total`` steps are finished."""

    stage: str
    level: int
    done: int
    total: int


@dataclass
class AnalogyResult:
    """What an analogy produces.

    Attributes
    ----------
    a_prime : ndarray, shape (H_A, W_A, 3), uint8
        A's structure with B''s appearance, at A's input size.
    b : ndarray, shape (H_B, W_B, 3), uint8
        B''s structure with A's appearance, at B''s input size.
    nnf_ab : ndarray, shape (H_A, W_A, 2), float32
        For each pixel of A, the (row, col) in B' it corresponds to.
    nnf_ba : ndarray, shape (H_B, W_B, 2), float32
        For each pixel of B', the (row, col) in A.
    a_prime_refined, b_refined : ndarray or None
        The outputs after the WLS photo refinement, when ``config.refine`` is set.
    levels : dict
        With ``keep_levels=True``: level -> (A', B) voted from that level's NNFs at input size.
    timings : dict
        Seconds per stage ("features", "patchmatch", "deconvolution", ...).
    deconvolutions : list
        (level, direction, DeconvolutionStats) for every L-BFGS run.
    working_shapes : dict
        "a" and "b_prime": the (H, W) the network saw.
    device : str
        The backend that ran ("cpu" or "cuda").
    """

    a_prime: np.ndarray
    b: np.ndarray
    nnf_ab: np.ndarray
    nnf_ba: np.ndarray
    a_prime_refined: np.ndarray | None = None
    b_refined: np.ndarray | None = None
    levels: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    deconvolutions: list[tuple[int, str, DeconvolutionStats]] = field(default_factory=list)
    working_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    device: str = "cpu"


def working_shape(shape: tuple[int, int], config: AnalogyConfig) -> tuple[int, int]:
    """The size the network sees: the official size rule, then ``config.ratio``.

    Each side is brought into [min_side, max_side] (the long side first), then the area is
    capped at ``max_area``; the ratio applies last.
    """
    h, w = float(shape[0]), float(shape[1])
    for side in (0, 1):
        size = (h, w)[side]
        if size > config.max_side:
            h, w = h * config.max_side / size, w * config.max_side / size
    for side in (0, 1):
        size = (h, w)[side]
        if size < config.min_side:
            h, w = h * config.min_side / size, w * config.min_side / size
    if h * w > config.max_area:
        s = (config.max_area / (h * w)) ** 0.5
        h, w = h * s, w * s
    return max(int(round(h * config.ratio)), 1), max(int(round(w * config.ratio)), 1)


def analogy(a: Any, b_prime: Any, config: AnalogyConfig | None = None, *, model: Any = None,
            on_progress: Callable[[Progress], None] | None = None,
            keep_levels: bool = False) -> AnalogyResult:
    """Deep Image Analogy between ``a`` and ``b_prime``.

    Parameters
    ----------
    a, b_prime : array, shape (H, W, 3) or (H, W), uint8, uint16 or float in [0, 1]
        NumPy, CuPy or any array the ``__array__`` / DLPack protocols convert. They may differ
        in size and aspect.
    config : AnalogyConfig, optional
        Defaults to the official settings (``AnalogyConfig()``).
    model : gpuanalogy.features.VGG19, optional
        A loaded network, to reuse across calls (its backend is the one used).
    on_progress : callable, optional
        Called with a :class:`Progress` at the start of each stage.
    keep_levels : bool
        Also return each level's A' and B (voted from that level's NNFs).

    Returns
    -------
    AnalogyResult

    Examples
    --------
    >>> from skimage import data                              # doctest: +SKIP
    >>> result = analogy(data.astronaut(), data.coffee())    # doctest: +SKIP
    >>> result.a_prime.shape, result.nnf_ab.shape             # doctest: +SKIP
    ((512, 512, 3), (512, 512, 2))
    """
    from .features import VGG19  # noqa: PLC0415 - loads ONNX Runtime; kept off import time

    config = config or AnalogyConfig()
    a_in = io.to_float_image(a, name="a")
    bp_in = io.to_float_image(b_prime, name="b_prime")
    model = model if model is not None else VGG19(config.weights, config.device)
    with model.backend.out_of_memory_as_error(
            f"analogy of {a_in.shape[1]}x{a_in.shape[0]} and {bp_in.shape[1]}x{bp_in.shape[0]}"):
        return _analogy(a_in, bp_in, config, model, on_progress, keep_levels)


def _analogy(a_in: np.ndarray, bp_in: np.ndarray, config: AnalogyConfig, model: Any,
             on_progress: Callable[[Progress], None] | None, keep_levels: bool) -> AnalogyResult:
    backend = model.backend
    clock = _Clock(backend)
    steps = _Steps(on_progress, total=2 * len(LEVELS) - 1 + 2 + config.subpixel + config.refine)
    levels: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    deconvolutions: list[tuple[int, str, DeconvolutionStats]] = []

    # 1. Working size and features. Level 0 is the preprocessed image (the variable of the
    #    last deconvolution); levels 1..5 are relu1_1 .. relu5_1.
    steps("features", 5)
    with clock("features"):
        a_work = _resize01(a_in, _announced_shape("a", a_in.shape[:2], config))
        bp_work = _resize01(bp_in, _announced_shape("b_prime", bp_in.shape[:2], config))
        feat_a = _pyramid(model, backend.asarray(a_work))
        feat_bp = _pyramid(model, backend.asarray(bp_work))
    images_a, images_bp = (a_in, a_work), (bp_in, bp_work)   # input and working size

    # 2. At the top, A' = A and B = B' in feature space.
    feat_a_prime = {5: feat_a[5]}
    feat_b = {5: feat_bp[5]}
    shape = {side: {lv: f.shape[1:] for lv, f in pyr.items()}
             for side, pyr in (("a", feat_a), ("b", feat_bp))}
    init = nnf_ops.identity_nnf if config.nnf_init == "identity" else (
        lambda sa, sb, backend: nnf_ops.random_nnf(sa, sb, config.seed, backend))
    nnf_ab = init(shape["a"][5], shape["b"][5], backend=backend)
    nnf_ba = init(shape["b"][5], shape["a"][5], backend=backend)

    # 3. Coarse to fine.
    for level in LEVELS:
        steps("patchmatch", level)
        with clock("patchmatch"):
            nnf_ab, nnf_ba = _search(level, feat_a, feat_a_prime, feat_b, feat_bp,
                                     nnf_ab, nnf_ba, config, backend)
        if keep_levels:
            with clock("level previews"):
                levels[level] = (
                    _vote(images_bp, images_a, nnf_ab, shape["b"][level], config, backend)[0],
                    _vote(images_a, images_bp, nnf_ba, shape["a"][level], config, backend)[0])
        if level == 1:
            break
        # A' borrows B''s features through nnf_ab, B borrows A's through nnf_ba; the two
        # deconvolutions are independent and may run side by side.
        steps("deconvolution", level)
        outputs = (("a_prime", nnf_ab, feat_a, feat_bp, feat_a_prime),
                   ("b", nnf_ba, feat_bp, feat_a, feat_b))
        with clock("warping"):
            problems = [(model.subnet(level),
                         *_deconvolution_problem(level, nnf, structure, appearance, config,
                                                 backend))
                        for _, nnf, structure, appearance, _ in outputs]
        with clock("deconvolution"):
            solved = deconvolve_all(problems, max_iter=config.lbfgs_iterations,
                                    history=config.lbfgs_history, optimizer=config.optimizer,
                                    backend=backend)
        with clock("blending"):
            for (direction, _, structure, _, rebuilt), (reconstruction, stats) in zip(
                    outputs, solved):
                rebuilt[level - 1] = _blend_with_own(level, structure, reconstruction, config,
                                                     backend)
                deconvolutions.append((level - 1, direction, stats))
        with clock("nnf upsampling"):
            nnf_ab = nnf_ops.upsample_nnf(nnf_ab, shape["a"][level - 1], shape["b"][level - 1],
                                          backend=backend, shape_b_old=shape["b"][level])
            nnf_ba = nnf_ops.upsample_nnf(nnf_ba, shape["b"][level - 1], shape["a"][level - 1],
                                          backend=backend, shape_b_old=shape["a"][level])

    # 4. The level-1 NNFs, optionally aligned to sub-pixel precision on the working-size
    #    images, vote the output pixels; images and fields come back at the input sizes
    #    (config.upsample says how).
    fields = nnf_ops
    if config.subpixel:
        steps("subpixel", 0)
        with clock("subpixel"):
            nnf_ab = subpixel.align(a_work, bp_work, nnf_ab, backend=backend)
            nnf_ba = subpixel.align(bp_work, a_work, nnf_ba, backend=backend)
        fields = subpixel
    steps("output", 0)
    with clock("output"):
        a_prime, nnf_ab_full = _vote(images_bp, images_a, nnf_ab, shape["b"][1], config, backend,
                                     fields)
        b, nnf_ba_full = _vote(images_a, images_bp, nnf_ba, shape["a"][1], config, backend,
                               fields)
    result = AnalogyResult(a_prime, b, nnf_ab_full, nnf_ba_full, levels=levels,
                           deconvolutions=deconvolutions, device=backend.name,
                           working_shapes={"a": a_work.shape[:2], "b_prime": bp_work.shape[:2]})

    # 5. Photo refinement: edges from the structure image, colours from the result.
    if config.refine:
        steps("refinement", 0)
        with clock("refinement"):
            result.a_prime_refined = refine(a_prime, _to_uint8(a_in))
            result.b_refined = refine(b, _to_uint8(bp_in))
    result.timings = dict(clock.seconds)
    return result


def _pyramid(model: Any, image: Any) -> dict[int, Any]:
    """Levels 0..5 of one image: the preprocessed image, then relu1_1 .. relu5_1 (C x H x W)."""
    features = model.features(image)
    pyramid = {level: features[name] for level, name in LAYERS.items()}
    pyramid[0] = model.preprocess(image)
    return pyramid


def _search(level: int, feat_a: dict, feat_a_prime: dict, feat_b: dict, feat_bp: dict,
            nnf_ab: Any, nnf_ba: Any, config: AnalogyConfig, backend: Any) -> tuple[Any, Any]:
    """Both NNFs at one level, each matching over the pairs (A, B) and (A', B')."""
    a, a_prime, b, b_prime = (normalize_features(pyr[level], backend)
                              for pyr in (feat_a, feat_a_prime, feat_b, feat_bp))
    patch_size = config.patch_sizes[level - 1]
    radius = config.radii[level - 1]
    options = dict(patch_size=patch_size, iterations=config.patchmatch_iterations,
                   backend=backend)
    whole = max(*a.shape[:2], *b.shape[:2])
    nnf_ab, _ = patchmatch(a, a_prime, b, b_prime, nnf_ab, radius=radius or whole,
                           seed=config.seed * 10 + level, **options)
    nnf_ba, _ = patchmatch(b_prime, b, a_prime, a, nnf_ba, radius=radius or whole,
                           seed=config.seed * 10 + level + 5, **options)
    return nnf_ab, nnf_ba


def _deconvolution_problem(level: int, nnf: Any, structure: dict, appearance: dict,
                           config: AnalogyConfig, backend: Any) -> tuple[Any, Any]:
    """(x0, target) of the deconvolution that rebuilds level L-1 of ``structure``'s analogy.

    target = appearance^L warped by the NNF; L-BFGS starts at level L-2 from structure^{L-2}
    (official) or from appearance^{L-2} warped by the NNF upsampled there
    (``config.deconv_start``).
    """
    target = _warp_chw(appearance[level], nnf, config.patch_sizes[level - 1], backend)
    if config.deconv_start == "own":
        return structure[level - 2], target
    nnf_start = nnf_ops.upsample_nnf(nnf, structure[level - 2].shape[1:],
                                     appearance[level - 2].shape[1:], backend=backend,
                                     shape_b_old=appearance[level].shape[1:])
    x0 = _warp_chw(appearance[level - 2], nnf_start, config.patch_sizes[max(level - 2, 1) - 1],
                   backend)
    return x0, target


def _blend_with_own(level: int, structure: dict, reconstruction: Any, config: AnalogyConfig,
                    backend: Any) -> Any:
    """Level L-1 of the analogy: the reconstruction, with structure^{L-1} kept where it
    responds strongly (weight alpha_{L-1} * mask)."""
    xp = backend.xp
    own = structure[level - 1]
    mask = response_mask(own, kind=config.mask, k=config.mask_k, tau=config.mask_tau, xp=xp)
    weight = xp.float32(alpha_for_level(config.blend, level - 1)) * mask
    return blend(own, reconstruction, weight)


def _warp_chw(source: Any, nnf: Any, patch_size: int, backend: Any) -> Any:
    """Average-voting warp of a C x H x W map (the kernels work on H x W x C)."""
    xp = backend.xp
    hwc = xp.ascontiguousarray(source.transpose(1, 2, 0))
    warped = nnf_ops.warp(hwc, nnf, patch_size=patch_size, backend=backend)
    return xp.ascontiguousarray(warped.transpose(2, 0, 1))


def _vote(source: tuple[np.ndarray, np.ndarray], layout: tuple[np.ndarray, np.ndarray],
          nnf: Any, nnf_b_shape: tuple, config: AnalogyConfig, backend: Any,
          fields: Any = nnf_ops) -> tuple[np.ndarray, np.ndarray]:
    """An output with ``layout``'s grid voted from ``source`` pixels by ``nnf``.

    ``source`` and ``layout`` are (input-size, working-size) pairs of H x W x 3 float images;
    the field's values index a map of ``nnf_b_shape``. ``fields`` is the module whose
    ``upsample_nnf`` and ``warp`` handle the field: ``gpuanalogy.nnf`` for whole pixels,
    ``gpuanalogy.subpixel`` for aligned ones. Returns the uint8 image at the layout image's
    input size and the field brought to the input sizes (float32). With
    ``config.upsample == "cubic"`` the vote happens at the working size and the image is
    resized; with "nnf" the input-size field votes the input-size pixels.
    """
    (source_in, source_work), (layout_in, layout_work) = source, layout
    full = fields.upsample_nnf(nnf, layout_in.shape[:2], source_in.shape[:2], backend=backend,
                               shape_b_old=nnf_b_shape)
    if config.upsample == "nnf":
        image = backend.to_numpy(fields.warp(backend.asarray(source_in), full,
                                             patch_size=config.output_patch_size,
                                             backend=backend))
    else:
        work = fields.upsample_nnf(nnf, layout_work.shape[:2], source_work.shape[:2],
                                   backend=backend, shape_b_old=nnf_b_shape)
        voted = fields.warp(backend.asarray(source_work), work,
                            patch_size=config.output_patch_size, backend=backend)
        image = _resize01(backend.to_numpy(voted), layout_in.shape[:2])
    return _to_uint8(image), backend.to_numpy(full).astype(np.float32)


def _announced_shape(name: str, shape: tuple[int, int], config: AnalogyConfig) -> tuple[int, int]:
    """The working shape of an input, with a warning when it is smaller than the input."""
    work = working_shape(shape, config)
    if work[0] < shape[0] or work[1] < shape[1]:
        warnings.warn(f"{name}: {shape[1]}x{shape[0]} is processed at {work[1]}x{work[0]} "
                      f"(size rule and ratio); outputs come back at the input size",
                      SizeNotice, stacklevel=4)
    return work


def _resize01(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a float image in [0, 1], clipped back into [0, 1] (cubic overshoots)."""
    if image.shape[:2] == tuple(shape):
        return image
    return np.clip(io.resize_image(image, shape), 0.0, 1.0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


class _Clock:
    """Seconds per stage, with device work finished before each reading."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.backend.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.backend.synchronize()
            self.seconds[stage] += time.perf_counter() - start


class _Steps:
    """Counts stages and reports them to an optional progress callback."""

    def __init__(self, callback: Callable[[Progress], None] | None, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def __call__(self, stage: str, level: int) -> None:
        if self.callback is not None:
            self.callback(Progress(stage, level, self.done, self.total))
        self.done += 1
