"""The output folder of a batch, resumable after a crash or a kill.

Every pair is computed into a hidden sibling folder ``OUTDIR/.<name>.partial`` and renamed to
``OUTDIR/<name>`` only once its ``run.json`` is written, so at any moment each pair folder is
either complete or absent. A rerun skips the pairs whose folder is complete and was made from
the same inputs with the same settings (:func:`up_to_date`), removes what a killed run left
(:func:`remove_leftovers`) and computes the rest. One batch at a time writes to a folder
(:func:`exclusive`).
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import InputError, printable
from ..files import TEMP_FILE, as_json, fsync_folder
from ..outputs import complete_record
from .options import result_key
from .pairs import Pair

__all__ = ["PARTIAL", "up_to_date", "move_into_place", "remove_tree", "remove_leftovers",
           "exclusive"]

PARTIAL = ".partial"           # .<name>.partial: the pair being computed
_REPLACED = ".partial.old"     # .<name>.partial.old: an outdated folder on its way out


def up_to_date(folder: str | os.PathLike[str], pair: Pair, save_levels: bool = False
               ) -> tuple[bool, str]:
    """Whether ``folder`` holds this pair's complete result, and if not, why not.

    Complete means :func:`gpuanalogy.outputs.complete_record`, made from the same input files
    with the same settings (compared by :func:`gpuanalogy.app.options.result_key`, which
    leaves out the device) and with the per-level images when ``save_levels``.
    """
    path = Path(folder)
    if not path.exists():
        return False, "not computed yet"
    record = complete_record(path / "run.json")
    if record is None:
        return False, "its folder is incomplete"
    if record.get("config") is None or \
            result_key(record["config"]) != as_json(result_key(pair.config)):
        return False, "its outputs were made with other settings"
    recorded = record.get("inputs") or {}
    for key, wanted in pair.recorded_inputs().items():
        if _absolute(recorded.get(key)) != wanted:
            return False, "its outputs were made from other input files"
    if "regions_a" in recorded and "regions_a" not in pair.recorded_inputs():
        return False, "its outputs were made with region masks"
    if save_levels and not any(name.startswith("level") for name in record.get("files", [])):
        return False, "its outputs lack the per-level images"
    return True, "complete"


def _absolute(recorded: Any) -> Any:
    """A recorded path (or list of paths) made absolute; anything else as it is."""
    if isinstance(recorded, str):
        return os.path.abspath(recorded)
    if isinstance(recorded, list) and all(isinstance(p, str) for p in recorded):
        return [os.path.abspath(p) for p in recorded]
    return recorded


def move_into_place(partial: Path, final: Path) -> None:
    """Rename the finished ``partial`` folder to ``final``, replacing an outdated one."""
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise InputError(f"cannot write to {printable(os.fspath(final))}: "
                         f"it exists and is not a folder")
    if final.exists():
        old = final.with_name(f".{final.name}{_REPLACED}")
        remove_tree(old)
        os.rename(final, old)
        os.rename(partial, final)
        remove_tree(old)
    else:
        os.rename(partial, final)
    fsync_folder(final.parent)


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def remove_leftovers(out: Path) -> None:
    """Remove what a killed batch leaves in ``out``: its ``.partial`` folders and temp files."""
    for entry in out.iterdir():
        name = entry.name
        if not name.startswith("."):
            continue
        if (name.endswith(PARTIAL) or name.endswith(_REPLACED)) and entry.is_dir() \
                and not entry.is_symlink():
            shutil.rmtree(entry)
        elif TEMP_FILE.match(name) and entry.is_file():
            with contextlib.suppress(OSError):
                entry.unlink()


@contextlib.contextmanager
def exclusive(out: Path):
    """Hold an advisory lock on ``out`` (POSIX), so two batches never share a folder.

    The kernel drops the lock when the process ends, even on SIGKILL: nothing to clean up.
    """
    try:
        import fcntl  # noqa: PLC0415 - POSIX only
    except ImportError:
        yield
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{printable(os.fspath(out))}: another gpuanalogy batch is writing "
                             f"there; wait for it or choose another output folder") from None
        except OSError:
            pass  # file systems without flock: run unlocked
        yield
    finally:
        os.close(fd)
