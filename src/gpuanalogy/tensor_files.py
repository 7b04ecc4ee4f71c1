"""Tensors as a weights file declares them, checked against the file before any data is read.

A torch checkpoint (:mod:`gpuanalogy.checkpoint`) and a NumPy ``.npz`` (:func:`open_npz`) both
describe each tensor - element type, shape, strides, where in which storage its elements lie -
apart from its bytes. A :class:`TensorFile` holds those descriptions (:class:`StoredTensor`),
already checked against the file: every view inside its storage, every storage as long as the
file says it is. It then reads one tensor at a time, in bounded chunks, and only the bytes that
tensor spans. A caller can therefore refuse a file for what it declares before a byte of data is
read, and a file that claims terabytes, or a zip entry that inflates far past its stated size,
costs nothing.
"""
from __future__ import annotations

import contextlib
import io
import operator
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import ModelError

__all__ = ["Malformed", "StoredTensor", "TensorFile", "WeightsFileError", "declare_tensor",
           "entry_size", "file_errors", "item_size", "open_npz", "read_exactly", "zip_reader"]

#: Bytes read from a file at a time: what a read holds beyond the data it returns.
CHUNK_BYTES = 1 << 24
#: The most dimensions a stored tensor may have (NumPy's limit is 32 or 64, by version).
MAX_DIMS = 32
#: An ``.npy`` header longer than this is refused before it is read (NumPy writes < 1 KiB).
MAX_NPY_HEADER = 1 << 16


class WeightsFileError(ModelError):
    """A weights file is missing, corrupt, truncated, or declares what it cannot hold."""


class Malformed(Exception):
    """What is wrong with a file, said before its name is known; :func:`file_errors` adds it."""


@dataclass(frozen=True)
class StoredTensor:
    """A tensor as its file declares it: a strided view into one of the file's storages.

    Attributes
    ----------
    storage : str
        Which storage of the file holds the elements.
    kind : str
        Element type: a NumPy type code without byte order (``"f4"``, ``"i8"``, ``"b1"``), or
        ``"bf16"`` (bfloat16, read as float32), or ``"O"`` (Python objects, never read).
    byteorder : {"<", ">"}
    storage_numel : int
        Elements of ``kind`` the storage holds (checked against the file).
    offset : int
        Index of the first element in the storage.
    shape, strides : tuple of int
        Strides in elements, as torch counts them.
    """

    storage: str
    kind: str
    byteorder: str
    storage_numel: int
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def itemsize(self) -> int:
        return item_size(self.kind)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=object))

    @property
    def span(self) -> int:
        """Elements from the first the view reaches to the last (0 for an empty tensor)."""
        if self.numel == 0:
            return 0
        return 1 + sum((n - 1) * s for n, s in zip(self.shape, self.strides))

    def overlaps(self) -> bool:
        """Whether two indices may reach one element: a stride 0, or dimensions interleaved.

        Dimensions of size 1 do not count; the others, by increasing stride, must each step
        past everything the faster ones reach (torch's dense and transposed layouts do).
        """
        reach = 0
        for stride, n in sorted((s, n) for n, s in zip(self.shape, self.strides) if n > 1):
            if stride <= reach:
                return True
            reach += (n - 1) * stride
        return False


def item_size(kind: str) -> int:
    """Bytes of one element of ``kind`` (see :attr:`StoredTensor.kind`)."""
    return 2 if kind == "bf16" else np.dtype(kind).itemsize


def declare_tensor(storage: str, kind: str, byteorder: str, storage_numel: int, offset: Any,
                   shape: Any, strides: Any) -> StoredTensor:
    """A :class:`StoredTensor` from what a file says, checked to lie inside its storage.

    Raises
    ------
    Malformed
        If a number is not a whole number, is negative, the shape and strides differ in
        length, there are more than :data:`MAX_DIMS` dimensions, or the view reaches past the
        storage's end.
    """
    try:
        offset = operator.index(offset)
        shape = tuple(operator.index(n) for n in shape)
        strides = tuple(operator.index(s) for s in strides)
    except TypeError as exc:
        raise Malformed(f"bad tensor geometry ({exc})") from None
    if (len(shape) != len(strides) or len(shape) > MAX_DIMS or offset < 0
            or any(n < 0 for n in shape) or any(s < 0 for s in strides)):
        raise Malformed(f"bad tensor geometry: offset {offset}, size {shape}, stride {strides}")
    tensor = StoredTensor(storage, kind, byteorder, storage_numel, offset, shape, strides)
    if tensor.numel and offset + tensor.span > storage_numel:
        raise Malformed(f"tensor of size {shape}, stride {strides} at offset {offset} runs past "
                        f"its storage of {storage_numel} elements")
    return tensor


