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
:func:`outputs_from_fields`), other drivers of the coarse-to-fine loop (:mod:`gpuanalogy.video`
runs one per frame) use :func:`working_images`, :func:`run_stages` (the progress plan) and
:func:`render` (steps 4 and 5), with :class:`gpuanalogy.levels.LevelSolver`'s override points.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import subpixel
from .backend import Backend, DeviceName
from .checks import to_float_image
from .config import AnalogyConfig
from .errors import Notice, printable
from .exemplars import (
    atlas_images, atlas_pyramid, check_exemplars, exemplar_start, locate, split_field)
from .features import network_for
from .fields import Field
from .guides import Guides, guides_for
from .levels import (
    Deconvolution, Images, LevelSolver, LevelStep, Pyramids, coarse_to_fine, initial_fields,
    level_stages, pyramid)
from .sizes import check_memory, working_shape
from .timing import Clock, Progress, StepReporter
from .voting import refined, resize01, textured, transferred, vote_output

__all__ = ["analogy", "AnalogyResult", "Progress", "SizeNotice", "working_shape", "vote_output",
           "level_preview", "outputs_from_fields",  # and for other drivers (gpuanalogy.video):
           "Images", "working_images", "run_stages", "output_stages", "render"]


class SizeNotice(Notice):
    """An input is processed below its own size (the size rule or ``ratio``)."""


@dataclass
class AnalogyResult:
    """What an analogy produces.

    With a list of exemplars (``analogy(a, [b1, b2, ...])``) the B side's outputs are lists,
    one per exemplar, and ``exemplar_ab`` says which exemplar each match of A is in.

    Attributes
    ----------
    a_prime : ndarray, shape (H_A, W_A, 3), uint8
        A's structure with B''s appearance, at A's input size.
    b : ndarray, shape (H_B, W_B, 3), uint8, or list of them
        B''s structure with A's appearance, at B''s input size; None when
        ``config.outputs == "a_prime"``.
    nnf_ab : ndarray, shape (H_A, W_A, 2), float32
        For each pixel of A, the (row, col) in B' (in exemplar ``exemplar_ab``) it
        corresponds to.
    nnf_ba : ndarray, shape (H_B, W_B, 2), float32, or list of them
        For each pixel of B', the (row, col) in A.
    a_prime_refined, b_refined : ndarray (list for ``b_refined`` with a list) or None
        The outputs after the WLS photo refinement, when ``config.refine`` is set (no
        ``b_refined`` with ``outputs="a_prime"``).
    timings : dict
        Seconds per stage ("features", "patchmatch", "deconvolution", ...).
    deconvolutions, warped : list
        (level, output, DeconvolutionStats) of every L-BFGS run (``levels.Deconvolution``), and
        (level, output) of every level rebuilt by a warp instead (``LevelStep.warped``).
    working_shapes : dict
        "a" and "b_prime": the (H, W) the network saw (a list for a list of exemplars).
    device : str
        The backend that ran ("cpu" or "cuda").
    fields_work : (Field, Field) or None
        The level-1 fields A -> B' and B' -> A at the working size (after any alignment);
        with several exemplars B' is their atlas (:mod:`gpuanalogy.exemplars`).
    exemplar_ab : ndarray, shape (H_A, W_A), uint8, or None
        With a list of exemplars, the index of the exemplar of each match of A.
    """

    a_prime: np.ndarray
    b: Any
    nnf_ab: np.ndarray
    nnf_ba: Any
    a_prime_refined: np.ndarray | None = None
    b_refined: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    deconvolutions: list[Deconvolution] = field(default_factory=list)
    warped: list[tuple[int, str]] = field(default_factory=list)
    working_shapes: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    fields_work: tuple[Field, Field] | None = None
    exemplar_ab: np.ndarray | None = None

    def as_lists(self) -> "AnalogyResult":
        """One exemplar's result as a list of exemplars' (what a list of one gives)."""
        return replace(self, b=None if self.b is None else [self.b], nnf_ba=[self.nnf_ba],
                       b_refined=None if self.b_refined is None else [self.b_refined],
                       exemplar_ab=np.zeros(self.a_prime.shape[:2], np.uint8),
                       working_shapes={**self.working_shapes,
                                       "b_prime": [self.working_shapes["b_prime"]]})


