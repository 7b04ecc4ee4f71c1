"""A writer for torch's zip checkpoint layout, so tests build checkpoints without torch.

It emits protocol-2 pickle opcodes by hand and names only the globals the package's restricted
reader (:func:`gpuanalogy.checkpoint.load_torch_checkpoint`) admits.
"""
from __future__ import annotations

import os
import struct
import zipfile
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


def write_zip_checkpoint(path: str | os.PathLike, obj: Any, storages: dict[str, np.ndarray]) -> None:
    """Write ``obj`` (nested dicts/tuples/ints/strs/TensorRef) and flat ``storages`` as a zip."""
    names: dict[str, str] = {}
    for key, flat in storages.items():
        code = flat.dtype.str[1:]
        if code not in _DTYPE_STORAGES or flat.ndim != 1:
            raise TypeError(f"storage {key}: cannot write a {flat.ndim}-D {flat.dtype} storage")
        names[key] = _DTYPE_STORAGES[code]
    writer = PickleWriter(names, {key: flat.size for key, flat in storages.items()})
    writer.dump(obj)
    writer.out += b"."
    archive = Path(path).stem or "archive"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", bytes(writer.out))
        zf.writestr(f"{archive}/byteorder", "little")
        for key, flat in storages.items():
            zf.writestr(f"{archive}/data/{key}", flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes())
        zf.writestr(f"{archive}/version", "3\n")


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
