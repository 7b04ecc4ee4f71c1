"""A clip in one exemplar's look: the analogy of every frame with B', each frame starting from
the previous one's work.

Run frame by frame, every frame's correspondences are found from scratch: the output flickers
and each frame costs a whole analogy. :class:`Clip` keeps what the next frame can reuse:

1. B''s working-size image and feature pyramid, computed once for the whole clip;
2. the motion from each frame to the one before (:mod:`gpuanalogy.motion`: our PatchMatch
   between the two frames' feature pyramids, or a flow the caller measured);
3. at every level, both fields start from the previous frame's fields at that level carried
   along the motion, and PatchMatch runs ``VideoConfig.patchmatch_iterations`` instead of the
   full count; a match it finds replaces the carried one only where it is clearly better
   (``VideoConfig.keep_margin``), so near-equal patches of B' do not flicker;
4. every deconvolution starts from the previous frame's solution carried along the motion (on
   A's grid; B lives on B''s grid, which does not move) and runs
   ``VideoConfig.lbfgs_iterations`` L-BFGS iterations;
5. the outputs are voted and refined as for one pair (:func:`gpuanalogy.pipeline.render`).

The first frame is a whole analogy. A frame that cannot be read is left out, and the next
one starts from the last frame done, carried along the motion between the two.
:meth:`Clip.resume_after` restarts a chain from a finished frame's saved fields, so a killed
run can continue: that frame's fields are carried as above; its deconvolutions, which have no
saved solution to start from, run the full iterations from the official start.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import Backend, DeviceName
from .checks import to_float_image
from .config import AnalogyConfig, VideoConfig
from .deconvolution import Deconvolved
from .errors import InputError, printable
from .fields import Field
from .levels import (
    LEVELS, LevelOutput, LevelSolver, Pyramids, coarse_to_fine, initial_fields, pyramid)
from .motion import carry_field, carry_map, carry_positions, estimate_motion, motion_from_flow
from .nnf import nnf_energy
from .features import network_for
from .pipeline import AnalogyResult, render, run_stages, working_images
from .sizes import check_memory
from .timing import Clock, Progress, StepReporter

__all__ = ["VideoConfig", "FrameResult", "Clip", "video_analogy"]

@dataclass
class FrameResult:
    """One frame of a clip.

    Attributes
    ----------
    result : AnalogyResult
        A' (and B) at the frame's input size, the fields, and the stage timings; "motion" is
        among them for a frame that started from the previous one.
    warm : bool
        Whether the frame started from the previous frame's work.
    seconds : float
        Wall time of the frame.
    """

    result: AnalogyResult
    warm: bool
    seconds: float


@dataclass
class _FrameState:
    """What the next frame reuses: this frame's pyramid, its fields at every level, and its
    deconvolutions' solutions ((level, output) -> variable at level L-2)."""

    shape: tuple[int, int]
    pyramid: dict[int, Any]
    fields: dict[int, tuple[Field, Field]]
    variables: dict[tuple[int, str], Any]