def analogy(a: Any, b_prime: Any, config: AnalogyConfig | None = None, *,
            names: tuple[str, ...] = ("a", "b_prime"), regions: tuple[Any, Any] | None = None,
            model: Any = None, backend: Backend | DeviceName | None = None,
            on_progress: Callable[[Progress], None] | None = None,
            on_level: Callable[[LevelStep], None] | None = None) -> AnalogyResult:
    """Deep Image Analogy between ``a`` and ``b_prime``.

    Parameters
    ----------
    a, b_prime : array, shape (H, W, 3) or (H, W), uint8, uint16 or float in [0, 1]
        NumPy, CuPy or any array the ``__array__`` / DLPack protocols convert. They may differ
        in size and aspect. ``b_prime`` may be a list of exemplars: one search finds each
        patch of A in the exemplar that fits it best (DESIGN.md, "Several exemplars"), and
        the result's B side is a list.
    config : AnalogyConfig, optional
        Defaults to the official settings (``AnalogyConfig()``).
    names : tuple of str
        What errors and notices call ``a`` and the exemplars (their files, say).
    regions : (labels_a, labels_b), optional
        Region masks (DESIGN.md, "Region masks"): label images of A's and B''s sizes,
        (H, W) non-negative integers or (H, W, 3) uint8 colours; a match joins pixels of one
        label only, at every level, and the votes take no pixel across labels. Label 0
        (black) matches freely. With a list of exemplars ``labels_b`` is a list too.
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
        An unusable image or label image, a label on one side only, or ``model`` elsewhere.
    DeviceMemoryError
        Before any work, when the run needs more memory than is free (every exemplar counted
        by :func:`gpuanalogy.sizes.check_memory`), or when the device runs out.
    ModelError, NumericalError
        Unreadable weights; a deconvolution's loss or gradient NaN or infinite (named level).

    Examples
    --------
    >>> from skimage import data                              # doctest: +SKIP
    >>> result = analogy(data.astronaut(), data.coffee())    # doctest: +SKIP
    >>> result.a_prime.shape, result.nnf_ab.shape             # doctest: +SKIP
    ((512, 512, 3), (512, 512, 2))
    """
    config = config or AnalogyConfig()
    listed = isinstance(b_prime, (list, tuple))
    exemplars = list(b_prime) if listed else [b_prime]
    check_exemplars(config, len(exemplars))
    labels = _input_names(names, len(exemplars))
    a_in = to_float_image(a, name=labels[0])
    bp_in = [to_float_image(b, name=name) for b, name in zip(exemplars, labels[1:])]
    guides = guides_for(regions, [(x.shape[:2], working_shape(x.shape[:2], config))
                                  for x in (a_in, *bp_in)], labels)
    model = network_for(model, backend if backend is not None else config.device, config.weights)
    check_memory((a_in.shape[:2], *(b.shape[:2] for b in bp_in)), config,
                 on_host=model.backend.on_host, names=labels)
    sizes = " and ".join(f"{x.shape[1]}x{x.shape[0]}" for x in (a_in, *bp_in))
    with model.backend.out_of_memory_as_error(f"analogy of {sizes}"):
        result = _analogy(a_in, bp_in, labels, guides, config, model, on_progress, on_level)
    return result.as_lists() if listed and len(bp_in) == 1 else result


def _input_names(names: tuple[str, ...], count: int) -> tuple[str, ...]:
    """The names of A and of ``count`` exemplars, printable: as given, or numbered."""
    names = (*names, *("a", "b_prime")[len(names):])   # one name alone is A's
    if len(names) != count + 1:
        names = (names[0], *(f"{names[1]}[{k + 1}]" for k in range(count))) if count > 1 \
            else (names[0], names[1])
    return tuple(printable(str(name)) for name in names)


def _analogy(a_in: np.ndarray, bp_in: list[np.ndarray], labels: tuple[str, ...],
             guides: Guides | None, config: AnalogyConfig, model: Any,
             on_progress: Callable[[Progress], None] | None,
             on_level: Callable[[LevelStep], None] | None) -> AnalogyResult:
    backend = model.backend
    clock = Clock(backend)
    report = StepReporter(on_progress, run_stages(config))

    # 1. Working size (announced before anything runs), the constraints and the features.
    #    Several exemplars make one atlas, the B' side of the loop (gpuanalogy.exemplars).
    a = working_images(labels[0], a_in, config)
    exemplars = [working_images(name, image, config) for name, image in zip(labels[1:], bp_in)]
    several = len(exemplars) > 1
    bp = atlas_images(exemplars, guides) if several else exemplars[0]  # type: ignore[arg-type]
    report("features", 5)
    with clock("features"):
        b_side = (atlas_pyramid(model, exemplars, guides.atlas[0], backend)  # type: ignore
                  if several else pyramid(model, backend.asarray(bp.work)))
        pyramids = Pyramids(pyramid(model, backend.asarray(a.work)), b_side)

    # 2. At the top, A' = A and B = B' in feature space.
    pyramids.a_prime[5] = pyramids.a[5]
    pyramids.b[5] = pyramids.b_prime[5]

    # 3. Coarse to fine.
    solver = LevelSolver(model, pyramids, config, images=(a, bp), clock=clock, report=report,
                         guides=guides)
    hook = None if on_level is None else clock.timed("on_level", on_level)
    start_ab, start_ba = initial_fields(pyramids, config, backend)
    if several:
        start_ab = exemplar_start(pyramids, guides, config, backend)  # type: ignore[arg-type]
    steps = coarse_to_fine(solver, start_ab, start_ba, on_level=hook)

    # 4.-5. The outputs at the input sizes.
    return render(a, bp, steps, config, backend, clock=clock, report=report,
                  exemplars=exemplars)


