"""Several exemplars in one analogy: their atlas as the B' side of the loop (DESIGN.md,
"Several exemplars").

With exemplars B'_1 .. B'_k, :func:`gpuanalogy.pipeline.analogy` runs the method once with an
atlas (:mod:`gpuanalogy.atlas`) as B': each exemplar's own VGG-19 pyramid placed in its slot
at every level (:func:`atlas_pyramid`; a network run over the joined image would let the
receptive fields reach across the walls), the atlas of their images (:func:`atlas_images`),
and at relu5_1 a start field into the exemplar each patch of A fits best
(:func:`exemplar_start`). Every level then searches A's patches over all exemplars at once,
and B (the atlas's grid in A's appearance) is rebuilt for all of them together. The walls
hold in every search and vote (:class:`gpuanalogy.guides.Guides`). At the end the fields are
taken apart per exemplar (:func:`split_field`, :func:`locate`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .atlas import Atlas
from .backend import Backend
from .config import AnalogyConfig
from .errors import InputError
from .fields import Field
from .guides import Guides
from .levels import Images, Pyramids, pyramid
from .nnf import identity_nnf, nnf_energy
from .patchmatch import normalize_features

__all__ = ["check_exemplars", "atlas_pyramid", "atlas_images", "exemplar_start",
           "split_field", "locate"]


def check_exemplars(config: AnalogyConfig, count: int) -> None:
    """Refuse the settings several exemplars do not support yet."""
    if count < 1:
        raise InputError("b_prime: no exemplar given")
    if count > 1 and config.subpixel:
        raise InputError("subpixel alignment works with one exemplar; run several exemplars "
                         "without --subpixel")
    if count > 1 and config.field_format == "working":
        raise InputError("field_format='working' holds one exemplar's field; with several "
                         "exemplars try float32, float16 or flo")


def atlas_pyramid(model: Any, exemplars: list[Images], layout: Atlas,
                  backend: Backend) -> dict[int, Any]:
    """Levels 0..5 of the B' side: each exemplar's own pyramid
    (:func:`gpuanalogy.levels.pyramid` of its working-size image), placed in its slot of
    ``layout`` (the working-size layout) reduced to the level, walls holding edges."""
    maps: dict[int, list[Any]] = {level: [] for level in range(6)}
    for exemplar in exemplars:
        for level, found in pyramid(model, backend.asarray(exemplar.work)).items():
            maps[level].append(found)
    return {level: layout.reduced(2 ** max(level - 1, 0)).assemble(found, backend.xp,
                                                                   channels_first=True)
            for level, found in maps.items()}


def atlas_images(exemplars: list[Images], guides: Guides) -> Images:
    """The exemplars' images side by side at the input and the working sizes (host float32,
    walls holding edges): the B' image the outputs vote from."""
    work, full = guides.atlas  # type: ignore[misc]
    return Images(full.assemble([e.full for e in exemplars], np),
                  work.assemble([e.work for e in exemplars], np))


def exemplar_start(pyramids: Pyramids, guides: Guides, config: AnalogyConfig,
                   backend: Backend) -> Field:
    """The A -> atlas field the search starts from at relu5_1 (``config.nnf_init``): with
    "identity", each exemplar's identity field (scaled to its size) and, per pixel, the one
    whose patch energy is lowest; with "random", uniform positions (walls drawn again by the
    search's start)."""
    xp = backend.xp
    work = guides.atlas[0]  # type: ignore[index]
    level = work.reduced(16)
    shape_a = pyramids.shape("a", 5)
    if config.nnf_init == "random":
        from .nnf import random_nnf  # noqa: PLC0415 - the uncommon start

        values = random_nnf(shape_a, level.shape, config.seed, backend)
    else:
        a, b = (normalize_features(maps[5], backend) for maps in (pyramids.a, pyramids.b_prime))
        candidates = [level.place(xp.full(shape_a, k, dtype=xp.int32),
                                  identity_nnf(shape_a, shape, backend), xp)
                      for k, shape in enumerate(level.shapes)]
        energies = xp.stack([nnf_energy(a, a, b, b, field, config.patch_sizes[4], backend)
                             for field in candidates])
        best = xp.argmin(energies, axis=0)
        values = xp.stack(candidates)[best, xp.arange(shape_a[0])[:, None],
                                      xp.arange(shape_a[1])[None, :]]
    return Field(xp.ascontiguousarray(values, dtype=xp.int32), level.shape,
                 atlas=guides.atlas)


def split_field(field: Field, guides: Guides | None, backend: Backend) -> list[Field]:
    """A field from the B' side to A, one per exemplar (cut from the atlas's grid)."""
    if guides is None or guides.atlas is None:
        return [field]
    layout = guides.atlas[0].reduced(guides.atlas[0].shape[1] // field.shape_a[1])
    xp = backend.xp
    return [Field(xp.ascontiguousarray(layout.cut(field.values, k)), field.shape_b,
                  field.subpixel) for k in range(len(layout.shapes))]


def locate(values: np.ndarray, guides: Guides) -> tuple[np.ndarray, np.ndarray]:
    """An input-size field into the atlas as (row, col) in each match's own exemplar,
    float32, and the exemplar's index, uint8 (0 for the first)."""
    index, local = guides.atlas[1].locate(np.rint(values).astype(np.int64), np)  # type: ignore
    return local.astype(np.float32), index.astype(np.uint8)
