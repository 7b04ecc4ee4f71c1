"""The sizes of a run: the working size the network sees, and the host memory a run needs.

:func:`working_shape` is the official size rule. :func:`memory_needed` estimates the peak host
memory of a run from its input and working sizes, and :func:`check_memory` refuses, before any
work, a run that cannot fit, with one line naming the input, what it needs and what would fit.

The estimate adds the working-size part (the network, the pyramids and the deconvolutions,
per working pixel), the images and fields kept at the input sizes, the largest transient of the
output votes and the refinement's largest solve. Its per-pixel figures were measured on dev-cpu
(docs/performance.md, "Outputs above the working size").
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import AnalogyConfig
from .atlas import Atlas
from .errors import DeviceMemoryError
from .guides import ATLAS_ALIGN, ATLAS_BORDER
from .memory import available_bytes, in_words
from .wls_system import direct_solve_bytes, wls_solve_bytes
from .texture import STRIP_PIXELS as TEXTURE_STRIP_PIXELS
from .upsampling import STRIP_PIXELS

__all__ = ["working_shape", "refinement_shape", "guided_refinement_shape", "MemoryNeed",
           "memory_needed", "check_memory", "PROCESS_BYTES"]

Shape = tuple[int, int]

#: A process with ONNX Runtime and the network's weights loaded, before any pair: the base of
#: every estimate, and what each Dask worker holds however small its pairs.
PROCESS_BYTES = 600 * 2**20
_WORK_BYTES_PER_PIXEL = 5 * 1024    # pyramids, sessions' buffers, L-BFGS vectors
_KEPT_BYTES_PER_PIXEL = 29          # input (uint8, float32), output, field, refined output
_VOTE_BYTES_PER_PIXEL = 56          # an output vote's float32 temporaries at the input size
_REFINE_BYTES_PER_PIXEL = 220       # refine's float64 copies of the result and the structure
_STRIP_BYTES_PER_PIXEL = 100        # one strip of the guided upsampling
_COLUMN_BYTES_PER_PIXEL = 48        # its coefficients at the full width and the low height
# upsample="patchmatch", from its arrays' sizes: the larger of the search (the refined field and
# the fine pass's start, int32, 8 bytes a pixel each, and the four images reduced for the coarse
# pass, 12 at the factor 2) and the vote (the refined field and the voted output as float32, 12),
# then per pixel of a strip PatchMatch's float32 images (24), its two fields and the start (24)
# and its two energies (8), rounded up.
_TEXTURE_BYTES_PER_PIXEL = 28
_TEXTURE_STRIP_BYTES_PER_PIXEL = 60
# Several exemplars: each exemplar's own pyramid (levels 0..5: 3 + 64 + 128/4 + 256/16 + 512/64
# + 512/256 float32 a working pixel, 500 bytes) is held while the atlas is assembled from it,
# and the atlas of the input-size images (float32 RGB) is kept for the outputs. The rest of an
# exemplar pixel's cost is set from measured peaks (docs/performance.md, "Guided analogies").
_EXEMPLAR_BYTES_PER_PIXEL = 4_400
_ATLAS_IMAGE_BYTES_PER_PIXEL = 12
_RATIOS = (0.75, 0.5, 0.35, 0.25, 0.1)   # the smaller ratios a refusal may suggest


def working_shape(shape: Shape, config: AnalogyConfig) -> Shape:
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


def refinement_shape(shape: Shape, config: AnalogyConfig) -> Shape:
    """The size the photo refinement is solved at before its guided upsampling (the input's
    own size when that is no larger): the larger of the size-ruled size, where the official
    code refines, and the working size."""
    candidates = (working_shape(shape, config.replace(ratio=1.0)), working_shape(shape, config))
    best = max(candidates, key=lambda hw: hw[0] * hw[1])
    return (shape[0], shape[1]) if best[0] * best[1] >= shape[0] * shape[1] else best


def guided_refinement_shape(shape: Shape, config: AnalogyConfig) -> Shape | None:
    """Where the photo refinement of an input of ``shape`` is solved before the guided
    upsampling carries it up (:func:`refinement_shape`), or None when it is solved over the
    input's own pixels: with ``refine_upsample="wls"``, or for an input no larger than that."""
    if config.refine_upsample == "wls":
        return None
    reduced = refinement_shape(shape, config)
    return None if reduced == (shape[0], shape[1]) else reduced


@dataclass(frozen=True)
class MemoryNeed:
    """The estimated peak host memory of a run, in bytes, and its largest parts."""

    total: int
    working: int
    refinement: int


