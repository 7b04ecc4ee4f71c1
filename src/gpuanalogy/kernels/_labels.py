"""Region labels in the kernels (DESIGN.md, "Region masks" and "Several exemplars").

A search or a vote from A to B may carry labels (``regions.Labels``): ``labels_p``
(H_A, W_A) and ``labels_q`` (H_B, W_B) int32, label 0 for unlabelled pixels and -1 on B's side
for walls (the borders of an atlas of several exemplars, never matched or voted from), and
``members`` / ``offsets``: the B pixels that are no wall (flat indices qr * W_B + qc), grouped
by label, label l's at ``members[offsets[l]:offsets[l + 1]]`` (``offsets`` has K + 2 entries
for labels 0..K). A (0, 0) ``labels_q`` means no labels at all, and a (0, 0) ``labels_p`` an
unlabelled A. Plain Python compiled with the pixel bodies of ``kernels._device``.
"""
from __future__ import annotations

import numpy as np

from gpuanalogy.kernels._random import random_hash


def pixel_label(labels_p, r, c):
    """The label of pixel (r, c) of A (0 when A carries none)."""
    if labels_p.shape[0] == 0:
        return 0
    return labels_p[r, c]


def allowed(labels_p, labels_q, offsets, r, c, qr, qc):
    """Whether pixel (r, c) of A may match (qr, qc) of B under the labels.

    Never a wall; an unlabelled pixel of A matches any other pixel; a labelled one only pixels
    of its label, unless B has none of that label (at a coarse level a small region may vanish
    on one side), when it matches freely.
    """
    if labels_q.shape[0] == 0:
        return True
    lq = labels_q[qr, qc]
    if lq < 0:
        return False
    lp = pixel_label(labels_p, r, c)
    return lp == 0 or lq == lp or offsets[lp] == offsets[lp + 1]


def draw_member(members, offsets, label, seed, stream, pixel, draw):
    """A uniform draw among B's pixels of ``label`` (any pixel but walls for label 0, or for
    a label B lacks), as a flat index."""
    lo = np.int64(offsets[label])  # int32 reads: keep the sums 64-bit
    hi = np.int64(offsets[label + 1])
    if label == 0 or lo == hi:
        lo = np.int64(offsets[0])
        hi = np.int64(offsets[offsets.shape[0] - 1])
    return members[lo + random_hash(seed, stream, pixel, draw) % (hi - lo)]
