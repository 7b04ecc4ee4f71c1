"""Where a batch's pairs come from: a CSV file, or two folders matched by file name.

A CSV has columns ``a`` and ``b_prime`` and optionally ``name`` and the per-pair options of
:data:`gpuanalogy.app.options.CSV_COLUMNS`; relative paths resolve against the CSV's folder.
A ``b_prime`` cell may list several exemplars separated by ``;`` (one search over all of
them), and the ``regions_a`` / ``regions_b`` cells name region masks (``regions_b`` one file
per exemplar, separated by ``;``).
Settings are layered: preset (the row's, else ``--preset``), then the command-line options,
then the row's own columns. Every pair gets a unique folder name.
"""
from __future__ import annotations

import csv
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import AnalogyConfig
from ..errors import InputError, error_reason, printable
from .options import CSV_COLUMNS, csv_header_name, csv_overrides

__all__ = ["Pair", "IMAGE_SUFFIXES", "image_files", "read_pairs_csv", "pairs_from_folders",
           "pairs_from_argument"]

#: File extensions taken as images in folder mode (other files are ignored).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pnm"})

#: A name no pair may take: the batch's own summary file.
SUMMARY = "summary.json"
_REQUIRED = ("a", "b_prime")


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
    others : tuple of Path
        More exemplars after ``b_prime`` (one search over all of them).
    regions_a : Path or None
    regions_b : tuple of Path
        The region masks of A and of each exemplar (none: no masks).
    """

    name: str
    a: Path
    b_prime: Path
    config: AnalogyConfig
    line: int | None = None
    others: tuple[Path, ...] = ()
    regions_a: Path | None = None
    regions_b: tuple[Path, ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        """The absolute paths of A and of the exemplars: what errors name them."""
        return tuple(os.path.abspath(p) for p in (self.a, self.b_prime, *self.others))

    def recorded_inputs(self) -> dict[str, Any]:
        """The input files as run.json records them and resume compares them: absolute paths
        of ``a``, ``b_prime`` (a list for several exemplars) and any region masks."""
        found: dict[str, Any] = {"a": self.inputs[0], "b_prime": list(self.inputs[1:])
                                 if self.others else self.inputs[1]}
        if self.regions_a is not None or self.regions_b:
            found["regions_a"] = None if self.regions_a is None else \
                os.path.abspath(self.regions_a)
            found["regions_b"] = [os.path.abspath(p) for p in self.regions_b]
        return found


def _default_config(preset: str | None) -> AnalogyConfig:
    return AnalogyConfig.preset(preset) if preset else AnalogyConfig()


def read_pairs_csv(path: str | os.PathLike[str],
                   make_config: Callable[[str | None], AnalogyConfig] = _default_config,
                   ) -> list[Pair]:
    """The pairs listed in a CSV file.

    Parameters
    ----------
    path : str or os.PathLike
        UTF-8 CSV with a header. Columns ``a`` and ``b_prime`` are required; ``name`` and the
        per-pair options (``gpuanalogy.app.options.CSV_COLUMNS``: ``preset``, ``blend``,
        ``ratio``, ...; booleans as true/false) are optional, and an empty cell means "not
        set". Blank lines and lines starting with ``#`` are skipped. Relative image
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
    label = printable(os.fspath(path))
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
        raise InputError(f"{label}: cannot open: {error_reason(error)}") from error

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
        key = csv_header_name(cell)
        if key not in CSV_COLUMNS:
            raise InputError(f"{where}: unknown column {printable(cell.strip())!r}; "
                             f"the columns are: {', '.join(CSV_COLUMNS)}")
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
    for key in _REQUIRED:
        if not row[key]:
            raise InputError(f"{where}: no {key} image given")
    a = _path(row["a"], folder)
    exemplars = _paths(row["b_prime"], folder)
    regions_a = _paths(row.get("regions_a", ""), folder)
    regions_b = _paths(row.get("regions_b", ""), folder)
    if len(regions_a) > 1:
        raise InputError(f"{where}: regions_a names one label image; got {len(regions_a)}")
    overrides = csv_overrides(row, where)
    try:
        config = make_config(row.get("preset") or None)
        config = config.replace(**overrides) if overrides else config
    except InputError as error:
        raise InputError(f"{where}: {error}") from error
    explicit = row.get("name", "")
    if explicit:
        _check_name(explicit, where)
    name = names.take(explicit or _stem_name(a))
    return Pair(name, a, exemplars[0], config, line, tuple(exemplars[1:]),
                regions_a[0] if regions_a else None, tuple(regions_b))


