"""Middlebury ``.flo`` files: the optical-flow format that flow tools read and write.

A ``.flo`` file (Baker et al., "A Database and Evaluation Methodology for Optical Flow") is,
little-endian: the float32 202021.25 (the bytes ``PIEH``), the width and the height as int32,
then for every pixel row by row the float32 displacement u (along x, to the right) and v
(along y, down), interleaved. Our fields hold instead, for every pixel of A, the (row, col) it
matches in B; :func:`flow_from_field` and :func:`field_from_flow` turn one into the other
(u = col - x, v = row - y), and :func:`write_flo` / :func:`read_flo` move flows to and from
files.
"""
from __future__ import annotations

import os

import numpy as np

from .errors import InputError, error_reason, printable
from .files import atomic_path

__all__ = ["FLO_MAGIC", "write_flo", "read_flo", "flow_from_field", "field_from_flow"]

#: The first four bytes of every ``.flo`` file, as a float32 ("PIEH" as ASCII).
FLO_MAGIC = np.float32(202021.25)
_HEADER = np.dtype([("magic", "<f4"), ("width", "<i4"), ("height", "<i4")])
_MAX_SIDE = 1 << 20   # wider or taller is no flow file: a guard against reading garbage sizes
_ROWS = 512           # rows per strip written


def flow_from_field(field: np.ndarray) -> np.ndarray:
    """The displacement (u, v) = (col - x, row - y) of a field of (row, col) matches.

    Parameters
    ----------
    field : ndarray, shape (H, W, 2), int or float
        For each pixel (y, x) of A, the (row, col) it matches in B.

    Returns
    -------
    ndarray, shape (H, W, 2), float32
        u (along x) then v (along y), as ``.flo`` stores them.
    """
    field = np.asarray(field)
    if field.ndim != 3 or field.shape[2] != 2:
        raise InputError(f"a field has shape (H, W, 2); got {field.shape}")
    rows, cols = np.indices(field.shape[:2], dtype=np.float32)
    return np.stack([field[..., 1] - cols, field[..., 0] - rows], axis=-1).astype(np.float32)


def field_from_flow(flow: np.ndarray) -> np.ndarray:
    """The field of (row, col) matches ``(y + v, x + u)`` of a displacement (u, v).

    Returns
    -------
    ndarray, shape (H, W, 2), float32
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise InputError(f"a flow has shape (H, W, 2); got {flow.shape}")
    rows, cols = np.indices(flow.shape[:2], dtype=np.float32)
    return np.stack([flow[..., 1] + rows, flow[..., 0] + cols], axis=-1)


def write_flo(path: str | os.PathLike[str], flow: np.ndarray) -> None:
    """Write a displacement (u, v) as a ``.flo`` file, atomically (temporary name, rename).

    Parameters
    ----------
    path : str or path
    flow : ndarray, shape (H, W, 2), float
        u (along x) then v (along y) for every pixel (:func:`flow_from_field` of a field).
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or 0 in flow.shape:
        raise InputError(f"{printable(os.fspath(path))}: a flow has shape (H, W, 2) with H, W "
                         f"> 0; got {flow.shape}")
    header = np.array([(FLO_MAGIC, flow.shape[1], flow.shape[0])], dtype=_HEADER)
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        handle.write(header.tobytes())
        for top in range(0, flow.shape[0], _ROWS):
            handle.write(np.ascontiguousarray(flow[top:top + _ROWS], dtype="<f4").tobytes())


def read_flo(path: str | os.PathLike[str]) -> np.ndarray:
    """The displacement (u, v) a ``.flo`` file holds.

    Returns
    -------
    ndarray, shape (H, W, 2), float32
        u (along x) then v (along y); :func:`field_from_flow` makes it a field.

    Raises
    ------
    InputError
        A missing or unreadable file, or one that is not a ``.flo`` file (wrong magic number,
        sizes that are not positive, or a length other than the header says); the one-line
        message names the file.
    """
    name = printable(os.fspath(path))
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEADER.itemsize)
            if len(head) < _HEADER.itemsize:
                raise InputError(f"{name}: not a .flo file (only {len(head)} bytes)")
            magic, width, height = np.frombuffer(head, dtype=_HEADER)[0].tolist()
            if np.float32(magic) != FLO_MAGIC:
                raise InputError(f"{name}: not a .flo file (it does not start with 'PIEH', "
                                 f"the magic number 202021.25)")
            if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
                raise InputError(f"{name}: not a usable .flo file (size {width} x {height})")
            expected = width * height * 2
            values = np.fromfile(handle, dtype="<f4", count=expected + 1)
    except OSError as error:
        raise InputError(f"{name}: cannot read ({error_reason(error)})") from None
    if values.size != expected:
        raise InputError(f"{name}: not a complete .flo file ({values.size * 4} bytes of flow "
                         f"where {width} x {height} needs {expected * 4})"
                         if values.size < expected else
                         f"{name}: not a .flo file (more bytes than {width} x {height} needs)")
    return values.reshape(height, width, 2).astype(np.float32)