def read_exactly(stream: BinaryIO, nbytes: int) -> bytearray:
    """``nbytes`` from ``stream``, read :data:`CHUNK_BYTES` at a time (a file that stops
    early costs what it held, never what it claimed)."""
    data = bytearray()
    while len(data) < nbytes:
        chunk = stream.read(min(CHUNK_BYTES, nbytes - len(data)))
        if not chunk:
            raise Malformed(f"file ends {nbytes - len(data)} bytes before the data it declares")
        data += chunk
    return data


def _decode(raw: bytes | bytearray, tensor: StoredTensor) -> np.ndarray:
    """The tensor as a C-contiguous array in native byte order, from the bytes it spans."""
    if tensor.kind == "O":
        raise Malformed("holds Python objects, which are never loaded")
    code = tensor.byteorder + ("u2" if tensor.kind == "bf16" else tensor.kind)
    if tensor.numel == 0:
        return np.zeros(tensor.shape, np.float32 if tensor.kind == "bf16" else np.dtype(code))
    flat = np.frombuffer(raw, dtype=code, count=tensor.span)
    view = np.lib.stride_tricks.as_strided(
        flat, shape=tensor.shape, strides=tuple(s * flat.itemsize for s in tensor.strides),
        writeable=False)
    array = np.array(view, order="C")   # a fresh array that owns its memory
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    if tensor.kind == "bf16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


class TensorFile:
    """An open weights file: the object it holds, with :class:`StoredTensor` leaves, and a way to
    read each tensor. Use as a context manager (it holds the file open).

    Parameters
    ----------
    path : Path
    tree : object
        What the file holds, every tensor a :class:`StoredTensor`.
    read_bytes : callable (storage, start, nbytes) -> bytes
        ``nbytes`` of ``storage`` from byte ``start``, read in bounded chunks.
    close : callable
    what : str
        The kind of file, for messages ("checkpoint", "npz weights").
    """

    def __init__(self, path: Path, tree: Any, read_bytes: Callable[[str, int, int], bytes],
                 close: Callable[[], None], what: str) -> None:
        self.path = path
        self.tree = tree
        self._read_bytes = read_bytes
        self._close = close
        self._what = what

    def read(self, tensor: StoredTensor) -> np.ndarray:
        """The tensor as a fresh C-contiguous array (bfloat16 widened to float32).

        Reads only the ``span * itemsize`` bytes the view reaches.

        Raises
        ------
        WeightsFileError
            If the file is corrupt or ends early there (naming the file).
        """
        with file_errors(self.path, self._what):
            raw = self._read_bytes(tensor.storage, tensor.offset * tensor.itemsize,
                                   tensor.span * tensor.itemsize)
            return _decode(raw, tensor)

    def close(self) -> None:
        self._close()

    def __enter__(self) -> "TensorFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def file_errors(path: Path, what: str) -> Iterator[None]:
    """Turn whatever reading ``path`` raises into a one-line :class:`WeightsFileError`."""
    try:
        yield
    except ModelError:
        raise
    except Malformed as exc:
        raise WeightsFileError(f"{path}: corrupt {what}: {exc}") from None
    except (zipfile.BadZipFile, zlib.error, pickle.UnpicklingError, EOFError, struct.error) as exc:
        raise WeightsFileError(f"{path}: corrupt or truncated {what} "
                               f"({type(exc).__name__}: {exc})") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            RecursionError) as exc:
        raise WeightsFileError(f"{path}: malformed {what} ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:200]})") from None
    except OSError as exc:
        raise WeightsFileError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def zip_reader(archive: zipfile.ZipFile, starts: dict[str, tuple[str, int]]
               ) -> Callable[[str, int, int], bytearray]:
    """``read_bytes`` for storages kept as zip entries: storage -> (entry, byte where it begins).

    An entry is inflated as a stream, never past the bytes asked for.
    """
    def read_bytes(storage: str, start: int, nbytes: int) -> bytearray:
        entry, base = starts[storage]
        with archive.open(entry) as stream:
            stream.seek(base + start)   # a deflated entry is inflated up to there, in chunks
            return read_exactly(stream, nbytes)

    return read_bytes