def render(a: Images, bp: Images, steps: list[LevelStep], config: AnalogyConfig,
           backend: Backend, *, clock: Clock, report: StepReporter,
           exemplars: list[Images] | None = None) -> AnalogyResult:
    """Steps 4 and 5: the outputs and fields at the input sizes from the loop's ``steps``
    (A and B' as :func:`working_images` gives them; with several ``exemplars`` B' is their
    atlas), timed by ``clock`` and announced by ``report`` (the stages :func:`run_stages`
    plans after the loop's)."""
    nnf_ab, nnf_ba, guides = steps[-1].nnf_ab, steps[-1].nnf_ba, steps[-1].guides

    # 4. The level-1 NNFs, optionally aligned to sub-pixel precision on the working-size
    #    images, vote the output pixels; images and fields come back at the input sizes.
    if config.subpixel:
        report("subpixel", 0)
        with clock("subpixel"):
            nnf_ab = Field(subpixel.align(a.work, bp.work, nnf_ab.values, backend=backend),
                           nnf_ab.shape_b, subpixel=True)
            nnf_ba = Field(subpixel.align(bp.work, a.work, nnf_ba.values, backend=backend),
                           nnf_ba.shape_b, subpixel=True)
    result = _outputs(a, bp, exemplars or [bp], nnf_ab, nnf_ba, guides, config, backend, clock,
                      report)
    result.deconvolutions = [d for step in steps for d in step.deconvolutions]
    result.warped = [w for step in steps for w in step.warped]
    result.working_shapes = {"a": a.work.shape[:2], "b_prime": bp.work.shape[:2]} \
        if exemplars is None or len(exemplars) == 1 else \
        {"a": a.work.shape[:2], "b_prime": [x.work.shape[:2] for x in exemplars]}
    result.fields_work = (nnf_ab, nnf_ba)
    result.timings = dict(clock.seconds)
    return result


def outputs_from_fields(a: Any, b_prime: Any, nnf_ab: Field, nnf_ba: Field,
                        config: AnalogyConfig, backend: Backend) -> AnalogyResult:
    """The outputs :func:`analogy` makes from its level-1 fields, for other output settings.

    One search's fields (``result.fields_work``, or the level-1 ``LevelStep``'s from an
    ``on_level`` hook) give every output setting (``upsample``, ``refine``, ``refine_upsample``,
    ``output_patch_size``) without a new search; ``a`` and ``b_prime`` are the images as given
    to :func:`analogy` (one exemplar, no region masks). The fields are used as they are (no
    sub-pixel alignment here).
    """
    a_in, bp_in = to_float_image(a, name="a"), to_float_image(b_prime, name="b_prime")
    return _fields_outputs(_images(a_in, working_shape(a_in.shape[:2], config)),
                           _images(bp_in, working_shape(bp_in.shape[:2], config)),
                           nnf_ab, nnf_ba, None, config, backend)


