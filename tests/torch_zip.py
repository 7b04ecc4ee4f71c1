"""A writer for torch's zip checkpoint layout, so tests build checkpoints without torch.

It emits protocol-2 pickle opcodes by hand and names only the globals the package's restricted
reader (:func:`gpuanalogy.checkpoint.load_torch_checkpoint`) admits. It writes the zip itself,
byte by byte, so that hostile files can be made too: entries that state a size they do not
have, and zip bombs (:func:`zero_bomb`).
"""
from __future__ import annotations

import functools
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpuanalogy.checkpoint import _STORAGE_DTYPES

_DTYPE_STORAGES: dict[str, str] = {
    np.dtype(code).str[1:]: name
    for name, code in _STORAGE_DTYPES.items()
    if code != "bf16" and name != "UntypedStorage"
}


@dataclass(frozen=True)
class TensorRef:
    """A tensor to pickle: a strided view into the storage called ``key``."""

    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class PickleWriter:
    """Emits the few protocol-2 opcodes a state dict needs."""

    def __init__(self, storage_names: dict[str, str], storage_sizes: dict[str, int]) -> None:
        self.out = bytearray(b"\x80\x02")
        self._storage_names = storage_names
        self._storage_sizes = storage_sizes

    def _global(self, module: str, name: str) -> None:
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def _int(self, value: int) -> None:
        if -(2**31) <= value < 2**31:
            self.out += b"J" + struct.pack("<i", value)
        else:
            raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(raw)]) + raw

    def _str(self, value: str) -> None:
        raw = value.encode("utf-8")
        self.out += b"X" + struct.pack("<I", len(raw)) + raw

    def _tuple(self, items: tuple) -> None:
        self.out += b"("
        for item in items:
            self.dump(item)
        self.out += b"t"

    def dump(self, obj: Any) -> None:
        if isinstance(obj, bool):
            self.out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int):
            self._int(obj)
        elif isinstance(obj, str):
            self._str(obj)
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, dict):
            self._global("collections", "OrderedDict")
            self.out += b")R("
            for key, value in obj.items():
                self.dump(key)
                self.dump(value)
            self.out += b"u"
        elif isinstance(obj, TensorRef):
            self._global("torch._utils", "_rebuild_tensor_v2")
            self.out += b"("
            # Persistent id: ('storage', torch.<Type>Storage, key, location, numel).
            self.out += b"("
            self._str("storage")
            self._global("torch", self._storage_names[obj.key])
            self._str(obj.key)
            self._str("cpu")
            self._int(self._storage_sizes[obj.key])
            self.out += b"tQ"
            self._int(obj.offset)
            self._tuple(obj.size)
            self._tuple(obj.stride)
            self.out += b"\x89"  # requires_grad
            self._global("collections", "OrderedDict")
            self.out += b")R"  # backward_hooks
            self.out += b"tR"
        else:
            raise TypeError(f"cannot write {type(obj).__name__} into a checkpoint")


@dataclass(frozen=True)
class Entry:
    """A zip entry as the archive holds it: ``raw`` (compressed by ``method``, 0 stored or 8
    deflated) and what the archive's directory states: ``crc`` and ``size`` (uncompressed)."""

    raw: bytes
    method: int
    crc: int
    size: int


def stored(data: bytes) -> Entry:
    return Entry(data, 0, zlib.crc32(data), len(data))


def deflated(data: bytes) -> Entry:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return Entry(packer.compress(data) + packer.flush(), 8, zlib.crc32(data), len(data))


