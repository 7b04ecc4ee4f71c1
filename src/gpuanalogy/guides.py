"""What constrains one analogy's matches: region labels and the atlas of several exemplars.

:class:`Guides` holds one run's labels (:mod:`gpuanalogy.regions`) at the working and input
sizes and, with several exemplars, the layouts of their atlas (:mod:`gpuanalogy.atlas`). For
any grid the run searches or votes on (a level's maps, the working size, the input size) it
gives the labels of A and of the B' side on that grid, and the kernels' :class:`Labels` for a
direction: "ab" (A's pixels matching the B' side) or "ba" (the B' side's pixels matching A).
Levels take labels reduced by majority from the working size; the atlas's walls come from its
layout at that grid, so they follow the pooled maps exactly. Labels are built once per grid
and direction, on the host, and moved to the backend once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .atlas import Atlas
from .backend import Backend
from .errors import InputError
from .regions import Labels, label_keys, pair_labels, reduce_labels, search_labels

__all__ = ["Guides", "guides_for", "ATLAS_BORDER", "ATLAS_ALIGN"]

#: Wall columns between two exemplars at the working size (two at relu5_1).
ATLAS_BORDER = 32
#: The atlas's origins and sides are multiples of this (relu5_1 is 16 times coarser).
ATLAS_ALIGN = 16

Shape = tuple[int, int]


@dataclass
class Guides:
    """Region labels and the atlas of one analogy.

    Attributes
    ----------
    count : int
        K: the labels run 0..K (0 unlabelled); 0 without region masks.
    ids_a : (ndarray, ndarray) or None
        A's labels (H, W) int32 at the working size and at the input size; None: unlabelled.
    ids_b : list of (ndarray, ndarray) or None
        Each exemplar's labels at its working and input sizes; None: unlabelled.
    atlas : (Atlas, Atlas) or None
        With several exemplars, their layout at the working sizes and at the input sizes
        (walls :data:`ATLAS_BORDER` wide, aligned to :data:`ATLAS_ALIGN`).
    """

    count: int = 0
    ids_a: tuple[np.ndarray, np.ndarray] | None = None
    ids_b: list[tuple[np.ndarray, np.ndarray]] | None = None
    atlas: tuple[Atlas, Atlas] | None = None
    _made: dict[Any, Labels | None] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, count: int, ids_a: tuple[np.ndarray, np.ndarray] | None,
           ids_b: list[tuple[np.ndarray, np.ndarray]] | None,
           exemplar_shapes: list[tuple[Shape, Shape]]) -> "Guides | None":
        """The guides of a run, None when nothing constrains it (no masks, one exemplar).

        ``exemplar_shapes`` are each exemplar's (working, input) shapes.
        """
        if count == 0:
            ids_a = ids_b = None
        atlas = None
        if len(exemplar_shapes) > 1:
            atlas = tuple(Atlas.side_by_side([shapes[i] for shapes in exemplar_shapes],
                                             ATLAS_BORDER, ATLAS_ALIGN) for i in (0, 1))
        if atlas is None and ids_a is None and ids_b is None:
            return None
        return cls(count, ids_a, ids_b, atlas)  # type: ignore[arg-type]

    def exemplar(self, k: int) -> "Guides | None":
        """The guides of exemplar ``k`` alone (its B is voted on its own grid); None when
        only the atlas's walls guided the run."""
        if self.atlas is None:
            return self
        if self.ids_a is None:
            return None
        return Guides(self.count, self.ids_a, [self.ids_b[k]] if self.ids_b else None)

    def side(self, side: str, shape: Shape) -> np.ndarray | None:
        """The labels of ``side`` ("a" or "b", the B' side) on a grid of ``shape``, on the
        host: the working or input size's own, a level's reduced by majority, and on the B'
        side walls (:data:`gpuanalogy.regions.WALL`) where the atlas has them. None: no
        labels there."""
        if side == "a" or self.atlas is None:
            ids = self.ids_a if side == "a" else (self.ids_b[0] if self.ids_b else None)
            return None if ids is None else _on_grid(ids, shape)
        work, full = self.atlas
        if tuple(shape) == work.shape:
            layout, grids = work, [0] * len(work.shapes)
        elif tuple(shape) == full.shape:
            layout, grids = full, [1] * len(full.shapes)
        else:
            layout, grids = work.reduced(work.shape[1] // shape[1]), None
        if self.ids_b is None:
            return layout.labels()
        return layout.labels([ids[grids[k]] if grids else reduce_labels(ids[0], layout.shapes[k])
                              for k, ids in enumerate(self.ids_b)])

    def pair(self, direction: str, shape_a: Shape, shape_b: Shape
             ) -> tuple[np.ndarray | None, np.ndarray] | None:
        """The host labels of the searching side and of the searched side for a search or a
        vote on A of ``shape_a`` and the B' side of ``shape_b``: "ab" from A's pixels to the
        B' side's, "ba" the other way (only A's labels constrain it: the B' side's walls and
        unlabelled pixels match freely, a wall's match is never used). None: no constraint."""
        a, b = self.side("a", shape_a), self.side("b", shape_b)
        if direction == "ba":
            return None if a is None else (None if b is None else np.maximum(b, 0), a)
        if a is None and b is None:
            return None
        return a, np.zeros(shape_b, np.int32) if b is None else b

    def labels(self, direction: str, shape_a: Shape, shape_b: Shape,
               backend: Backend) -> Labels | None:
        """:meth:`pair` as the kernels read it (:class:`gpuanalogy.regions.Labels`), on the
        backend, made once per grid and direction."""
        key = (direction, tuple(shape_a), tuple(shape_b), backend.name)
        if key not in self._made:
            pair = self.pair(direction, shape_a, shape_b)
            self._made[key] = None if pair is None else search_labels(*pair, self.count,
                                                                      backend)
        return self._made[key]


def guides_for(regions: tuple[Any, Any] | None, shapes: list[tuple[Shape, Shape]],
               names: tuple[str, ...]) -> Guides | None:
    """The guides of a run from the user's region labels.

    Parameters
    ----------
    regions : (labels_a, labels_b) or None
        Label images (:func:`gpuanalogy.regions.label_keys`: integers, or 8-bit colours) of
        A's and B''s input sizes; with several exemplars ``labels_b`` is a list, one per
        exemplar (None where one is unlabelled).
    shapes : list of ((H, W), (H, W))
        The (input, working) shapes of A, then of each exemplar.
    names : tuple of str
        A's and the exemplars' names, for messages.

    Raises
    ------
    InputError
        A label image of another size than its input, of another kind than the others
        (colours and integers), or a label on one side only.
    """
    exemplars = [shape[::-1] for shape in shapes[1:]]   # (working, input)
    if regions is None:
        return Guides.of(0, None, None, exemplars)
    labels_a, labels_b = regions
    labels_b = list(labels_b) if isinstance(labels_b, (list, tuple)) else [labels_b]
    if len(labels_b) != len(shapes) - 1:
        raise InputError(f"regions: {len(labels_b)} label images for the exemplars, but "
                         f"{len(shapes) - 1} exemplars")
    images = [labels_a, *labels_b]
    owners = [f"the regions of {name}" for name in names]
    keys, colours = [], set()
    for image, owner, (full, _) in zip(images, owners, shapes):
        image = np.zeros(full, np.int64) if image is None else np.asarray(image)
        if image.shape[:2] != tuple(full):
            raise InputError(f"{owner}: {image.shape[1]}x{image.shape[0]} labels for a "
                             f"{full[1]}x{full[0]} image; a label image has its input's size")
        keys.append(label_keys(image, owner))
        colours.add(image.ndim == 3)
    if len(colours) > 1:
        raise InputError("regions: colour and integer label images do not mix; give every "
                         "side's labels as colours or every side's as integers")
    ids_a, ids_b, count = pair_labels(keys[0], keys[1:], tuple(owners), colours=True in colours)
    with_work = [(reduce_labels(ids, work), ids) for ids, (_, work) in zip([ids_a, *ids_b], shapes)]
    return Guides.of(count, with_work[0], with_work[1:], exemplars)


def _on_grid(ids: tuple[np.ndarray, np.ndarray], shape: Shape) -> np.ndarray:
    """Labels (working, input) brought to ``shape``: either one as it is, or the working
    size's reduced by majority."""
    for own in ids:
        if own.shape == tuple(shape):
            return own
    return reduce_labels(ids[0], shape)