def memory_needed(shapes: tuple[Shape, ...], config: AnalogyConfig, *,
                  on_host: bool = True) -> MemoryNeed:
    """About the peak host memory of an analogy of inputs of ``shapes`` ((H, W) of A and B',
    or of A and each of several exemplars).

    ``on_host``: whether the backend's arrays are host memory (the CPU); on a GPU the working
    size's arrays and the refinement's conjugate gradients live in device memory. Several
    exemplars count with their atlas's walls (``gpuanalogy.guides``), their own pyramids and
    the atlas of their input-size images.
    """
    works = [working_shape(shape, config) for shape in shapes]
    pixels = [h * w for h, w in shapes]
    work_pixels = sum(h * w for h, w in works)
    extra = 0
    if len(shapes) > 2:
        atlases = [Atlas.side_by_side(list(grid[1:]), ATLAS_BORDER, ATLAS_ALIGN).shape
                   for grid in (works, shapes)]
        work_pixels = works[0][0] * works[0][1] + atlases[0][0] * atlases[0][1]
        extra = (_EXEMPLAR_BYTES_PER_PIXEL * sum(h * w for h, w in works[1:])
                 + _ATLAS_IMAGE_BYTES_PER_PIXEL * atlases[1][0] * atlases[1][1])
    working = PROCESS_BYTES + extra + (_WORK_BYTES_PER_PIXEL * work_pixels if on_host else 0)
    refinement = 0
    if config.refine and on_host:   # on a GPU, the refinement's arrays are device memory
        for h, w in shapes:
            reduced = guided_refinement_shape((h, w), config)
            if reduced is None:
                part = wls_solve_bytes(h, w) + _REFINE_BYTES_PER_PIXEL * h * w
            else:
                wh, ww = reduced
                part = (direct_solve_bytes(wh, ww) + _REFINE_BYTES_PER_PIXEL * wh * ww
                        + _STRIP_BYTES_PER_PIXEL * min(STRIP_PIXELS, h * w)
                        + _COLUMN_BYTES_PER_PIXEL * wh * w)
            refinement = max(refinement, part)
    vote = _VOTE_BYTES_PER_PIXEL * max(pixels)
    if config.upsample == "patchmatch":
        vote += (_TEXTURE_BYTES_PER_PIXEL * max(pixels)
                 + _TEXTURE_STRIP_BYTES_PER_PIXEL * min(TEXTURE_STRIP_PIXELS, max(pixels)))
    total = working + _KEPT_BYTES_PER_PIXEL * sum(pixels) + max(vote, refinement)
    return MemoryNeed(int(total), int(working), int(refinement))


def check_memory(shapes: tuple[Shape, ...], config: AnalogyConfig, *, on_host: bool = True,
                 available: int | None = None, names: tuple[str, ...] = ("a", "b_prime")
                 ) -> MemoryNeed:
    """Refuse, before any work, a run that needs more host memory than is ``available``.

    ``available`` defaults to :func:`gpuanalogy.memory.available_bytes` (no check when that is
    unknown). Returns the estimate when the run fits.

    Raises
    ------
    DeviceMemoryError
        One line: the inputs, what the run needs, what is free, and what would fit (the
        refinement at the working size, a smaller ``--ratio`` or smaller inputs).
    """
    need = memory_needed(shapes, config, on_host=on_host)
    free = available_bytes() if available is None else available
    if free is None or need.total <= free:
        return need
    inputs = " and ".join(f"{name} {w}x{h}" for name, (h, w) in zip(names, shapes))
    if len(shapes) > 2:
        inputs += f" ({len(shapes) - 1} exemplars)"
    raise DeviceMemoryError(f"{inputs} need about {in_words(need.total)} of memory but "
                            f"{in_words(free)} is free; try "
                            f"{_what_fits(shapes, config, on_host, free)}")


def _what_fits(shapes: tuple[Shape, ...], config: AnalogyConfig, on_host: bool,
               free: int) -> str:
    """The least change of settings or input size that fits in ``free`` bytes, in words."""
    def fits(candidate_shapes: tuple[Shape, ...], candidate: AnalogyConfig) -> bool:
        return memory_needed(candidate_shapes, candidate, on_host=on_host).total <= free

    also = ""
    if config.refine and config.refine_upsample == "wls":
        config, also = config.replace(refine_upsample="guided"), "--refine-upsample guided with "
        if fits(shapes, config):
            return "refinement at the working size (--refine-upsample guided)"
    for ratio in (r for r in _RATIOS if r < config.ratio):
        if fits(shapes, config.replace(ratio=ratio)):
            return f"{also}--ratio {ratio}"
    scale = 1.0
    while scale > 0.01:
        scale *= 0.9
        smaller = tuple((max(int(h * scale), 1), max(int(w * scale), 1)) for h, w in shapes)
        if fits(smaller, config):  # type: ignore[arg-type]
            sizes = " and ".join(f"{w}x{h}" for h, w in smaller)
            return f"{also}smaller inputs (at most {sizes}) or a machine with more memory"
    return "a machine with more memory"
