"""``gpuanalogy batch``: many pairs with one loaded network, resumable after a crash or a kill.

The pairs come from a CSV file (columns ``a`` and ``b_prime``; optional ``name``, ``preset`` and
per-pair overrides ``blend``, ``ratio``, ``iters``, ``lbfgs_iters``, ``seed``, ``refine``,
``mask``, ``upsample``, ``subpixel``, ``optimizer``; relative paths resolve against the CSV's folder) or from
two folders whose images are matched by file name. Settings are layered: preset (the row's,
else ``--preset``), then the command-line options, then the row's own columns.

Every pair is computed into a hidden sibling folder ``OUTDIR/.<name>.partial`` and renamed to
``OUTDIR/<name>`` only once its ``run.json`` is written, so at any moment each pair folder is
either complete or absent. A rerun of the same batch skips the pairs whose folder is complete
and was made from the same inputs with the same settings, removes what a killed run left (its
``.partial`` folders and temporary files) and computes the rest. One pair's failure (an
unreadable image, the GPU out of memory) is recorded and the batch goes on. The exit status is
2 when a pair failed on bad input (as ``run`` exits for it), else 1 when a pair failed for
another reason (the GPU out of memory, an unwritable folder, an internal error), else 0.

``OUTDIR/summary.json`` is rewritten (atomically) after every pair: one entry per pair with its
status (``ok``, ``skipped``, ``failed`` or, while the batch runs, ``pending``), seconds, and the
one-line error of a failed pair.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import shutil
import sys
import time
import traceback
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import __version__, io
from .config import AnalogyConfig, config_from_options
from .errors import EXIT_ERROR, GpuAnalogyError, InputError

__all__ = [
    "Pair",
    "PairResult",
    "BatchProgress",
    "read_pairs_csv",
    "pairs_from_folders",
    "run_pairs",
    "run_batch",
]

#: File extensions taken as images in folder mode (other files are ignored).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pnm"})

SUMMARY = "summary.json"
_PARTIAL = ".partial"          # .<name>.partial: the pair being computed
_REPLACED = ".partial.old"     # .<name>.partial.old: an outdated folder on its way out
_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")   # io.atomic_path's temporary files

# CSV columns: the header is read case-insensitively, with "-" and "_" alike.
_REQUIRED = ("a", "b_prime")
_ALIASES = {"b'": "b_prime", "bprime": "b_prime",
            "patchmatch_iterations": "iters", "lbfgs_iterations": "lbfgs_iters"}
# column -> (AnalogyConfig field, parser)
_OVERRIDES: dict[str, tuple[str, Callable[[str], Any]]] = {}  # filled in below the parsers
_KNOWN = ("a", "b_prime", "name", "preset", "blend", "ratio", "iters", "lbfgs_iters", "seed",
          "refine", "mask", "upsample", "subpixel", "optimizer")


# --------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One pair to compute.

    Attributes
    ----------
    name : str
        The output subfolder, unique within the batch.
    a, b_prime : Path
        The input files, as they will be opened.
    config : AnalogyConfig
        The settings for this pair.
    line : int or None
        The CSV line the pair comes from (None in folder mode).
    """

    name: str
    a: Path
    b_prime: Path
    config: AnalogyConfig
    line: int | None = None

    @property
    def inputs(self) -> tuple[str, str]:
        """The absolute input paths, as recorded in run.json and compared on resume."""
        return os.path.abspath(self.a), os.path.abspath(self.b_prime)


def _default_config(preset: str | None) -> AnalogyConfig:
    return AnalogyConfig.preset(preset) if preset else AnalogyConfig()


