"""A keyframe's stylised output carried frame after frame, and two keyframes' results blended.

:class:`Propagation` runs the guided synthesis of :mod:`gpuanalogy.synthesis` along a clip,
from one keyframe (its frame and its stylised output) in either direction. For each frame t,
with t-1 the frame before it on the way from the keyframe:

1. the backward motion from t to t-1 (:func:`frame_motion`: our coarse-to-fine PatchMatch on
   the two frames' colours and edges, or a flow the caller measured);
2. frame t-1's field into the keyframe carried along it: the start of the search, and the
   *positional guide* (the keyframe coordinates each pixel of t should show);
3. frame t-1's stylised output carried along it: the *temporal guide*, against the style itself
   on the keyframe's side;
4. the guided synthesis under the colour, edge, positional and temporal guides, weighted by
   :class:`GuideWeights`.

A frame between two keyframes gets a result from each side; :func:`blend` combines them, by
the sides' synthesis errors (``"error"``) or by a screened Poisson reconstruction that takes
each pixel's gradients from the side with the lower error (``"poisson"``).
:func:`unexplained` is the share of a frame that its keyframe cannot explain (content that has
entered the frame since, or was hidden), read off the synthesis's field: what places a new
keyframe.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from .backend import Backend
from .checks import to_float_image
from .errors import InputError
from .motion import motion_from_flow
from .synthesis import Guide, Synthesis, SynthesisSettings, edges, match, positions, synthesize

__all__ = ["GuideWeights", "Propagation", "frame_motion", "reversed_flow", "blend",
           "unexplained", "screened_poisson", "BLENDS", "MOTION_SETTINGS"]

#: How :func:`blend` combines two sides' results.
Blend = Literal["error", "poisson"]
BLENDS: tuple[Blend, ...] = get_args(Blend)

#: The motion search between consecutive frames: 3 x 3 patches, a small window at the finer
#: levels (consecutive frames move a few pixels; the coarsest level searches everywhere).
MOTION_SETTINGS = SynthesisSettings(patch_size=3, levels=3, iterations=2, coarse_iterations=2,
                                    radius=2)


@dataclass(frozen=True)
class GuideWeights:
    """The guides' weights (colours and the style in [0, 1], edges a difference of Gaussians,
    positions in keyframe-longer-sides: see :mod:`gpuanalogy.synthesis`).

    Attributes
    ----------
    colour : float
        The frames' colours.
    edges : float
        The frames' edges (:func:`gpuanalogy.synthesis.edges`).
    position : float
        The keyframe coordinates carried along the motion.
    temporal : float
        The previous stylised frame carried along the motion, against the style.
    """

    colour: float = 2.0
    edges: float = 0.0
    position: float = 0.1
    temporal: float = 0.03

    def __post_init__(self) -> None:
        if min(self.colour, self.edges, self.position, self.temporal) < 0:
            raise InputError("guide weights must be non-negative.")


class Propagation:
    """Frames synthesised one after another from one keyframe.

    Parameters
    ----------
    keyframe : array, shape (H, W, 3)
        The keyframe's frame (uint8, or float in [0, 1]).
    style : array, shape (H, W, 3)
        Its stylised output, on the same grid (uint8, or float in [0, 1]).
    weights : GuideWeights, optional
    settings : SynthesisSettings, optional
    seed : int
    backend : Backend
    """

    def __init__(self, keyframe: Any, style: Any, *, weights: GuideWeights | None = None,
                 settings: SynthesisSettings | None = None, seed: int = 0,
                 backend: Backend) -> None:
        self.keyframe = to_float_image(keyframe, name="keyframe")
        self.style = to_float_image(style, name="style")
        if self.style.shape != self.keyframe.shape:
            raise InputError(f"style is {self.style.shape[1]}x{self.style.shape[0]} but the "
                             f"keyframe is {self.keyframe.shape[1]}x{self.keyframe.shape[0]}.")
        self.weights = weights or GuideWeights()
        self.settings = settings or SynthesisSettings()
        self.seed, self.backend = seed, backend
        shape = self.keyframe.shape[:2]
        self.scale = float(max(shape))
        #: The keyframe's side of each guide (edges only when weighted: the rest always are).
        self._sources = {"colour": self.keyframe, "position": positions(shape, self.scale),
                         "temporal": self.style}
        if self.weights.edges > 0:
            self._sources["edges"] = edges(self.keyframe)
        grid = np.mgrid[0:shape[0], 0:shape[1]]
        #: The frame before the next one, its field into the keyframe and its output.
        self.previous = (self.keyframe, np.moveaxis(grid, 0, -1).astype(np.int32), self.style)
        #: The last step's motion, (H, W, 2) int32: for each pixel, where it was in the frame
        #: before (see :func:`reversed_flow` to run the other way).
        self.motion: np.ndarray | None = None
        self.steps = 0

    def step(self, frame: Any, *, flow: np.ndarray | None = None,
             name: str = "frame") -> Synthesis:
        """The next frame's synthesis; ``flow`` (H, W, 2), optional, is the backward motion
        to the frame before it (as :func:`gpuanalogy.motion.motion_from_flow` takes it).

        Returns the :class:`Synthesis` with ``image`` in [0, 1]. Raises InputError for a frame
        of another size than the keyframe's.
        """
        current = to_float_image(frame, name=name)
        if current.shape != self.keyframe.shape:
            raise InputError(f"{name}: {current.shape[1]}x{current.shape[0]} differs from the "
                             f"keyframe's {self.keyframe.shape[1]}x{self.keyframe.shape[0]}")
        before, field, output = self.previous
        motion = (frame_motion(current, before, seed=self.seed + self.steps,
                               backend=self.backend) if flow is None
                  else self._flow_motion(flow, current.shape[:2]))
        rows, cols = motion[..., 0], motion[..., 1]
        carried = np.ascontiguousarray(field[rows, cols])
        targets = {"colour": current,
                   "position": carried.astype(np.float32) / np.float32(self.scale),
                   "temporal": np.ascontiguousarray(output[rows, cols])}
        if "edges" in self._sources:
            targets["edges"] = edges(current)
        guides = [Guide(source, targets[name], getattr(self.weights, name))
                  for name, source in self._sources.items()]
        done = synthesize(self.style, guides, start=carried, settings=self.settings,
                          seed=self.seed + self.steps, backend=self.backend)
        done.image = np.clip(done.image, 0.0, 1.0)
        self.previous = (current, done.nnf, done.image)
        self.motion = motion
        self.steps += 1
        return done

    def _flow_motion(self, flow: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        field = motion_from_flow(flow, {0: shape}, self.backend)[0]
        return self.backend.to_numpy(field.values)


def reversed_flow(motion: np.ndarray) -> np.ndarray:
    """The flow the other way from a motion (H, W, 2) of frame t+1 to frame t: for each pixel p
    of frame t, the displacement to frame t+1, taken as the opposite of the motion's
    displacement at p (exact for a translation; as :func:`gpuanalogy.motion.carry_positions`
    assumes). (H, W, 2) float32, as :meth:`Propagation.step` takes a flow."""
    grid = np.moveaxis(np.mgrid[0:motion.shape[0], 0:motion.shape[1]], 0, -1)
    return (grid - motion).astype(np.float32)


def frame_motion(current: np.ndarray, previous: np.ndarray, *, seed: int = 0,
                 settings: SynthesisSettings = MOTION_SETTINGS,
                 backend: Backend) -> np.ndarray:
    """The backward motion from ``current`` to ``previous``, two (H, W, 3) float frames in
    [0, 1] of one size: for each pixel of ``current``, the (row, col) of the same content in
    ``previous``, (H, W, 2) int32 on the host. Coarse-to-fine PatchMatch on colours and
    edges (:func:`gpuanalogy.synthesis.match`) from the identity."""
    guides = [Guide(previous, current, 1.0), Guide(edges(previous), edges(current), 1.0)]
    field, _ = match(guides, settings=settings, seed=seed, backend=backend)
    return backend.to_numpy(field.values)


def blend(first: Synthesis, second: Synthesis, *, share: float = 0.5,
          method: Blend = "poisson", smooth: int = 5,
          screen: float = 0.1) -> np.ndarray:
    """One frame from two keyframes' results (their images in [0, 1]).

    ``share`` in [0, 1] is the first side's weight before the errors count (its nearness in
    time, typically). ``"error"``: each pixel the mean of the two images weighted by
    ``share / error`` and ``(1 - share) / error`` (errors box-averaged over ``smooth`` pixels).
    ``"poisson"``: the image whose gradients are those of the side with the lower weighted
    error, pixel by pixel, and whose colours stay near the ``"error"`` blend (a screened
    Poisson reconstruction; ``screen`` weighs the colours against the gradients).

    Returns (H, W, C) float32 in [0, 1].
    """
    if method not in BLENDS:
        raise InputError(f"blend={method!r} is not supported. Try one of: {', '.join(BLENDS)}.")
    if first.image.shape != second.image.shape:
        raise InputError("the two sides' results must have one shape.")
    share = float(np.clip(share, 1e-3, 1 - 1e-3))
    e1, e2 = (_box(s.error.astype(np.float64), smooth) + 1e-6 for s in (first, second))
    w1, w2 = share / e1, (1.0 - share) / e2
    mixed = ((w1[..., None] * first.image + w2[..., None] * second.image)
             / (w1 + w2)[..., None])
    if method == "error":
        return np.clip(mixed, 0.0, 1.0).astype(np.float32)
    take_first = (w1 >= w2)[..., None]
    gy = np.where(take_first[:-1], np.diff(first.image, axis=0), np.diff(second.image, axis=0))
    gx = np.where(take_first[:, :-1], np.diff(first.image, axis=1),
                  np.diff(second.image, axis=1))
    return np.clip(screened_poisson(mixed, gy, gx, screen), 0.0, 1.0).astype(np.float32)


def screened_poisson(data: np.ndarray, gy: np.ndarray, gx: np.ndarray,
                     screen: float) -> np.ndarray:
    """The image u minimising ``screen * ||u - data||^2 + ||D_y u - gy||^2 + ||D_x u - gx||^2``
    (D forward differences, Neumann borders), solved exactly in the cosine basis.

    ``data`` (H, W, C); ``gy`` (H-1, W, C), ``gx`` (H, W-1, C). Returns (H, W, C) float64.
    """
    from scipy.fft import dctn, idctn  # noqa: PLC0415 - SciPy's FFT only for this solve

    height, width = data.shape[:2]
    rhs = screen * data.astype(np.float64)
    rhs[:-1] -= gy
    rhs[1:] += gy
    rhs[:, :-1] -= gx
    rhs[:, 1:] += gx
    ky = 2.0 - 2.0 * np.cos(np.pi * np.arange(height) / height)
    kx = 2.0 - 2.0 * np.cos(np.pi * np.arange(width) / width)
    denominator = screen + ky[:, None, None] + kx[None, :, None]
    return idctn(dctn(rhs, type=2, axes=(0, 1), norm="ortho") / denominator, type=2,
                 axes=(0, 1), norm="ortho")


def unexplained(frame: Any, keyframe: Any, nnf: np.ndarray, *, tolerance: float = 0.1,
                size: int = 7, level: float = 0.5) -> float:
    """The share of ``frame`` that ``keyframe`` does not explain, from the synthesis's field
    ``nnf`` (H, W, 2) into the keyframe.

    Content the keyframe shows is rebuilt from it in coherent pieces of matching colour: a
    pixel's right and lower neighbours match the keyframe pixels right of and below its own
    match, within a pixel. Content it lacks (entering the frame, disoccluded) either keeps
    colours the keyframe does not have, or is pieced together from wherever colours fit, in
    small scraps. A pixel counts as unexplained where its colour differs from its match's by
    more than ``tolerance`` (root mean square over the channels, in [0, 1], 3 x 3 box-averaged),
    or where fewer than ``level`` of the neighbour pairs in the ``size`` x ``size`` window
    around it are coherent (docs/performance.md, "Video by keyframes", has how this tracks the
    new content).
    """
    current = to_float_image(frame, name="frame")
    key = to_float_image(keyframe, name="keyframe")
    matched = key[nnf[..., 0], nnf[..., 1]]
    differs = _box(((current - matched) ** 2).mean(axis=2), 3) > tolerance ** 2
    coherent = np.ones(nnf.shape[:2], np.float64)
    across = np.abs(nnf[:, 1:] - nnf[:, :-1] - np.array([0, 1])).max(axis=2) <= 1
    down = np.abs(nnf[1:] - nnf[:-1] - np.array([1, 0])).max(axis=2) <= 1
    coherent[:, :-1] = across
    coherent[:-1] = (coherent[:-1] + down) / 2.0
    coherent[-1, :-1] = (coherent[-1, :-1] + 1.0) / 2.0
    return float((differs | (_box(coherent, size) < level)).mean())


def _box(values: np.ndarray, size: int) -> np.ndarray:
    """The (H, W) map box-averaged over ``size`` x ``size`` pixels (borders repeated)."""
    from scipy.ndimage import uniform_filter  # noqa: PLC0415

    return uniform_filter(values, size=size, mode="nearest") if size > 1 else values
