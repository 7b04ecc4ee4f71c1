"""Deep Image Analogy (Liao et al., SIGGRAPH 2017): the method from two images to two analogies.

Read top-down, :func:`analogy` is DESIGN.md's algorithm:

1. bring A and B' to the working size and extract VGG-19 features at levels 5..1;
2. at the top, A' borrows A's features and B borrows B''s;
3. for L = 5 down to 1, the level step of :mod:`gpuanalogy.levels`: search both NNFs with
   PatchMatch; above the bottom level, reconstruct level L-1 of A' and of B by deconvolution
   and blending, and upsample the NNFs;
4. the level-1 NNFs (optionally aligned to sub-pixel precision, our addition) vote the output
   pixels, which go back to the input sizes;
5. optionally, the WLS photo refinement (above the size-ruled size: solved on the outputs
   reduced to that size and carried up by an edge-aware upsampling, :mod:`gpuanalogy.upsampling`).

Each stage lives in its own module; this one only wires them.

Besides :func:`analogy` and what serves its callers (:func:`level_preview`,
:func:`outputs_from_fields`), this module offers a small internal API to other drivers of the
coarse-to-fine loop (:mod:`gpuanalogy.video` runs one per frame): :func:`working_images` for the
inputs, :func:`run_stages` for the progress plan, and :func:`render` for steps 4 and 5, with
the override points of :class:`gpuanalogy.levels.LevelSolver` for the loop itself.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import subpixel
from .backend import Backend, DeviceName
from .checks import to_float_image
from .colour import transfer
from .config import AnalogyConfig
from .errors import printable
from .features import network_for
from .fields import Field
from .images import resize_image
from .levels import (
    Deconvolution, Images, LevelSolver, LevelStep, Pyramids, coarse_to_fine, initial_fields,
    level_stages, pyramid)
from .refinement import refine
from .sizes import check_memory, guided_refinement_shape, working_shape
from .timing import Clock, Progress, StepReporter
from .texture import grid_scale, textured_vote
from .upsampling import refine_guided

__all__ = ["analogy", "AnalogyResult", "Progress", "SizeNotice", "working_shape",
           "vote_output", "level_preview", "outputs_from_fields",
           # the internal API of other drivers of the loop (gpuanalogy.video)
           "Images", "working_images", "run_stages", "output_stages", "render"]


class SizeNotice(UserWarning):
    """An input is processed below its own size (the size rule or ``ratio``)."""


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
    timings : dict
        Seconds per stage ("features", "patchmatch", "deconvolution", ...).
    deconvolutions : list of gpuanalogy.levels.Deconvolution
        (level, output, DeconvolutionStats) for every L-BFGS run.
    working_shapes : dict
        "a" and "b_prime": the (H, W) the network saw.
    device : str
        The backend that ran ("cpu" or "cuda").
    fields_work : (Field, Field) or None
        The level-1 fields A -> B' and B' -> A at the working size (after any alignment).
    """

    a_prime: np.ndarray
    b: np.ndarray
    nnf_ab: np.ndarray
    nnf_ba: np.ndarray
    a_prime_refined: np.ndarray | None = None
    b_refined: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    deconvolutions: list[Deconvolution] = field(default_factory=list)
    working_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    device: str = "cpu"
    fields_work: tuple[Field, Field] | None = None


