"""Several exemplars as one map: an atlas of their maps side by side (DESIGN.md, "Several
exemplars").

One search from A over every exemplar at once runs on an atlas: the exemplars' maps left to
right, top-aligned, with wall columns between neighbours. Walls (and the space under a
shorter exemplar) carry the label :data:`gpuanalogy.regions.WALL` (never matched, never voted
from, ``kernels._labels``) and hold the nearer exemplar's edge repeated, so a patch that
reaches past an exemplar's edge compares with that exemplar's own edge. The layout is made
once at the working size with origins and sides on a multiple of 16 (:meth:`Atlas.side_by_side`),
so each VGG level's layout is it divided by the level's factor (:meth:`Atlas.reduced`) and a
border of 32 px stays two or more columns wide at relu5_1: wider than half a patch, so no
patch reads two exemplars. A field into the atlas says which exemplar each match is in: the
slot whose columns hold it (:meth:`Atlas.locate`). Between grids a field is brought exemplar
by exemplar (:func:`upsample`), since a map's ceil-pooled size does not scale with the atlas.

Arrays are the backend's (``xp`` is NumPy or CuPy); nothing here runs a kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .regions import WALL

__all__ = ["Atlas", "upsample"]


@dataclass(frozen=True)
class Atlas:
    """Where k exemplars' maps of one grid lie in one map.

    Attributes
    ----------
    shapes : tuple of (int, int)
        (H_k, W_k) of each exemplar's map, in order.
    origins : tuple of int
        The atlas column of each exemplar's column 0 (left to right, rows from 0).
    shape : (int, int)
        (H, W) of the atlas.
    """

    shapes: tuple[tuple[int, int], ...]
    origins: tuple[int, ...]
    shape: tuple[int, int]

    @classmethod
    def side_by_side(cls, shapes: list[tuple[int, int]], border: int,
                     align: int = 1) -> "Atlas":
        """Maps of ``shapes`` left to right, ``border`` or more wall columns between two,
        every origin and both sides of the atlas a multiple of ``align`` (so that the
        layout halves exactly down the network's pooling: :meth:`reduced`)."""
        def up(n: int) -> int:
            return -(-n // align) * align

        origins, x = [], 0
        for _, width in shapes:
            origins.append(x)
            x = up(x + width + border)
        shape = (up(max(h for h, _ in shapes)), up(origins[-1] + shapes[-1][1]))
        return cls(tuple((int(h), int(w)) for h, w in shapes), tuple(origins), shape)

    def reduced(self, factor: int) -> "Atlas":
        """This layout on a grid ``factor`` times coarser, each map ceil-reduced as VGG's
        pooling reduces it (``factor`` must divide the origins and the sides)."""
        def down(n: int) -> int:
            return -(-n // factor)

        return Atlas(tuple((down(h), down(w)) for h, w in self.shapes),
                     tuple(x // factor for x in self.origins),
                     (self.shape[0] // factor, self.shape[1] // factor))

    def _sources(self) -> tuple[np.ndarray, np.ndarray]:
        """For each atlas column, the exemplar it copies and that exemplar's column (its own,
        or in a border the edge of the nearer neighbour)."""
        width = self.shape[1]
        owner = np.zeros(width, dtype=np.int64)
        column = np.zeros(width, dtype=np.int64)
        ends = [*self.origins[1:], width]
        for k, (x0, (_, w), end) in enumerate(zip(self.origins, self.shapes, ends)):
            split = end if k + 1 == len(self.shapes) else x0 + w + (end - x0 - w + 1) // 2
            owner[x0:x0 + w], column[x0:x0 + w] = k, np.arange(w)
            owner[x0 + w:split], column[x0 + w:split] = k, w - 1      # k's edge, repeated
            if k + 1 < len(self.shapes):
                owner[split:end] = k + 1                              # the next one's edge
        return owner, column

    def assemble(self, maps: list[Any], xp: Any, *, channels_first: bool = False) -> Any:
        """The atlas of ``maps`` ((H_k, W_k, C) each, one dtype): (H, W, C), C-contiguous;
        walls hold the nearer exemplar's edge. With ``channels_first`` maps and atlas are
        (C, H, W)."""
        if channels_first:
            hwc = self.assemble([m.transpose(1, 2, 0) for m in maps], xp)
            return xp.ascontiguousarray(hwc.transpose(2, 0, 1))
        height, width = self.shape
        owner, column = self._sources()
        out = xp.empty((height, width, maps[0].shape[2]), dtype=maps[0].dtype)
        for k, (h, _) in enumerate(self.shapes):
            columns = np.flatnonzero(owner == k)
            rows = np.minimum(np.arange(height), h - 1)
            out[:, columns[0]:columns[-1] + 1] = maps[k][xp.asarray(rows)][
                :, xp.asarray(column[columns])]
        return out

    def cut(self, atlas: Any, k: int) -> Any:
        """Exemplar ``k``'s part of an (H, W, ...) array on the atlas grid."""
        (h, w), x0 = self.shapes[k], self.origins[k]
        return atlas[:h, x0:x0 + w]

    def labels(self, ids: list[np.ndarray] | None = None) -> np.ndarray:
        """The atlas's labels (host, int32): each exemplar's (``ids``, or 0), walls elsewhere."""
        out = np.full(self.shape, WALL, dtype=np.int32)
        for k, (x0, (h, w)) in enumerate(zip(self.origins, self.shapes)):
            out[:h, x0:x0 + w] = 0 if ids is None else ids[k]
        return out

    def locate(self, values: Any, xp: Any) -> tuple[Any, Any]:
        """Which exemplar each match of a field into the atlas is in, and where in it.

        Parameters
        ----------
        values : array, shape (H_A, W_A, 2), int
            (row, col) in the atlas.

        Returns
        -------
        index : array, shape (H_A, W_A), int32
        local : array, shape (H_A, W_A, 2), int32
            (row, col) in that exemplar.
        """
        origins = xp.asarray(np.array(self.origins, dtype=np.int64))
        index = xp.searchsorted(origins, values[..., 1], side="right") - 1
        local = xp.stack([values[..., 0], values[..., 1] - origins[index]], axis=-1)
        return index.astype(xp.int32), local.astype(xp.int32)

    def place(self, index: Any, local: Any, xp: Any) -> Any:
        """The inverse of :meth:`locate`: (row, col) in the atlas, (H_A, W_A, 2) int32."""
        origins = xp.asarray(np.array(self.origins, dtype=np.int32))
        return xp.stack([local[..., 0], local[..., 1] + origins[index]], axis=-1).astype(xp.int32)


def _axis(p: Any, old_a: int, new_a: int, q_parent: Any, old_b: Any, new_b: Any,
          xp: Any) -> Any:
    """One axis of the NNF upsampling rule (``kernels._device.upsample_coordinate``), with B's
    old and new sizes given per pixel."""
    numerator = (q_parent * new_a + (p * old_a) % new_a) * new_b
    return xp.minimum(xp.maximum(numerator // (old_b * new_a), 0), new_b - 1)


def upsample(values: Any, old: Atlas, new: Atlas, shape_a_new: tuple[int, int],
             xp: Any) -> Any:
    """A field from A into the atlas ``old`` brought to A of ``shape_a_new`` and the atlas
    ``new`` (the same exemplars at the next level), exemplar by exemplar.

    Each new pixel takes its parent's match, in the parent's exemplar, by the rule of
    :func:`gpuanalogy.nnf.upsample_nnf` with that exemplar's old and new sizes; for one
    exemplar it is that function's result.

    Parameters
    ----------
    values : array, shape (H_A, W_A, 2), int32
    old, new : Atlas
    shape_a_new : (int, int)
    xp : module

    Returns
    -------
    array, shape (H_A_new, W_A_new, 2), int32
    """
    old_h, old_w = values.shape[:2]
    new_h, new_w = shape_a_new
    rows = xp.arange(new_h, dtype=xp.int64)[:, None]
    cols = xp.arange(new_w, dtype=xp.int64)[None, :]
    parents = values[(rows * old_h) // new_h, (cols * old_w) // new_w].astype(xp.int64)
    index, local = old.locate(parents, xp)
    old_b, new_b = (xp.asarray(np.array(atlas.shapes, dtype=np.int64))[index]
                    for atlas in (old, new))
    row = _axis(rows, old_h, new_h, local[..., 0].astype(xp.int64), old_b[..., 0], new_b[..., 0],
                xp)
    col = _axis(cols, old_w, new_w, local[..., 1].astype(xp.int64), old_b[..., 1], new_b[..., 1],
                xp)
    return new.place(index, xp.stack([row, col], axis=-1), xp)
