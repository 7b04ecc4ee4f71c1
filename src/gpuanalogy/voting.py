"""The outputs at the input sizes, one at a time: steps 4 and 5 of the method, in pieces.

:func:`vote_output` votes one output through a final field (at the working size and resized,
or at the input size, as ``config.upsample`` says), :func:`textured` refines it on image
patches at the input size (``upsample="patchmatch"``), :func:`refined` applies the WLS photo
refinement, and :func:`transferred` keeps the structure image's lightness or chroma
(``config.transfer``). Region labels and the walls of an atlas of several exemplars
(:class:`gpuanalogy.guides.Guides`) hold in every vote and search here.
:func:`gpuanalogy.pipeline.analogy` puts them together for A' and for each B.
"""
from __future__ import annotations

import numpy as np

from .backend import Backend
from .colour import transfer
from .config import AnalogyConfig
from .fields import Field
from .guides import Guides
from .images import resize_image
from .levels import Images
from .refinement import refine
from .sizes import guided_refinement_shape
from .texture import grid_scale, textured_vote
from .upsampling import refine_guided

__all__ = ["vote_output", "textured", "refined", "transferred", "resize01", "to_uint8"]


def _grids(direction: str, layout: tuple[int, ...], source: tuple[int, ...]
           ) -> tuple[tuple[int, int], tuple[int, int]]:
    """(A's grid, the B' side's grid) of a vote onto ``layout`` from ``source``."""
    pair = (layout[:2], source[:2]) if direction == "ab" else (source[:2], layout[:2])
    return pair  # type: ignore[return-value]


def vote_output(source: Images, layout: Images, nnf: Field, config: AnalogyConfig,
                backend: Backend, guides: Guides | None = None, direction: str = "ab"
                ) -> tuple[np.ndarray, np.ndarray]:
    """An output with ``layout``'s grid voted from ``source`` pixels through ``nnf``.

    Returns the uint8 image at the layout image's input size and the field brought to the input
    sizes (float32). With ``config.upsample == "cubic"`` the vote happens at the working size
    and the image is resized; with "nnf" the input-size field votes the input-size pixels;
    "patchmatch" gives the "cubic" output here (its estimate; :func:`textured` refines on).
    ``guides`` hold in the vote, ``direction`` saying which side ``layout`` is: "ab" for A'
    (A's grid voted from the B' side), "ba" for B.
    """
    full = nnf.upsampled(layout.full.shape[:2], source.full.shape[:2], backend)
    grid = layout.full if config.upsample == "nnf" else layout.work
    image = source.full if config.upsample == "nnf" else source.work
    field = full if config.upsample == "nnf" else nnf.upsampled(
        layout.work.shape[:2], source.work.shape[:2], backend)
    labels = None if guides is None else guides.labels(
        direction, *_grids(direction, grid.shape, image.shape), backend)
    voted = backend.to_numpy(field.vote(backend.asarray(image), config.output_patch_size,
                                        backend, labels))
    return to_uint8(resize01(voted, layout.full.shape[:2])), \
        backend.to_numpy(full.values).astype(np.float32)


def textured(source: Images, layout: Images, field: np.ndarray, estimate: np.ndarray,
             other: np.ndarray, config: AnalogyConfig, backend: Backend,
             guides: Guides | None = None, direction: str = "ab"
             ) -> tuple[np.ndarray, np.ndarray]:
    """The ``upsample="patchmatch"`` output and field (:func:`gpuanalogy.texture.textured_vote`
    on the "cubic" outputs ``estimate`` and ``other``), under ``guides`` as in
    :func:`vote_output`; inputs no larger than the working size keep those given."""
    if layout.full.size <= layout.work.size and source.full.size <= source.work.size:
        return estimate, field
    scale = max(grid_scale(layout.full.shape[:2], layout.work.shape[:2]),
                grid_scale(source.full.shape[:2], source.work.shape[:2]))
    pair = None if guides is None else guides.pair(
        direction, *_grids(direction, layout.full.shape, source.full.shape))
    image, found = textured_vote(field, layout.full, estimate, source.full, other,
                                 scale=scale, vote_patch_size=config.output_patch_size,
                                 seed=config.seed, backend=backend,
                                 labels=None if pair is None else (*pair, guides.count))
    return to_uint8(image), found.astype(np.float32)


def refined(output: np.ndarray, layout: Images, config: AnalogyConfig,
            backend: Backend) -> np.ndarray:
    """The refined ``output`` (uint8, at ``layout``'s input size), back on the host: the WLS
    refinement of ``output`` itself, or :func:`gpuanalogy.upsampling.refine_guided` at the
    size :func:`gpuanalogy.sizes.guided_refinement_shape` gives."""
    shape = guided_refinement_shape(layout.full.shape[:2], config)
    if shape is None:
        return backend.to_numpy(refine(backend.asarray(output),
                                       backend.asarray(to_uint8(layout.full))))
    return refine_guided(output, layout.full, shape, backend=backend)


def transferred(output: np.ndarray | None, layout: Images,
                config: AnalogyConfig) -> np.ndarray | None:
    """``output`` as ``config.transfer`` says, against its structure image ``layout``
    (:func:`gpuanalogy.colour.transfer`); None stays None."""
    if output is None or config.transfer == "all":
        return output
    return transfer(to_uint8(layout.full), output, config.transfer)


def resize01(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a float image in [0, 1], clipped back into [0, 1] (cubic overshoots)."""
    if image.shape[:2] == tuple(shape):
        return image
    resized = resize_image(image, shape)
    return np.clip(resized, 0.0, 1.0, out=resized)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as uint8 (rounded, clipped)."""
    scaled = np.asarray(image, dtype=np.float32) * np.float32(255.0)
    np.rint(scaled, out=scaled)
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