def analogy(a: Any, b_prime: Any, config: AnalogyConfig | None = None, *,
            names: tuple[str, str] = ("a", "b_prime"), model: Any = None,
            backend: Backend | DeviceName | None = None,
            on_progress: Callable[[Progress], None] | None = None,
            on_level: Callable[[LevelStep], None] | None = None) -> AnalogyResult:
    """Deep Image Analogy between ``a`` and ``b_prime``.

    Parameters
    ----------
    a, b_prime : array, shape (H, W, 3) or (H, W), uint8, uint16 or float in [0, 1]
        NumPy, CuPy or any array the ``__array__`` / DLPack protocols convert. They may differ
        in size and aspect.
    config : AnalogyConfig, optional
        Defaults to the official settings (``AnalogyConfig()``).
    names : (str, str)
        What errors and notices call ``a`` and ``b_prime`` (their files, say).
    model : gpuanalogy.features.VGG19, optional
        A loaded network, to reuse across calls. Its backend must be the one ``backend`` or
        ``config.device`` asks for. By default the process's network for ``config.weights``
        (:func:`gpuanalogy.features.load_network`).
    backend : Backend or {"auto", "cpu", "cuda"}, optional
        Where to run; defaults to ``config.device``.
    on_progress : callable, optional
        Called with a :class:`Progress` at the start of each stage.
    on_level : callable, optional
        Called with each level's :class:`gpuanalogy.levels.LevelStep` once it is done
        (:func:`level_preview` turns one into that level's A' and B).

    Returns
    -------
    AnalogyResult

    Raises
    ------
    InputError
        An unusable image, or a ``model`` on another device than the one asked for.
    DeviceMemoryError
        Before any work, when the run needs more memory than the machine has free
        (:func:`gpuanalogy.sizes.check_memory`), or when the device runs out.

    Examples
    --------
    >>> from skimage import data                              # doctest: +SKIP
    >>> result = analogy(data.astronaut(), data.coffee())    # doctest: +SKIP
    >>> result.a_prime.shape, result.nnf_ab.shape             # doctest: +SKIP
    ((512, 512, 3), (512, 512, 2))
    """
    config = config or AnalogyConfig()
    labels = (printable(str(names[0])), printable(str(names[1])))
    a_in = to_float_image(a, name=labels[0])
    bp_in = to_float_image(b_prime, name=labels[1])
    model = network_for(model, backend if backend is not None else config.device, config.weights)
    check_memory((a_in.shape[:2], bp_in.shape[:2]), config, on_host=model.backend.on_host,
                 names=labels)
    with model.backend.out_of_memory_as_error(
            f"analogy of {a_in.shape[1]}x{a_in.shape[0]} and {bp_in.shape[1]}x{bp_in.shape[0]}"):
        return _analogy(a_in, bp_in, labels, config, model, on_progress, on_level)


def _analogy(a_in: np.ndarray, bp_in: np.ndarray, labels: tuple[str, str],
             config: AnalogyConfig, model: Any, on_progress: Callable[[Progress], None] | None,
             on_level: Callable[[LevelStep], None] | None) -> AnalogyResult:
    backend = model.backend
    clock = Clock(backend)
    report = StepReporter(on_progress, run_stages(config))

    # 1. Working size (announced before anything runs) and features.
    a, bp = working_images(labels[0], a_in, config), working_images(labels[1], bp_in, config)
    report("features", 5)
    with clock("features"):
        pyramids = Pyramids(pyramid(model, backend.asarray(a.work)),
                            pyramid(model, backend.asarray(bp.work)))

    # 2. At the top, A' = A and B = B' in feature space.
    pyramids.a_prime[5] = pyramids.a[5]
    pyramids.b[5] = pyramids.b_prime[5]

    # 3. Coarse to fine.
    solver = LevelSolver(model, pyramids, config, images=(a, bp), clock=clock, report=report)
    hook = None if on_level is None else clock.timed("on_level", on_level)
    steps = coarse_to_fine(solver, *initial_fields(pyramids, config, backend), on_level=hook)

    # 4.-5. The outputs at the input sizes.
    return render(a, bp, steps, config, backend, clock=clock, report=report)


def render(a: Images, bp: Images, steps: list[LevelStep], config: AnalogyConfig,
           backend: Backend, *, clock: Clock, report: StepReporter) -> AnalogyResult:
    """Steps 4 and 5: the outputs and fields at the input sizes from the loop's ``steps``
    (A and B' as :func:`working_images` gives them), timed by ``clock`` and announced by
    ``report`` (the stages :func:`run_stages` plans after the loop's)."""
    nnf_ab, nnf_ba = steps[-1].nnf_ab, steps[-1].nnf_ba

    # 4. The level-1 NNFs, optionally aligned to sub-pixel precision on the working-size
    #    images, vote the output pixels; images and fields come back at the input sizes
    #    (config.upsample says how).
    if config.subpixel:
        report("subpixel", 0)
        with clock("subpixel"):
            nnf_ab = Field(subpixel.align(a.work, bp.work, nnf_ab.values, backend=backend),
                           nnf_ab.shape_b, subpixel=True)
            nnf_ba = Field(subpixel.align(bp.work, a.work, nnf_ba.values, backend=backend),
                           nnf_ba.shape_b, subpixel=True)
    result = _outputs(a, bp, nnf_ab, nnf_ba, config, backend, clock, report)
    result.deconvolutions = [d for step in steps for d in step.deconvolutions]
    result.working_shapes = {"a": a.work.shape[:2], "b_prime": bp.work.shape[:2]}
    result.fields_work = (nnf_ab, nnf_ba)
    result.timings = dict(clock.seconds)
    return result


