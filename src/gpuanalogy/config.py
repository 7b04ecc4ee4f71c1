"""Configuration of one analogy: the paper's and the official implementation's defaults.

Levels are numbered as in the paper: L = 5..1 are relu5_1 .. relu1_1 and level 0 is the image.
Per-level tuples are indexed by level - 1 (first entry is relu1_1).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints

import numpy as np

#: The deconvolution's optimisers: L-BFGS on the backend's arrays, and SciPy's L-BFGS-B.
Optimizer = Literal["lbfgs", "scipy"]
OPTIMIZERS: tuple[Optimizer, ...] = get_args(Optimizer)

#: When a deconvolution's L-BFGS stops (``AnalogyConfig.lbfgs_stop``): once its variable settles
#: (``deconvolution.ADAPTIVE_STOP``), or after every iteration asked, as in the official code.
LbfgsStop = Literal["adaptive", "official"]
LBFGS_STOPS: tuple[LbfgsStop, ...] = get_args(LbfgsStop)

#: What an analogy computes (``AnalogyConfig.outputs``): both analogies, or A' alone.
Outputs = Literal["both", "a_prime"]
OUTPUTS: tuple[Outputs, ...] = get_args(Outputs)

#: How the outputs come back to an input larger than the working size (``AnalogyConfig.upsample``).
Upsample = Literal["cubic", "nnf", "patchmatch"]
UPSAMPLES: tuple[Upsample, ...] = get_args(Upsample)

#: How a video brings a frame's outputs to the frame size by default: "patchmatch" (the style
#: presets' own) re-searches each frame on its own and flickers more (docs/performance.md).
VIDEO_UPSAMPLE: Upsample = "cubic"

#: What a video computes by default: A' alone (its quality: docs/performance.md, "A' alone").
VIDEO_OUTPUTS: Outputs = "a_prime"

#: How the field files are written (``AnalogyConfig.field_format``).
FieldFormat = Literal["float32", "float16", "working", "flo"]
FIELD_FORMATS: tuple[FieldFormat, ...] = get_args(FieldFormat)

#: What the outputs take from the exemplar (``AnalogyConfig.transfer``): everything, its colours
#: only, or its texture only.
Transfer = Literal["all", "colour", "texture"]
TRANSFERS: tuple[Transfer, ...] = get_args(Transfer)

#: The blend mask of DESIGN.md (``AnalogyConfig.mask``): the paper's sigmoid, or the official
#: code's hard step at tau.
Mask = Literal["sigmoid", "hard"]
MASKS: tuple[Mask, ...] = get_args(Mask)

#: Where a deconvolution's L-BFGS starts (``AnalogyConfig.deconv_start``): the structure image's
#: own features (official), or the appearance's features warped by the field (public ports).
DeconvStart = Literal["own", "warped"]
DECONV_STARTS: tuple[DeconvStart, ...] = get_args(DeconvStart)

#: The first field at the top level (``AnalogyConfig.nnf_init``).
NnfInit = Literal["identity", "random"]
NNF_INITS: tuple[NnfInit, ...] = get_args(NnfInit)

#: Where an analogy runs (``AnalogyConfig.device``): the GPU when there is one, or as named.
DeviceName = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[DeviceName, ...] = get_args(DeviceName)

#: How the photo refinement reaches an input above the working size: solved at the size-ruled
#: size and carried up by the guided upsampling, or one WLS solve over every input pixel.
RefineUpsample = Literal["guided", "wls"]
REFINE_UPSAMPLES: tuple[RefineUpsample, ...] = get_args(RefineUpsample)

Preset = Literal["photo2style", "style2style", "style2photo", "photo2photo"]

# The official implementation's settings for the four uses (DESIGN.md, step 6); the style uses
# bring their outputs above the working size by "patchmatch" and photo2style makes A' alone, as
# measured in docs/performance.md ("Output modes above the working size", "A' alone").
PRESETS: dict[Preset, dict[str, Any]] = {
    "photo2style": {"blend": 3, "ratio": 1.0, "refine": False, "upsample": "patchmatch",
                    "outputs": "a_prime"},
    "style2style": {"blend": 3, "ratio": 1.0, "refine": False, "upsample": "patchmatch"},
    "style2photo": {"blend": 2, "ratio": 0.5, "refine": True},
    "photo2photo": {"blend": 3, "ratio": 1.0, "refine": True},
}


def _odd_positive(size: Any) -> bool:
    return isinstance(size, (int, np.integer)) and size >= 1 and size % 2 == 1


def _check_choices(config: Any) -> None:
    """Every field typed by one of the lists above holds one of its values."""
    from .errors import InputError  # noqa: PLC0415

    for name, hint in get_type_hints(type(config)).items():
        allowed = get_args(hint) if get_origin(hint) is Literal else None
        if allowed is not None and getattr(config, name) not in allowed:
            raise InputError(f"{name}={getattr(config, name)!r} is not supported. Try one "
                             f"of: {', '.join(allowed)}.")


@dataclass(frozen=True)
class AnalogyConfig:
    """Every knob of the method, defaulting to the official implementation.

    Attributes
    ----------
    blend : int
        Alpha preset 1, 2 or 3 (see ``gpuanalogy.blending.ALPHA_PRESETS``).
    ratio : float
        Extra scale applied after the size rule; outputs always come back at the input size.
    patchmatch_iterations : int
        PatchMatch iterations per level (10).
    patch_sizes : tuple of int
        Patch size at levels 1..5 (5, 5, 3, 3, 3).
    radii : tuple of int or None
        Random-search radius in feature pixels at levels 1..5; None means the whole map.
    lbfgs_iterations, lbfgs_history : int
        L-BFGS iterations (100: with ``lbfgs_stop="adaptive"`` the most a deconvolution makes)
        and stored correction pairs (4) per deconvolution.
    lbfgs_stop : {"adaptive", "official"}
        When a deconvolution stops before ``lbfgs_iterations``: "adaptive" once its variable
        moved by less than a share of itself over the last few iterations, at every level but
        the last, and at the top none runs: relu4_1 is warped, and so is B's relu3_1 (as
        measured: ``gpuanalogy.deconvolution.ADAPTIVE_STOP``, ``ADAPTIVE_WARP``); "official"
        only at the official gradient tolerance, which in practice means every iteration.
    outputs : {"both", "a_prime"}
        Both analogies (A' and B, both fields), or A' alone: the same search, but only A''s
        deconvolutions run, B's levels being A's features warped by the B' -> A field
        (``gpuanalogy.levels``); B is not returned, the fields are.
    optimizer : {"lbfgs", "scipy"}
        The deconvolution's optimiser: L-BFGS on the backend's own arrays with SciPy's
        MINPACK-2 line search ("lbfgs", as the official code's on-GPU L-BFGS), or SciPy's
        L-BFGS-B on a float64 host copy ("scipy", the reference).
    deconv_start : {"own", "warped"}
        Where each deconvolution's L-BFGS starts at level L-2: from the structure image's own
        features there ("own": the official code, whose variable is the network's blob still
        holding them), or from the appearance image's features warped by the upsampled NNF
        ("warped": public PyTorch ports).
    mask : {"sigmoid", "hard"}
        The paper's sigmoid response mask, or the official code's hard step.
    mask_k, mask_tau : float
        Sigmoid slope (300) and threshold (0.05) on the normalised response.
    nnf_init : {"identity", "random"}
        NNF at the top level: identity (official) or random (paper).
    output_patch_size : int
        Patch size of the final voting of image pixels (3).
    upsample : {"cubic", "nnf", "patchmatch"}
        How the outputs come back to the input size when the network worked at another size:
        "cubic" (official) votes at the working size and resizes bicubically; "nnf" votes the
        input's own pixels by the field brought to the input size (full-resolution texture, but
        the field's 1-2 px misalignments show as seams); "patchmatch" first refines that field
        coarse to fine by PatchMatch on image patches in a small window, the "cubic" outputs as
        estimates (``gpuanalogy.texture``). Equal sizes make them equal.
    refine : bool
        Apply the WLS photo refinement to the outputs (photo2photo and style2photo).
    refine_upsample : {"guided", "wls"}
        How the refinement reaches an input larger than the working size: "guided" refines the
        output at the size-ruled size (``gpuanalogy.sizes.refinement_shape``) by the input's WLS
        system coarsened there and carries its colour change up under the full-resolution
        structure image (``gpuanalogy.upsampling``: memory and time linear in the pixels);
        "wls" solves over every input pixel (official; its sparse factorisation grows fast with
        the pixels, and with pyamg installed one that does not fit is solved by algebraic
        multigrid, ``gpuanalogy.multigrid``). A small input is refined at its own size.
    field_format : {"float32", "float16", "working", "flo"}
        How ``gpuanalogy.outputs.write_result`` writes the fields: ``nnf_*.npy`` at the input
        sizes in float32 (exact) or float16 (half the bytes; whole pixels exact up to 2048,
        then rounded to float16's spacing), ``nnf_*.npz`` with the working-size field and the
        sizes it is brought to (``gpuanalogy.fields.read_field`` rebuilds the input-size field
        exactly; not with ``upsample="patchmatch"``), or ``nnf_*.flo``: Middlebury flow files
        (the displacement to the match, float32; ``gpuanalogy.flo``), which flow tools read.
    transfer : {"all", "colour", "texture"}
        What the outputs take from the other image (``gpuanalogy.colour.transfer``, CIELAB):
        everything ("all"), its colours only ("colour": the structure's lightness with the
        output's chroma) or its texture only ("texture": the output's lightness with the
        structure's chroma). Applied last, to every output (refined ones too).
    subpixel : bool
        Align the final fields to sub-pixel precision under a local colour model before the
        vote (``gpuanalogy.subpixel``; not in the paper): for two photos of one scene.
    seed : int
        Seed of PatchMatch's random search and of a random initial NNF.
    max_side, min_side, max_area : int
        The official size rule applied before ``ratio``.
    device : {"auto", "cpu", "cuda"}
    weights : path or None
        A VGG-19 weights file; None is the bundled exact Caffe VGG-19.
    """

    blend: int = 3
    ratio: float = 1.0
    patchmatch_iterations: int = 10
    patch_sizes: tuple[int, int, int, int, int] = (5, 5, 3, 3, 3)
    radii: tuple[int | None, ...] = (4, 4, 6, 6, None)
    lbfgs_iterations: int = 100
    lbfgs_history: int = 4
    lbfgs_stop: LbfgsStop = "adaptive"
    outputs: Outputs = "both"
    optimizer: Optimizer = "lbfgs"
    deconv_start: DeconvStart = "own"
    mask: Mask = "sigmoid"
    mask_k: float = 300.0
    mask_tau: float = 0.05
    nnf_init: NnfInit = "identity"
    output_patch_size: int = 3
    upsample: Upsample = "cubic"
    refine: bool = False
    refine_upsample: RefineUpsample = "guided"
    field_format: FieldFormat = "float32"
    transfer: Transfer = "all"
    subpixel: bool = False
    seed: int = 0
    max_side: int = 700
    min_side: int = 200
    max_area: int = 350_000
    device: DeviceName = "auto"
    weights: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        from .errors import InputError  # noqa: PLC0415

        if self.blend not in (1, 2, 3):
            raise InputError(f"blend={self.blend} is not supported. Try 1, 2 or 3.")
        if not 0.05 <= self.ratio <= 4.0:
            raise InputError(f"ratio={self.ratio} is out of range. Try a value in [0.05, 4].")
        for name, least in (("patchmatch_iterations", 1), ("lbfgs_iterations", 0),
                            ("lbfgs_history", 1)):
            if getattr(self, name) < least:
                raise InputError(f"{name}={getattr(self, name)} is out of range: at least {least}.")
        _check_choices(self)
        if self.field_format == "working" and self.upsample == "patchmatch":
            raise InputError("field_format='working' cannot hold fields refined at the input "
                             "size (upsample='patchmatch'). Try 'float16'.")
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Patch sizes, radii, the size rule and the mask: what the kernels and the rule assume."""
        from .errors import InputError  # noqa: PLC0415

        if len(self.patch_sizes) != 5 or any(not _odd_positive(p) for p in self.patch_sizes):
            raise InputError(f"patch_sizes={self.patch_sizes} is not supported. Try five odd "
                             "sizes, one per level from relu1_1 (the official (5, 5, 3, 3, 3)).")
        if not _odd_positive(self.output_patch_size):
            raise InputError(f"output_patch_size={self.output_patch_size} is not supported. Try an "
                             "odd size such as 3 (the official).")
        if len(self.radii) != 5 or any(r is not None and r < 1 for r in self.radii):
            raise InputError(f"radii={self.radii} is not supported. Try five search radii of at "
                             "least 1, None for the whole image (the official (4, 4, 6, 6, None)).")
        if not 1 <= self.min_side <= self.max_side or self.max_area < self.min_side ** 2:
            raise InputError(f"min_side={self.min_side}, max_side={self.max_side}, max_area="
                             f"{self.max_area} do not make a size rule. Try 1 <= min_side <= "
                             "max_side and max_area >= min_side**2 (the official 200, 700, "
                             "350000).")
        if not self.mask_k > 0 or not 0 <= self.mask_tau <= 1:
            raise InputError(f"mask_k={self.mask_k}, mask_tau={self.mask_tau} are out of range. "
                             "Try mask_k > 0 and mask_tau in [0, 1] (the official 300 and 0.05).")

    @classmethod
    def preset(cls, name: Preset, **overrides: Any) -> "AnalogyConfig":
        """The official settings for one of the four uses, with any field overridden."""
        from .errors import InputError  # noqa: PLC0415

        if name not in PRESETS:
            raise InputError(f"preset {name!r} is unknown. Try one of: {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    def replace(self, **changes: Any) -> "AnalogyConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["weights"] = None if self.weights is None else os.fspath(self.weights)
        return data


@dataclass(frozen=True)
class Schedule:
    """Which frames are keyframes.

    Attributes
    ----------
    every : int or None
        A keyframe every ``every`` frames (0, every, 2 every, ...).
    listed : tuple of int
        These frames (0-based), and frame 0.
    auto : bool
        Place keyframes by the propagated frames' unexplained share.
    threshold : float
        ``auto``: the unexplained share past which a frame becomes a keyframe.
    longest : int
        ``auto``: at most this many frames from one keyframe to the next.
    """

    every: int | None = None
    listed: tuple[int, ...] = ()
    auto: bool = False
    threshold: float = 0.03
    longest: int = 48

    def __post_init__(self) -> None:
        from .errors import InputError  # noqa: PLC0415

        if (self.every is not None and self.every < 1) or any(i < 0 for i in self.listed) \
                or not 0 < self.threshold < 1 or self.longest < 1:
            raise InputError("keyframes: N must be at least 1, frames non-negative, the "
                             "threshold in (0, 1) and the longest interval at least 1.")

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> "Schedule | None":
        """``"all"`` (None: every frame a whole analogy, the frame-by-frame mode), ``"auto"``,
        ``"N"`` (a keyframe every N frames) or ``"i,j,..."`` (these frames, 0-based)."""
        from .errors import InputError  # noqa: PLC0415

        text = text.strip().lower()
        if text == "all":
            return None
        if text == "auto":
            return cls(auto=True, **kwargs)
        try:
            numbers = tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            numbers = ()
        if not numbers:
            raise InputError(f"--keyframes {text!r} is not understood. Try all, auto, a number "
                             f"N (a keyframe every N frames) or a list of frames like 0,12,30.")
        if "," in text:
            return cls(listed=tuple(sorted(set(numbers))), **kwargs)
        return cls(every=numbers[0], **kwargs)

    def planned(self, index: int) -> bool:
        """Whether frame ``index`` is a keyframe before anything is measured."""
        if index == 0 or index in self.listed:
            return True
        return self.every is not None and index % self.every == 0


#: Where the motion between frames comes from: our PatchMatch on the frames' features, or
#: nowhere (fields and solutions carried in place, for a still camera).
Motion = Literal["patchmatch", "none"]
MOTIONS: tuple[Motion, ...] = get_args(Motion)


@dataclass(frozen=True)
class VideoConfig:
    """How a frame reuses the previous frame's work.

    Attributes
    ----------
    patchmatch_iterations : int
        PatchMatch iterations per level for a frame after the first (the first runs
        ``AnalogyConfig.patchmatch_iterations``; never more than that).
    lbfgs_iterations : int
        L-BFGS iterations of a deconvolution started from the previous frame's solution
        (never more than ``AnalogyConfig.lbfgs_iterations``).
    motion : {"patchmatch", "none"}
        How the motion between frames is found (see :data:`MOTIONS`); a flow passed to
        :meth:`Clip.frame` overrides it.
    keep_margin : float
        A searched match replaces the carried one only where its patch energy is below
        ``1 - keep_margin`` times the carried one's: what keeps a match from flickering
        between near-equal patches of B' (0 takes every improvement).
    motion_radius, motion_iterations : int
        The motion search's window at every level (in that level's pixels) and its PatchMatch
        iterations per level.
    keyframes : str
        Which frames are whole analogies (:meth:`Schedule.parse`): ``"all"`` (every frame,
        each started from the one before), ``"auto"``, ``"N"`` (every N-th) or ``"i,j,..."``;
        the others are synthesised from their neighbouring keyframes
        (:mod:`gpuanalogy.keyframes`).
    keyframe_threshold : float
        ``auto``: the share of a frame its keyframe cannot explain past which it becomes a
        keyframe (:func:`gpuanalogy.propagation.unexplained`).
    """

    patchmatch_iterations: int = 2
    lbfgs_iterations: int = 20
    keep_margin: float = 0.5
    motion: Motion = "patchmatch"
    motion_radius: int = 4
    motion_iterations: int = 4
    keyframes: str = "all"
    keyframe_threshold: float = Schedule.threshold

    def __post_init__(self) -> None:
        from .errors import InputError  # noqa: PLC0415

        if self.patchmatch_iterations < 1 or self.lbfgs_iterations < 0:
            raise InputError("video iterations must be positive (PatchMatch >= 1, "
                             "L-BFGS >= 0).")
        _check_choices(self)
        if not 0.0 <= self.keep_margin < 1.0:
            raise InputError(f"keep_margin={self.keep_margin} is out of range. Try a value "
                             f"in [0, 1).")
        if self.motion_radius < 1 or self.motion_iterations < 1:
            raise InputError("motion_radius and motion_iterations must be at least 1.")
        self.schedule()

    def schedule(self) -> Schedule | None:
        """The keyframes as a :class:`Schedule`; None for ``"all"``."""
        return Schedule.parse(self.keyframes, threshold=self.keyframe_threshold)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
