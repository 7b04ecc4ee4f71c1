"""The one table of options: argparse flags, batch CSV columns and AnalogyConfig fields.

Every setting of the method the command line offers is one :class:`Option` in :data:`OPTIONS`.
From the table come the flags of ``run``, ``batch``, ``video`` and ``demo`` (:func:`add_options`),
the per-pair CSV columns of a batch (:func:`csv_overrides`), the mapping onto
:class:`gpuanalogy.config.AnalogyConfig` (:func:`config_from_options`) and the key a batch and a
video resume on (:func:`result_key`). The ``video`` command's own settings, how a frame reuses
the previous frame's work, are :data:`VIDEO_OPTIONS`, mapped onto
:class:`gpuanalogy.config.VideoConfig` (:func:`video_config_from_options`). The README lists
every option; a test checks it. The flags that say where a batch runs are no settings: they are
rows of their own table, :data:`CLUSTER_OPTIONS` with :data:`CONNECT_TIMEOUT`
(:func:`add_cluster_options`).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import (
    DEVICES, FIELD_FORMATS, LBFGS_STOPS, MASKS, MOTIONS, OPTIMIZERS, OUTPUTS, PRESETS,
    REFINE_UPSAMPLES, TRANSFERS, UPSAMPLES, AnalogyConfig, VideoConfig)
from ..errors import InputError, printable

__all__ = ["Option", "OPTIONS", "CSV_COLUMNS", "add_options", "config_from_options",
           "csv_header_name", "csv_overrides", "result_key", "add_cluster_options",
           "CLUSTER_OPTIONS", "CONNECT_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT",
           "VIDEO_OPTIONS", "video_config_from_options"]


@dataclass(frozen=True)
class Option:
    """One setting of the method, as the command line and a batch CSV offer it.

    Attributes
    ----------
    name : str
        The CSV column and, with ``-`` for ``_``, the flag: ``lbfgs_iters`` is
        ``--lbfgs-iters``.
    field : str or None
        The :class:`AnalogyConfig` field it sets; None for ``preset``, which chooses the
        settings the others override, and for the flags that say where a batch runs.
    type : type or callable
        ``int``, ``float``, ``str`` or ``bool`` (a bool gives ``--name`` and ``--no-name``), or
        a function that parses the text of a flag that is no CSV column.
    help : str
    choices : tuple
        The values argparse accepts (empty: any value of ``type``).
    csv : bool
        Whether a batch CSV may set it per pair.
    changes_images : bool
        Whether it changes what is computed; those that do not (the device) are left out of
        the key a batch resumes on.
    aliases : tuple of str
        Other CSV header spellings.
    metavar : str or None
    inputs : bool
        Whether it names input files read beside the pair's images (region masks): no
        config field, offered by the commands that read a pair (``run``, ``batch``); in a
        CSV, paths relative to its folder, several separated by ``;``.
    nargs : str or None
        argparse's ``nargs`` for a flag taking several values ("+").
    """

    name: str
    field: str | None
    type: Callable[[str], Any]
    help: str
    choices: tuple[Any, ...] = ()
    csv: bool = True
    changes_images: bool = True
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    inputs: bool = False
    nargs: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("preset", None, str, "the official settings for one of the four uses",
           tuple(PRESETS)),
    Option("blend", "blend", int, "alpha preset (default 3)", (1, 2, 3)),
    Option("ratio", "ratio", float, "scale after the size rule (default 1)"),
    Option("iters", "patchmatch_iterations", int, "PatchMatch iterations per level (default 10)",
           aliases=("patchmatch_iterations",)),
    Option("lbfgs_iters", "lbfgs_iterations", int,
           "L-BFGS iterations per deconvolution (100; with --lbfgs-stop adaptive, the most)",
           aliases=("lbfgs_iterations",)),
    Option("lbfgs_stop", "lbfgs_stop", str,
           "when a deconvolution stops: once its variable stops moving by a measured share "
           "(adaptive, default) or after every iteration (official)", LBFGS_STOPS),
    Option("outputs", "outputs", str,
           "what to compute: both analogies (both, default) or A' alone (a_prime: no B, "
           "whose deconvolutions give way to a warp; both fields are still written)", OUTPUTS),
    Option("optimizer", "optimizer", str,
           "deconvolution optimiser: L-BFGS on the device's arrays (lbfgs, default) or SciPy's "
           "L-BFGS-B (scipy, the reference)", OPTIMIZERS),
    Option("seed", "seed", int, "random seed (default 0)"),
    Option("mask", "mask", str, "blend mask (default sigmoid)", MASKS),
    Option("upsample", "upsample", str,
           "outputs back to the input size: resize the working-size result (cubic, official), "
           "vote input pixels through the upsampled field (nnf), or through the field refined "
           "at the input size on image patches (patchmatch)", UPSAMPLES),
    Option("refine", "refine", bool, "apply the WLS photo refinement"),
    Option("refine_upsample", "refine_upsample", str,
           "the refinement above the working size: solved at the working size and carried up "
           "by an edge-aware upsampling (guided, default) or solved over every input pixel "
           "(wls, official; about 3 KB of memory a pixel)", REFINE_UPSAMPLES),
    Option("subpixel", "subpixel", bool,
           "align the final fields to sub-pixel precision under a local colour model before "
           "voting (for two photographs of one scene)"),
    Option("field_format", "field_format", str,
           "field files: float32 at the input size (default, exact), float16 (half the bytes), "
           "the working-size field and its sizes (working, .npz; exact, much smaller), or "
           "Middlebury optical flow (flo: the displacement x then y, for flow tools)",
           FIELD_FORMATS),
    Option("transfer", "transfer", str,
           "what the outputs take from the other image: everything (all, default), its colours "
           "on the structure image's own lightness (colour), or its texture in the structure "
           "image's own colours (texture); a split in CIELAB", TRANSFERS),
    Option("regions_a", None, str,
           "region masks of A: a label image of A's size (colours, or integers in a greyscale "
           "PNG or .npy); black / 0 matches freely", metavar="FILE", inputs=True),
    Option("regions_b", None, str,
           "region masks of B' (with several exemplars, one file per exemplar, in their "
           "order): a match joins only pixels of one label; a label on one side only is an "
           "error", metavar="FILE", inputs=True, nargs="+"),
    Option("device", "device", str, "where to run (default auto: the GPU when there is one)",
           DEVICES, csv=False, changes_images=False),
    Option("weights", "weights", str,
           "a VGG-19 weights file (a torchvision state dict, or .npz with <conv>_W and <conv>_b "
           "arrays) instead of the bundled one",
           csv=False, metavar="FILE"),
)

#: The CSV columns of a batch: the pair, its folder name, then the per-pair options.
CSV_COLUMNS: tuple[str, ...] = ("a", "b_prime", "name") + tuple(o.name for o in OPTIONS if o.csv)
_CSV_ALIASES = {"b'": "b_prime", "bprime": "b_prime",
                **{alias: o.name for o in OPTIONS if o.csv for alias in o.aliases}}


def add_options(parser: argparse.ArgumentParser,
                table: tuple[Option, ...] = OPTIONS, *, inputs: bool = True) -> None:
    """Add every option of ``table`` to ``parser`` (those naming input files only with
    ``inputs``); each defaults to None ("not given")."""
    for option in table:
        if option.inputs and not inputs:
            continue
        if option.inputs:
            parser.add_argument(option.flag, dest=option.name, metavar=option.metavar,
                                nargs=option.nargs, help=option.help)
        elif option.type is bool:
            parser.add_argument(option.flag, dest=option.name, action="store_true",
                                default=None, help=option.help)
            parser.add_argument(f"--no-{option.flag[2:]}", dest=option.name,
                                action="store_false")
        else:
            parser.add_argument(option.flag, dest=option.name, type=option.type,
                                choices=option.choices or None, metavar=option.metavar,
                                help=option.help)


def config_from_options(options: dict[str, Any], *, preset: str | None = None,
                        base: AnalogyConfig | None = None) -> AnalogyConfig:
    """An AnalogyConfig from a preset (or ``base``, or the defaults) plus the given options.

    ``options`` maps option names to values, None meaning "not given"; ``preset`` wins over
    ``options["preset"]``. A preset's own settings give way to every option that is given.
    """
    overrides = {o.field: options[o.name] for o in OPTIONS
                 if o.field is not None and options.get(o.name) is not None}
    preset = preset or options.get("preset")
    if preset:
        return AnalogyConfig.preset(preset, **overrides)
    return (base or AnalogyConfig()).replace(**overrides)


def csv_header_name(cell: str) -> str:
    """A CSV header cell as a column name: case-insensitive, ``-`` as ``_``, aliases resolved."""
    key = cell.strip().lower().replace("-", "_")
    return _CSV_ALIASES.get(key, key)


def csv_overrides(row: dict[str, str], where: str) -> dict[str, Any]:
    """The AnalogyConfig fields a CSV row sets (``preset`` aside), parsed from its cells."""
    overrides = {}
    for option in OPTIONS:
        text = row.get(option.name, "")
        if option.csv and option.field is not None and text:
            overrides[option.field] = _parse(option, text, where)
    return overrides


def result_key(config: AnalogyConfig | dict[str, Any]) -> dict[str, Any]:
    """What a batch compares to decide that a finished pair needs no new run.

    The settings as recorded in run.json, less those that do not change the images (the
    device): resuming on another device recomputes nothing.
    """
    data = config.to_dict() if isinstance(config, AnalogyConfig) else dict(config)
    for option in OPTIONS:
        if not option.changes_images and option.field is not None:
            data.pop(option.field, None)
    return data


def _parse(option: Option, text: str, where: str) -> Any:
    key = option.name
    if option.type is int:
        try:
            return int(text)
        except ValueError:
            raise InputError(f"{where}: {key}={printable(text)!r} is not a whole number"
                             ) from None
    if option.type is float:
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{where}: {key}={printable(text)!r} is not a number") from None
        if not math.isfinite(value):
            raise InputError(f"{where}: {key}={text!r} is not a finite number")
        return value
    if option.type is bool:
        value = text.lower()
        if value in ("1", "true", "yes", "on", "y"):
            return True
        if value in ("0", "false", "no", "off", "n"):
            return False
        raise InputError(f"{where}: {key}={printable(text)!r} is not true or false")
    return text


def _workers(text: str) -> int | str:
    if text == "gpus":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers (1, 2, ...) "
                                         f"or 'gpus'")
    return int(text)


#: Seconds ``batch`` waits for a Dask scheduler to answer before it gives up.
DEFAULT_CONNECT_TIMEOUT = 30.0

#: The flags of ``batch`` that choose where it runs (:mod:`gpuanalogy.app.client`), at most
#: one of them; without any the batch runs in this process. Like the video settings they are
#: no settings of the analogy: no CSV column, no config field, no part of the resume key.
CLUSTER_OPTIONS: tuple[Option, ...] = (
    Option("workers", None, _workers,
           "run on a Dask cluster of N worker processes on this machine (at most what its "
           "cores and memory hold), or one worker per GPU (gpus, needs dask-cuda)",
           csv=False, changes_images=False, metavar="N|gpus"),
    Option("scheduler", None, str,
           "run on the Dask cluster at ADDRESS (tcp://host:8786, tls://...)",
           csv=False, changes_images=False, metavar="ADDRESS"),
    Option("scheduler_file", None, str,
           "run on the Dask cluster described by FILE (dask scheduler --scheduler-file)",
           csv=False, changes_images=False, metavar="FILE"),
)
CONNECT_TIMEOUT = Option(
    "connect_timeout", None, float,
    f"with --scheduler or --scheduler-file: seconds to wait for the scheduler to answer "
    f"(default {DEFAULT_CONNECT_TIMEOUT:g})", csv=False, changes_images=False,
    metavar="SECONDS")


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """The flags of ``batch`` that choose where it runs: :data:`CLUSTER_OPTIONS`, exclusive,
    and :data:`CONNECT_TIMEOUT`."""
    add_options(parser.add_mutually_exclusive_group(), CLUSTER_OPTIONS)  # type: ignore[arg-type]
    add_options(parser, (CONNECT_TIMEOUT,))


#: The settings of ``gpuanalogy video`` for the frames after the first (fields of
#: :class:`gpuanalogy.config.VideoConfig`); the frames' own settings are :data:`OPTIONS`.
_VIDEO = VideoConfig()
VIDEO_OPTIONS: tuple[Option, ...] = (
    Option("warm_iters", "patchmatch_iterations", int,
           "PatchMatch iterations per level of a frame started from the previous one "
           f"({_VIDEO.patchmatch_iterations})", csv=False),
    Option("warm_lbfgs_iters", "lbfgs_iterations", int,
           "L-BFGS iterations of a deconvolution started from the previous frame's "
           f"({_VIDEO.lbfgs_iterations})", csv=False),
    Option("keep_margin", "keep_margin", float,
           "a new match replaces the one carried from the previous frame only where its "
           f"energy is below (1 - margin) times the carried one's ({_VIDEO.keep_margin}; 0 "
           "takes every improvement)", csv=False),
    Option("motion", "motion", str,
           "motion between frames: PatchMatch between the frames' features, or none (a still "
           "camera)", MOTIONS, csv=False),
    Option("motion_radius", "motion_radius", int,
           f"the motion search's window per level, in that level's pixels "
           f"({_VIDEO.motion_radius})", csv=False),
    Option("motion_iters", "motion_iterations", int,
           f"the motion search's PatchMatch iterations per level ({_VIDEO.motion_iterations})",
           csv=False),
    Option("keyframes", "keyframes", str,
           "which frames are whole analogies, the others synthesised from their neighbouring "
           "keyframes: all (every frame, the default), auto (where the keyframe before stops "
           "explaining the frame), N (every N-th) or a list of frames i,j,... (from 0)",
           csv=False, metavar="all|auto|N|LIST"),
    Option("keyframe_threshold", "keyframe_threshold", float,
           "--keyframes auto: the share of a frame its keyframe cannot explain past which it "
           f"becomes a keyframe ({_VIDEO.keyframe_threshold})", csv=False),
)


def video_config_from_options(options: dict[str, Any]) -> VideoConfig:
    """A VideoConfig from the defaults plus the given video options (None: not given)."""
    return VideoConfig(**{o.field: options[o.name] for o in VIDEO_OPTIONS
                          if o.field is not None and options.get(o.name) is not None})