class _WarmSolver(LevelSolver):
    """The level step started from the previous frame's work, keeping its own for the next
    (it overrides :data:`gpuanalogy.levels.LevelSolver.OVERRIDE_POINTS`).

    ``fields`` (level -> carried A->B' and B'->A fields) replace the starts the loop hands
    down, and a searched match replaces the carried one only where its patch energy is below
    ``1 - keep_margin`` times the carried one's; ``starts`` ((level, output) -> carried
    solution) start the deconvolutions, which then run at most ``warm_iterations`` under the
    clip's stopping rule (``AnalogyConfig.lbfgs_stop``).
    """

    def __init__(self, *args: Any, fields: dict[int, tuple[Field, Field]],
                 starts: dict[tuple[int, str], Any], warm_iterations: int, keep_margin: float,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields, self.starts = fields, starts
        self.warm_iterations, self.keep_margin = warm_iterations, keep_margin
        self.solved: dict[tuple[int, str], Any] = {}

    def start(self, level: int, start_ab: Field, start_ba: Field) -> tuple[Field, Field]:
        return self.fields.get(level, (start_ab, start_ba))

    def search(self, level: int, nnf_ab: Field, nnf_ba: Field,
               maps: tuple[Any, Any, Any, Any] | None = None) -> tuple[Field, Field]:
        if level not in self.fields or self.keep_margin <= 0:
            return super().search(level, nnf_ab, nnf_ba, maps)
        a, a_prime, b, b_prime = maps = maps or self.matching_maps(level)
        found_ab, found_ba = super().search(level, nnf_ab, nnf_ba, maps)
        size = self.config.patch_sizes[level - 1]
        return (self._kept(nnf_ab, found_ab, (a, a_prime, b, b_prime), size),
                self._kept(nnf_ba, found_ba, (b_prime, b, a_prime, a), size))

    def _kept(self, carried: Field, found: Field, maps: tuple[Any, ...], size: int) -> Field:
        """``found`` where it beats ``carried`` by the margin, else ``carried``."""
        xp, backend = self.backend.xp, self.backend
        before = nnf_energy(*maps, carried.values, size, backend)
        after = nnf_energy(*maps, found.values, size, backend)
        better = after < xp.float32(1.0 - self.keep_margin) * before
        return Field(xp.where(better[..., None], found.values, carried.values), found.shape_b)

    def level_warped(self, level: int, output: str) -> bool:
        # The levels the adaptive stop warps are deconvolved too: their solution, carried to
        # the next frame, holds the coarse look in place, where a warp of the top level made
        # anew at every frame flickered (docs/performance.md, "The top level by a warp"; B's
        # relu3_1 was not measured in a clip, and follows the top level).
        return False

    def deconvolution_problem(self, level: int, output: LevelOutput) -> tuple[Any, Any]:
        x0, target = super().deconvolution_problem(level, output)
        return self.starts.get((level, output.name), x0), target

    def deconvolve(self, level: int, output: str, x0: Any, target: Any,
                   max_iter: int | None = None) -> Deconvolved:
        warm = (level, output) in self.starts
        done = super().deconvolve(level, output, x0, target,
                                  self.warm_iterations if warm else max_iter)
        self.solved[level, output] = done.variable
        return done


class Clip:
    """The analogies of a clip's frames with one exemplar, frame after frame.

    Parameters
    ----------
    b_prime : array, shape (H, W, 3) or (H, W)
        The exemplar, as :func:`gpuanalogy.analogy` takes it.
    config : AnalogyConfig, optional
        The settings of every frame (the official defaults when omitted).
    video : VideoConfig, optional
    name : str
        What messages call the exemplar (its file, say).
    model, backend :
        As for :func:`gpuanalogy.analogy`.
    """

    def __init__(self, b_prime: Any, config: AnalogyConfig | None = None, *,
                 video: VideoConfig | None = None, name: str = "b_prime", model: Any = None,
                 backend: Backend | DeviceName | None = None) -> None:
        self.config = config or AnalogyConfig()
        self.video = video or VideoConfig()
        self.model = network_for(model, backend if backend is not None else self.config.device,
                                 self.config.weights)
        self.backend: Backend = self.model.backend
        self.name = printable(str(name))
        self.b_prime = working_images(self.name, to_float_image(b_prime, name=self.name),
                                      self.config)
        self.bp_pyramid = pyramid(self.model, self.backend.asarray(self.b_prime.work))
        self.previous: _FrameState | None = None
        self.memory_checked = False

    def frame(self, a: Any, *, flow: np.ndarray | None = None, name: str = "frame",
              on_progress: Callable[[Progress], None] | None = None) -> FrameResult:
        """The analogy of the next frame ``a`` (H, W, 3) with the exemplar.

        ``flow`` (H', W', 2) float, optional: the measured backward motion to the previous
        frame (:func:`gpuanalogy.motion.motion_from_flow`), instead of the search. ``name`` is
        what messages call the frame.

        Raises
        ------
        InputError
            An unusable frame, or one whose size differs from the clip's.
        """
        start = time.perf_counter()
        a_in = to_float_image(a, name=name)
        if self.previous is not None and a_in.shape[:2] != self.previous.shape:
            h, w = self.previous.shape
            raise InputError(f"{name}: {a_in.shape[1]}x{a_in.shape[0]} differs from the "
                             f"clip's frame size {w}x{h}")
        if not self.memory_checked:
            check_memory((a_in.shape[:2], self.b_prime.full.shape[:2]), self.config,
                         on_host=self.backend.on_host, names=(name, self.name))
            self.memory_checked = True
        warm = self.previous is not None
        with self.backend.out_of_memory_as_error(f"{name}, {a_in.shape[1]}x{a_in.shape[0]}"):
            result = self._frame(a_in, flow, name, on_progress)
        return FrameResult(result, warm, time.perf_counter() - start)

    def resume_after(self, a: Any, nnf_ab: np.ndarray, nnf_ba: np.ndarray) -> None:
        """Continue the chain after a finished frame: its image ``a`` (H, W, 3) and its saved
        fields at the input sizes, ``nnf_ab`` (H, W, 2) into B' and ``nnf_ba`` (H_B', W_B', 2)
        into the frame (as :class:`FrameResult` gives them)."""
        a_in = to_float_image(a, name="frame")
        images = working_images("frame", a_in, self.config)
        maps = pyramid(self.model, self.backend.asarray(images.work))
        full_ab = Field(self.backend.asarray(np.rint(nnf_ab).astype(np.int32)),
                        self.b_prime.full.shape[:2])
        full_ba = Field(self.backend.asarray(np.rint(nnf_ba).astype(np.int32)),
                        a_in.shape[:2])
        fields = {}
        for level in LEVELS:
            shape_a, shape_b = tuple(maps[level].shape[1:]), self._shape_b(level)
            fields[level] = (full_ab.upsampled(shape_a, shape_b, self.backend),
                             full_ba.upsampled(shape_b, shape_a, self.backend))
        self.previous = _FrameState(a_in.shape[:2], maps, fields, {})

    def _shape_b(self, level: int) -> tuple[int, int]:
        return tuple(self.bp_pyramid[level].shape[1:])  # type: ignore[return-value]

    def _frame(self, a_in: np.ndarray, flow: np.ndarray | None, name: str,
               on_progress: Callable[[Progress], None] | None) -> AnalogyResult:
        config, backend, previous = self.config, self.backend, self.previous
        clock = Clock(backend)
        report = StepReporter(on_progress, run_stages(config, motion=previous is not None))
        a = working_images(name, a_in, config)
        report("features", 5)
        with clock("features"):
            pyramids = Pyramids(pyramid(self.model, backend.asarray(a.work)), self.bp_pyramid)
        pyramids.a_prime[5] = pyramids.a[5]
        pyramids.b[5] = pyramids.b_prime[5]

        if previous is None:
            starts: dict[int, tuple[Field, Field]] = {}
            variables: dict[tuple[int, str], Any] = {}
            solver_config = config
        else:
            report("motion", 5)
            with clock("motion"):
                motion = self._motion(pyramids.a, previous, flow)
                starts = {level: (carry_field(ab, motion[level], backend),
                                  carry_positions(ba, motion[level], backend))
                          for level, (ab, ba) in previous.fields.items()}
                variables = {(level, output): (carry_map(x, motion[level - 2], backend)
                                               if output == "a_prime" else x)
                             for (level, output), x in previous.variables.items()}
            solver_config = config.replace(patchmatch_iterations=min(
                self.video.patchmatch_iterations, config.patchmatch_iterations))
        solver = _WarmSolver(self.model, pyramids, solver_config, images=(a, self.b_prime),
                             clock=clock, report=report, fields=starts, starts=variables,
                             warm_iterations=min(self.video.lbfgs_iterations,
                                                 config.lbfgs_iterations),
                             keep_margin=self.video.keep_margin)
        steps = coarse_to_fine(solver, *initial_fields(pyramids, config, backend))
        result = render(a, self.b_prime, steps, config, backend, clock=clock, report=report)
        self.previous = _FrameState(a_in.shape[:2], pyramids.a,
                                    {s.level: (s.nnf_ab, s.nnf_ba) for s in steps},
                                    solver.solved)
        return result

    def _motion(self, current: dict[int, Any], previous: _FrameState,
                flow: np.ndarray | None) -> dict[int, Field]:
        """The backward motion at levels 0..5: from ``flow``, the search, or none at all."""
        shapes = {level: tuple(current[level].shape[-2:]) for level in range(6)}
        if flow is not None:
            return motion_from_flow(flow, shapes, self.backend)  # type: ignore[arg-type]
        if self.video.motion == "none":   # a flow of zeros: everything stays in place
            return motion_from_flow(np.zeros((1, 1, 2), np.float32), shapes,  # type: ignore[arg-type]
                                    self.backend)
        return estimate_motion(current, previous.pyramid, backend=self.backend,
                               patch_sizes=self.config.patch_sizes,
                               radius=self.video.motion_radius,
                               iterations=self.video.motion_iterations, seed=self.config.seed)


def video_analogy(frames: Iterable[Any], b_prime: Any, config: AnalogyConfig | None = None, *,
                  video: VideoConfig | None = None, model: Any = None,
                  backend: Backend | DeviceName | None = None,
                  on_progress: Callable[[Progress], None] | None = None
                  ) -> Iterator[FrameResult]:
    """The analogies of ``frames`` with ``b_prime``, one :class:`FrameResult` per frame, as
    each is done (a generator: frames are read as they are needed).

    ``frames`` is any iterable of arrays (H, W, 3) of one size, as :func:`gpuanalogy.analogy`
    takes them: a list, a generator reading a video, a camera.

    Examples
    --------
    >>> for frame in video_analogy(read_frames("clip/"), exemplar):   # doctest: +SKIP
    ...     save(frame.result.a_prime)
    """
    clip = Clip(b_prime, config, video=video, model=model, backend=backend)
    for index, a in enumerate(frames):
        yield clip.frame(a, name=f"frame {index}", on_progress=on_progress)