def level_preview(step: LevelStep,
                  config: AnalogyConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """A' and B voted from one level's fields, at the input sizes: a preview of the level,
    for an ``on_level`` hook (the step carries the images; B is None with
    ``outputs="a_prime"``). With several exemplars B is the atlas's.

    Previews are not refined, and "patchmatch" previews are "cubic" ones.
    """
    upsample = "cubic" if config.upsample == "patchmatch" else config.upsample
    result = _fields_outputs(*step.images, step.nnf_ab, step.nnf_ba, step.guides,
                             config.replace(upsample=upsample, refine=False), step.backend)
    return result.a_prime, result.b


def _fields_outputs(a: Images, bp: Images, nnf_ab: Field, nnf_ba: Field, guides: Guides | None,
                    config: AnalogyConfig, backend: Backend) -> AnalogyResult:
    """:func:`_outputs` on its own clock, with no progress display (B' as one image)."""
    clock = Clock(backend)
    result = _outputs(a, bp, [bp], nnf_ab, nnf_ba, guides, config, backend, clock,
                      StepReporter(None, output_stages(config)))
    result.timings = dict(clock.seconds)
    return result


def _outputs(a: Images, bp: Images, exemplars: list[Images], nnf_ab: Field, nnf_ba: Field,
             guides: Guides | None, config: AnalogyConfig, backend: Backend, clock: Clock,
             report: StepReporter) -> AnalogyResult:
    """Steps 4 and 5 of :func:`analogy`: the outputs and fields at the input sizes (as
    ``config.upsample`` says), with ``config.refine`` the refined outputs, and the transfer
    of ``config.transfer``. A' is voted from ``bp``; with several ``exemplars`` (``bp`` their
    atlas) each B is voted on its exemplar's grid through its part of ``nnf_ba``. With
    ``config.outputs == "a_prime"`` B is voted only as the guide of A''s "patchmatch"
    upsampling (the search's A/B term) and is not returned."""
    several = len(exemplars) > 1
    fields_ba = split_field(nnf_ba, guides, backend) if several else [nnf_ba]
    own = [guides.exemplar(k) for k in range(len(exemplars))] if several else [guides]
    report("output", 0)
    both = config.outputs == "both"
    with clock("output"):
        a_prime, nnf_ab_full = vote_output(bp, a, nnf_ab, config, backend, guides, "ab")
        bs = [vote_output(a, x, f, config, backend, g, "ba")  # type: ignore[arg-type]
              for x, f, g in zip(exemplars, fields_ba, own)]
        if config.upsample == "patchmatch":
            other = guides.atlas[1].assemble([b for b, _ in bs], np) if several \
                else bs[0][0]  # type: ignore[union-attr]
            estimate = a_prime
            a_prime, nnf_ab_full = textured(bp, a, nnf_ab_full, a_prime, other, config,
                                            backend, guides, "ab")
            if both:
                bs = [textured(a, x, f, b, estimate, config, backend, g, "ba")
                      for x, (b, f), g in zip(exemplars, bs, own)]
    exemplar_ab = None
    if several:
        nnf_ab_full, exemplar_ab = locate(nnf_ab_full, guides)  # type: ignore[arg-type]
    result = AnalogyResult(a_prime, [b for b, _ in bs] if both else None, nnf_ab_full,
                           [f for _, f in bs], device=backend.name, exemplar_ab=exemplar_ab)

    # 5. Photo refinement: edges from the structure image, colours from the result.
    #    Above the working size, config.refine_upsample says how the refinement gets there.
    if config.refine:
        report("refinement", 0)
        with clock("refinement"):
            result.a_prime_refined = refined(a_prime, a, config, backend)
            if both:
                result.b_refined = [refined(b, x, config, backend)
                                    for b, x in zip(result.b, exemplars)]

    # Last, colour or texture only (config.transfer): against each output's structure image.
    if config.transfer != "all":
        with clock("transfer"):
            result.a_prime = transferred(result.a_prime, a, config)
            result.a_prime_refined = transferred(result.a_prime_refined, a, config)
            if both:
                result.b = [transferred(b, x, config) for b, x in zip(result.b, exemplars)]
            if result.b_refined is not None:
                result.b_refined = [transferred(b, x, config)
                                    for b, x in zip(result.b_refined, exemplars)]
    if not several:
        result.nnf_ba = result.nnf_ba[0]
        result.b = result.b[0] if both else None
        result.b_refined = None if result.b_refined is None else result.b_refined[0]
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


def _images(image: np.ndarray, work_shape: tuple[int, int]) -> Images:
    return Images(image, resize01(image, work_shape))


def working_images(name: str, image: np.ndarray, config: AnalogyConfig) -> Images:
    """An input (H, W, 3) float32 and its working-size copy, with a :class:`SizeNotice` when
    the working size is smaller than the input."""
    return _images(image, _announced_shape(name, image.shape[:2], config))


def _announced_shape(name: str, shape: tuple[int, int], config: AnalogyConfig) -> tuple[int, int]:
    """The working shape of an input, with a warning when it is smaller than the input."""
    work = working_shape(shape, config)
    if work[0] < shape[0] or work[1] < shape[1]:
        warnings.warn(f"{name}: {shape[1]}x{shape[0]} is processed at {work[1]}x{work[0]} "
                      f"(size rule and ratio); outputs come back at the input size",
                      SizeNotice, stacklevel=5)
    return work