def outputs_from_fields(a: Any, b_prime: Any, nnf_ab: Field, nnf_ba: Field,
                        config: AnalogyConfig, backend: Backend) -> AnalogyResult:
    """The outputs :func:`analogy` makes from its level-1 fields, for other output settings.

    One search's fields (``result.fields_work``, or the level-1 ``LevelStep``'s from an
    ``on_level`` hook) give every output setting (``upsample``, ``refine``, ``refine_upsample``,
    ``output_patch_size``) without a new search; ``a`` and ``b_prime`` are the images as given
    to :func:`analogy`. The fields are used as they are (no sub-pixel alignment here).
    """
    a_in, bp_in = to_float_image(a, name="a"), to_float_image(b_prime, name="b_prime")
    return _fields_outputs(_images(a_in, working_shape(a_in.shape[:2], config)),
                           _images(bp_in, working_shape(bp_in.shape[:2], config)),
                           nnf_ab, nnf_ba, config, backend)


def level_preview(step: LevelStep, config: AnalogyConfig) -> tuple[np.ndarray, np.ndarray]:
    """A' and B voted from one level's fields, at the input sizes: a preview of the level,
    for an ``on_level`` hook (the step carries the images).

    Previews are not refined, and "patchmatch" previews are "cubic" ones.
    """
    upsample = "cubic" if config.upsample == "patchmatch" else config.upsample
    result = _fields_outputs(*step.images, step.nnf_ab, step.nnf_ba,
                             config.replace(upsample=upsample, refine=False), step.backend)
    return result.a_prime, result.b


def _fields_outputs(a: Images, bp: Images, nnf_ab: Field, nnf_ba: Field,
                    config: AnalogyConfig, backend: Backend) -> AnalogyResult:
    """:func:`_outputs` on its own clock, with no progress display."""
    clock = Clock(backend)
    result = _outputs(a, bp, nnf_ab, nnf_ba, config, backend, clock,
                      StepReporter(None, output_stages(config)))
    result.timings = dict(clock.seconds)
    return result


def _outputs(a: Images, bp: Images, nnf_ab: Field, nnf_ba: Field, config: AnalogyConfig,
             backend: Backend, clock: Clock, report: StepReporter) -> AnalogyResult:
    """Steps 4 and 5 of :func:`analogy`: the outputs and fields at the input sizes (as
    ``config.upsample`` says) and, with ``config.refine``, the refined outputs."""
    report("output", 0)
    with clock("output"):
        a_prime, nnf_ab_full = vote_output(bp, a, nnf_ab, config, backend)
        b, nnf_ba_full = vote_output(a, bp, nnf_ba, config, backend)
        if config.upsample == "patchmatch":
            (a_prime, nnf_ab_full), (b, nnf_ba_full) = (
                _textured(bp, a, nnf_ab_full, a_prime, b, config, backend),
                _textured(a, bp, nnf_ba_full, b, a_prime, config, backend))
    result = AnalogyResult(a_prime, b, nnf_ab_full, nnf_ba_full, device=backend.name)

    # 5. Photo refinement: edges from the structure image, colours from the result.
    #    Above the working size, config.refine_upsample says how the refinement gets there.
    if config.refine:
        report("refinement", 0)
        with clock("refinement"):
            result.a_prime_refined = _refined(a_prime, a, config, backend)
            result.b_refined = _refined(b, bp, config, backend)

    # Last, colour or texture only (config.transfer): against each output's structure image.
    if config.transfer != "all":
        with clock("transfer"):
            for name, structure in (("a_prime", a), ("b", bp)):
                for attribute in (name, f"{name}_refined"):
                    output = getattr(result, attribute)
                    if output is not None:
                        setattr(result, attribute, transfer(_to_uint8(structure.full), output,
                                                            config.transfer))
    return result


def run_stages(config: AnalogyConfig, *, motion: bool = False) -> list[tuple[str, int]]:
    """The (stage, level) pairs one analogy reports, in order (its :class:`StepReporter`'s
    plan): the features, the motion for a frame started from the one before (``motion``),
    the loop's (:func:`gpuanalogy.levels.level_stages`), then :func:`output_stages`."""
    return [("features", 5), *([("motion", 5)] if motion else []), *level_stages(),
            *([("subpixel", 0)] if config.subpixel else []), *output_stages(config)]