def _path(text: str, folder: Path) -> Path:
    """A path of a cell, a relative one under ``folder``."""
    given = Path(text).expanduser()
    return given if given.is_absolute() else folder / given


def _paths(cell: str, folder: Path) -> list[Path]:
    """The paths of a cell, several separated by ``;``."""
    return [_path(text, folder) for text in (part.strip() for part in cell.split(";")) if text]


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
        raise InputError(f"{where}: name {printable(name)!r} {problem}")


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
    a_images = image_files(a_folder)
    b_images = image_files(b_folder)
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
                raise InputError(f"{printable(os.fspath(a))}: several B' images match by name "
                                 f"({listed}); keep one or use a CSV")
            b = candidates[0] if candidates else None
        if b is None:
            if on_notice:
                on_notice(f"{printable(os.fspath(a))}: no B' image of that name in "
                          f"{printable(os.fspath(b_folder))}; not paired")
            continue
        used_b.add(b)
        pairs.append(Pair(names.take(_stem_name(a)), a, b, config))
    if on_notice:
        for b in b_images:
            if b not in used_b:
                on_notice(f"{printable(os.fspath(b))}: no A image of that name in "
                          f"{printable(os.fspath(a_folder))}; not paired")
    if not pairs:
        raise InputError(f"{printable(os.fspath(a_folder))} and {printable(os.fspath(b_folder))}"
                         ": no image file names in common, so there is nothing to pair")
    return pairs


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of ``folder`` (by their endings, hidden files left out), sorted by name."""
    path = Path(os.fspath(folder))
    label = printable(os.fspath(folder))
    if not path.exists():
        raise InputError(f"{label}: no such folder")
    if not path.is_dir():
        raise InputError(f"{label}: is a file, not a folder of images")
    try:
        entries = sorted(path.iterdir())
    except OSError as error:
        raise InputError(f"{label}: cannot list the folder: {error_reason(error)}") from error
    return [entry for entry in entries
            if not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_SUFFIXES
            and entry.is_file()]


def pairs_from_argument(pairs: str | os.PathLike[str], b_folder: str | os.PathLike[str] | None,
                        make_config: Callable[[str | None], AnalogyConfig],
                        on_notice: Callable[[str], None]) -> list[Pair]:
    """The pairs ``gpuanalogy batch PAIRS [B_FOLDER]`` names.

    PAIRS is a CSV file, a folder of A images with B_FOLDER the folder of B' images, or a
    folder holding ``A/`` and ``B/``. ``make_config(preset_or_None)`` gives a pair's settings
    before its CSV row's own columns.
    """
    source = Path(os.fspath(pairs))
    label = printable(os.fspath(pairs))
    if b_folder is not None:
        if not source.is_dir():
            raise InputError(f"{label}: with B_FOLDER, PAIRS must be the folder of A images")
        return pairs_from_folders(source, b_folder, make_config(None), on_notice=on_notice)
    if source.is_dir():
        sub = {entry.name.lower(): entry for entry in source.iterdir() if entry.is_dir()}
        if "a" not in sub or "b" not in sub:
            raise InputError(f"{label}: is a folder; give the folder of B' images too "
                             f"(gpuanalogy batch A_DIR B_DIR -o OUT), or a CSV, or a folder "
                             f"holding A/ and B/")
        return pairs_from_folders(sub["a"], sub["b"], make_config(None), on_notice=on_notice)
    return read_pairs_csv(source, make_config)