@functools.lru_cache(maxsize=16)
def zero_bomb(nbytes: int, *, prefix: bytes = b"", stated: int | None = None,
              block: int = 1 << 20) -> Entry:
    """A deflated entry that inflates to ``prefix`` and ``nbytes`` zero bytes (a multiple of
    ``block``) from about ``nbytes / 1000`` bytes, its size stated as ``stated`` (default: the
    truth), its CRC that of the first ``stated`` bytes.

    Each block is compressed after a full flush, so its compressed form repeats byte for byte.
    Cached: the CRC of gigabytes takes a second.
    """
    assert nbytes % block == 0
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = packer.compress(prefix) + packer.flush(zlib.Z_FULL_FLUSH)
    one = packer.compress(bytes(block)) + packer.flush(zlib.Z_FULL_FLUSH)
    raw = head + one * (nbytes // block) + packer.flush()
    stated = len(prefix) + nbytes if stated is None else stated
    crc, zeros = zlib.crc32(prefix[:stated]), bytes(1 << 24)
    for start in range(len(prefix), stated, len(zeros)):
        crc = zlib.crc32(zeros[: min(len(zeros), stated - start)], crc)
    return Entry(raw, 8, crc, stated)


def write_zip(path: str | os.PathLike, entries: dict[str, Entry]) -> None:
    """A zip archive of ``entries`` written byte by byte, so that an entry may state a size or
    CRC its data does not have (``zipfile`` cannot write such a file)."""
    body, directory = bytearray(), bytearray()
    for name, entry in entries.items():
        raw_name = name.encode()
        fields = struct.pack("<HHHHHIIIHH", 20, 0, entry.method, 0, 33, entry.crc,
                             len(entry.raw), entry.size, len(raw_name), 0)
        directory += struct.pack("<IH", 0x02014B50, 20) + fields
        directory += struct.pack("<HHHII", 0, 0, 0, 0, len(body)) + raw_name
        body += struct.pack("<I", 0x04034B50) + fields + raw_name + entry.raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries),
                      len(directory), len(body), 0)
    Path(path).write_bytes(bytes(body + directory + end))


def checkpoint_pickle(obj: Any, storages: dict[str, np.ndarray],
                      numels: dict[str, int] | None = None) -> bytes:
    """The data.pkl of ``obj`` over ``storages`` (their element counts as ``numels`` says,
    default their true sizes)."""
    names: dict[str, str] = {}
    for key, flat in storages.items():
        code = flat.dtype.str[1:]
        if code not in _DTYPE_STORAGES or flat.ndim != 1:
            raise TypeError(f"storage {key}: cannot write a {flat.ndim}-D {flat.dtype} storage")
        names[key] = _DTYPE_STORAGES[code]
    writer = PickleWriter(names, {key: flat.size for key, flat in storages.items()} | (numels or {}))
    writer.dump(obj)
    return bytes(writer.out + b".")


def write_zip_checkpoint(path: str | os.PathLike, obj: Any, storages: dict[str, np.ndarray], *,
                         numels: dict[str, int] | None = None,
                         entries: dict[str, Entry] | None = None,
                         data_pkl: Entry | None = None) -> None:
    """Write ``obj`` (nested dicts/tuples/ints/strs/TensorRef) and flat ``storages`` as a zip.

    For hostile files: ``numels`` overrides the element counts the pickle declares, ``entries``
    replaces storages' zip entries (by key) and ``data_pkl`` the pickle's entry.
    """
    archive = Path(path).stem or "archive"
    pickled = checkpoint_pickle(obj, storages, numels)
    files = {f"{archive}/data.pkl": data_pkl or stored(pickled),
             f"{archive}/byteorder": stored(b"little")}
    for key, flat in storages.items():
        little = flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes()
        files[f"{archive}/data/{key}"] = (entries or {}).get(key) or stored(little)
    files[f"{archive}/version"] = stored(b"3\n")
    write_zip(path, files)


def save_torch_checkpoint(path: str | os.PathLike, tensors: dict[str, np.ndarray]) -> None:
    """Write a flat ``{name: array}`` dict in torch's zip layout (one storage per array).

    The file names only the globals :func:`load_torch_checkpoint` admits
    (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the storage types),
    laid out as ``torch.save`` lays out a state dict.

    Parameters
    ----------
    path : str or PathLike
    tensors : dict of str to ndarray
        Arrays of a dtype torch has (float16/32/64, int8/16/32/64, uint8, bool, complex).
    """
    storages: dict[str, np.ndarray] = {}
    obj: dict[str, TensorRef] = {}
    for index, (name, array) in enumerate(tensors.items()):
        array = np.asarray(array)
        if not array.flags.c_contiguous:
            array = array.copy()
        key = str(index)
        storages[key] = array.reshape(-1)
        strides = tuple(s // array.itemsize for s in array.strides) if array.size else (1,) * array.ndim
        obj[str(name)] = TensorRef(key, 0, tuple(array.shape), strides)
    write_zip_checkpoint(path, obj, storages)