def read_pairs_csv(path: str | os.PathLike[str],
                   make_config: Callable[[str | None], AnalogyConfig] = _default_config,
                   ) -> list[Pair]:
    """The pairs listed in a CSV file.

    Parameters
    ----------
    path : str or os.PathLike
        UTF-8 CSV with a header. Columns ``a`` and ``b_prime`` are required; ``name``,
        ``preset``, ``blend``, ``ratio``, ``iters``, ``lbfgs_iters``, ``seed``, ``refine`` and
        ``subpixel`` (true/false), ``mask``, ``upsample`` and ``optimizer`` are optional, and an empty cell
        means "not set". Blank lines and lines starting with ``#`` are skipped. Relative image
        paths are relative to the CSV's folder.
    make_config : callable
        ``make_config(preset_or_None)`` gives the settings a row starts from (the CLI passes
        the preset plus its options); the row's override columns are applied on top.

    Returns
    -------
    list of Pair
        In file order, with unique names (``name`` column, else A's file stem; repeats get
        ``-2``, ``-3``, ...).

    Raises
    ------
    InputError
        One line naming the CSV and the line: unreadable file, missing or unknown column,
        unknown preset, a value that does not parse or is out of range, a bad name, no rows.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "pairs.csv"), "w") as f:
    ...     _ = f.write("a,b_prime,seed\\nphotos/cat.png,styles/ink.png,3\\n")
    >>> [(p.name, p.config.seed) for p in read_pairs_csv(os.path.join(folder, "pairs.csv"))]
    [('cat', 3)]
    """
    file = Path(os.fspath(path))
    label = io.printable(os.fspath(path))
    if not file.exists():
        raise InputError(f"{label}: no such file")
    if file.is_dir():
        raise InputError(f"{label}: is a folder, not a CSV file")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{label}: not UTF-8 text (byte {error.start}); save the CSV as UTF-8"
                         ) from error
    except OSError as error:
        raise InputError(f"{label}: cannot open: {io.error_reason(error)}") from error

    folder = file.parent
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    header: list[str] | None = None
    pairs: list[Pair] = []
    names = _UniqueNames()
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells) or cells[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = _read_header(cells, f"{label}, line {line}")
                continue
            where = f"{label}, line {line}"
            if len(cells) > len(header):
                raise InputError(f"{where}: {len(cells)} cells but the header has "
                                 f"{len(header)} columns (a comma too many, or a path with a "
                                 f"comma that needs quotes)")
            row = {key: cells[i].strip() if i < len(cells) else ""
                   for i, key in enumerate(header)}
            pairs.append(_pair_from_row(row, where, line, folder, make_config, names))
    except csv.Error as error:
        raise InputError(f"{label}, line {reader.line_num}: not valid CSV: {error}") from error
    if header is None:
        raise InputError(f"{label}: empty; the first line must be a header such as a,b_prime")
    if not pairs:
        raise InputError(f"{label}: no pairs listed below the header")
    return pairs


def _read_header(cells: list[str], where: str) -> list[str]:
    header = []
    for cell in cells:
        key = cell.strip().lower().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key not in _KNOWN:
            raise InputError(f"{where}: unknown column {io.printable(cell.strip())!r}; "
                             f"the columns are: {', '.join(_KNOWN)}")
        if key in header:
            raise InputError(f"{where}: column {key!r} appears twice")
        header.append(key)
    missing = [key for key in _REQUIRED if key not in header]
    if missing:
        raise InputError(f"{where}: missing column {' and '.join(map(repr, missing))}; "
                         f"the header needs at least a,b_prime")
    return header


def _pair_from_row(row: dict[str, str], where: str, line: int, folder: Path,
                   make_config: Callable[[str | None], AnalogyConfig],
                   names: "_UniqueNames") -> Pair:
    paths = []
    for key in _REQUIRED:
        if not row[key]:
            raise InputError(f"{where}: no {key} image given")
        given = Path(row[key]).expanduser()
        paths.append(given if given.is_absolute() else folder / given)
    overrides = {}
    for key, (attribute, parse) in _OVERRIDES.items():
        text = row.get(key, "")
        if text:
            overrides[attribute] = parse(text, key, where)
    try:
        config = make_config(row.get("preset") or None)
        config = config.replace(**overrides) if overrides else config
    except InputError as error:
        raise InputError(f"{where}: {error}") from error
    explicit = row.get("name", "")
    if explicit:
        _check_name(explicit, where)
    name = names.take(explicit or _stem_name(paths[0]))
    return Pair(name, paths[0], paths[1], config, line)


def _parse_int(text: str, key: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{where}: {key}={io.printable(text)!r} is not a whole number") from None


def _parse_float(text: str, key: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {key}={io.printable(text)!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {key}={text!r} is not a finite number")
    return value


def _parse_bool(text: str, key: str, where: str) -> bool:
    value = text.lower()
    if value in ("1", "true", "yes", "on", "y"):
        return True
    if value in ("0", "false", "no", "off", "n"):
        return False
    raise InputError(f"{where}: {key}={io.printable(text)!r} is not true or false")


def _parse_text(text: str, key: str, where: str) -> str:
    return text


_OVERRIDES.update({
    "blend": ("blend", _parse_int),
    "ratio": ("ratio", _parse_float),
    "iters": ("patchmatch_iterations", _parse_int),
    "lbfgs_iters": ("lbfgs_iterations", _parse_int),
    "seed": ("seed", _parse_int),
    "refine": ("refine", _parse_bool),
    "mask": ("mask", _parse_text),
    "upsample": ("upsample", _parse_text),
    "subpixel": ("subpixel", _parse_bool),
    "optimizer": ("optimizer", _parse_text),
})


def _check_name(name: str, where: str) -> None:
    """A ``name`` cell must be one plain folder name."""
    problem = None
    if name in (".", "..") or name.startswith("."):
        problem = "may not start with '.'"
    elif "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        problem = "must be a folder name, not a path"
    elif any(unicodedata.category(c)[0] == "C" for c in name):
        problem = "contains control characters"
    elif len(name.encode("utf-8")) > 200:
        problem = "is longer than 200 bytes"
    if problem:
        raise InputError(f"{where}: name {io.printable(name)!r} {problem}")


def _stem_name(path: Path) -> str:
    """A folder name from an image's file name: its stem, made safe."""
    stem = "".join("_" if unicodedata.category(c)[0] == "C" else c for c in path.stem)
    return stem.lstrip(".")[:200] or "pair"


class _UniqueNames:
    """Hands out names, adding -2, -3, ... to repeats (case-insensitively, for macOS/Windows)."""

    def __init__(self) -> None:
        self.used = {SUMMARY.casefold()}

    def take(self, name: str) -> str:
        candidate, number = name, 1
        while candidate.casefold() in self.used:
            number += 1
            candidate = f"{name}-{number}"
        self.used.add(candidate.casefold())
        return candidate


def pairs_from_folders(a_folder: str | os.PathLike[str], b_folder: str | os.PathLike[str],
                       config: AnalogyConfig | None = None, *,
                       on_notice: Callable[[str], None] | None = None) -> list[Pair]:
    """Pairs of images with the same file name in two folders.

    An A image is paired with the B' image of the same file name, else with the one B' image
    of the same stem (``cat.jpg`` with ``cat.png``). Hidden files and files without an image
    extension are ignored; images without a partner are reported through ``on_notice``.

    Raises
    ------
    InputError
        A folder is missing, a stem is ambiguous, or no names match.
    """
    config = config or AnalogyConfig()
    a_images = _folder_images(a_folder)
    b_images = _folder_images(b_folder)
    by_name = {path.name: path for path in b_images}
    by_stem: dict[str, list[Path]] = {}
    for path in b_images:
        by_stem.setdefault(path.stem, []).append(path)

    pairs: list[Pair] = []
    used_b: set[Path] = set()
    names = _UniqueNames()
    for a in a_images:
        b = by_name.get(a.name)
        if b is None:
            candidates = by_stem.get(a.stem, [])
            if len(candidates) > 1:
                listed = ", ".join(sorted(p.name for p in candidates))
                raise InputError(f"{io.printable(os.fspath(a))}: several B' images match by name "
                                 f"({listed}); keep one or use a CSV")
            b = candidates[0] if candidates else None
        if b is None:
            if on_notice:
                on_notice(f"{io.printable(os.fspath(a))}: no B' image of that name in "
                          f"{io.printable(os.fspath(b_folder))}; not paired")
            continue
        used_b.add(b)
        pairs.append(Pair(names.take(_stem_name(a)), a, b, config))
    if on_notice:
        for b in b_images:
            if b not in used_b:
                on_notice(f"{io.printable(os.fspath(b))}: no A image of that name in "
                          f"{io.printable(os.fspath(a_folder))}; not paired")
    if not pairs:
        raise InputError(f"{io.printable(os.fspath(a_folder))} and {io.printable(os.fspath(b_folder))}"
                         ": no image file names in common, so there is nothing to pair")
    return pairs


def _folder_images(folder: str | os.PathLike[str]) -> list[Path]:
    path = Path(os.fspath(folder))
    label = io.printable(os.fspath(folder))
    if not path.exists():
        raise InputError(f"{label}: no such folder")
    if not path.is_dir():
        raise InputError(f"{label}: is a file, not a folder of images")
    try:
        entries = sorted(path.iterdir())
    except OSError as error:
        raise InputError(f"{label}: cannot list the folder: {io.error_reason(error)}") from error
    return [entry for entry in entries
            if not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_SUFFIXES
            and entry.is_file()]


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------


@dataclass
class PairResult:
    """What happened to one pair: status ``ok``, ``skipped``, ``failed`` or ``pending``."""

    pair: Pair
    status: str = "pending"
    seconds: float = 0.0
    error: str | None = None
    bad_input: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.pair.name, "a": os.fspath(self.pair.a),
                "b_prime": os.fspath(self.pair.b_prime), "line": self.pair.line,
                "status": self.status, "seconds": round(self.seconds, 3), "error": self.error,
                "bad_input": self.bad_input, "warnings": self.warnings}


def up_to_date(folder: str | os.PathLike[str], pair: Pair, save_levels: bool = False
               ) -> tuple[bool, str]:
    """Whether ``folder`` holds this pair's complete result, and if not, why not.

    Complete means :func:`gpuanalogy.outputs.is_complete`, made from the same input files
    with the same settings (and with the per-level images when ``save_levels``).
    """
    from .outputs import is_complete  # noqa: PLC0415

    path = Path(folder)
    if not path.exists():
        return False, "not computed yet"
    if not is_complete(path):
        return False, "its folder is incomplete"
    try:
        record = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "its run.json is unreadable"
    if record.get("config") != _as_json(pair.config.to_dict()):
        return False, "its outputs were made with other settings"
    recorded = record.get("inputs") or {}
    for key, wanted in zip(("a", "b_prime"), pair.inputs):
        if not isinstance(recorded.get(key), str) or os.path.abspath(recorded[key]) != wanted:
            return False, "its outputs were made from other input files"
    if save_levels and not any(name.startswith("level") for name in record.get("files", [])):
        return False, "its outputs lack the per-level images"
    return True, "complete"


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def run_pairs(pairs: Sequence[Pair], outdir: str | os.PathLike[str], *,
              load_model: Callable[[AnalogyConfig], Any] | None = None,
              save_levels: bool = False, progress: "BatchProgress | None" = None,
              on_update: Callable[[list[PairResult]], None] | None = None,
              debug: bool = False) -> list[PairResult]:
    """Compute every pair not already complete in ``outdir``, each into ``outdir/<name>``.

    Parameters
    ----------
    pairs : sequence of Pair
        With unique names.
    outdir : str or os.PathLike
        Created if needed. What a killed batch left in it (``.*.partial`` folders, temporary
        files) is removed first.
    load_model : callable, optional
        ``load_model(config)`` returns the network, called once, at the first pair that needs
        computing. Defaults to ``gpuanalogy.features.VGG19(config.weights, config.device)``.
    save_levels : bool
        Also write each level's A' and B.
    progress : BatchProgress, optional
        The display; by default one on stderr.
    on_update : callable, optional
        Called with all results (pending ones included) after each pair.
    debug : bool
        Print the traceback of each failed pair.

    Returns
    -------
    list of PairResult
        In the order of ``pairs``.

    Raises
    ------
    InputError
        ``outdir`` cannot be written, or another batch is writing to it.
    ModelError
        The network could not be loaded (every pair would fail).
    """
    out = io.check_output_dir(outdir)
    load_model = load_model or _load_model
    results = [PairResult(pair) for pair in pairs]
    with _exclusive(out):
        _remove_leftovers(out)
        todo = []
        for result in results:
            done, why = up_to_date(out / result.pair.name, result.pair, save_levels)
            if done:
                result.status = "skipped"
            else:
                todo.append(result)
                if why != "not computed yet":
                    result.warnings.append(f"computed again: {why}")
        progress = progress or BatchProgress(len(pairs))
        progress.total, progress.to_run = len(pairs), len(todo)
        model, loaded = None, False
        try:
            for index, result in enumerate(results):
                progress.start_pair(index, result.pair.name)
                if result.status != "skipped":
                    for note in result.warnings:
                        progress.notice(f"{result.pair.name}: {note}")
                    if not loaded:
                        model, loaded = load_model(result.pair.config), True
                    _run_one(result, out, model, save_levels, progress, debug)
                progress.end_pair(result)
                if on_update:
                    on_update(results)
        finally:
            progress.close()   # an interruption's message starts on a clean line
    return results


def _load_model(config: AnalogyConfig) -> Any:
    from .features import VGG19  # noqa: PLC0415 - loads ONNX Runtime

    return VGG19(config.weights, config.device)


def _run_one(result: PairResult, out: Path, model: Any, save_levels: bool,
             progress: "BatchProgress", debug: bool) -> None:
    """Compute one pair into ``.<name>.partial`` and rename it into place; record the outcome."""
    from . import runner  # noqa: PLC0415 - looked up at call time, so tests can stand in

    pair = result.pair
    final = out / pair.name
    partial = out / f".{pair.name}{_PARTIAL}"
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a = io.read_image(pair.a)
            b_prime = io.read_image(pair.b_prime)
        for warning in caught:
            text = " ".join(str(warning.message).split())
            result.warnings.append(text)
            progress.notice(f"warning: {text}")
        _remove_tree(partial)
        try:
            partial.mkdir()
            progress.clear()  # run_pair may print a notice of its own
            runner.run_pair(a, b_prime, partial, pair.config, names=pair.inputs, model=model,
                            save_levels=save_levels, on_progress=progress.stage)
            _move_into_place(partial, final)
        finally:
            _remove_tree(partial)
        result.status = "ok"
    except (GpuAnalogyError, OSError) as error:
        result.status = "failed"
        result.bad_input = isinstance(error, InputError)
        result.error = io.error_reason(error) if isinstance(error, OSError) else _one_line(error)
        if isinstance(error, OSError):
            result.error = f"cannot write {io.printable(os.fspath(final))}: {result.error}"
        if debug:
            progress.clear()
            traceback.print_exc()
    except Exception as error:  # noqa: BLE001 - one pair's bug must not lose the others
        result.status = "failed"
        result.error = (f"internal error: {type(error).__name__}: {_one_line(error)} "
                        f"(rerun with --debug for the traceback)")
        if debug:
            progress.clear()
            traceback.print_exc()
    result.seconds = time.perf_counter() - start


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _move_into_place(partial: Path, final: Path) -> None:
    """Rename the finished ``partial`` folder to ``final``, replacing an outdated one."""
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise InputError(f"cannot write to {io.printable(os.fspath(final))}: "
                         f"it exists and is not a folder")
    if final.exists():
        old = final.with_name(f".{final.name}{_REPLACED}")
        _remove_tree(old)
        os.rename(final, old)
        os.rename(partial, final)
        _remove_tree(old)
    else:
        os.rename(partial, final)
    io.fsync_folder(final.parent)


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _remove_leftovers(out: Path) -> None:
    """Remove what a killed batch leaves in ``out``: its ``.partial`` folders and temp files."""
    for entry in out.iterdir():
        name = entry.name
        if not name.startswith("."):
            continue
        if (name.endswith(_PARTIAL) or name.endswith(_REPLACED)) and entry.is_dir() \
                and not entry.is_symlink():
            shutil.rmtree(entry)
        elif _TEMP_FILE.match(name) and entry.is_file():
            with contextlib.suppress(OSError):
                entry.unlink()


@contextlib.contextmanager
def _exclusive(out: Path):
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
            raise InputError(f"{io.printable(os.fspath(out))}: another gpuanalogy batch is writing "
                             f"there; wait for it or choose another output folder") from None
        except OSError:
            pass  # file systems without flock: run unlocked
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# Progress display
# --------------------------------------------------------------------------------------


class BatchProgress:
    """Pairs done, the current pair's level and stage, and an ETA, on ``stream`` (stderr).

    On a terminal the status is one line rewritten in place with ``\\r``, and each finished
    pair leaves a line above it; elsewhere (a log file, a pipe) every stage prints a line.

    The ETA is the mean time of the pairs computed so far (before the first, the current
    pair's elapsed time over its share of steps done) times the pairs left to compute.
    """

    def __init__(self, total: int, *, to_run: int | None = None, stream: TextIO | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.to_run = total if to_run is None else to_run
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.clock = clock
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.durations: list[float] = []
        self.index = 0
        self.name = ""
        self.pair_start = clock()
        self.fraction = 0.0
        self.shown = False   # a status line is on screen (terminal mode)

    # Events ---------------------------------------------------------------------------

    def start_pair(self, index: int, name: str) -> None:
        self.index, self.name = index, name
        self.pair_start = self.clock()
        self.fraction = 0.0

    def stage(self, progress: Any) -> None:
        """The ``on_progress`` callback of :func:`gpuanalogy.runner.run_pair`."""
        self.fraction = progress.done / max(progress.total, 1)
        where = f"level {progress.level} " if progress.level else ""
        text = (f"{self._head()} {self.name}: {where}{progress.stage} "
                f"(step {progress.done + 1}/{progress.total}) | {self._tally()} | "
                f"ETA {self._eta()}")
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + text[:max(width, 20)] + "\x1b[K")
            self.shown = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end_pair(self, result: PairResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if result.status == "ok":
            self.durations.append(result.seconds)
        if result.status == "skipped":
            text = f"{self._head()} {self.name}: skipped (already complete)"
        elif result.status == "ok":
            text = f"{self._head()} {self.name}: ok in {result.seconds:.1f} s"
        else:
            text = f"{self._head()} {self.name}: FAILED: {result.error}"
        self.notice(text)

    def notice(self, text: str) -> None:
        """A line that stays (above the status line on a terminal)."""
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Take the status line off the terminal, before other output."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def close(self) -> None:
        self.clear()

    # Text -----------------------------------------------------------------------------

    def _head(self) -> str:
        width = len(str(self.total))
        return f"[{self.index + 1:{width}d}/{self.total}]"

    def _tally(self) -> str:
        return ", ".join(f"{n} {status}" for status, n in self.counts.items()
                         if n or status == "ok")

    def eta_seconds(self) -> float | None:
        """Seconds left for the whole batch, or None before anything can be estimated."""
        elapsed = self.clock() - self.pair_start
        if self.durations:
            per_pair = sum(self.durations) / len(self.durations)
        elif self.fraction > 0:
            per_pair = elapsed / self.fraction
        else:
            return None
        ran = self.counts["ok"] + self.counts["failed"]
        after = max(self.to_run - ran - 1, 0)   # to compute after the current one
        return max(per_pair - elapsed, 0.0) + per_pair * after

    def _eta(self) -> str:
        seconds = self.eta_seconds()
        return "--:--" if seconds is None else format_duration(seconds)


def format_duration(seconds: float) -> str:
    """``M:SS`` or ``H:MM:SS``."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------------------
# Command
# --------------------------------------------------------------------------------------


def summary_table(results: Iterable[PairResult]) -> str:
    """The end-of-batch table: pair, status, seconds, message."""
    rows = [("pair", "status", "seconds", "message")]
    rows += [(r.pair.name, r.status, f"{r.seconds:.1f}", r.error or "") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for name, status, seconds, message in rows:
        line = f"{name:<{widths[0]}}  {status:<{widths[1]}}  {seconds:>{widths[2]}}  {message}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def run_batch(args: Any) -> int:
    """The ``gpuanalogy batch`` command; returns the exit status (see the module docstring).

    ``args`` is the parsed command line: ``pairs``, ``b_folder``, ``output``, the settings
    options, ``save_levels`` and ``debug``.
    """
    started = time.perf_counter()
    options = vars(args)
    # refuses a bad command-line value before anything else
    base = config_from_options(options, preset=args.preset)
    progress_stream = sys.stderr

    def notice(text: str) -> None:
        print(f"gpuanalogy: {text}", file=progress_stream, flush=True)

    source = Path(os.fspath(args.pairs))
    if args.b_folder is not None:
        if not source.is_dir():
            raise InputError(f"{io.printable(args.pairs)}: with B_FOLDER, PAIRS must be the folder "
                             f"of A images")
        pairs = pairs_from_folders(source, args.b_folder, base, on_notice=notice)
    elif source.is_dir():
        sub = {entry.name.lower(): entry for entry in source.iterdir() if entry.is_dir()}
        if "a" not in sub or "b" not in sub:
            raise InputError(f"{io.printable(args.pairs)}: is a folder; give the folder of B' "
                             f"images too (gpuanalogy batch A_DIR B_DIR -o OUT), or a CSV, or "
                             f"a folder holding A/ and B/")
        pairs = pairs_from_folders(sub["a"], sub["b"], base, on_notice=notice)
    else:
        pairs = read_pairs_csv(source, lambda preset: config_from_options(
            options, preset=preset or args.preset))

    out = io.check_output_dir(args.output)

    def write_summary(results: list[PairResult], finished: bool = False) -> None:
        counts = {status: sum(r.status == status for r in results)
                  for status in ("ok", "skipped", "failed", "pending")}
        io.write_json(out / SUMMARY, {
            "gpuanalogy": __version__,
            "pairs": os.fspath(args.pairs),
            "b_folder": None if args.b_folder is None else os.fspath(args.b_folder),
            "output": os.fspath(out),
            "finished": finished,
            "seconds": round(time.perf_counter() - started, 3),
            "counts": counts,
            "results": [r.to_dict() for r in results],
        })

    results = run_pairs(pairs, out, save_levels=args.save_levels, on_update=write_summary,
                        debug=args.debug)
    write_summary(results, finished=True)
    failed = [r for r in results if r.status == "failed"]
    print(summary_table(results))
    counts = ", ".join(f"{sum(r.status == s for r in results)} {s}"
                       for s in ("ok", "skipped", "failed"))
    print(f"{len(results)} pairs: {counts} in {time.perf_counter() - started:.1f} s; "
          f"summary in {out / SUMMARY}", file=sys.stderr)
    if any(r.bad_input for r in failed):
        return EXIT_ERROR
    return 1 if failed else 0