def entry_size(archive: zipfile.ZipFile, entry: str) -> int:
    """Uncompressed size the zip's directory states for ``entry`` (Malformed if absent)."""
    try:
        return archive.getinfo(entry).file_size
    except KeyError:
        raise Malformed(f"entry {entry} is missing") from None


def open_npz(path: str | os.PathLike) -> TensorFile:
    """Open a NumPy ``.npz`` lazily: each ``name.npy`` entry's header read and checked.

    Returns
    -------
    TensorFile
        ``tree`` maps each array's name to its :class:`StoredTensor` (object arrays get kind
        ``"O"`` and are refused when read).

    Raises
    ------
    WeightsFileError
        If the file is missing or not a zip, a header is malformed or over
        :data:`MAX_NPY_HEADER` bytes, or an entry's size differs from what its header declares.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: weights file not found")
    with file_errors(path, "npz weights"):
        archive = zipfile.ZipFile(path)
        try:
            tree: dict[str, StoredTensor] = {}
            starts: dict[str, tuple[str, int]] = {}
            for entry in archive.namelist():
                if entry.endswith(".npy"):
                    tree[entry[:-4]], start = _npy_tensor(archive, entry)
                    starts[entry] = (entry, start)
        except BaseException:
            archive.close()
            raise
    return TensorFile(path, tree, zip_reader(archive, starts), archive.close, "npz weights")


def _npy_header(archive: zipfile.ZipFile, entry: str) -> tuple[dict[str, Any], int]:
    """The parsed header of one ``.npy`` entry and the byte where its data begins."""
    with archive.open(entry) as stream:
        magic = read_exactly(stream, 8)
        if magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2):
            raise Malformed(f"{entry} is not a .npy array of a version NumPy 1 or 2 writes")
        length_bytes = read_exactly(stream, 2 if magic[6] == 1 else 4)
        length = int.from_bytes(length_bytes, "little")
        if length > MAX_NPY_HEADER:
            raise Malformed(f"{entry} has a header of {length} bytes")
        header = io.BytesIO(bytes(length_bytes + read_exactly(stream, length)))
    reader = (np.lib.format.read_array_header_1_0 if magic[6] == 1
              else np.lib.format.read_array_header_2_0)
    shape, fortran_order, dtype = reader(header)
    start = len(magic) + len(length_bytes) + length
    return {"shape": shape, "fortran_order": fortran_order, "dtype": dtype}, start


def _npy_tensor(archive: zipfile.ZipFile, entry: str) -> tuple[StoredTensor, int]:
    """One ``.npy`` entry's array as declared, and the byte where its data begins."""
    header, start = _npy_header(archive, entry)
    dtype: np.dtype = header["dtype"]
    shape = tuple(header["shape"])
    kind = "O" if dtype.hasobject else dtype.str[1:]
    numel = int(np.prod(shape, dtype=object))
    strides = [1] * len(shape)
    order = range(len(shape) - 2, -1, -1) if not header["fortran_order"] else range(1, len(shape))
    for i in order:   # C: the last index is the fastest; Fortran: the first
        neighbour = i + 1 if not header["fortran_order"] else i - 1
        strides[i] = strides[neighbour] * shape[neighbour]
    if kind != "O" and entry_size(archive, entry) != start + numel * dtype.itemsize:
        raise Malformed(f"{entry} holds {entry_size(archive, entry) - start} bytes of data, but "
                        f"its header declares {numel * dtype.itemsize}")
    byteorder = ">" if dtype.str[0] == ">" else "<"
    return declare_tensor(entry, kind, byteorder, numel, 0, shape, strides), start
