"""Region masks: label images made into the labels the search and the vote obey.

A user labels regions of A and of B' that must match each other (sky to sky, face to face):
two label images, colours or integers, where 0 (black) marks pixels that match freely. This
module turns them into what the kernels read (:class:`Labels`, DESIGN.md "Region masks"): one shared numbering (:func:`pair_labels`, which refuses a label on one side only),
the labels reduced to each level's grid by majority (:func:`reduce_labels`), and, for one
direction of a search, the grid's labels with B's pixels grouped by label
(:func:`search_labels`). Label arrays live on the host; :func:`search_labels` puts what the
kernels read on the backend.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .backend import Backend
from .errors import InputError

__all__ = ["Labels", "label_keys", "pair_labels", "reduce_labels", "search_labels",
           "forbidden_share", "WALL"]

#: The label of an atlas's border pixels: never matched, never voted from.
WALL = -1


class Labels(NamedTuple):
    """Region labels of one direction of a search or a vote, from A to B, as the kernels read
    them (``kernels._labels``): who may match whom.

    Attributes
    ----------
    labels_p : array, shape (H_A, W_A) or (0, 0), int32
        A's labels, 0 unlabelled; (0, 0) when A carries none.
    labels_q : array, shape (H_B, W_B), int32
        B's labels, 0 unlabelled, :data:`WALL` for walls (never matched, never voted from).
    members : array, shape (N,), int32
        B's pixels that are no wall, as flat indices ``qr * W_B + qc``, grouped by label.
    offsets : array, shape (K + 2,), int32
        Label l's pixels are ``members[offsets[l]:offsets[l + 1]]``.
    """

    labels_p: Any
    labels_q: Any
    members: Any
    offsets: Any


def label_keys(image: np.ndarray, name: str) -> np.ndarray:
    """One integer per pixel of a label image: its value, or its colour as ``0xRRGGBB``.

    Parameters
    ----------
    image : ndarray, shape (H, W) of non-negative integers, or (H, W, 3) uint8 colours
    name : str
        What the image is, for messages.

    Returns
    -------
    ndarray, shape (H, W), int64
        0 for unlabelled pixels (value 0, or black).
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        rgb = image.astype(np.int64)
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    if image.ndim != 2 or image.dtype.kind not in "iu" or image.size == 0:
        raise InputError(f"{name}: a label image is H x W integers or H x W x 3 8-bit colours; "
                         f"got {image.shape} {image.dtype}")
    if image.min() < 0:
        raise InputError(f"{name}: labels are non-negative (0: unlabelled); found {image.min()}")
    return image.astype(np.int64)


def _label_text(key: int, colours: bool) -> str:
    return f"#{key:06x}" if colours else str(key)


def pair_labels(keys_a: np.ndarray, keys_b: np.ndarray | list[np.ndarray],
                names: tuple[str, ...], *, colours: bool = False
                ) -> tuple[np.ndarray, Any, int]:
    """Both sides' keys numbered 1..K in one numbering (0 stays unlabelled).

    Parameters
    ----------
    keys_a : ndarray, shape (H, W), int64
        :func:`label_keys` of A's label image.
    keys_b : ndarray, shape (H, W), int64, or list of them
        Those of B''s, or of each exemplar's (a label of A must be in one of them at least).
    names : tuple of str
        The label images, A's first, for messages.
    colours : bool
        Whether the keys are colours (messages then write them ``#rrggbb``).

    Returns
    -------
    ids_a : ndarray, shape (H, W), int32
    ids_b : ndarray, shape (H, W), int32, or list of them (as ``keys_b``)
    count : int
        K, the number of labels besides 0.

    Raises
    ------
    InputError
        A label present on one side only (it could match nothing); the message names it.
    """
    several = isinstance(keys_b, list)
    sides = [keys_a, *(keys_b if several else [keys_b])]
    found = [np.unique(keys) for keys in sides]
    others = " or ".join(names[1:])
    for index, here in enumerate(found):
        there = np.concatenate(found[1:]) if index == 0 else found[0]
        lonely = np.setdiff1d(here[here != 0], there)
        if lonely.size:
            shown = ", ".join(_label_text(int(k), colours) for k in lonely[:5])
            raise InputError(f"{names[index]}: label {shown} is not in "
                             f"{others if index == 0 else names[0]}; a labelled region needs "
                             f"a region of its label on the other side (0 or black matches "
                             f"freely)")
    keys = np.unique(np.concatenate(found))
    keys = keys[keys != 0]
    ids = []
    for side in sides:
        numbered = np.searchsorted(keys, side).astype(np.int32) + 1
        numbered[side == 0] = 0
        ids.append(numbered)
    return ids[0], (ids[1:] if several else ids[1]), int(keys.size)


