"""The coarse-to-fine loop of Deep Image Analogy: a driver over levels 5..1 and the step at one.

:func:`coarse_to_fine` runs a per-level step at L = 5 down to 1, each starting from the fields
the previous level handed on, and shows every finished level to an optional ``on_level`` hook
(previews, diagnostics). :class:`LevelSolver` is the method's step (DESIGN.md, step 3): search
both NNFs with PatchMatch over both pairs of maps; then, above the bottom level, rebuild level
L-1 of A' and of B by deconvolving the other image's level-L features warped by the NNF and
blending the reconstruction with the structure image's own features, and upsample the fields.

With ``config.outputs == "a_prime"`` the search is the same (both fields, the whole energy),
but B is never deconvolved: its level L-1 is A's own level-L-1 features warped by the B' -> A
field upsampled there, blended with B''s features as a reconstruction would be. B exists only
to guide the A -> B' search's A/B term, and the warp gives it A's appearance on B''s layout,
which is what the deconvolution aims at, without the runs that only B needs.
The measurements behind the choice (against dropping B's term or letting B' stand for B) are
in docs/performance.md, "A' alone". Under the adaptive stop the top level's reconstruction
(relu4_1) is such a warp on both sides, and B's relu3_1 below it
(:data:`gpuanalogy.deconvolution.ADAPTIVE_WARP`; docs/performance.md, "The top level by a
warp", "B's relu3_1 by a warp").
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import nnf as nnf_ops
from .backend import Backend
from .blending import alpha_for_level, blend, response_mask
from .config import AnalogyConfig
from .deconvolution import Deconvolved, DeconvolutionStats, deconvolve, warps
from .fields import Field
from .guides import Guides
from .patchmatch import normalize_features, patchmatch
from .regions import Labels
from .vgg_graphs import LEVEL_NAMES

__all__ = ["LEVELS", "Images", "Pyramids", "Deconvolution", "LevelStep", "LevelOutput",
           "LevelSolver", "coarse_to_fine", "level_stages", "pyramid", "initial_fields"]

#: The levels of the loop, coarse to fine (relu5_1 .. relu1_1).
LEVELS = (5, 4, 3, 2, 1)


@dataclass(frozen=True)
class Images:
    """One input at its own size and at the working size, H x W x 3 float32 in [0, 1], on
    the host (:func:`gpuanalogy.pipeline.working_images` makes them)."""

    full: Any
    work: Any


@dataclass
class Pyramids:
    """The four feature pyramids, level -> array (C, H, W) float32 on the backend.

    Level 0 is the preprocessed image (the variable of the last deconvolution), levels 1..5 are
    relu1_1 .. relu5_1. ``a`` and ``b_prime`` are complete from the start; ``a_prime`` and
    ``b`` begin at level 5 (A's and B''s own) and gain a level at every step of the loop.
    """

    a: dict[int, Any]
    b_prime: dict[int, Any]
    a_prime: dict[int, Any] = field(default_factory=dict)
    b: dict[int, Any] = field(default_factory=dict)

    def shape(self, side: str, level: int) -> tuple[int, int]:
        """(H, W) of level ``level`` of A's side (``"a"``) or B's side (``"b"``)."""
        maps = self.a if side == "a" else self.b_prime
        return tuple(maps[level].shape[1:])  # type: ignore[return-value]


class Deconvolution(NamedTuple):
    """One deconvolution: the level it rebuilt, of which output, and what L-BFGS did."""

    level: int
    output: str
    stats: DeconvolutionStats


@dataclass(frozen=True)
class LevelStep:
    """One finished level, as ``on_level`` sees it.

    Attributes
    ----------
    level : int
    backend : Backend
        Where the maps and fields live.
    pyramids : Pyramids
        The maps the search matched at this level are ``pyramids.<side>[level]``.
    images : (Images, Images)
        A and B' at their input and working sizes: what a preview of the level votes
        (:func:`gpuanalogy.pipeline.level_preview`).
    start_ab, start_ba : Field
        The fields the search started from (identity or random at level 5, else the
        upsampled fields of the level above).
    nnf_ab, nnf_ba : Field
        The fields it found.
    next_ab, next_ba : Field or None
        The found fields upsampled to level L-1 (None at level 1).
    deconvolutions : tuple of Deconvolution
        The deconvolutions of level L-1, A''s and B's (none at level 1; A''s alone with
        ``outputs="a_prime"``, where B's level is a warp, and where the adaptive stop warps B's,
        at level 4; none where it warps both, at level 5).
    guides : Guides or None
        The region labels and the atlas of several exemplars the run obeys.
    warped : tuple of (int, str)
        (level L-1, output) of each output whose level L-1 was rebuilt by a warp instead of a
        deconvolution (:meth:`LevelSolver.warped`).
    """

    level: int
    backend: Backend
    pyramids: Pyramids
    images: tuple[Images, Images]
    start_ab: Field
    start_ba: Field
    nnf_ab: Field
    nnf_ba: Field
    next_ab: Field | None = None
    next_ba: Field | None = None
    deconvolutions: tuple[Deconvolution, ...] = ()
    guides: Guides | None = None
    warped: tuple[tuple[int, str], ...] = ()


def coarse_to_fine(step: Callable[[int, Field, Field], LevelStep], nnf_ab: Field,
                   nnf_ba: Field, *, on_level: Callable[[LevelStep], None] | None = None
                   ) -> list[LevelStep]:
    """Run ``step(level, nnf_ab, nnf_ba)`` at levels 5..1, each from the fields handed on.

    Returns every level's :class:`LevelStep`, coarse to fine; the last holds the final fields.
    """
    steps = []
    for level in LEVELS:
        done = step(level, nnf_ab, nnf_ba)
        if on_level is not None:
            on_level(done)
        steps.append(done)
        nnf_ab, nnf_ba = done.next_ab, done.next_ba  # type: ignore[assignment]
    return steps


def level_stages() -> list[tuple[str, int]]:
    """The (stage, level) pairs :class:`LevelSolver` reports over the loop, in order: the
    search at every level, the deconvolution at every level but the last."""
    return [(stage, level) for level in LEVELS
            for stage in ("patchmatch", "deconvolution")[:1 if level == 1 else 2]]


def pyramid(model: Any, image: Any) -> dict[int, Any]:
    """Levels 0..5 of one image (H, W, 3) on the backend: the preprocessed image, then
    relu1_1 .. relu5_1 (C x H x W)."""
    features = model.features(image)
    maps = {level: features[LEVEL_NAMES[level]] for level in range(1, 6)}
    maps[0] = model.preprocess(image)
    return maps


def initial_fields(pyramids: Pyramids, config: AnalogyConfig,
                   backend: Backend) -> tuple[Field, Field]:
    """The fields the search starts from at level 5: identity (official) or random (paper)."""
    shape_a, shape_b = pyramids.shape("a", 5), pyramids.shape("b", 5)
    if config.nnf_init == "identity":
        ab, ba = (nnf_ops.identity_nnf(shape_a, shape_b, backend),
                  nnf_ops.identity_nnf(shape_b, shape_a, backend))
    else:
        ab, ba = (nnf_ops.random_nnf(shape_a, shape_b, config.seed, backend),
                  nnf_ops.random_nnf(shape_b, shape_a, config.seed, backend))
    return Field(ab, shape_b), Field(ba, shape_a)


@dataclass(frozen=True)
class LevelOutput:
    """One analogy a level rebuilds: A' (structure A, appearance B') or B (the other way).

    ``name`` is "a_prime" or "b"; ``nnf`` the level's field from the structure image to the
    appearance image; the three pyramids map level -> (C, H, W) maps, and ``rebuilt`` (the
    output's own) gains level L-1 when the level is done.
    """

    name: str
    nnf: Field
    structure: dict[int, Any]
    appearance: dict[int, Any]
    rebuilt: dict[int, Any]

    @property
    def direction(self) -> str:
        """The search direction of ``nnf``: "ab" (A -> B') for A', "ba" for B."""
        return "ab" if self.name == "a_prime" else "ba"


class LevelSolver:
    """The method's step at one level (see the module docstring), as :func:`coarse_to_fine`
    calls it.

    ``clock(stage)`` is a context manager timing a stage; ``report(stage, level)`` announces
    one to the progress display (the stages of :func:`level_stages`); ``images`` (A and B')
    are handed on in every :class:`LevelStep`. ``guides`` (region labels, the atlas of several
    exemplars) constrain the searches and the warps of every level.

    A driver that starts the loop from earlier work (:mod:`gpuanalogy.video`) subclasses it and
    overrides only the methods :data:`OVERRIDE_POINTS` names (a test holds subclasses in the
    package to them): :meth:`start` (the fields a level's search starts from), :meth:`search`,
    :meth:`level_warped` (which outputs' levels are warped instead of deconvolved),
    :meth:`deconvolution_problem` (where a deconvolution starts) and :meth:`deconvolve`. The
    other methods are helpers an override may call.
    """

    #: The methods a subclass may override.
    OVERRIDE_POINTS = ("start", "search", "level_warped", "deconvolution_problem", "deconvolve")

    def __init__(self, model: Any, pyramids: Pyramids, config: AnalogyConfig, *,
                 images: tuple[Images, Images], clock: Callable[[str], Any],
                 report: Callable[[str, int], None], guides: Guides | None = None) -> None:
        self.model, self.pyramids, self.config, self.images = model, pyramids, config, images
        self.backend: Backend = model.backend
        self.clock, self.report, self.guides = clock, report, guides

    def __call__(self, level: int, start_ab: Field, start_ba: Field) -> LevelStep:
        start_ab, start_ba = self.start(level, start_ab, start_ba)
        self.report("patchmatch", level)
        with self.clock("patchmatch"):
            nnf_ab, nnf_ba = self.search(level, start_ab, start_ba)
        if level == 1:
            return LevelStep(level, self.backend, self.pyramids, self.images, start_ab, start_ba,
                             nnf_ab, nnf_ba, guides=self.guides)
        self.report("deconvolution", level)
        done, warped = self.reconstruct(level, nnf_ab, nnf_ba)
        with self.clock("nnf upsampling"):
            next_ab = nnf_ab.upsampled(self.pyramids.shape("a", level - 1),
                                       self.pyramids.shape("b", level - 1), self.backend)
            next_ba = nnf_ba.upsampled(self.pyramids.shape("b", level - 1),
                                       self.pyramids.shape("a", level - 1), self.backend)
        return LevelStep(level, self.backend, self.pyramids, self.images, start_ab, start_ba,
                         nnf_ab, nnf_ba, next_ab, next_ba, done, self.guides, warped)

    def start(self, level: int, start_ab: Field, start_ba: Field) -> tuple[Field, Field]:
        """Override point: the fields the search at ``level`` starts from, given those the
        level above handed on (identity or random at level 5); the method takes them as
        they are."""
        return start_ab, start_ba

    def search(self, level: int, nnf_ab: Field, nnf_ba: Field,
               maps: tuple[Any, Any, Any, Any] | None = None) -> tuple[Field, Field]:
        """Override point: both NNFs at one level, each matching over the pairs (A, B) and
        (A', B'); ``maps`` are :meth:`matching_maps` when the caller has them already."""
        config, backend = self.config, self.backend
        a, a_prime, b, b_prime = maps or self.matching_maps(level)
        radius = config.radii[level - 1] or max(*a.shape[:2], *b.shape[:2])
        options = dict(patch_size=config.patch_sizes[level - 1], radius=radius,
                       iterations=config.patchmatch_iterations, backend=backend)
        ab, _ = patchmatch(a, a_prime, b, b_prime, nnf_ab.values,
                           seed=config.seed * 10 + level, labels=self.labels(level, "ab"),
                           **options)
        ba, _ = patchmatch(b_prime, b, a_prime, a, nnf_ba.values,
                           seed=config.seed * 10 + level + 5, labels=self.labels(level, "ba"),
                           **options)
        return nnf_ab.with_values(ab), nnf_ba.with_values(ba)

    def labels(self, level: int, direction: str) -> Labels | None:
        """The region labels (and atlas walls) of a search or warp at ``level`` (0: the
        working-size image), "ab" from A to B' or "ba" from B' to A; None: unconstrained."""
        if self.guides is None:
            return None
        return self.guides.labels(direction, self.pyramids.shape("a", level),
                                  self.pyramids.shape("b", level), self.backend)

    def matching_maps(self, level: int) -> tuple[Any, Any, Any, Any]:
        """A, A', B, B' at one level as the search compares them: (H, W, C) float32, each
        feature vector of unit length (:func:`gpuanalogy.patchmatch.normalize_features`)."""
        p = self.pyramids
        return tuple(normalize_features(maps[level], self.backend)  # type: ignore[return-value]
                     for maps in (p.a, p.a_prime, p.b, p.b_prime))

    def reconstruct(self, level: int, nnf_ab: Field, nnf_ba: Field
                    ) -> tuple[tuple[Deconvolution, ...], tuple[tuple[int, str], ...]]:
        """Level L-1 of A' (B''s features through ``nnf_ab``, A's structure) and of B (A's
        features through ``nnf_ba``, B''s structure): deconvolution, then the blend. Where a
        deconvolution does not pay (:meth:`warped`) the other image's own level L-1 is warped
        by the field instead (:meth:`warp_level`), then blended the same way. Returns the
        deconvolutions and the (level L-1, output) pairs warped instead (``LevelStep.warped``)."""
        p = self.pyramids
        outputs = (LevelOutput("a_prime", nnf_ab, p.a, p.b_prime, p.a_prime),
                   LevelOutput("b", nnf_ba, p.b_prime, p.a, p.b))
        warped = tuple(output.name for output in outputs if self.warped(level, output.name))
        for output in outputs:
            if output.name in warped:
                with self.clock("warping"):
                    reconstruction = self.warp_level(level, output)
                with self.clock("blending"):
                    output.rebuilt[level - 1] = self.blend_with_own(level, output.structure,
                                                                    reconstruction)
        outputs = tuple(output for output in outputs if output.name not in warped)
        with self.clock("warping"):
            problems = [self.deconvolution_problem(level, output) for output in outputs]
        with self.clock("deconvolution"):
            solved = [self.deconvolve(level, output.name, x0, target)
                      for output, (x0, target) in zip(outputs, problems)]
        with self.clock("blending"):
            for output, done in zip(outputs, solved):
                output.rebuilt[level - 1] = self.blend_with_own(level, output.structure,
                                                                done.reconstruction)
        return (tuple(Deconvolution(level - 1, output.name, done.stats)
                      for output, done in zip(outputs, solved)),
                tuple((level - 1, name) for name in warped))

    def warped(self, level: int, output: str) -> bool:
        """Whether level L-1 of ``output`` is warped instead of deconvolved: B's with
        ``outputs="a_prime"`` (B only guides the search), and where :meth:`level_warped`."""
        return ((output == "b" and self.config.outputs == "a_prime")
                or self.level_warped(level, output))

    def level_warped(self, level: int, output: str) -> bool:
        """Override point: whether level L-1 of ``output`` is warped instead of deconvolved:
        where the adaptive stop runs no deconvolution (:func:`gpuanalogy.deconvolution.warps`)."""
        return warps(self.config.lbfgs_stop, level, output)

    def warp_level(self, level: int, output: LevelOutput) -> Any:
        """The appearance image's own level L-1 warped by ``output``'s field upsampled there:
        what the deconvolution aims at, without its reconstruction."""
        appearance = output.appearance[level - 1]
        field = output.nnf.upsampled(output.structure[level - 1].shape[1:],
                                     appearance.shape[1:], self.backend)
        return self.warp_chw(appearance, field, self.config.patch_sizes[level - 2],
                             self.labels(level - 1, output.direction))

    def deconvolve(self, level: int, output: str, x0: Any, target: Any,
                   max_iter: int | None = None) -> Deconvolved:
        """Override point: the deconvolution rebuilding level L-1 of ``output`` ("a_prime" or
        "b") from x0, with at most ``max_iter`` L-BFGS iterations (default
        ``config.lbfgs_iterations``) under the stopping rule ``config.lbfgs_stop``."""
        return deconvolve(self.model.subnet(level), x0, target,
                          max_iter=self.config.lbfgs_iterations if max_iter is None else max_iter,
                          history=self.config.lbfgs_history, optimizer=self.config.optimizer,
                          stop=self.config.lbfgs_stop, backend=self.backend)

    def deconvolution_problem(self, level: int, output: LevelOutput) -> tuple[Any, Any]:
        """Override point: (x0, target) of the deconvolution that rebuilds level L-1 of
        ``output``.

        target = appearance^L warped by the NNF; L-BFGS starts at level L-2 from
        structure^{L-2} (official) or from appearance^{L-2} warped by the NNF upsampled there
        (``config.deconv_start``).
        """
        sizes, structure, appearance = self.config.patch_sizes, output.structure, output.appearance
        target = self.warp_chw(appearance[level], output.nnf, sizes[level - 1],
                               self.labels(level, output.direction))
        if self.config.deconv_start == "own":
            return structure[level - 2], target
        start = output.nnf.upsampled(structure[level - 2].shape[1:],
                                     appearance[level - 2].shape[1:], self.backend)
        return self.warp_chw(appearance[level - 2], start, sizes[max(level - 2, 1) - 1],
                             self.labels(level - 2, output.direction)), target

    def blend_with_own(self, level: int, structure: dict, reconstruction: Any) -> Any:
        """Level L-1 of the analogy: the reconstruction, with structure^{L-1} kept where it
        responds strongly (weight alpha_{L-1} * mask)."""
        xp, config = self.backend.xp, self.config
        own = structure[level - 1]
        mask = response_mask(own, kind=config.mask, k=config.mask_k, tau=config.mask_tau, xp=xp)
        weight = xp.float32(alpha_for_level(config.blend, level - 1)) * mask
        return blend(own, reconstruction, weight)

    def warp_chw(self, source: Any, nnf: Field, patch_size: int,
                 labels: Labels | None = None) -> Any:
        """Average-voting warp of a C x H x W map (the kernels work on H x W x C), from the
        pixels ``labels`` allow."""
        xp = self.backend.xp
        hwc = xp.ascontiguousarray(source.transpose(1, 2, 0))
        warped = nnf.vote(hwc, patch_size, self.backend, labels)
        return xp.ascontiguousarray(warped.transpose(2, 0, 1))