def output_stages(config: AnalogyConfig) -> list[tuple[str, int]]:
    """The stages that make the outputs from the level-1 fields: the vote, then the
    refinement when ``config.refine``."""
    return [("output", 0), *([("refinement", 0)] if config.refine else [])]


def vote_output(source: Images, layout: Images, nnf: Field, config: AnalogyConfig,
                backend: Backend) -> tuple[np.ndarray, np.ndarray]:
    """An output with ``layout``'s grid voted from ``source`` pixels through ``nnf``.

    Returns the uint8 image at the layout image's input size and the field brought to the input
    sizes (float32). With ``config.upsample == "cubic"`` the vote happens at the working size
    and the image is resized; with "nnf" the input-size field votes the input-size pixels;
    "patchmatch" gives the "cubic" output here (its estimate; :func:`analogy` refines on).
    """
    full = nnf.upsampled(layout.full.shape[:2], source.full.shape[:2], backend)
    if config.upsample == "nnf":
        image = backend.to_numpy(full.vote(backend.asarray(source.full),
                                           config.output_patch_size, backend))
    else:
        work = nnf.upsampled(layout.work.shape[:2], source.work.shape[:2], backend)
        image = _resize01(backend.to_numpy(work.vote(backend.asarray(source.work),
                                                     config.output_patch_size, backend)),
                          layout.full.shape[:2])
    return _to_uint8(image), backend.to_numpy(full.values).astype(np.float32)


def _textured(source: Images, layout: Images, field: np.ndarray, estimate: np.ndarray,
              other: np.ndarray, config: AnalogyConfig, backend: Backend
              ) -> tuple[np.ndarray, np.ndarray]:
    """The ``upsample="patchmatch"`` output and field (:func:`gpuanalogy.texture.textured_vote`
    on the "cubic" outputs ``estimate`` and ``other``); inputs no larger than the working size
    keep those given."""
    if layout.full.size <= layout.work.size and source.full.size <= source.work.size:
        return estimate, field
    scale = max(grid_scale(layout.full.shape[:2], layout.work.shape[:2]),
                grid_scale(source.full.shape[:2], source.work.shape[:2]))
    image, refined = textured_vote(field, layout.full, estimate, source.full, other,
                                   scale=scale, vote_patch_size=config.output_patch_size,
                                   seed=config.seed, backend=backend)
    return _to_uint8(image), refined.astype(np.float32)


def _images(image: np.ndarray, work_shape: tuple[int, int]) -> Images:
    return Images(image, _resize01(image, work_shape))


def working_images(name: str, image: np.ndarray, config: AnalogyConfig) -> Images:
    """An input (H, W, 3) float32 and its working-size copy, with a :class:`SizeNotice` when
    the working size is smaller than the input."""
    return _images(image, _announced_shape(name, image.shape[:2], config))


def _refined(output: np.ndarray, layout: Images, config: AnalogyConfig,
             backend: Backend) -> np.ndarray:
    """The refined ``output`` (uint8, at ``layout``'s input size), back on the host: the WLS
    refinement of ``output`` itself, or :func:`gpuanalogy.upsampling.refine_guided` at the
    size :func:`gpuanalogy.sizes.guided_refinement_shape` gives."""
    shape = guided_refinement_shape(layout.full.shape[:2], config)
    if shape is None:
        return backend.to_numpy(refine(backend.asarray(output),
                                       backend.asarray(_to_uint8(layout.full))))
    return refine_guided(output, layout.full, shape, backend=backend)


def _announced_shape(name: str, shape: tuple[int, int], config: AnalogyConfig) -> tuple[int, int]:
    """The working shape of an input, with a warning when it is smaller than the input."""
    work = working_shape(shape, config)
    if work[0] < shape[0] or work[1] < shape[1]:
        warnings.warn(f"{name}: {shape[1]}x{shape[0]} is processed at {work[1]}x{work[0]} "
                      f"(size rule and ratio); outputs come back at the input size",
                      SizeNotice, stacklevel=5)
    return work


def _resize01(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a float image in [0, 1], clipped back into [0, 1] (cubic overshoots)."""
    if image.shape[:2] == tuple(shape):
        return image
    resized = resize_image(image, shape)
    return np.clip(resized, 0.0, 1.0, out=resized)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    scaled = np.asarray(image, dtype=np.float32) * np.float32(255.0)
    np.rint(scaled, out=scaled)
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
