"""Files the package writes: one atomic write for everything, JSON, ``.npy``, hashes.

Every file goes through :func:`atomic_path`: it is written under a temporary name beside its
final one (``.NAME.<random>.tmp``), flushed to disk and renamed into place, so a crash or a full
disk never leaves a half-written file under the final name. Batch resume removes what a killed
run leaves (:data:`TEMP_FILE` names them).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .checks import to_host
from .errors import InputError, error_reason, printable

__all__ = ["TEMP_FILE", "atomic_path", "write_bytes", "write_json", "read_json", "as_json",
           "write_npy", "write_npz", "check_output_dir", "output_folder", "fsync_folder",
           "sha256_file"]

#: Names of :func:`atomic_path`'s temporary files.
TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")

def _cannot_write(folder: Path, error: OSError) -> InputError:
    return InputError(f"cannot write to {printable(str(folder))}: {error_reason(error)}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` only if the block succeeds.

    The temporary file (``.NAME.<random>.tmp`` in the same folder, created empty with the
    usual permissions) is flushed to disk and then renamed over `path` with
    :func:`os.replace`, so readers see either the old file or the complete new one. If the
    block raises, the temporary file is removed and the exception propagates unchanged.

    Raises
    ------
    InputError
        The folder does not exist or cannot be written to, or `path` is a folder.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> open(target).read()
    'hello'
    """
    final = Path(os.fspath(path))
    folder = final.parent
    if final.is_dir():
        raise InputError(f"{printable(str(final))}: is a folder, cannot write a file there")
    temp = _create_temp(folder, final.name)
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_folder(folder)


def _create_temp(folder: Path, name: str) -> Path:
    """Create an empty, new file ``.name.<random>.tmp`` in `folder` (mode 0o666 & ~umask)."""
    for _ in range(100):
        temp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as error:
            raise _cannot_write(folder, error) from error
        os.close(fd)
        return temp
    raise InputError(f"cannot write to {printable(str(folder))}: no free temporary file name")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make the rename durable where the platform allows (POSIX); best effort elsewhere."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)



def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path``, atomically."""
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        handle.write(data)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented UTF-8 JSON, atomically.

    NumPy scalars and arrays and paths are converted; NaN and infinity are refused
    (``ValueError``) because they are not JSON. Other unserialisable objects raise
    ``TypeError`` before anything is written.
    """
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    with atomic_path(path) as temp, open(temp, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """What a JSON file holds; None when it is missing, unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def as_json(value: Any) -> Any:
    """``value`` as :func:`write_json` then :func:`read_json` give it back (tuples become
    lists, NumPy values plain ones), to compare with what a file holds."""
    return json.loads(json.dumps(value, default=_json_default))


def write_npy(path: str | os.PathLike[str], array: Any) -> None:
    """Write `array` in NumPy ``.npy`` format (no pickles), atomically, to exactly `path`.

    `path` is used as given (no ``.npy`` is appended). CuPy arrays are copied to the host.
    Object arrays raise ``ValueError`` (they would need pickles); nothing is written then.
    """
    data = to_host(array, printable(os.fspath(path)))
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.save(handle, data, allow_pickle=False)


def write_npz(path: str | os.PathLike[str], **arrays: Any) -> None:
    """Write named arrays as one compressed NumPy ``.npz`` file (no pickles), atomically."""
    data = {name: to_host(array, printable(os.fspath(path))) for name, array in arrays.items()}
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.savez_compressed(handle, **data)


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder if needed and check that files can be written in it.

    Returns
    -------
    folder : Path
        `path` as a :class:`~pathlib.Path`.

    Raises
    ------
    InputError
        "cannot write to OUTDIR: <reason>" when it cannot be created or written to, or
        when it exists and is not a folder.
    """
    folder = Path(os.fspath(path))
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write to {printable(str(folder))}: it exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_write(folder, error) from error
    probe = _create_temp(folder, "gpuanalogy-write-test")
    with contextlib.suppress(OSError):
        probe.unlink()
    return folder



@contextlib.contextmanager
def output_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """:func:`check_output_dir` for a block that writes there: if the block fails (an error, an
    interruption) having written nothing, the folders created here are removed again.

    Only folders this call created go, and only while they hold no file (empty sub-folders
    made by the block go with them), so a folder the user had, or any output, stays.
    """
    folder = Path(os.fspath(path))
    created = None   # the outermost folder that did not exist yet
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        created = candidate
    out = check_output_dir(folder)
    try:
        yield out
    except BaseException:
        if created is not None:
            _remove_empty_tree(created)
        raise


def _remove_empty_tree(top: Path) -> None:
    """Remove ``top`` if it and its sub-folders hold no file (nothing happens otherwise)."""
    if not top.is_dir() or top.is_symlink():
        return
    for _root, _dirs, files in os.walk(top):
        if files:
            return
    for root, dirs, _files in os.walk(top, topdown=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, name))
    with contextlib.suppress(OSError):
        os.rmdir(top)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