def _block_starts(size: int, new: int) -> np.ndarray:
    """Where each of ``new`` blocks starts along an axis of ``size`` (the NNF rule's
    ``floor(p * size / new)``)."""
    return (np.arange(new, dtype=np.int64) * size) // new


def reduce_labels(ids: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels brought to a grid of ``shape`` by majority.

    Pixel (y, x) of the new grid covers rows ``floor(y H / h)`` up to the next pixel's start
    (at least one row) and likewise columns: the pixels that the fields' rule maps onto it.
    Its label is the most frequent label there, the smallest on a tie; a larger grid takes
    the nearest label.

    Parameters
    ----------
    ids : ndarray, shape (H, W), int32
        Labels 0..K (:func:`pair_labels`).
    shape : (int, int)

    Returns
    -------
    ndarray, shape (h, w), int32
    """
    rows, cols = _block_starts(ids.shape[0], shape[0]), _block_starts(ids.shape[1], shape[1])
    best = np.zeros(shape, dtype=np.int32)
    best_count = np.full(shape, -1, dtype=np.int64)
    for label in np.unique(ids):
        counts = np.add.reduceat(np.add.reduceat((ids == label).astype(np.int32), rows, axis=0),
                                 cols, axis=1)
        better = counts > best_count
        best[better] = label
        best_count[better] = counts[better]
    return best


def search_labels(ids_p: np.ndarray | None, ids_q: np.ndarray, count: int,
                  backend: Backend) -> Labels:
    """What the kernels read for one direction of a search or a vote, on the backend.

    Parameters
    ----------
    ids_p : ndarray, shape (H_A, W_A), int32, or None
        The searching side's labels (None: unlabelled, as for an atlas without masks).
    ids_q : ndarray, shape (H_B, W_B), int32
        The searched side's labels, :data:`WALL` for an atlas's borders.
    count : int
        K: labels run 0..K.
    backend : Backend
    """
    flat = ids_q.ravel()
    usable = np.flatnonzero(flat != WALL)
    order = np.argsort(flat[usable], kind="stable")
    members = usable[order]
    offsets = np.searchsorted(flat[members], np.arange(count + 2)).astype(np.int32)
    members = members.astype(np.int32)
    xp = backend.xp
    labels_p = (np.zeros((0, 0), np.int32) if ids_p is None
                else np.ascontiguousarray(ids_p, dtype=np.int32))
    return Labels(*(xp.asarray(x) for x in (labels_p, np.ascontiguousarray(ids_q, np.int32),
                                           members, offsets)))


def forbidden_share(field: Any, labels: Labels, backend: Backend) -> float:
    """The share of a field's pixels whose match ``labels`` forbid (0 for a search's result)."""
    values = backend.to_numpy(field)
    labels_p, labels_q, _, offsets = (backend.to_numpy(x) for x in labels)
    lq = labels_q[values[..., 0], values[..., 1]]
    lp = labels_p if labels_p.size else np.zeros(values.shape[:2], np.int32)
    missing = offsets[lp] == offsets[lp + 1]
    ok = (lq != WALL) & ((lp == 0) | (lq == lp) | missing)
    return float(1.0 - ok.mean())
